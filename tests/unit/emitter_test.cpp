// The Emitter and its pipeline: fan-out, batching, backpressure, overflow, failures,
// drain and shutdown.
#include "emissions/emitter.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "emissions/ambient.hpp"
#include "emissions/delivery.hpp"
#include "emissions/telemetry.hpp"
#include "recording_adapter.hpp"

namespace emissions {
namespace {

using test_support::RecordingAdapter;
using test_support::TelemetryRecorder;
using namespace std::chrono_literals;

Config config_with(std::initializer_list<std::shared_ptr<Adapter>> adapters) {
  Config config;
  config.make_default = false;
  // These tests count each failure once: retries have tests of their own (retry_test.cpp).
  config.pipeline.retry.max_attempts = 1;
  for (const auto& a : adapters)
    config.add_adapter(a);
  return config;
}

void commit_events(Emitter& emitter, const std::string& name, int count, int first = 0) {
  Transaction tx = emitter.start();
  for (int i = 0; i < count; ++i)
    ASSERT_TRUE(tx.emit(name, first + i).ok());
  ASSERT_TRUE(tx.commit().ok());
}

TEST(EmitterTest, EveryAdapterReceivesEveryCommittedEvent) {
  auto a = std::make_shared<RecordingAdapter>("a");
  auto b = std::make_shared<RecordingAdapter>("b");
  auto c = std::make_shared<RecordingAdapter>("c");
  Emitter emitter(config_with({a, b, c}));
  for (int t = 0; t < 20; ++t)
    commit_events(emitter, "e", 7, t * 7);
  ASSERT_TRUE(emitter.drain(10s).ok());
  for (const auto& adapter : {a, b, c}) {
    const auto payloads = adapter->payloads();
    ASSERT_EQ(payloads.size(), 140u);
    for (int i = 0; i < 140; ++i)
      EXPECT_EQ(payloads[static_cast<std::size_t>(i)], i);
  }
  const EmitterStats stats = emitter.stats();
  EXPECT_EQ(stats.committed, 140u);
  EXPECT_EQ(stats.transactions, 20u);
  ASSERT_EQ(stats.adapters.size(), 3u);
  EXPECT_EQ(stats.adapters[1].name, "b");
  EXPECT_EQ(stats.adapters[1].delivered, 140u);
  EXPECT_EQ(stats.adapters[1].queued, 0u);
}

TEST(EmitterTest, BatchesNeverExceedMaxDemand) {
  auto a = std::make_shared<RecordingAdapter>("a");
  auto b = std::make_shared<RecordingAdapter>("b");
  Config config = config_with({});
  config.pipeline.max_demand = 50;
  config.add_adapter(a).add_adapter(b, {.max_demand = 7});
  Emitter emitter(std::move(config));
  commit_events(emitter, "e", 120);
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(a->batch_sizes(), (std::vector<std::size_t>{50, 50, 20}));
  const auto sizes = b->batch_sizes();
  EXPECT_EQ(sizes.size(), 18u);  // 17 x 7 + 1
  for (auto s : sizes)
    EXPECT_LE(s, 7u);
  EXPECT_EQ(b->received(), 120u);
}

TEST(EmitterTest, AdapterOnlyReceivesEventsItIsInterestedIn) {
  auto orders = std::make_shared<RecordingAdapter>("orders");
  orders->set_filter([](const Event& e) { return e.name.view().starts_with("order_"); });
  auto all = std::make_shared<RecordingAdapter>("all");
  Emitter emitter(config_with({orders, all}));
  Transaction tx = emitter.start();
  for (const char* name : {"order_created", "user_created", "order_shipped", "user_deleted"}) {
    ASSERT_TRUE(tx.emit(name).ok());
  }
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(orders->names(), (std::vector<std::string>{"order_created", "order_shipped"}));
  EXPECT_EQ(all->received(), 4u);
  const auto stats = emitter.stats();
  EXPECT_EQ(stats.adapters[0].delivered, 2u);
  EXPECT_EQ(stats.adapters[0].filtered, 2u);
}

TEST(EmitterTest, StalledAdapterDoesNotDelayOthers) {
  auto stalled = std::make_shared<RecordingAdapter>("stalled");
  auto fast = std::make_shared<RecordingAdapter>("fast");
  stalled->block();
  Config config = config_with({});
  config.add_adapter(stalled, {.overflow = Overflow::drop_oldest}).add_adapter(fast);
  Emitter emitter(std::move(config));
  constexpr int kEvents = 100'000;
  for (int t = 0; t < kEvents / 10; ++t)
    commit_events(emitter, "e", 10, t * 10);
  ASSERT_TRUE(fast->wait_for_received(kEvents)) << "fast adapter got " << fast->received();
  EXPECT_EQ(stalled->received(), 0u);
  stalled->unblock();
  ASSERT_TRUE(emitter.drain(30s).ok());
  const auto stats = emitter.stats();
  EXPECT_EQ(stats.adapters[1].delivered, static_cast<std::uint64_t>(kEvents));
  EXPECT_EQ(stats.adapters[0].delivered + stats.adapters[0].dropped,
            static_cast<std::uint64_t>(kEvents));
  EXPECT_GT(stats.adapters[0].dropped, 0u);
  EXPECT_EQ(stats.adapters[0].delivered, stalled->received());
}

TEST(EmitterTest, BlockPolicyTimesOutWithOverloadedAndDeliversNothing) {
  auto stalled = std::make_shared<RecordingAdapter>("stalled");
  auto fast = std::make_shared<RecordingAdapter>("fast");
  Config config = config_with({});
  config.add_adapter(stalled, {.buffer_size = 10, .block_timeout = 50ms}).add_adapter(fast);
  Emitter emitter(std::move(config));
  stalled->block();
  commit_events(emitter, "first", 1);
  ASSERT_TRUE(stalled->wait_until_blocked_in_call());
  commit_events(emitter, "fills", 10);  // queued: exactly the buffer
  ASSERT_TRUE(fast->wait_for_received(11));

  Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("rejected").ok());
  Status s = tx.commit();
  EXPECT_EQ(s.code(), Errc::overloaded);
  EXPECT_NE(s.message().find("stalled"), std::string::npos);
  EXPECT_TRUE(tx.active());  // the caller keeps its events and may retry or terminate
  EXPECT_EQ(tx.size(), 1u);
  ASSERT_TRUE(emitter.drain(0ms).code() == Errc::timeout);
  EXPECT_EQ(fast->received(), 11u);  // nothing half-delivered

