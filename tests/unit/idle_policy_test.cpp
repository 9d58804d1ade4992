// When an idle consumer polls and when it parks (pipeline/idle_policy.hpp), driven with
// made-up spells: no clock, no thread.
#include "pipeline/idle_policy.hpp"

#include <gtest/gtest.h>

#include <chrono>

namespace {

using namespace std::chrono_literals;
using emissions::detail::IdlePolicy;
using Nanos = std::chrono::nanoseconds;

// Runs `spells` spells, each ending parked after `length` (zero: found while polling), and
// returns how many of them polled.
int polled_spells(IdlePolicy& policy, int spells, Nanos length) {
  int polled = 0;
  for (int i = 0; i < spells; ++i) {
    if (policy.next_spin() > Nanos::zero()) ++polled;
    policy.on_idle_spell(length);
  }
  return polled;
}

TEST(IdlePolicyTest, PollsWhileBatchesKeepArrivingDuringThePoll) {
  IdlePolicy policy(50us);
  EXPECT_EQ(polled_spells(policy, 100, Nanos::zero()), 100);
  EXPECT_EQ(policy.next_spin(), Nanos(50us));
}

TEST(IdlePolicyTest, ParksAtOnceWhenSpellsOutlastTheBudgetProbingRarely) {
  // Commits every 100 us with a 50 us budget: polling would burn half a core for nothing.
  IdlePolicy policy(50us);
  (void)polled_spells(policy, 20, 100us);
  // From here it probes once in 64 spells at most.
  const int polled = polled_spells(policy, 640, 100us);
  EXPECT_GE(polled, 10);
  EXPECT_LE(polled, 11);
}

TEST(IdlePolicyTest, AProbeThatFindsABatchBringsPollingBack) {
  // Parked, with wake-ups that themselves outlast the budget: only a probe can see that
  // batches now come back to back.
  IdlePolicy policy(50us);
  (void)polled_spells(policy, 200, 1ms);
  int spells_until_polling = 0;
  int consecutive_polls = 0;
  for (; spells_until_polling < 1000 && consecutive_polls < 3; ++spells_until_polling) {
    const bool polls = policy.next_spin() > Nanos::zero();
    consecutive_polls = polls ? consecutive_polls + 1 : 0;
    // Batches come back to back now: a poll finds one, a park is woken after 60 us.
    policy.on_idle_spell(polls ? Nanos::zero() : Nanos(60us));
  }
  EXPECT_LT(spells_until_polling, 200);
  EXPECT_EQ(polled_spells(policy, 50, Nanos::zero()), 50);
}

TEST(IdlePolicyTest, AZeroBudgetNeverPolls) {
  IdlePolicy policy(0us);
  EXPECT_EQ(polled_spells(policy, 100, Nanos::zero()), 0);
  EXPECT_EQ(polled_spells(policy, 100, 1ms), 0);
}

}  // namespace
