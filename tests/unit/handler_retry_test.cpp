// Handler retries: HandlerResult::retry() runs the invocation again per
// Config::handler_retry, on Config::clock, with a fresh buffer each attempt; drain waits for
// scheduled retries and shutdown drops them at its deadline. Driven by a ManualClock: no test
// sleeps, each waits with a deadline for the state it needs.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "emissions/ambient.hpp"
#include "emissions/clock.hpp"
#include "emissions/emitter.hpp"
#include "emissions/handler.hpp"
#include "emissions/telemetry.hpp"
#include "recording_adapter.hpp"

namespace emissions {
namespace {

using test_support::RecordingAdapter;
using namespace std::chrono_literals;

// A handler whose n-th call (1-based) does what `fn(n, event)` says.
class ScriptedHandler : public Handler {
 public:
  ScriptedHandler(std::vector<EventName> events,
                  std::function<HandlerResult(int call, const Event&)> fn, bool ordered = false,
                  std::string name = "scripted")
      : events_(std::move(events)), fn_(std::move(fn)), ordered_(ordered), name_(std::move(name)) {}
  std::string_view name() const override { return name_; }
  std::vector<EventName> events() const override { return events_; }
  bool ordered() const override { return ordered_; }
  HandlerResult handle_event(const Event& e) override { return fn_(calls_.fetch_add(1) + 1, e); }
  int calls() const { return calls_.load(); }

 private:
  std::vector<EventName> events_;
  std::function<HandlerResult(int, const Event&)> fn_;
  bool ordered_;
  std::string name_;
  std::atomic<int> calls_{0};
};

// Records [emissions, handler, error] and lets a test wait for the n-th one. The dispatcher
// fires it after a retry is scheduled, so once it is seen, advancing the clock by the
// reported delay makes the retry due.
class HandlerErrors {
 public:
  struct Record {
    nlohmann::json measurements;
    nlohmann::json metadata;
  };
  HandlerErrors() {
    const Status s = telemetry::attach(
        kId, {"emissions", "handler", "error"},
        [this](const telemetry::EventName&, const nlohmann::json& m, const nlohmann::json& md) {
          std::lock_guard lock(mutex_);
          records_.push_back({m, md});
          changed_.notify_all();
        });
    EXPECT_TRUE(s.ok()) << s.to_string();
  }
  ~HandlerErrors() { (void)telemetry::detach(kId); }
  HandlerErrors(const HandlerErrors&) = delete;
  HandlerErrors& operator=(const HandlerErrors&) = delete;

  // Waits (up to `timeout`) until at least `n` were fired; false if they were not.
  bool wait_for(std::size_t n, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return records_.size() >= n; });
  }
  std::vector<Record> records() const {
    std::lock_guard lock(mutex_);
    return records_;
  }

 private:
  static constexpr const char* kId = "handler-retry-test";
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Record> records_;
};

struct Fixture {
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
  std::shared_ptr<RecordingAdapter> sink = std::make_shared<RecordingAdapter>("sink");
  std::unique_ptr<Emitter> emitter;

  Fixture(std::vector<std::shared_ptr<Handler>> handlers, RetryPolicy policy,
          bool manual_clock = true) {
    Config config;
    config.make_default = false;
    config.handler_concurrency = 2;
    config.handler_retry = policy;
    if (manual_clock) config.clock = clock;
    config.add_adapter(sink);
    for (auto& h : handlers)
      config.add_handler(h);
    emitter = std::make_unique<Emitter>(std::move(config));
  }
  void commit(const std::vector<std::string>& names) {
    Transaction tx = emitter->start();
    for (std::size_t i = 0; i < names.size(); ++i)
      ASSERT_TRUE(tx.emit(names[i], static_cast<int>(i)).ok());
    ASSERT_TRUE(tx.commit().ok());
  }
  std::multiset<std::string> received() const {
    auto names = sink->names();
    return {names.begin(), names.end()};
  }
};

std::chrono::nanoseconds delay_of(const HandlerErrors::Record& r) {
  return std::chrono::nanoseconds(r.measurements.at("delay").get<std::int64_t>());
}

