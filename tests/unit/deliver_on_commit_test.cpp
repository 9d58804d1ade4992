// AdapterOptions::deliver_on_commit: a committing thread delivers its own batch when the
// adapter's consumer is idle (or lets it have its role), and the consumer thread takes over
// whatever a commit leaves (a full window, a retry waiting, shutdown). Every event is still
// settled once, in order per committing thread, retries still go first, and a commit never
// waits for the adapter's window.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "emissions/emissions.hpp"
#include "temp_dir.hpp"

namespace {

using namespace std::chrono_literals;
using emissions::AdapterOptions;
using emissions::AsyncAdapter;
using emissions::Config;
using emissions::ConfigError;
using emissions::Delivery;
using emissions::Emitter;
using emissions::Errc;
using emissions::Status;
using emissions::Transaction;

// One delivered event: who handed it to deliver(), and its payload {"thread": t, "seq": s}.
struct Seen {
  std::thread::id on;
  int thread = 0;
  int seq = 0;
  std::uint32_t attempt = 0;
};

// Acks each event inline (or, with `acks_later`, from a thread of its own), failing the
// first attempt of the events whose payload has "fail": true with `unavailable`; records
// every event handed to deliver(), in the order handed.
class Recording final : public AsyncAdapter {
 public:
  explicit Recording(bool acks_later = false) : acks_later_(acks_later) {
    if (acks_later_) worker_ = std::thread([this] { run(); });
  }
  ~Recording() override {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    changed_.notify_all();
    if (worker_.joinable()) worker_.join();
  }
  Recording(const Recording&) = delete;
  Recording& operator=(const Recording&) = delete;

  std::string_view name() const override { return "recording"; }
  void deliver(Delivery delivery) override {
    if (inside_settle_) reentered_.fetch_add(1);
    {
      std::lock_guard lock(mutex_);
      for (const emissions::Event& e : delivery.events()) {
        seen_.push_back({std::this_thread::get_id(), e.payload.value("thread", 0),
                         e.payload.value("seq", 0), delivery.attempt()});
      }
      if (acks_later_) {
        held_.push_back(std::move(delivery));
        changed_.notify_all();
        return;
      }
    }
    settle(delivery);
  }
  std::vector<Seen> seen() {
    std::lock_guard lock(mutex_);
    return seen_;
  }
  // deliver() calls made inside this adapter's own settlement calls, on its thread.
  int reentered() const { return reentered_.load(); }

 private:
  static void settle(Delivery& delivery) {
    for (std::size_t i = 0; i < delivery.events().size(); ++i) {
      if (delivery.attempt() == 1 && delivery.events()[i].payload.value("fail", false)) {
        delivery.fail(i, Status(Errc::unavailable, "try again"));
      } else {
        delivery.ack(i);
      }
    }
  }
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      changed_.wait(lock, [&] { return stop_ || !held_.empty(); });
      if (held_.empty()) return;
      Delivery d = std::move(held_.front());
      held_.pop_front();
      lock.unlock();
      inside_settle_ = true;
      settle(d);
      inside_settle_ = false;
      lock.lock();
    }
  }

  static thread_local bool inside_settle_;
  const bool acks_later_;
  std::atomic<int> reentered_{0};
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Seen> seen_;
  std::deque<Delivery> held_;
  bool stop_ = false;
  std::thread worker_;
};

thread_local bool Recording::inside_settle_ = false;

Config config_with(std::shared_ptr<emissions::Adapter> adapter, AdapterOptions options) {
  Config config;
  config.make_default = false;
  options.deliver_on_commit = true;
  config.add_adapter(std::move(adapter), std::move(options));
  return config;
}

Status commit(Emitter& emitter, int thread, int first_seq, int events, bool fail = false) {
  Transaction tx = emitter.start();
  for (int i = 0; i < events; ++i) {
    nlohmann::json payload = {{"thread", thread}, {"seq", first_seq + i}};
    if (fail) payload["fail"] = true;
    if (Status s = tx.emit("e", std::move(payload)); !s.ok()) return s;
  }
  return tx.commit();
}

