/// @file
/// emissions/batch_buffer.hpp: partitioned batching, flushed by size or by time.
///
/// `BatchBuffer<T>` spreads items over `partitions` independent batches. A partition hands
/// its batch to the flush callable, on that partition's own flusher thread, when the batch
/// reaches max_size (+ jitter) or when its flush_interval (+ jitter) expires. Standalone: no
/// Emitter needed.
///
/// @code
///   emissions::BatchBuffer<Row> rows(
///       {.name = "rows", .partitions = 4, .max_size = 1000, .flush_interval = 5s},
///       [&](std::vector<Row>&& batch, const emissions::FlushContext& ctx) -> emissions::Status {
///         return db.insert_all(batch, ctx.meta);
///       });
///   emissions::Status s = rows.insert(Row{1});  // ok, timeout (partition full) or closed
///   if (!s.ok()) log(s.to_string());
///   // e.g. in a drain: everything inserted so far is flushed, one Status per partition
///   for (const emissions::Status& r : rows.sync_flush()) {
///     if (!r.ok()) log(r.to_string());
///   }
/// @endcode
///
/// Partitioning. Without partition_by, round-robin by batch: each inserting thread keeps
/// adding to one partition until its insert (or insert_batch) fills that partition's batch,
/// then moves to the next; it also moves on when it finds the partition full, locked by
/// another thread, or added to by another thread since its own last insert there.
/// Consecutive batches thus come from different partitions, and concurrent threads rarely
/// share one. No shared counter is touched, except once per thread (to pick its first one).
/// With partition_by, an item goes to partition `partition_by(item) % partitions`: one key
/// always lands in one partition, and one thread's items of a key are flushed in insertion
/// order.
///
/// Flushing. The insert that fills a batch swaps in an empty one and wakes the flusher, so
/// the partition keeps accepting while the old batch flushes; flushes never run under a
/// partition's lock. One timer thread drives every interval and flush_timeout, reading the
/// clock once per wake-up; an insert reads it only when it has to wait. An empty partition
/// is not flushed (the callable never sees an empty batch). A flush gets at most
/// `max_size + max_size_jitter` items (an over-full batch left by insert_batch is split,
/// unless memory runs out: then it goes whole).
///
/// Backpressure. When a partition is full while its previous flush still runs, insert waits
/// up to insert_timeout and then returns timeout without consuming the item. A round-robin
/// insert first gives that flush up to 1 ms (its flusher may only need a CPU), then takes any
/// partition with room, and waits only while all of them are full. Nothing accepted is lost:
/// destruction and shutdown() flush everything that remains.
///
/// Failures. A non-ok Status from the callable goes to sync_flush() and telemetry; the batch
/// is not retried. A throw becomes `[batch_buffer, flush, exception]` (kind "exception") and
/// Errc::internal. A flush running past flush_timeout is reported as `[batch_buffer, flush,
/// exception]` (kind "timeout"); it cannot be interrupted, so its partition's next flush (and
/// the buffer's destruction) waits for it, while inserts fill the fresh batch until it too is
/// full. None of these stop the buffer.
///
/// Time. The options' durations (intervals, flush_timeout, insert_timeout) are measured on
/// `clock`; with a ManualClock, tests advance time instead of sleeping. The limits a caller
/// puts on sync_flush() and shutdown() are real time (a Deadline, on the steady clock), so
/// that they hold whatever the buffer's clock does.
///
/// Cost. 1 + `partitions` threads, parked when idle (the timer wakes once per partition per
/// interval, to find nothing to do). Each partition reserves
/// `min(max_size + max_size_jitter, 1 MiB / sizeof(T))` items twice. T needs only to be
/// move-constructible (and copyable for `insert(const T&)`); with a throwing move
/// constructor, insert_batch is all-or-nothing only for allocation failures.
///
/// Telemetry. Metadata `{"buffer", "partition", "size"}`. `[batch_buffer, insert,
/// start|stop]` (stop adds "status"; "partition" is the one the insert tried first, and null
/// for an insert_batch spread by partition_by); `[batch_buffer, flush,
/// start|stop|exception]` (stop adds "status" and, for a flush that ran past flush_timeout,
/// "timed_out": true; exception adds "kind" and "reason"). While any handler is attached
/// anywhere, every insert builds its two events: far slower than the untraced insert, which
/// only checks telemetry::enabled().
///
/// Not for: delivery that must survive a crash (batches live in memory only).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "emissions/clock.hpp"
#include "emissions/deadline.hpp"
#include "emissions/detail/batch_buffer_core.hpp"
#include "emissions/status.hpp"