TEST(HandlerRetryTest, RetriedOnceThenOkCommitsTheSecondAttemptsEvents) {
  auto h =
      std::make_shared<ScriptedHandler>(std::vector<EventName>{"a"}, [](int call, const Event&) {
        EXPECT_TRUE(emit("from_attempt", call).ok());
        return call == 1 ? HandlerResult::retry("db down") : HandlerResult::ok();
      });
  HandlerErrors errors;
  Fixture f({h}, {.max_attempts = 3, .initial_backoff = 100ms, .max_backoff = 1s});
  f.commit({"a"});
  ASSERT_TRUE(errors.wait_for(1));
  const auto first = errors.records().at(0);
  EXPECT_EQ(first.metadata, (nlohmann::json{{"handler", "scripted"},
                                            {"event", "a"},
                                            {"reason", "db down"},
                                            {"attempt", 1},
                                            {"retrying", true}}));
  EXPECT_GE(delay_of(first), 50ms);
  EXPECT_LE(delay_of(first), 100ms);
  f.clock->advance(100ms);
  ASSERT_TRUE(f.emitter->drain(30s).ok());
  EXPECT_EQ(h->calls(), 2);
  EXPECT_EQ(errors.records().size(), 1u);
  EXPECT_EQ(f.received(), (std::multiset<std::string>{"a", "from_attempt"}));
  EXPECT_EQ(f.sink->payloads().back(), nlohmann::json(2));  // the second attempt's event
  EXPECT_EQ(f.emitter->stats().discarded, 1u);              // the first attempt's event
}

TEST(HandlerRetryTest, RetriedUntilMaxAttemptsThenCountsAsAnError) {
  auto h = std::make_shared<ScriptedHandler>(std::vector<EventName>{"a"}, [](int, const Event&) {
    return HandlerResult::retry("still down");
  });
  HandlerErrors errors;
  // d = min(150 ms, 100 ms * 2^(k-1)): 100, 150, 150 ms before attempts 2, 3, 4.
  Fixture f({h}, {.max_attempts = 4, .initial_backoff = 100ms, .max_backoff = 150ms});
  f.commit({"a"});
  const std::chrono::milliseconds ceilings[] = {100ms, 150ms, 150ms};
  for (std::size_t k = 1; k <= 3; ++k) {
    ASSERT_TRUE(errors.wait_for(k)) << "attempt " << k;
    const auto r = errors.records().at(k - 1);
    EXPECT_EQ(r.metadata["attempt"], k);
    EXPECT_EQ(r.metadata["retrying"], true);
    EXPECT_GE(delay_of(r), ceilings[k - 1] / 2);
    EXPECT_LE(delay_of(r), ceilings[k - 1]);
    f.clock->advance(ceilings[k - 1]);
  }
  ASSERT_TRUE(f.emitter->drain(30s).ok());
  EXPECT_EQ(h->calls(), 4);
  const auto records = errors.records();
  ASSERT_EQ(records.size(), 4u);
  EXPECT_EQ(records[3].metadata, (nlohmann::json{{"handler", "scripted"},
                                                 {"event", "a"},
                                                 {"reason", "still down"},
                                                 {"attempt", 4},
                                                 {"retrying", false}}));
  EXPECT_FALSE(records[3].measurements.contains("delay"));
  EXPECT_EQ(f.received(), (std::multiset<std::string>{"a"}));
}

TEST(HandlerRetryTest, EventsEmittedByFailedAttemptsAreDiscardedAndNeverCascade) {
  auto h =
      std::make_shared<ScriptedHandler>(std::vector<EventName>{"a"}, [](int call, const Event&) {
        EXPECT_TRUE(emit("x").ok());
        EXPECT_TRUE(emit("x").ok());
        if (call < 3) return HandlerResult::retry("later");
        EXPECT_TRUE(emit("y").ok());
        return HandlerResult::ok();
      });
  auto on_x = std::make_shared<ScriptedHandler>(
      std::vector<EventName>{"x"}, [](int, const Event&) { return HandlerResult::ok(); },
      /*ordered=*/false, "on_x");
  HandlerErrors errors;
  Fixture f({h, on_x}, {.max_attempts = 3, .initial_backoff = 10ms, .max_backoff = 10ms});
  f.commit({"a"});
  for (std::size_t k = 1; k <= 2; ++k) {
    ASSERT_TRUE(errors.wait_for(k));
    f.clock->advance(10ms);
  }
  ASSERT_TRUE(f.emitter->drain(30s).ok());
  EXPECT_EQ(h->calls(), 3);
  // Only the successful attempt's events reached the adapter.
  EXPECT_EQ(f.received(), (std::multiset<std::string>{"a", "x", "x", "y"}));
  EXPECT_EQ(f.emitter->stats().discarded, 4u);  // two events from each failed attempt
  EXPECT_EQ(on_x->calls(), 2);                  // only the successful attempt's events cascaded
}

TEST(HandlerRetryTest, AnErrorIsNeverRetried) {
  auto h = std::make_shared<ScriptedHandler>(std::vector<EventName>{"a"}, [](int, const Event&) {
    return HandlerResult::error("bad input");
  });
  HandlerErrors errors;
  Fixture f({h}, {.max_attempts = 5, .initial_backoff = 10ms});
  f.commit({"a", "a"});
  ASSERT_TRUE(f.emitter->drain(30s).ok());
  EXPECT_EQ(h->calls(), 2);
  const auto records = errors.records();
  ASSERT_EQ(records.size(), 2u);
  for (const auto& r : records) {
    EXPECT_EQ(r.metadata["attempt"], 1);
    EXPECT_EQ(r.metadata["retrying"], false);
  }
}