void expect_config_error(AdapterOptions options, const std::string& fragment,
                         std::shared_ptr<emissions::Adapter> adapter) {
  try {
    Emitter emitter(config_with(std::move(adapter), std::move(options)));
    ADD_FAILURE() << "expected ConfigError mentioning: " << fragment;
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

class Synchronous final : public emissions::Adapter {
 public:
  Status handle_events(std::span<const emissions::Event>) override { return {}; }
  std::string_view name() const override { return "sync"; }
};

TEST(DeliverOnCommitTest, ItIsAConfigErrorWhereOneThreadCannotStandForTheConsumer) {
  expect_config_error({}, "deliver_on_commit must be false for a synchronous adapter",
                      std::make_shared<Synchronous>());
  expect_config_error({.concurrency = 2}, "deliver_on_commit must be false with concurrency 2",
                      std::make_shared<Recording>());
  expect_config_error({.overflow = emissions::Overflow::drop_oldest},
                      "deliver_on_commit must be false with overflow drop_oldest",
                      std::make_shared<Recording>());
}

TEST(DeliverOnCommitTest, ItIsAConfigErrorWithASpool) {
  emissions::test_support::TempDir dir;
  Config config = config_with(std::make_shared<Recording>(), {});
  config.spool = emissions::SpoolOptions{.dir = dir.path()};
  try {
    Emitter emitter(std::move(config));
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("deliver_on_commit must be false with a spool"),
              std::string::npos)
        << e.what();
  }
}

TEST(DeliverOnCommitTest, AnIdleConsumersBatchIsDeliveredOnTheCommittingThread) {
  auto adapter = std::make_shared<Recording>();
  Emitter emitter(config_with(adapter, {}));
  // The consumer thread may not be idle yet when the first commits come: it then delivers
  // them itself. Once it idles, the commit delivers its own batch.
  bool inline_seen = false;
  for (int i = 0; i < 200 && !inline_seen; ++i) {
    ASSERT_TRUE(commit(emitter, 0, i, 1).ok());
    ASSERT_TRUE(emitter.drain(10s).ok());
    inline_seen = adapter->seen().back().on == std::this_thread::get_id();
    if (!inline_seen) std::this_thread::sleep_for(1ms);
  }
  EXPECT_TRUE(inline_seen) << "no batch was delivered on the committing thread";
  const auto stats = emitter.stats().adapters.at(0);
  EXPECT_EQ(stats.delivered, stats.received);
  EXPECT_EQ(stats.delivered, adapter->seen().size());
}

// Four threads commit at once, the adapter settling inline or from its own thread: each
// event is handed over once, each thread's events in the order it committed them, and the
// counters add up.
void many_committers(bool acks_later) {
  auto adapter = std::make_shared<Recording>(acks_later);
  Emitter emitter(config_with(adapter, {.max_in_flight = 8}));
  constexpr int kThreads = 4;
  constexpr int kCommits = 300;
  constexpr int kEvents = 7;
  std::vector<std::thread> threads;
  std::atomic<int> refused{0};
  std::mutex ids_mutex;
  std::vector<std::thread::id> committers;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      {
        std::lock_guard lock(ids_mutex);
        committers.push_back(std::this_thread::get_id());
      }
      for (int c = 0; c < kCommits; ++c) {
        if (!commit(emitter, t, c * kEvents, kEvents).ok()) refused.fetch_add(1);
      }
    });
  }
  for (std::thread& t : threads)
    t.join();
  ASSERT_EQ(refused.load(), 0);
  ASSERT_TRUE(emitter.drain(30s).ok());
  const std::vector<Seen> seen = adapter->seen();
  ASSERT_EQ(seen.size(), static_cast<std::size_t>(kThreads * kCommits * kEvents));
  std::map<int, int> next;  // per committing thread, the next seq expected
  std::size_t on_committers = 0;
  for (const Seen& s : seen) {
    EXPECT_EQ(s.seq, next[s.thread]) << "thread " << s.thread;
    next[s.thread] = s.seq + 1;
    on_committers += std::count(committers.begin(), committers.end(), s.on) != 0 ? 1U : 0U;
  }
  const auto stats = emitter.stats().adapters.at(0);
  EXPECT_EQ(stats.received, seen.size());
  EXPECT_EQ(stats.delivered, seen.size());
  EXPECT_EQ(stats.failed + stats.dropped + stats.filtered, 0U);
  // Under this load the commits take the consumer's role (some of the time at least).
  EXPECT_GT(on_committers, 0U) << "every batch went through the consumer thread";
}