  stalled->unblock();
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(fast->names().back(), "rejected");
  EXPECT_EQ(stalled->received(), 12u);
  EXPECT_EQ(emitter.stats().adapters[0].dropped, 0u);
}

TEST(EmitterTest, BlockedCommitProceedsWhenRoomFreesUp) {
  auto slow = std::make_shared<RecordingAdapter>("slow");
  Config config = config_with({});
  config.add_adapter(slow, {.buffer_size = 5, .block_timeout = 30s});
  Emitter emitter(std::move(config));
  slow->block();
  commit_events(emitter, "a", 1);
  ASSERT_TRUE(slow->wait_until_blocked_in_call());
  commit_events(emitter, "b", 5);
  std::thread releaser([&] {
    std::this_thread::sleep_for(20ms);  // let the commit below block first
    slow->unblock();
  });
  commit_events(emitter, "c", 5);  // waits for room, then succeeds
  releaser.join();
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(slow->received(), 11u);
}

TEST(EmitterTest, DropNewestDropsAndReportsEachEvent) {
  TelemetryRecorder rec("drop-newest", {{"emissions", "event", "dropped"}});
  auto stalled = std::make_shared<RecordingAdapter>("stalled");
  Config config = config_with({});
  config.add_adapter(stalled, {.buffer_size = 4, .overflow = Overflow::drop_newest});
  Emitter emitter(std::move(config));
  stalled->block();
  commit_events(emitter, "first", 1);
  ASSERT_TRUE(stalled->wait_until_blocked_in_call());
  commit_events(emitter, "kept", 4);
  commit_events(emitter, "lost", 3);
  commit_events(emitter, "lost", 2);
  stalled->unblock();
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(stalled->names(), (std::vector<std::string>{"first", "kept", "kept", "kept", "kept"}));
  const auto stats = emitter.stats();
  EXPECT_EQ(stats.adapters[0].dropped, 5u);
  EXPECT_EQ(stats.adapters[0].delivered + stats.adapters[0].dropped, stats.committed);
  const auto drops = rec.records();
  ASSERT_EQ(drops.size(), 5u);
  EXPECT_EQ(drops[0].metadata["event_name"], "lost");
  EXPECT_EQ(drops[0].metadata["reason"], "overflow");
  EXPECT_EQ(drops[0].metadata["adapter"], "stalled");
  EXPECT_EQ(drops[0].measurements["count"], 1);
}

TEST(EmitterTest, DropOldestEvictsTheOldestQueuedEvents) {
  auto stalled = std::make_shared<RecordingAdapter>("stalled");
  Config config = config_with({});
  config.add_adapter(stalled, {.buffer_size = 20, .overflow = Overflow::drop_oldest});
  Emitter emitter(std::move(config));
  stalled->block();
  commit_events(emitter, "first", 1);
  ASSERT_TRUE(stalled->wait_until_blocked_in_call());
  for (int t = 0; t < 5; ++t)
    commit_events(emitter, "batch" + std::to_string(t), 10);
  stalled->unblock();
  ASSERT_TRUE(emitter.drain(10s).ok());
  std::vector<std::string> expected{"first"};
  for (int i = 0; i < 10; ++i)
    expected.push_back("batch3");
  for (int i = 0; i < 10; ++i)
    expected.push_back("batch4");
  EXPECT_EQ(stalled->names(), expected);
  EXPECT_EQ(emitter.stats().adapters[0].dropped, 30u);
}

TEST(EmitterTest, AdapterErrorIsReportedAndLaterBatchesAreDelivered) {
  TelemetryRecorder rec("adapter-error",
                        {{"emissions", "adapter", "error"}, {"emissions", "adapter", "success"}});
  auto flaky = std::make_shared<RecordingAdapter>("flaky");
  flaky->fail_next(1);
  Emitter emitter(config_with({flaky}));
  commit_events(emitter, "lost", 3);
  ASSERT_TRUE(emitter.drain(10s).ok());
  commit_events(emitter, "kept", 2);
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(flaky->names(), (std::vector<std::string>{"kept", "kept"}));
  EXPECT_EQ(flaky->inits(), 1);  // an error Status is not a crash: no restart
  const auto errors = rec.records({"emissions", "adapter", "error"});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].metadata["adapter"], "flaky");
  EXPECT_EQ(errors[0].metadata["event_count"], 3);
  EXPECT_NE(errors[0].metadata["reason"].get<std::string>().find("destination down"),
            std::string::npos);
  EXPECT_TRUE(errors[0].measurements["duration"].is_number_integer());
  const auto successes = rec.records({"emissions", "adapter", "success"});
  ASSERT_EQ(successes.size(), 1u);
  EXPECT_EQ(successes[0].metadata["event_count"], 2);
  EXPECT_EQ(successes[0].metadata.size(), 2u);  // adapter, event_count
  const auto stats = emitter.stats();
  EXPECT_EQ(stats.adapters[0].failed, 3u);
  EXPECT_EQ(stats.adapters[0].delivered, 2u);
}

