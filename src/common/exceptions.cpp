#include "common/exceptions.hpp"

#include <exception>

namespace emissions::detail {

std::string describe_current_exception(std::string_view unknown) noexcept {
  try {
    const std::exception_ptr error = std::current_exception();
    if (!error) return std::string(unknown);
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      return e.what();
    } catch (...) {
      return std::string(unknown);
    }
  } catch (...) {
    return {};  // out of memory while copying the text
  }
}

}  // namespace emissions::detail
