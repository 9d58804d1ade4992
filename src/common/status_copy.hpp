// Internal: making or copying a Status on a path that must not throw (noexcept functions,
// destructors, catch blocks while memory is short). A message allocates; the code never
// does, and it is what retries, dead letters and counters go by.
//
//   return detail::status_or_bare(Errc::timeout, [&] { return name + " was still flushing"; });
#pragma once

#include <string>

#include "emissions/status.hpp"

namespace emissions::detail {

// A Status of `code` with the message `make_message()` returns (a std::string or anything it
// is made from), or none when making it throws (out of memory). Never throws.
template <typename MakeMessage>
Status status_or_bare(Errc code, MakeMessage&& make_message) noexcept {
  try {
    return Status(code, make_message());
  } catch (...) {
    return Status(code, {});
  }
}

// `status` again: its code always, its message unless copying it runs out of memory (then
// none: an empty message allocates nothing). Never throws. Delivery::fail() takes its Status
// by value, so a noexcept caller that settles several events with one Status copies it.
inline Status copy_or_bare(const Status& status) noexcept {
  return status_or_bare(status.code(), [&]() -> const std::string& { return status.message(); });
}

}  // namespace emissions::detail
