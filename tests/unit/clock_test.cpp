#include "emissions/clock.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace {

using namespace std::chrono_literals;
using emissions::Clock;
using emissions::ManualClock;
using emissions::SteadyClock;

TEST(ManualClock, MovesOnlyWhenAdvanced) {
  ManualClock clock(ManualClock::time_point(1s));
  EXPECT_EQ(clock.now(), ManualClock::time_point(1s));
  clock.advance(250ms);
  EXPECT_EQ(clock.now(), ManualClock::time_point(1250ms));
  clock.advance(-1s);  // ignored: time never goes back
  EXPECT_EQ(clock.now(), ManualClock::time_point(1250ms));
  EXPECT_EQ(clock.wake_time(clock.now() + 1s), Clock::time_point::max());
}

TEST(ManualClock, CallsSubscribersUntilTheirSubscriptionEnds) {
  ManualClock clock;
  int a = 0;
  int b = 0;
  Clock::Subscription sa = clock.subscribe([&] { ++a; });
  {
    Clock::Subscription sb = clock.subscribe([&] { ++b; });
    clock.advance(1ms);
    Clock::Subscription moved = std::move(sb);
    clock.advance(0ms);  // still a wake-up: waiters re-check
  }
  clock.advance(1ms);
  sa.reset();
  clock.advance(1ms);
  EXPECT_EQ(a, 3);
  EXPECT_EQ(b, 2);
}

TEST(ManualClock, WaitUntilEndsWhenAdvancedPastTheDeadline) {
  auto clock = std::make_shared<ManualClock>();
  std::mutex mu;
  std::condition_variable cv;
  Clock::Subscription sub = clock->subscribe([&] {
    { std::lock_guard lock(mu); }
    cv.notify_all();
  });
  std::atomic<int> result{-1};
  std::thread waiter([&] {
    std::unique_lock lock(mu);
    result = clock->wait_until(lock, cv, clock->now() + 100ms, [] { return false; }) ? 1 : 0;
  });
  // Keep advancing until the waiter, whenever it started, sees its deadline pass.
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (result.load() < 0 && std::chrono::steady_clock::now() < give_up) {
    clock->advance(50ms);
    std::this_thread::yield();
  }
  waiter.join();
  EXPECT_EQ(result.load(), 0);  // timed out, on the manual clock
}

TEST(ManualClock, WaitUntilReturnsTrueOnceThePredicateHolds) {
  ManualClock clock;
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  std::thread setter([&] {
    {
      std::lock_guard lock(mu);
      ready = true;
    }
    cv.notify_all();
  });
  std::unique_lock lock(mu);
  EXPECT_TRUE(clock.wait_until(lock, cv, Clock::time_point::max(), [&] { return ready; }));
  lock.unlock();
  setter.join();
}

TEST(SteadyClock, FollowsSteadyClockAndTimesOutByItself) {
  SteadyClock clock;
  const auto before = std::chrono::steady_clock::now();
  const auto now = clock.now();
  EXPECT_GE(now, before);
  EXPECT_EQ(clock.wake_time(now + 5ms), now + 5ms);
  std::mutex mu;
  std::condition_variable cv;
  std::unique_lock lock(mu);
  EXPECT_FALSE(clock.wait_until(lock, cv, clock.now() + 2ms, [] { return false; }));
  EXPECT_GE(clock.now() - now, 2ms);
}

}  // namespace
