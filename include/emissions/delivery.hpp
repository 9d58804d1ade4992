/// @file
/// emissions/delivery.hpp: settling events one by one, later, from any thread.
///
/// Every committed event is settled exactly once for each adapter: delivered,
/// failed for good, filtered (the adapter did not want it) or dropped (an overflow policy or
/// a shutdown that timed out). A synchronous Adapter settles a whole batch with the Status
/// its handle_events returns. An AsyncAdapter is handed each batch as a Delivery and settles
/// its events when the destination confirms them: per event, from a client library's
/// callback thread, after deliver() has returned. An event failed with a retriable code (see
/// retriable()) is not settled yet: the pipeline hands it over again later, per the
/// adapter's RetryPolicy (emissions/config.hpp), in a new Delivery whose attempt() is one
/// higher.
///
/// @code
///   class Producer final : public emissions::AsyncAdapter {
///    public:
///     std::string_view name() const override { return "producer"; }
///     void deliver(emissions::Delivery delivery) override {
///       auto shared = std::make_shared<emissions::Delivery>(std::move(delivery));
///       for (std::size_t i = 0; i < shared->events().size(); ++i) {
///         client_.send(shared->events()[i], [shared, i](bool ok) {  // on the client's thread
///           if (ok) shared->ack(i);
///           else shared->fail(i, {emissions::Errc::unavailable, "broker down"});
///         });
///       }
///     }
///   };
/// @endcode
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "emissions/adapter.hpp"
#include "emissions/event.hpp"
#include "emissions/status.hpp"

namespace emissions {

namespace detail {
struct DeliveryState;
struct DeliveryAccess;
}  // namespace detail

/// Whether trying again may succeed: true for unavailable, timeout and overloaded. The
/// pipeline retries events failed with these codes (per RetryPolicy) and fails the others
/// for good at once.
[[nodiscard]] bool retriable(Errc code) noexcept;

/// A move-only handle on one batch handed to an AsyncAdapter.
///
/// Thread-safety: any thread may settle, also after the Emitter is gone (then settling is
/// a no-op; never a use-after-free). The first settlement of an event wins; later ones
/// are ignored. A handle destroyed with unsettled events fails them with `internal`
/// ("delivery abandoned"). Settling never blocks and never allocates, except for the
/// `[emissions, adapter, ...]` telemetry of the settlement that completes the batch
/// (which runs on the settling thread, with no lock of the library held).
///
/// @code
///   void deliver(emissions::Delivery d) override {
///     for (const emissions::Event& e : d.events()) write(e);
///     d.ack();
///   }
/// @endcode
class Delivery {
 public:
  /// An empty handle: events() is empty, settling does nothing.
  Delivery() noexcept;
  /// Takes over `other`'s events; `other` is left empty.
  Delivery(Delivery&& other) noexcept;
  /// Abandons this handle's unsettled events (see ~Delivery), then takes over `other`.
  Delivery& operator=(Delivery&& other) noexcept;
  Delivery(const Delivery&) = delete;
  Delivery& operator=(const Delivery&) = delete;
  /// Fails every unsettled event with `internal` ("delivery abandoned").
  ~Delivery();

  /// The batch's events, in commit order. Valid while this handle, or any unsettled event
  /// of it, lives: the handle keeps the batch's storage.
  [[nodiscard]] std::span<const Event> events() const noexcept;
  /// 1 on the first delivery of these events; k + 1 when they failed k times with a
  /// retriable code and are delivered again (a retry brings only the events that failed).
  [[nodiscard]] std::uint32_t attempt() const noexcept;

  /// Every unsettled event was delivered.
  void ack() noexcept;
  /// events()[index] was delivered. An index out of range is ignored.
  void ack(std::size_t index) noexcept;
  /// Every unsettled event failed with `error` (an ok Status counts as `internal`).
  void fail(Status error) noexcept;
  /// events()[index] failed with `error`. An index out of range is ignored.
  void fail(std::size_t index, Status error) noexcept;
  /// A lower bound on the delay before the events this handle fails afterwards are tried
  /// again (a server's Retry-After). Call it before the fail() it qualifies. The largest one
  /// given wins; it is not capped by RetryPolicy::max_backoff. No effect on events failed
  /// with a code that is not retriable, or on their last attempt.
  void retry_after(std::chrono::milliseconds delay) noexcept;
  /// True once every event is settled, including by a shutdown that counted it dropped.
  [[nodiscard]] bool settled() const noexcept;

 private:
  friend struct detail::DeliveryAccess;
  explicit Delivery(std::shared_ptr<detail::DeliveryState> state) noexcept;
  std::shared_ptr<detail::DeliveryState> state_;
};

/// An adapter whose destination confirms delivery later or per event.
///
/// The consumer hands each batch to deliver(), which must return at once (start the I/O,
/// keep the handle) and settle the events later. At most `AdapterOptions::max_in_flight`
/// batches (default: preferred_max_in_flight(), at most buffer_size / max_demand; else 16)
/// are handed over and not yet settled per consumer; when that window
/// is full the consumer calls flush() (an adapter that holds batches back should send them)
/// and waits until half of it is free (rounded down, at least one slot), or until a
/// failed delivery needs a decision: it wakes once per few settlements, not on every one.
/// drain() waits until the events committed before it are settled; shutdown counts what
/// is still unsettled at its deadline as dropped.
///
/// Retries and order: events failed with a retriable code come back in a new Delivery
/// after their backoff, before any batch this consumer has not been handed yet
/// (head-of-line). Batches already handed over when the failure is decided (up to
/// max_in_flight - 1 of them) are not held back and may be settled first (use
/// max_in_flight = 1 where order matters more than throughput). The rest of the same
/// commit, when max_demand cut it into runs, waits behind the retry unless already handed.
///
/// @code
///   class Sink final : public emissions::AsyncAdapter {
///     std::string_view name() const override { return "sink"; }
///     void deliver(emissions::Delivery d) override { queue_.push(std::move(d)); }
///   };
/// @endcode
class AsyncAdapter : public Adapter {
 public:
  /// Takes the batch and returns at once; settles later, from any thread. An exception
  /// fails the unsettled events with `internal` and makes the consumer call init() again.
  virtual void deliver(Delivery delivery) = 0;

  /// Not used: the pipeline calls deliver(). Returns internal if called directly.
  Status handle_events(std::span<const Event> batch) final;

  /// The window this adapter works best with, used when AdapterOptions::max_in_flight is
  /// unset, cut to a queue's worth of batches (buffer_size / max_demand, never below 16: the
  /// events in flight are outside the queue's bound); 0 (the default) leaves the pipeline's
  /// 16. A destination that batches by itself
  /// (a Kafka producer lingers to fill its requests) needs many batches in flight to keep
  /// its own batches full. Called once, when the Emitter is built; must not block.
  [[nodiscard]] virtual std::size_t preferred_max_in_flight() const noexcept { return 0; }
};

}  // namespace emissions
