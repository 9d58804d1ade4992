// Concurrency: many committing threads, many concurrent handler invocations, cascades;
// exact counts everywhere.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "emissions/ambient.hpp"
#include "emissions/emitter.hpp"
#include "emissions/handler.hpp"

namespace emissions {
namespace {

using namespace std::chrono_literals;

constexpr int kThreads = 8;
constexpr int kCommitsPerThread = 500;
constexpr int kEventsPerCommit = 5;
constexpr int kRequests = kThreads * kCommitsPerThread * kEventsPerCommit;

class Counter : public Adapter {
 public:
  std::string_view name() const override { return "counter"; }
  Status handle_events(std::span<const Event> batch) override {
    for (const Event& e : batch) {
      if (e.name == EventName("request")) ++requests;
      if (e.name == EventName("indexed")) ++indexed;
      if (e.name == EventName("notified")) ++notified;
    }
    return {};
  }
  std::atomic<int> requests{0};
  std::atomic<int> indexed{0};
  std::atomic<int> notified{0};
};

// Level 1: every request is indexed (unordered, runs in parallel).
class Indexer : public Handler {
 public:
  std::string_view name() const override { return "indexer"; }
  std::vector<EventName> events() const override { return {"request"}; }
  HandlerResult handle_event(const Event& e) override {
    ++calls;
    if (!emit("indexed", e.payload).ok()) return HandlerResult::error("emit failed");
    return HandlerResult::ok();
  }
  std::atomic<int> calls{0};
};

// Level 2: every indexed event notifies, one at a time, in delivery order.
class Notifier : public Handler {
 public:
  std::string_view name() const override { return "notifier"; }
  std::vector<EventName> events() const override { return {"indexed"}; }
  bool ordered() const override { return true; }
  HandlerResult handle_event(const Event& e) override {
    if (inside.fetch_add(1) != 0) overlapped = true;
    ++calls;
    Status s = emit("notified", e.payload);
    inside.fetch_sub(1);
    return s.ok() ? HandlerResult::ok() : HandlerResult::error(s.to_string());
  }
  std::atomic<int> calls{0};
  std::atomic<int> inside{0};
  std::atomic<bool> overlapped{false};
};

TEST(HandlerStressTest, ManyConcurrentInvocationsAndCascadesAreCountedExactly) {
  auto counter = std::make_shared<Counter>();
  auto indexer = std::make_shared<Indexer>();
  auto notifier = std::make_shared<Notifier>();
  Config config;
  config.handler_concurrency = 6;
  config.add_adapter(counter).add_handler(indexer).add_handler(notifier);
  Emitter emitter(std::move(config));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t] {
      for (int c = 0; c < kCommitsPerThread; ++c) {
        ASSERT_TRUE(start().ok());
        for (int i = 0; i < kEventsPerCommit; ++i) {
          ASSERT_TRUE(emit("request", nlohmann::json::array({t, c, i})).ok());
        }
        ASSERT_TRUE(commit().ok());
      }
    });
  }
  for (auto& t : threads)
    t.join();
  ASSERT_TRUE(emitter.drain(300s).ok());
  EXPECT_EQ(counter->requests.load(), kRequests);
  EXPECT_EQ(indexer->calls.load(), kRequests);
  EXPECT_EQ(counter->indexed.load(), kRequests);
  EXPECT_EQ(notifier->calls.load(), kRequests);
  EXPECT_EQ(counter->notified.load(), kRequests);
  EXPECT_FALSE(notifier->overlapped.load());
  const EmitterStats stats = emitter.stats();
  EXPECT_EQ(stats.committed, 3u * kRequests);
  EXPECT_EQ(stats.discarded, 0u);
  EXPECT_EQ(stats.cascade_dropped, 0u);
}

}  // namespace
}  // namespace emissions
