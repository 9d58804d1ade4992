#include "report.hpp"

#include <csignal>
#include <cstdio>
#include <iomanip>
#include <ostream>
#include <string_view>

namespace demo {
namespace {

constexpr std::string_view kJsonLinesName = "json_lines";
constexpr std::string_view kSummaryName = "summary";

const emissions::AdapterStats* find_adapter(const emissions::EmitterStats& stats,
                                            std::string_view name) {
  for (const emissions::AdapterStats& a : stats.adapters)
    if (a.name == name) return &a;
  return nullptr;
}

std::uint64_t count_of(const std::map<std::string, std::uint64_t>& counts,
                       const std::string& name) {
  const auto it = counts.find(name);
  return it == counts.end() ? 0 : it->second;
}

std::string format_cents(std::int64_t cents) {
  const std::string sign = cents < 0 ? "-" : "";
  const auto magnitude = static_cast<std::uint64_t>(cents < 0 ? -cents : cents);
  const std::uint64_t rest = magnitude % 100;
  return sign + with_commas(magnitude / 100) + (rest < 10 ? ".0" : ".") + std::to_string(rest);
}

std::string percent(double share) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", share * 100.0);
  return buf;
}

// The events an earlier run left for adapter `i` (stats.adapters order), delivered before
// the first order; 0 without a spool.
std::uint64_t recovered_for(const RunReport& r, std::size_t i) {
  if (!r.spool || i >= r.spool->recovered.size()) return 0;
  return r.spool->recovered[i].events;
}

std::uint64_t recovered_by_name(const RunReport& r, std::string_view name) {
  if (!r.spool) return 0;
  for (const AdapterCount& c : r.spool->recovered)
    if (c.name == name) return c.events;
  return 0;
}

std::uint64_t total(const std::vector<AdapterCount>& counts) {
  std::uint64_t sum = 0;
  for (const AdapterCount& c : counts)
    sum += c.events;
  return sum;
}

// "slow_archive 41,200, json_lines 12" for the non-zero counts.
std::string list_nonzero(const std::vector<AdapterCount>& counts) {
  std::string out;
  for (const AdapterCount& c : counts) {
    if (c.events != 0) out += (out.empty() ? "" : ", ") + c.name + " " + with_commas(c.events);
  }
  return out;
}

// The spool's lines of the summary: what an earlier run left and this one delivered, what
// is left for the next run, and what a restart would not deliver to this run's adapters.
template <typename Label>
void print_spool(const RunReport& r, const Label& label) {
  const SpoolReport& spool = *r.spool;
  label("spool") << spool.dir << ": " << format_bytes(r.stats.spool_bytes)
                 << " of segment files (max_bytes " << format_bytes(spool.options.max_bytes)
                 << "), durability "
                 << (spool.options.durability == emissions::Durability::machine ? "machine"
                                                                                : "process")
                 << '\n';
  // Counts are per adapter: one event left for two adapters counts for each.
  const std::string recovered = list_nonzero(spool.recovered);
  if (!spool.recovery_complete) {
    label("") << "what an earlier run left was not all delivered before the first order ("
              << (recovered.empty() ? "no events" : recovered) << " so far); the rest stays"
              << " on disk for the next run with --spool " << spool.dir << '\n';
  } else {
    if (!recovered.empty()) {
      label("") << "an earlier run left events, delivered before the first order: " << recovered
                << '\n';
    }
    const std::string unsettled = list_nonzero(spool.unsettled);
    if (unsettled.empty()) {
      label("") << "left on disk: no events, every adapter settled all of them\n";
    } else {
      label("") << "left on disk, not settled: " << unsettled << " events; a restart with --spool "
                << spool.dir << " delivers them\n";
    }
  }
  if (r.stats.spool_orphaned_events != 0) {
    label("") << "kept for adapters this run does not have: "
              << with_commas(r.stats.spool_orphaned_events)
              << " events (a run with the same adapters delivers them)\n";
  }
  if (r.stats.spool_corrupt_records != 0) {
    label("") << "corrupt commits skipped: " << with_commas(r.stats.spool_corrupt_records) << '\n';
  }
}

}  // namespace

std::string with_commas(std::uint64_t n) {
  const std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string format_rate(double per_second) {
  char buf[32];
  if (per_second < 1e3) {
    std::snprintf(buf, sizeof buf, "%.0f", per_second);
  } else if (per_second < 1e6) {
    std::snprintf(buf, sizeof buf, "%.1fk", per_second / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.2fM", per_second / 1e6);
  }
  return buf;
}

std::string format_bytes(std::uint64_t bytes) {
  char buf[32];
  const auto v = static_cast<double>(bytes);
  if (bytes < (1u << 10)) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  } else if (bytes < (1u << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", v / 0x1p10);
  } else if (bytes < (1u << 30)) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", v / 0x1p20);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f GiB", v / 0x1p30);
  }
  return buf;
}

