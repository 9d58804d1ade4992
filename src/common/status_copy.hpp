// Internal: copying a Status on a path that must not throw. Delivery::fail() takes its
// Status by value, so a noexcept caller that settles several events with one Status (or
// keeps its own) copies it, and the copy of a long message allocates.
#pragma once

#include "emissions/status.hpp"

namespace emissions::detail {

// `status` again: its code always, its message unless copying it runs out of memory (then
// none: an empty message allocates nothing). Never throws.
inline Status copy_or_bare(const Status& status) noexcept {
  try {
    return status;
  } catch (...) {
    return Status(status.code(), {});
  }
}

}  // namespace emissions::detail
