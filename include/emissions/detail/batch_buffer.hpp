// emissions/detail/batch_buffer.hpp: the types BatchBuffer<T> is built from (settings,
// partitions, round-robin cursors, jitter) and the parts of it compiled in
// src/batch_buffer/ (option checks, statuses, telemetry, seeds). Not part of the API.
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "emissions/clock.hpp"
#include "emissions/deadline.hpp"
#include "emissions/detail/partition_mutex.hpp"
#include "emissions/status.hpp"

// Inlining hints for BatchBuffer's insert path: the fast path inline, the rest out of line
// (where the compiler would otherwise guess the other way round).
#if defined(__GNUC__) || defined(__clang__)
#define EMISSIONS_DETAIL_HOT inline __attribute__((always_inline))
#define EMISSIONS_DETAIL_COLD __attribute__((noinline))
#else
#define EMISSIONS_DETAIL_HOT inline
#define EMISSIONS_DETAIL_COLD
#endif

namespace emissions::detail {

// The options that do not depend on T, as the buffer keeps them.
struct BatchBufferSettings {
  std::string name;
  std::size_t partitions = 0;
  std::size_t max_size = 0;
  std::size_t max_size_jitter = 0;
  std::chrono::milliseconds flush_interval{};
  std::chrono::milliseconds flush_jitter{};
  std::chrono::milliseconds flush_timeout{};
  std::chrono::milliseconds insert_timeout{};
  nlohmann::json flush_meta;
  std::shared_ptr<Clock> clock;
};

// The settings checked (ConfigError naming the first invalid field, or the missing flush
// callable, and its value; the bounds are those documented in emissions/batch_buffer.hpp),
// with the real steady clock when none was given.
BatchBufferSettings checked_settings(BatchBufferSettings settings, bool has_flush);

// splitmix64: jitter needs speed and spread, not cryptographic quality. Not thread-safe;
// each owner guards its own generator.
class JitterRng {
 public:
  explicit JitterRng(std::uint64_t seed) noexcept : state_(seed) {}
  std::uint64_t next() noexcept {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, max]; the modulo bias is far below anything jitter could notice.
  std::uint64_t upto(std::uint64_t max) noexcept {
    if (max == 0) return 0;
    if (max == UINT64_MAX) return next();
    return next() % (max + 1);
  }

 private:
  std::uint64_t state_;
};

std::uint64_t random_seed() noexcept;
// Unique per buffer for the life of the process (addresses could be reused).
std::uint64_t next_batch_buffer_id() noexcept;

// t + d, clamped to time_point::max() (durations may be milliseconds::max(): "never").
inline Clock::time_point add_saturating(Clock::time_point t, std::chrono::milliseconds d) noexcept {
  constexpr auto kMaxMs =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::duration::max());
  if (d <= std::chrono::milliseconds::zero()) return t;
  if (d >= kMaxMs) return Clock::time_point::max();
  const auto add = std::chrono::duration_cast<Clock::duration>(d);
  if (t > Clock::time_point::max() - add) return Clock::time_point::max();
  return t + add;
}

// Telemetry, built only when telemetry::enabled(). Never throw. Start functions return
// the monotonic start time for the matching stop.
void batch_insert_start(const BatchBufferSettings& s, std::optional<std::size_t> partition,
                        std::size_t size, std::int64_t start_ns) noexcept;
void batch_insert_stop(const BatchBufferSettings& s, std::optional<std::size_t> partition,
                       std::size_t size, std::int64_t start_ns, const Status& status) noexcept;
void batch_flush_start(const BatchBufferSettings& s, std::size_t partition, std::size_t size,
                       std::int64_t start_ns) noexcept;
void batch_flush_stop(const BatchBufferSettings& s, std::size_t partition, std::size_t size,
                      std::int64_t start_ns, const Status& status, bool timed_out) noexcept;
void batch_flush_exception(const BatchBufferSettings& s, std::size_t partition, std::size_t size,
                           std::int64_t start_ns, std::string_view kind,
                           std::string_view reason) noexcept;
// batch_flush_exception of kind "timeout": the flush has run past flush_timeout.
void batch_flush_overdue(const BatchBufferSettings& s, std::size_t partition, std::size_t size,
                         std::int64_t start_ns) noexcept;

// what() of the exception, or "unknown exception".
std::string describe_exception(const std::exception_ptr& error) noexcept;
Status batch_closed_status(const BatchBufferSettings& s);
Status batch_insert_timeout_status(const BatchBufferSettings& s, std::size_t partition);
Status batch_flush_timeout_status(const BatchBufferSettings& s, std::size_t partition);

