// Internal: the webhook adapter's telemetry events (see emissions/adapters/webhook.hpp), each
// with a Probe so that a request builds its measurements only when someone listens. Never
// destroyed (common/no_destroy.hpp): an adapter terminated during static destruction still
// reports through them.
#pragma once

#include "common/no_destroy.hpp"
#include "emissions/telemetry.hpp"

namespace emissions::detail::webhooks {

struct Probes {
  telemetry::Probe response{{"emissions", "webhook", "response"}};
  telemetry::Probe disabled{{"emissions", "webhook", "disabled"}};
  telemetry::Probe warning{{"emissions", "webhook", "warning"}};
  telemetry::Probe terminated{{"emissions", "webhook", "terminated"}};
};

inline NoDestroy<Probes> g_probes;

}  // namespace emissions::detail::webhooks
