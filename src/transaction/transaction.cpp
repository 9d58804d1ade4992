#include "emissions/transaction.hpp"

#include "common/best_effort.hpp"
#include "emissions/ambient.hpp"
#include "emissions/telemetry.hpp"
#include "pipeline/batch.hpp"
#include "pipeline/core.hpp"
#include "telemetry/events.hpp"
#include "time/wall_clock.hpp"
#include "transaction/transaction_access.hpp"

namespace emissions {

Status detail::not_started(EventName name) {
  if (detail::events::kEventDropped.enabled()) {
    detail::events::kEventDropped.execute({{"count", 1}},
                                          {{"event_name", name.str()}, {"reason", "not_started"}});
  }
  return Status(Errc::not_started, "no active buffer: call start() first");
}

Status detail::handing_off() {
  return Status(Errc::invalid_argument,
                "the transaction is being flushed or committed on this thread (from user code "
                "that the hand-off runs: interested(), partition_by); it cannot change now");
}

Transaction::Transaction() noexcept = default;

Transaction::Transaction(std::shared_ptr<detail::Core> core, int cascade_depth) noexcept {
  begin(std::move(core), cascade_depth);
}

Transaction::Transaction(Transaction&& other) noexcept
    : core_(std::move(other.core_)),
      buffer_(std::move(other.buffer_)),
      active_(other.active_),
      cascade_depth_(other.cascade_depth_) {
  other.active_ = false;
}

Transaction& Transaction::operator=(Transaction&& other) noexcept {
  if (this != &other) {
    discard();
    give_back_buffer();
    core_ = std::move(other.core_);
    buffer_ = std::move(other.buffer_);
    active_ = other.active_;
    cascade_depth_ = other.cascade_depth_;
    other.active_ = false;
  }
  return *this;
}

Transaction::~Transaction() {
  discard();
  give_back_buffer();
}

void Transaction::give_back_buffer() noexcept {
  if (buffer_ && core_) core_->recycle(buffer_.release());
  buffer_.reset();
}

std::size_t Transaction::size() const noexcept {
  return buffer_ ? buffer_->size : 0;
}

void detail::BatchDeleter::operator()(Batch* batch) const noexcept {
  std::unique_ptr<Batch> owner(batch);
}

void Transaction::begin(std::shared_ptr<detail::Core> core, int cascade_depth) noexcept {
  // Keeping the same core avoids touching the shared reference count on every request.
  if (core_ != core) {
    give_back_buffer();
    core_ = std::move(core);
  }
  if (buffer_) buffer_->reset();
  cascade_depth_ = cascade_depth;
  active_ = core_ != nullptr && core_->accepting(cascade_depth);
  if (active_ && detail::events::kBufferStarted.enabled()) {
    detail::best_effort([] {
      detail::events::kBufferStarted.execute({{"count", 1}}, nlohmann::json::object());
    });
  }
}

Status Transaction::emit(EventName name, nlohmann::json payload, nlohmann::json metadata) {
  return append(name, std::move(payload), std::move(metadata));
}

// The body of emit, taking references so the ambient emit does not move the JSON values
// through a second layer of by-value parameters.
Status Transaction::append(EventName name, nlohmann::json&& payload, nlohmann::json&& metadata) {
  if (handing_off_) return detail::handing_off();
  if (!active_) {
    if (core_ && !core_->accepting(cascade_depth_)) {
      return Status(Errc::closed, "the emitter has been shut down");
    }
    return detail::not_started(name);
  }
  if (name.empty()) return Status(Errc::invalid_argument, "event name is empty");
  if (!metadata.is_null() && !metadata.is_object()) {
    return Status(Errc::invalid_argument, "metadata of '" + name.str() +
                                              "' must be a JSON object or null, got " +
                                              std::string(metadata.type_name()));
  }
  if (!core_->accepting(cascade_depth_)) {
    return Status(Errc::closed, "the emitter has been shut down");
  }
  if (cascade_depth_ > core_->max_cascade_depth()) return cascade_limit(name);
  // The batch's stale events (if any) come back one by one in `payload` and `metadata`,
  // destroyed by the caller (see BatchPool::acquire_stale()).
  if (!buffer_) buffer_ = core_->acquire_stale_batch();
  const auto now = detail::wall_now();
  buffer_->append(name, std::move(payload), std::move(metadata), EventId::generate(now), now);
  return {};
}

int TransactionAccess::depth_here(const detail::Core* core) noexcept {
  const Transaction& ambient = current();
  return ambient.core_.get() == core ? ambient.cascade_depth_ : 0;
}

Status TransactionAccess::publish(Transaction& tx, std::vector<Event>& events,
                                  std::function<void(const Settlement&)>* on_settled) {
  if (!tx.active_) return Status(Errc::closed, "the emitter has been shut down");
  if (tx.cascade_depth_ > tx.core_->max_cascade_depth()) {
    return Status(Errc::overloaded, "publish from a handler " + std::to_string(tx.cascade_depth_) +
                                        " levels deep exceeds max_cascade_depth " +
                                        std::to_string(tx.core_->max_cascade_depth()) +
                                        "; nothing was published");
  }
  if (!tx.buffer_) tx.buffer_ = tx.core_->acquire_batch();
  tx.buffer_->drop_stale();  // the caller's events must not get old events back
  for (Event& e : events) {
    tx.buffer_->append(e.name, std::move(e.payload), std::move(e.metadata), e.id, e.emitted_at);
  }
  return tx.hand_off(false, on_settled);
}

std::span<const Event> TransactionAccess::buffered(const Transaction& tx) noexcept {
  if (!tx.active_ || !tx.buffer_) return {};
  return tx.buffer_->events();
}

Status TransactionAccess::end_written_elsewhere(Transaction& tx) {
  if (tx.handing_off_) return detail::handing_off();
  if (!tx.active_) return Status(Errc::not_started, "no active buffer: call start() first");
  const std::size_t count = tx.size();
  if (tx.buffer_) tx.buffer_->reset();
  tx.active_ = false;
  if (detail::events::kBufferCommitted.enabled()) {
    detail::best_effort([count] {
      detail::events::kBufferCommitted.execute({{"count", count}}, {{"event_count", count}});
    });
  }
  return {};
}

Status Transaction::hand_off(bool keep_open, std::function<void(const Settlement&)>* on_settled) {
  if (handing_off_) return detail::handing_off();
  if (!active_) {
    if (core_ && !core_->accepting(cascade_depth_)) {
      return Status(Errc::closed, "the emitter has been shut down");
    }
    return Status(Errc::not_started, "no active buffer: call start() first");
  }
  const std::size_t count = size();
  detail::DropReport drops;
  std::shared_ptr<detail::SettlementTracker> tracker;
  if (count > 0) {
    // publish() runs user code (interested, partition_by) on this thread while it routes
    // this very buffer: until it returns, this transaction refuses to change.
    struct HandingOff {
      bool& flag;
      explicit HandingOff(bool& f) : flag(f) { flag = true; }
      ~HandingOff() { flag = false; }
      HandingOff(const HandingOff&) = delete;
      HandingOff& operator=(const HandingOff&) = delete;
    };
    buffer_->drop_stale();  // not kept past the thread that acquired them
    Status status;
    {
      const HandingOff guard(handing_off_);
      status = core_->publish(buffer_, cascade_depth_, drops, on_settled, &tracker);
    }
    if (!status.ok()) return status;
  }
  if (!keep_open) active_ = false;
  // Only now, with this transaction's state settled, run telemetry handlers: they may
  // commit again, on this thread, even through this very transaction.
  drops.fire();
  if (tracker) {
    tracker->release_hold();  // may call on_settled here, when nothing was left to settle
  } else if (on_settled != nullptr && count == 0) {
    detail::best_effort([&] { (*on_settled)(core_->empty_settlement()); });
  }
  // Best effort: the commit is made, and a throw (out of memory for the report) would tell
  // the caller it was not.
  if (detail::events::kBufferCommitted.enabled()) {
    detail::best_effort([&] {
      detail::events::kBufferCommitted.execute({{"count", count}}, {{"event_count", count}});
    });
  }
  return {};
}

Status Transaction::cascade_limit(EventName name) {
  core_->count_cascade_dropped();
  if (detail::events::kEventDropped.enabled()) {
    detail::events::kEventDropped.execute(
        {{"count", 1}}, {{"event_name", name.str()}, {"reason", "cascade_limit"}});
  }
  return Status(Errc::overloaded, "'" + name.str() +
                                      "' would cascade deeper than max_cascade_depth " +
                                      std::to_string(core_->max_cascade_depth()) + "; dropped");
}

Status Transaction::flush() {
  return hand_off(true, nullptr);
}

Status Transaction::commit() {
  return hand_off(false, nullptr);
}

Status Transaction::commit(std::function<void(const Settlement&)> on_settled) {
  return hand_off(false, on_settled ? &on_settled : nullptr);
}

void Transaction::terminate() noexcept {
  discard();
}

void Transaction::discard() noexcept {
  if (!active_ || handing_off_) return;
  const std::size_t count = size();
  if (buffer_) buffer_->reset();
  active_ = false;
  if (core_ && count > 0) core_->count_discarded(count);
  if (detail::events::kBufferTerminated.enabled()) {
    detail::best_effort([count] {
      detail::events::kBufferTerminated.execute({{"count", 1}}, {{"event_count", count}});
    });
  }
}

}  // namespace emissions
