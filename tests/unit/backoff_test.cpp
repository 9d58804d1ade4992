// The retry delay rule of RetryPolicy (config.hpp): uniform in [d/2, d] with
// d = min(max_backoff, initial_backoff * multiplier^(k-1)) after k failed attempts.
#include "common/backoff.hpp"

#include <gtest/gtest.h>

#include <random>

namespace emissions::detail {
namespace {

using namespace std::chrono_literals;

TEST(BackoffTest, TheCeilingGrowsByTheMultiplierUpToMaxBackoff) {
  const RetryPolicy policy{.initial_backoff = 100ms, .max_backoff = 1s, .multiplier = 3.0};
  EXPECT_EQ(backoff_ceiling(policy, 1), 100ms);
  EXPECT_EQ(backoff_ceiling(policy, 2), 300ms);
  EXPECT_EQ(backoff_ceiling(policy, 3), 900ms);
  EXPECT_EQ(backoff_ceiling(policy, 4), 1s);
  EXPECT_EQ(backoff_ceiling(policy, 4'000'000'000U), 1s);  // pow() overflows: still capped
}

TEST(BackoffTest, AMultiplierOfOneKeepsTheInitialDelay) {
  const RetryPolicy policy{.initial_backoff = 40ms, .max_backoff = 1s, .multiplier = 1.0};
  EXPECT_EQ(backoff_ceiling(policy, 1), 40ms);
  EXPECT_EQ(backoff_ceiling(policy, 50), 40ms);
}

TEST(BackoffTest, DelaysAreDrawnBetweenHalfTheCeilingAndTheCeiling) {
  const RetryPolicy policy{.initial_backoff = 100ms, .max_backoff = 150ms};
  std::minstd_rand random(7);
  for (std::uint32_t failed = 1; failed <= 3; ++failed) {
    const auto ceiling = backoff_ceiling(policy, failed);
    for (int i = 0; i < 1000; ++i) {
      const auto delay = backoff_delay(policy, failed, random);
      EXPECT_GE(delay, ceiling / 2);
      EXPECT_LE(delay, ceiling);
    }
  }
}

TEST(BackoffTest, AnUnboundedMaxBackoffDoesNotOverflow) {
  const RetryPolicy policy{.initial_backoff = 1ms, .max_backoff = std::chrono::milliseconds::max()};
  EXPECT_GT(backoff_ceiling(policy, 200), std::chrono::hours(24 * 365));
  EXPECT_GT(backoff_ceiling(policy, 200).count(), 0);
}

}  // namespace
}  // namespace emissions::detail
