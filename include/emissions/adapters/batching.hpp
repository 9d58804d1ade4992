/// @file
/// emissions/adapters/batching.hpp: an adapter that wraps another one and hands it bigger
/// batches: up to `max_size` events at a time, or whatever arrived within `linger` (like a
/// Kafka producer's linger.ms). Built on BatchBuffer.
///
/// @code
///   auto sink = std::make_shared<emissions::adapters::JsonLines>("events.jsonl");
///   emissions::Config config;
///   config.add_adapter(std::make_shared<emissions::adapters::Batching>(
///       sink, emissions::adapters::BatchingOptions{.max_size = 1000, .linger = 20ms}));
///   emissions::Emitter emitter(std::move(config));
///   // ... commits ...
///   // drain() also delivers the partial batch Batching holds
///   if (emissions::Status s = emitter.drain(); !s.ok()) log(s.to_string());
/// @endcode
///
/// Settlement. Batching is an AsyncAdapter: each event handed to it is acknowledged only
/// once the inner batch that contains it has settled, with that batch's outcome. A pipeline
/// batch (one Delivery) may be spread over several inner batches, and one inner batch may
/// hold events of several Deliveries: each event is settled by itself, by its index. When
/// an inner batch fails, exactly its events fail, with the inner's Status (so the pipeline
/// retries them when the code is retriable); the events of the other inner batches are
/// delivered. An asynchronous inner settles event by event, and so does Batching: each
/// event exactly as the inner settled its copy. `drain()` therefore returns once the inner
/// has really taken the events.
///
/// Inner. A synchronous inner gets each batch through handle_events; its Status settles the
/// batch. An asynchronous inner (an AsyncAdapter such as JsonLines) gets it as a Delivery of
/// its own and is asked to flush() at once (so an inner that holds batches back sends it);
/// Batching does not wait for its settlements: each event is settled as the inner settles
/// its copy, on the thread that settles it (inline, for an inner that settles in deliver()),
/// acknowledged or failed with that event's own Status. An inner that acknowledges some
/// events of a batch and fails others (JsonLines with one event it cannot serialize) thus
/// fails exactly those. The inner's Delivery::attempt() is the highest attempt among the
/// pipeline Deliveries its events come from (1 unless one of them is a retry). The inner
/// gets its next batch while earlier ones are unsettled; how many it holds is bounded by
/// the pipeline's window (see Window). Events it never settles stay unsettled here too:
/// drain() times out and shutdown counts them as dropped, as for any AsyncAdapter.
///
/// Delivery. deliver() keeps the Delivery and puts references to its events into the
/// buffer (no copy yet); the inner receives them later, on the buffer's flusher thread, as
/// copies: in commit order, one call at a time, each batch at most `max_size` events
/// (exactly `max_size` while events arrive faster than the inner drains them). Its outcome
/// is reported per batch as `[emissions, adapter, success|error]` (see Telemetry) and
/// counted in delivered()/failed().
///
/// Window. The pipeline hands an AsyncAdapter at most `AdapterOptions::max_in_flight`
/// (default 16) unsettled Deliveries per consumer, and calls flush() when that window is
/// full. A Delivery here stays unsettled until its inner batch settled, so an inner batch
/// gathers at most `max_in_flight` pipeline batches: raise it to let batches fill, e.g.
/// `{.max_in_flight = 256}` for `max_size = 500` and transactions of a few events. The same
/// window bounds what an asynchronous inner holds unsettled.
///
/// Backpressure. At most about `2 * max_size` events are held (one batch being delivered,
/// one filling, which may overshoot by one pipeline batch). When both are full, deliver()
/// waits up to `insert_timeout`, then fails every event of that Delivery with timeout
/// (retriable) and accepts none of them (rejected() counts them).
///
/// Lifecycle. The inner's init() runs on the flusher thread before its first batch, and
/// again before the next batch after handle_events threw or init() failed (the pipeline's
/// restart rule), and after its deliver() threw. flush() (called by Emitter::drain, hence by
/// shutdown) delivers everything held and returns the first error, or timeout at its
/// deadline. terminate() delivers what
/// it can by its deadline; the events still waiting then are not handed to the inner and
/// are left unsettled (counted in dropped()), so the pipeline's shutdown counts them as
/// dropped (reason "shutdown"); outside a pipeline they fail as "delivery abandoned" when
/// Batching is destroyed. Either way each is counted once. It then stops the flusher and
/// calls the inner's terminate(), once, after the inner's last call returned. An inner call
/// stuck past the deadline is not waited for: terminate() returns timeout, its events are
/// settled when that call returns, and the inner's terminate() waits for a later
/// terminate(), such as the destructor's, which joins the flusher once that call returns
/// (so destroying a Batching blocks until then).
///
/// Telemetry. Per inner batch: `[emissions, adapter, success|error]`, measurements
/// `{"duration"}` (ns), metadata `{"adapter": inner's name, "event_count", "batching": true}`
/// (+ "reason" for errors); an asynchronous inner's batch, once all its events are settled,
/// reports its delivered events as success and its failed ones as error (with the first
/// failure's reason), on the thread that settled the last one. "batching" tells these apart from
/// the pipeline's own events for this adapter, which carry the same name and report the settlement
/// of its Deliveries. The buffer adds its own `[batch_buffer, ...]` events under the name
/// `"batching:<inner name>"`.
///
/// Not for: delivery that must survive a crash: held events live in memory until the inner
/// has them.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string_view>
#include <vector>

