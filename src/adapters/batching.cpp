#include "emissions/adapters/batching.hpp"

#include "pipeline/adapter_call.hpp"

#include <exception>
#include <new>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "emissions/telemetry.hpp"

namespace emissions::adapters {
namespace {

// With linger 0 every accepted batch asks for a flush at once, so the interval timer only
// has to catch what nothing else would; it need not wake often.
constexpr std::chrono::milliseconds kZeroLingerInterval{1'000};

[[noreturn]] void invalid(const std::string& field, const std::string& rule,
                          const std::string& got) {
  throw ConfigError("BatchingOptions." + field + " must be " + rule + " (got " + got + ")");
}

std::string ms(std::chrono::milliseconds d) {
  return std::to_string(d.count()) + "ms";
}

void validate(const std::shared_ptr<Adapter>& inner, const BatchingOptions& o) {
  if (!inner) throw ConfigError("Batching inner adapter must not be null (got nullptr)");
  if (o.max_size == 0) invalid("max_size", "> 0", "0");
  if (o.linger < std::chrono::milliseconds::zero()) invalid("linger", ">= 0", ms(o.linger));
  if (o.insert_timeout < std::chrono::milliseconds::zero())
    invalid("insert_timeout", ">= 0", ms(o.insert_timeout));
  if (o.flush_timeout <= std::chrono::milliseconds::zero())
    invalid("flush_timeout", "> 0", ms(o.flush_timeout));
}

}  // namespace

Batching::Batching(std::shared_ptr<Adapter> inner, BatchingOptions options)
    : inner_(std::move(inner)), options_(std::move(options)) {
  validate(inner_, options_);
  BatchBufferOptions<Event> buffer_options{
      .name = "batching:" + std::string(inner_->name()),
      .partitions = 1,  // one flusher: the inner sees one call at a time, in order
      .max_size = options_.max_size,
      .max_size_jitter = 0,
      .flush_interval = options_.linger.count() > 0 ? options_.linger : kZeroLingerInterval,
      .flush_jitter = std::chrono::milliseconds::zero(),
      .flush_timeout = options_.flush_timeout,
      .insert_timeout = options_.insert_timeout,
      .flush_meta = nullptr,
      .partition_by = {},
      .clock = options_.clock,
  };
  buffer_ = std::make_unique<BatchBuffer<Event>>(
      std::move(buffer_options), [this](std::vector<Event>&& batch, const FlushContext&) {
        return deliver(std::move(batch));
      });
}

Batching::~Batching() {
  (void)terminate(Deadline::max());
}

Status Batching::handle_events(std::span<const Event> batch) {
  if (batch.empty()) return {};
  Status status;
  try {
    // The pipeline's events are only valid during this call: the buffer keeps copies.
    status = buffer_->insert_batch(std::vector<Event>(batch.begin(), batch.end()));
  } catch (const std::exception& e) {
    status = Status(Errc::internal, std::string("Batching could not copy the batch: ") + e.what());
  }
  if (!status.ok()) {
    rejected_.fetch_add(batch.size(), std::memory_order_relaxed);
    return status;
  }
  if (options_.linger.count() == 0) buffer_->flush();
  return {};
}

Status Batching::flush(Deadline deadline) {
  (void)deadline;
  if (closed_.load(std::memory_order_acquire)) return {};  // terminate() delivered everything
  Status first;
  for (const Status& s : buffer_->sync_flush()) {
    // closed: terminate() raced this call; it delivers what is left.
    if (s.code() != Errc::closed) first.update(s);
  }
  return first;
}

Status Batching::terminate(Deadline deadline) {
  std::lock_guard lock(terminate_mutex_);
  if (terminated_) return {};
  terminated_ = true;
  closed_.store(true, std::memory_order_release);
  // Unbounded: the inner's terminate() must come after its last batch, so wait for it.
  (void)buffer_->shutdown();
  try {
    return inner_->terminate(deadline);
  } catch (...) {
    return Status(Errc::internal, "the inner adapter's terminate() threw");
  }
}

Status Batching::deliver(std::vector<Event>&& batch) {
  const bool report = detail::delivery_reported();
  const detail::DeliveryOutcome outcome =
      detail::deliver_to(*inner_, std::span<const Event>(batch), need_init_, report);
  const auto count = static_cast<std::uint64_t>(batch.size());
  (outcome.status.ok() ? delivered_ : failed_).fetch_add(count, std::memory_order_relaxed);
  if (report) detail::report_delivery(inner_->name(), batch.size(), outcome, {{"batching", true}});
  return outcome.status;
}

}  // namespace emissions::adapters
