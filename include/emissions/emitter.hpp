/// @file
/// emissions/emitter.hpp: owns the delivery pipeline: one bounded queue and one consumer
/// thread per adapter (more with AdapterOptions::concurrency), fed by committed
/// transactions.
///
/// @code
///   emissions::Config config;
///   config.add_adapter(std::make_shared<emissions::adapters::JsonLines>("events.jsonl"));
///   emissions::Emitter emitter(std::move(config));  // threads start here
///
///   emissions::Transaction tx = emitter.start();
///   emissions::Status s = tx.emit("order_created", {{"id", 1}});
///   s.update(tx.commit());
///   s.update(emitter.drain(std::chrono::seconds(1)));  // everything committed so far is handled
///   if (!s.ok()) log(s.to_string());
///   // the destructor shuts down gracefully (drain, terminate adapters, join threads)
/// @endcode
///
/// Every committed event is handed to every interested adapter, in batches of at most
/// max_demand, and settled exactly once for it (emissions/settlement.hpp); an event failed
/// with a retriable code is handed over again after a backoff (AdapterOptions::retry), so
/// delivery is at least once. One transaction's events arrive in emit order and one
/// thread's transactions in commit order (with concurrency > 1, per consumer: see
/// AdapterOptions), a retried event before the later events of its consumer.
/// Each adapter has its own queue, so a slow adapter never delays the others; a full queue
/// applies that adapter's Overflow policy, and every drop is counted in stats() and
/// reported as `[emissions, event, dropped]`.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "emissions/config.hpp"
#include "emissions/settlement.hpp"
#include "emissions/status.hpp"
#include "emissions/transaction.hpp"

namespace emissions {

/// Counters of an Emitter; see Emitter::stats().
struct EmitterStats {
  std::uint64_t committed = 0;        ///< events handed to the pipeline
  std::uint64_t transactions = 0;     ///< successful commits and flushes of at least one event
  std::uint64_t discarded = 0;        ///< events thrown away by terminate() or abandonment
  std::uint64_t cascade_dropped = 0;  ///< handler emits refused by max_cascade_depth
  /// With a spool: events held back for adapters that are no longer configured (their
  /// positions are kept; SpoolOptions::forget_missing_adapters), counted at construction.
  std::uint64_t spool_orphaned_events = 0;
  /// With a spool: commits skipped because a record was corrupt on disk, counted once each
  /// when the first adapter reads past them.
  std::uint64_t spool_corrupt_records = 0;
  /// With a spool: bytes of segment files on disk.
  std::uint64_t spool_bytes = 0;
  /// With a spool: commits the adapters' relays read back from the log (decoded), once per
  /// adapter that was behind (docs/SPOOL.md). Commits handed over live do not count.
  std::uint64_t spool_commits_read_back = 0;
  /// With a spool: commits the adapters' relays took from an adapter's in-memory window of
  /// recent commits instead of reading them back, once per adapter that was behind.
  std::uint64_t spool_commits_from_window = 0;
  std::vector<AdapterStats> adapters;  ///< in configuration order
};

/// Owns the delivery pipeline; see the file comment. Thread-safe: any thread may start
/// transactions, drain, shut down and read stats.
class Emitter {
 public:
  /// Validates `config` (throws ConfigError) and starts one consumer thread per adapter.
  explicit Emitter(Config config = {});
  /// shutdown(config.shutdown_timeout); then waits for any adapter still inside a call.
  ~Emitter();
  Emitter(const Emitter&) = delete;
  Emitter& operator=(const Emitter&) = delete;

  /// A new active transaction on this emitter. When the emitter is shut down the
  /// transaction's emit and commit return closed.
  [[nodiscard]] Transaction start();

  /// Hands events that already have an id and a time (read back from a spool, an outbox
  /// table, a Kafka topic or a dead-letter file) to the pipeline unchanged, as one commit:
  /// all of them or none, with the same overflow rules. `on_settled`, when given, is called
  /// as for Transaction::commit(on_settled). Errors: invalid_argument naming the first event
  /// without an id or name, or with metadata that is neither null nor an object (nothing is
  /// published); closed; overloaded. Retries and dead letters apply as to any commit.
  ///
  /// @code
  ///   std::vector<emissions::Event> events;
  ///   if (emissions::adapters::read_json_lines("dead.jsonl", events).ok())
  ///     (void)emitter.publish(std::move(events));
  /// @endcode
  Status publish(std::vector<Event> events, std::function<void(const Settlement&)> on_settled = {});

  /// Waits until everything committed before the call has been handled (delivered, failed,
  /// filtered or dropped) by every adapter, including what handlers cascade from it, the
  /// retries of what failed with a retriable code (a retry waiting for its backoff is not
  /// handled yet) and the dead-letter copies of what failed for good.
  /// timeout when the deadline passes first; closed once shutdown has begun;
  /// invalid_argument from one of this emitter's delivery or handler threads (it would
  /// wait for itself); otherwise the first error of an adapter's flush(), if any.
  Status drain(std::chrono::milliseconds timeout = std::chrono::seconds(30));

  /// Stops accepting commits (later emit/commit return closed), drains until the deadline
  /// (retrying on schedule meanwhile), calls every adapter's terminate() and joins every
  /// thread. When an adapter is still busy
  /// at the deadline, returns timeout naming each adapter and how many events it did not
  /// deliver; those events are counted as dropped (reason "shutdown"); a consumer still
  /// inside an adapter call is left for the destructor to join. Otherwise returns the first
  /// error of an adapter's flush() (during the drain) or terminate(). Idempotent: later
  /// calls return the first one's result.
  Status shutdown(std::chrono::milliseconds timeout = std::chrono::seconds(30));

  /// Whether shutdown has begun (commits are refused).
  [[nodiscard]] bool closed() const noexcept;
  /// A snapshot of the counters (relaxed reads: exact once drained).
  [[nodiscard]] EmitterStats stats() const;

  /// Makes this emitter the target of the ambient functions (emissions::start(), ...),
  /// as Config::make_default does at construction.
  void make_default();

 private:
  std::shared_ptr<detail::Core> core_;
  std::chrono::milliseconds shutdown_timeout_;
};

}  // namespace emissions