TEST(EmitterTest, AdapterThatThrowsIsReportedAndInitializedAgain) {
  TelemetryRecorder rec("adapter-throw", {{"emissions", "adapter", "error"}});
  auto crashy = std::make_shared<RecordingAdapter>("crashy");
  crashy->throw_next(1);
  Emitter emitter(config_with({crashy}));
  commit_events(emitter, "boom", 2);
  ASSERT_TRUE(emitter.drain(10s).ok());
  commit_events(emitter, "after", 1);
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(crashy->names(), (std::vector<std::string>{"after"}));
  EXPECT_EQ(crashy->inits(), 2);
  const auto errors = rec.records();
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].metadata["reason"], "adapter exploded");
  EXPECT_EQ(errors[0].metadata["event_count"], 2);
}

TEST(EmitterTest, FailedInitIsReportedAndRetriedBeforeTheNextBatch) {
  auto picky = std::make_shared<RecordingAdapter>("picky");
  picky->fail_init(true);
  Emitter emitter(config_with({picky}));
  commit_events(emitter, "lost", 1);
  ASSERT_TRUE(emitter.drain(10s).ok());
  picky->fail_init(false);
  commit_events(emitter, "kept", 1);
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(picky->names(), (std::vector<std::string>{"kept"}));
  EXPECT_EQ(picky->inits(), 2);
  EXPECT_EQ(emitter.stats().adapters[0].failed, 1u);
}

