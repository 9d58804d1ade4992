// emissions/config.hpp: how an Emitter is set up: pipeline defaults and its adapters.
//
// Plain structs with defaults, validated once when the Emitter is constructed (a bad value
// throws ConfigError naming the field and the value).
//
//   emissions::Config config;
//   config.pipeline.max_demand = 100;
//   config.add_adapter(std::make_shared<KafkaAdapter>())
//         .add_adapter(audit, {.buffer_size = 50'000, .overflow = Overflow::drop_oldest});
//   emissions::Emitter emitter(std::move(config));
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "emissions/adapter.hpp"
#include "emissions/handler.hpp"

namespace emissions {

// What a commit does when an adapter's queue has no room for its events.
enum class Overflow {
  block,        // commit() waits up to block_timeout, then returns overloaded, delivering
                // nothing to any adapter (the transaction stays open with its events)
  drop_oldest,  // the oldest queued events of that adapter are dropped to make room
  drop_newest,  // the committed events are dropped for that adapter
};

// Defaults for every adapter of an Emitter.
struct PipelineOptions {
  std::size_t max_demand = 50;       // most events per handle_events call
  std::size_t buffer_size = 10'000;  // most events queued per adapter
  Overflow overflow = Overflow::block;
  std::chrono::milliseconds block_timeout{5'000};
  // How long an idle consumer keeps polling (yielding the core to anything runnable) before
  // it parks on a futex. Waking a parked thread costs from a few to hundreds of
  // microseconds on a virtual machine; 200 us outlasts the gap between commits at 5'000+
  // commits/s, so a steady stream never pays it. After a burst, each idle consumer polls
  // this long, then costs nothing. Lower it to save CPU at low rates; 0 parks at once.
  std::chrono::microseconds idle_spin{200};
};

// Per-adapter overrides of PipelineOptions; unset fields take the pipeline default.
// Declared in this order so designated initializers work.
// (Explicit `= {}` keeps -Wmissing-field-initializers quiet for partial designated lists.)
//
// Worker pools (the Express model): with `concurrency` N > 1, N consumer threads share the
// adapter's stream and each event goes to exactly one of them, so handle_events (and
// init) may run on N threads at once. Without `partition_by` a consumer takes whole
// batches as it becomes free; with it, events with the same key always go to the same
// consumer, in order (consumer = key % N).
//
//   config.add_adapter(webhook, {.buffer_size = 20'000, .concurrency = 8,
//                                .partition_by = [](const Event& e) {
//                                  return e.payload["customer_id"].get<std::uint64_t>();
//                                }});
struct AdapterOptions {
  std::optional<std::size_t> max_demand = {};
  std::optional<std::size_t> buffer_size = {};
  std::optional<Overflow> overflow = {};
  std::optional<std::chrono::milliseconds> block_timeout = {};
  std::size_t concurrency = 1;
  // Must be thread-safe and must not throw (an exception sends the event to consumer 0).
  std::function<std::uint64_t(const Event&)> partition_by = {};
};

struct Config {
  PipelineOptions pipeline;
  // The Emitter becomes the target of the ambient free functions (emissions::start(), ...)
  // while it lives.
  bool make_default = true;
  // How long the destructor's shutdown waits for adapters before giving up on them.
  std::chrono::milliseconds shutdown_timeout{30'000};

  struct AdapterEntry {
    std::shared_ptr<Adapter> adapter;
    AdapterOptions options;
  };
  std::vector<AdapterEntry> adapters;

  // In-process handlers. When there is at least one, a handler dispatcher joins the
  // pipeline as one more adapter (named "emissions.handlers", options `handler_options`)
  // and runs each (handler, event) invocation on a pool of `handler_concurrency` threads.
  std::vector<std::shared_ptr<Handler>> handlers;
  std::size_t handler_concurrency = std::max(1U, std::thread::hardware_concurrency());
  // Events emitted by handlers cascade; an event emitted at a deeper level than this is
  // dropped with reason "cascade_limit" (the request's own events are level 0).
  int max_cascade_depth = 8;
  AdapterOptions handler_options = {};

  // Adds a destination. Chainable. A null adapter is a ConfigError at Emitter construction.
  Config& add_adapter(std::shared_ptr<Adapter> adapter, AdapterOptions options = {}) {
    adapters.push_back({std::move(adapter), std::move(options)});
    return *this;
  }
  // Adds an in-process subscriber. Chainable. Null is a ConfigError at construction.
  Config& add_handler(std::shared_ptr<Handler> handler) {
    handlers.push_back(std::move(handler));
    return *this;
  }
};

}  // namespace emissions
