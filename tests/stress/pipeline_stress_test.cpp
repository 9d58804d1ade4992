// Concurrency: many committing threads, several adapters, exact counts and order.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "emissions/ambient.hpp"
#include "emissions/delivery.hpp"
#include "emissions/emitter.hpp"

namespace emissions {
namespace {

using namespace std::chrono_literals;

constexpr int kThreads = 8;
constexpr int kEventsPerThread = 100'000;
constexpr int kEventsPerCommit = 10;

// Checks, per producing thread, that events arrive exactly once and in commit order.
class OrderCheckingAdapter : public Adapter {
 public:
  explicit OrderCheckingAdapter(std::string name, bool slow = false)
      : name_(std::move(name)), slow_(slow), next_(kThreads, 0) {}
  std::string_view name() const override { return name_; }
  Status handle_events(std::span<const Event> batch) override {
    if (slow_) std::this_thread::sleep_for(std::chrono::microseconds(50));
    if (batch.size() > max_batch_) max_batch_ = batch.size();
    for (const Event& e : batch) {
      const auto thread = e.payload[0].get<std::size_t>();
      const auto seq = e.payload[1].get<int>();
      if (seq != next_[thread]) ++out_of_order_;
      next_[thread] = seq + 1;
      ++received_;
    }
    return {};
  }
  // Read after drain (the consumer thread is quiet then; drain synchronizes with it).
  std::uint64_t received() const { return received_; }
  std::uint64_t out_of_order() const { return out_of_order_; }
  std::size_t max_batch() const { return max_batch_; }
  const std::vector<int>& next() const { return next_; }

 private:
  std::string name_;
  bool slow_;
  std::vector<int> next_;
  std::uint64_t received_ = 0;
  std::uint64_t out_of_order_ = 0;
  std::size_t max_batch_ = 0;
};

void produce(int thread) {
  for (int i = 0; i < kEventsPerThread; i += kEventsPerCommit) {
    ASSERT_TRUE(start().ok());
    for (int j = 0; j < kEventsPerCommit; ++j) {
      ASSERT_TRUE(emit("tick", nlohmann::json::array({thread, i + j})).ok());
    }
    ASSERT_TRUE(commit().ok());
  }
}

TEST(PipelineStressTest, EightThreadsThreeAdaptersExactCountsAndOrder) {
  std::vector<std::shared_ptr<OrderCheckingAdapter>> adapters;
  Config config;
  config.pipeline.max_demand = 7;  // not a divisor of the commit size, on purpose
  for (const char* name : {"a", "b", "c"}) {
    adapters.push_back(std::make_shared<OrderCheckingAdapter>(name));
    config.add_adapter(adapters.back());
  }
  config.adapters[2].options.buffer_size = 64;  // a small queue: producers block often
  Emitter emitter(std::move(config));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back(produce, t);
  for (auto& t : threads)
    t.join();
  ASSERT_TRUE(emitter.drain(300s).ok());

  constexpr std::uint64_t kTotal = std::uint64_t{kThreads} * kEventsPerThread;
  const EmitterStats stats = emitter.stats();
  EXPECT_EQ(stats.committed, kTotal);
  for (std::size_t i = 0; i < adapters.size(); ++i) {
    SCOPED_TRACE(adapters[i]->name());
    EXPECT_EQ(adapters[i]->received(), kTotal);
    EXPECT_EQ(adapters[i]->out_of_order(), 0u);
    EXPECT_LE(adapters[i]->max_batch(), 7u);
    for (int t = 0; t < kThreads; ++t)
      EXPECT_EQ(adapters[i]->next()[static_cast<std::size_t>(t)], kEventsPerThread);
    EXPECT_EQ(stats.adapters[i].delivered, kTotal);
    EXPECT_EQ(stats.adapters[i].dropped, 0u);
  }
}

// Acks from two threads of its own, in the order handed over, keeping every settled handle
// (they outlive the Emitter: their states' memory goes back to a pool that must outlive it).
class TwoThreadAckAdapter final : public AsyncAdapter {
 public:
  TwoThreadAckAdapter() {
    for (int i = 0; i < 2; ++i)
      ackers_.emplace_back([this] { loop(); });
  }
  ~TwoThreadAckAdapter() override {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    ready_.notify_all();
    for (auto& t : ackers_)
      t.join();
  }
  std::string_view name() const override { return "two-thread-ack"; }
  void deliver(Delivery delivery) override {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(delivery));
    }
    ready_.notify_one();
  }
  std::uint64_t acked() const { return acked_.load(); }
  // Handles kept after their ack; released by the caller (after the Emitter is gone).
  std::vector<Delivery> take_kept() {
    std::lock_guard lock(mutex_);
    return std::move(kept_);
  }

