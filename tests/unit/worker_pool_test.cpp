// Worker pools (AdapterOptions::concurrency and partition_by): N consumers share one
// adapter's stream, each event to exactly one of them; per-key order with partition_by.
#include <gtest/gtest.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "emissions/emitter.hpp"

namespace emissions {
namespace {

using namespace std::chrono_literals;

// Records which thread handled each event; can hold calls until N run at once.
class PoolAdapter : public Adapter {
 public:
  explicit PoolAdapter(int rendezvous = 0) : rendezvous_(rendezvous) {}
  std::string_view name() const override { return "pool"; }
  Status init() override {
    inits_.fetch_add(1);
    return {};
  }
  Status handle_events(std::span<const Event> batch) override {
    std::unique_lock lock(mutex_);
    ++inside_;
    max_inside_ = std::max(max_inside_, inside_);
    cv_.notify_all();
    if (rendezvous_ > 0) cv_.wait_for(lock, 10s, [&] { return max_inside_ >= rendezvous_; });
    for (const Event& e : batch) {
      seen_.push_back({std::this_thread::get_id(), e.payload});
    }
    --inside_;
    return {};
  }
  struct Seen {
    std::thread::id thread;
    nlohmann::json payload;
  };
  std::vector<Seen> seen() const {
    std::lock_guard lock(mutex_);
    return seen_;
  }
  int max_inside() const {
    std::lock_guard lock(mutex_);
    return max_inside_;
  }
  int inits() const { return inits_.load(); }