std::string format_ns(std::int64_t ns) {
  char buf[32];
  const auto v = static_cast<double>(ns);
  if (ns < 1'000) {
    std::snprintf(buf, sizeof buf, "%lld ns", static_cast<long long>(ns));
  } else if (ns < 1'000'000) {
    std::snprintf(buf, sizeof buf, "%.1f us", v / 1e3);
  } else if (ns < 1'000'000'000) {
    std::snprintf(buf, sizeof buf, "%.2f ms", v / 1e6);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f s", v / 1e9);
  }
  return buf;
}

std::vector<std::string> check_run(const RunReport& r) {
  std::vector<std::string> problems = r.problems;
  const auto fail = [&problems](std::string message) { problems.push_back(std::move(message)); };
  const std::uint64_t committed = r.stats.committed;

  // Every committed event reached each adapter exactly once, in one of four ways; with a
  // spool, so did every event an earlier run left for it. When that backlog was not all
  // delivered before the first order, how much of it there was is unknown (the failed
  // drain is among the problems already).
  std::uint64_t dropped = 0;
  const bool recovery_known = !r.spool || r.spool->recovery_complete;
  for (std::size_t i = 0; i < r.stats.adapters.size(); ++i) {
    const emissions::AdapterStats& a = r.stats.adapters[i];
    dropped += a.dropped;
    if (!recovery_known) continue;
    const std::uint64_t recovered = recovered_for(r, i);
    const std::uint64_t expected = committed + recovered;
    if (handled(a) != expected || a.queued != 0) {
      fail("adapter " + a.name + ": delivered + failed + filtered + dropped = " +
           with_commas(handled(a)) + ", committed = " + with_commas(committed) +
           (recovered != 0 ? " + " + with_commas(recovered) + " left by an earlier run" : "") +
           ", still queued " + with_commas(a.queued));
    }
  }

  // The emitter counted exactly what the request threads did.
  if (committed != r.orders.committed) {
    fail("the emitter counted " + with_commas(committed) + " committed events, the requests " +
         with_commas(r.orders.committed));
  }
  if (r.stats.discarded != r.orders.discarded) {
    fail("the emitter counted " + with_commas(r.stats.discarded) +
         " discarded events, the requests " + with_commas(r.orders.discarded));
  }
  if (r.stats.transactions != r.orders.confirmed) {
    fail("the emitter counted " + with_commas(r.stats.transactions) +
         " transactions, the requests confirmed " + with_commas(r.orders.confirmed) + " orders");
  }

  // Every drop was announced through telemetry.
  if (r.telemetry_dropped != dropped) {
    fail("telemetry reported " + with_commas(r.telemetry_dropped) + " dropped events, stats " +
         with_commas(dropped));
  }

  // The summary saw every confirmed order, with the right amounts (when nothing was lost,
  // and no earlier run's orders were added).
  const emissions::AdapterStats* summary = find_adapter(r.stats, kSummaryName);
  const bool summary_complete = summary != nullptr && summary->delivered == committed &&
                                recovered_by_name(r, kSummaryName) == 0;
  if (summary_complete) {
    if (count_of(r.summary_counts, "order_confirmed") != r.orders.confirmed) {
      fail("the summary counted " + with_commas(count_of(r.summary_counts, "order_confirmed")) +
           " confirmed orders, the requests " + with_commas(r.orders.confirmed));
    }
    if (r.summary_revenue_cents != r.orders.revenue_cents) {
      fail("the summary's revenue " + format_cents(r.summary_revenue_cents) +
           " differs from the requests' " + format_cents(r.orders.revenue_cents));
    }
  }

  // The file holds one line per event the JSON-lines adapter delivered, each an envelope.
  const emissions::AdapterStats* json_lines = find_adapter(r.stats, kJsonLinesName);
  if (r.output.inspected && json_lines != nullptr) {
    if (r.output.lines != json_lines->delivered) {
      fail(r.out_path + " has " + with_commas(r.output.lines) + " lines, json_lines delivered " +
           with_commas(json_lines->delivered));
    }
    if (r.options.verify) {
      if (r.output.bad_lines != 0) {
        fail(r.out_path + ": " + with_commas(r.output.bad_lines) + " bad lines, the first at " +
             r.output.first_problem);
      }
      if (summary_complete && json_lines->delivered == committed &&
          recovered_by_name(r, kJsonLinesName) == 0 && r.output.names != r.summary_counts) {
        fail(r.out_path + ": the events per name differ from the summary's counts");
      }
    }
  } else if (!r.output.first_problem.empty()) {
    fail(r.output.first_problem);
  }
  return problems;
}

