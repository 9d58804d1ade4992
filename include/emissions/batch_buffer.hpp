// emissions/batch_buffer.hpp: partitioned batching, flushed by size or by time.
//
// BatchBuffer<T> spreads items over `partitions` independent batches. A partition hands its
// batch to the flush callable, on that partition's own flusher thread, when the batch
// reaches max_size (+ jitter) or when its flush_interval (+ jitter) expires. Standalone: no
// Emitter needed.
//
//   emissions::BatchBuffer<Row> rows(
//       {.name = "rows", .partitions = 4, .max_size = 1000, .flush_interval = 5s},
//       [&](std::vector<Row>&& batch, const emissions::FlushContext& ctx) -> emissions::Status {
//         return db.insert_all(batch, ctx.meta);
//       });
//   emissions::Status s = rows.insert(Row{1});  // ok, timeout (partition full) or closed
//   rows.sync_flush();                          // e.g. in a drain: everything so far is flushed
//
// Partitioning. Without partition_by, round-robin by batch: each inserting thread keeps
// adding to one partition until its insert (or insert_batch) fills that partition's batch,
// then moves to the next; it also moves on when it finds the partition full, or locked by
// another thread. Consecutive batches thus come from different partitions, and concurrent
// threads rarely share one. No shared counter is touched. With partition_by, an item goes
// to partition `partition_by(item) % partitions`: one key always lands in one partition,
// and one thread's items of a key are flushed in insertion order.
//
// Flushing. The insert that fills a batch swaps in an empty one and wakes the flusher, so
// the partition keeps accepting while the old batch flushes; flushes never run under a
// partition's lock. One timer thread drives every interval and flush_timeout, reading the
// clock once per wake-up, never per insert. An empty partition is not flushed (the callable
// never sees an empty batch). A flush gets at most max_size + max_size_jitter items.
//
// Backpressure. When a partition is full while its previous flush still runs, insert waits
// up to insert_timeout and then returns timeout without consuming the item. A round-robin
// insert first gives that flush up to 1 ms (its flusher may only need a CPU), then takes any
// partition with room, and waits only while all of them are full. Nothing accepted is lost:
// destruction and shutdown() flush everything that remains.
//
// Failures. A non-ok Status from the callable goes to sync_flush() and telemetry; the batch
// is not retried. A throw becomes [batch_buffer, flush, exception] (kind "exception") and
// Errc::internal. A flush running past flush_timeout is reported as [batch_buffer, flush,
// exception] (kind "timeout"); it cannot be interrupted, so its partition's next flush (and
// the buffer's destruction) waits for it, while inserts fill the fresh batch until it too is
// full. None of these stop the buffer.
//
// Time. The options' durations (intervals, flush_timeout, insert_timeout) are measured on
// `clock`; with a ManualClock, tests advance time instead of sleeping. The limits a caller
// puts on sync_flush() and shutdown() are real time (a Deadline, on the steady clock), so
// that they hold whatever the buffer's clock does.
//
// Cost. 1 + `partitions` threads, parked when idle (the timer wakes once per partition per
// interval, to find nothing to do). Each partition reserves min(max_size + max_size_jitter,
// 1 MiB / sizeof(T)) items twice. T needs only to be move-constructible (and copyable for
// insert(const T&)); with a throwing move constructor, insert_batch is all-or-nothing only
// for allocation failures.
//
// Telemetry. Metadata {"buffer", "partition", "size"} (partition is null for an insert_batch
// spread by partition_by). [batch_buffer, insert, start|stop] (stop adds "status");
// [batch_buffer, flush, start|stop|exception] (stop adds "status" and, for a flush that ran
// past flush_timeout, "timed_out": true; exception adds "kind" and "reason"). While any
// handler is attached anywhere, every insert builds its two events: far slower than the
// untraced insert, which only checks telemetry::enabled().
//
// Not for: delivery that must survive a crash (batches live in memory only).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "emissions/clock.hpp"
#include "emissions/deadline.hpp"
#include "emissions/detail/batch_buffer.hpp"
#include "emissions/status.hpp"
#include "emissions/telemetry.hpp"