 private:
  const int rendezvous_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  int inside_ = 0;
  int max_inside_ = 0;
  std::vector<Seen> seen_;
  std::atomic<int> inits_{0};
};

Emitter make(std::shared_ptr<Adapter> adapter, AdapterOptions options) {
  Config config;
  config.make_default = false;
  config.add_adapter(std::move(adapter), std::move(options));
  return Emitter(std::move(config));
}

void commit_range(Emitter& emitter, int first, int count, int keys = 0) {
  Transaction tx = emitter.start();
  for (int i = first; i < first + count; ++i) {
    nlohmann::json payload =
        keys > 0 ? nlohmann::json{{"key", i % keys}, {"seq", i}} : nlohmann::json(i);
    ASSERT_TRUE(tx.emit("e", std::move(payload)).ok());
  }
  ASSERT_TRUE(tx.commit().ok());
}

TEST(WorkerPoolTest, EachEventGoesToExactlyOneOfTheConsumers) {
  auto adapter = std::make_shared<PoolAdapter>();
  auto emitter = make(adapter, {.max_demand = 5, .concurrency = 4});
  for (int t = 0; t < 1000; ++t)
    commit_range(emitter, t * 10, 10);
  ASSERT_TRUE(emitter.drain(30s).ok());
  const auto seen = adapter->seen();
  ASSERT_EQ(seen.size(), 10'000u);
  std::set<int> unique;
  for (const auto& s : seen)
    unique.insert(s.payload.get<int>());
  EXPECT_EQ(unique.size(), 10'000u);
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 10'000u);
}

TEST(WorkerPoolTest, HandleEventsRunsOnNThreadsAtOnce) {
  auto adapter = std::make_shared<PoolAdapter>(/*rendezvous=*/4);
  auto emitter = make(adapter, {.concurrency = 4});
  for (int t = 0; t < 4; ++t)
    commit_range(emitter, t, 1);
  ASSERT_TRUE(emitter.drain(30s).ok());
  EXPECT_EQ(adapter->max_inside(), 4);
  std::set<std::thread::id> threads;
  for (const auto& s : adapter->seen())
    threads.insert(s.thread);
  EXPECT_EQ(threads.size(), 4u);
}

TEST(WorkerPoolTest, PartitionByKeepsEachKeyOnOneConsumerInOrder) {
  auto adapter = std::make_shared<PoolAdapter>();
  AdapterOptions options{.max_demand = 3, .concurrency = 4, .partition_by = [](const Event& e) {
                           return e.payload["key"].get<std::uint64_t>();
                         }};
  auto emitter = make(adapter, std::move(options));
  constexpr int kKeys = 16;
  for (int t = 0; t < 500; ++t)
    commit_range(emitter, t * 10, 10, kKeys);
  ASSERT_TRUE(emitter.drain(30s).ok());
  const auto seen = adapter->seen();
  ASSERT_EQ(seen.size(), 5000u);
  std::map<int, std::thread::id> owner;
  std::map<int, int> last_seq;
  std::set<std::thread::id> threads;
  for (const auto& s : seen) {
    const int key = s.payload["key"];
    const int seq = s.payload["seq"];
    threads.insert(s.thread);
    auto [it, fresh] = owner.emplace(key, s.thread);
    EXPECT_EQ(it->second, s.thread) << "key " << key << " moved to another consumer";
    if (!fresh) {
      EXPECT_GT(seq, last_seq[key]) << "key " << key << " out of order";
    }
    last_seq[key] = seq;
  }
  EXPECT_EQ(owner.size(), static_cast<std::size_t>(kKeys));
  EXPECT_EQ(threads.size(), 4u);  // 16 keys spread over the 4 consumers
}

TEST(WorkerPoolTest, InitIsCalledByEachConsumer) {
  auto adapter = std::make_shared<PoolAdapter>(/*rendezvous=*/3);
  auto emitter = make(adapter, {.concurrency = 3});
  for (int t = 0; t < 3; ++t)
    commit_range(emitter, t, 1);
  ASSERT_TRUE(emitter.drain(30s).ok());
  EXPECT_EQ(adapter->inits(), 3);
}

TEST(WorkerPoolTest, OverflowCountsStayExactWithSeveralConsumers) {
  // A tiny buffer and slow consumers: whatever is not delivered is counted as dropped.
  class Slow : public Adapter {
   public:
    std::string_view name() const override { return "slow"; }
    Status handle_events(std::span<const Event> batch) override {
      std::this_thread::sleep_for(200us);
      delivered += batch.size();
      return {};
    }
    std::atomic<std::uint64_t> delivered{0};
  };
  for (bool partitioned : {false, true}) {
    SCOPED_TRACE(partitioned ? "partitioned" : "shared queue");
    auto slow = std::make_shared<Slow>();
    AdapterOptions options{.buffer_size = 40, .overflow = Overflow::drop_oldest, .concurrency = 3};
    if (partitioned) {
      options.partition_by = [](const Event& e) { return e.payload.get<std::uint64_t>(); };
    }
    auto emitter = make(slow, std::move(options));
    for (int t = 0; t < 2000; ++t)
      commit_range(emitter, t * 10, 10);
    ASSERT_TRUE(emitter.drain(60s).ok());
    const auto stats = emitter.stats().adapters[0];
    EXPECT_EQ(stats.delivered + stats.dropped, 20'000u);
    EXPECT_EQ(stats.delivered, slow->delivered.load());
    EXPECT_GT(stats.dropped, 0u);
  }
}

TEST(WorkerPoolTest, ShutdownJoinsEveryConsumerAndTerminatesOnce) {
  class Counting : public Adapter {
   public:
    std::string_view name() const override { return "counting"; }
    Status handle_events(std::span<const Event> batch) override {
      n += batch.size();
      return {};
    }
    emissions::Status terminate(emissions::Deadline) override {
      ++terminated;
      return {};
    }
    std::atomic<std::uint64_t> n{0};
    std::atomic<int> terminated{0};
  };
  auto adapter = std::make_shared<Counting>();
  {
    auto emitter = make(adapter, {.concurrency = 5});
    for (int t = 0; t < 100; ++t)
      commit_range(emitter, t * 7, 7);
  }
  EXPECT_EQ(adapter->n.load(), 700u);
  EXPECT_EQ(adapter->terminated.load(), 1);
}

TEST(WorkerPoolTest, ZeroConcurrencyIsAConfigError) {
  Config config;
  config.make_default = false;
  config.add_adapter(std::make_shared<PoolAdapter>(), {.concurrency = 0});
  try {
    Emitter emitter(std::move(config));
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(
        std::string(e.what()).find("adapters[0] ('pool').concurrency must be in [1, 1024] (got 0)"),
        std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace emissions
