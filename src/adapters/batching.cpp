#include "emissions/adapters/batching.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/best_effort.hpp"
#include "common/config_check.hpp"
#include "common/exceptions.hpp"
#include "common/parking.hpp"
#include "common/status_copy.hpp"
#include "common/wait.hpp"
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
        delivery.fail(detail::copy_or_bare(status));
      }
    } else {
      for (std::size_t k = i; k < end; ++k) {
        if (status.ok()) {
          delivery.ack(items[k].index);
        } else {
          delivery.fail(items[k].index, detail::copy_or_bare(status));
        }
      }
    }
    i = end;
  }
}

}  // namespace

// Counters, and what an asynchronous inner's settlements report to flush() and held(). The
// settlement callbacks share it: they may run after Batching is gone.
struct Batching::Shared {
  static constexpr std::uint64_t kNone = std::numeric_limits<std::uint64_t>::max();

  explicit Shared(std::string inner_name) : name(std::move(inner_name)) {}

  const std::string name;  // the inner's, for telemetry
  std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::size_t> unsettled{0};  // events an asynchronous inner has not settled yet
  // Inner batches handed to an asynchronous inner, numbered from 1 by the flusher.
  std::atomic<std::uint64_t> handed{0};           // the last one's number
  std::atomic<std::uint64_t> oldest_open{kNone};  // the oldest one not settled, or kNone
  std::mutex mutex;
  std::vector<std::uint64_t> open;  // guarded by mutex: the unsettled ones, ascending
  detail::WaitChannel settled;      // notified when an inner batch is settled

  // One batch handed to an asynchronous inner: its items, settled one by one as the inner
  // settles the event of the same index.
  struct InnerBatch {
    std::shared_ptr<Shared> shared;
    std::vector<Item> items;
    std::uint64_t number = 0;
    bool report = false;
    std::chrono::steady_clock::time_point started;
    std::atomic<std::size_t> unsettled{0};
    std::atomic<std::uint64_t> delivered{0};
    std::atomic<std::uint64_t> failed{0};
    std::atomic<bool> has_error{false};
    Status first_error;  // written once, by whoever wins has_error

    // The inner settled its event `index`: settles the item as it was (counted first).
    void settle(std::size_t index, bool ok, const Status* error,
                std::chrono::milliseconds retry_after = std::chrono::milliseconds(0)) noexcept {
      if (index >= items.size()) return;
      const Item& item = items[index];
      shared->unsettled.fetch_sub(1, std::memory_order_seq_cst);
      if (ok) {
        delivered.fetch_add(1, std::memory_order_relaxed);
        shared->delivered.fetch_add(1, std::memory_order_relaxed);
        item.delivery->ack(item.index);
      } else {
        // The inner's code always (retriable or not), its message if memory allows.
        Status status = error != nullptr ? detail::copy_or_bare(*error)
                                         : detail::status_or_bare(Errc::internal, [] {
                                             return "not delivered by the inner";
                                           });
        if (!has_error.exchange(true, std::memory_order_acq_rel))
          first_error = detail::copy_or_bare(status);
        failed.fetch_add(1, std::memory_order_relaxed);
        shared->failed.fetch_add(1, std::memory_order_relaxed);
        // The inner's Retry-After bounds the pipeline's retry of the outer event too.
        if (retry_after.count() > 0) item.delivery->retry_after(retry_after);
        item.delivery->fail(item.index, std::move(status));
      }
      // Last, so that whoever completes the batch knows every item was settled.
      if (unsettled.fetch_sub(1, std::memory_order_acq_rel) == 1) complete();
    }

    // Every item settled: telemetry, then flush() may see the batch settled.
    void complete() noexcept {
      const std::uint64_t ok = delivered.load(std::memory_order_relaxed);
      const std::uint64_t bad = failed.load(std::memory_order_relaxed);
      if (report) {
        detail::best_effort([&] {
          detail::DeliveryOutcome outcome;
          outcome.duration_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    std::chrono::steady_clock::now() - started)
                                    .count();
          const nlohmann::json extra = {{"batching", true}};
          if (ok != 0) detail::report_delivery(shared->name, ok, outcome, extra);
          if (bad != 0) {
            outcome.status = first_error.ok() ? Status(Errc::internal, "failed") : first_error;
            detail::report_delivery(shared->name, bad, outcome, extra);
          }
        });
      }
      {
        std::lock_guard lock(shared->mutex);
        auto& open = shared->open;
        open.erase(std::remove(open.begin(), open.end(), number), open.end());
        shared->oldest_open.store(open.empty() ? kNone : open.front(), std::memory_order_seq_cst);
      }
      shared->settled.notify();
      items.clear();  // lets go of the pipeline's Deliveries now
    }
  };
};

