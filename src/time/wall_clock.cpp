// The event timestamp clock: see time/wall_clock.hpp.
#include "time/wall_clock.hpp"

#include <atomic>
#include <cstdint>

#include "time/system_time.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define EMISSIONS_HAVE_TSC 1
#endif

namespace emissions::detail {
namespace {

using SysNanos = std::chrono::duration<std::int64_t, std::nano>;

#if EMISSIONS_HAVE_TSC
bool tsc_is_invariant() noexcept {
  unsigned int eax = 0;
  unsigned int ebx = 0;
  unsigned int ecx = 0;
  unsigned int edx = 0;
  __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(0x80000000U));
  if (eax < 0x80000007U) return false;
  __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(0x80000007U));
  return (edx & (1U << 8)) != 0;  // "invariant TSC": constant rate, runs in all C-states
}

const bool kInvariantTsc = tsc_is_invariant();

// The process's first reading, taken when the library loads (or at the first call, if that
// comes earlier). The TSC's rate is measured from it, once for every thread: the TSC is
// invariant, so its rate is the machine's, and the longer the interval, the more exact.
struct Reading {
  std::uint64_t tsc;
  std::int64_t ns;
};

const Reading& first_reading() noexcept {
  static const Reading first{__rdtsc(), system_time_ns()};
  return first;
}
[[maybe_unused]] const Reading& kTakenAtLoad = first_reading();

std::atomic<double> g_ns_per_tick{0.0};  // 0 until 10 ms after the first reading

// Per-thread anchor, so no thread ever waits for another; re-anchored on the real clock
// every ~20 ms, which bounds the extrapolation error.
struct TscClock {
  std::uint64_t anchor_tsc = 0;
  std::int64_t anchor_ns = 0;
  double ns_per_tick = 0.0;  // 0 while the rate is unknown: use the system clock
  std::uint64_t reanchor_ticks = 0;

  std::int64_t now() noexcept {
    const std::uint64_t tsc = __rdtsc();
    if (tsc - anchor_tsc < reanchor_ticks) {
      return anchor_ns +
             static_cast<std::int64_t>(static_cast<double>(tsc - anchor_tsc) * ns_per_tick);
    }
    return reanchor(tsc);
  }

  std::int64_t reanchor(std::uint64_t tsc) noexcept {
    const std::int64_t ns = system_time_ns();
    const Reading& first = first_reading();
    double rate = g_ns_per_tick.load(std::memory_order_relaxed);
    if (tsc > first.tsc && ns - first.ns >= 10'000'000) {
      rate = static_cast<double>(ns - first.ns) / static_cast<double>(tsc - first.tsc);
      g_ns_per_tick.store(rate, std::memory_order_relaxed);
    }
    ns_per_tick = rate;
    reanchor_ticks = rate > 0.0 ? static_cast<std::uint64_t>(20'000'000.0 / rate) : 0;  // ~20 ms
    anchor_tsc = tsc;
    anchor_ns = ns;
    return ns;
  }
};
#endif

}  // namespace

std::chrono::system_clock::time_point wall_now() noexcept {
#if EMISSIONS_HAVE_TSC
  if (kInvariantTsc) {
    thread_local TscClock clock;
    return std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(SysNanos(clock.now())));
  }
#endif
  return std::chrono::system_clock::now();
}

}  // namespace emissions::detail
