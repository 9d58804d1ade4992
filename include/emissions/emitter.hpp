// emissions/emitter.hpp: owns the delivery pipeline: one bounded queue and one consumer
// thread per adapter, fed by committed transactions.
//
//   emissions::Config config;
//   config.add_adapter(std::make_shared<emissions::adapters::JsonLines>("events.jsonl"));
//   emissions::Emitter emitter(std::move(config));  // threads start here
//
//   emissions::Transaction tx = emitter.start();
//   tx.emit("order_created", {{"id", 1}});
//   tx.commit();
//   emitter.drain(std::chrono::seconds(1));  // everything committed so far is handled
//   // the destructor shuts down gracefully (drain, terminate adapters, join threads)
//
// Every committed event reaches every interested adapter exactly once, in batches of at
// most max_demand; one transaction's events arrive in emit order and one thread's
// transactions in commit order. Each adapter has its own queue, so a slow adapter never
// delays the others; a full queue applies that adapter's Overflow policy, and every drop
// is counted in stats() and reported as `[emissions, event, dropped]`.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "emissions/config.hpp"
#include "emissions/status.hpp"
#include "emissions/transaction.hpp"

namespace emissions {

// Counters of one adapter. Once drained:
// committed == delivered + failed + filtered + dropped.
// (The handler dispatcher, when handlers are configured, is listed as the adapter
// "emissions.handlers": its `delivered` counts events dispatched to handlers.)
struct AdapterStats {
  std::string name;
  std::uint64_t delivered = 0;  // handed to handle_events, which returned ok
  std::uint64_t failed = 0;     // handed to handle_events, which returned an error or threw
  std::uint64_t filtered = 0;   // not wanted: interested() returned false
  std::uint64_t dropped = 0;    // dropped by the overflow policy or by a timed-out shutdown
  std::uint64_t queued = 0;     // waiting in the adapter's queue now
};

struct EmitterStats {
  std::uint64_t committed = 0;         // events handed to the pipeline
  std::uint64_t transactions = 0;      // successful commits and non-empty flushes
  std::uint64_t discarded = 0;         // events thrown away by terminate() or abandonment
  std::uint64_t cascade_dropped = 0;   // handler emits refused by max_cascade_depth
  std::vector<AdapterStats> adapters;  // in configuration order
};

class Emitter {
 public:
  // Validates `config` (throws ConfigError) and starts one consumer thread per adapter.
  explicit Emitter(Config config = {});
  // shutdown(config.shutdown_timeout); then waits for any adapter still inside a call.
  ~Emitter();
  Emitter(const Emitter&) = delete;
  Emitter& operator=(const Emitter&) = delete;

  // A new active transaction on this emitter. When the emitter is shut down the
  // transaction's emit and commit return closed.
  [[nodiscard]] Transaction start();

  // Waits until everything committed before the call has been handled (delivered, failed,
  // filtered or dropped) by every adapter. timeout when the deadline passes first.
  Status drain(std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // Stops accepting commits (later emit/commit return closed), drains until the deadline,
  // calls every adapter's terminate() and joins every thread. When an adapter is still busy
  // at the deadline, returns timeout naming each adapter and how many events it did not
  // deliver; those events are counted as dropped (reason "shutdown"). Idempotent.
  Status shutdown(std::chrono::milliseconds timeout = std::chrono::seconds(30));

  [[nodiscard]] bool closed() const noexcept;
  [[nodiscard]] EmitterStats stats() const;

  // Makes this emitter the target of the ambient functions (emissions::start(), ...).
  void make_default();

 private:
  std::shared_ptr<detail::Core> core_;
  std::chrono::milliseconds shutdown_timeout_;
};

}  // namespace emissions
