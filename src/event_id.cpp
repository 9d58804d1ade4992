// UUIDv7 event ids (RFC 9562): generation, text form, parsing; and (for now) wall_now().
//
// The layout of an id made here (RFC 9562 §5.7; the sub-millisecond fraction is §6.2
// method 3, the counter a per-thread form of §6.2's monotonic random, method 2):
//   high 64 bits  unix_ts_ms (48) | ver 0111 (4) | rand_a (12): fraction of the ms, 1/4096 ms
//   low 64 bits   var 10 (2) | thread tag (22) | counter (40)
//
// Ids of one thread strictly increase, byte-wise. An id stamped later (ms and fraction) than
// the thread's last one starts the counter at a random value below 2^39; one stamped the
// same or earlier takes the last id's stamp and adds a random 1..4096 to the counter. The
// counter therefore holds at least 2^27 ids per stamp, and only past that does an id borrow
// the next fraction (244 ns): an id's time runs ahead of the time it was given by 1 ms only
// after 2^39 ids in that millisecond, which no thread can make.
//
// The thread tag differs between the threads of a process (among its first 2^22 threads to
// make ids), so two threads never make the same id; across processes the tag and the
// counter's start are random.
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

constexpr int kCounterBits = 40;
constexpr std::uint64_t kCounterMax = (std::uint64_t{1} << kCounterBits) - 1;
constexpr int kTagBits = 22;
constexpr std::uint64_t kTagMask = (std::uint64_t{1} << kTagBits) - 1;
constexpr std::uint64_t kVariant = std::uint64_t{0b10} << 62;
constexpr std::uint64_t kMillisMask = 0xffff'ffff'ffffULL;  // 48 bits

// 64 bits from the entropy source, mixed with the thread and the time (all there is when
// the entropy source fails).
std::uint64_t draw_seed() noexcept {
  std::uint64_t seed = std::hash<std::thread::id>{}(std::this_thread::get_id()) ^
                       static_cast<std::uint64_t>(system_ns());
  try {
    std::random_device rd;
    seed ^= (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  } catch (...) {
    // No entropy source: the thread tags still keep this process's ids apart.
  }
  return seed;
}

std::uint64_t process_key() noexcept {
  static const std::uint64_t key = draw_seed();
  return key;
}

constinit std::atomic<std::uint64_t> g_threads_seeded{0};

// Per-thread generator state. Constant-initialised (seeded on first use), so reaching it
// costs no TLS init guard.
struct IdState {
  std::uint64_t last_stamp = 0;  // of the last id: unix ms << 12 | 12-bit fraction
  std::uint64_t counter = 0;     // of the last id
  std::uint64_t tag_bits = 0;    // variant and thread tag, the counter's bits left 0
  std::uint64_t rng = 0;         // 0 until seeded

  void seed() noexcept {
    // index * odd + key is one-to-one modulo 2^22: the first 2^22 threads get distinct tags.
    const std::uint64_t index = g_threads_seeded.fetch_add(1, std::memory_order_relaxed);
    const std::uint64_t tag = (index * 0x9e3779b97f4a7c15ULL + process_key()) & kTagMask;
    tag_bits = kVariant | (tag << kCounterBits);
    const std::uint64_t seed = draw_seed() ^ (index * 0xbf58476d1ce4e5b9ULL);
    rng = seed != 0 ? seed : 0x9e3779b97f4a7c15ULL;
  }

  std::uint64_t next_random() noexcept {  // xorshift64*
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dULL;
  }
};

// Unix milliseconds (48 bits) and the fraction of the millisecond in 1/4096 ms (12 bits).
std::uint64_t stamp_of(std::chrono::system_clock::time_point at) noexcept {
  const auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count();
  const auto unsigned_ns = static_cast<std::uint64_t>(ns < 0 ? 0 : ns);
  const std::uint64_t ms = (unsigned_ns / 1'000'000) & kMillisMask;
  const std::uint64_t fraction = (unsigned_ns % 1'000'000) * 4096 / 1'000'000;
  return (ms << 12) | fraction;
}

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
  if (state.rng == 0) state.seed();
  const std::uint64_t stamp = detail::stamp_of(at);
  const std::uint64_t random = state.next_random();
  const std::uint64_t fresh_counter = random >> (64 - (detail::kCounterBits - 1));  // < 2^39
  if (stamp > state.last_stamp) {
    state.last_stamp = stamp;
    state.counter = fresh_counter;
  } else {
    const std::uint64_t next = state.counter + 1 + (random & 0xfff);  // + 1..4096
    if (next <= detail::kCounterMax) {
      state.counter = next;
    } else {
      ++state.last_stamp;  // the counter is full: borrow the next fraction
      state.counter = fresh_counter;
    }
  }
  const std::uint64_t ms = (state.last_stamp >> 12) & detail::kMillisMask;
  const std::uint64_t high = (ms << 16) | 0x7000ULL | (state.last_stamp & 0xfffULL);
  return EventId(high, state.tag_bits | state.counter);
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
