// Internal: the timestamp of every emitted event.
//
//   const auto now = detail::wall_now();
//   batch.append(name, payload, metadata, EventId::generate(now), now);
//
// wall_now() is the kernel's coarse wall clock: system_clock time as of the last scheduler
// tick (CLOCK_REALTIME_COARSE). It advances a tick at a time (1 to 10 ms depending on the
// kernel; 4 ms on our machines) and trails system_clock::now() by about a tick, more when a
// virtual machine's ticks come late. On one thread it never goes backwards: after the
// system clock is stepped back it holds the thread's last value until the system clock
// passes that value; a step forward shows at the next tick. Why this clock: the
// measurements at the top of time/wall_clock.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>

namespace emissions::detail {

// Reads a wall clock: nanoseconds since the Unix epoch. The seam between WallClock and the
// kernel; tests pass their own to step the time or return a stale reading.
using WallTimeReader = std::int64_t (*)() noexcept;

// The kernel's coarse wall clock in nanoseconds since the Unix epoch: CLOCK_REALTIME_COARSE,
// or system_clock where the platform has no coarse clock. Thread-safe; goes backwards when
// the system clock is stepped back.
[[nodiscard]] std::int64_t coarse_wall_time_ns() noexcept;

// One thread's wall clock: the reader's time, never less than the last value it returned.
// Not thread-safe (one per thread); never blocks, never allocates.
//
//   WallClock clock(&coarse_wall_time_ns);
//   std::int64_t t = clock.now_ns();  // >= every earlier clock.now_ns()
class WallClock {
 public:
  constexpr explicit WallClock(WallTimeReader read) noexcept : read_(read) {}

  // The reader's time, or the last value returned when the reader is behind it (the system
  // clock was stepped back, or the reading is stale).
  [[nodiscard]] std::int64_t now_ns() noexcept {
    const std::int64_t t = read_();
    if (t > last_ns_) last_ns_ = t;
    return last_ns_;
  }

 private:
  WallTimeReader read_;
  std::int64_t last_ns_ = std::numeric_limits<std::int64_t>::min();
};

// The calling thread's WallClock over coarse_wall_time_ns(), as a system_clock time point.
// Thread-safe (each thread has its own); never blocks, never allocates.
[[nodiscard]] std::chrono::system_clock::time_point wall_now() noexcept;

}  // namespace emissions::detail
