#include "emissions/adapters/batching.hpp"

#include <chrono>
#include <exception>
#include <iterator>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/config_check.hpp"
#include "common/exceptions.hpp"
#include "emissions/batch_buffer.hpp"
#include "emissions/telemetry.hpp"
#include "pipeline/adapter_call.hpp"
#include "pipeline/delivery_state.hpp"

namespace emissions::adapters {
namespace {

// With linger 0 every accepted batch asks for a flush at once, so the interval timer only
// has to catch what nothing else would; it need not wake often.
constexpr std::chrono::milliseconds kZeroLingerInterval{1'000};

// How long terminate() gives the flusher, once no inner call runs, to notice that it is done.
constexpr std::chrono::milliseconds kExitGrace{50};

std::string in_call(std::size_t events) {
  return std::to_string(events) + " in an inner call that has not returned";
}

void validate(const std::shared_ptr<Adapter>& inner, const BatchingOptions& o) {
  using std::chrono::milliseconds;
  if (!inner) detail::config_error("Batching's inner adapter", "non-null", "nullptr");
  detail::check_range("BatchingOptions.max_size", o.max_size, 1, kMaxBufferSize);
  detail::check_range("BatchingOptions.linger", o.linger, milliseconds::zero(), kMaxTimeout);
  detail::check_range("BatchingOptions.insert_timeout", o.insert_timeout, milliseconds::zero(),
                      kMaxTimeout);
  detail::check_range("BatchingOptions.flush_timeout", o.flush_timeout, milliseconds(1),
                      kMaxTimeout);
}

}  // namespace

// One event of a Delivery that deliver() kept: the Delivery is shared by its events' items
// and settled index by index; when the last item goes, so does the handle (abandoning, as
// "delivery abandoned", what nothing settled: never the case after a flush).
struct Batching::Item {
  std::shared_ptr<Delivery> delivery;
  std::size_t index = 0;
};

namespace {

// Settles `items` with `status` (ok: delivered), a whole Delivery at once where the items
// cover all of it, in order.
// (A template: Batching::Item is private.)
template <typename Items>
void settle(Items& items, const Status& status) noexcept {
  std::size_t i = 0;
  while (i < items.size()) {
    Delivery& delivery = *items[i].delivery;
    std::size_t end = i;
    while (end < items.size() && items[end].delivery.get() == &delivery)
      ++end;
    const bool whole = items[i].index == 0 && end - i == delivery.events().size();
    if (whole) {
      if (status.ok()) {
        delivery.ack();
      } else {
        delivery.fail(status);
      }
    } else {
      for (std::size_t k = i; k < end; ++k) {
        if (status.ok()) {
          delivery.ack(items[k].index);
        } else {
          delivery.fail(items[k].index, status);
        }
      }
    }
    i = end;
  }
}

}  // namespace

Batching::Batching(std::shared_ptr<Adapter> inner, BatchingOptions options)
    : inner_(std::move(inner)), options_(std::move(options)) {
  validate(inner_, options_);
  BatchBufferOptions<Item> buffer_options{
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
  buffer_ = std::make_unique<BatchBuffer<Item>>(
      std::move(buffer_options), [this](std::vector<Item>&& items, const FlushContext&) {
        return deliver_batch(std::move(items));
      });
}

Batching::~Batching() {
  (void)terminate(Deadline::max());
}

void Batching::deliver(Delivery delivery) {
  const std::size_t count = delivery.events().size();
  if (count == 0) return;
  std::shared_ptr<Delivery> kept;
  Status status;
  try {
    if (closed_.load(std::memory_order_acquire)) {
      status = Status(Errc::closed, "Batching '" + std::string(inner_->name()) + "' is terminated");
    } else {
      kept = std::make_shared<Delivery>(std::move(delivery));
      std::vector<Item> items;
      items.reserve(count);
      for (std::size_t i = 0; i < count; ++i)
        items.push_back({kept, i});
      status = buffer_->insert_batch(std::move(items));  // on error, none was accepted
    }
  } catch (const std::exception& e) {
    status = Status(Errc::internal, std::string("Batching could not keep the batch: ") + e.what());
  }
  if (!status.ok()) {
    rejected_.fetch_add(count, std::memory_order_relaxed);
    (kept ? *kept : delivery).fail(std::move(status));
    return;
  }
  if (options_.linger.count() == 0) buffer_->flush();
}

std::size_t Batching::held() const {
  std::size_t count = 0;
  for (const BatchBufferPartitionInfo& partition : buffer_->info())
    count += partition.size + partition.in_flight;
  return count;
}

Status Batching::flush(Deadline deadline) {
  if (closed_.load(std::memory_order_acquire)) return {};  // terminate() delivered everything
  Status first;
  for (const Status& s : buffer_->sync_flush(deadline)) {
    // closed: terminate() raced this call; it delivers what is left.
    if (s.code() != Errc::closed) first.update(s);
  }
  if (first.code() != Errc::timeout) return first;
  const BatchBufferPartitionInfo now = buffer_->info().at(0);
  const std::string held = std::to_string(now.size + now.in_flight) + " events still held (" +
                           in_call(now.in_flight) + ")";
  return Status(Errc::timeout,
                "Batching '" + std::string(inner_->name()) + "': " + held +
                    (expired(deadline) ? " at the deadline"
                                       : ": an inner call ran longer than flush_timeout (" +
                                             detail::describe(options_.flush_timeout) + ")"));
}

Status Batching::terminate(Deadline deadline) {
  std::lock_guard lock(terminate_mutex_);
  if (inner_terminated_) return {};
  closed_.store(true, std::memory_order_release);
  std::size_t dropped = 0;
  Status stopped = buffer_->shutdown(deadline);
  if (!stopped.ok() && !buffer_closed_) {
    // Out of time: what no inner call has taken yet will not be delivered. It stays
    // unsettled, so the pipeline's shutdown counts it as dropped (see the header).
    std::vector<Item> left = buffer_->dump();
    dropped = left.size();
    dropped_.fetch_add(dropped, std::memory_order_relaxed);
    left_.insert(left_.end(), std::make_move_iterator(left.begin()),
                 std::make_move_iterator(left.end()));
    if (dropped != 0 && detail::delivery_reported()) {
      detail::report_delivery(
          inner_->name(), dropped,
          {Status(Errc::timeout, "dropped: not delivered by terminate()'s deadline"), false, 0},
          {{"batching", true}});
    }
    // With no inner call under way, the flusher only has to notice that it is done.
    if (!buffer_->info().at(0).flushing) stopped = buffer_->shutdown(deadline_after(kExitGrace));
  }
  buffer_closed_ = true;
  std::string left;
  if (dropped != 0) {
    left = std::to_string(dropped) + " events dropped at the deadline (left unsettled)";
  }
  if (!stopped.ok()) {
    // The inner's terminate() must follow its last call: a later terminate() (the
    // destructor's, say) makes it once that call has returned.
    const std::size_t in_flight = buffer_->info().at(0).in_flight;
    if (!left.empty()) left += ", ";
    left += in_flight != 0 ? in_call(in_flight) + "; the inner's terminate() waits for that call"
                           : "the flusher had not exited; the inner's terminate() waits for it";
    return Status(Errc::timeout, "Batching '" + std::string(inner_->name()) + "': " + left);
  }
  inner_terminated_ = true;
  Status status;
  try {
    status = inner_->terminate(deadline);
  } catch (...) {
    status = Status(Errc::internal, "the inner adapter's terminate() threw: " +
                                        detail::describe_current_exception());
  }
  if (left.empty()) return status;
  if (!status.ok()) left += "; the inner's terminate(): " + status.to_string();
  return Status(Errc::timeout, "Batching '" + std::string(inner_->name()) + "': " + left);
}

Status Batching::deliver_batch(std::vector<Item>&& items) {
  Status status;
  std::vector<Event> events;
  try {
    // The inner needs the events side by side: copies, read through the kept Deliveries.
    events.reserve(items.size());
    for (const Item& item : items)
      events.push_back(item.delivery->events()[item.index]);
  } catch (const std::exception& e) {
    status = Status(Errc::internal, std::string("Batching could not copy the batch: ") + e.what());
    failed_.fetch_add(items.size(), std::memory_order_relaxed);
  }
  if (status.ok()) status = call_inner(std::move(events));
  settle(items, status);
  return status;
}

Status Batching::call_inner(std::vector<Event>&& events) {
  if (auto* async = dynamic_cast<AsyncAdapter*>(inner_.get())) {
    return call_async(*async, std::move(events));
  }
  const bool report = detail::delivery_reported();
  const detail::DeliveryOutcome outcome =
      detail::deliver_to(*inner_, std::span<const Event>(events), need_init_, report);
  const auto count = static_cast<std::uint64_t>(events.size());
  (outcome.status.ok() ? delivered_ : failed_).fetch_add(count, std::memory_order_relaxed);
  if (report) detail::report_delivery(inner_->name(), events.size(), outcome, {{"batching", true}});
  return outcome.status;
}

Status Batching::call_async(AsyncAdapter& inner, std::vector<Event>&& events) {
  // An asynchronous inner gets a Delivery of its own (asked to flush at once); the batch is
  // delivered when it acknowledged every event within flush_timeout, and failed otherwise.
  const bool report = detail::delivery_reported();
  const auto started = std::chrono::steady_clock::now();
  const std::size_t count = events.size();
  detail::DeliveryOutcome outcome;
  if (need_init_) {
    try {
      outcome.status = inner.init();
    } catch (const std::exception& e) {
      outcome.status = Status(Errc::internal, e.what());
    } catch (...) {
      outcome.status = Status(Errc::internal, "unknown exception");
    }
    if (!outcome.status.ok()) {
      failed_.fetch_add(count, std::memory_order_relaxed);
      outcome.status = Status(outcome.status.code(), "init failed: " + outcome.status.message());
      if (report) detail::report_delivery(inner.name(), count, outcome, {{"batching", true}});
      return outcome.status;
    }
    need_init_ = false;
  }
  const detail::DetachedOutcome settled =
      detail::deliver_detached(inner, std::move(events), deadline_after(options_.flush_timeout));
  delivered_.fetch_add(settled.delivered, std::memory_order_relaxed);
  failed_.fetch_add(settled.failed + settled.unsettled, std::memory_order_relaxed);
  if (settled.failed != 0) {
    outcome.status =
        settled.first_error.ok() ? Status(Errc::internal, "events failed") : settled.first_error;
  } else if (settled.unsettled != 0) {
    outcome.status = Status(Errc::timeout, std::to_string(settled.unsettled) +
                                               " events were not settled within flush_timeout");
  }
  if (!outcome.status.ok() && settled.delivered != 0) {
    // Some of the batch was delivered: all of it fails here (see the header).
    outcome.status = Status(outcome.status.code(),
                            outcome.status.message() + " (" +
                                std::to_string(settled.failed + settled.unsettled) + " of " +
                                std::to_string(count) + " events of this inner batch)");
  }
  if (report) {
    outcome.duration_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                              std::chrono::steady_clock::now() - started)
                              .count();
    detail::report_delivery(inner.name(), count, outcome, {{"batching", true}});
  }
  return outcome.status;
}

}  // namespace emissions::adapters
