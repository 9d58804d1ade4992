#include "emitter_view.hpp"

namespace emissions::http::detail {

void EmitterView::attach(Emitter& emitter) {
  std::lock_guard lock(mu_);
  if (detached_) {
    last_ = emitter.stats();  // alive during start(): the caller holds it
    return;
  }
  emitter_ = &emitter;
}

void EmitterView::detach_after_snapshot() noexcept {
  std::lock_guard lock(mu_);
  detached_ = true;
  if (emitter_ == nullptr) return;
  try {
    last_ = emitter_->stats();
  } catch (...) {  // out of memory: the previous snapshot stays
  }
  emitter_ = nullptr;
}

void EmitterView::detach() noexcept {
  std::lock_guard lock(mu_);
  detached_ = true;
  emitter_ = nullptr;
}

EmitterView::Snapshot EmitterView::read() {
  std::lock_guard lock(mu_);
  if (emitter_ == nullptr) return {last_, false};
  last_ = emitter_->stats();
  return {last_, !emitter_->closed()};
}

}  // namespace emissions::http::detail
