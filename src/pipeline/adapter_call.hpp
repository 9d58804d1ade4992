// Internal: one delivery to an adapter, with its restart rule, shared by the
// pipeline's consumers and by adapters that wrap another one (adapters::Batching).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "emissions/adapter.hpp"

namespace emissions::detail {

struct DeliveryOutcome {
  Status status;
  bool threw = false;
  std::int64_t duration_ns = 0;  // measured only when asked to

  // Telemetry's "reason": an exception's message, or the Status's text.
  [[nodiscard]] std::string reason() const { return threw ? status.message() : status.to_string(); }
};

// Calls adapter.init() first when `needs_init` (before the first batch, and again after a
// call threw), then handle_events(batch). Never throws.
DeliveryOutcome deliver_to(Adapter& adapter, std::span<const Event> batch, bool& needs_init,
                           bool timed) noexcept;

// Whether report_delivery would report anything (so callers can skip timing).
[[nodiscard]] bool delivery_reported() noexcept;

// [emissions, adapter, success|error] for one delivery; `extra` keys join the metadata.
void report_delivery(std::string_view adapter, std::size_t event_count,
                     const DeliveryOutcome& outcome,
                     const nlohmann::json& extra = nlohmann::json()) noexcept;

}  // namespace emissions::detail