// What sync_flush() or shutdown() left behind at their deadline.
struct BatchBacklog {
  std::size_t partitions = 0;  // still flushing
  std::size_t pending = 0;     // items not yet flushed...
  std::size_t in_flight = 0;   // ...of which in a flush call that has not returned
};
Status batch_deadline_status(const BatchBufferSettings& s, std::size_t partition,
                             const BatchBacklog& left);
Status batch_shutdown_timeout_status(const BatchBufferSettings& s, const BatchBacklog& left);

// now + timeout on the steady clock; a timeout too large to add means "no limit".
inline Deadline deadline_in(std::chrono::milliseconds timeout) noexcept {
  constexpr auto kLongest =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::nanoseconds::max());
  return timeout >= kLongest ? Deadline::max() : deadline_after(timeout);
}

// Waits on `cv` (with `lock` held) until pred() holds (true) or the steady-clock `deadline`
// passes (false). Deadline::max() waits without limit.
template <typename Lock, typename CondVar, typename Predicate>
bool wait_until(Lock& lock, CondVar& cv, Deadline deadline, Predicate pred) {
  if (deadline == Deadline::max()) {
    cv.wait(lock, pred);
    return true;
  }
  return cv.wait_until(lock, deadline, pred);
}

// Each thread's round-robin partition per buffer, in a small direct-mapped cache keyed by
// buffer id: no shared counter on the insert path. A thread alternating between buffers
// whose ids collide re-seeds the slot, which only costs a relaxed fetch_add.
struct RoundRobinCursor {
  static constexpr std::size_t kAnySize = static_cast<std::size_t>(-1);
  std::uint64_t owner = 0;          // buffer id
  std::size_t current = 0;          // the partition this thread's next insert goes to
  std::size_t expected = kAnySize;  // its size after this thread's last insert there
};
inline constexpr std::size_t kRoundRobinSlots = 16;
inline thread_local std::array<RoundRobinCursor, kRoundRobinSlots> t_round_robin{};

// Moves from[first..] to the end of `to`, needing of T only that it is move-constructible
// (vector::insert would also need move-assignment). Reserves first, so a bad_alloc leaves
// both vectors unchanged; the moved-from elements stay in `from`.
template <typename T>
void move_append(std::vector<T>& to, std::vector<T>& from, std::size_t first) {
  to.reserve(to.size() + (from.size() - first));
  for (std::size_t k = first; k < from.size(); ++k)
    to.push_back(std::move(from[k]));
}

// One sync_flush() caller waiting for a partition: done once every item that was in the
// partition when it asked (positions below `target`) has been flushed or dumped.
struct SyncWaiter {
  std::uint64_t target = 0;
  Status result;
  bool done = false;
};

// One partition. Items are numbered by position in the order the partition accepted them;
// `items` holds [pos_items, pos_items + items.size()), the batch being flushed holds
// [slot_base, slot_end). Aligned so that neighbouring partitions' locks share no cache line.
template <typename T>
struct alignas(64) BatchPartition {
  explicit BatchPartition(std::uint64_t seed) : size_rng(seed) {}

  PartitionMutex mu;  // guards everything below
  // Touched by every insert.
  std::vector<T> items;   // the batch being filled
  std::size_t limit = 0;  // max_size + jitter; the batch is full at this size
  bool closed = false;
  bool busy = false;  // a batch was handed to the flusher and its flush has not returned

  std::vector<T> slot;   // the handed-off batch, until the flusher takes it
  std::vector<T> spare;  // an empty, reserved vector to swap in at the next hand-off
  std::uint64_t pos_items = 0;
  std::uint64_t slot_base = 0;
  std::uint64_t slot_end = 0;
  std::uint64_t flush_through = 0;  // flush()/timer/sync_flush: flush positions below this
  std::uint64_t batches_started = 0;
  std::uint64_t flush_count = 0;
  std::optional<Clock::time_point> last_flush;
  bool stuck = false;    // the running flush exceeded flush_timeout
  bool started = false;  // the flusher thread is running
  bool exited = false;   // the flusher thread has finished (after shutdown)
  std::vector<SyncWaiter*> waiters;
  JitterRng size_rng;
  std::condition_variable_any flusher_cv;  // the flusher waits for work
  std::condition_variable_any changed_cv;  // room for inserts, flush done, flusher exited
};

}  // namespace emissions::detail
