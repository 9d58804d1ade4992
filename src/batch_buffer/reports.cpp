// What BatchBuffer reports: its error statuses and its telemetry events. Never on the
// untraced insert path.
#include <chrono>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/config_check.hpp"
#include "common/exceptions.hpp"
#include "emissions/detail/batch_buffer.hpp"
#include "emissions/telemetry.hpp"

#include "time/system_time.hpp"

namespace emissions::detail {

namespace {

// Built per call rather than kept in statics: a buffer destroyed during static destruction
// may still report, and these events are off the hot path (or telemetry is enabled).
telemetry::EventName event(const char* action, const char* phase) {
  return {"batch_buffer", action, phase};
}

nlohmann::json metadata(const BatchBufferSettings& s, std::optional<std::size_t> partition,
                        std::size_t size) {
  nlohmann::json meta = {{"buffer", s.name}, {"size", size}};
  meta["partition"] = partition ? nlohmann::json(*partition) : nlohmann::json(nullptr);
  return meta;
}

std::string describe_backlog(const BatchBacklog& left) {
  std::string out = std::to_string(left.pending) + " items not yet flushed";
  if (left.in_flight != 0) {
    out += " (" + std::to_string(left.in_flight) + " of them in a flush that has not returned)";
  }
  return out;
}

}  // namespace

// --- statuses -------------------------------------------------------------------------------

std::string describe_exception(const std::exception_ptr& error) noexcept {
  try {
    std::rethrow_exception(error);
  } catch (...) {
    return describe_current_exception();
  }
}

Status batch_closed_status(const BatchBufferSettings& s) {
  return {Errc::closed, "BatchBuffer '" + s.name + "' is shut down"};
}

Status batch_insert_timeout_status(const BatchBufferSettings& s, std::size_t partition) {
  return {Errc::timeout, "BatchBuffer '" + s.name + "' partition " + std::to_string(partition) +
                             " stayed full for insert_timeout (" + describe(s.insert_timeout) +
                             ") while its previous flush ran"};
}

Status batch_flush_timeout_status(const BatchBufferSettings& s, std::size_t partition) {
  return {Errc::timeout, "BatchBuffer '" + s.name + "' partition " + std::to_string(partition) +
                             ": a flush has been running longer than flush_timeout (" +
                             describe(s.flush_timeout) + ")"};
}

Status batch_deadline_status(const BatchBufferSettings& s, std::size_t partition,
                             const BatchBacklog& left) {
  return {Errc::timeout, "BatchBuffer '" + s.name + "' partition " + std::to_string(partition) +
                             ": " + describe_backlog(left) + " at the deadline"};
}

Status batch_shutdown_timeout_status(const BatchBufferSettings& s, const BatchBacklog& left) {
  return {Errc::timeout, "BatchBuffer '" + s.name + "': " + std::to_string(left.partitions) +
                             " partition(s) still flushing at the shutdown deadline, " +
                             describe_backlog(left)};
}

// --- telemetry ------------------------------------------------------------------------------

void batch_insert_start(const BatchBufferSettings& s, std::optional<std::size_t> partition,
                        std::size_t size, std::int64_t start_ns) noexcept {
  try {
    telemetry::execute(event("insert", "start"),
                       {{"monotonic_time", start_ns}, {"system_time", system_time_ns()}},
                       metadata(s, partition, size));
  } catch (...) {  // building the JSON may throw bad_alloc; telemetry must not
  }
}

void batch_insert_stop(const BatchBufferSettings& s, std::optional<std::size_t> partition,
                       std::size_t size, std::int64_t start_ns, const Status& status) noexcept {
  try {
    const std::int64_t now = telemetry::detail::monotonic_ns();
    nlohmann::json meta = metadata(s, partition, size);
    meta["status"] = status.to_string();
    telemetry::execute(event("insert", "stop"),
                       {{"duration", now - start_ns}, {"monotonic_time", now}}, meta);
  } catch (...) {
  }
}

void batch_flush_start(const BatchBufferSettings& s, std::size_t partition, std::size_t size,
                       std::int64_t start_ns) noexcept {
  try {
    telemetry::execute(event("flush", "start"),
                       {{"monotonic_time", start_ns}, {"system_time", system_time_ns()}},
                       metadata(s, partition, size));
  } catch (...) {
  }
}

void batch_flush_stop(const BatchBufferSettings& s, std::size_t partition, std::size_t size,
                      std::int64_t start_ns, const Status& status, bool timed_out) noexcept {
  try {
    const std::int64_t now = telemetry::detail::monotonic_ns();
    nlohmann::json meta = metadata(s, partition, size);
    meta["status"] = status.to_string();
    if (timed_out) meta["timed_out"] = true;
    telemetry::execute(event("flush", "stop"),
                       {{"duration", now - start_ns}, {"monotonic_time", now}}, meta);
  } catch (...) {
  }
}

void batch_flush_exception(const BatchBufferSettings& s, std::size_t partition, std::size_t size,
                           std::int64_t start_ns, std::string_view kind,
                           std::string_view reason) noexcept {
  try {
    const std::int64_t now = telemetry::detail::monotonic_ns();
    nlohmann::json meta = metadata(s, partition, size);
    meta["kind"] = std::string(kind);
    meta["reason"] = std::string(reason);
    telemetry::execute(event("flush", "exception"),
                       {{"duration", now - start_ns}, {"monotonic_time", now}}, meta);
  } catch (...) {
  }
}

void batch_flush_overdue(const BatchBufferSettings& s, std::size_t partition, std::size_t size,
                         std::int64_t start_ns) noexcept {
  try {
    batch_flush_exception(
        s, partition, size, start_ns, "timeout",
        "flush still running after flush_timeout (" + describe(s.flush_timeout) + ")");
  } catch (...) {  // building the reason may throw bad_alloc; telemetry must not
  }
}

}  // namespace emissions::detail
