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

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace emissions {

/// How long events took from their commit to their delivery to one adapter, as a histogram
/// with fixed buckets (the shape Prometheus histograms have). Retries are included: an
/// event delivered on its third attempt counts the time since its commit. Events read back
/// from a spool are not measured (their commit may predate this process).
///
/// @code
///   const emissions::DeliveryLatency& l = emitter.stats().adapters[0].latency;
///   std::cout << "p99 <= " << l.quantile(0.99) << " s over " << l.count << " events\n";
/// @endcode
struct DeliveryLatency {
  /// The buckets' upper bounds, in seconds; the last bucket (not listed) is unbounded.
  static constexpr std::array<double, 14> kBounds = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0};
  /// Events per bucket (not cumulative): buckets[i] took at most kBounds[i] seconds and more
  /// than kBounds[i - 1]; buckets[kBounds.size()] took longer than the last bound.
  std::array<std::uint64_t, kBounds.size() + 1> buckets{};
  std::uint64_t count = 0;   ///< events measured: the sum of buckets
  std::uint64_t sum_ns = 0;  ///< their latencies added up, in nanoseconds

  /// The upper bound of the bucket holding quantile `q` (0 < q <= 1), in seconds: an
  /// upper estimate. 0 when nothing was measured; infinity when it is in the last bucket.
  [[nodiscard]] double quantile(double q) const noexcept;
};

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
  /// Commit to delivery, for the events delivered (empty in a Settlement).
  DeliveryLatency latency = {};
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
