// span(): the start / stop / exception events around a call, as in Erlang's
// `telemetry:span/3`. The template in telemetry.hpp calls these out-of-line parts, which
// build the measurements and execute the events.
#include "emissions/telemetry.hpp"

#include <chrono>
#include <cstdint>
#include <exception>

#include "common/exceptions.hpp"
#include "time/system_time.hpp"

namespace emissions::telemetry {

namespace detail {

EventName with_suffix(const EventName& prefix, const char* suffix) {
  EventName name;
  name.reserve(prefix.size() + 1);
  name.insert(name.end(), prefix.begin(), prefix.end());
  name.emplace_back(suffix);
  return name;
}

std::int64_t monotonic_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::int64_t span_start(const EventName& prefix, const nlohmann::json& metadata) noexcept {
  const std::int64_t start = monotonic_ns();
  try {
    const std::int64_t system_ns = emissions::detail::system_time_ns();
    execute(with_suffix(prefix, "start"),
            nlohmann::json{{"monotonic_time", start}, {"system_time", system_ns}}, metadata);
  } catch (...) {
    // Out of memory building the event: the span still runs, only this event is lost.
  }
  return start;
}

void span_stop(const EventName& prefix, const nlohmann::json& metadata,
               std::int64_t start_ns) noexcept {
  const std::int64_t now = monotonic_ns();
  try {
    execute(with_suffix(prefix, "stop"),
            nlohmann::json{{"duration", now - start_ns}, {"monotonic_time", now}}, metadata);
  } catch (...) {
    // Out of memory building the event: the span's result is still returned.
  }
}

void span_exception(const EventName& prefix, const nlohmann::json& metadata, std::int64_t start_ns,
                    std::exception_ptr error) noexcept {
  const std::int64_t now = monotonic_ns();
  try {
    nlohmann::json meta;
    if (metadata.is_object()) {
      meta = metadata;
    } else {
      meta = nlohmann::json::object();
      // A null metadata (from `{}`) is an empty object; anything else is kept, not dropped.
      if (!metadata.is_null()) meta["metadata"] = metadata;
    }
    meta["kind"] = "exception";
    try {
      std::rethrow_exception(error);
    } catch (...) {
      // "unknown" for an exception not derived from std::exception, as telemetry.hpp says.
      meta["reason"] = emissions::detail::describe_current_exception("unknown");
    }
    execute(with_suffix(prefix, "exception"),
            nlohmann::json{{"duration", now - start_ns}, {"monotonic_time", now}}, meta);
  } catch (...) {
    // Out of memory building the event: the caller still rethrows the original exception.
  }
}

}  // namespace detail

}  // namespace emissions::telemetry
