// Handlers: subscriptions, cascading buffers, results, telemetry, ordering, depth limit,
// drain and shutdown.
#include "emissions/handler.hpp"

#include <gtest/gtest.h>

#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include "emissions/ambient.hpp"
#include "emissions/emitter.hpp"
#include "recording_adapter.hpp"

namespace emissions {
namespace {

using test_support::RecordingAdapter;
using test_support::TelemetryRecorder;
using namespace std::chrono_literals;

// A handler whose behaviour is a lambda, for compact tests.
class FnHandler : public Handler {
 public:
  FnHandler(std::string name, std::vector<EventName> events,
            std::function<HandlerResult(const Event&)> fn, bool ordered = false)
      : name_(std::move(name)), events_(std::move(events)), fn_(std::move(fn)), ordered_(ordered) {}
  std::string_view name() const override { return name_; }
  std::vector<EventName> events() const override { return events_; }
  bool ordered() const override { return ordered_; }
  HandlerResult handle_event(const Event& e) override {
    calls_.fetch_add(1);
    return fn_(e);
  }
  int calls() const { return calls_.load(); }

 private:
  std::string name_;
  std::vector<EventName> events_;
  std::function<HandlerResult(const Event&)> fn_;
  bool ordered_;
  std::atomic<int> calls_{0};
};

// A gate that handlers can wait on, with a deadline so a broken test cannot hang.
class Gate {
 public:
  void open() {
    std::lock_guard lock(m_);
    open_ = true;
    cv_.notify_all();
  }
  bool wait(std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(m_);
    return cv_.wait_for(lock, timeout, [&] { return open_; });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool open_ = false;
};

struct Fixture {
  std::shared_ptr<RecordingAdapter> sink = std::make_shared<RecordingAdapter>("sink");
  std::unique_ptr<Emitter> emitter;