Batching::Batching(std::shared_ptr<Adapter> inner, BatchingOptions options)
    : inner_(std::move(inner)), options_(std::move(options)) {
  validate(inner_, options_);
  async_inner_ = dynamic_cast<AsyncAdapter*>(inner_.get());
  shared_ = std::make_shared<Shared>(std::string(inner_->name()));
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

std::uint64_t Batching::delivered() const noexcept {
  return shared_->delivered.load(std::memory_order_relaxed);
}

std::uint64_t Batching::failed() const noexcept {
  return shared_->failed.load(std::memory_order_relaxed);
}

std::size_t Batching::held() const {
  std::size_t count = shared_->unsettled.load(std::memory_order_seq_cst);
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
  if (first.code() != Errc::timeout) {
    if (async_inner_ == nullptr) return first;
    // Everything is handed over; wait for the inner to settle it (not past flush_timeout).
    const std::uint64_t last = shared_->handed.load(std::memory_order_seq_cst);
    const Deadline limit = std::min(deadline, deadline_after(options_.flush_timeout));
    const bool settled = detail::wait_until(
        shared_->settled,
        [&] { return shared_->oldest_open.load(std::memory_order_seq_cst) > last; }, limit);
    if (!settled) {
      return Status(Errc::timeout,
                    "Batching '" + std::string(inner_->name()) +
                        "': " + std::to_string(shared_->unsettled.load(std::memory_order_seq_cst)) +
                        " events handed to the inner not settled by it " +
                        (expired(deadline) ? "at the deadline"
                                           : "within flush_timeout (" +
                                                 detail::describe(options_.flush_timeout) + ")"));
    }
    // The inner's failures are not returned: each settled its event (which the pipeline
    // retries or counts), like the failures of any AsyncAdapter.
    return first;
  }
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
  std::vector<Event> events;
  try {
    // The inner needs the events side by side: copies, read through the kept Deliveries.
    events.reserve(items.size());
    for (const Item& item : items)
      events.push_back(item.delivery->events()[item.index]);
  } catch (const std::exception& e) {
    const Status status(Errc::internal,
                        std::string("Batching could not copy the batch: ") + e.what());
    shared_->failed.fetch_add(items.size(), std::memory_order_relaxed);
    settle(items, status);
    return status;
  }
  if (async_inner_ != nullptr)
    return call_async(*async_inner_, std::move(items), std::move(events));
  const Status status = call_inner(std::move(events));
  settle(items, status);
  return status;
}

Status Batching::call_inner(std::vector<Event>&& events) {
  const bool report = detail::delivery_reported();
  const detail::DeliveryOutcome outcome =
      detail::deliver_to(*inner_, std::span<const Event>(events), need_init_, report);
  const auto count = static_cast<std::uint64_t>(events.size());
  (outcome.status.ok() ? shared_->delivered : shared_->failed)
      .fetch_add(count, std::memory_order_relaxed);
  if (report) detail::report_delivery(inner_->name(), events.size(), outcome, {{"batching", true}});
  return outcome.status;
}

Status Batching::call_async(AsyncAdapter& inner, std::vector<Item>&& items,
                            std::vector<Event>&& events) {
  // The inner gets a Delivery of its own and is asked to flush at once; each of its
  // settlements settles the item of the same index, on the settling thread (Shared).
  const bool report = detail::delivery_reported();
  const std::size_t count = items.size();
  Status status;
  if (need_init_) {
    try {
      status = inner.init();
    } catch (const std::exception& e) {
      status = Status(Errc::internal, e.what());
    } catch (...) {
      status = Status(Errc::internal, "unknown exception");
    }
    if (!status.ok()) {
      status = Status(status.code(), "init failed: " + status.message());
    } else {
      need_init_ = false;
    }
  }
  std::shared_ptr<Shared::InnerBatch> batch;
  detail::DeliveryState::SettledCallback on_settled;
  if (status.ok()) {
    try {
      batch = std::make_shared<Shared::InnerBatch>();
      on_settled = [batch](std::size_t index, bool ok, const Status* error,
                           std::chrono::milliseconds retry_after) noexcept {
        batch->settle(index, ok, error, retry_after);
      };
      std::lock_guard lock(shared_->mutex);
      const std::uint64_t number = shared_->handed.load(std::memory_order_relaxed) + 1;
      shared_->open.push_back(number);
      batch->number = number;
      if (shared_->open.size() == 1) {
        shared_->oldest_open.store(number, std::memory_order_seq_cst);
      }
      shared_->handed.store(number, std::memory_order_seq_cst);
    } catch (const std::exception& e) {
      status = Status(Errc::internal,
                      std::string("Batching could not hand the batch over: ") + e.what());
    }
  }
  if (!status.ok()) {
    shared_->failed.fetch_add(count, std::memory_order_relaxed);
    if (report) {
      detail::report_delivery(inner.name(), count, {status, false, 0}, {{"batching", true}});
    }
    settle(items, status);
    return status;
  }
  // The inner's attempt: the highest of the pipeline Deliveries its events come from.
  std::uint32_t attempt = 1;
  for (const Item& item : items)
    attempt = std::max(attempt, item.delivery->attempt());
  batch->shared = shared_;
  batch->items = std::move(items);
  batch->report = report;
  if (report) batch->started = std::chrono::steady_clock::now();
  batch->unsettled.store(count, std::memory_order_relaxed);
  shared_->unsettled.fetch_add(count, std::memory_order_seq_cst);
  // A throw has failed the events already (through on_settled); init() runs again next.
  if (!detail::deliver_detached(inner, std::move(events), attempt, std::move(on_settled)).ok()) {
    need_init_ = true;
  } else if (batch->unsettled.load(std::memory_order_acquire) != 0) {
    detail::best_effort([&] { (void)inner.flush(deadline_after(options_.flush_timeout)); });
  }
  return {};
}

}  // namespace emissions::adapters
