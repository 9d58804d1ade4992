// Internal: one adapter's effective options (its AdapterOptions over the pipeline's
// defaults), validated once when the Emitter is built.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "emissions/config.hpp"

namespace emissions::detail {

struct LaneOptions {
  std::size_t max_demand;
  std::size_t buffer_size;
  Overflow overflow;
  std::chrono::milliseconds block_timeout;
  std::chrono::microseconds idle_spin;
  std::size_t concurrency;
  std::function<std::uint64_t(const Event&)> partition_by;
  std::size_t max_in_flight;  // asynchronous adapters only
  RetryPolicy retry;
  std::shared_ptr<Adapter> dead_letter;  // null: none
  bool deliver_on_commit;                // asynchronous adapters only (Core::help_consumer)
};

// Throws ConfigError naming `where` (e.g. "pipeline.retry") and the field for a RetryPolicy
// out of its rules.
void check_retry_policy(const std::string& where, const RetryPolicy& policy);

// The pipeline's defaults overridden by `o`. Throws ConfigError (naming `where`) for a value
// out of its documented bounds, or max_in_flight on a synchronous adapter.
LaneOptions resolve_lane_options(const std::string& where, const PipelineOptions& p,
                                 const AdapterOptions& o, bool async);

// Checks the pipeline-wide fields of `config` (not its adapters).
void validate_pipeline(const Config& config);

}  // namespace emissions::detail
