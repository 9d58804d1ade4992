#include "emissions/transaction.hpp"

#include "core.hpp"
#include "emissions/telemetry.hpp"
#include "telemetry_events.hpp"
#include "transaction_access.hpp"
#include "wall_clock.hpp"

namespace emissions {
namespace {

// Enough for a typical request without regrowth: one allocation per transaction.
constexpr std::size_t kInitialCapacity = 16;

}  // namespace

Status detail::not_started(EventName name) {
  if (telemetry::enabled()) {
    telemetry::execute(detail::events::kEventDropped, {{"count", 1}},
                       {{"event_name", name.str()}, {"reason", "not_started"}});
  }
  return Status(Errc::not_started, "no active buffer: call start() first");
}

Transaction::Transaction() noexcept = default;

Transaction::Transaction(std::shared_ptr<detail::Core> core, int cascade_depth) noexcept {
  begin(std::move(core), cascade_depth);
}

Transaction::Transaction(Transaction&& other) noexcept
    : core_(std::move(other.core_)),
      events_(std::move(other.events_)),
      active_(other.active_),
      cascade_depth_(other.cascade_depth_) {
  other.events_.clear();
  other.active_ = false;
}

Transaction& Transaction::operator=(Transaction&& other) noexcept {
  if (this != &other) {
    discard();
    core_ = std::move(other.core_);
    events_ = std::move(other.events_);
    active_ = other.active_;
    cascade_depth_ = other.cascade_depth_;
    other.events_.clear();
    other.active_ = false;
  }
  return *this;
}

Transaction::~Transaction() {
  discard();
}

void Transaction::begin(std::shared_ptr<detail::Core> core, int cascade_depth) noexcept {
  // Keeping the same core avoids touching the shared reference count on every request.
  if (core_ != core) core_ = std::move(core);
  events_.clear();
  cascade_depth_ = cascade_depth;
  active_ = core_ != nullptr && core_->accepting(cascade_depth);
  if (active_ && telemetry::enabled()) {
    telemetry::execute(detail::events::kBufferStarted, {{"count", 1}}, nlohmann::json::object());
  }
}

Status Transaction::emit(EventName name, nlohmann::json payload, nlohmann::json metadata) {
  if (!active_) {
    if (core_ && !core_->accepting(cascade_depth_)) {
      return Status(Errc::closed, "the emitter has been shut down");
    }
    return detail::not_started(name);
  }
  if (name.empty()) return Status(Errc::invalid_argument, "event name is empty");
  if (metadata.is_null()) {
    // value_t::object builds the empty map directly (json::object() goes through the
    // initializer-list constructor, several times slower on this hot path).
    metadata = nlohmann::json(nlohmann::json::value_t::object);
  } else if (!metadata.is_object()) {
    return Status(Errc::invalid_argument, "metadata of '" + name.str() +
                                              "' must be a JSON object or null, got " +
                                              std::string(metadata.type_name()));
  }
  if (!core_->accepting(cascade_depth_)) {
    return Status(Errc::closed, "the emitter has been shut down");
  }
  if (cascade_depth_ > core_->max_cascade_depth()) return cascade_limit(name);
  if (events_.capacity() == 0) events_.reserve(kInitialCapacity);
  const auto now = detail::wall_now();
  events_.emplace_back(name, std::move(payload), std::move(metadata), EventId::generate(now), now);
  return {};
}

Status Transaction::hand_off(bool keep_open) {
  if (!active_) {
    if (core_ && !core_->accepting(cascade_depth_)) {
      return Status(Errc::closed, "the emitter has been shut down");
    }
    return Status(Errc::not_started, "no active buffer: call start() first");
  }
  const std::size_t count = events_.size();
  if (count > 0) {
    Status status = core_->publish(events_, cascade_depth_);
    if (!status.ok()) return status;
  }
  if (!keep_open) active_ = false;
  if (telemetry::enabled()) {
    telemetry::execute(detail::events::kBufferCommitted, {{"count", count}},
                       {{"event_count", count}});
  }
  return {};
}

Status Transaction::cascade_limit(EventName name) {
  core_->count_cascade_dropped();
  if (telemetry::enabled()) {
    telemetry::execute(detail::events::kEventDropped, {{"count", 1}},
                       {{"event_name", name.str()}, {"reason", "cascade_limit"}});
  }
  return Status(Errc::overloaded, "'" + name.str() +
                                      "' would cascade deeper than max_cascade_depth " +
                                      std::to_string(core_->max_cascade_depth()) + "; dropped");
}

Status Transaction::flush() {
  return hand_off(true);
}

Status Transaction::commit() {
  return hand_off(false);
}

void Transaction::terminate() noexcept {
  discard();
}

void Transaction::discard() noexcept {
  if (!active_) return;
  const std::size_t count = events_.size();
  events_.clear();
  active_ = false;
  if (core_ && count > 0) core_->count_discarded(count);
  if (telemetry::enabled()) {
    telemetry::execute(detail::events::kBufferTerminated, {{"count", 1}}, {{"event_count", count}});
  }
}

}  // namespace emissions
