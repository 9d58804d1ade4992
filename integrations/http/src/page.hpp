// Internal: the viewer page served at /, embedded in the library (page.cpp): one HTML
// document with its CSS and JavaScript inline, so it works offline and loads nothing from
// elsewhere.
#pragma once

#include <string_view>

namespace emissions::http::detail {

[[nodiscard]] std::string_view page_html() noexcept;

}  // namespace emissions::http::detail