TEST(HandlerRetryTest, TheDefaultPolicyNeverRetries) {
  auto h = std::make_shared<ScriptedHandler>(std::vector<EventName>{"a"}, [](int, const Event&) {
    return HandlerResult::retry("try again");
  });
  HandlerErrors errors;
  Fixture f({h}, Config{}.handler_retry);
  f.commit({"a"});
  ASSERT_TRUE(f.emitter->drain(30s).ok());
  EXPECT_EQ(h->calls(), 1);
  const auto records = errors.records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].metadata["reason"], "try again");
  EXPECT_EQ(records[0].metadata["retrying"], false);
}

TEST(HandlerRetryTest, DrainWaitsForAPendingRetry) {
  auto h =
      std::make_shared<ScriptedHandler>(std::vector<EventName>{"a"}, [](int call, const Event&) {
        EXPECT_TRUE(emit("done").ok());
        return call == 1 ? HandlerResult::retry("later") : HandlerResult::ok();
      });
  HandlerErrors errors;
  Fixture f({h}, {.max_attempts = 2, .initial_backoff = 1s, .max_backoff = 1s});
  f.commit({"a"});
  std::atomic<bool> drained{false};
  std::atomic<bool> drained_before_advance{true};
  std::thread advancer([&] {
    if (!errors.wait_for(1)) return;
    drained_before_advance = drained.load();
    f.clock->advance(1s);
  });
  const Status s = f.emitter->drain(30s);
  drained = true;
  advancer.join();
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_FALSE(drained_before_advance.load());
  EXPECT_EQ(h->calls(), 2);
  EXPECT_EQ(f.received(), (std::multiset<std::string>{"a", "done"}));
}

TEST(HandlerRetryTest, ShutdownReturnsByItsDeadlineAndDropsARetryScheduledLater) {
  auto h = std::make_shared<ScriptedHandler>(std::vector<EventName>{"a"}, [](int, const Event&) {
    return HandlerResult::retry("much later");
  });
  HandlerErrors errors;
  Fixture f({h}, {.max_attempts = 0, .initial_backoff = 1h, .max_backoff = 1h});
  f.commit({"a"});
  ASSERT_TRUE(errors.wait_for(1));
  const auto started = std::chrono::steady_clock::now();
  const Status s = f.emitter->shutdown(200ms);
  EXPECT_EQ(s.code(), Errc::timeout);
  f.emitter.reset();  // joins the handler pool: nothing may wait for the dropped retry
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_LT(took, 200ms + 1s);  // the deadline plus a generous margin for a loaded machine
  EXPECT_EQ(h->calls(), 1);
  EXPECT_EQ(errors.records().size(), 1u);
}

TEST(HandlerRetryTest, AnOrderedHandlersLaterInvocationsWaitForTheRetriedOne) {
  std::mutex m;
  std::vector<int> seen;
  auto h = std::make_shared<ScriptedHandler>(
      std::vector<EventName>{"a"},
      [&](int call, const Event& e) {
        std::lock_guard lock(m);
        seen.push_back(e.payload.get<int>());
        return call == 1 ? HandlerResult::retry("later") : HandlerResult::ok();
      },
      /*ordered=*/true);
  HandlerErrors errors;
  Fixture f({h}, {.max_attempts = 2, .initial_backoff = 10ms, .max_backoff = 10ms});
  f.commit({"a", "a", "a"});  // payloads 0, 1, 2
  ASSERT_TRUE(errors.wait_for(1));
  f.clock->advance(10ms);
  ASSERT_TRUE(f.emitter->drain(30s).ok());
  std::lock_guard lock(m);
  EXPECT_EQ(seen, (std::vector<int>{0, 0, 1, 2}));
}

TEST(HandlerRetryTest, WithoutAClockRetriesRunOnTheSteadyClock) {
  auto h =
      std::make_shared<ScriptedHandler>(std::vector<EventName>{"a"}, [](int call, const Event&) {
        return call < 3 ? HandlerResult::retry("later") : HandlerResult::ok();
      });
  Fixture f({h}, {.max_attempts = 3, .initial_backoff = 1ms, .max_backoff = 2ms},
            /*manual_clock=*/false);
  f.commit({"a"});
  ASSERT_TRUE(f.emitter->drain(30s).ok());
  EXPECT_EQ(h->calls(), 3);
}

}  // namespace
}  // namespace emissions
