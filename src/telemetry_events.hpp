// Internal: the library's own telemetry event names (the seed's table), built once.
#pragma once

#include "emissions/telemetry.hpp"

namespace emissions::detail::events {

inline const telemetry::EventName kBufferStarted{"emissions", "buffer", "started"};
inline const telemetry::EventName kBufferCommitted{"emissions", "buffer", "committed"};
inline const telemetry::EventName kBufferTerminated{"emissions", "buffer", "terminated"};
inline const telemetry::EventName kEventDropped{"emissions", "event", "dropped"};
inline const telemetry::EventName kAdapterSuccess{"emissions", "adapter", "success"};
inline const telemetry::EventName kAdapterError{"emissions", "adapter", "error"};
inline const telemetry::EventName kHandlerSuccess{"emissions", "handler", "success"};
inline const telemetry::EventName kHandlerError{"emissions", "handler", "error"};
inline const telemetry::EventName kHandlerIgnored{"emissions", "handler", "ignored"};

}  // namespace emissions::detail::events