TEST(EmitterTest, DrainTimesOutWhileAnAdapterIsStalled) {
  auto stalled = std::make_shared<RecordingAdapter>("stalled");
  Emitter emitter(config_with({stalled}));
  stalled->block();
  commit_events(emitter, "e", 1);
  Status s = emitter.drain(20ms);
  EXPECT_EQ(s.code(), Errc::timeout);
  EXPECT_NE(s.message().find("stalled"), std::string::npos);
  stalled->unblock();
  EXPECT_TRUE(emitter.drain(10s).ok());
}

TEST(EmitterTest, ShutdownDeliversEverythingTerminatesAdaptersAndCloses) {
  auto a = std::make_shared<RecordingAdapter>("a");
  auto b = std::make_shared<RecordingAdapter>("b");
  Emitter emitter(config_with({a, b}));
  for (int i = 0; i < 50; ++i)
    commit_events(emitter, "e", 3);
  ASSERT_TRUE(emitter.shutdown(10s).ok());
  EXPECT_TRUE(emitter.closed());
  EXPECT_EQ(a->received(), 150u);
  EXPECT_EQ(b->received(), 150u);
  EXPECT_EQ(a->terminations(), 1);
  EXPECT_EQ(b->terminations(), 1);
  Transaction tx = emitter.start();
  EXPECT_EQ(tx.emit("late").code(), Errc::closed);
  EXPECT_TRUE(emitter.shutdown(10s).ok());  // idempotent
  EXPECT_EQ(a->terminations(), 1);
}

TEST(EmitterTest, ShutdownWithHungAdapterTimesOutAndReportsWhatWasNotDelivered) {
  auto hung = std::make_shared<RecordingAdapter>("hung");
  auto fine = std::make_shared<RecordingAdapter>("fine");
  auto emitter = std::make_unique<Emitter>(config_with({hung, fine}));
  hung->block();
  commit_events(*emitter, "first", 2);
  ASSERT_TRUE(hung->wait_until_blocked_in_call());
  commit_events(*emitter, "queued", 5);
  const auto started = std::chrono::steady_clock::now();
  Status s = emitter->shutdown(100ms);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);  // generous: no deadlock
  EXPECT_EQ(s.code(), Errc::timeout);
  EXPECT_NE(s.message().find("'hung' did not deliver 5 events (dropped)"), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("2 are in a call"), std::string::npos) << s.message();
  EXPECT_EQ(fine->received(), 7u);
  EXPECT_EQ(fine->terminations(), 1);
  const auto stats = emitter->stats();
  EXPECT_EQ(stats.adapters[0].dropped, 5u);
  hung->unblock();
  emitter.reset();  // joins the consumer once the call returns, then terminates the adapter
  EXPECT_EQ(hung->terminations(), 1);
  EXPECT_EQ(hung->received(), 2u);
}

TEST(EmitterTest, DestructorShutsDownGracefully) {
  auto a = std::make_shared<RecordingAdapter>("a");
  {
    Emitter emitter(config_with({a}));
    for (int i = 0; i < 10; ++i)
      commit_events(emitter, "e", 10);
  }
  EXPECT_EQ(a->received(), 100u);
  EXPECT_EQ(a->terminations(), 1);
}

TEST(EmitterTest, EmitterWithoutAdaptersAcceptsCommits) {
  Emitter emitter(config_with({}));
  commit_events(emitter, "e", 3);
  EXPECT_TRUE(emitter.drain(1s).ok());
  EXPECT_EQ(emitter.stats().committed, 3u);
}

