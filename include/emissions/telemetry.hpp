/// @file
/// emissions/telemetry.hpp: instrumentation events, modelled on Erlang's `telemetry`.
///
/// Handlers are attached under a unique id to one or more event names; `execute` calls
/// every handler attached to that event, synchronously, on the calling thread, in attach
/// order. With nothing attached anywhere, `execute` (and the library's own instrumentation)
/// costs one relaxed atomic load.
///
/// @code
///   emissions::Status s = emissions::telemetry::attach(
///       "log-errors", {"emissions", "adapter", "error"},
///       [](const auto& event, const nlohmann::json& measurements, const nlohmann::json& meta) {
///         // .value(): the metadata is const (operator[] on a missing key is undefined)
///         std::cerr << meta.value("adapter", "") << " failed: " << meta.value("reason", "")
///                   << '\n';
///       });
///   if (!s.ok()) log(s.to_string());
///   (void)emissions::telemetry::detach("log-errors");  // not_found is fine here
/// @endcode
///
/// A handler that throws is detached and reported once as [telemetry, handler, failure]
/// (measurements {}, metadata {"handler_id", "event_name", "reason"}); the exception never
/// reaches the caller of execute.
///
/// Every function here is thread-safe. `execute` works on a snapshot of the handler table
/// and holds no lock while it calls handlers, so a handler may attach, detach or execute
/// (even its own event) without deadlocking; changes take effect for later `execute` calls
/// only. For the same reason `detach` does not wait for calls already running on other
/// threads: a detached handler may still be running, or about to run once, when it returns.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "emissions/status.hpp"

namespace emissions::telemetry {

/// An event name such as {"emissions", "adapter", "error"}.
using EventName = std::vector<std::string>;
/// What attach() takes: called by execute() with the event's name, measurements and
/// metadata, on the executing thread. An exception detaches it (see the file comment).
using Handler = std::function<void(const EventName& event, const nlohmann::json& measurements,
                                   const nlohmann::json& metadata)>;

namespace detail {
// Number of (id, event) attachments, process-wide; written only by the registry. Read
// with one relaxed load on hot paths.
extern std::atomic<std::size_t> g_attached;
}  // namespace detail

/// True when at least one handler is attached to any event. One relaxed atomic load: the
/// library checks it before building measurements or reading clocks.
[[nodiscard]] inline bool enabled() noexcept {
  return detail::g_attached.load(std::memory_order_relaxed) != 0;
}

/// "Is any handler attached to this event?", answered with one relaxed atomic load and kept
/// current by attach and detach. For instrumented hot paths that would otherwise build
/// measurements for nobody (enabled() is true as soon as anything anywhere is attached).
///
/// @code
///   static const telemetry::Probe kDone({"my_service", "request", "done"});
///   if (kDone.enabled()) kDone.execute({{"duration", ns}}, {{"route", route}});
/// @endcode
///
/// Thread-safe. Construction and destruction take the registry's writer lock.
class Probe {
 public:
  /// Registers the probe for `event`; enabled() is current from here on.
  explicit Probe(EventName event);
  /// Unregisters the probe.
  ~Probe();
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;

  /// Whether any handler is attached to event(). One relaxed atomic load.
  [[nodiscard]] bool enabled() const noexcept { return active_.load(std::memory_order_relaxed); }
  /// The event this probe watches and executes.
  [[nodiscard]] const EventName& event() const noexcept { return event_; }
  /// execute(event(), measurements, metadata).
  void execute(const nlohmann::json& measurements, const nlohmann::json& metadata) const noexcept;

 private:
  friend struct ProbeAccess;
  EventName event_;
  // Written by the registry through the pointer the constructor registered; mutable because
  // probes are typically `const` objects (as above).
  mutable std::atomic<bool> active_{false};
};

/// Attaches `handler` to `event` under `id`. already_exists when `id` is in use;
/// invalid_argument for an empty id, an empty event name (or one with an empty segment)
/// or an empty handler.
Status attach(std::string id, EventName event, Handler handler);
/// Attaches one handler to several events under one id (detach removes them all). Errors
/// as for attach(), and invalid_argument for no events or an event given twice.
Status attach_many(std::string id, std::vector<EventName> events, Handler handler);
/// Removes every attachment of `id`. not_found when `id` is not attached.
Status detach(const std::string& id);
/// Calls every handler attached to `event`. Never throws.
void execute(const EventName& event, const nlohmann::json& measurements,
             const nlohmann::json& metadata) noexcept;

/// The ids currently attached to `event` (for tests and diagnostics).
[[nodiscard]] std::vector<std::string> handlers_for(const EventName& event);

/// Runs `fn`, wrapped in `prefix + start` / `prefix + stop` events, or `prefix + exception`
/// if it throws (the exception is rethrown). Measurements: start {"monotonic_time",
/// "system_time"}, stop/exception {"duration", "monotonic_time"} in nanoseconds; metadata is
/// `metadata` (plus "kind": "exception" and "reason": the `what()` text, or "unknown" for
/// an exception not derived from std::exception, on the exception event). Returns what `fn`
/// returns (references included); with nothing attached it just calls `fn`.
///
/// @code
///   auto rows = telemetry::span({"db", "query"}, {{"table", "orders"}}, [&] { return q(); });
/// @endcode
template <typename Fn>
decltype(auto) span(const EventName& prefix, const nlohmann::json& metadata, Fn&& fn);

// --- implementation of span -----------------------------------------------------------
namespace detail {
// `prefix` with `suffix` appended as its last segment.
EventName with_suffix(const EventName& prefix, const char* suffix);
// std::chrono::steady_clock in nanoseconds since its epoch.
std::int64_t monotonic_ns() noexcept;
// Executes `prefix + start` and returns the monotonic start time. Never throws.
std::int64_t span_start(const EventName& prefix, const nlohmann::json& metadata) noexcept;
// Executes `prefix + stop` for a span that began at `start_ns`. Never throws.
void span_stop(const EventName& prefix, const nlohmann::json& metadata,
               std::int64_t start_ns) noexcept;
// Executes `prefix + exception` with "kind" and "reason" taken from `error` added to
// `metadata` (a non-object `metadata` is kept under "metadata"). Never throws.
void span_exception(const EventName& prefix, const nlohmann::json& metadata, std::int64_t start_ns,
                    std::exception_ptr error) noexcept;
}  // namespace detail

template <typename Fn>
decltype(auto) span(const EventName& prefix, const nlohmann::json& metadata, Fn&& fn) {
  using Result = std::invoke_result_t<Fn>;
  if (!enabled()) return std::forward<Fn>(fn)();
  const std::int64_t start = detail::span_start(prefix, metadata);
  // The stop event is sent inside the try block: span_stop never throws, so the catch
  // below only ever sees exceptions from `fn`.
  try {
    if constexpr (std::is_void_v<Result>) {
      std::forward<Fn>(fn)();
      detail::span_stop(prefix, metadata, start);
    } else if constexpr (std::is_reference_v<Result>) {
      Result result = std::forward<Fn>(fn)();
      detail::span_stop(prefix, metadata, start);
      return static_cast<Result>(result);
    } else {
      Result result = std::forward<Fn>(fn)();
      detail::span_stop(prefix, metadata, start);
      return result;
    }
  } catch (...) {
    detail::span_exception(prefix, metadata, start, std::current_exception());
    throw;
  }
}

}  // namespace emissions::telemetry