TEST(DeliverOnCommitTest, ManyCommittingThreadsHandEachEventOverOnceInTheirOrder) {
  many_committers(false);
}

TEST(DeliverOnCommitTest, ManyCommittingThreadsWithAcksFromAnotherThread) {
  many_committers(true);
}

TEST(DeliverOnCommitTest, ARetryGoesBeforeWhatWasCommittedAfterIt) {
  auto adapter = std::make_shared<Recording>();
  Config config = config_with(adapter, {});
  config.pipeline.retry = {.max_attempts = 3, .initial_backoff = 20ms, .max_backoff = 20ms};
  Emitter emitter(std::move(config));
  // Settled inline: the failure is known before the next commit, which must not overtake it.
  for (int round = 0; round < 20; ++round) {
    ASSERT_TRUE(commit(emitter, 0, 2 * round, 1, /*fail=*/true).ok());
    ASSERT_TRUE(commit(emitter, 0, 2 * round + 1, 1).ok());
  }
  ASSERT_TRUE(emitter.drain(30s).ok());
  const std::vector<Seen> seen = adapter->seen();
  // Each failed event, then its retry, then the event committed after it.
  std::vector<int> order;
  for (const Seen& s : seen)
    order.push_back(s.seq);
  std::vector<int> expected;
  for (int round = 0; round < 20; ++round) {
    expected.insert(expected.end(), {2 * round, 2 * round, 2 * round + 1});
  }
  EXPECT_EQ(order, expected);
  const auto stats = emitter.stats().adapters.at(0);
  EXPECT_EQ(stats.delivered, 40U);
  EXPECT_EQ(stats.retried, 20U);
  EXPECT_EQ(stats.failed, 0U);
}

TEST(DeliverOnCommitTest, TheRestOfACommitWaitsBehindARetryOfItsFirstEvent) {
  auto adapter = std::make_shared<Recording>();
  Config config = config_with(adapter, {.max_demand = 1});  // one run per event
  config.pipeline.retry = {.max_attempts = 3, .initial_backoff = 5ms, .max_backoff = 5ms};
  Emitter emitter(std::move(config));
  std::vector<int> expected;
  for (int round = 0; round < 20; ++round) {
    Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit("e", {{"thread", 0}, {"seq", 2 * round}, {"fail", true}}).ok());
    ASSERT_TRUE(tx.emit("e", {{"thread", 0}, {"seq", 2 * round + 1}}).ok());
    ASSERT_TRUE(tx.commit().ok());
    ASSERT_TRUE(emitter.drain(10s).ok());
    expected.insert(expected.end(), {2 * round, 2 * round, 2 * round + 1});
  }
  std::vector<int> order;
  for (const Seen& s : adapter->seen())
    order.push_back(s.seq);
  // The first event's failure is settled inside deliver(), before the second is handed.
  EXPECT_EQ(order, expected);
  EXPECT_EQ(emitter.stats().adapters.at(0).delivered, 40U);
}

TEST(DeliverOnCommitTest, ACommitFromASettlementCallbackDoesNotCallDeliverInsideTheAdaptersAck) {
  auto adapter = std::make_shared<Recording>(/*acks_later=*/true);
  Emitter emitter(config_with(adapter, {}));
  std::atomic<int> follow_ups{0};
  for (int i = 0; i < 200; ++i) {
    Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit("e", {{"thread", 0}, {"seq", i}}).ok());
    // Runs on the adapter's thread, inside its ack(): the follow-up commit is queued for
    // the consumer, not delivered there.
    ASSERT_TRUE(
        tx.commit([&, i](const emissions::Settlement&) {
            Transaction next = emitter.start();
            if (next.emit("follow-up", {{"thread", 1}, {"seq", i}}).ok() && next.commit().ok())
              follow_ups.fetch_add(1);
          }).ok());
  }
  for (int i = 0; i < 2000 && follow_ups.load() < 200; ++i)
    std::this_thread::sleep_for(5ms);
  ASSERT_EQ(follow_ups.load(), 200);
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(adapter->reentered(), 0);
  EXPECT_EQ(emitter.stats().adapters.at(0).delivered, 400U);
}

