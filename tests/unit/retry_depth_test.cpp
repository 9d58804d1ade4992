// Internal: the cascade depth a consumer delivers at (detail::delivering_depth(), which a
// handler lane gives the events its handlers emit) around retries served in the middle of
// another batch (Core::serve_retries_first restores the batch's own depth afterwards).
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "clock_driver.hpp"
#include "emissions/emissions.hpp"
#include "emissions/testing.hpp"
#include "pipeline/core.hpp"
#include "recording_adapter.hpp"

namespace {

using namespace std::chrono_literals;
using emissions::Config;
using emissions::Delivery;
using emissions::Emitter;
using emissions::Errc;
using emissions::Event;
using emissions::ManualClock;
using emissions::RetryPolicy;
using emissions::Status;
using emissions::test_support::TelemetryRecorder;

// Records each delivery's first event name and the depth it was delivered at; holds the
// first attempt of "a" until fail_held().
class DepthProbe final : public emissions::AsyncAdapter {
 public:
  std::string_view name() const override { return "depth-probe"; }
  void deliver(Delivery delivery) override {
    const std::string first = delivery.events().front().name.str();
    std::unique_lock lock(mutex_);
    seen_.emplace_back(first, emissions::detail::delivering_depth());
    if (first == "a" && delivery.attempt() == 1) {
      held_ = std::move(delivery);
      changed_.notify_all();
      return;
    }
    lock.unlock();
    delivery.ack();
  }
  bool wait_held(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return held_.events().size() != 0; });
  }
  void fail_held() {
    Delivery held;
    {
      std::lock_guard lock(mutex_);
      held = std::move(held_);
    }
    held.fail(Status(Errc::unavailable, "down"));
  }
  std::vector<std::pair<std::string, int>> seen() const {
    std::lock_guard lock(mutex_);
    return seen_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  Delivery held_;
  std::vector<std::pair<std::string, int>> seen_;
};

// On "in", emits "a": a cascade, committed at depth 1.
class Cascader final : public emissions::Handler {
 public:
  std::vector<emissions::EventName> events() const override { return {"in"}; }
  std::string_view name() const override { return "cascader"; }
  emissions::HandlerResult handle_event(const Event&) override {
    const Status s = emissions::emit("a", 1);
    return s.ok() ? emissions::HandlerResult::ok() : emissions::HandlerResult::error(s.message());
  }
};

Status commit_one(Emitter& emitter, const char* name) {
  emissions::Transaction tx = emitter.start();
  if (Status s = tx.emit(emissions::EventName(name), 0); !s.ok()) return s;
  return tx.commit();
}

// "a" (depth 1) fails while the consumer holds "b" (depth 0) and waits for room in its
// window (max_in_flight 1): the retry of "a" goes first, at depth 1, then "b" at depth 0.
TEST(RetryDepthTest, ABatchDeliveredAfterARetryOfADeeperCascadeKeepsItsOwnDepth) {
  TelemetryRecorder retries("retry-depth", {{"emissions", "adapter", "retry"}});
  auto clock = std::make_shared<ManualClock>();
  auto probe = std::make_shared<DepthProbe>();
  Config config;
  config.make_default = false;
  config.clock = clock;
  config.handler_concurrency = 1;
  config.add_adapter(probe, {.retry = RetryPolicy{.max_attempts = 4,
                                                  .initial_backoff = 100ms,
                                                  .max_backoff = 1s,
                                                  .multiplier = 2.0},
                             .max_in_flight = 1});
  config.add_handler(std::make_shared<Cascader>());
  Emitter emitter(std::move(config));
  ASSERT_TRUE(commit_one(emitter, "in").ok());
  ASSERT_TRUE(probe->wait_held(10s));  // "a" in flight, its window full
  ASSERT_TRUE(commit_one(emitter, "b").ok());
  // The consumer takes "b" and waits for room in its window.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (emitter.stats().adapters[0].queued != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  ASSERT_EQ(emitter.stats().adapters[0].queued, 0u);
  probe->fail_held();  // a retry of "a" is scheduled, ahead of "b"
  ASSERT_TRUE(retries.wait_for({"emissions", "adapter", "retry"}, 1, 10s));
  clock->advance(100ms);
  ASSERT_TRUE(emitter.drain(10s).ok());
  const std::vector<std::pair<std::string, int>> expected{{"in", 0}, {"a", 1}, {"a", 1}, {"b", 0}};
  EXPECT_EQ(probe->seen(), expected);
}

}  // namespace