TEST(EmitterTest, DrainFlushesAdaptersThatHoldEventsBack) {
  // An adapter that holds events until flush(): drain must make it deliver them.
  class Holding : public Adapter {
   public:
    std::string_view name() const override { return "holding"; }
    Status handle_events(std::span<const Event> batch) override {
      std::lock_guard lock(m);
      held += batch.size();
      return {};
    }
    Status flush(Deadline) override {
      std::lock_guard lock(m);
      flushed += held;
      held = 0;
      return fail ? Status(Errc::unavailable, "sink down") : Status();
    }
    std::mutex m;
    std::size_t held = 0;
    std::size_t flushed = 0;
    bool fail = false;
  };
  auto holding = std::make_shared<Holding>();
  Emitter emitter(config_with({holding}));
  commit_events(emitter, "e", 5);
  ASSERT_TRUE(emitter.drain(10s).ok());
  {
    std::lock_guard lock(holding->m);
    EXPECT_EQ(holding->flushed, 5u);
    holding->fail = true;
  }
  Status s = emitter.drain(10s);
  EXPECT_EQ(s.code(), Errc::unavailable);
  EXPECT_NE(s.message().find("adapter 'holding' flush failed: sink down"), std::string::npos);
}

TEST(EmitterTest, IdleConsumersParkInsteadOfSpinning) {
  // Eight consumers with nothing to do: once parked they use no CPU. A consumer that kept
  // polling would burn a whole core for the 200 ms below (8 of them, far more).
  auto cpu_seconds = [] {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
           static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  };
  auto a = std::make_shared<RecordingAdapter>("a");
  Config config = config_with({});
  config.add_adapter(a, {.concurrency = 8});
  Emitter emitter(std::move(config));
  commit_events(emitter, "wake", 1);
  ASSERT_TRUE(emitter.drain(10s).ok());
  std::this_thread::sleep_for(20ms);  // well past idle_spin (200 us): everyone has parked
  const double before = cpu_seconds();
  std::this_thread::sleep_for(200ms);
  EXPECT_LT(cpu_seconds() - before, 0.05);
  commit_events(emitter, "after", 3);  // and they wake up for new work
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(a->received(), 4u);
}

// ---- configuration mistakes fail loudly at construction ---------------------------------

void expect_config_error(Config config, const std::string& fragment) {
  try {
    Emitter emitter(std::move(config));
    ADD_FAILURE() << "expected ConfigError mentioning: " << fragment;
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(EmitterConfigTest, ZeroMaxDemandIsAConfigError) {
  Config config = config_with({});
  config.pipeline.max_demand = 0;
  expect_config_error(std::move(config), "pipeline.max_demand must be in [1, 16777216] (got 0)");
}

TEST(EmitterConfigTest, ZeroBufferSizeOverrideNamesTheAdapter) {
  Config config = config_with({});
  config.add_adapter(std::make_shared<RecordingAdapter>("kafka"), {.buffer_size = 0});
  expect_config_error(std::move(config),
                      "adapters[0] ('kafka').buffer_size must be in [1, 16777216] (got 0)");
}

TEST(EmitterConfigTest, NegativeBlockTimeoutIsAConfigError) {
  Config config = config_with({});
  config.pipeline.block_timeout = -5ms;
  expect_config_error(std::move(config),
                      "pipeline.block_timeout must be in [0 ms, 86400000 ms] (got -5 ms)");
}

TEST(EmitterConfigTest, NullAdapterIsAConfigError) {
  Config config = config_with({});
  config.add_adapter(nullptr);
  expect_config_error(std::move(config), "adapters[0] must be a non-null adapter (got nullptr)");
}

TEST(EmitterConfigTest, DuplicateAdapterNamesAreAConfigError) {
  Config config = config_with({});
  config.add_adapter(std::make_shared<RecordingAdapter>("same"))
      .add_adapter(std::make_shared<RecordingAdapter>("same"));
  expect_config_error(std::move(config),
                      "adapters[1].name() must be unique among adapters (got 'same')");
}

TEST(EmitterConfigTest, SameAdapterObjectTwiceIsAConfigError) {
  auto a = std::make_shared<RecordingAdapter>("a");
  Config config = config_with({});
  config.add_adapter(a).add_adapter(a);
  expect_config_error(std::move(config),
                      "adapters[1] must be an adapter object added once (got 'a' again)");
}

// ---- adversarial review: exact counters under every failure path at once ----

// A synchronous adapter that fails in every way it can, by event payload: interested()
// throws for i % 11 == 0 (counts as wanted), handle_events throws when the batch holds an
// i % 7 == 0, returns an error when it holds an i % 5 == 0, init fails every third time.
class Chaotic final : public Adapter {
 public:
  explicit Chaotic(std::string name) : name_(std::move(name)) {}
  std::string_view name() const override { return name_; }
  Status init() override {
    if (inits_.fetch_add(1) % 3 == 1) return Status(Errc::unavailable, "init refused");
    return {};
  }
  bool interested(const Event& e) const override {
    const int i = e.payload.get<int>();
    if (i % 11 == 0) throw std::runtime_error("interested exploded");
    return i % 4 != 1;
  }
  Status handle_events(std::span<const Event> batch) override {
    for (const Event& e : batch) {
      if (e.payload.get<int>() % 7 == 0) throw std::runtime_error("handle_events exploded");
    }
    for (const Event& e : batch) {
      if (e.payload.get<int>() % 5 == 0) return Status(Errc::unavailable, "down");
    }
    return {};
  }

 private:
  std::string name_;
  std::atomic<int> inits_{0};
};

// An asynchronous adapter settling each event in a different way: ack, fail, abandon (the
// handle is dropped), settled from another thread, or deliver() throws.
class ChaoticAsync final : public AsyncAdapter {
 public:
  ChaoticAsync() : worker_([this] { run(); }) {}
  ~ChaoticAsync() override {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
  std::string_view name() const override { return "chaotic_async"; }
  Status init() override {
    if (inits_.fetch_add(1) % 4 == 2) throw std::runtime_error("init exploded");
    return {};
  }
  void deliver(Delivery d) override {
    const int first = d.events()[0].payload.get<int>();
    switch (first % 5) {
      case 0:
        d.ack();
        return;
      case 1:
        d.fail(Status(Errc::unavailable, "nope"));
        return;
      case 2:
        return;  // abandoned
      case 3: {
        std::lock_guard lock(mutex_);
        later_.push_back(std::move(d));
        cv_.notify_all();
        return;
      }
      default:
        if (d.events().size() > 1) d.ack(0);
        throw std::runtime_error("deliver exploded");
    }
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !later_.empty(); });
      if (later_.empty()) return;
      Delivery d = std::move(later_.front());
      later_.pop_front();
      lock.unlock();
      for (std::size_t i = 0; i < d.events().size(); i += 2)
        d.ack(i);
      for (std::size_t i = 1; i < d.events().size(); i += 2)
        d.fail(i, Status(Errc::unavailable, "odd"));
      lock.lock();
    }
  }
  std::atomic<int> inits_{0};
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Delivery> later_;
  bool stop_ = false;
  std::thread worker_;
};

