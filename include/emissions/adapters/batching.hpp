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
/// Inner. A synchronous inner gets each batch through handle_events and settles it with the
/// Status it returns. An asynchronous inner (an AsyncAdapter such as JsonLines) gets it as a
/// Delivery, is asked to flush() at once, and Batching waits up to `flush_timeout` for its
/// settlements: each event counts as delivered or failed as the inner settled it (one not
/// settled in time counts as failed, and the batch's Status is timeout).
///
/// Delivery. handle_events copies the pipeline's batch into the buffer and returns ok once
/// it is accepted; from then on the pipeline counts those events as delivered. The inner
/// adapter receives them later, on the buffer's flusher thread: in commit order, one call
/// at a time, each batch at most `max_size` events (exactly `max_size` while events arrive
/// faster than the inner drains them). Its outcome is reported per batch as
/// `[emissions, adapter, success|error]` (see Telemetry) and counted in delivered()/failed().
///
/// Backpressure. At most about `2 * max_size` events are held (one batch being delivered,
/// one filling, which may overshoot by one pipeline batch). When both are full,
/// handle_events waits up to `insert_timeout`, then returns timeout and accepts none of the
/// batch (the pipeline counts it as failed, and rejected() counts it here).
///
/// Lifecycle. The inner's init() runs on the flusher thread before its first batch, and
/// again before the next batch after handle_events threw or init() failed (the pipeline's
/// restart rule). flush() (called by Emitter::drain, hence by shutdown) delivers everything
/// held and returns the first error, or timeout at its deadline. terminate() delivers what
/// it can by its deadline, drops the rest (counted in failed()), stops the flusher and then
/// calls the inner's terminate(), once, after the inner's last call returned. An inner call
/// stuck past the deadline is not waited for: terminate() returns timeout, and the inner's
/// terminate() waits for a later terminate(), such as the destructor's, which joins the
/// flusher once that call returns (so destroying a Batching blocks until then).
///
/// Telemetry. Per inner batch: `[emissions, adapter, success|error]`, measurements
/// `{"duration"}` (ns), metadata `{"adapter": inner's name, "event_count", "batching": true}`
/// (+ "reason" for errors). "batching" tells these apart from the pipeline's own events for
/// this adapter, which carry the same name and only mean "accepted by Batching". The buffer
/// adds its own `[batch_buffer, ...]` events under the name `"batching:<inner name>"`.
///
/// Not for: delivery that must survive a crash: accepted events live in memory until the
/// inner has them.
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
  /// The call itself is not interrupted.
  std::chrono::milliseconds flush_timeout{30'000};
  /// The time source of linger, insert_timeout and flush_timeout; null means the real
  /// steady clock. Tests pass a ManualClock. (The deadlines of flush() and terminate() are
  /// real time.)
  std::shared_ptr<Clock> clock = {};
};

/// Wraps `inner` and delivers to it in batches of up to max_size events, or after linger.
///
/// @code
///   auto batching = std::make_shared<emissions::adapters::Batching>(
///       std::make_shared<KafkaAdapter>(), emissions::adapters::BatchingOptions{.max_size = 500});
///   batching->name();       // the inner's name
///   batching->delivered();  // events the inner accepted so far
/// @endcode
///
/// Thread-safety: every member may be called from any thread. The inner adapter is only
/// called from the flusher thread (init, handle_events), from the caller of interested(),
/// and from the thread that terminates (terminate, after the flusher's last call returned);
/// its name() also from the callers of name() and flush().
class Batching final : public Adapter {
 public:
  /// Starts the buffer's flusher and timer threads. Throws ConfigError for a null `inner` or
  /// an invalid option.
  Batching(std::shared_ptr<Adapter> inner, BatchingOptions options = {});
  /// terminate(), if it has not been called: delivers what is held, joins the threads.
  ~Batching() override;
  Batching(const Batching&) = delete;
  Batching& operator=(const Batching&) = delete;

  /// Copies `batch` into the buffer, all or nothing, and returns ok once it is accepted.
  /// Blocks only while the buffer is full (up to insert_timeout). Errors: timeout (the
  /// buffer stayed full), closed (after terminate), internal (out of memory); none of the
  /// batch was accepted then. Never throws.
  Status handle_events(std::span<const Event> batch) override;

  /// Delivers everything accepted before the call and waits for it, until `deadline` (and
  /// at most flush_timeout per inner call). The first error of those inner calls; timeout
  /// at the deadline or past flush_timeout, saying how many events are still held and how
  /// many of them are in an inner call (they are delivered later all the same); ok when
  /// nothing was held or after terminate(). Blocks until the deadline at the latest. Does
  /// not call the inner's flush().
  Status flush(Deadline deadline) override;

  /// Stops accepting, delivers what it can by `deadline`, drops what is left, then joins
  /// the buffer's threads and calls the inner's terminate(deadline), exactly once, after the
  /// inner's last call returned. Returns by the deadline (+ up to 50 ms for an idle flusher
  /// to exit): timeout, naming the events dropped and those in an inner call that has not
  /// returned, when something was left; then a later call finishes the job (joins, then
  /// terminates the inner) and may block until that call returns. Otherwise the inner's
  /// terminate() result. Idempotent once it returned ok or terminated the inner.
  Status terminate(Deadline deadline) override;

  /// The inner's interested(); it must be thread-safe as Adapter requires.
  [[nodiscard]] bool interested(const Event& event) const override {
    return inner_->interested(event);
  }
  /// The inner's name.
  [[nodiscard]] std::string_view name() const override { return inner_->name(); }

  /// Events handed to the inner's handle_events that returned ok.
  [[nodiscard]] std::uint64_t delivered() const noexcept {
    return delivered_.load(std::memory_order_relaxed);
  }
  /// Accepted events the inner did not take: its handle_events returned an error or threw,
  /// its init() failed before their batch, or terminate() dropped them at its deadline.
  [[nodiscard]] std::uint64_t failed() const noexcept {
    return failed_.load(std::memory_order_relaxed);
  }
  /// Events refused by handle_events (buffer full past insert_timeout, closed, or out of
  /// memory): the pipeline counts them as failed too. Once flushed,
  /// `accepted == delivered + failed`.
  [[nodiscard]] std::uint64_t rejected() const noexcept {
    return rejected_.load(std::memory_order_relaxed);
  }
  /// The wrapped adapter.
  [[nodiscard]] const std::shared_ptr<Adapter>& inner() const noexcept { return inner_; }

 private:
  // The buffer's flush callable: one call at a time, on the flusher thread.
  Status deliver(std::vector<Event>&& batch);
  // deliver() for an asynchronous inner.
  Status deliver_async(AsyncAdapter& inner, std::vector<Event>& batch);

  std::shared_ptr<Adapter> inner_;
  BatchingOptions options_;
  std::atomic<std::uint64_t> delivered_{0};
  std::atomic<std::uint64_t> failed_{0};
  std::atomic<std::uint64_t> rejected_{0};
  bool need_init_ = true;  // touched only by deliver()
  std::mutex terminate_mutex_;
  bool buffer_closed_ = false;     // guarded by terminate_mutex_: the buffer was shut down
  bool inner_terminated_ = false;  // guarded by terminate_mutex_
  std::atomic<bool> closed_{false};
  // Last: destroyed first, so its final flushes still see every member above.
  std::unique_ptr<BatchBuffer<Event>> buffer_;
};

}  // namespace emissions::adapters
