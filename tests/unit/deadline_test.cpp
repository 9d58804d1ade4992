// deadline_after(): saturating, for every duration type.
#include "emissions/deadline.hpp"

#include <gtest/gtest.h>

#include <chrono>

namespace {

using emissions::Deadline;
using emissions::deadline_after;
using namespace std::chrono_literals;

TEST(DeadlineTest, HugeTimeoutsOfAnyUnitNeverPass) {
  // milliseconds::max() converted to nanoseconds overflows: it used to become a deadline in
  // the past when a caller passed it through deadline_after(nanoseconds).
  EXPECT_EQ(deadline_after(std::chrono::milliseconds::max()), Deadline::max());
  EXPECT_EQ(deadline_after(std::chrono::seconds::max()), Deadline::max());
  EXPECT_EQ(deadline_after(std::chrono::hours::max()), Deadline::max());
  EXPECT_EQ(deadline_after(std::chrono::nanoseconds::max()), Deadline::max());
  EXPECT_EQ(deadline_after(std::chrono::duration<double>(1e300)), Deadline::max());
}

TEST(DeadlineTest, OrdinaryTimeoutsAreNowPlusTheTimeout) {
  const Deadline before = std::chrono::steady_clock::now();
  const Deadline d = deadline_after(2s);
  const Deadline after = std::chrono::steady_clock::now();
  EXPECT_GE(d, before + 2s);
  EXPECT_LE(d, after + 2s);
  const Deadline negative = deadline_after(-5s);
  const Deadline zero = deadline_after(0ms);
  const Deadline now = std::chrono::steady_clock::now();
  EXPECT_LE(negative, now);
  EXPECT_LE(zero, now);
  EXPECT_GE(negative, after);  // taken as 0, not 5 s in the past
}

}  // namespace