void print_report(std::ostream& out, const RunReport& r, const std::vector<std::string>& problems) {
  const OrderTotals& o = r.orders;
  const auto label = [&out](std::string_view text) -> std::ostream& {
    return out << std::left << std::setw(12) << text << std::right;
  };

  if (r.interrupted_by != 0) {
    label("stopped") << (r.interrupted_by == SIGINT ? "by Ctrl-C (SIGINT)" : "by SIGTERM")
                     << " after " << with_commas(o.emitted) << " of "
                     << with_commas(r.options.events)
                     << " events: the figures below cover the orders that ran\n";
  }
  label("orders") << with_commas(o.orders) << " placed, " << with_commas(o.confirmed)
                  << " confirmed, " << with_commas(o.payment_declined) << " payment declined, "
                  << with_commas(o.out_of_stock) << " out of stock, " << with_commas(o.rejected)
                  << " rejected";
  if (o.orders > 0) {
    out << " ("
        << percent(static_cast<double>(o.orders - o.confirmed) / static_cast<double>(o.orders))
        << " failed)";
  }
  out << '\n';
  if (!o.first_error.empty()) label("") << "first error: " << o.first_error << '\n';
  label("events") << with_commas(o.emitted) << " emitted, " << with_commas(r.stats.committed)
                  << " committed in " << with_commas(r.stats.transactions) << " transactions, "
                  << with_commas(r.stats.discarded) << " discarded by terminate()\n";
  const double emit_rate = r.emit_seconds > 0 ? static_cast<double>(o.emitted) / r.emit_seconds : 0;
  const double delivery_rate =
      r.total_seconds > 0 ? static_cast<double>(r.stats.committed) / r.total_seconds : 0;
  label("throughput") << format_rate(emit_rate) << " events/s emitted ("
                      << format_ns(static_cast<std::int64_t>(r.emit_seconds * 1e9)) << "), "
                      << format_rate(delivery_rate)
                      << " events/s committed and handled by every adapter ("
                      << format_ns(static_cast<std::int64_t>(r.total_seconds * 1e9)) << ")\n\n";

  // One row per adapter; the latency is from the request's commit() call to the end of the
  // adapter's handle_events call for that event.
  out << std::left << std::setw(14) << "adapter" << std::right << std::setw(12) << "delivered"
      << std::setw(9) << "failed" << std::setw(10) << "filtered" << std::setw(11) << "dropped"
      << std::setw(12) << "p50" << std::setw(12) << "p99"
      << "   (commit -> delivered)\n";
  const auto row = [&out](std::string_view name, std::uint64_t delivered, std::uint64_t failed,
                          std::uint64_t filtered, std::uint64_t dropped,
                          const LatencyHistogram* latency) {
    out << std::left << std::setw(14) << name << std::right << std::setw(12)
        << with_commas(delivered) << std::setw(9) << with_commas(failed) << std::setw(10)
        << with_commas(filtered) << std::setw(11) << with_commas(dropped);
    if (latency != nullptr && latency->count() > 0) {
      out << std::setw(12) << format_ns(latency->quantile(0.50)) << std::setw(12)
          << format_ns(latency->quantile(0.99));
    } else {
      out << std::setw(12) << "-" << std::setw(12) << "-";
    }
    out << '\n';
  };
  emissions::AdapterStats all;
  LatencyHistogram all_latency;
  for (std::size_t i = 0; i < r.stats.adapters.size(); ++i) {
    const emissions::AdapterStats& a = r.stats.adapters[i];
    const LatencyHistogram* latency = i < r.latency.size() ? r.latency[i] : nullptr;
    row(a.name, a.delivered, a.failed, a.filtered, a.dropped, latency);
    all.delivered += a.delivered;
    all.failed += a.failed;
    all.filtered += a.filtered;
    all.dropped += a.dropped;
    if (latency != nullptr) all_latency.merge(*latency);
  }
  row("all adapters", all.delivered, all.failed, all.filtered, all.dropped, &all_latency);
  out << '\n';

  label("summary");
  bool first = true;
  for (const auto& [name, count] : r.summary_counts) {
    out << (first ? "" : ", ") << name << ' ' << with_commas(count);
    first = false;
  }
  if (first) out << "no events";
  out << '\n';
  label("") << "revenue of confirmed orders: EUR " << format_cents(r.summary_revenue_cents) << '\n';
  if (!r.summary_counts.empty() && recovered_by_name(r, kSummaryName) != 0) {
    label("") << "(both include the events an earlier run left in the spool)\n";
  }
  label("telemetry") << "[emissions, event, dropped] x " << with_commas(r.telemetry_dropped)
                     << ", [emissions, adapter, error] x " << with_commas(r.telemetry_errors)
                     << " (" << with_commas(r.telemetry_error_events) << " events)\n";
  if (r.spool) print_spool(r, label);
  label("output") << r.out_path;
  if (r.output.inspected) {
    out << ": " << with_commas(r.output.lines) << " lines";
    if (r.options.verify) {
      out << ", "
          << (r.output.bad_lines == 0 ? "all parsed" : with_commas(r.output.bad_lines) + " bad");
    }
  }
  out << '\n';

  if (problems.empty()) {
    const bool recovered = r.spool && total(r.spool->recovered) != 0;
    label("checks") << "ok: every adapter accounted for all " << with_commas(r.stats.committed)
                    << " committed events" << (recovered ? " and those an earlier run left" : "")
                    << '\n';
  } else {
    for (const std::string& p : problems)
      label("FAILED") << p << '\n';
  }
}

}  // namespace demo
