// emissions/telemetry.hpp: instrumentation events, modelled on Erlang's `telemetry`.
//
// Handlers are attached under a unique id to one or more event names; `execute` calls
// every handler attached to that event, synchronously, on the calling thread. With nothing
// attached anywhere, `execute` (and the library's own instrumentation) costs one relaxed
// atomic load.
//
//   emissions::telemetry::attach("log-errors", {"emissions", "adapter", "error"},
//       [](const auto& event, const nlohmann::json& measurements, const nlohmann::json& meta) {
//         std::cerr << meta["adapter"] << " failed: " << meta["reason"] << '\n';
//       });
//   emissions::telemetry::detach("log-errors");
//
// A handler that throws is detached and reported once as [telemetry, handler, failure]
// (measurements {}, metadata {"handler_id", "event_name", "reason"}); the exception never
// reaches the caller of execute. Handlers must not attach or detach from inside a handler
// call of the same event (it is allowed, but takes effect for later calls only).
#pragma once

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "emissions/status.hpp"

namespace emissions::telemetry {

// An event name such as {"emissions", "adapter", "error"}.
using EventName = std::vector<std::string>;
using Handler = std::function<void(const EventName& event, const nlohmann::json& measurements,
                                   const nlohmann::json& metadata)>;

namespace detail {
// Count of attached handlers, process-wide. Read with one relaxed load on hot paths.
extern std::atomic<std::size_t> g_attached;
}  // namespace detail

// True when at least one handler is attached to any event. One relaxed atomic load: the
// library checks it before building measurements or reading clocks.
[[nodiscard]] inline bool enabled() noexcept {
  return detail::g_attached.load(std::memory_order_relaxed) != 0;
}

// Attaches `handler` to `event` under `id`. already_exists when `id` is in use;
// invalid_argument for an empty id, an empty event name or an empty handler.
Status attach(std::string id, EventName event, Handler handler);
// Attaches one handler to several events under one id (detach removes them all).
Status attach_many(std::string id, std::vector<EventName> events, Handler handler);
// not_found when `id` is not attached.
Status detach(const std::string& id);
// Calls every handler attached to `event`. Never throws.
void execute(const EventName& event, const nlohmann::json& measurements,
             const nlohmann::json& metadata) noexcept;

// The ids currently attached to `event` (for tests and diagnostics).
[[nodiscard]] std::vector<std::string> handlers_for(const EventName& event);

// Runs `fn`, wrapped in `prefix + start` / `prefix + stop` events, or `prefix + exception`
// if it throws (the exception is rethrown). Measurements: start {"monotonic_time",
// "system_time"}, stop/exception {"duration", "monotonic_time"} in nanoseconds; metadata is
// `metadata` (plus "kind" and "reason" on exception).
//
//   auto rows = telemetry::span({"db", "query"}, {{"table", "orders"}}, [&] { return q(); });
template <typename Fn>
decltype(auto) span(const EventName& prefix, const nlohmann::json& metadata, Fn&& fn);

// --- implementation of span -----------------------------------------------------------
namespace detail {
EventName with_suffix(const EventName& prefix, const char* suffix);
std::int64_t monotonic_ns() noexcept;
void span_exception(const EventName& prefix, const nlohmann::json& metadata,
                    std::int64_t start_ns, std::exception_ptr error) noexcept;
}  // namespace detail

template <typename Fn>
decltype(auto) span(const EventName& prefix, const nlohmann::json& metadata, Fn&& fn) {
  if (!enabled()) return std::forward<Fn>(fn)();
  const std::int64_t start = detail::monotonic_ns();
  execute(detail::with_suffix(prefix, "start"),
          {{"monotonic_time", start},
           {"system_time", std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count()}},
          metadata);
  struct StopOnExit {
    const EventName& prefix;
    const nlohmann::json& metadata;
    std::int64_t start;
    int uncaught = std::uncaught_exceptions();
    ~StopOnExit() {
      if (std::uncaught_exceptions() > uncaught) {
        detail::span_exception(prefix, metadata, start, std::current_exception());
      } else {
        const std::int64_t now = detail::monotonic_ns();
        execute(detail::with_suffix(prefix, "stop"),
                {{"duration", now - start}, {"monotonic_time", now}}, metadata);
      }
    }
  } stop{prefix, metadata, start};
  return std::forward<Fn>(fn)();
}

}  // namespace emissions::telemetry
