#include "pipeline/settlement_tracker.hpp"
#include "pipeline/thread_role.hpp"

#include <limits>
#include <memory>

#include "common/best_effort.hpp"
#include "spool/spool.hpp"

namespace emissions::detail {

SettlementTracker::SettlementTracker(Names lanes, std::size_t events,
                                     std::function<void(const Settlement&)> callback)
    : names_(std::move(lanes)),
      lanes_(names_->size()),
      events_(events),
      counts_(make_counts(lanes_)),
      remaining_(static_cast<std::uint64_t>(events) * lanes_ + 1),
      callback_(std::move(callback)) {}

SettlementTracker::SettlementTracker(std::shared_ptr<spool::Spool> spool, std::uint64_t seq,
                                     std::size_t events, std::size_t lane_count)
    : lanes_(lane_count),
      events_(events),
      counts_(make_counts(lane_count)),
      spool_(std::move(spool)),
      seq_(seq) {}

SettlementTracker::~SettlementTracker() {
  if (!heap_counts_) std::destroy_n(counts_, lanes_);
}

SettlementTracker::Counts* SettlementTracker::make_counts(std::size_t lanes) {
  if (lanes > kInlineLanes) {
    heap_counts_ = std::make_unique<Counts[]>(lanes);
    return heap_counts_.get();
  }
  void* at = inline_counts_;
  std::size_t space = sizeof(inline_counts_);
  at = std::align(alignof(Counts), lanes * sizeof(Counts), at, space);
  Counts* counts = static_cast<Counts*>(at);
  for (std::size_t l = 0; l < lanes; ++l)
    ::new (static_cast<void*>(counts + l)) Counts();
  return counts;
}

void SettlementTracker::hand_to(std::size_t lane) noexcept {
  counts_[lane].held = true;
  counts_[lane].remaining.store(events_ + 1, std::memory_order_relaxed);
}

void SettlementTracker::hand_to_later(std::size_t lane) noexcept {
  // Published to the lane's consumers by the queue push that follows (release/acquire).
  counts_[lane].remaining.store(events_, std::memory_order_relaxed);
}

void SettlementTracker::add(std::size_t lane, Outcome outcome, std::uint64_t n) noexcept {
  if (lane >= lanes_ || n == 0) return;
  Counts& c = counts_[lane];
  switch (outcome) {
    case Outcome::delivered:
      c.delivered.fetch_add(n, std::memory_order_relaxed);
      break;
    case Outcome::failed:
      c.failed.fetch_add(n, std::memory_order_relaxed);
      break;
    case Outcome::filtered:
      c.filtered.fetch_add(n, std::memory_order_relaxed);
      break;
    case Outcome::dropped:
      c.dropped.fetch_add(n, std::memory_order_relaxed);
      break;
  }
  if (spool_) {
    lane_countdown(lane, n);
  } else {
    countdown(n);
  }
}

void SettlementTracker::release_hold() noexcept {
  if (!spool_) {
    countdown(1);
    return;
  }
  for (std::size_t l = 0; l < lanes_; ++l) {
    if (counts_[l].held) lane_countdown(l, 1);
  }
}

AdapterStats SettlementTracker::stats_of(std::size_t lane) const {
  AdapterStats s;
  if (names_) s.name = (*names_)[lane];
  const Counts& c = counts_[lane];
  s.delivered = c.delivered.load(std::memory_order_relaxed);
  s.failed = c.failed.load(std::memory_order_relaxed);
  s.filtered = c.filtered.load(std::memory_order_relaxed);
  s.dropped = c.dropped.load(std::memory_order_relaxed);
  s.received = s.delivered + s.failed + s.filtered + s.dropped;
  return s;
}

void SettlementTracker::lane_countdown(std::size_t lane, std::uint64_t n) noexcept {
  // acq_rel: the thread that reaches zero sees every other settler's counts of the lane.
  if (counts_[lane].remaining.fetch_sub(n, std::memory_order_acq_rel) != n) return;
  best_effort([&] { spool_->settled(lane, seq_, stats_of(lane)); });
}

void SettlementTracker::countdown(std::uint64_t n) noexcept {
  // acq_rel: the thread that reaches zero sees every other settler's counts.
  if (remaining_.fetch_sub(n, std::memory_order_acq_rel) != n) return;
  std::function<void(const Settlement&)> callback = std::move(callback_);
  if (!callback) return;
  best_effort([&] {
    Settlement settlement;
    settlement.adapters.reserve(lanes_);
    for (std::size_t l = 0; l < lanes_; ++l)
      settlement.adapters.push_back(stats_of(l));
    const SettlementCallbackScope in_callback;
    callback(settlement);
  });
}

}  // namespace emissions::detail

namespace emissions {

// DeliveryLatency (emissions/settlement.hpp): AdapterStats' histogram, filled by the
// pipeline's LaneCounters.
double DeliveryLatency::quantile(double q) const noexcept {
  if (count == 0) return 0.0;
  const double target = q * static_cast<double>(count);
  std::uint64_t below = 0;
  for (std::size_t i = 0; i < kBounds.size(); ++i) {
    below += buckets[i];
    if (static_cast<double>(below) >= target) return kBounds[i];
  }
  return std::numeric_limits<double>::infinity();
}

}  // namespace emissions