// From review: a commit that stopped at the first event of its batch behind a retry left
// the batch to the consumer thread, which counted the batch's pop a second time: the queue's
// room went wrong (commits refused on an empty queue, or admitted past its size).
TEST(DeliverOnCommitTest, TheQueuesRoomStaysExactWhenCommitsStopBehindRetries) {
  auto adapter = std::make_shared<Recording>(/*acks_later=*/true);
  Config config = config_with(adapter, {.max_demand = 1, .buffer_size = 64, .block_timeout = 2s});
  config.pipeline.retry = {.max_attempts = 5, .initial_backoff = 1ms, .max_backoff = 1ms};
  Emitter emitter(std::move(config));
  constexpr int kThreads = 4;
  constexpr int kCommits = 300;
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int c = 0; c < kCommits; ++c) {
        Transaction tx = emitter.start();
        for (int e = 0; e < 4; ++e) {
          nlohmann::json payload = {{"thread", t}, {"seq", c * 4 + e}};
          if (e == 0 && c % 3 == 0) payload["fail"] = true;  // fails its first attempt
          (void)tx.emit("e", std::move(payload));
        }
        if (!tx.commit().ok()) refused.fetch_add(1);
      }
    });
  }
  for (std::thread& t : threads)
    t.join();
  EXPECT_EQ(refused.load(), 0);
  ASSERT_TRUE(emitter.drain(30s).ok());
  auto stats = emitter.stats().adapters.at(0);
  EXPECT_EQ(stats.queued, 0U);
  EXPECT_EQ(stats.delivered, static_cast<std::uint64_t>(kThreads * kCommits * 4));
  // The queue has all its room: a commit of its whole size is admitted at once.
  Transaction tx = emitter.start();
  for (int e = 0; e < 64; ++e)
    ASSERT_TRUE(tx.emit("e", {{"thread", kThreads}, {"seq", e}}).ok());
  EXPECT_TRUE(tx.commit().ok());
  ASSERT_TRUE(emitter.drain(30s).ok());
  stats = emitter.stats().adapters.at(0);
  EXPECT_EQ(stats.queued, 0U);
  EXPECT_EQ(stats.delivered, static_cast<std::uint64_t>(kThreads * kCommits * 4 + 64));
  EXPECT_EQ(stats.failed + stats.dropped, 0U);
}

// Holds every delivery until the test releases them.
class Parking final : public AsyncAdapter {
 public:
  std::string_view name() const override { return "parking"; }
  void deliver(Delivery delivery) override {
    std::lock_guard lock(mutex_);
    held_.push_back(std::move(delivery));
  }
  std::size_t held() {
    std::lock_guard lock(mutex_);
    return held_.size();
  }
  // Acks what it holds (without the lock: acks may run the pipeline's callbacks).
  void release() {
    std::deque<Delivery> taken;
    {
      std::lock_guard lock(mutex_);
      taken.swap(held_);
    }
    for (Delivery& d : taken)
      d.ack();
  }

 private:
  std::mutex mutex_;
  std::deque<Delivery> held_;
};

TEST(DeliverOnCommitTest, AFullWindowIsLeftToTheConsumerAndNeverBlocksACommit) {
  auto adapter = std::make_shared<Parking>();
  Emitter emitter(config_with(adapter, {.max_in_flight = 2}));
  // Nothing settles: past two deliveries the window is full. The commits must all return
  // (the consumer thread, not the committing one, waits for room).
  auto commits = std::async(std::launch::async, [&] {
    for (int i = 0; i < 10; ++i) {
      if (!commit(emitter, 0, i, 1).ok()) return false;
    }
    return true;
  });
  ASSERT_EQ(commits.wait_for(30s), std::future_status::ready) << "a commit waited for the window";
  EXPECT_TRUE(commits.get());
  EXPECT_LE(adapter->held(), 2U);
  for (int i = 0; i < 1000 && emitter.stats().adapters.at(0).delivered < 10; ++i) {
    adapter->release();
    std::this_thread::sleep_for(2ms);
  }
  ASSERT_TRUE(emitter.drain(10s).ok());
  const auto stats = emitter.stats().adapters.at(0);
  EXPECT_EQ(stats.delivered, 10U);
  EXPECT_EQ(stats.received, 10U);
}

