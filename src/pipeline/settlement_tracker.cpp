#include "pipeline/settlement_tracker.hpp"

#include "common/best_effort.hpp"

namespace emissions::detail {

SettlementTracker::SettlementTracker(const std::vector<std::string>& lanes, std::size_t events,
                                     std::function<void(const Settlement&)> callback,
                                     std::size_t only_lane)
    : names_(only_lane == kAllLanes ? lanes : std::vector<std::string>{lanes.at(only_lane)}),
      first_(only_lane == kAllLanes ? 0 : only_lane),
      counts_(std::make_unique<Counts[]>(names_.size())),
      remaining_(static_cast<std::uint64_t>(events) * names_.size() + 1),
      callback_(std::move(callback)) {}

void SettlementTracker::add(std::size_t lane, Outcome outcome, std::uint64_t n) noexcept {
  if (lane < first_ || lane - first_ >= names_.size() || n == 0) return;
  Counts& c = counts_[lane - first_];
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
  countdown(n);
}

void SettlementTracker::release_hold() noexcept {
  countdown(1);
}

void SettlementTracker::countdown(std::uint64_t n) noexcept {
  // acq_rel: the thread that reaches zero sees every other settler's counts.
  if (remaining_.fetch_sub(n, std::memory_order_acq_rel) != n) return;
  std::function<void(const Settlement&)> callback = std::move(callback_);
  if (!callback) return;
  best_effort([&] {
    Settlement settlement;
    settlement.adapters.reserve(names_.size());
    for (std::size_t l = 0; l < names_.size(); ++l) {
      AdapterStats s;
      s.name = names_[l];
      s.delivered = counts_[l].delivered.load(std::memory_order_relaxed);
      s.failed = counts_[l].failed.load(std::memory_order_relaxed);
      s.filtered = counts_[l].filtered.load(std::memory_order_relaxed);
      s.dropped = counts_[l].dropped.load(std::memory_order_relaxed);
      s.received = s.delivered + s.failed + s.filtered + s.dropped;
      settlement.adapters.push_back(std::move(s));
    }
    callback(settlement);
  });
}

}  // namespace emissions::detail
