// BatchBuffer's settings: the option checks (bounds documented in
// emissions/batch_buffer.hpp) and the default clock.
#include <chrono>
#include <memory>
#include <string>
#include <utility>

#include "common/config_check.hpp"
#include "emissions/batch_buffer.hpp"

namespace emissions::detail {

BatchBufferSettings checked_settings(BatchBufferSettings s, bool has_flush) {
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
  if (!s.clock) s.clock = std::make_shared<SteadyClock>();
  return s;
}

}  // namespace emissions::detail
