// UUIDv7 event ids (RFC 9562): generation, text form, parsing.
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
// counter's start are random, and a forked child seeds its threads again.
#include "emissions/event_id.hpp"

#include <array>
#include <atomic>
#include <cstring>
#include <ostream>
#include <random>
#include <thread>

#include "events/event_id_text.hpp"
#include "time/system_time.hpp"
#include "time/wall_clock.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace emissions {
namespace detail {
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
                       static_cast<std::uint64_t>(system_time_ns());
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

// Forks since the process started, counted in each child. The child of fork() inherits the
// forking thread's generator state; seeing the count change, it seeds again instead of
// making the ids its parent makes next.
constinit std::atomic<std::uint64_t> g_forks{0};

void count_fork() noexcept {
  g_forks.fetch_add(1, std::memory_order_relaxed);
}

// Per-thread generator state. Constant-initialised (seeded on first use), so reaching it
// costs no TLS init guard.
struct IdState {
  std::uint64_t last_stamp = 0;  // of the last id: unix ms << 12 | 12-bit fraction
  std::uint64_t counter = 0;     // of the last id
  std::uint64_t tag_bits = 0;    // variant and thread tag, the counter's bits left 0
  std::uint64_t rng = 0;         // 0 until seeded
  std::uint64_t forks = 0;       // g_forks when seeded

  bool needs_seed() const noexcept {
    return rng == 0 || forks != g_forks.load(std::memory_order_relaxed);
  }

  // On a thread's first id, and on its first id in a forked child.
  void seed() noexcept {
#if defined(__unix__) || defined(__APPLE__)
    // Fails only without memory; then a forked child may repeat ids its parent makes in the
    // same tick.
    [[maybe_unused]] static const bool kForksCounted =
        pthread_atfork(nullptr, nullptr, &count_fork) == 0;
#endif
    forks = g_forks.load(std::memory_order_relaxed);
    // index * odd + key is one-to-one modulo 2^22: the first 2^22 threads get distinct tags.
    const std::uint64_t index = g_threads_seeded.fetch_add(1, std::memory_order_relaxed);
    const std::uint64_t tag = (index * 0x9e3779b97f4a7c15ULL + process_key()) & kTagMask;
    tag_bits = kVariant | (tag << kCounterBits);
    const std::uint64_t seed = draw_seed() ^ (index * 0xbf58476d1ce4e5b9ULL);
    rng = seed != 0 ? seed : 0x9e3779b97f4a7c15ULL;
    if (last_stamp != 0) {
      // Seeded again (in a forked child) with a new tag: the next id moves on by one fraction
      // so it still sorts after this thread's earlier ids.
      ++last_stamp;
      counter = next_random() >> (64 - (kCounterBits - 1));
    }
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
  if (state.needs_seed()) [[unlikely]] {
    state.seed();
  }
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
  const std::array<char, 36> text = detail::event_id_text(*this);
  return std::string(text.data(), text.size());
}

char* EventId::write_to(char* out) const noexcept {
  const std::array<char, kTextSize> text = detail::event_id_text(*this);
  std::memcpy(out, text.data(), text.size());
  return out + text.size();
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
