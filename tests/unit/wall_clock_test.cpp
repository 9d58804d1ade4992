// The event timestamp clock: detail::WallClock over a simulated reader (steps of the
// system clock, stale readings) and detail::wall_now() on the real clock.
#include "time/wall_clock.hpp"

#include <chrono>
#include <cstdint>

#include <gtest/gtest.h>

#include "time/system_time.hpp"

namespace emissions::detail {
namespace {

using namespace std::chrono_literals;

std::int64_t ns(std::chrono::nanoseconds d) {
  return d.count();
}

// A simulated system clock: the reader the WallClock under test reads.
std::int64_t g_system_ns = 0;
std::int64_t read_simulated() noexcept {
  return g_system_ns;
}

class WallClockTest : public ::testing::Test {
 protected:
  void SetUp() override { g_system_ns = ns(1'795'225'053s); }
  WallClock clock_{&read_simulated};
};

TEST_F(WallClockTest, ReadsItsReader) {
  EXPECT_EQ(clock_.now_ns(), ns(1'795'225'053s));
  g_system_ns += ns(4ms);
  EXPECT_EQ(clock_.now_ns(), ns(1'795'225'053s + 4ms));
}

TEST_F(WallClockTest, HoldsItsLastValueAfterTheSystemClockStepsBackTwoSeconds) {
  const std::int64_t before_step = clock_.now_ns();
  g_system_ns -= ns(2s);
  // Never backwards: the last value holds, without a distorted rate to unlearn later.
  for (int i = 0; i < 1999; ++i) {
    g_system_ns += ns(1ms);
    ASSERT_EQ(clock_.now_ns(), before_step) << "at " << i << " ms";
  }
  // As soon as the system clock passes the last value, its time again, at its rate.
  g_system_ns += ns(2ms);
  EXPECT_EQ(clock_.now_ns(), before_step + ns(1ms));
  g_system_ns += ns(500ms);
  EXPECT_EQ(clock_.now_ns(), before_step + ns(501ms));
}

TEST_F(WallClockTest, FollowsAForwardStepOfTwoSecondsAtOnce) {
  const std::int64_t before_step = clock_.now_ns();
  g_system_ns += ns(2s);
  EXPECT_EQ(clock_.now_ns(), before_step + ns(2s));
  g_system_ns += ns(500ms);
  EXPECT_EQ(clock_.now_ns(), before_step + ns(2500ms));
}

TEST_F(WallClockTest, AStaleReadingDoesNotMoveItBack) {
  // A reader preempted between reading the kernel's time and returning it hands back a
  // time older than one another call on this thread already returned.
  g_system_ns += ns(10ms);
  const std::int64_t latest = clock_.now_ns();
  g_system_ns -= ns(7ms);
  EXPECT_EQ(clock_.now_ns(), latest);
  g_system_ns += ns(8ms);
  EXPECT_EQ(clock_.now_ns(), latest + ns(1ms));
}

TEST_F(WallClockTest, EachClockKeepsItsOwnLastValue) {
  // wall_now() keeps one WallClock per thread: one thread's readings never hold another's.
  WallClock other(&read_simulated);
  g_system_ns += ns(10ms);
  const std::int64_t latest = clock_.now_ns();
  g_system_ns -= ns(5ms);
  EXPECT_EQ(clock_.now_ns(), latest);
  EXPECT_EQ(other.now_ns(), latest - ns(5ms));
}

TEST(WallNow, NeverGoesBackwardsOnOneThread) {
  // Long enough to cross many scheduler ticks.
  const auto deadline = std::chrono::steady_clock::now() + 300ms;
  std::int64_t last = ns(wall_now().time_since_epoch());
  std::int64_t reads = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    for (int i = 0; i < 1000; ++i) {
      const std::int64_t now = ns(wall_now().time_since_epoch());
      ASSERT_GE(now, last) << "after " << reads << " reads, back by " << last - now << " ns";
      last = now;
      ++reads;
    }
  }
}

TEST(WallNow, IsTheSystemClocksTime) {
  for (int i = 0; i < 1000; ++i) {
    const std::int64_t before = system_time_ns();
    const std::int64_t now = ns(wall_now().time_since_epoch());
    const std::int64_t after = system_time_ns();
    // The coarse clock trails the system clock by up to a scheduler tick (1 to 10 ms; more
    // when a virtual machine's ticks come late), and is never ahead of it.
    ASSERT_LE(now, after) << "at " << i;
    ASSERT_GE(now, before - ns(100ms)) << "at " << i;
  }
}

}  // namespace
}  // namespace emissions::detail