namespace emissions {

/// What a flush call is about. Valid only during the call.
///
/// @code
///   [](std::vector<Row>&& rows, const FlushContext& ctx) {
///     log("{} partition {}: {} rows", ctx.buffer, ctx.partition, ctx.size);
///     return Status{};
///   }
/// @endcode
struct FlushContext {
  std::string_view buffer;     ///< BatchBufferOptions::name
  std::size_t partition;       ///< 0-based
  std::size_t size;            ///< items in the batch (as handed over)
  const nlohmann::json& meta;  ///< BatchBufferOptions::flush_meta
};

/// The largest accepted partitions (each one owns a thread).
inline constexpr std::size_t kMaxBatchBufferPartitions = 1024;
/// The largest accepted max_size and max_size_jitter (items).
inline constexpr std::size_t kMaxBatchBufferSize = std::size_t{1} << 24;
/// The longest accepted flush_interval, flush_jitter, flush_timeout and insert_timeout.
inline constexpr std::chrono::milliseconds kMaxBatchBufferTimeout = std::chrono::hours(24);

/// Options, in the order and with the defaults of DataBuffer (the Elixir library this
/// buffer follows), then ours: insert_timeout, partition_by, clock. Validated by the
/// constructor: a value out of its range throws ConfigError naming the field and the value
/// ("BatchBufferOptions.max_size must be in [1, 16777216] (got 0)").
///
/// @code
///   BatchBufferOptions<Row>{.name = "rows", .max_size = 500, .flush_jitter = 0ms}
/// @endcode
template <typename T>
struct BatchBufferOptions {
  std::string name{};          ///< required, non-empty; in FlushContext and telemetry
  std::size_t partitions = 1;  ///< 1..kMaxBatchBufferPartitions; a flusher thread each
  /// 1..kMaxBatchBufferSize: a partition flushes when it holds this many, plus
  /// max_size_jitter.
  std::size_t max_size = 5000;
  /// 0..kMaxBatchBufferSize: a partition's batch limit is max_size plus a number drawn from
  /// 0..max_size_jitter, drawn again at each hand-off to the flusher.
  std::size_t max_size_jitter = 0;
  /// 1 ms..kMaxBatchBufferTimeout: a partition's interval (plus flush_jitter); when it
  /// expires, what the partition holds is flushed. Each flush restarts it.
  std::chrono::milliseconds flush_interval{10'000};
  /// 0..kMaxBatchBufferTimeout: each interval is flush_interval plus a duration drawn from
  /// 0..flush_jitter.
  std::chrono::milliseconds flush_jitter{2'000};
  /// 1 ms..kMaxBatchBufferTimeout: a flush running longer is reported, and sync_flush()
  /// stops waiting for it.
  std::chrono::milliseconds flush_timeout{60'000};
  /// 0..kMaxBatchBufferTimeout: how long an insert that finds no room waits for some
  /// before it returns timeout.
  std::chrono::milliseconds insert_timeout{5'000};
  nlohmann::json flush_meta = nullptr;  ///< FlushContext::meta
  /// The partition key; empty means round-robin. Called on the inserting thread (not at all
  /// with one partition); what it throws reaches the caller of insert.
  std::function<std::uint64_t(const T&)> partition_by{};
  /// The time source; null means the real steady clock (SteadyClock).
  std::shared_ptr<Clock> clock{};
};

/// One partition's state, from BatchBuffer::info(). Times are on the buffer's clock.
///
/// @code
///   for (const auto& p : buf.info()) std::cout << p.partition << ": " << p.size << '\n';
/// @endcode
struct BatchBufferPartitionInfo {
  std::size_t partition = 0;                    ///< 0-based
  std::size_t size = 0;                         ///< items waiting, not yet handed to a flush
  std::size_t in_flight = 0;                    ///< items in the flush under way (0 if none)
  std::uint64_t flush_count = 0;                ///< flush calls that returned (or threw)
  std::optional<Clock::time_point> last_flush;  ///< when the latest of them returned
  Clock::time_point next_flush{};               ///< when the interval timer fires next
  bool flushing = false;                        ///< a flush is running or about to start
};

/// Partitioned batches flushed by size or by time: see the file comment. All members are
/// thread-safe.
template <typename T>
class BatchBuffer {
 public:
  /// The flush callable: receives the batch (its to keep) and what it is about; its Status
  /// goes to sync_flush() and telemetry.
  using Flush = std::function<Status(std::vector<T>&& items, const FlushContext& ctx)>;

  /// Validates `options` (ConfigError, also for an empty `on_flush`) and starts the
  /// partitions' flusher threads and the timer thread, returning once the flushers wait for
  /// work (`std::system_error` when a thread cannot start; those started are joined).
  /// `on_flush` runs on the flusher thread of the batch's partition, one call at a time per
  /// partition, with no lock held; it may insert into this buffer, but must not call
  /// sync_flush() or shutdown() on it.
  BatchBuffer(BatchBufferOptions<T> options, Flush on_flush)
      : core_(std::move(options), std::move(on_flush)) {}
  /// shutdown() without a time limit: flushes what remains and waits for running flushes.
  ~BatchBuffer() = default;
  BatchBuffer(const BatchBuffer&) = delete;
  BatchBuffer& operator=(const BatchBuffer&) = delete;

  /// Adds one item. ok; timeout when its partition (round-robin: every partition) stayed
  /// full, its flush still running, for insert_timeout; closed after shutdown. On error the
  /// item is untouched. Blocks only when the partition is full; otherwise a short lock, no
  /// allocation (amortised), no clock read.
  /// @{
  EMISSIONS_DETAIL_HOT Status insert(T&& item) { return core_.insert_one(std::move(item)); }
  EMISSIONS_DETAIL_HOT Status insert(const T& item) { return core_.insert_one(item); }
  /// @}
  /// Adds all items or none, blocking like insert(). Round-robin puts the whole batch into
  /// the next partition with room, in order; partition_by splits it by key, keeping the
  /// order within each partition. A partition below its limit takes its whole group (the
  /// excess opens its next batch). Errors as insert(); on error nothing was accepted (and
  /// `items` is gone: pass a copy to retry).
  Status insert_batch(std::vector<T> items) { return core_.insert_batch(std::move(items)); }

  /// Asks every non-empty partition to flush what it holds. Returns at once (short locks).
  void flush() { core_.flush(); }
  /// Flushes everything inserted before the call and waits for those flushes, until
  /// `deadline` at the latest: one Status per partition, in partition order: ok when it had
  /// nothing to flush, else the first non-ok result of the flushes it waited for; timeout as
  /// soon as one of them runs past flush_timeout, or when the deadline passes first (the
  /// message says how many items were still waiting and how many in a running flush; they
  /// are flushed later all the same); closed after shutdown. Blocks; safe to call from any
  /// thread but the flush callable's.
  std::vector<Status> sync_flush(Deadline deadline = Deadline::max()) {
    return core_.sync_flush(deadline);
  }
  /// Removes and returns the items not yet handed to a flush, partition by partition, each
  /// in insertion order, without calling flush. Short locks; wakes waiting inserts.
  std::vector<T> dump() { return core_.dump(); }

  /// Items waiting in the partitions (not counting batches being flushed). Short locks.
  [[nodiscard]] std::size_t size() const { return core_.size(); }
  /// Every partition's state, in partition order. Short locks.
  [[nodiscard]] std::vector<BatchBufferPartitionInfo> info() const { return core_.info(); }
  /// BatchBufferOptions::name.
  [[nodiscard]] const std::string& name() const noexcept { return core_.name(); }
  /// BatchBufferOptions::partitions.
  [[nodiscard]] std::size_t partitions() const noexcept { return core_.partitions(); }

  /// Stops accepting (insert returns closed), flushes what remains and joins the threads,
  /// returning by `deadline`. timeout when flushes were still running then (the message
  /// counts the partitions and the items not yet flushed); the flushers then carry on with
  /// what remains, and a later shutdown() or the destructor joins them (a thread is never
  /// detached). dump() after a timeout takes back what no flush has taken yet. Blocks;
  /// idempotent; must not be called from the flush callable.
  Status shutdown(Deadline deadline) { return core_.shutdown(deadline); }
  /// `shutdown(deadline_after(timeout))`; a timeout too long to add to the steady clock
  /// (such as the default) waits as long as it takes.
  Status shutdown(std::chrono::milliseconds timeout = std::chrono::milliseconds::max()) {
    return core_.shutdown(detail::deadline_in(timeout));
  }

 private:
  detail::BatchBufferCore<T> core_;  // emissions/detail/batch_buffer_core.hpp
};

}  // namespace emissions

// The member definitions of detail::BatchBufferCore<T>.
#include "emissions/detail/batch_buffer_flush.hpp"
#include "emissions/detail/batch_buffer_insert.hpp"
#include "emissions/detail/batch_buffer_lifecycle.hpp"