// Commits again from inside deliver() (on whichever thread delivers), and calls drain()
// there: the nested commit is taken, drain() is refused instead of waiting for itself.
class CommitsFromDeliver final : public AsyncAdapter {
 public:
  std::string_view name() const override { return "commits-from-deliver"; }
  void deliver(Delivery delivery) override {
    for (const emissions::Event& e : delivery.events()) {
      Emitter* emitter = emitter_.load();
      if (e.name.str() == "outer" && emitter != nullptr) {
        Transaction tx = emitter->start();
        (void)tx.emit("inner", 1);
        Status committed = tx.commit();
        Status drained = emitter->drain(10s);
        std::lock_guard lock(mutex_);
        nested_.push_back(std::move(committed));
        drains_.push_back(std::move(drained));
      }
    }
    delivery.ack();
  }
  // Waits (10 s at most) until `n` nested commits were made.
  bool wait_for_nested(std::size_t n) {
    for (int i = 0; i < 2000; ++i) {
      {
        std::lock_guard lock(mutex_);
        if (nested_.size() >= n) return true;
      }
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }
  std::atomic<Emitter*> emitter_{nullptr};
  std::mutex mutex_;
  std::vector<Status> nested_;  // guarded by mutex_
  std::vector<Status> drains_;  // guarded by mutex_
};

TEST(DeliverOnCommitTest, AdapterCodeThatCommitsOrDrainsOnTheCommittingThreadDoesNotWaitForItself) {
  auto adapter = std::make_shared<CommitsFromDeliver>();
  Emitter emitter(config_with(adapter, {}));
  adapter->emitter_.store(&emitter);
  for (int i = 0; i < 20; ++i) {
    Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit("outer", i).ok());
    ASSERT_TRUE(tx.commit().ok());
  }
  // The outer events delivered by the consumer thread commit after their commit returned:
  // drain() waits for what was committed before it, so first for the nested commits.
  ASSERT_TRUE(adapter->wait_for_nested(20));
  ASSERT_TRUE(emitter.drain(10s).ok());
  adapter->emitter_.store(nullptr);
  std::lock_guard lock(adapter->mutex_);
  ASSERT_EQ(adapter->nested_.size(), 20U);
  for (const Status& s : adapter->nested_)
    EXPECT_TRUE(s.ok()) << s.to_string();
  for (const Status& s : adapter->drains_)
    EXPECT_EQ(s.code(), Errc::invalid_argument) << s.to_string();
  EXPECT_EQ(emitter.stats().adapters.at(0).delivered, 40U);
}

TEST(DeliverOnCommitTest, ShutdownWhileThreadsCommitSettlesEveryAcceptedEventOnce) {
  for (int round = 0; round < 5; ++round) {
    auto adapter = std::make_shared<Recording>(/*acks_later=*/round % 2 == 1);
    Emitter emitter(config_with(adapter, {.max_in_flight = 4}));
    std::atomic<bool> go{true};
    std::atomic<std::uint64_t> accepted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t) {
      threads.emplace_back([&, t] {
        for (int c = 0; go.load(); ++c) {
          if (commit(emitter, t, c * 5, 5).ok()) accepted.fetch_add(5);
        }
      });
    }
    std::this_thread::sleep_for(20ms);
    const Status stopped = emitter.shutdown(10s);
    go.store(false);
    for (std::thread& t : threads)
      t.join();
    EXPECT_TRUE(stopped.ok()) << stopped.to_string();
    const auto stats = emitter.stats().adapters.at(0);
    EXPECT_EQ(stats.received, accepted.load());
    EXPECT_EQ(stats.delivered + stats.failed + stats.dropped, accepted.load());
    EXPECT_EQ(stats.delivered, adapter->seen().size());
  }
}

}  // namespace