void expect_exact(const EmitterStats& stats, const char* when) {
  for (const auto& a : stats.adapters) {
    EXPECT_EQ(a.delivered + a.failed + a.filtered + a.dropped, stats.committed)
        << when << ": " << a.name << " delivered " << a.delivered << " failed " << a.failed
        << " filtered " << a.filtered << " dropped " << a.dropped;
    EXPECT_EQ(a.queued, 0u) << when << ": " << a.name;
  }
}

TEST(EmitterTest, CountersStayExactUnderEveryFailurePathAtOnce) {
  Config config = config_with({});
  config.pipeline.idle_spin = std::chrono::microseconds(0);
  config.add_adapter(std::make_shared<Chaotic>("drop_oldest"),
                     {.max_demand = 3, .buffer_size = 8, .overflow = Overflow::drop_oldest});
  config.add_adapter(std::make_shared<Chaotic>("partitioned"),
                     {.max_demand = 4,
                      .buffer_size = 12,
                      .block_timeout = 20ms,
                      .concurrency = 3,
                      .partition_by = [](const Event& e) -> std::uint64_t {
                        const int i = e.payload.get<int>();
                        if (i % 13 == 0) throw std::runtime_error("partition_by exploded");
                        return static_cast<std::uint64_t>(i);
                      }});
  config.add_adapter(
      std::make_shared<ChaoticAsync>(),
      {.max_demand = 2, .buffer_size = 16, .overflow = Overflow::drop_newest, .max_in_flight = 2});
  Emitter emitter(std::move(config));
  std::vector<std::thread> threads;
  std::atomic<int> overloaded{0};
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (int c = 0; c < 150; ++c) {
        Transaction tx = emitter.start();
        const int n = 1 + (c * 7 + t) % 20;  // up to 20: more than some buffers hold
        for (int i = 0; i < n; ++i)
          (void)tx.emit("e", t * 100'000 + c * 100 + i);
        if (Status s = tx.commit(); !s.ok()) {
          if (s.code() == Errc::overloaded) overloaded.fetch_add(1);
          tx.terminate();
        }
      }
    });
  }
  for (auto& thread : threads)
    thread.join();
  const Status drained = emitter.drain(30s);
  ASSERT_TRUE(drained.ok()) << drained.to_string();
  expect_exact(emitter.stats(), "after drain");
  EXPECT_TRUE(emitter.shutdown(30s).ok());
  expect_exact(emitter.stats(), "after shutdown");
}

