#include "emissions/status.hpp"

namespace emissions {

std::string_view to_string(Errc code) noexcept {
  switch (code) {
    case Errc::ok:
      return "ok";
    case Errc::already_started:
      return "already_started";
    case Errc::not_started:
      return "not_started";
    case Errc::invalid_argument:
      return "invalid_argument";
    case Errc::overloaded:
      return "overloaded";
    case Errc::timeout:
      return "timeout";
    case Errc::closed:
      return "closed";
    case Errc::already_exists:
      return "already_exists";
    case Errc::not_found:
      return "not_found";
    case Errc::unavailable:
      return "unavailable";
    case Errc::internal:
      return "internal";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  std::string out(emissions::to_string(code_));
  if (!message_.empty()) {
    out += ": ";
    out += message_;
  }
  return out;
}

}  // namespace emissions
