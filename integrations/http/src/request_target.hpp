// Internal: the parts of a request the server reads without Beast: the path, query
// parameters and the bearer token check.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace emissions::http::detail {

// The path of a request target ("/metrics?x=1" -> "/metrics").
[[nodiscard]] std::string_view target_path(std::string_view target) noexcept;
// The percent-decoded value of query parameter `name`; nullopt when absent or when its
// encoding is invalid.
[[nodiscard]] std::optional<std::string> query_param(std::string_view target,
                                                     std::string_view name);
// Whether a request carries `token`: as "Authorization: Bearer <token>" or as the
// access_token query parameter. Compares in time independent of where they differ.
[[nodiscard]] bool authorized(std::string_view token, std::string_view authorization,
                              std::string_view target);

}  // namespace emissions::http::detail
