// Internal: the library's own telemetry events (the README's Telemetry table lists their
// measurements and metadata), each with a Probe so hot paths build measurements only when
// someone listens to that very event.
//
//   if (events::kAdapterError.enabled()) events::kAdapterError.execute(measurements, meta);
//
// The probes are never destroyed (see common/no_destroy.hpp): an Emitter destroyed during
// static destruction still reports through them. All of them live in one `inline` holder,
// so the program has exactly one set however many files include this header; each kName
// is a reference into it, bound at compile time (constinit).
#pragma once

#include "common/no_destroy.hpp"
#include "emissions/telemetry.hpp"

namespace emissions::detail::events {

struct LibraryProbes {
  telemetry::Probe buffer_started{{"emissions", "buffer", "started"}};
  telemetry::Probe buffer_committed{{"emissions", "buffer", "committed"}};
  telemetry::Probe buffer_terminated{{"emissions", "buffer", "terminated"}};
  telemetry::Probe event_dropped{{"emissions", "event", "dropped"}};
  telemetry::Probe adapter_success{{"emissions", "adapter", "success"}};
  telemetry::Probe adapter_error{{"emissions", "adapter", "error"}};
  telemetry::Probe adapter_retry{{"emissions", "adapter", "retry"}};
  telemetry::Probe event_dead_lettered{{"emissions", "event", "dead_lettered"}};
  telemetry::Probe handler_success{{"emissions", "handler", "success"}};
  telemetry::Probe handler_error{{"emissions", "handler", "error"}};
  telemetry::Probe handler_ignored{{"emissions", "handler", "ignored"}};
  telemetry::Probe spool_corrupt{{"emissions", "spool", "corrupt"}};
  telemetry::Probe spool_dropped{{"emissions", "spool", "dropped"}};
};

inline NoDestroy<LibraryProbes> g_library_probes;

inline constinit const telemetry::Probe& kBufferStarted = g_library_probes->buffer_started;
inline constinit const telemetry::Probe& kBufferCommitted = g_library_probes->buffer_committed;
inline constinit const telemetry::Probe& kBufferTerminated = g_library_probes->buffer_terminated;
inline constinit const telemetry::Probe& kEventDropped = g_library_probes->event_dropped;
inline constinit const telemetry::Probe& kAdapterSuccess = g_library_probes->adapter_success;
inline constinit const telemetry::Probe& kAdapterError = g_library_probes->adapter_error;
inline constinit const telemetry::Probe& kAdapterRetry = g_library_probes->adapter_retry;
inline constinit const telemetry::Probe& kEventDeadLettered = g_library_probes->event_dead_lettered;
inline constinit const telemetry::Probe& kHandlerSuccess = g_library_probes->handler_success;
inline constinit const telemetry::Probe& kHandlerError = g_library_probes->handler_error;
inline constinit const telemetry::Probe& kHandlerIgnored = g_library_probes->handler_ignored;
inline constinit const telemetry::Probe& kSpoolCorrupt = g_library_probes->spool_corrupt;
inline constinit const telemetry::Probe& kSpoolDropped = g_library_probes->spool_dropped;

}  // namespace emissions::detail::events
