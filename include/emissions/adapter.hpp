/// @file
/// emissions/adapter.hpp: a destination for committed events (the sinks of this library).
///
/// The pipeline gives each adapter its own bounded queue and consumer thread. The consumer
/// calls `init()` once before the first batch, then `handle_events` with batches of at most
/// `max_demand` events in commit order, and `terminate()` once at shutdown. An adapter never
/// needs its own locking for these calls: one consumer calls them, one at a time (unless
/// the adapter is configured with concurrency > 1, see AdapterOptions). `flush` is the
/// exception: it comes from the thread that drains, and may overlap a delivery (an
/// AsyncAdapter's consumer also calls it, when its window of deliveries is full).
///
/// A synchronous adapter settles its whole batch with the Status that handle_events returns.
/// An adapter whose destination confirms later, or per event, derives from AsyncAdapter
/// (delivery.hpp) instead.
///
/// @code
///   class Printer final : public emissions::Adapter {
///    public:
///     std::string_view name() const override { return "printer"; }
///     emissions::Status handle_events(std::span<const emissions::Event> batch) override {
///       for (const auto& e : batch) std::cout << e.name << '\n';
///       return {};
///     }
///   };
///   config.add_adapter(std::make_shared<Printer>());
/// @endcode
#pragma once

#include <span>
#include <string_view>

#include "emissions/deadline.hpp"
#include "emissions/event.hpp"
#include "emissions/status.hpp"

namespace emissions {

/// A destination for committed events. See the file comment for the calling contract.
class Adapter {
 public:
  virtual ~Adapter() = default;

  /// Called on the consumer thread before the first batch, and again before the next batch
  /// after `handle_events` threw (a supervisor's restart). A non-ok result is reported as an
  /// adapter error and `init()` is retried before the following batch; that batch fails
  /// with the result's code (and is retried if the code is retriable, see delivery.hpp).
  virtual Status init() { return {}; }

  /// Whether this adapter wants `event`. Default: every event. Called once per committed
  /// event on the committing thread, before the commit reserves room in any queue (so an
  /// adapter that wants none of a commit's events never makes it wait), with no lock of
  /// the library held. Must be cheap, must not block, and must be thread-safe. Events it
  /// does not want are counted `filtered`. An exception counts as "wanted".
  [[nodiscard]] virtual bool interested(const Event& event) const {
    (void)event;
    return true;
  }

  /// Delivers a batch (1..max_demand events, in commit order). The returned Status settles
  /// every event of the batch: ok = delivered; an error (reported as
  /// `[emissions, adapter, error]`) with a retriable code (unavailable, timeout, overloaded)
  /// = handed over again later, per AdapterOptions::retry; any other error = failed. An
  /// exception counts as an `internal` failure (not retried) and makes the consumer call
  /// init() before the next batch. The events are valid during the call.
  virtual Status handle_events(std::span<const Event> batch) = 0;

  /// Called by Emitter::drain() (and so by shutdown) once every event committed before the
  /// drain has been handed to this adapter: an adapter that holds events back delivers them
  /// before returning. Must return by `deadline` (with timeout if it could not finish).
  /// Default: nothing held. Runs on the draining thread and may overlap a delivery of newer
  /// events: make it thread-safe. A non-ok result makes drain() return it. Never called
  /// after terminate(). An AsyncAdapter's consumer also calls it, with a deadline
  /// `block_timeout` away, when its window of unsettled deliveries is full (delivery.hpp).
  virtual Status flush(Deadline deadline) {
    (void)deadline;
    return {};
  }

  /// Called exactly once at shutdown, after the last delivery call returned, on the thread
  /// that shuts down (or, when a delivery call was still running at shutdown's deadline, by
  /// ~Emitter once it has returned, with a past deadline). Delivers what is held and
  /// releases resources; must return by `deadline` (a past deadline means: give up on what
  /// is held, release at once). A non-ok result (what was left undelivered, a failed close)
  /// is part of shutdown()'s result.
  virtual Status terminate(Deadline deadline) {
    (void)deadline;
    return {};
  }

  /// A short stable name used in telemetry (`adapter`) and statistics.
  [[nodiscard]] virtual std::string_view name() const = 0;
};

}  // namespace emissions