TEST(EmitterTest, TelemetryHandlersThatCallBackIntoTheEmitterOnEveryEventNeitherHangNorMiscount) {
  // A handler on every library event calls stats(), drain(0) and, on request threads,
  // commits a transaction of its own, while commits overflow, adapters fail, handlers
  // cascade and the emitter shuts down.
  std::atomic<Emitter*> target{nullptr};
  thread_local int depth = 0;
  std::atomic<int> calls{0};
  std::atomic<int> telemetry_commits{0};
  const std::vector<telemetry::EventName> every = {
      {"emissions", "buffer", "started"},    {"emissions", "buffer", "committed"},
      {"emissions", "buffer", "terminated"}, {"emissions", "event", "dropped"},
      {"emissions", "adapter", "success"},   {"emissions", "adapter", "error"},
      {"emissions", "handler", "success"},   {"emissions", "handler", "error"},
      {"emissions", "handler", "ignored"}};
  ASSERT_TRUE(telemetry::attach_many(
                  "reentrant", every,
                  [&](const telemetry::EventName&, const nlohmann::json&, const nlohmann::json&) {
                    calls.fetch_add(1);
                    Emitter* e = target.load();
                    if (e == nullptr || depth > 0) return;
                    ++depth;
                    (void)e->stats();
                    (void)e->drain(0ms);
                    // A bounded number of commits: each one's delivery fires telemetry again,
                    // so unbounded, the handler would feed the adapters forever (and a
                    // consumer committing to its own full queue waits out block_timeout).
                    if (telemetry_commits.fetch_add(1) < 300) {
                      Transaction tx = e->start();
                      (void)tx.emit("from_telemetry");
                      (void)tx.commit();
                    }
                    --depth;
                  })
                  .ok());
  class Echo final : public Handler {
   public:
    std::string_view name() const override { return "echo"; }
    std::vector<EventName> events() const override { return {"e"}; }
    HandlerResult handle_event(const Event& e) override {
      if (e.payload.get<int>() % 3 == 0) return HandlerResult::error("no");
      if (e.payload.get<int>() % 3 == 1) return HandlerResult::ignored();
      (void)emit("echoed");
      return HandlerResult::ok();
    }
  };
  auto failing = std::make_shared<RecordingAdapter>("failing");
  failing->fail_next(1000);
  {
    Config config = config_with({});
    config.handler_concurrency = 2;
    config.add_handler(std::make_shared<Echo>());
    config.add_adapter(failing, {.max_demand = 2});
    config.add_adapter(std::make_shared<RecordingAdapter>("tiny"),
                       {.buffer_size = 2, .overflow = Overflow::drop_oldest});
    Emitter emitter(std::move(config));
    target.store(&emitter);
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&] {
        for (int c = 0; c < 50; ++c) {
          Transaction tx = emitter.start();
          for (int i = 0; i < 4; ++i)
            (void)tx.emit("e", c * 4 + i);
          if (c % 5 == 0) {
            tx.terminate();
          } else {
            (void)tx.commit();
          }
        }
      });
    }
    for (auto& thread : threads)
      thread.join();
    const Status drained = emitter.drain(30s);
    EXPECT_TRUE(drained.ok()) << drained.to_string();
    const Status down = emitter.shutdown(30s);
    EXPECT_TRUE(down.ok()) << down.to_string();
    target.store(nullptr);
    const auto stats = emitter.stats();
    for (const auto& a : stats.adapters) {
      EXPECT_EQ(a.delivered + a.failed + a.filtered + a.dropped, stats.committed) << a.name;
      EXPECT_EQ(a.queued, 0u) << a.name;
    }
  }
  ASSERT_TRUE(telemetry::detach("reentrant").ok());
  EXPECT_GT(calls.load(), 0);
}

}  // namespace
}  // namespace emissions
