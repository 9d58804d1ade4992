// Internal: the text of a caught exception, for statuses and telemetry reasons.
//
//   try {
//     status = adapter.handle_events(batch);
//   } catch (...) {
//     status = Status(Errc::internal, describe_current_exception());
//   }
#pragma once

#include <string>
#include <string_view>

namespace emissions::detail {

// Call inside a catch block: the what() text of the exception being handled, or `unknown`
// when it does not derive from std::exception (or when no exception is being handled).
// Never throws: returns an empty string if copying the text runs out of memory.
std::string describe_current_exception(std::string_view unknown = "unknown exception") noexcept;

}  // namespace emissions::detail