  explicit Fixture(std::vector<std::shared_ptr<Handler>> handlers,
                   std::function<void(Config&)> tweak = {}) {
    Config config;
    config.make_default = false;
    config.handler_concurrency = 4;
    config.add_adapter(sink);
    for (auto& h : handlers)
      config.add_handler(h);
    if (tweak) tweak(config);
    emitter = std::make_unique<Emitter>(std::move(config));
  }
  void commit(std::initializer_list<const char*> names) {
    Transaction tx = emitter->start();
    for (const char* n : names)
      ASSERT_TRUE(tx.emit(n).ok());
    ASSERT_TRUE(tx.commit().ok());
  }
  void drain() { ASSERT_TRUE(emitter->drain(30s).ok()); }
  std::multiset<std::string> received() const {
    auto names = sink->names();
    return {names.begin(), names.end()};
  }
};

TEST(HandlerTest, HandlerSeesOnlyTheEventsItSubscribedTo) {
  std::mutex m;
  std::vector<std::string> seen;
  auto h = std::make_shared<FnHandler>("h", std::vector<EventName>{"order_created"},
                                       [&](const Event& e) {
                                         std::lock_guard lock(m);
                                         seen.push_back(e.name.str());
                                         return HandlerResult::ok();
                                       });
  Fixture f({h});
  f.commit({"order_created", "user_created", "order_created"});
  f.drain();
  EXPECT_EQ(seen, (std::vector<std::string>{"order_created", "order_created"}));
  EXPECT_EQ(f.sink->received(), 3u);
}

TEST(HandlerTest, EventsEmittedByAHandlerAreCommittedWhenItReturnsOk) {
  auto indexer = std::make_shared<FnHandler>("indexer", std::vector<EventName>{"order_created"},
                                             [](const Event& e) {
                                               EXPECT_TRUE(emit("order_indexed", e.payload).ok());
                                               return HandlerResult::ok();
                                             });
  auto notifier = std::make_shared<FnHandler>(
      "notifier", std::vector<EventName>{"order_indexed"}, [](const Event& e) {
        EXPECT_TRUE(emit("customer_notified", e.payload).ok());
        return HandlerResult::ok();
      });
  Fixture f({indexer, notifier});
  Transaction tx = f.emitter->start();
  ASSERT_TRUE(tx.emit("order_created", {{"id", 7}}).ok());
  ASSERT_TRUE(tx.commit().ok());
  f.drain();  // includes both cascade levels
  EXPECT_EQ(f.received(),
            (std::multiset<std::string>{"order_created", "order_indexed", "customer_notified"}));
  const auto payloads = f.sink->payloads();
  EXPECT_EQ(payloads.back(), (nlohmann::json{{"id", 7}}));
}

TEST(HandlerTest, EventsOfAFailedIgnoredOrThrowingHandlerAreDiscarded) {
  auto failing =
      std::make_shared<FnHandler>("failing", std::vector<EventName>{"a"}, [](const Event&) {
        EXPECT_TRUE(emit("from_failing").ok());
        return HandlerResult::error("nope");
      });
  auto ignoring =
      std::make_shared<FnHandler>("ignoring", std::vector<EventName>{"a"}, [](const Event&) {
        EXPECT_TRUE(emit("from_ignoring").ok());
        return HandlerResult::ignored();
      });
  auto throwing = std::make_shared<FnHandler>("throwing", std::vector<EventName>{"a"},
                                              [](const Event&) -> HandlerResult {
                                                EXPECT_TRUE(emit("from_throwing").ok());
                                                throw std::runtime_error("kaboom");
                                              });
  Fixture f({failing, ignoring, throwing});
  f.commit({"a"});
  f.drain();
  EXPECT_EQ(f.received(), (std::multiset<std::string>{"a"}));
  EXPECT_EQ(f.emitter->stats().discarded, 3u);
}

TEST(HandlerTest, TelemetryReportsSuccessErrorAndIgnoredWithTheDocumentedMetadata) {
  TelemetryRecorder rec("handler-telemetry", {{"emissions", "handler", "success"},
                                              {"emissions", "handler", "error"},
                                              {"emissions", "handler", "ignored"}});
  auto ok = std::make_shared<FnHandler>("ok", std::vector<EventName>{"e"},
                                        [](const Event&) { return HandlerResult::ok(); });
  auto bad = std::make_shared<FnHandler>("bad", std::vector<EventName>{"e"}, [](const Event&) {
    return HandlerResult::error("db down");
  });
  auto skip = std::make_shared<FnHandler>("skip", std::vector<EventName>{"e"},
                                          [](const Event&) { return HandlerResult::ignored(); });
  auto boom = std::make_shared<FnHandler>(
      "boom", std::vector<EventName>{"e"},
      [](const Event&) -> HandlerResult { throw std::runtime_error("exploded"); });
  Fixture f({ok, bad, skip, boom});
  f.commit({"e"});
  f.drain();
  const auto success = rec.records({"emissions", "handler", "success"});
  ASSERT_EQ(success.size(), 1u);
  EXPECT_TRUE(success[0].measurements["duration"].is_number_integer());
  EXPECT_EQ(success[0].metadata, (nlohmann::json{{"handler", "ok"}, {"event", "e"}}));
  auto errors = rec.records({"emissions", "handler", "error"});
  ASSERT_EQ(errors.size(), 2u);
  std::map<std::string, std::string> reasons;
  for (const auto& r : errors) {
    EXPECT_TRUE(r.measurements["duration"].is_number_integer());
    EXPECT_EQ(r.metadata["event"], "e");
    reasons[r.metadata["handler"]] = r.metadata["reason"];
  }
  EXPECT_EQ(reasons["bad"], "db down");
  EXPECT_EQ(reasons["boom"], "exploded");  // a throw is an error, reason = the message
  const auto ignored = rec.records({"emissions", "handler", "ignored"});
  ASSERT_EQ(ignored.size(), 1u);
  EXPECT_EQ(ignored[0].measurements, (nlohmann::json{{"count", 1}}));
  EXPECT_EQ(ignored[0].metadata, (nlohmann::json{{"handler", "skip"}, {"event", "e"}}));
}

TEST(HandlerTest, WorkerSurvivesAThrowingHandler) {
  std::atomic<int> n{0};
  auto flaky = std::make_shared<FnHandler>("flaky", std::vector<EventName>{"e"},
                                           [&](const Event&) -> HandlerResult {
                                             if (n.fetch_add(1) % 2 == 0) {
                                               throw std::logic_error("odd");
                                             }
                                             return HandlerResult::ok();
                                           });
  Fixture f({flaky}, [](Config& c) { c.handler_concurrency = 1; });
  for (int i = 0; i < 20; ++i)
    f.commit({"e"});
  f.drain();
  EXPECT_EQ(flaky->calls(), 20);
}

TEST(HandlerTest, AHandlerThatEmitsInALoopIsStoppedByTheDepthLimit) {
  TelemetryRecorder rec("cascade-limit", {{"emissions", "event", "dropped"}});
  std::atomic<int> refused{0};
  auto echo =
      std::make_shared<FnHandler>("echo", std::vector<EventName>{"ping"}, [&](const Event& e) {
        Status s = emit("ping", e.payload.get<int>() + 1);
        if (!s.ok()) {
          EXPECT_EQ(s.code(), Errc::overloaded);
          ++refused;
        }
        return HandlerResult::ok();
      });
  Fixture f({echo}, [](Config& c) { c.max_cascade_depth = 3; });
  Transaction tx = f.emitter->start();
  ASSERT_TRUE(tx.emit("ping", 0).ok());
  ASSERT_TRUE(tx.commit().ok());
  f.drain();
  // Level 0 (the request) and levels 1..3 cascaded; the level-4 emit was refused.
  EXPECT_EQ(f.sink->payloads(), (std::vector<nlohmann::json>{0, 1, 2, 3}));
  EXPECT_EQ(refused.load(), 1);
  EXPECT_EQ(f.emitter->stats().cascade_dropped, 1u);
  const auto drops = rec.records();
  ASSERT_EQ(drops.size(), 1u);
  EXPECT_EQ(drops[0].metadata["reason"], "cascade_limit");
  EXPECT_EQ(drops[0].metadata["event_name"], "ping");
}

TEST(HandlerTest, TheRequestBufferOnAnotherThreadIsUntouched) {
  Gate handler_done;
  auto h = std::make_shared<FnHandler>("h", std::vector<EventName>{"first"}, [&](const Event&) {
    EXPECT_TRUE(emit("from_handler").ok());
    handler_done.open();
    return HandlerResult::ok();
  });
  Config config;
  config.handler_concurrency = 2;
  auto sink = std::make_shared<RecordingAdapter>("sink");
  config.add_adapter(sink).add_handler(h);
  Emitter emitter(std::move(config));  // the default emitter: ambient API
  ASSERT_TRUE(start().ok());
  ASSERT_TRUE(emit("first").ok());
  ASSERT_TRUE(flush().ok());  // delivered, buffer stays open
  ASSERT_TRUE(emit("still_mine").ok());
  ASSERT_TRUE(handler_done.wait());
  ASSERT_TRUE(emitter.drain(30s).ok());
  EXPECT_EQ(current().size(), 1u);
  auto names = sink->names();
  EXPECT_EQ(std::multiset<std::string>(names.begin(), names.end()),
            (std::multiset<std::string>{"first", "from_handler"}));
  ASSERT_TRUE(commit().ok());
  ASSERT_TRUE(emitter.drain(30s).ok());
  EXPECT_EQ(sink->names().back(), "still_mine");
}

TEST(HandlerTest, ASlowHandlerDoesNotBlockOtherAdapters) {
  Gate release;
  auto slow = std::make_shared<FnHandler>("slow", std::vector<EventName>{"e"}, [&](const Event&) {
    release.wait();
    return HandlerResult::ok();
  });
  Fixture f({slow}, [](Config& c) { c.handler_concurrency = 1; });
  for (int i = 0; i < 200; ++i)
    f.commit({"e", "e", "e", "e", "e"});
  ASSERT_TRUE(f.sink->wait_for_received(1000));
  EXPECT_LE(slow->calls(), 1);
  release.open();
  f.drain();
  EXPECT_EQ(slow->calls(), 1000);
}

TEST(HandlerTest, UnorderedInvocationsRunInParallel) {
  std::mutex m;
  std::condition_variable cv;
  int inside = 0;
  int max_inside = 0;
  auto h = std::make_shared<FnHandler>("parallel", std::vector<EventName>{"e"}, [&](const Event&) {
    std::unique_lock lock(m);
    max_inside = std::max(max_inside, ++inside);
    cv.notify_all();
    // Wait (bounded) until a second invocation is running at the same time.
    cv.wait_for(lock, 5s, [&] { return max_inside >= 2; });
    --inside;
    return HandlerResult::ok();
  });
  Fixture f({h});
  f.commit({"e", "e"});
  f.drain();
  EXPECT_EQ(max_inside, 2);
}

TEST(HandlerTest, OrderedHandlerRunsOneAtATimeInDeliveryOrder) {
  std::atomic<int> inside{0};
  std::atomic<bool> overlapped{false};
  std::vector<int> order;  // written by one invocation at a time (checked by `overlapped`)
  auto h = std::make_shared<FnHandler>(
      "ordered", std::vector<EventName>{"e"},
      [&](const Event& e) {
        if (inside.fetch_add(1) != 0) overlapped = true;
        order.push_back(e.payload.get<int>());
        std::this_thread::yield();
        inside.fetch_sub(1);
        return HandlerResult::ok();
      },
      /*ordered=*/true);
  Fixture f({h}, [](Config& c) { c.handler_concurrency = 4; });
  int n = 0;
  for (int t = 0; t < 100; ++t) {
    Transaction tx = f.emitter->start();
    for (int i = 0; i < 10; ++i)
      ASSERT_TRUE(tx.emit("e", n++).ok());
    ASSERT_TRUE(tx.commit().ok());
  }
  f.drain();
  EXPECT_FALSE(overlapped.load());
  ASSERT_EQ(order.size(), 1000u);
  for (int i = 0; i < 1000; ++i)
    EXPECT_EQ(order[static_cast<std::size_t>(i)], i);
}

TEST(HandlerTest, DrainWaitsForRunningInvocationsAndTheirCascades) {
  auto h = std::make_shared<FnHandler>("slowly", std::vector<EventName>{"start"}, [](const Event&) {
    std::this_thread::sleep_for(30ms);  // the drain below must wait for this
    EXPECT_TRUE(emit("finished").ok());
    return HandlerResult::ok();
  });
  Fixture f({h});
  f.commit({"start"});
  f.drain();
  EXPECT_EQ(f.received(), (std::multiset<std::string>{"start", "finished"}));
}

TEST(HandlerTest, ShutdownWaitsForInvocationsAndDeliversTheirCascades) {
  auto h = std::make_shared<FnHandler>("late", std::vector<EventName>{"start"}, [](const Event&) {
    std::this_thread::sleep_for(30ms);
    EXPECT_TRUE(emit("cascaded").ok());
    return HandlerResult::ok();
  });
  Fixture f({h});
  f.commit({"start", "start"});
  ASSERT_TRUE(f.emitter->shutdown(30s).ok());
  EXPECT_EQ(f.received(), (std::multiset<std::string>{"start", "start", "cascaded", "cascaded"}));
  EXPECT_EQ(h->calls(), 2);
}

TEST(HandlerTest, DispatcherIsListedAsAnAdapterWithItsOwnCounters) {
  auto h = std::make_shared<FnHandler>("h", std::vector<EventName>{"wanted"},
                                       [](const Event&) { return HandlerResult::ok(); });
  Fixture f({h});
  f.commit({"wanted", "other", "wanted"});
  f.drain();
  const auto stats = f.emitter->stats();
  ASSERT_EQ(stats.adapters.size(), 2u);
  EXPECT_EQ(stats.adapters[1].name, "emissions.handlers");
  EXPECT_EQ(stats.adapters[1].delivered, 2u);
  EXPECT_EQ(stats.adapters[1].filtered, 1u);
}

void expect_config_error(std::function<void(Config&)> setup, const std::string& fragment) {
  Config config;
  config.make_default = false;
  setup(config);
  try {
    Emitter emitter(std::move(config));
    ADD_FAILURE() << "expected ConfigError mentioning: " << fragment;
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(HandlerTest, AHandlerThatCommitsItsOwnBufferIsASuccess) {
  // Code shared with request paths commits the ambient buffer itself. The dispatcher then
  // committed the (already ended) buffer again, got not_started, and reported the
  // invocation as an error although its events were committed and delivered.
  TelemetryRecorder rec("handler-commits",
                        {{"emissions", "handler", "success"}, {"emissions", "handler", "error"}});
  auto h = std::make_shared<FnHandler>("commits", std::vector<EventName>{"a"}, [](const Event&) {
    EXPECT_TRUE(emit("b").ok());
    EXPECT_TRUE(commit().ok());
    return HandlerResult::ok();
  });
  Fixture f({h});
  f.commit({"a"});
  f.drain();
  EXPECT_EQ(f.received(), (std::multiset<std::string>{"a", "b"}));
  EXPECT_EQ(rec.records({"emissions", "handler", "success"}).size(), 1u);
  const auto errors = rec.records({"emissions", "handler", "error"});
  EXPECT_TRUE(errors.empty()) << errors.at(0).metadata;
}

TEST(HandlerConfigTest, MistakesFailLoudlyAtConstruction) {
  auto noop = [](const Event&) { return HandlerResult::ok(); };
  expect_config_error([](Config& c) { c.add_handler(nullptr); },
                      "handlers[0] must not be a null handler");
  expect_config_error(
      [&](Config& c) {
        c.add_handler(std::make_shared<FnHandler>("", std::vector<EventName>{"e"}, noop));
      },
      "handlers[0].name() must not be empty");
  expect_config_error(
      [&](Config& c) {
        c.add_handler(std::make_shared<FnHandler>("x", std::vector<EventName>{"e"}, noop));
        c.add_handler(std::make_shared<FnHandler>("x", std::vector<EventName>{"f"}, noop));
      },
      "handlers[1].name() must be unique among handlers (got 'x')");
  expect_config_error(
      [&](Config& c) {
        c.add_handler(std::make_shared<FnHandler>("x", std::vector<EventName>{""}, noop));
      },
      "handlers[0] ('x').events() must not contain an empty name");
  expect_config_error(
      [&](Config& c) {
        c.handler_concurrency = 0;
        c.add_handler(std::make_shared<FnHandler>("x", std::vector<EventName>{"e"}, noop));
      },
      "handler_concurrency must be in [1, 1024] (got 0)");
  expect_config_error([](Config& c) { c.max_cascade_depth = -1; },
                      "max_cascade_depth must be in [0, 64] (got -1)");
}

}  // namespace
}  // namespace emissions
