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

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <vector>

#include "emissions/adapter.hpp"

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
  // How long an idle consumer keeps polling (politely, yielding the core) before it parks
  // on a futex. Parking is free while idle; waking costs a few microseconds.
  std::chrono::microseconds idle_spin{50};
};

// Per-adapter overrides of PipelineOptions; unset fields take the pipeline default.
// Declared in this order so designated initializers work.
// (Explicit `= {}` keeps -Wmissing-field-initializers quiet for partial designated lists.)
struct AdapterOptions {
  std::optional<std::size_t> max_demand = {};
  std::optional<std::size_t> buffer_size = {};
  std::optional<Overflow> overflow = {};
  std::optional<std::chrono::milliseconds> block_timeout = {};
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

  // Adds a destination. Chainable. A null adapter is a ConfigError at Emitter construction.
  Config& add_adapter(std::shared_ptr<Adapter> adapter, AdapterOptions options = {}) {
    adapters.push_back({std::move(adapter), std::move(options)});
    return *this;
  }
};

}  // namespace emissions
