#include "pipeline/options.hpp"

#include <cmath>
#include <sstream>

#include "common/config_check.hpp"

namespace emissions::detail {
namespace {

constexpr std::size_t kDefaultMaxInFlight = 16;

}  // namespace

LaneOptions resolve_lane_options(const std::string& where, const PipelineOptions& p,
                                 const AdapterOptions& o, bool async) {
  LaneOptions out{o.max_demand.value_or(p.max_demand),
                  o.buffer_size.value_or(p.buffer_size),
                  o.overflow.value_or(p.overflow),
                  o.block_timeout.value_or(p.block_timeout),
                  p.idle_spin,
                  o.concurrency,
                  o.partition_by,
                  o.max_in_flight.value_or(kDefaultMaxInFlight),
                  o.retry.value_or(p.retry),
                  o.dead_letter,
                  o.deliver_on_commit};
  check_range(where + ".max_demand", out.max_demand, 1, kMaxBufferSize);
  check_range(where + ".buffer_size", out.buffer_size, 1, kMaxBufferSize);
  check_range(where + ".block_timeout", out.block_timeout, std::chrono::milliseconds::zero(),
              kMaxTimeout);
  check_range(where + ".concurrency", out.concurrency, 1, kMaxConcurrency);
  if (out.overflow != Overflow::block && out.overflow != Overflow::drop_oldest &&
      out.overflow != Overflow::drop_newest) {
    config_error(where + ".overflow", "block, drop_oldest or drop_newest",
                 std::to_string(static_cast<int>(out.overflow)));
  }
  if (o.max_in_flight && !async) {
    config_error(where + ".max_in_flight",
                 "unset for a synchronous adapter (it applies to "
                 "an AsyncAdapter)",
                 std::to_string(*o.max_in_flight));
  }
  check_range(where + ".max_in_flight", out.max_in_flight, 1, kMaxInFlight);
  if (o.deliver_on_commit) {
    // One thread at a time takes a queue's batches: the consumer, or the committing thread
    // standing in for it. Several consumers share a queue, and drop_oldest's evictions take
    // batches from the committing threads too.
    if (!async) {
      config_error(where + ".deliver_on_commit",
                   "false for a synchronous adapter (it applies to an AsyncAdapter)", "true");
    }
    if (out.concurrency != 1) {
      config_error(where + ".deliver_on_commit",
                   "false with concurrency " + std::to_string(out.concurrency) +
                       " (it needs a single consumer)",
                   "true");
    }
    if (out.overflow == Overflow::drop_oldest) {
      config_error(where + ".deliver_on_commit", "false with overflow drop_oldest", "true");
    }
  }
  if (o.retry) check_retry_policy(where + ".retry", *o.retry);
  return out;
}

void check_retry_policy(const std::string& where, const RetryPolicy& policy) {
  if (policy.initial_backoff <= std::chrono::milliseconds::zero() ||
      policy.initial_backoff > kMaxTimeout) {
    config_error(where + ".initial_backoff", "in (0 ms, " + describe(kMaxTimeout) + "]",
                 describe(policy.initial_backoff));
  }
  if (policy.max_backoff > kMaxTimeout) {
    config_error(where + ".max_backoff", "<= " + describe(kMaxTimeout),
                 describe(policy.max_backoff));
  }
  if (policy.max_backoff < policy.initial_backoff) {
    config_error(where + ".max_backoff",
                 ">= initial_backoff (" + describe(policy.initial_backoff) + ")",
                 describe(policy.max_backoff));
  }
  if (!std::isfinite(policy.multiplier) || policy.multiplier < 1.0) {
    std::ostringstream got;
    got << policy.multiplier;
    config_error(where + ".multiplier", "finite and >= 1", got.str());
  }
}

void validate_pipeline(const Config& config) {
  const PipelineOptions& p = config.pipeline;
  check_retry_policy("pipeline.retry", p.retry);
  check_retry_policy("handler_retry", config.handler_retry);
  (void)resolve_lane_options("pipeline", p, AdapterOptions{}, false);
  check_range("pipeline.idle_spin", p.idle_spin, std::chrono::microseconds::zero(), kMaxIdleSpin);
  check_range("shutdown_timeout", config.shutdown_timeout, std::chrono::milliseconds::zero(),
              kMaxTimeout);
  if (config.max_cascade_depth < 0 || config.max_cascade_depth > kMaxCascadeDepth) {
    config_error("max_cascade_depth", "in [0, " + std::to_string(kMaxCascadeDepth) + "]",
                 std::to_string(config.max_cascade_depth));
  }
  if (!config.handlers.empty()) {
    check_range("handler_concurrency", config.handler_concurrency, 1, kMaxConcurrency);
  }
}

}  // namespace emissions::detail
