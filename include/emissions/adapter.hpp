// emissions/adapter.hpp: a destination for committed events (the sinks of this library).
//
// The pipeline gives each adapter its own bounded queue and consumer thread. The consumer
// calls `init()` once before the first batch, then `handle_events` with batches of at most
// `max_demand` events in commit order, and `terminate()` at shutdown. An adapter never
// needs its own locking for these calls: one consumer calls them, one at a time (unless
// the adapter is configured with concurrency > 1, see AdapterOptions).
//
//   class Printer final : public emissions::Adapter {
//    public:
//     std::string_view name() const override { return "printer"; }
//     emissions::Status handle_events(std::span<const emissions::Event> batch) override {
//       for (const auto& e : batch) std::cout << e.name << '\n';
//       return {};
//     }
//   };
//   config.add_adapter(std::make_shared<Printer>());
#pragma once

#include <span>
#include <string_view>

#include "emissions/event.hpp"
#include "emissions/status.hpp"

namespace emissions {

class Adapter {
 public:
  virtual ~Adapter() = default;

  // Called on the consumer thread before the first batch, and again before the next batch
  // after `handle_events` threw (the seed's supervisor restart). A non-ok result is
  // reported as an adapter error and `init()` is retried before the following batch;
  // the batch itself is not delivered.
  virtual Status init() { return {}; }

  // Whether this adapter wants `event`. Default: every event. Must be cheap, must not
  // block, and must be thread-safe: it is called on the consumer thread and, when a full
  // queue evicts events, on committing threads.
  [[nodiscard]] virtual bool interested(const Event& event) const {
    (void)event;
    return true;
  }

  // Delivers a batch (1..max_demand events, in commit order). A non-ok Status or an
  // exception is reported as `[emissions, adapter, error]`; the consumer keeps going with
  // the next batch. The events are only valid during the call.
  virtual Status handle_events(std::span<const Event> batch) = 0;

  // Called by Emitter::drain() (and so by shutdown) once every event committed before the
  // drain has been handed to this adapter: an adapter that holds events back (such as
  // adapters::Batching) delivers them before returning. Default: nothing held. Runs on the
  // draining thread and may overlap a handle_events call for newer events: make it
  // thread-safe. A non-ok result makes drain() return it (the first one, after every
  // adapter was flushed).
  virtual Status flush() { return {}; }

  // Called once at shutdown, after the last batch, on the thread that shuts down.
  virtual void terminate() {}

  // A short stable name used in telemetry (`adapter`) and statistics.
  [[nodiscard]] virtual std::string_view name() const = 0;
};

}  // namespace emissions