namespace emissions {

// What a flush call is about. Valid only during the call.
//
//   [](std::vector<Row>&& rows, const FlushContext& ctx) {
//     log("{} partition {}: {} rows", ctx.buffer, ctx.partition, ctx.size);
//     return Status{};
//   }
struct FlushContext {
  std::string_view buffer;     // BatchBufferOptions::name
  std::size_t partition;       // 0-based
  std::size_t size;            // items in the batch (as handed over)
  const nlohmann::json& meta;  // BatchBufferOptions::flush_meta
};

// The largest accepted partitions (each one owns a thread).
inline constexpr std::size_t kMaxBatchBufferPartitions = 1024;
// The largest accepted max_size and max_size_jitter (items).
inline constexpr std::size_t kMaxBatchBufferSize = std::size_t{1} << 24;
// The longest accepted flush_interval, flush_jitter, flush_timeout and insert_timeout.
inline constexpr std::chrono::milliseconds kMaxBatchBufferTimeout = std::chrono::hours(24);

// Options, in the order and with the defaults of DataBuffer (the Elixir library this
// buffer follows). Validated by the constructor: a value out of its range throws
// ConfigError naming the field and the value ("BatchBufferOptions.max_size must be in
// [1, 16777216] (got 0)").
//
//   BatchBufferOptions<Row>{.name = "rows", .max_size = 500, .flush_jitter = 0ms}
template <typename T>
struct BatchBufferOptions {
  std::string name{};          // required, non-empty; in FlushContext and telemetry
  std::size_t partitions = 1;  // 1..kMaxBatchBufferPartitions; a flusher thread each
  // 1..kMaxBatchBufferSize: a partition flushes when it holds this many...
  std::size_t max_size = 5000;
  // ...plus 0..jitter (0..kMaxBatchBufferSize), drawn again after each flush.
  std::size_t max_size_jitter = 0;
  // The durations, each at most kMaxBatchBufferTimeout (24 h):
  std::chrono::milliseconds flush_interval{10'000};  // >= 1 ms: flush at least this often...
  std::chrono::milliseconds flush_jitter{2'000};     // ...plus 0..jitter (>= 0), redrawn
  std::chrono::milliseconds flush_timeout{60'000};   // >= 1 ms: longer flushes are reported
  std::chrono::milliseconds insert_timeout{5'000};   // >= 0: longest wait of a full insert
  nlohmann::json flush_meta = nullptr;               // FlushContext::meta
  // The partition key; empty means round-robin. Called on the inserting thread (not at all
  // with one partition); what it throws reaches the caller of insert.
  std::function<std::uint64_t(const T&)> partition_by{};
  // The time source; null means the real steady clock (SteadyClock).
  std::shared_ptr<Clock> clock{};
};

// One partition's state, from BatchBuffer::info().
//
//   for (const auto& p : buf.info()) std::cout << p.partition << ": " << p.size << '\n';
struct BatchBufferPartitionInfo {
  std::size_t partition = 0;
  std::size_t size = 0;                         // items waiting, not yet handed to a flush
  std::size_t in_flight = 0;                    // items in the flush under way (0 if none)
  std::uint64_t flush_count = 0;                // flush calls that returned (or threw)
  std::optional<Clock::time_point> last_flush;  // when the latest of them returned
  Clock::time_point next_flush{};               // when the interval timer fires next
  bool flushing = false;                        // a flush is running or about to start
};

// See the top of this file. All members are thread-safe.
template <typename T>
class BatchBuffer {
 public:
  using Flush = std::function<Status(std::vector<T>&& items, const FlushContext& ctx)>;

  // Validates `options` (ConfigError, also for an empty `on_flush`) and starts the
  // partitions' flusher threads and the timer thread, returning once they wait for work.
  // `on_flush` runs on the flusher thread of the batch's partition, one call at a time per
  // partition, with no lock held; it may insert into this buffer, but must not call
  // sync_flush() or shutdown() on it.
  BatchBuffer(BatchBufferOptions<T> options, Flush on_flush);
  // shutdown() without a time limit: flushes what remains and waits for running flushes.
  ~BatchBuffer();
  BatchBuffer(const BatchBuffer&) = delete;
  BatchBuffer& operator=(const BatchBuffer&) = delete;

  // Adds one item. ok; timeout when its partition stayed full (flush still running) for
  // insert_timeout; closed after shutdown. On error the item is untouched. Blocks only when
  // the partition is full; otherwise a short lock, no allocation (amortised), no clock read.
  Status insert(T&& item) { return insert_one(std::move(item)); }
  Status insert(const T& item) { return insert_one(item); }
  // Adds all items or none, blocking like insert(). Round-robin puts the whole batch into
  // the next partition, in order; partition_by splits it by key, keeping the order within
  // each partition. A partition below its limit takes its whole group (the excess opens its
  // next batch). Errors as insert(); on error nothing was accepted (and `items` is gone:
  // pass a copy to retry).
  Status insert_batch(std::vector<T> items);

  // Asks every non-empty partition to flush what it holds. Returns at once (short locks).
  void flush();
  // Flushes everything inserted before the call and waits for those flushes, until
  // `deadline` at the latest: one Status per partition, in partition order: ok when it had
  // nothing to flush, else the first non-ok result of the flushes it waited for; timeout as
  // soon as one of them runs past flush_timeout, or when the deadline passes first (the
  // message says how many items were still waiting and how many in a running flush; they
  // are flushed later all the same); closed after shutdown. Blocks; safe to call from any
  // thread but the flush callable's.
  std::vector<Status> sync_flush(Deadline deadline = Deadline::max());
  // Removes and returns the items not yet handed to a flush, partition by partition, each
  // in insertion order, without calling flush. Short locks; wakes waiting inserts.
  std::vector<T> dump();

  // Items waiting in the partitions (not counting batches being flushed). Short locks.
  [[nodiscard]] std::size_t size() const;
  [[nodiscard]] std::vector<BatchBufferPartitionInfo> info() const;
  [[nodiscard]] const std::string& name() const noexcept { return settings_.name; }
  [[nodiscard]] std::size_t partitions() const noexcept { return n_; }

  // Stops accepting (insert returns closed), flushes what remains and joins the threads,
  // returning by `deadline`. timeout when flushes were still running then (the message
  // counts the partitions and the items not yet flushed); the flushers then carry on with
  // what remains, and a later shutdown() or the destructor joins them (a thread is never
  // detached). dump() after a timeout takes back what no flush has taken yet. Blocks;
  // idempotent; must not be called from the flush callable.
  Status shutdown(Deadline deadline);
  // shutdown(deadline_after(timeout)); the default waits as long as it takes.
  Status shutdown(std::chrono::milliseconds timeout = std::chrono::milliseconds::max());

 private:
  using Partition = detail::BatchPartition<T>;
  using Lock = std::unique_lock<detail::PartitionMutex>;
  struct Group {
    std::size_t partition;
    std::vector<T>* items;
  };

  static constexpr std::size_t kAnySize = detail::RoundRobinCursor::kAnySize;
  static constexpr std::chrono::microseconds kSpillGrace{1000};
  template <typename U>
  EMISSIONS_DETAIL_HOT Status insert_one(U&& item);
  template <typename U>
  EMISSIONS_DETAIL_HOT Status insert_into(detail::RoundRobinCursor* c, std::size_t i, U&& item);
  template <typename U>
  EMISSIONS_DETAIL_HOT Status append_one(detail::RoundRobinCursor* c, std::size_t i, Lock& lock,
                                         U&& item);
  template <typename U>
  EMISSIONS_DETAIL_COLD Status insert_contended(detail::RoundRobinCursor* c, std::size_t i,
                                                bool inserter, U&& item);
  template <typename U>
  EMISSIONS_DETAIL_COLD Status insert_traced(detail::RoundRobinCursor* c, std::size_t i, U&& item);
  template <typename U>
  EMISSIONS_DETAIL_COLD Status insert_blocked(std::size_t i, Lock& lock, U&& item);
  template <typename U>
  Status insert_waiting(std::size_t i, Lock& lock, U&& item);
  template <typename Place>
  Status insert_anywhere(std::size_t first, Place&& place);
  Status insert_groups(std::vector<Group>& groups);
  void note_room();
  // This thread's round-robin state for this buffer; continue_run() keeps its inserts on
  // partition i, or moves them to the next one once i has handed off a batch.
  EMISSIONS_DETAIL_HOT detail::RoundRobinCursor& cursor() noexcept;
  EMISSIONS_DETAIL_COLD void reseed(detail::RoundRobinCursor& c) noexcept;
  void continue_run(std::size_t i, bool handed_off) noexcept;

  // These run with the partition locked.
  [[nodiscard]] bool has_room(const Partition& p) const noexcept {
    return p.items.size() < p.limit;
  }
  void take_batch(Partition& p);
  EMISSIONS_DETAIL_COLD void hand_off(Partition& p, Lock& lock);  // take_batch, unlock, wake
  void resolve_waiters(Partition& p);
  template <typename U>
  bool push(Partition& p, Lock& lock, U&& item);  // true: it handed off a batch
  bool append_group(Partition& p, std::vector<T>& group);

  void run_flusher(std::size_t i);
  Status run_flush(std::size_t i, std::uint64_t batch, std::vector<T>& items);
  void run_timer();
  Clock::time_point next_interval_deadline(Clock::time_point now);  // timer_mu_ held
  void wake_all();
  void join_threads();

  detail::BatchBufferSettings settings_;
  std::function<std::uint64_t(const T&)> partition_by_;
  Flush flush_;
  Clock* clock_ = nullptr;  // settings_.clock.get()
  std::size_t reserve_ = 0;
  std::uint64_t id_ = 0;
  std::size_t n_ = 0;         // partitions
  bool round_robin_ = false;  // no partition_by and more than one partition
  std::atomic<std::size_t> round_robin_seed_{0};
  std::vector<std::unique_ptr<Partition>> parts_;

  // Lock order: a partition's mu before room_mu_; timer_mu_ is never held with either.
  mutable std::mutex timer_mu_;  // guards the timer fields
  std::condition_variable timer_cv_;
  std::vector<detail::BatchTimerSlot> timer_slots_;
  detail::JitterRng timer_rng_;
  bool timer_kick_ = false;
  bool timer_stop_ = false;

  // Round-robin inserts wait here when every partition is full.
  std::mutex room_mu_;
  std::condition_variable room_cv_;
  std::uint64_t room_epoch_ = 0;  // bumped whenever a partition may have made room

  std::mutex shutdown_mu_;
  bool joined_ = false;
  std::vector<std::thread> flushers_;
  std::thread timer_;
  Clock::Subscription subscription_;
};

// --- implementation -----------------------------------------------------------------------

template <typename T>
BatchBuffer<T>::BatchBuffer(BatchBufferOptions<T> options, Flush on_flush)
    : settings_{std::move(options.name), options.partitions,     options.max_size,
                options.max_size_jitter, options.flush_interval, options.flush_jitter,
                options.flush_timeout,   options.insert_timeout, std::move(options.flush_meta),
                std::move(options.clock)},
      partition_by_(std::move(options.partition_by)),
      flush_(std::move(on_flush)),
      timer_rng_(detail::random_seed()) {
  detail::validate_batch_buffer(settings_, static_cast<bool>(flush_));
  if (!settings_.clock) settings_.clock = std::make_shared<SteadyClock>();
  clock_ = settings_.clock.get();
  constexpr std::size_t kReserveBytes = std::size_t{1} << 20;
  reserve_ = std::min(settings_.max_size + settings_.max_size_jitter,
                      std::max<std::size_t>(1, kReserveBytes / sizeof(T)));
  id_ = detail::next_batch_buffer_id();
  n_ = settings_.partitions;
  round_robin_ = !partition_by_ && n_ > 1;

  const Clock::time_point now = clock_->now();
  parts_.reserve(n_);
  timer_slots_.resize(n_);
  for (std::size_t i = 0; i < n_; ++i) {
    auto p = std::make_unique<Partition>(timer_rng_.next());
    p->limit = settings_.max_size + p->size_rng.upto(settings_.max_size_jitter);
    p->items.reserve(reserve_);
    p->spare.reserve(reserve_);
    p->waiters.reserve(4);
    parts_.push_back(std::move(p));
    timer_slots_[i].deadline = next_interval_deadline(now);
  }
  subscription_ = clock_->subscribe([this] { wake_all(); });
  flushers_.reserve(n_);
  try {
    for (std::size_t i = 0; i < n_; ++i)
      flushers_.emplace_back([this, i] { run_flusher(i); });
    timer_ = std::thread([this] { run_timer(); });
  } catch (...) {
    for (auto& p : parts_) {
      Lock lock(p->mu);
      p->closed = true;
      p->flusher_cv.notify_all();
    }
    join_threads();
    throw;
  }
  // Return once every flusher is parked, so that none holds its partition's lock while the
  // first inserts arrive (a round-robin insert moves away from a locked partition).
  for (auto& p : parts_) {
    Lock lock(p->mu);
    p->changed_cv.wait(lock, [&] { return p->started; });
  }
}

template <typename T>
BatchBuffer<T>::~BatchBuffer() {
  (void)shutdown(Deadline::max());
  subscription_.reset();
}

template <typename T>
Status BatchBuffer<T>::shutdown(std::chrono::milliseconds timeout) {
  return shutdown(detail::deadline_in(timeout));
}

template <typename T>
Status BatchBuffer<T>::shutdown(Deadline deadline) {
  std::lock_guard guard(shutdown_mu_);
  if (joined_) return {};
  for (auto& p : parts_) {
    {
      Lock lock(p->mu);
      p->closed = true;
    }
    p->flusher_cv.notify_all();
    p->changed_cv.notify_all();  // waiting inserts return closed
  }
  note_room();
  detail::BatchBacklog left;
  for (auto& p : parts_) {
    Lock lock(p->mu);
    if (detail::wait_until(lock, p->changed_cv, deadline, [&] { return p->exited; })) continue;
    const std::size_t in_flight = p->busy ? p->slot_end - p->slot_base : 0;
    ++left.partitions;
    left.pending += p->items.size() + in_flight;
    left.in_flight += in_flight;
  }
  if (left.partitions != 0) return detail::batch_shutdown_timeout_status(settings_, left);
  join_threads();
  joined_ = true;
  return {};
}

template <typename T>
void BatchBuffer<T>::join_threads() {
  for (auto& t : flushers_)
    if (t.joinable()) t.join();
  {
    std::lock_guard lock(timer_mu_);
    timer_stop_ = true;
  }
  timer_cv_.notify_all();
  if (timer_.joinable()) timer_.join();
}

// Called by the clock after a manual advance: every clock-bounded wait re-checks its deadline.
template <typename T>
void BatchBuffer<T>::wake_all() {
  {
    std::lock_guard lock(timer_mu_);
    timer_kick_ = true;
  }
  timer_cv_.notify_all();
  for (auto& p : parts_) {
    { std::lock_guard lock(p->mu); }  // a waiter is either before its check or waiting
    p->changed_cv.notify_all();
  }
  { std::lock_guard lock(room_mu_); }
  room_cv_.notify_all();
}

template <typename T>
detail::RoundRobinCursor& BatchBuffer<T>::cursor() noexcept {
  detail::RoundRobinCursor& c = detail::t_round_robin[id_ % detail::kRoundRobinSlots];
  if (c.owner != id_) [[unlikely]]
    reseed(c);  // this thread's first insert (or a slot collision)
  return c;
}

template <typename T>
void BatchBuffer<T>::reseed(detail::RoundRobinCursor& c) noexcept {
  c.owner = id_;
  c.current = round_robin_seed_.fetch_add(1, std::memory_order_relaxed) % n_;
  c.expected = kAnySize;
}

template <typename T>
void BatchBuffer<T>::continue_run(std::size_t i, bool handed_off) noexcept {
  detail::RoundRobinCursor& c = cursor();
  c.current = !handed_off ? i : (i + 1 == n_ ? 0 : i + 1);
  c.expected = kAnySize;
}

// The hot path: pick, lock, append, unlock. Everything else is out of line.
template <typename T>
template <typename U>
Status BatchBuffer<T>::insert_one(U&& item) {
  detail::RoundRobinCursor* c = round_robin_ ? &cursor() : nullptr;
  std::size_t i = 0;
  if (c != nullptr) {
    i = c->current;
  } else if (n_ > 1) {
    i = static_cast<std::size_t>(partition_by_(item) % n_);
  }
  if (telemetry::enabled()) [[unlikely]]
    return insert_traced(c, i, std::forward<U>(item));
  return insert_into(c, i, std::forward<U>(item));
}

// `c` is this thread's round-robin cursor, or null (partition_by, or one partition).
template <typename T>
template <typename U>
Status BatchBuffer<T>::insert_into(detail::RoundRobinCursor* c, std::size_t i, U&& item) {
  Partition& p = *parts_[i];
  bool inserter = false;
  if (!p.mu.try_lock_insert(inserter)) [[unlikely]]
    return insert_contended(c, i, inserter, std::forward<U>(item));
  Lock lock(p.mu, std::adopt_lock);
  // Round-robin: if another thread inserted here since this one did, leave it the partition
  // (without adding to it, so that the other thread sees no change and stays).
  if (c != nullptr && c->expected != p.items.size() && c->expected != kAnySize) [[unlikely]] {
    lock.unlock();
    return insert_contended(c, i, true, std::forward<U>(item));
  }
  return append_one(c, i, lock, std::forward<U>(item));
}

// With partition i locked: appends, or hands over to the blocking paths when it is full.
template <typename T>
template <typename U>
Status BatchBuffer<T>::append_one(detail::RoundRobinCursor* c, std::size_t i, Lock& lock,
                                  U&& item) {
  Partition& p = *parts_[i];
  if (!has_room(p) || p.closed) [[unlikely]]
    return insert_blocked(i, lock, std::forward<U>(item));
  p.items.push_back(std::forward<U>(item));
  if (c != nullptr) c->expected = p.items.size();
  if (!has_room(p) && !p.busy) [[unlikely]] {
    hand_off(p, lock);
    if (c != nullptr) continue_run(i, true);  // filled a batch: on to the next partition
  }
  return {};
}

// Partition i's lock was taken (by another insert when `inserter`), or round-robin left it.
template <typename T>
template <typename U>
Status BatchBuffer<T>::insert_contended(detail::RoundRobinCursor* c, std::size_t i, bool inserter,
                                        U&& item) {
  if (c != nullptr && inserter) {
    // Round-robin: take the first partition that no insert holds, rather than share one
    // (back to partition i, waiting, if every one is held).
    std::size_t k = 1;
    for (; k < n_; ++k) {
      const std::size_t j = (i + k) % n_;
      if (parts_[j]->mu.try_lock_insert(inserter)) {
        i = j;
        break;
      }
    }
    if (k == n_) parts_[i]->mu.lock_insert();
    continue_run(i, false);
  } else {
    parts_[i]->mu.lock_insert();  // keyed, or a flusher's brief hold: wait for it
  }
  Lock lock(parts_[i]->mu, std::adopt_lock);
  return append_one(c, i, lock, std::forward<U>(item));
}

template <typename T>
template <typename U>
Status BatchBuffer<T>::insert_traced(detail::RoundRobinCursor* c, std::size_t i, U&& item) {
  const std::int64_t start_ns = telemetry::detail::monotonic_ns();
  detail::batch_insert_start(settings_, i, 1, start_ns);
  Status status = insert_into(c, i, std::forward<U>(item));
  detail::batch_insert_stop(settings_, i, 1, start_ns, status);
  return status;
}

// Partition i was full or closed.
template <typename T>
template <typename U>
Status BatchBuffer<T>::insert_blocked(std::size_t i, Lock& lock, U&& item) {
  if (!round_robin_) return insert_waiting(i, lock, std::forward<U>(item));
  Partition& p = *parts_[i];
  if (!p.closed && p.busy) {
    // The running flush will make room, often as soon as its flusher gets a CPU: give it a
    // moment (yielding this one) before spreading into partitions other threads may be
    // filling. Real time on purpose: this is a scheduling grace, not part of the contract.
    p.changed_cv.wait_for(lock, kSpillGrace, [&] { return p.closed || has_room(p) || !p.busy; });
    if (!p.closed && !has_room(p) && !p.busy) {
      take_batch(p);
      p.flusher_cv.notify_one();
    }
    if (!p.closed && has_room(p)) {
      continue_run(i, push(p, lock, std::forward<U>(item)));
      return {};
    }
  }
  lock.unlock();
  return insert_anywhere(i + 1 == n_ ? 0 : i + 1,
                         [&](std::size_t q, Partition& part, Lock& q_lock) {
                           continue_run(q, push(part, q_lock, std::forward<U>(item)));
                         });
}

// Appends to a partition with room; a batch that becomes full goes to the flusher at once.
template <typename T>
template <typename U>
bool BatchBuffer<T>::push(Partition& p, Lock& lock, U&& item) {
  p.items.push_back(std::forward<U>(item));
  if (has_room(p) || p.busy) return false;
  hand_off(p, lock);
  return true;
}

template <typename T>
void BatchBuffer<T>::hand_off(Partition& p, Lock& lock) {
  take_batch(p);
  lock.unlock();
  p.flusher_cv.notify_one();
}

// One partition (keyed, or the only one): waits on it until it has room.
template <typename T>
template <typename U>
Status BatchBuffer<T>::insert_waiting(std::size_t i, Lock& lock, U&& item) {
  Partition& p = *parts_[i];
  std::optional<Clock::time_point> deadline;
  for (;;) {
    if (p.closed) return detail::batch_closed_status(settings_);
    if (!has_room(p) && !p.busy) {
      take_batch(p);
      p.flusher_cv.notify_one();
    }
    if (has_room(p)) {
      push(p, lock, std::forward<U>(item));
      return {};
    }
    if (!deadline) deadline = detail::add_saturating(clock_->now(), settings_.insert_timeout);
    const bool ready = clock_->wait_until(lock, p.changed_cv, *deadline,
                                          [&] { return p.closed || has_room(p) || !p.busy; });
    if (!ready) return detail::batch_insert_timeout_status(settings_, i);
  }
}

// Round-robin: any partition will do. Takes the first with room, starting at `first`;
// when all are full, waits until one of them makes room (room_epoch_ moves).
template <typename T>
template <typename Place>
Status BatchBuffer<T>::insert_anywhere(std::size_t first, Place&& place) {
  const std::size_t n = parts_.size();
  std::optional<Clock::time_point> deadline;
  std::optional<std::uint64_t> seen;
  for (;;) {
    for (std::size_t k = 0; k < n; ++k) {
      Partition& q = *parts_[(first + k) % n];
      q.mu.lock_insert();
      Lock lock(q.mu, std::adopt_lock);
      if (q.closed) return detail::batch_closed_status(settings_);
      if (!has_room(q) && !q.busy) {
        take_batch(q);
        q.flusher_cv.notify_one();
      }
      if (has_room(q)) {
        place((first + k) % n, q, lock);
        return {};
      }
    }
    if (!seen) {  // read the epoch, then scan once more, so that no freed room is missed
      std::lock_guard lock(room_mu_);
      seen = room_epoch_;
      continue;
    }
    if (!deadline) deadline = detail::add_saturating(clock_->now(), settings_.insert_timeout);
    std::unique_lock<std::mutex> lock(room_mu_);
    if (!clock_->wait_until(lock, room_cv_, *deadline, [&] { return room_epoch_ != *seen; })) {
      return detail::batch_insert_timeout_status(settings_, first);
    }
    seen = room_epoch_;
  }
}

// Tells round-robin inserts waiting in insert_anywhere to look again.
template <typename T>
void BatchBuffer<T>::note_room() {
  if (!round_robin_) return;
  {
    std::lock_guard lock(room_mu_);
    ++room_epoch_;
  }
  room_cv_.notify_all();
}

template <typename T>
bool BatchBuffer<T>::append_group(Partition& p, std::vector<T>& group) {
  detail::move_append(p.items, group, 0);
  if (has_room(p) || p.busy) return false;
  take_batch(p);
  p.flusher_cv.notify_one();
  return true;
}

template <typename T>
Status BatchBuffer<T>::insert_batch(std::vector<T> items) {
  if (items.empty()) return {};
  const std::size_t n = parts_.size();
  const std::size_t count = items.size();
  std::vector<Group> groups;
  std::vector<std::vector<T>> split;
  std::optional<std::size_t> first;  // the partition, when the batch goes to one
  if (round_robin_) {
    first = cursor().current;
  } else if (n == 1) {
    first = 0;
    groups.push_back({0, &items});
  } else {
    std::vector<std::size_t> target(count);
    for (std::size_t k = 0; k < count; ++k)
      target[k] = partition_by_(items[k]) % n;
    if (std::all_of(target.begin(), target.end(), [&](std::size_t t) { return t == target[0]; })) {
      first = target[0];
      groups.push_back({target[0], &items});
    } else {
      split.resize(n);
      for (std::size_t k = 0; k < count; ++k)
        split[target[k]].push_back(std::move(items[k]));
      for (std::size_t j = 0; j < n; ++j)
        if (!split[j].empty()) groups.push_back({j, &split[j]});
    }
  }
  const bool traced = telemetry::enabled();
  std::int64_t start_ns = 0;
  if (traced) [[unlikely]] {
    start_ns = telemetry::detail::monotonic_ns();
    detail::batch_insert_start(settings_, first, count, start_ns);
  }
  Status status;
  if (round_robin_) {
    status = insert_anywhere(*first, [&](std::size_t q, Partition& part, Lock&) {
      continue_run(q, append_group(part, items));
    });
  } else {
    status = insert_groups(groups);
  }
  if (traced) [[unlikely]]
    detail::batch_insert_stop(settings_, first, count, start_ns, status);
  return status;
}

// All-or-nothing: locks the target partitions in index order (no lock-order cycles), and
// appends only when none of them is full. Otherwise waits on the first full one.
template <typename T>
Status BatchBuffer<T>::insert_groups(std::vector<Group>& groups) {
  std::optional<Clock::time_point> deadline;
  std::vector<Lock> locks;
  locks.reserve(groups.size());
  for (;;) {
    locks.clear();
    std::size_t blocked = groups.size();
    for (std::size_t g = 0; g < groups.size(); ++g) {
      Partition& p = *parts_[groups[g].partition];
      locks.emplace_back(p.mu);
      if (p.closed) return detail::batch_closed_status(settings_);
      if (!has_room(p) && !p.busy) {
        take_batch(p);
        p.flusher_cv.notify_one();
      }
      if (!has_room(p)) {
        blocked = g;
        break;
      }
    }
    if (blocked == groups.size()) {
      // Reserve everywhere first: a bad_alloc then leaves every partition unchanged.
      for (const Group& g : groups) {
        Partition& p = *parts_[g.partition];
        p.items.reserve(p.items.size() + g.items->size());
      }
      for (const Group& g : groups)
        append_group(*parts_[g.partition], *g.items);
      return {};
    }
    const std::size_t i = groups[blocked].partition;
    Partition& p = *parts_[i];
    Lock lock = std::move(locks[blocked]);
    locks.clear();
    if (!deadline) deadline = detail::add_saturating(clock_->now(), settings_.insert_timeout);
    const bool ready = clock_->wait_until(lock, p.changed_cv, *deadline,
                                          [&] { return p.closed || has_room(p) || !p.busy; });
    if (!ready) return detail::batch_insert_timeout_status(settings_, i);
  }
}

// Hands up to `limit` items to the flusher. Needs: partition locked, not busy, not empty.
template <typename T>
void BatchBuffer<T>::take_batch(Partition& p) {
  std::size_t n = std::min(p.items.size(), p.limit);
  p.slot.clear();
  p.slot.swap(p.items);
  p.items.swap(p.spare);    // O(1): the spare was reserved by the flusher
  if (p.slot.size() > n) {  // over-full (insert_batch): the rest opens the next batch
    try {
      detail::move_append(p.items, p.slot, n);
      while (p.slot.size() > n)
        p.slot.pop_back();
    } catch (const std::bad_alloc&) {
      n = p.slot.size();  // cannot split it: flush it whole rather than fail
    }
  }
  p.slot_base = p.pos_items;
  p.slot_end = p.pos_items + n;
  p.pos_items += n;
  p.busy = true;
  p.limit = settings_.max_size + p.size_rng.upto(settings_.max_size_jitter);
}

// Completes the sync_flush() callers whose items have all left the partition.
template <typename T>
void BatchBuffer<T>::resolve_waiters(Partition& p) {
  const std::uint64_t earliest = p.busy ? p.slot_base : p.pos_items;
  std::erase_if(p.waiters, [&](detail::SyncWaiter* w) {
    if (earliest < w->target) return false;
    w->done = true;
    return true;
  });
}

template <typename T>
void BatchBuffer<T>::flush() {
  for (auto& p : parts_) {
    bool wake = false;
    {
      Lock lock(p->mu);
      if (p->items.empty()) continue;
      p->flush_through = std::max(p->flush_through, p->pos_items + p->items.size());
      wake = !p->busy;
    }
    if (wake) p->flusher_cv.notify_one();
  }
}

template <typename T>
std::vector<Status> BatchBuffer<T>::sync_flush(Deadline deadline) {
  const std::size_t n = parts_.size();
  std::vector<Status> results(n);
  std::vector<detail::SyncWaiter> waiters(n);  // never resized: partitions point into it
  std::vector<bool> waiting(n, false);
  for (std::size_t i = 0; i < n; ++i) {
    Partition& p = *parts_[i];
    bool wake = false;
    {
      Lock lock(p.mu);
      const std::uint64_t target = p.pos_items + p.items.size();
      const std::uint64_t earliest = p.busy ? p.slot_base : p.pos_items;
      if (p.closed) {
        results[i] = detail::batch_closed_status(settings_);
      } else if (earliest >= target) {
        continue;  // nothing to flush: ok
      } else if (p.stuck) {
        results[i] = detail::batch_flush_timeout_status(settings_, i);
      } else {
        p.flush_through = std::max(p.flush_through, target);
        waiters[i].target = target;
        p.waiters.push_back(&waiters[i]);
        waiting[i] = true;
        wake = !p.busy;
      }
    }
    if (wake) p.flusher_cv.notify_one();
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (!waiting[i]) continue;
    Partition& p = *parts_[i];
    Lock lock(p.mu);
    // Also bounded by flush_timeout: a flush that runs past it completes its waiters with
    // timeout.
    if (detail::wait_until(lock, p.changed_cv, deadline, [&] { return waiters[i].done; })) {
      results[i] = std::move(waiters[i].result);
      continue;
    }
    std::erase(p.waiters, &waiters[i]);  // it points into this frame
    const std::uint64_t target = waiters[i].target;
    const std::uint64_t earliest = p.busy ? p.slot_base : p.pos_items;
    detail::BatchBacklog left{.partitions = 1,
                              .pending = static_cast<std::size_t>(target - earliest)};
    if (p.busy) left.in_flight = static_cast<std::size_t>(std::min(p.slot_end, target) - earliest);
    results[i] = detail::batch_deadline_status(settings_, i, left);
  }
  return results;
}

template <typename T>
std::vector<T> BatchBuffer<T>::dump() {
  std::vector<T> out;
  for (auto& p : parts_) {
    {
      Lock lock(p->mu);
      if (p->items.empty()) continue;
      detail::move_append(out, p->items, 0);
      p->pos_items += p->items.size();
      p->items.clear();
      resolve_waiters(*p);
    }
    p->changed_cv.notify_all();
  }
  note_room();
  return out;
}

template <typename T>
std::size_t BatchBuffer<T>::size() const {
  std::size_t total = 0;
  for (const auto& p : parts_) {
    Lock lock(p->mu);
    total += p->items.size();
  }
  return total;
}

template <typename T>
std::vector<BatchBufferPartitionInfo> BatchBuffer<T>::info() const {
  std::vector<BatchBufferPartitionInfo> out(parts_.size());
  {
    std::lock_guard lock(timer_mu_);
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i].next_flush = timer_slots_[i].deadline;
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    const Partition& p = *parts_[i];
    Lock lock(parts_[i]->mu);
    out[i].partition = i;
    out[i].size = p.items.size();
    out[i].in_flight = p.busy ? static_cast<std::size_t>(p.slot_end - p.slot_base) : 0;
    out[i].flush_count = p.flush_count;
    out[i].last_flush = p.last_flush;
    out[i].flushing = p.busy;
  }
  return out;
}

template <typename T>
Clock::time_point BatchBuffer<T>::next_interval_deadline(Clock::time_point now) {
  const auto jitter = std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(
      timer_rng_.upto(static_cast<std::uint64_t>(settings_.flush_jitter.count()))));
  return detail::add_saturating(detail::add_saturating(now, settings_.flush_interval), jitter);
}

// One per partition: waits for a handed-off batch or a flush request, flushes with no lock
// held, and exits once the partition is closed and empty.
template <typename T>
void BatchBuffer<T>::run_flusher(std::size_t i) {
  Partition& p = *parts_[i];
  Lock lock(p.mu);
  p.started = true;
  p.changed_cv.notify_all();  // the constructor gets the lock once this thread waits below
  for (;;) {
    p.flusher_cv.wait(lock, [&] {
      return p.busy || p.closed ||
             (!p.items.empty() && (p.flush_through > p.pos_items || !has_room(p)));
    });
    if (!p.busy) {
      if (p.items.empty()) break;  // closed and drained
      take_batch(p);
    }
    std::vector<T> batch;
    batch.swap(p.slot);
    const std::uint64_t base = p.slot_base;
    const std::uint64_t number = ++p.batches_started;
    lock.unlock();

    const Status status = run_flush(i, number, batch);
    // Keep the batch's capacity for the next hand-off unless the callable took it.
    batch.clear();
    if (batch.capacity() < reserve_) {
      std::vector<T>().swap(batch);
      try {
        batch.reserve(reserve_);
      } catch (const std::bad_alloc&) {  // the next batch then grows as it fills
      }
    }

    lock.lock();
    p.busy = false;
    p.stuck = false;
    ++p.flush_count;
    p.last_flush = clock_->now();
    for (detail::SyncWaiter* w : p.waiters)
      if (base < w->target) w->result.update(status);
    resolve_waiters(p);
    if (p.spare.capacity() < reserve_) p.spare.swap(batch);
    if (!p.items.empty() && (p.flush_through > p.pos_items || !has_room(p) || p.closed)) {
      take_batch(p);
    }
    p.changed_cv.notify_all();
    note_room();  // lock order: a partition's mu, then room_mu_
  }
  p.exited = true;
  lock.unlock();
  p.changed_cv.notify_all();
}

// Calls the flush callable under the timer's watch; exceptions become Errc::internal.
template <typename T>
Status BatchBuffer<T>::run_flush(std::size_t i, std::uint64_t batch, std::vector<T>& items) {
  const std::size_t n = items.size();
  const std::int64_t start_ns = telemetry::detail::monotonic_ns();
  {
    std::lock_guard lock(timer_mu_);
    const Clock::time_point now = clock_->now();
    detail::BatchTimerSlot& s = timer_slots_[i];
    s.deadline = next_interval_deadline(now);  // a flush restarts the interval
    s.watching = true;
    s.reported = false;
    s.watch_batch = batch;
    s.watch_deadline = detail::add_saturating(now, settings_.flush_timeout);
    s.watch_size = n;
    s.watch_start_ns = start_ns;
    timer_kick_ = true;
  }
  timer_cv_.notify_one();
  if (telemetry::enabled()) detail::batch_flush_start(settings_, i, n, start_ns);

  Status status;
  bool threw = false;
  std::string failure;
  try {
    status = flush_(std::move(items), FlushContext{settings_.name, i, n, settings_.flush_meta});
  } catch (...) {
    threw = true;
    failure = detail::describe_exception(std::current_exception());
    status = Status(Errc::internal, "flush threw: " + failure);
  }

  bool timed_out = false;
  {
    std::lock_guard lock(timer_mu_);
    timed_out = timer_slots_[i].reported;
    timer_slots_[i].watching = false;
  }
  if (telemetry::enabled()) {
    if (threw) {
      detail::batch_flush_exception(settings_, i, n, start_ns, "exception", failure);
    } else {
      detail::batch_flush_stop(settings_, i, n, start_ns, status, timed_out);
    }
  }
  return status;
}

// Fires interval timers and flush_timeout watchdogs; sleeps until the earliest of them.
template <typename T>
void BatchBuffer<T>::run_timer() {
  struct Expired {
    std::size_t partition;
    std::uint64_t batch;
    std::size_t size;
    std::int64_t start_ns;
  };
  std::vector<std::size_t> due;
  std::vector<Expired> expired;
  due.reserve(parts_.size());
  expired.reserve(parts_.size());
  std::unique_lock<std::mutex> lock(timer_mu_);
  while (!timer_stop_) {
    const Clock::time_point now = clock_->now();
    Clock::time_point next = Clock::time_point::max();
    due.clear();
    expired.clear();
    for (std::size_t i = 0; i < timer_slots_.size(); ++i) {
      detail::BatchTimerSlot& s = timer_slots_[i];
      if (s.deadline <= now) {
        due.push_back(i);
        s.deadline = next_interval_deadline(now);
      }
      next = std::min(next, s.deadline);
      if (s.watching && !s.reported) {
        if (s.watch_deadline <= now) {
          s.reported = true;
          expired.push_back({i, s.watch_batch, s.watch_size, s.watch_start_ns});
        } else {
          next = std::min(next, s.watch_deadline);
        }
      }
    }
    if (!due.empty() || !expired.empty()) {
      lock.unlock();  // partitions' locks are never taken under timer_mu_ here
      for (std::size_t i : due) {
        Partition& p = *parts_[i];
        bool wake = false;
        {
          Lock plock(p.mu);
          if (!p.items.empty()) {
            p.flush_through = std::max(p.flush_through, p.pos_items + p.items.size());
            wake = !p.busy;
          }
        }
        if (wake) p.flusher_cv.notify_one();
      }
      for (const Expired& e : expired) {
        Partition& p = *parts_[e.partition];
        {
          Lock plock(p.mu);
          if (p.busy && p.batches_started == e.batch) {
            p.stuck = true;
            const Status timeout = detail::batch_flush_timeout_status(settings_, e.partition);
            for (detail::SyncWaiter* w : p.waiters) {
              w->result.update(timeout);
              w->done = true;
            }
            p.waiters.clear();
          }
        }
        p.changed_cv.notify_all();
        if (telemetry::enabled())
          detail::batch_flush_overdue(settings_, e.partition, e.size, e.start_ns);
      }
      lock.lock();
      continue;
    }
    timer_kick_ = false;
    clock_->wait_until(lock, timer_cv_, next, [&] { return timer_kick_ || timer_stop_; });
  }
}

}  // namespace emissions