#include "emissions/adapter.hpp"
#include "emissions/clock.hpp"
#include "emissions/config.hpp"
#include "emissions/delivery.hpp"
#include "emissions/event.hpp"
#include "emissions/status.hpp"

namespace emissions {
template <typename T>
class BatchBuffer;  // emissions/batch_buffer.hpp, needed only by batching.cpp
}  // namespace emissions

namespace emissions::adapters {

/// How Batching groups events. Validated by Batching's constructor: a value out of its
/// range throws ConfigError naming the field and the value. The bounds are the pipeline's
/// (config.hpp): kMaxBufferSize events, kMaxTimeout (24 h).
///
/// @code
///   BatchingOptions{.max_size = 200, .linger = std::chrono::milliseconds(50)}
/// @endcode
struct BatchingOptions {
  /// 1..kMaxBufferSize: the most events per inner handle_events call; a batch this full
  /// goes at once.
  std::size_t max_size = 500;
  /// 0..kMaxTimeout: how long events may wait for a batch to fill before they go anyway. 0
  /// sends what is there at once (batches then form only while the inner is busy).
  std::chrono::milliseconds linger{5};
  /// 0..kMaxTimeout: how long handle_events waits for room when the buffer is full.
  std::chrono::milliseconds insert_timeout{5'000};
  /// 1 ms..kMaxTimeout: an inner call running longer is reported (`[batch_buffer, flush,
  /// exception]`, kind "timeout"), and flush() stops waiting for it and returns timeout.
  /// The call itself is not interrupted. For an asynchronous inner, also the deadline of the
  /// inner's flush() after each batch, and the longest flush() waits for its settlements
  /// (what is still unsettled then is not failed: it stays in the inner's hands).
  std::chrono::milliseconds flush_timeout{30'000};
  /// The time source of linger, insert_timeout and flush_timeout; null means the real
  /// steady clock. Tests pass a ManualClock. (The deadlines of flush() and terminate() are
  /// real time.)
  std::shared_ptr<Clock> clock = {};
};

/// Wraps `inner` and delivers to it in batches of up to max_size events, or after linger;
/// settles each event when its inner batch settled.
///
/// @code
///   auto batching = std::make_shared<emissions::adapters::Batching>(
///       std::make_shared<KafkaAdapter>(), emissions::adapters::BatchingOptions{.max_size = 500});
///   config.add_adapter(batching, {.max_in_flight = 256});  // room for full inner batches
///   batching->name();       // the name of the inner
///   batching->delivered();  // events the inner accepted so far
/// @endcode
///
/// Thread-safety: every member may be called from any thread. The inner adapter is only
/// called from the flusher thread (init, handle_events or deliver, flush), from the caller
/// of interested(), and from the thread that terminates (terminate, after the flusher's
/// last call returned); its name() also from the callers of name() and flush(). Events are
/// settled with no lock held: on the flusher thread, or, for an asynchronous inner, on the
/// thread that settles the inner's event (which may be after Batching is gone: that
/// settlement touches only state it shares).
class Batching final : public AsyncAdapter {
 public:
  /// Starts the buffer's flusher and timer threads. Throws ConfigError for a null `inner` or
  /// an invalid option.
  Batching(std::shared_ptr<Adapter> inner, BatchingOptions options = {});
  /// terminate(), if it has not been called: delivers what is held, joins the threads.
  ~Batching() override;
  Batching(const Batching&) = delete;
  Batching& operator=(const Batching&) = delete;

  /// Keeps `delivery` and puts its events into the buffer, all or nothing; they are settled
  /// when their inner batch settles. Blocks only while the buffer is full (up to
  /// insert_timeout). When none can be accepted, fails them all at once: timeout (the buffer
  /// stayed full), closed (after terminate), internal (out of memory); rejected() counts
  /// them. Never throws.
  void deliver(Delivery delivery) override;

  /// Delivers everything accepted before the call and waits for it, until `deadline` (and
  /// at most flush_timeout per inner call; for an asynchronous inner, until the inner has
  /// settled the batches handed to it before, at most flush_timeout more). The first error
  /// of those inner calls (for an asynchronous inner: of its init() or of handing a batch
  /// over; the events it fails are settled so, as any AsyncAdapter's, and not returned
  /// here); timeout at the deadline or past flush_timeout, saying
  /// how many events are still held and how many of them are in an inner call or unsettled
  /// by the inner (they are settled later all the same); ok when nothing was held or after
  /// terminate(). Blocks until the deadline at the latest. Does not call the inner's flush()
  /// (an asynchronous inner's is called after each batch).
  Status flush(Deadline deadline) override;

  /// Stops accepting, delivers what it can by `deadline`, leaves the rest unsettled (see
  /// Lifecycle), then joins the buffer's threads and calls the inner's terminate(deadline),
  /// exactly once, after the inner's last call returned. Returns by the deadline (+ up to
  /// 50 ms for an idle flusher to exit): timeout, naming the events left and those in an
  /// inner call that has not returned, when something was left; then a later call finishes
  /// the job (joins, then terminates the inner) and may block until that call returns.
  /// Otherwise the inner's terminate() result. Idempotent once it returned ok or terminated
  /// the inner.
  Status terminate(Deadline deadline) override;

  /// The inner's interested(); it must be thread-safe as Adapter requires.
  [[nodiscard]] bool interested(const Event& event) const override {
    return inner_->interested(event);
  }
  /// The inner's name.
  [[nodiscard]] std::string_view name() const override { return inner_->name(); }

  /// Events the inner took: in a batch whose handle_events returned ok, or acknowledged by
  /// an asynchronous inner. Counted before the event is settled.
  [[nodiscard]] std::uint64_t delivered() const noexcept;
  /// Events the inner did not take: in a batch whose handle_events returned an error or
  /// threw or whose init() failed, or failed by an asynchronous inner (also when its
  /// deliver() threw). Counted before the event is settled.
  [[nodiscard]] std::uint64_t failed() const noexcept;
  /// Events deliver() failed at once (buffer full past insert_timeout, closed, or out of
  /// memory).
  [[nodiscard]] std::uint64_t rejected() const noexcept {
    return rejected_.load(std::memory_order_relaxed);
  }
  /// Events terminate() left unsettled at its deadline, never handed to the inner. Once
  /// flushed or terminated, `handed to deliver() == delivered + failed + rejected + dropped`.
  [[nodiscard]] std::uint64_t dropped() const noexcept {
    return dropped_.load(std::memory_order_relaxed);
  }
  /// Events accepted and not yet settled: waiting in the buffer, in an inner call, or handed
  /// to an asynchronous inner that has not settled them. Short locks.
  [[nodiscard]] std::size_t held() const;
  /// The wrapped adapter.
  [[nodiscard]] const std::shared_ptr<Adapter>& inner() const noexcept { return inner_; }

 private:
  struct Item;    // one event of a kept Delivery (batching.cpp)
  struct Shared;  // what an asynchronous inner's settlements touch (batching.cpp)

  // The buffer's flush callable: one call at a time, on the flusher thread.
  Status deliver_batch(std::vector<Item>&& items);
  // Delivers `events` to a synchronous inner; the Status that settles them all.
  Status call_inner(std::vector<Event>&& events);
  // Hands `items` (as `events`) to an asynchronous inner, which settles them later; a
  // Status that is not ok when init() failed or deliver() threw (the items are settled).
  Status call_async(AsyncAdapter& inner, std::vector<Item>&& items, std::vector<Event>&& events);

  std::shared_ptr<Adapter> inner_;
  AsyncAdapter* async_inner_ = nullptr;  // inner_, when it is asynchronous
  BatchingOptions options_;
  // Shared with the settlement callbacks of an asynchronous inner, which may outlive this.
  std::shared_ptr<Shared> shared_;
  std::atomic<std::uint64_t> rejected_{0};
  std::atomic<std::uint64_t> dropped_{0};
  bool need_init_ = true;  // touched only by the flusher
  std::mutex terminate_mutex_;
  bool buffer_closed_ = false;     // guarded by terminate_mutex_: the buffer was shut down
  bool inner_terminated_ = false;  // guarded by terminate_mutex_
  std::vector<Item> left_;         // guarded by terminate_mutex_: what terminate() left
  std::atomic<bool> closed_{false};
  // Last: destroyed first, so its final flushes still see every member above.
  std::unique_ptr<BatchBuffer<Item>> buffer_;
};

}  // namespace emissions::adapters
