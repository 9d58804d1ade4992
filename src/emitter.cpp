#include "emissions/emitter.hpp"

#include "pipeline/core.hpp"
#include "transaction/default_emitter.hpp"
#include "transaction/transaction_access.hpp"

namespace emissions {

Emitter::Emitter(Config config) {
  const bool make_default_now = config.make_default;
  shutdown_timeout_ = config.shutdown_timeout;
  core_ = std::make_shared<detail::Core>(std::move(config));
  core_->start();
  if (make_default_now) detail::set_default_core(core_);
}

Emitter::~Emitter() {
  (void)core_->shutdown(shutdown_timeout_);
  detail::clear_default_core(core_.get());
  core_->finish();
}

Transaction Emitter::start() {
  return TransactionAccess::make(core_);
}

Status Emitter::publish(std::vector<Event> events,
                        std::function<void(const Settlement&)> on_settled) {
  for (std::size_t i = 0; i < events.size(); ++i) {
    const Event& e = events[i];
    const std::string which = "publish: events[" + std::to_string(i) + "]";
    if (e.id.is_nil()) {
      return Status(Errc::invalid_argument, which + " has no id (nil); nothing was published");
    }
    if (e.name.empty()) {
      return Status(Errc::invalid_argument, which + " has an empty name; nothing was published");
    }
    if (!e.metadata.is_null() && !e.metadata.is_object()) {
      return Status(Errc::invalid_argument, which + " ('" + e.name.str() +
                                                "') has metadata that is neither null nor an "
                                                "object but " +
                                                std::string(e.metadata.type_name()) +
                                                "; nothing was published");
    }
  }
  // From a handler of this emitter, a cascade like its own emits: drains wait for it and
  // max_cascade_depth bounds it.
  Transaction tx = TransactionAccess::make(core_, TransactionAccess::depth_here(core_.get()));
  return TransactionAccess::publish(tx, events, on_settled ? &on_settled : nullptr);
}

Status Emitter::drain(std::chrono::milliseconds timeout) {
  return core_->drain(timeout);
}

Status Emitter::shutdown(std::chrono::milliseconds timeout) {
  Status status = core_->shutdown(timeout);
  detail::default_core_changed();
  return status;
}

bool Emitter::closed() const noexcept {
  return core_->closed();
}

EmitterStats Emitter::stats() const {
  return core_->stats();
}

void Emitter::make_default() {
  detail::set_default_core(core_);
}

}  // namespace emissions
