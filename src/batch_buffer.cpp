// The parts of BatchBuffer<T> that do not depend on T: option validation, seeds, error
// statuses and telemetry events.
#include "emissions/batch_buffer.hpp"

#include "common/config_check.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>
#include <string>

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

std::int64_t system_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void validate_batch_buffer(const BatchBufferSettings& s, bool has_flush) {
  using std::chrono::milliseconds;
  const std::string o = "BatchBufferOptions.";
  if (s.name.empty()) config_error(o + "name", "non-empty", "\"\"");
  check_range(o + "partitions", s.partitions, 1, kMaxBatchBufferPartitions);
  // Both bounded, so that max_size + max_size_jitter cannot overflow.
  check_range(o + "max_size", s.max_size, 1, kMaxBatchBufferSize);
  check_range(o + "max_size_jitter", s.max_size_jitter, 0, kMaxBatchBufferSize);
  check_range(o + "flush_interval", s.flush_interval, milliseconds(1), kMaxBatchBufferTimeout);
  check_range(o + "flush_jitter", s.flush_jitter, milliseconds::zero(), kMaxBatchBufferTimeout);
  check_range(o + "flush_timeout", s.flush_timeout, milliseconds(1), kMaxBatchBufferTimeout);
  check_range(o + "insert_timeout", s.insert_timeout, milliseconds::zero(), kMaxBatchBufferTimeout);
  if (!has_flush) config_error("BatchBuffer's flush callable", "non-empty", "an empty function");
}

std::uint64_t random_seed() noexcept {
  // random_device may throw where no entropy source exists; time and a counter suffice
  // for jitter.
  static std::atomic<std::uint64_t> counter{0};
  std::uint64_t seed =
      static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
      (counter.fetch_add(1, std::memory_order_relaxed) * 0x9e3779b97f4a7c15ULL);
  try {
    std::random_device rd;
    seed ^= (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  } catch (...) {
  }
  return seed;
}

std::uint64_t next_batch_buffer_id() noexcept {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

std::string describe_exception(const std::exception_ptr& error) noexcept {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    try {
      return e.what();
    } catch (...) {
    }
  } catch (...) {
  }
  return "unknown exception";
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

namespace {

std::string describe_backlog(const BatchBacklog& left) {
  std::string out = std::to_string(left.pending) + " items not yet flushed";
  if (left.in_flight != 0) {
    out += " (" + std::to_string(left.in_flight) + " of them in a flush that has not returned)";
  }
  return out;
}

}  // namespace

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

void batch_insert_start(const BatchBufferSettings& s, std::optional<std::size_t> partition,
                        std::size_t size, std::int64_t start_ns) noexcept {
  try {
    telemetry::execute(event("insert", "start"),
                       {{"monotonic_time", start_ns}, {"system_time", system_ns()}},
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
                       {{"monotonic_time", start_ns}, {"system_time", system_ns()}},
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