 private:
  void loop() {
    for (;;) {
      Delivery delivery;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [&] { return !queue_.empty() || stop_; });
        if (queue_.empty()) return;
        delivery = std::move(queue_.front());
        queue_.pop_front();
      }
      acked_.fetch_add(delivery.events().size());
      delivery.ack();
      if (acked_.load() % 7 == 0) {
        std::lock_guard lock(mutex_);
        kept_.push_back(std::move(delivery));
      }
    }
  }
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Delivery> queue_;
  std::vector<Delivery> kept_;
  bool stop_ = false;
  std::atomic<std::uint64_t> acked_{0};
  std::vector<std::thread> ackers_;
};

TEST(PipelineStressTest, OneEventCommitsToAnAdapterAckingFromTwoThreadsAreCountedExactly) {
  // One-event commits fill the queue with as many batches (more than the batch pool kept
  // before it was sized to the queues) and every delivery's state is freed on an acking
  // thread (its memory recycled through the consumer's pool). Exact counts, and handles
  // kept past the Emitter settle nothing twice.
  constexpr int kProducers = 4;
  constexpr int kCommits = 20'000;
  auto adapter = std::make_shared<TwoThreadAckAdapter>();
  std::vector<Delivery> kept;
  {
    Config config;
    config.make_default = true;
    config.add_adapter(adapter, {.buffer_size = 4000, .max_in_flight = 8});
    Emitter emitter(std::move(config));
    std::vector<std::thread> threads;
    for (int t = 0; t < kProducers; ++t) {
      threads.emplace_back([] {
        for (int i = 0; i < kCommits; ++i) {
          ASSERT_TRUE(start().ok());
          ASSERT_TRUE(emit("tick", i).ok());
          ASSERT_TRUE(commit().ok());
        }
      });
    }
    for (auto& t : threads)
      t.join();
    ASSERT_TRUE(emitter.drain(300s).ok());
    const EmitterStats stats = emitter.stats();
    const std::uint64_t total = std::uint64_t{kProducers} * kCommits;
    EXPECT_EQ(stats.committed, total);
    EXPECT_EQ(stats.adapters[0].delivered, total);
    EXPECT_EQ(stats.adapters[0].failed, 0u);
    EXPECT_EQ(stats.adapters[0].dropped, 0u);
    EXPECT_EQ(adapter->acked(), total);
    kept = adapter->take_kept();
    EXPECT_FALSE(kept.empty());
    ASSERT_TRUE(emitter.shutdown(30s).ok());
  }
  for (Delivery& d : kept) {
    EXPECT_TRUE(d.settled());
    d.ack();  // a no-op: settled, and the Emitter is gone
  }
  kept.clear();  // the last states give their memory back to a pool whose owner is gone
}

TEST(PipelineStressTest, DropPoliciesUnderContentionAccountForEveryEvent) {
  // A slow adapter with a tiny queue under drop_oldest and one under drop_newest:
  // delivered + dropped must equal committed exactly, and delivered events stay in order.
  auto oldest = std::make_shared<OrderCheckingAdapter>("oldest", /*slow=*/true);
  auto newest = std::make_shared<OrderCheckingAdapter>("newest", /*slow=*/true);
  Config config;
  config.make_default = true;
  config.add_adapter(oldest, {.buffer_size = 30, .overflow = Overflow::drop_oldest});
  config.add_adapter(newest, {.buffer_size = 30, .overflow = Overflow::drop_newest});
  Emitter emitter(std::move(config));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < 20'000; i += kEventsPerCommit) {
        ASSERT_TRUE(start().ok());
        for (int j = 0; j < kEventsPerCommit; ++j) {
          ASSERT_TRUE(emit("tick", nlohmann::json::array({t, i + j})).ok());
        }
        ASSERT_TRUE(commit().ok());
      }
    });
  }
  for (auto& t : threads)
    t.join();
  ASSERT_TRUE(emitter.drain(300s).ok());
  const EmitterStats stats = emitter.stats();
  const std::uint64_t total = std::uint64_t{kThreads} * 20'000;
  EXPECT_EQ(stats.committed, total);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(stats.adapters[i].delivered + stats.adapters[i].dropped, total);
    EXPECT_EQ(stats.adapters[i].queued, 0u);
  }
  EXPECT_GT(stats.adapters[0].dropped, 0u);  // the queues were too small on purpose
  EXPECT_GT(stats.adapters[1].dropped, 0u);
  EXPECT_EQ(stats.adapters[0].delivered, oldest->received());
  EXPECT_EQ(stats.adapters[1].delivered, newest->received());
}

}  // namespace
}  // namespace emissions
