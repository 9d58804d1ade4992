#include "pipeline/adapter_call.hpp"

#include <chrono>

#include "common/exceptions.hpp"
#include "telemetry/events.hpp"

namespace emissions::detail {

DeliveryOutcome deliver_to(Adapter& adapter, std::span<const Event> batch, bool& needs_init,
                           bool timed) noexcept {
  const auto started =
      timed ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  DeliveryOutcome out;
  try {
    if (needs_init) {
      out.status = adapter.init();
      if (out.status.ok()) {
        needs_init = false;
      } else {
        out.status = Status(out.status.code(), "init failed: " + out.status.message());
      }
    }
    if (!needs_init) out.status = adapter.handle_events(batch);
  } catch (...) {
    out.status = Status(Errc::internal, describe_current_exception());
    out.threw = true;
  }
  // A throw counts as a crash, and the adapter is restarted the way an Elixir supervisor
  // restarts a crashed process: init() runs again before the next batch.
  if (out.threw) needs_init = true;
  if (timed) {
    out.duration_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now() - started)
                          .count();
  }
  return out;
}

bool delivery_reported() noexcept {
  return events::kAdapterSuccess.enabled() || events::kAdapterError.enabled();
}

void report_delivery(std::string_view adapter, std::size_t event_count,
                     const DeliveryOutcome& outcome, const nlohmann::json& extra) noexcept {
  const telemetry::Probe& probe =
      outcome.status.ok() ? events::kAdapterSuccess : events::kAdapterError;
  if (!probe.enabled()) return;
  try {
    nlohmann::json metadata{{"adapter", adapter}, {"event_count", event_count}};
    if (!outcome.status.ok()) metadata["reason"] = outcome.reason();
    if (extra.is_object()) metadata.update(extra);
    probe.execute({{"duration", outcome.duration_ns}}, metadata);
  } catch (...) {
    // Building the report ran out of memory: telemetry is best effort, delivery is not.
  }
}

}  // namespace emissions::detail
