/// @file
/// emissions/settlement.hpp: what became of events, per adapter.
///
/// Every event handed to an adapter is settled exactly once for it: delivered, failed for
/// good, filtered (the adapter did not want it) or dropped (an overflow policy, or a
/// shutdown that ran out of time). Retries are not settlements: an event failed with a
/// retriable code is settled when a later attempt delivers it or fails it for good.
/// AdapterStats counts settlements for an Emitter's whole life (Emitter::stats()); a
/// Settlement counts them for one commit (Transaction::commit(on_settled)).
///
/// @code
///   tx.commit([](const emissions::Settlement& s) {
///     for (const emissions::AdapterStats& a : s.adapters)
///       if (a.failed + a.dropped != 0) alert(a.name);
///   });
/// @endcode
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace emissions {

/// Counters of one adapter. Once drained:
/// received == delivered + failed + filtered + dropped.
/// (The handler dispatcher, when handlers are configured, is listed as the adapter
/// "emissions.handlers": its `delivered` counts events dispatched to handlers.)
struct AdapterStats {
  std::string name;             ///< the adapter's name()
  std::uint64_t delivered = 0;  ///< handle_events returned ok, or an AsyncAdapter acked them
  /// Failed for good: handle_events returned an error or threw (or init() failed), or an
  /// AsyncAdapter failed them, with a code that is not retriable or after the last attempt
  std::uint64_t failed = 0;
  std::uint64_t filtered = 0;  ///< not wanted: interested() returned false
  std::uint64_t dropped = 0;   ///< dropped by the overflow policy or by a timed-out shutdown
  std::uint64_t queued = 0;    ///< waiting in the adapter's queue now
  /// Events handed to this adapter's queue: every committed event for a configured adapter,
  /// the dead-letter copies for a dead-letter adapter. Once drained,
  /// received == delivered + failed + filtered + dropped.
  std::uint64_t received = 0;
  std::uint64_t retried = 0;  ///< re-deliveries, one per event per retry (not in the sum)
  /// Of `failed`, the events whose dead-letter copy the dead-letter adapter delivered.
  std::uint64_t dead_lettered = 0;
};

/// The outcome of one commit's events, given to Transaction::commit(on_settled) and
/// Emitter::publish once every adapter has settled every one of them.
///
/// `adapters` has one entry per configured adapter, in configuration order, then
/// "emissions.handlers" when there are handlers (dead-letter adapters are not listed); each
/// counts only these events (`queued` is 0).
///
/// @code
///   bool all_delivered(const emissions::Settlement& s) {
///     for (const auto& a : s.adapters) if (a.failed + a.dropped != 0) return false;
///     return true;
///   }
/// @endcode
struct Settlement {
  std::vector<AdapterStats> adapters;  ///< per adapter, in configuration order
};

}  // namespace emissions
