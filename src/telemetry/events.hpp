// Internal: the library's own telemetry events (the seed's table), each with a Probe so
// hot paths build measurements only when someone listens to that very event.
#pragma once

#include "emissions/telemetry.hpp"

namespace emissions::detail::events {

inline const telemetry::Probe kBufferStarted{{"emissions", "buffer", "started"}};
inline const telemetry::Probe kBufferCommitted{{"emissions", "buffer", "committed"}};
inline const telemetry::Probe kBufferTerminated{{"emissions", "buffer", "terminated"}};
inline const telemetry::Probe kEventDropped{{"emissions", "event", "dropped"}};
inline const telemetry::Probe kAdapterSuccess{{"emissions", "adapter", "success"}};
inline const telemetry::Probe kAdapterError{{"emissions", "adapter", "error"}};
inline const telemetry::Probe kHandlerSuccess{{"emissions", "handler", "success"}};
inline const telemetry::Probe kHandlerError{{"emissions", "handler", "error"}};
inline const telemetry::Probe kHandlerIgnored{{"emissions", "handler", "ignored"}};

}  // namespace emissions::detail::events
