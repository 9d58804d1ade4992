// Internal: when an idle consumer polls for its next batch and when it parks.
#pragma once

#include <algorithm>
#include <chrono>

namespace emissions::detail {

// When to poll for the next batch instead of parking. An idle spell runs from finding the
// queue empty to the next batch; it counts as zero when polling found the batch (however
// long that took: the consumer may have lost its core meanwhile) and as its length when
// the consumer parked. The consumer polls while the moving average of recent spells (each
// counted as at most kSpellCap budgets) is within the idle_spin budget: polling through a
// short spell costs less than parking (a futex wait here, a futex wake in the commit) and
// keeps latency at a poll's; polling through a long one, as with steady commits every
// 100 us and a 50 us budget, would burn the whole budget for nothing, so then the consumer
// parks at once and the next commit wakes it.
// A parked consumer cannot see that batches come closer together again (its spells include
// the wake-up, which may itself outlast the budget), so it probes: it polls one spell in
// `probe_interval_`, which doubles after each probe that ended parked (up to
// kMaxProbeInterval, a small fraction of a budget per spell) and drops to 1 after one that
// found a batch. A busy consumer reads no clock.
// Consumer thread only; no clock reads of its own (idle_wait times the spells).
class IdlePolicy {
 public:
  explicit IdlePolicy(std::chrono::microseconds budget)
      : budget_(std::chrono::duration_cast<std::chrono::nanoseconds>(budget)) {}

  // How long to poll before parking, for the spell that starts now.
  [[nodiscard]] std::chrono::nanoseconds next_spin() noexcept {
    probing_ = false;
    if (average_ <= budget_) return budget_;
    if (++since_probe_ < probe_interval_) return std::chrono::nanoseconds::zero();
    since_probe_ = 0;
    probing_ = true;
    return budget_;
  }
  // The spell that just ended: zero when a poll found the batch, otherwise its length.
  void on_idle_spell(std::chrono::nanoseconds spell) noexcept {
    if (budget_.count() == 0) return;
    if (probing_) {
      probe_interval_ = spell.count() == 0 ? 1 : std::min(probe_interval_ * 2, kMaxProbeInterval);
    }
    spell = std::min<std::chrono::nanoseconds>(spell, budget_ * kSpellCap);
    average_ = average_ == kUnknown ? spell : (average_ * 3 + spell) / 4;
  }

 private:
  static constexpr std::chrono::nanoseconds kUnknown = std::chrono::nanoseconds::max();
  static constexpr int kSpellCap = 8;
  static constexpr unsigned kMaxProbeInterval = 64;
  const std::chrono::nanoseconds budget_;
  std::chrono::nanoseconds average_ = kUnknown;
  unsigned probe_interval_ = 1;
  unsigned since_probe_ = 0;
  bool probing_ = false;
};

}  // namespace emissions::detail
