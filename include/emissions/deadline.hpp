/// @file
/// emissions/deadline.hpp: the point in time by which a blocking call must return.
///
/// Every call of this library that may wait takes either a timeout (public entry points
/// such as Emitter::drain) or a Deadline (what the pipeline passes down into adapters), and
/// returns by it. Deadlines are on the steady clock: a step of the wall clock moves none.
///
/// @code
///   emissions::Deadline deadline = emissions::deadline_after(std::chrono::seconds(2));
///   while (!done()) {
///     if (emissions::expired(deadline)) return emissions::Status(emissions::Errc::timeout, "...");
///     wait_a_little();
///   }
/// @endcode
#pragma once

#include <chrono>

namespace emissions {

/// A point on the steady clock by which a call must return.
using Deadline = std::chrono::steady_clock::time_point;

/// now + `timeout`, saturating: a huge timeout (std::chrono::milliseconds::max(), say)
/// gives a deadline that never passes instead of overflowing into the past. A negative
/// timeout is taken as 0. Any duration type: it is compared before it is converted, since
/// converting a huge one to the clock's unit would itself overflow.
template <typename Rep, typename Period>
[[nodiscard]] Deadline deadline_after(std::chrono::duration<Rep, Period> timeout) noexcept {
  const Deadline now = std::chrono::steady_clock::now();
  if (timeout <= std::chrono::duration<Rep, Period>::zero()) return now;
  // In floating point, with a second to spare for its rounding.
  const std::chrono::duration<double> room =
      std::chrono::duration<double>(Deadline::max() - now) - std::chrono::seconds(1);
  if (std::chrono::duration<double>(timeout) >= room) return Deadline::max();
  return now + std::chrono::duration_cast<Deadline::duration>(timeout);
}

/// Whether `deadline` has passed.
[[nodiscard]] inline bool expired(Deadline deadline) noexcept {
  return std::chrono::steady_clock::now() >= deadline;
}

}  // namespace emissions
