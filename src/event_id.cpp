#include "emissions/event_id.hpp"

#include <array>
#include <atomic>
#include <ostream>
#include <random>
#include <thread>

#include "wall_clock.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define EMISSIONS_HAVE_TSC 1
#endif

namespace emissions {
namespace detail {
namespace {

using SysNanos = std::chrono::duration<std::int64_t, std::nano>;

std::int64_t system_ns() noexcept {
  return std::chrono::duration_cast<SysNanos>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

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
  static const Reading first{__rdtsc(), system_ns()};
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
    const std::int64_t ns = system_ns();
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

namespace {

// Per-thread generator state: ids of one thread strictly increase, and no thread waits.
// Constant-initialised (seeded on first use), so reaching it costs no TLS init guard.
struct IdState {
  std::uint64_t last_stamp = 0;  // 48-bit ms << 12 | 12-bit sub-ms fraction
  std::uint64_t rng = 0;         // 0 until seeded

  void seed() noexcept {
    std::uint64_t seed = std::hash<std::thread::id>{}(std::this_thread::get_id());
    try {
      std::random_device rd;
      seed ^= (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    } catch (...) {
      // No entropy source: the thread id and the clock still keep ids apart.
      seed ^= static_cast<std::uint64_t>(system_ns());
    }
    rng = seed != 0 ? seed : 0x9e3779b97f4a7c15ULL;
  }

  std::uint64_t next_random() noexcept {  // xorshift64*
    if (rng == 0) seed();
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dULL;
  }
};

constexpr char kHex[] = "0123456789abcdef";

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace
}  // namespace detail

EventId EventId::generate() noexcept {
  return generate(detail::wall_now());
}

EventId EventId::generate(std::chrono::system_clock::time_point at) noexcept {
  thread_local constinit detail::IdState state;
  const auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count();
  const auto unsigned_ns = static_cast<std::uint64_t>(ns < 0 ? 0 : ns);
  const std::uint64_t ms = unsigned_ns / 1'000'000;
  const std::uint64_t fraction = (unsigned_ns % 1'000'000) * 4096 / 1'000'000;  // RFC 9562 §6.2 m.3
  std::uint64_t stamp = ((ms & 0xffff'ffff'ffffULL) << 12) | fraction;
  if (stamp <= state.last_stamp) stamp = state.last_stamp + 1;
  state.last_stamp = stamp;
  const std::uint64_t high = ((stamp >> 12) << 16) | 0x7000ULL | (stamp & 0xfffULL);
  const std::uint64_t low = 0x8000'0000'0000'0000ULL | (state.next_random() >> 2);
  return EventId(high, low);
}

std::optional<EventId> EventId::parse(std::string_view text) noexcept {
  if (text.size() != 36) return std::nullopt;
  std::uint64_t parts[2] = {0, 0};
  int nibble = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return std::nullopt;
      continue;
    }
    const int v = detail::hex_value(text[i]);
    if (v < 0) return std::nullopt;
    std::uint64_t& part = parts[nibble / 16];
    part = (part << 4) | static_cast<std::uint64_t>(v);
    ++nibble;
  }
  return EventId(parts[0], parts[1]);
}

std::string EventId::str() const {
  std::string out(36, '-');
  std::size_t pos = 0;
  for (int nibble = 0; nibble < 32; ++nibble) {
    if (pos == 8 || pos == 13 || pos == 18 || pos == 23) ++pos;
    const std::uint64_t part = nibble < 16 ? high_ : low_;
    const int shift = 60 - 4 * (nibble % 16);
    out[pos++] = detail::kHex[(part >> shift) & 0xf];
  }
  return out;
}

std::chrono::system_clock::time_point EventId::timestamp() const noexcept {
  const auto ms = static_cast<std::int64_t>(high_ >> 16);
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::milliseconds(ms)));
}

std::ostream& operator<<(std::ostream& os, const EventId& id) {
  return os << id.str();
}

}  // namespace emissions
