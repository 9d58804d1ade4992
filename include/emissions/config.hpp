/// @file
/// emissions/config.hpp: how an Emitter is set up: pipeline defaults and its adapters.
///
/// Plain structs with defaults, validated once when the Emitter is constructed (a bad value
/// throws ConfigError naming the field and the value). Every size and duration has an upper
/// bound (the kMax... constants below), checked there too.
///
/// @code
///   emissions::Config config;
///   config.pipeline.max_demand = 100;
///   config.add_adapter(std::make_shared<KafkaAdapter>())
///         .add_adapter(audit, {.buffer_size = 50'000, .overflow = Overflow::drop_oldest});
///   emissions::Emitter emitter(std::move(config));
/// @endcode
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
#include "emissions/clock.hpp"
#include "emissions/handler.hpp"
#include "emissions/spool.hpp"

namespace emissions {

/// What a commit does when an adapter's queue has no room for the events it wants. Room is
/// only needed for the events an adapter is interested in: an adapter that wants none of
/// a commit's events never affects it, whatever its state.
enum class Overflow {
  /// The caller waits: commit() blocks up to block_timeout for room. If the queue stays
  /// full, commit() returns overloaded and delivers nothing to any adapter (the transaction
  /// stays open with its events: retry, or terminate). A stalled adapter with this policy
  /// therefore stalls every commit that has events it wants. With a spool, a full queue
  /// makes a commit wait only a few milliseconds (within block_timeout), then the adapter
  /// reads its backlog from disk (spool.hpp); commit() waits longer only for a full spool.
  block,
  /// The caller never waits: the oldest queued batches of that adapter are dropped to make
  /// room (counted `dropped`, reason "overflow"). With a spool, a full spool drops the
  /// oldest segment's commits this adapter had not read yet, when no other kind of adapter
  /// still holds that segment (docs/SPOOL.md).
  drop_oldest,
  /// The caller never waits: the committed events are dropped for that adapter (counted
  /// `dropped`, reason "overflow"); the other adapters still get them. With a spool, the
  /// log is shared: a full spool drops a new commit for every adapter when none is block.
  drop_newest,
};

/// The largest accepted buffer_size and max_demand (events). A queue's ring of batch
/// pointers is allocated when the Emitter is built: 16 bytes per slot, slots = buffer_size
/// rounded up to a power of two (256 MiB at this bound).
inline constexpr std::size_t kMaxBufferSize = std::size_t{1} << 24;
/// The largest accepted concurrency and handler_concurrency.
inline constexpr std::size_t kMaxConcurrency = 1024;
/// The largest accepted max_in_flight.
inline constexpr std::size_t kMaxInFlight = 65'536;
/// The longest accepted block_timeout and shutdown_timeout.
inline constexpr std::chrono::milliseconds kMaxTimeout = std::chrono::hours(24);
/// The longest accepted idle_spin.
inline constexpr std::chrono::microseconds kMaxIdleSpin = std::chrono::seconds(1);
/// The deepest accepted max_cascade_depth.
inline constexpr int kMaxCascadeDepth = 64;

/// How failed deliveries are tried again (see emissions/delivery.hpp for what is retriable).
///
/// The delay before attempt k+1 (k failed attempts so far) is max(b, r): b drawn uniformly
/// from [d/2, d] with d = min(max_backoff, initial_backoff * multiplier^(k-1)), r the largest
/// Delivery::retry_after() given for those events (not capped by max_backoff). Delays run on
/// Config::clock.
///
/// @code
///   config.pipeline.retry = {.max_attempts = 5, .initial_backoff = std::chrono::milliseconds(50)};
/// @endcode
struct RetryPolicy {
  std::uint32_t max_attempts =
      8;  ///< deliveries of one event in all; 1 = never retry, 0 = until shutdown
  std::chrono::milliseconds initial_backoff{100};  ///< in (0, kMaxTimeout]
  std::chrono::milliseconds max_backoff{30'000};   ///< in [initial_backoff, kMaxTimeout]
  double multiplier = 2.0;                         ///< >= 1, finite
};

/// Defaults for every adapter of an Emitter.
///
/// @code
///   config.pipeline.buffer_size = 50'000;
/// @endcode
struct PipelineOptions {
  std::size_t max_demand = 50;          ///< most events per delivery call (1..kMaxBufferSize)
  std::size_t buffer_size = 10'000;     ///< most events queued per adapter (1..kMaxBufferSize)
  Overflow overflow = Overflow::block;  ///< what a commit does when a queue is full
  std::chrono::milliseconds block_timeout{5'000};  ///< Overflow::block's wait (0..kMaxTimeout)
  /// The longest an idle consumer polls for the next batch before it parks (0..kMaxIdleSpin).
  /// Adaptive: a consumer polls only while its recent polls have found the next batch
  /// (a moving average of its idle spells, a spell counted as zero when a poll ended it);
  /// when batches come further apart it parks at once, and the commit that finds it parked
  /// pays a futex wake-up (2-5 us). A parked consumer still polls one spell in up to 64, to
  /// notice that batches come close together again.
  /// Polling costs a whole core on an otherwise idle machine (less on a busy one: it yields
  /// to anything runnable) and delivers within a few microseconds; parking costs 3-13 us of
  /// consumer CPU per batch and delivers after a wake-up (~5 us on a busy machine, ~30 us
  /// on a VM whose idle vCPU must be woken). With the default 50 us, an adapter fed 10k
  /// commits/s (100 us apart) parks: 0.03-0.13 cores; from ~20k commits/s it polls. 200 us
  /// polls down to 5k commits/s; 0 always parks, so at high rates every commit pays a
  /// wake-up (emissions-bench throughput: 5x lower with one adapter, 13x with three).
  /// Figures and how to choose: docs/BENCHMARKS.md.
  std::chrono::microseconds idle_spin{50};
  /// How events an adapter failed with a retriable code are tried again (an adapter's
  /// AdapterOptions::retry overrides it).
  RetryPolicy retry = {};
};

/// Per-adapter overrides of PipelineOptions; unset fields take the pipeline default.
/// Declared in this order so designated initializers work.
/// (Explicit `= {}` keeps -Wmissing-field-initializers quiet for partial designated lists.)
///
/// Worker pools (the Express model): with `concurrency` N > 1, N consumer threads share the
/// adapter's stream and each event goes to exactly one of them, so handle_events (and
/// init) may run on N threads at once. Without `partition_by` a consumer takes whole
/// batches as it becomes free; with it, events with the same key always go to the same
/// consumer, in order (consumer = `key % N`).
///
/// @code
///   config.add_adapter(webhook, {.buffer_size = 20'000, .concurrency = 8,
///                                .partition_by = [](const Event& e) {
///                                  return e.payload.at("customer_id").get<std::uint64_t>();
///                                }});
/// @endcode
struct AdapterOptions {
  std::optional<std::size_t> max_demand = {};   ///< PipelineOptions::max_demand when unset
  std::optional<std::size_t> buffer_size = {};  ///< PipelineOptions::buffer_size when unset
  std::optional<Overflow> overflow = {};        ///< PipelineOptions::overflow when unset
  /// PipelineOptions::block_timeout when unset.
  std::optional<std::chrono::milliseconds> block_timeout = {};
  std::size_t concurrency = 1;  ///< consumers sharing this adapter (1..kMaxConcurrency)
  /// The partition key of an event, for `concurrency` > 1 (see above). Called once per
  /// event the adapter wants, on the committing thread, with no lock of the library held.
  /// Must be thread-safe; an exception sends the event to consumer 0.
  std::function<std::uint64_t(const Event&)> partition_by = {};
  /// PipelineOptions::retry when unset. Order: per consumer, a retried event is delivered
  /// again before any event committed after it that this consumer has not been handed yet
  /// (head-of-line: the consumer takes no new batch while a retry waits, so its queue fills
  /// and `overflow` applies). An AsyncAdapter's batches already in flight (max_in_flight >
  /// 1) may be settled before the retry. With partition_by only the failed events'
  /// consumer waits.
  std::optional<RetryPolicy> retry = {};
  /// Where events this adapter failed for good go: a copy of each, whose metadata gains
  /// "dead_letter" {adapter, reason, attempts, first_failed_at, last_failed_at}. Runs on its
  /// own consumer with the pipeline's default options and no dead letter of its own; may
  /// serve several adapters; must not be a configured adapter (ConfigError). Null: none.
  std::shared_ptr<Adapter> dead_letter = {};
  /// AsyncAdapter only (a ConfigError on a synchronous adapter): batches handed to
  /// deliver() and not yet settled, per consumer (1..kMaxInFlight; default 16). A full
  /// window is refilled once half of it (rounded down, at least one) is settled.
  std::optional<std::size_t> max_in_flight = {};
  /// AsyncAdapter only: let the committing thread hand its own batch to deliver() when the
  /// adapter's consumer is idle (nothing queued before it, no retry waiting, room in the
  /// window for the whole batch), instead of waking the consumer thread for it. The consumer
  /// still takes whatever the committing thread leaves (a busy consumer, a full window, a
  /// retry) and serves the retries; the order per consumer is unchanged. For an adapter
  /// whose deliver() is cheap next to a thread hand-off and reads what the commit just
  /// wrote (a Kafka producer: docs/BENCHMARKS.md): one thread does the whole commit, as a
  /// hand-written loop would. deliver() (and what it settles on its thread) then also runs
  /// inside commit(), on the committing thread: at most 32 batches per commit; a deliver()
  /// that waits (the Kafka adapter on a full librdkafka queue) makes commit() wait, and so
  /// does a dead-letter queue without room when init() fails. Commits made by the
  /// pipeline's own threads or from inside a settlement (telemetry, on_settled callbacks)
  /// deliver nothing themselves: an adapter's deliver() never runs inside its own ack().
  /// Requires `concurrency` 1, an `overflow` other than drop_oldest and no spool
  /// (ConfigError otherwise).
  ///
  /// @code
  ///   config.add_adapter(kafka, {.deliver_on_commit = true});
  /// @endcode
  bool deliver_on_commit = false;
};

/// Everything an Emitter is built from.
struct Config {
  PipelineOptions pipeline;  ///< defaults for every adapter
  /// The Emitter becomes the target of the ambient free functions (emissions::start(), ...)
  /// while it lives and is not shut down (then the previous default, if still open, is
  /// again).
  bool make_default = true;
  /// How long the destructor's shutdown waits for adapters before giving up on them
  /// (0..kMaxTimeout).
  std::chrono::milliseconds shutdown_timeout{30'000};

  /// An adapter with its options, as add_adapter() stores it.
  struct AdapterEntry {
    std::shared_ptr<Adapter> adapter;  ///< the destination
    AdapterOptions options;            ///< its overrides of `pipeline`
  };
  /// The destinations, in the order they were added (the order of EmitterStats::adapters).
  std::vector<AdapterEntry> adapters;

  /// In-process handlers. When there is at least one, a handler dispatcher joins the
  /// pipeline as one more adapter (named "emissions.handlers", options `handler_options`)
  /// and runs each (handler, event) invocation on a pool of `handler_concurrency` threads.
  std::vector<std::shared_ptr<Handler>> handlers;
  /// Threads of the handler pool (1..kMaxConcurrency); default: the hardware's threads.
  std::size_t handler_concurrency = std::max(1U, std::thread::hardware_concurrency());
  /// Events emitted by handlers cascade; an event emitted at a deeper level than this is
  /// dropped with reason "cascade_limit" (the request's own events are level 0).
  /// 0..kMaxCascadeDepth.
  int max_cascade_depth = 8;
  /// The handler dispatcher's options (a synchronous adapter: leave max_in_flight unset).
  AdapterOptions handler_options = {};
  /// How a handler invocation that returned HandlerResult::retry() is run again
  /// (default: never).
  RetryPolicy handler_retry = {.max_attempts = 1};
  /// The clock of retry delays (adapters' and handlers'); null = the steady clock. Tests
  /// pass a ManualClock to drive backoff without sleeping. drain() and shutdown() deadlines
  /// are real time whatever this is.
  std::shared_ptr<Clock> clock = {};
  /// A durable spool: commit() returns once the events are on disk, and every adapter gets
  /// each of them at least once across crashes and restarts (emissions/spool.hpp). Unset:
  /// the pipeline holds events in memory only.
  std::optional<SpoolOptions> spool = {};

  /// Adds a destination. Chainable. A null adapter, an adapter added twice, or one whose
  /// name() is empty or already used is a ConfigError at Emitter construction.
  Config& add_adapter(std::shared_ptr<Adapter> adapter, AdapterOptions options = {}) {
    adapters.push_back({std::move(adapter), std::move(options)});
    return *this;
  }
  /// Adds an in-process subscriber. Chainable. Null is a ConfigError at construction.
  Config& add_handler(std::shared_ptr<Handler> handler) {
    handlers.push_back(std::move(handler));
    return *this;
  }
};

}  // namespace emissions
