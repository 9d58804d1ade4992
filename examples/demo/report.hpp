// The end of the run: the table on stdout and the checks that make the demo a smoke test.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "emissions/emitter.hpp"
#include "latency.hpp"
#include "options.hpp"
#include "output_file.hpp"
#include "simulation.hpp"
#include "spool_backlog.hpp"

namespace demo {

// With --spool: what the spool held at the start and holds at the end.
struct SpoolReport {
  std::string dir;  // absolute
  emissions::SpoolOptions options;
  // Whether the backlog an earlier run left was delivered (a drain returned ok) before the
  // first order. Without it, `recovered` is what was handled so far and `unsettled` is empty.
  bool recovery_complete = false;
  std::vector<AdapterCount> recovered = {};  // per adapter, the earlier run's events it handled
  std::vector<AdapterCount> unsettled = {};  // per adapter, events left on disk for the next run
};

// Everything the report shows, gathered once the emitter has shut down.
struct RunReport {
  Options options;
  int interrupted_by = 0;         // the signal that stopped the run early, or 0
  OrderTotals orders;             // what the request threads counted
  emissions::EmitterStats stats;  // what the emitter counted
  // Per adapter, in stats.adapters order; null for an adapter that was not measured.
  std::vector<const LatencyHistogram*> latency;
  std::map<std::string, std::uint64_t> summary_counts;  // from the summary adapter
  std::int64_t summary_revenue_cents = 0;
  std::uint64_t telemetry_dropped = 0;       // [emissions, event, dropped] seen
  std::uint64_t telemetry_errors = 0;        // [emissions, adapter, error] seen
  std::uint64_t telemetry_error_events = 0;  // their event_count, added up
  double emit_seconds = 0;                   // first order to last request thread done
  double total_seconds = 0;                  // first order to everything delivered
  std::string out_path;                      // absolute
  OutputCheck output;
  std::vector<std::string> problems;  // found while running (drain or shutdown errors)
  std::optional<SpoolReport> spool;   // with --spool
};

// Checks that both sides' counters agree (see the comments in the implementation) and
// returns one message per violation.
[[nodiscard]] std::vector<std::string> check_run(const RunReport& report);

// Writes the table, then `problems` (or "ok").
void print_report(std::ostream& out, const RunReport& report,
                  const std::vector<std::string>& problems);

// 1234567 -> "1,234,567".
[[nodiscard]] std::string with_commas(std::uint64_t n);
// 1234.5 -> "1.23k", 2.5e6 -> "2.50M".
[[nodiscard]] std::string format_rate(double per_second);
// 512 -> "512 B", 3 << 20 -> "3.0 MiB", 1 << 30 -> "1.00 GiB".
[[nodiscard]] std::string format_bytes(std::uint64_t bytes);
// Nanoseconds -> "850 ns", "18.4 us", "1.21 ms", "2.41 s".
[[nodiscard]] std::string format_ns(std::int64_t ns);

}  // namespace demo
