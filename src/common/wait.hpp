// Internal: the one way the library waits for a condition: park on a WaitChannel until the
// condition holds or the deadline passes. Never spins.
#pragma once

#include <chrono>

#include "common/parking.hpp"
#include "emissions/deadline.hpp"

namespace emissions::detail {

// Time left until `deadline` (0 once it passed; -1 ns, "no limit", for Deadline::max()).
inline std::chrono::nanoseconds time_left(Deadline deadline) noexcept {
  if (deadline == Deadline::max()) return std::chrono::nanoseconds(-1);
  const auto left = deadline - std::chrono::steady_clock::now();
  return left.count() > 0 ? std::chrono::duration_cast<std::chrono::nanoseconds>(left)
                          : std::chrono::nanoseconds(0);
}

// Waits until `done()` is true (returns true) or `deadline` passes (returns false).
// Whoever makes `done()` true must call channel.notify() afterwards. `done` must not block.
template <typename Predicate>
bool wait_until(WaitChannel& channel, Predicate&& done, Deadline deadline) noexcept {
  while (!done()) {
    const std::uint32_t token = channel.prepare();
    if (done()) {
      channel.done();
      return true;
    }
    const auto left = time_left(deadline);
    if (left.count() == 0) {
      channel.done();
      return false;
    }
    channel.wait(token, left);
    channel.done();
  }
  return true;
}

}  // namespace emissions::detail
