// Internal: what the library says about an exception it caught from user code.
#pragma once

#include <exception>
#include <string>

namespace emissions::detail {

// The message of the exception being handled: call inside a catch block. "unknown
// exception" for one not derived from std::exception; never throws.
inline std::string describe_current_exception() noexcept {
  try {
    try {
      throw;
    } catch (const std::exception& e) {
      return e.what();
    } catch (...) {
      return "unknown exception";
    }
  } catch (...) {
    return {};  // copying the message ran out of memory
  }
}

}  // namespace emissions::detail
