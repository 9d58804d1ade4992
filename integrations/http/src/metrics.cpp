#include "metrics.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <map>
#include <string_view>

namespace emissions::http::detail {

std::string escape_label(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

namespace {

void header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void sample(std::string& out, std::string_view name, std::string_view labels, std::uint64_t value) {
  out.append(name);
  if (!labels.empty()) out.append("{").append(labels).append("}");
  out.append(" ").append(std::to_string(value)).append("\n");
}

// The shortest text that reads back as `value` ("0.00025", "5").
std::string number(double value) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, value);
  return std::string(buf, r.ptr);
}

std::string adapter_label(const AdapterStats& a) {
  return "adapter=\"" + escape_label(a.name) + "\"";
}

}  // namespace

std::string render_metrics(const EmitterStats& stats, bool with_spool,
                           const DropCounter::Counts& drops, const ServerCounters& server) {
  std::string out;
  out.reserve(512 + stats.adapters.size() * 600);

  header(out, "emissions_adapter_events_total", "counter",
         "Events settled per adapter, by outcome.");
  for (const AdapterStats& a : stats.adapters) {
    const std::string l = adapter_label(a);
    sample(out, "emissions_adapter_events_total", l + ",outcome=\"delivered\"", a.delivered);
    sample(out, "emissions_adapter_events_total", l + ",outcome=\"failed\"", a.failed);
    sample(out, "emissions_adapter_events_total", l + ",outcome=\"filtered\"", a.filtered);
    sample(out, "emissions_adapter_events_total", l + ",outcome=\"dropped\"", a.dropped);
  }
  header(out, "emissions_dropped_events_total", "counter",
         "Events dropped per adapter, by reason (overflow: the overflow policy or a full "
         "spool; shutdown: not delivered by a shutdown's deadline).");
  for (const AdapterStats& a : stats.adapters) {
    const std::string l = adapter_label(a);
    // The reasons the pipeline reports for an adapter, shown from 0 (a series that appears
    // only with its first drop hides that first drop from rate()); then any other reason.
    std::map<std::string_view, std::uint64_t> by_reason{{"overflow", 0}, {"shutdown", 0}};
    for (auto it = drops.lower_bound({a.name, std::string()});
         it != drops.end() && it->first.first == a.name; ++it)
      by_reason[it->first.second] += it->second;
    for (const auto& [reason, n] : by_reason)
      sample(out, "emissions_dropped_events_total", l + ",reason=\"" + escape_label(reason) + "\"",
             n);
  }
  header(out, "emissions_adapter_received_total", "counter",
         "Events handed to each adapter's queue.");
  for (const AdapterStats& a : stats.adapters)
    sample(out, "emissions_adapter_received_total", adapter_label(a), a.received);
  header(out, "emissions_adapter_queued", "gauge", "Events waiting in each adapter's queue.");
  for (const AdapterStats& a : stats.adapters)
    sample(out, "emissions_adapter_queued", adapter_label(a), a.queued);
  header(out, "emissions_adapter_retries_total", "counter",
         "Re-deliveries, one per event per retry.");
  for (const AdapterStats& a : stats.adapters)
    sample(out, "emissions_adapter_retries_total", adapter_label(a), a.retried);
  header(out, "emissions_adapter_dead_lettered_total", "counter",
         "Failed events whose dead-letter copy was delivered.");
  for (const AdapterStats& a : stats.adapters)
    sample(out, "emissions_adapter_dead_lettered_total", adapter_label(a), a.dead_lettered);

  header(out, "emissions_delivery_latency_seconds", "histogram",
         "Commit to delivery of the events each adapter delivered.");
  for (const AdapterStats& a : stats.adapters) {
    const std::string l = adapter_label(a);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < DeliveryLatency::kBounds.size(); ++i) {
      cumulative += a.latency.buckets[i];
      sample(out, "emissions_delivery_latency_seconds_bucket",
             l + ",le=\"" + number(DeliveryLatency::kBounds[i]) + "\"", cumulative);
    }
    sample(out, "emissions_delivery_latency_seconds_bucket", l + ",le=\"+Inf\"", a.latency.count);
    out.append("emissions_delivery_latency_seconds_sum{").append(l).append("} ");
    out.append(number(static_cast<double>(a.latency.sum_ns) * 1e-9)).append("\n");
    sample(out, "emissions_delivery_latency_seconds_count", l, a.latency.count);
  }

  header(out, "emissions_committed_events_total", "counter", "Events handed to the pipeline.");
  sample(out, "emissions_committed_events_total", "", stats.committed);
  header(out, "emissions_transactions_total", "counter",
         "Successful commits and flushes of at least one event.");
  sample(out, "emissions_transactions_total", "", stats.transactions);
  header(out, "emissions_discarded_events_total", "counter",
         "Events thrown away by terminate() or abandonment.");
  sample(out, "emissions_discarded_events_total", "", stats.discarded);
  header(out, "emissions_cascade_dropped_events_total", "counter",
         "Handler emits refused by max_cascade_depth.");
  sample(out, "emissions_cascade_dropped_events_total", "", stats.cascade_dropped);

  header(out, "emissions_http_accept_errors_total", "counter",
         "Connections this server failed to accept (out of file descriptors, ...).");
  sample(out, "emissions_http_accept_errors_total", "", server.accept_errors);

  if (with_spool) {
    header(out, "emissions_spool_backlog_bytes", "gauge", "Bytes of spool segment files on disk.");
    sample(out, "emissions_spool_backlog_bytes", "", stats.spool_bytes);
    header(out, "emissions_spool_corrupt_records_total", "counter",
           "Commits skipped because a record was corrupt on disk.");
    sample(out, "emissions_spool_corrupt_records_total", "", stats.spool_corrupt_records);
  }
  return out;
}

}  // namespace emissions::http::detail
