// The event timestamp clock, and why it is the kernel's coarse clock.
//
// Candidates, CPU ns per read on our 2-vCPU AMD EPYC VMs (Linux 6.18, clock source
// kvm-clock), five runs with other builds sharing the cores (load 3.5 to 6.5):
//   build/release/bench/emissions_micro_bench --benchmark_filter='Clock|Rdtsc|WallNow'
//     clock_gettime(CLOCK_REALTIME), system_clock::now()     27-31 ns
//     the TSC clock wall_now() used to be (rdtsc + scaling)  12-13 ns (rdtsc alone: 12 ns)
//     clock_gettime(CLOCK_REALTIME_COARSE)                   3.5-7 ns, resolution 4 ms
//     wall_now() now: the coarse clock and a per-thread clamp  6-9 ns
//   and per event, BM_EmitIntoTransaction in paired runs: 38-44 ns with the TSC clock,
//   23-36 ns with this one.
// Emit's whole budget is ~25 ns per event, so the precise clock does not fit. The TSC clock
// did, but to be right it needs a monotonic reference, bracketed samples, jump detection and
// the kernel's verdict on the TSC, and on these VMs that verdict is no: the kernel boots
// with `tsc=unstable` and keeps time with kvm-clock, so a TSC clock that heeds it would be
// switched off here anyway. The coarse clock costs less than rdtsc alone, is the kernel's
// own wall time (steps and NTP slewing included, nothing to calibrate or re-anchor) and
// needs only a per-thread clamp never to go backwards. Its price is resolution: one
// scheduler tick (4 ms here, 1 to 10 ms elsewhere). Ids of events within one tick still
// differ and stay in order (their counter, see event_id.cpp).
#include "time/wall_clock.hpp"

#include <time.h>

#include "time/system_time.hpp"

namespace emissions::detail {

std::int64_t coarse_wall_time_ns() noexcept {
#ifdef CLOCK_REALTIME_COARSE
  timespec ts{};
  if (clock_gettime(CLOCK_REALTIME_COARSE, &ts) == 0) {
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  }
  // EINVAL: a kernel without coarse clocks (older than 2.6.32).
#endif
  return system_time_ns();
}

std::chrono::system_clock::time_point wall_now() noexcept {
  thread_local constinit WallClock clock(&coarse_wall_time_ns);
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds(clock.now_ns())));
}

}  // namespace emissions::detail
