// The Batching adapter: full batches by size, partial ones by linger, drain and shutdown,
// the inner's errors and restarts, delegation, options, backpressure and concurrency, and
// per-event settlement: an event is settled when (and as) its inner batch settled.
#include "emissions/adapters/batching.hpp"
#include "emissions/adapters/json_lines.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include "emissions/clock.hpp"
#include "emissions/deadline.hpp"
#include "emissions/emitter.hpp"
#include "emissions/event.hpp"
#include "emissions/testing.hpp"
#include "pipeline/delivery_state.hpp"
#include "recording_adapter.hpp"

namespace emissions::adapters {
namespace {

using emissions::testing::deliver_now;
using emissions::testing::FaultyAdapter;
using test_support::RecordingAdapter;
using test_support::TelemetryRecorder;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

// Generous: only reached when the behaviour under test is broken.
constexpr auto kDeadline = 10s;

Config config_with(std::shared_ptr<Adapter> adapter, AdapterOptions options = {}) {
  Config config;
  config.make_default = false;
  // Failures are counted once here; the pipeline's retries through Batching are tested in
  // BatchingTest.AFailedInnerBatchIsRetriedByThePipelineAndEndsDelivered.
  config.pipeline.retry.max_attempts = 1;
  config.add_adapter(std::move(adapter), std::move(options));
  return config;
}

void commit_events(Emitter& emitter, int count, int first = 0) {
  Transaction tx = emitter.start();
  for (int i = 0; i < count; ++i)
    ASSERT_TRUE(tx.emit("e", {{"i", first + i}}).ok());
  ASSERT_TRUE(tx.commit().ok());
}

std::vector<Event> make_events(int count, int first = 0) {
  std::vector<Event> events;
  for (int i = 0; i < count; ++i) {
    Event e;
    e.name = EventName("e");
    e.payload = {{"i", first + i}};
    e.metadata = nlohmann::json::object();
    e.emitted_at = std::chrono::system_clock::now();
    e.id = EventId::generate(e.emitted_at);
    events.push_back(std::move(e));
  }
  return events;
}

std::vector<int> payload_indexes(const RecordingAdapter& inner) {
  std::vector<int> out;
  for (const auto& p : inner.payloads())
    out.push_back(p["i"].get<int>());
  return out;
}

std::vector<int> iota(int n) {
  std::vector<int> out(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i)
    out[static_cast<std::size_t>(i)] = i;
  return out;
}

// Polls `done` until it holds or the deadline passes; the caller asserts on the result.
bool eventually(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// Events the pipeline counts as delivered by the adapter in slot 0: settled by the inner.
std::uint64_t delivered_by_pipeline(const Emitter& emitter) {
  return emitter.stats().adapters.at(0).delivered;
}

// Records Batching's own per-inner-batch telemetry (marked "batching": true), leaving out
// the pipeline's events for the same adapter name.
std::vector<TelemetryRecorder::Record> batching_records(const TelemetryRecorder& recorder,
                                                        const std::vector<std::string>& event) {
  std::vector<TelemetryRecorder::Record> out;
  for (auto& r : recorder.records(event))
    if (r.metadata.value("batching", false)) out.push_back(r);
  return out;
}

const std::vector<std::string> kSuccess{"emissions", "adapter", "success"};
const std::vector<std::string> kError{"emissions", "adapter", "error"};

TEST(BatchingTest, InnerReceivesBatchesOfExactlyMaxSizeInOrderWhenEventsArriveFast) {
  auto inner = std::make_shared<RecordingAdapter>("inner");
  auto clock = std::make_shared<ManualClock>();  // never advanced: no linger flush
  // A window of 16 pipeline batches (160 events) would make the pipeline flush partial
  // batches; 32 leaves room for the two batches Batching holds.
  Emitter emitter(
      config_with(std::make_shared<Batching>(
                      inner, BatchingOptions{.max_size = 100, .linger = 50ms, .clock = clock}),
                  {.max_in_flight = 32}));
  for (int c = 0; c < 100; ++c)
    commit_events(emitter, 10, c * 10);

  ASSERT_TRUE(inner->wait_for_received(1000, kDeadline));
  EXPECT_EQ(inner->batch_sizes(), std::vector<std::size_t>(10, 100));
  EXPECT_EQ(payload_indexes(*inner), iota(1000));
}

TEST(BatchingTest, LingerDeliversAPartialBatchWithoutDrain) {
  auto inner = std::make_shared<RecordingAdapter>("inner");
  auto clock = std::make_shared<ManualClock>();
  auto batching = std::make_shared<Batching>(
      inner, BatchingOptions{.max_size = 100, .linger = 50ms, .clock = clock});
  Emitter emitter(config_with(batching));
  commit_events(emitter, 3);
  ASSERT_TRUE(eventually([&] { return batching->held() == 3; }));
  EXPECT_EQ(inner->received(), 0U) << "time has not moved: the batch must still be lingering";
  EXPECT_EQ(delivered_by_pipeline(emitter), 0U) << "not acknowledged before the inner has them";

  clock->advance(50ms);
  ASSERT_TRUE(inner->wait_for_received(3, kDeadline));
  ASSERT_TRUE(eventually([&] { return delivered_by_pipeline(emitter) == 3; }));
  EXPECT_EQ(inner->batch_sizes(), std::vector<std::size_t>{3});
  EXPECT_EQ(payload_indexes(*inner), iota(3));
}

TEST(BatchingTest, LingerOnTheRealClockDeliversWithoutDrain) {
  auto inner = std::make_shared<RecordingAdapter>("inner");
  Emitter emitter(config_with(
      std::make_shared<Batching>(inner, BatchingOptions{.max_size = 100, .linger = 20ms})));
  commit_events(emitter, 4);
  ASSERT_TRUE(inner->wait_for_received(4, kDeadline));
  EXPECT_EQ(payload_indexes(*inner), iota(4));
}

TEST(BatchingTest, ZeroLingerSendsAcceptedEventsAtOnce) {
  auto inner = std::make_shared<RecordingAdapter>("inner");
  auto clock = std::make_shared<ManualClock>();  // never advanced: no timer flush
  Emitter emitter(config_with(std::make_shared<Batching>(
      inner, BatchingOptions{.max_size = 100, .linger = 0ms, .clock = clock})));
  commit_events(emitter, 3);
  ASSERT_TRUE(inner->wait_for_received(3, kDeadline));
  EXPECT_EQ(payload_indexes(*inner), iota(3));
}

TEST(BatchingTest, DrainDeliversAPartialBatchImmediately) {
  auto inner = std::make_shared<RecordingAdapter>("inner");
  auto clock = std::make_shared<ManualClock>();  // never advanced: only drain can flush
  Emitter emitter(config_with(std::make_shared<Batching>(
      inner, BatchingOptions{.max_size = 100, .linger = 1h, .clock = clock})));
  commit_events(emitter, 7);
  ASSERT_TRUE(emitter.drain(kDeadline).ok());
  EXPECT_EQ(inner->received(), 7U);
  EXPECT_EQ(inner->batch_sizes(), std::vector<std::size_t>{7});
}

TEST(BatchingTest, ShutdownFlushesTheRestAndTerminatesTheInnerOnce) {
  auto inner = std::make_shared<RecordingAdapter>("inner");
  auto clock = std::make_shared<ManualClock>();
  auto batching = std::make_shared<Batching>(
      inner, BatchingOptions{.max_size = 100, .linger = 1h, .clock = clock});
  {
    Emitter emitter(config_with(batching));
    commit_events(emitter, 7);
    ASSERT_TRUE(emitter.shutdown(kDeadline).ok());
    EXPECT_EQ(inner->received(), 7U);
    EXPECT_EQ(inner->terminations(), 1);
  }
  (void)batching->terminate(emissions::Deadline::max());
  batching.reset();  // the destructor must not terminate it again
  EXPECT_EQ(inner->terminations(), 1);
  EXPECT_EQ(inner->received(), 7U);
}

TEST(BatchingTest, DestructionFlushesTheRestAndTerminatesTheInnerOnce) {
  auto inner = std::make_shared<RecordingAdapter>("inner");
  auto clock = std::make_shared<ManualClock>();
  {
    Batching batching(inner, {.max_size = 100, .linger = 1h, .clock = clock});
    const std::vector<Event> events = make_events(5);
    ASSERT_TRUE(deliver_now(batching, events).ok());
    EXPECT_EQ(inner->received(), 0U);
  }
  EXPECT_EQ(inner->received(), 5U);
  EXPECT_EQ(inner->terminations(), 1);
}

TEST(BatchingTest, DeliveriesAfterTerminateFailAsClosedAndAreCounted) {
  auto inner = std::make_shared<RecordingAdapter>("inner");
  Batching batching(inner, {.max_size = 10});
  (void)batching.terminate(emissions::Deadline::max());
  const std::vector<Event> events = make_events(2);
  EXPECT_EQ(deliver_now(batching, events), Errc::closed);
  EXPECT_EQ(batching.rejected(), 2U);
  EXPECT_TRUE(batching.flush(emissions::Deadline::max()).ok()) << "nothing is held after terminate";
  EXPECT_EQ(inner->terminations(), 1);
}

TEST(BatchingTest, AFailedInnerBatchIsRetriedByThePipelineAndEndsDelivered) {
  auto inner = std::make_shared<RecordingAdapter>("warehouse");
  inner->fail_next(1);  // unavailable: retriable
  auto linger_clock = std::make_shared<ManualClock>();
  auto retry_clock = std::make_shared<ManualClock>();
  auto batching = std::make_shared<Batching>(
      inner, BatchingOptions{.max_size = 10, .linger = 1h, .clock = linger_clock});
  Config config = config_with(batching);
  config.pipeline.retry = {.max_attempts = 3, .initial_backoff = std::chrono::milliseconds(10)};
  config.clock = retry_clock;
  Emitter emitter(std::move(config));
  commit_events(emitter, 10);
  // The inner batch of these ten fails; the pipeline hands them to Batching again once the
  // retry clock passes the backoff, and the second inner batch delivers them.
  // (The clock moves until they are: when the retry is scheduled is up to the consumer.)
  ASSERT_TRUE(eventually([&] {
    retry_clock->advance(std::chrono::milliseconds(10));
    return emitter.stats().adapters.at(0).delivered == 10;
  }));
  ASSERT_TRUE(emitter.drain(kDeadline).ok());
  const auto stats = emitter.stats().adapters.at(0);
  EXPECT_EQ(stats.delivered, 10U);
  EXPECT_EQ(stats.failed, 0U);
  EXPECT_EQ(stats.retried, 10U);
  EXPECT_EQ(payload_indexes(*inner), iota(10));
}

TEST(BatchingTest, InnerErrorIsReportedWithTheInnersNameAndLaterBatchesStillArrive) {
  TelemetryRecorder recorder("batching-error", {kSuccess, kError});
  auto inner = std::make_shared<RecordingAdapter>("warehouse");
  inner->fail_next(1);
  auto clock = std::make_shared<ManualClock>();
  auto batching = std::make_shared<Batching>(
      inner, BatchingOptions{.max_size = 10, .linger = 1h, .clock = clock});
  Emitter emitter(config_with(batching));
  for (int c = 0; c < 3; ++c)
    commit_events(emitter, 10, c * 10);
  ASSERT_TRUE(eventually([&] { return batching->delivered() + batching->failed() == 30; }));
  // Each inner batch is counted, then reported: wait for the reports too.
  ASSERT_TRUE(eventually([&] {
    return batching_records(recorder, kError).size() +
               batching_records(recorder, kSuccess).size() ==
           3;
  }));

  EXPECT_EQ(batching->failed(), 10U);
  EXPECT_EQ(batching->delivered(), 20U);
  const std::vector<int> all = iota(30);
  EXPECT_EQ(payload_indexes(*inner), std::vector<int>(all.begin() + 10, all.end()));
  const auto errors = batching_records(recorder, kError);
  ASSERT_EQ(errors.size(), 1U);
  EXPECT_EQ(errors[0].metadata["adapter"], "warehouse");
  EXPECT_EQ(errors[0].metadata["event_count"], 10);
  EXPECT_THAT(errors[0].metadata["reason"].get<std::string>(), HasSubstr("destination down"));
  EXPECT_TRUE(errors[0].measurements["duration"].is_number_integer());
  const auto successes = batching_records(recorder, kSuccess);
  ASSERT_EQ(successes.size(), 2U);
  for (const auto& s : successes) {
    EXPECT_EQ(s.metadata["adapter"], "warehouse");
    EXPECT_EQ(s.metadata["event_count"], 10);
    EXPECT_GE(s.measurements["duration"].get<std::int64_t>(), 0);
  }
  // The pipeline counts each event as its inner batch settled: exactly the first ten failed.
  (void)emitter.drain(kDeadline);
  EXPECT_EQ(emitter.stats().adapters.at(0).delivered, 20U);
  EXPECT_EQ(emitter.stats().adapters.at(0).failed, 10U);
  EXPECT_EQ(inner->inits(), 1) << "an error status is not a restart";
}

TEST(BatchingTest, InnerThrowIsReportedAndInitRunsAgainBeforeTheNextBatch) {
  TelemetryRecorder recorder("batching-throw", {kError});
  auto inner = std::make_shared<RecordingAdapter>("warehouse");
  inner->throw_next(1);
  auto clock = std::make_shared<ManualClock>();
  Batching batching(inner, {.max_size = 4, .linger = 1h, .clock = clock});
  EXPECT_EQ(inner->inits(), 0) << "init waits for the first batch";

  // A full batch goes to the inner on Batching's thread: its failure may be settled before
  // deliver_now() returns (then it reports it) or after. Either way it is counted.
  (void)deliver_now(batching, make_events(4));
  ASSERT_TRUE(eventually([&] { return batching.failed() == 4; }));
  EXPECT_EQ(inner->inits(), 1);
  ASSERT_TRUE(deliver_now(batching, make_events(4, 4)).ok());
  ASSERT_TRUE(inner->wait_for_received(4, kDeadline));
  EXPECT_EQ(inner->inits(), 2);
  EXPECT_EQ(payload_indexes(*inner), (std::vector<int>{4, 5, 6, 7}));

  const auto errors = batching_records(recorder, kError);
  ASSERT_EQ(errors.size(), 1U);
  EXPECT_EQ(errors[0].metadata["adapter"], "warehouse");
  EXPECT_EQ(errors[0].metadata["reason"], "adapter exploded");
  EXPECT_EQ(errors[0].metadata["event_count"], 4);
}

TEST(BatchingTest, FailedInitFailsTheBatchAndIsRetriedBeforeTheNext) {
  auto inner = std::make_shared<RecordingAdapter>("inner");
  inner->fail_init(true);
  auto clock = std::make_shared<ManualClock>();
  Batching batching(inner, {.max_size = 100, .linger = 1h, .clock = clock});

  ASSERT_TRUE(deliver_now(batching, make_events(3)).ok());
  const Status first = batching.flush(emissions::Deadline::max());
  EXPECT_EQ(first, Errc::unavailable);
  EXPECT_THAT(first.message(), HasSubstr("init failed"));
  EXPECT_EQ(batching.failed(), 3U);
  EXPECT_EQ(inner->received(), 0U);

  inner->fail_init(false);
  ASSERT_TRUE(deliver_now(batching, make_events(2, 3)).ok());
  EXPECT_TRUE(batching.flush(emissions::Deadline::max()).ok());
  EXPECT_EQ(inner->inits(), 2);
  EXPECT_EQ(payload_indexes(*inner), (std::vector<int>{3, 4}));
}

TEST(BatchingTest, DrainReturnsTheInnersErrorFromFlush) {
  auto inner = std::make_shared<RecordingAdapter>("warehouse");
  inner->fail_next(1);
  auto clock = std::make_shared<ManualClock>();
  Emitter emitter(config_with(std::make_shared<Batching>(
      inner, BatchingOptions{.max_size = 100, .linger = 1h, .clock = clock})));
  commit_events(emitter, 5);
  const Status drained = emitter.drain(kDeadline);
  EXPECT_EQ(drained, Errc::unavailable);
  EXPECT_THAT(drained.message(), HasSubstr("warehouse"));

  commit_events(emitter, 5, 5);
  EXPECT_TRUE(emitter.drain(kDeadline).ok()) << "the error was reported once";
  EXPECT_EQ(payload_indexes(*inner), (std::vector<int>{5, 6, 7, 8, 9}));
}

TEST(BatchingTest, NameIsTheInnersName) {
  auto inner = std::make_shared<RecordingAdapter>("kafka.orders");
  Batching batching(inner);
  EXPECT_EQ(batching.name(), "kafka.orders");
  Emitter emitter(config_with(std::make_shared<Batching>(inner)));
  EXPECT_EQ(emitter.stats().adapters.at(0).name, "kafka.orders");
}

TEST(BatchingTest, InterestedDelegatesToTheInner) {
  auto inner = std::make_shared<RecordingAdapter>("inner");
  inner->set_filter([](const Event& e) { return e.payload["i"].get<int>() % 2 == 0; });
  auto batching = std::make_shared<Batching>(inner);
  const std::vector<Event> events = make_events(2);
  EXPECT_TRUE(batching->interested(events[0]));
  EXPECT_FALSE(batching->interested(events[1]));

  Emitter emitter(config_with(batching));
  commit_events(emitter, 6);
  ASSERT_TRUE(emitter.drain(kDeadline).ok());
  EXPECT_EQ(payload_indexes(*inner), (std::vector<int>{0, 2, 4}));
  EXPECT_EQ(emitter.stats().adapters.at(0).filtered, 3U);
}

TEST(BatchingTest, InvalidOptionsThrowConfigErrorNamingTheFieldAndValue) {
  auto inner = std::make_shared<RecordingAdapter>("inner");
  auto message = [](const std::function<void()>& construct) -> std::string {
    try {
      construct();
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "no ConfigError";
  };
  EXPECT_EQ(message([&] { Batching b(nullptr); }),
            "Batching's inner adapter must be non-null (got nullptr)");
  EXPECT_EQ(message([&] { Batching b(inner, {.max_size = 0}); }),
            "BatchingOptions.max_size must be in [1, 16777216] (got 0)");
  EXPECT_EQ(message([&] { Batching b(inner, {.max_size = kMaxBufferSize + 1}); }),
            "BatchingOptions.max_size must be in [1, 16777216] (got 16777217)");
  EXPECT_EQ(message([&] { Batching b(inner, {.linger = -5ms}); }),
            "BatchingOptions.linger must be in [0 ms, 86400000 ms] (got -5 ms)");
  EXPECT_EQ(message([&] { Batching b(inner, {.linger = 24h + 1ms}); }),
            "BatchingOptions.linger must be in [0 ms, 86400000 ms] (got 86400001 ms)");
  EXPECT_EQ(message([&] { Batching b(inner, {.insert_timeout = -1ms}); }),
            "BatchingOptions.insert_timeout must be in [0 ms, 86400000 ms] (got -1 ms)");
  EXPECT_EQ(message([&] { Batching b(inner, {.insert_timeout = 25h}); }),
            "BatchingOptions.insert_timeout must be in [0 ms, 86400000 ms] (got 90000000 ms)");
  EXPECT_EQ(message([&] { Batching b(inner, {.flush_timeout = 0ms}); }),
            "BatchingOptions.flush_timeout must be in [1 ms, 86400000 ms] (got 0 ms)");
  EXPECT_EQ(message([&] { Batching b(inner, {.flush_timeout = 100h}); }),
            "BatchingOptions.flush_timeout must be in [1 ms, 86400000 ms] (got 360000000 ms)");
  // The bounds themselves are valid.
  EXPECT_EQ(message([&] {
              Batching b(inner, {.max_size = kMaxBufferSize,
                                 .linger = kMaxTimeout,
                                 .insert_timeout = kMaxTimeout,
                                 .flush_timeout = kMaxTimeout});
            }),
            "no ConfigError");
  EXPECT_EQ(message([&] {
              Batching b(
                  inner,
                  {.max_size = 1, .linger = 0ms, .insert_timeout = 0ms, .flush_timeout = 1ms});
            }),
            "no ConfigError");
}

TEST(BatchingTest, FullBufferTimesOutAndFailsTheWholeDelivery) {
  auto inner = std::make_shared<RecordingAdapter>("inner");
  inner->block();
  Batching batching(inner, {.max_size = 2, .linger = 1h, .insert_timeout = 20ms});
  ASSERT_TRUE(deliver_now(batching, make_events(2)).ok());  // full: goes to the inner
  ASSERT_TRUE(inner->wait_until_blocked_in_call(kDeadline));
  ASSERT_TRUE(deliver_now(batching, make_events(2, 2)).ok());  // fills the next batch
  EXPECT_EQ(deliver_now(batching, make_events(3, 4)), Errc::timeout);
  EXPECT_EQ(batching.rejected(), 3U);

  inner->unblock();
  EXPECT_TRUE(batching.flush(emissions::Deadline::max()).ok());
  EXPECT_EQ(payload_indexes(*inner), iota(4));
  EXPECT_EQ(batching.delivered(), 4U);
  EXPECT_EQ(batching.failed(), 0U);
}

// Records whether two inner calls ever overlapped or came from different threads.
class SerialCheckingAdapter final : public RecordingAdapter {
 public:
  using RecordingAdapter::RecordingAdapter;
  Status init() override {
    const Call call(*this);
    return RecordingAdapter::init();
  }
  Status handle_events(std::span<const Event> batch) override {
    const Call call(*this);
    return RecordingAdapter::handle_events(batch);
  }
  [[nodiscard]] bool overlapped() const { return overlapped_.load(); }
  [[nodiscard]] std::size_t calling_threads() const {
    std::lock_guard lock(mutex_);
    return threads_.size();
  }

 private:
  struct Call {
    explicit Call(SerialCheckingAdapter& a) : adapter(a) {
      if (adapter.in_call_.fetch_add(1) != 0) adapter.overlapped_.store(true);
      std::lock_guard lock(adapter.mutex_);
      if (std::find(adapter.threads_.begin(), adapter.threads_.end(), std::this_thread::get_id()) ==
          adapter.threads_.end()) {
        adapter.threads_.push_back(std::this_thread::get_id());
      }
    }
    ~Call() { adapter.in_call_.fetch_sub(1); }
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;
    SerialCheckingAdapter& adapter;
  };
  std::atomic<int> in_call_{0};
  std::atomic<bool> overlapped_{false};
  mutable std::mutex mutex_;
  std::vector<std::thread::id> threads_;
};

TEST(BatchingTest, ConcurrentCommitsArriveCompleteAndInPerThreadOrder) {
  constexpr int kThreads = 8;
  constexpr int kCommits = 100;
  constexpr int kPerCommit = 5;
  auto inner = std::make_shared<SerialCheckingAdapter>("inner");
  auto batching = std::make_shared<Batching>(inner, BatchingOptions{.max_size = 64, .linger = 1ms});
  Emitter emitter(config_with(batching));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&emitter, t] {
      for (int c = 0; c < kCommits; ++c) {
        Transaction tx = emitter.start();
        for (int k = 0; k < kPerCommit; ++k)
          ASSERT_TRUE(tx.emit("e", {{"t", t}, {"i", c * kPerCommit + k}}).ok());
        ASSERT_TRUE(tx.commit().ok());
      }
    });
  }
  for (auto& th : threads)
    th.join();
  ASSERT_TRUE(emitter.drain(kDeadline).ok());

  constexpr int kTotal = kThreads * kCommits * kPerCommit;
  EXPECT_EQ(inner->received(), static_cast<std::size_t>(kTotal));
  EXPECT_EQ(batching->delivered(), static_cast<std::uint64_t>(kTotal));
  std::vector<std::vector<int>> per_thread(kThreads);
  for (const auto& p : inner->payloads())
    per_thread.at(p["t"].get<std::size_t>()).push_back(p["i"].get<int>());
  for (int t = 0; t < kThreads; ++t)
    EXPECT_EQ(per_thread[static_cast<std::size_t>(t)], iota(kCommits * kPerCommit))
        << "thread " << t;
  for (std::size_t size : inner->batch_sizes())
    EXPECT_LE(size, 64U);
  EXPECT_FALSE(inner->overlapped());
  EXPECT_EQ(inner->calling_threads(), 1U) << "init and every batch come from the flusher";
}

// An inner adapter whose handle_events blocks until released (at most 5 s, so a broken
// test still ends), as a destination that stopped answering would.
class StuckAdapter final : public Adapter {
 public:
  std::string_view name() const override { return "stuck"; }
  Status handle_events(std::span<const Event> batch) override {
    std::unique_lock lock(mutex_);
    ++entered_;
    changed_.notify_all();
    changed_.wait_for(lock, 5s, [&] { return released_; });
    received_ += batch.size();
    return {};
  }
  Status terminate(Deadline) override {
    terminations_.fetch_add(1);
    return {};
  }
  void release() {
    {
      std::lock_guard lock(mutex_);
      released_ = true;
    }
    changed_.notify_all();
  }
  [[nodiscard]] bool wait_entered() {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, kDeadline, [&] { return entered_ > 0; });
  }
  [[nodiscard]] std::size_t received() const {
    std::lock_guard lock(mutex_);
    return received_;
  }
  [[nodiscard]] int terminations() const { return terminations_.load(); }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  bool released_ = false;
  int entered_ = 0;
  std::size_t received_ = 0;
  std::atomic<int> terminations_{0};
};

// Releases the stuck call at the end of a scope (also when an assertion returns early), so
// that the threads blocked in it can be joined.
class ReleaseAtExit {
 public:
  explicit ReleaseAtExit(StuckAdapter& inner) : inner_(inner) {}
  ~ReleaseAtExit() { inner_.release(); }
  ReleaseAtExit(const ReleaseAtExit&) = delete;
  ReleaseAtExit& operator=(const ReleaseAtExit&) = delete;

 private:
  StuckAdapter& inner_;
};

// A call that must return by its deadline: generous, since machines are noisy, yet far below
// the 5 s the inner stays stuck.
constexpr auto kDeadlineMargin = 2s;

// Three events in the stuck inner call, four more held behind it.
void fill_behind_a_stuck_call(Emitter& emitter, StuckAdapter& inner, const Batching& batching) {
  commit_events(emitter, 3);
  ASSERT_TRUE(inner.wait_entered());
  commit_events(emitter, 4, 3);
  ASSERT_TRUE(eventually([&] { return batching.held() == 7; }));
}

TEST(BatchingTest, DrainReturnsByItsDeadlineWhileTheInnerIsStuck) {
  auto inner = std::make_shared<StuckAdapter>();
  auto batching = std::make_shared<Batching>(inner, BatchingOptions{.max_size = 10, .linger = 0ms});
  Emitter emitter(config_with(batching));
  const ReleaseAtExit release(*inner);  // destroyed before the emitter, which joins
  fill_behind_a_stuck_call(emitter, *inner, *batching);

  const auto start = std::chrono::steady_clock::now();
  const Status drained = emitter.drain(100ms);
  EXPECT_LT(std::chrono::steady_clock::now() - start, kDeadlineMargin);
  EXPECT_EQ(drained, Errc::timeout) << drained.to_string();
  EXPECT_THAT(drained.message(), HasSubstr("2 deliveries unsettled"));
  // Batching's own flush says what it holds.
  const Status flushed = batching->flush(deadline_after(50ms));
  EXPECT_EQ(flushed, Errc::timeout);
  EXPECT_THAT(flushed.message(), HasSubstr("7 events still held"));
  EXPECT_THAT(flushed.message(), HasSubstr("3 in an inner call that has not returned"));
}

TEST(BatchingTest, ShutdownReturnsByItsDeadlineWhileTheInnerIsStuck) {
  auto inner = std::make_shared<StuckAdapter>();
  auto batching = std::make_shared<Batching>(inner, BatchingOptions{.max_size = 10, .linger = 0ms});
  {
    Emitter emitter(config_with(batching));
    const ReleaseAtExit release(*inner);
    fill_behind_a_stuck_call(emitter, *inner, *batching);

    const auto start = std::chrono::steady_clock::now();
    const Status shut = emitter.shutdown(100ms);
    EXPECT_LT(std::chrono::steady_clock::now() - start, kDeadlineMargin);
    EXPECT_EQ(shut, Errc::timeout) << shut.to_string();
    EXPECT_EQ(inner->terminations(), 0) << "the inner's terminate must wait for its last call";
    // The 4 held back and the 3 in the stuck call were settled by nothing: the shutdown
    // counts all 7 as dropped, once (the stuck call's late outcome changes nothing).
    const AdapterStats stats = emitter.stats().adapters.at(0);
    EXPECT_EQ(stats.dropped, 7U);
    EXPECT_EQ(stats.delivered + stats.failed, 0U);
    EXPECT_EQ(batching->dropped(), 4U);
  }
  // Released, then the emitter destroyed. The flusher thread is joined by Batching's
  // destructor, which terminates the inner now that its last call returned.
  batching.reset();
  EXPECT_EQ(inner->terminations(), 1);
  EXPECT_EQ(inner->received(), 3U) << "what was held at the deadline is dropped, not sent late";
}

TEST(BatchingTest, TerminateReturnsByItsDeadlineAndReportsWhatWasLeft) {
  auto inner = std::make_shared<StuckAdapter>();
  auto batching = std::make_unique<Batching>(inner, BatchingOptions{.max_size = 10, .linger = 0ms});
  {
    const ReleaseAtExit release(*inner);
    ASSERT_TRUE(deliver_now(*batching, make_events(3)).ok());
    ASSERT_TRUE(inner->wait_entered());
    ASSERT_TRUE(deliver_now(*batching, make_events(4, 3)).ok());

    const auto start = std::chrono::steady_clock::now();
    const Status terminated = batching->terminate(deadline_after(100ms));
    EXPECT_LT(std::chrono::steady_clock::now() - start, kDeadlineMargin);
    EXPECT_EQ(terminated, Errc::timeout) << terminated.to_string();
    EXPECT_THAT(terminated.message(), HasSubstr("4 events dropped"));
    EXPECT_THAT(terminated.message(), HasSubstr("3 in an inner call that has not returned"));
    EXPECT_EQ(inner->terminations(), 0);
    EXPECT_EQ(batching->dropped(), 4U);
    EXPECT_EQ(batching->failed(), 0U);
    EXPECT_EQ(deliver_now(*batching, make_events(1)), Errc::closed);
  }
  batching.reset();  // joins the flusher, then terminates the inner
  EXPECT_EQ(inner->terminations(), 1);
  EXPECT_EQ(inner->received(), 3U);
}

TEST(BatchingTest, FlushReturnsByItsDeadlineAndDeliversLaterOnceTheInnerRecovers) {
  auto inner = std::make_shared<StuckAdapter>();
  Batching batching(inner, {.max_size = 10, .linger = 0ms});
  const ReleaseAtExit release(*inner);
  ASSERT_TRUE(deliver_now(batching, make_events(3)).ok());
  ASSERT_TRUE(inner->wait_entered());
  ASSERT_TRUE(deliver_now(batching, make_events(2, 3)).ok());

  const auto start = std::chrono::steady_clock::now();
  const Status flushed = batching.flush(deadline_after(100ms));
  EXPECT_LT(std::chrono::steady_clock::now() - start, kDeadlineMargin);
  EXPECT_EQ(flushed, Errc::timeout) << flushed.to_string();
  EXPECT_THAT(flushed.message(), HasSubstr("5 events still held"));

  inner->release();
  EXPECT_TRUE(batching.flush(deadline_after(kDeadline)).ok());
  EXPECT_EQ(inner->received(), 5U);
  EXPECT_EQ(batching.delivered(), 5U);
}

}  // namespace
}  // namespace emissions::adapters

namespace emissions::adapters {
namespace {

TEST(BatchingAsyncInnerTest, AMixedInnerOutcomeFailsExactlyTheEventTheInnerFailed) {
  // JsonLines fails an event it cannot serialize alone and writes the other ten: Batching
  // settles each event as the inner did, so ten are delivered and the bad one fails.
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() /
      ("batching_async_inner_" + std::to_string(::getpid()) + ".jsonl");
  std::filesystem::remove(path);
  auto clock = std::make_shared<ManualClock>();  // never advanced: batches by size and drain
  auto batching =
      std::make_shared<Batching>(std::make_shared<JsonLines>(path.string()),
                                 BatchingOptions{.max_size = 4, .linger = 1h, .clock = clock});
  {
    Emitter emitter(config_with(batching));
    for (int i = 0; i < 10; ++i) {
      Transaction tx = emitter.start();
      ASSERT_TRUE(tx.emit("e", i).ok());
      if (i == 3) {
        ASSERT_TRUE(tx.emit("bad", {{"text", "invalid \xff utf-8"}}).ok());
      }
      ASSERT_TRUE(tx.commit().ok());
    }
    // Inner batches: [0 1 2 3] [bad 4 5 6] (both full) and [7 8 9] (by drain).
    // drain() also returns the bad batch's error when it had to wait for that batch.
    const Status drained = emitter.drain(10s);
    EXPECT_TRUE(drained.ok() || drained.code() == Errc::invalid_argument) << drained.to_string();
    const AdapterStats stats = emitter.stats().adapters.at(0);
    EXPECT_EQ(stats.delivered, 10u);
    EXPECT_EQ(stats.failed, 1u);
  }
  EXPECT_EQ(batching->delivered(), 10u) << "what the inner reported";
  EXPECT_EQ(batching->failed(), 1u);
  std::ifstream in(path);
  std::size_t lines = 0;
  for (std::string line; std::getline(in, line);)
    ++lines;
  EXPECT_EQ(lines, 10u);
  std::filesystem::remove(path);
}

// A synchronous inner that fails its n-th handle_events call (1-based).
class FailsCallAdapter final : public RecordingAdapter {
 public:
  FailsCallAdapter(std::string name, int failing_call)
      : RecordingAdapter(std::move(name)), failing_call_(failing_call) {}
  Status handle_events(std::span<const Event> batch) override {
    if (++calls_ == failing_call_)
      return Status(Errc::unavailable, "call " + std::to_string(calls_));
    return RecordingAdapter::handle_events(batch);
  }

 private:
  int calls_ = 0;  // only the flusher calls
  int failing_call_;
};

// Commits transactions of 3, 5 and 4 events (ids 0..11): with max_size 4 the inner gets
// [0-3] [4-7] [8-11], so the second inner batch holds the end of the second transaction
// only, and the first transaction's tail and the third spread over the others.
void commit_three_transactions(Emitter& emitter) {
  commit_events(emitter, 3, 0);
  commit_events(emitter, 5, 3);
  commit_events(emitter, 4, 8);
}

std::vector<int> indexes_of(const std::vector<Event>& events) {
  std::vector<int> out;
  for (const Event& e : events)
    out.push_back(e.payload.at("i").get<int>());
  return out;
}

TEST(BatchingSettlementTest, TheSecondOfThreeSyncInnerBatchesFailingFailsExactlyItsEvents) {
  auto inner = std::make_shared<FailsCallAdapter>("warehouse", 2);
  auto clock = std::make_shared<ManualClock>();
  auto batching = std::make_shared<Batching>(
      inner, BatchingOptions{.max_size = 4, .linger = 1h, .clock = clock});
  Config config = config_with(batching);
  config.pipeline.retry.max_attempts = 1;
  Emitter emitter(std::move(config));
  commit_three_transactions(emitter);
  ASSERT_TRUE(eventually([&] {
    const AdapterStats s = emitter.stats().adapters.at(0);
    return s.delivered + s.failed == 12;
  }));

  const AdapterStats stats = emitter.stats().adapters.at(0);
  EXPECT_EQ(stats.delivered, 8u);
  EXPECT_EQ(stats.failed, 4u);
  EXPECT_EQ(payload_indexes(*inner), (std::vector<int>{0, 1, 2, 3, 8, 9, 10, 11}));
  EXPECT_EQ(inner->batch_sizes(), (std::vector<std::size_t>{4, 4}));
  EXPECT_EQ(batching->delivered(), 8u);
  EXPECT_EQ(batching->failed(), 4u);
  EXPECT_EQ(batching->held(), 0u);
}

TEST(BatchingSettlementTest, TheSecondOfThreeAsyncInnerBatchesFailingFailsExactlyItsEvents) {
  auto inner = std::make_shared<FaultyAdapter>("kafka");
  inner->fail_batch(2, Status(Errc::unavailable, "broker down")).ack_late(1ms);
  auto clock = std::make_shared<ManualClock>();
  auto batching = std::make_shared<Batching>(
      inner, BatchingOptions{.max_size = 4, .linger = 1h, .clock = clock});
  Config config = config_with(batching);
  config.pipeline.retry.max_attempts = 1;
  Emitter emitter(std::move(config));
  commit_three_transactions(emitter);
  ASSERT_TRUE(eventually([&] {
    const AdapterStats s = emitter.stats().adapters.at(0);
    return s.delivered + s.failed == 12;
  }));

  const AdapterStats stats = emitter.stats().adapters.at(0);
  EXPECT_EQ(stats.delivered, 8u);
  EXPECT_EQ(stats.failed, 4u);
  EXPECT_EQ(indexes_of(inner->delivered()), (std::vector<int>{0, 1, 2, 3, 8, 9, 10, 11}));
  EXPECT_EQ(indexes_of(inner->failed()), (std::vector<int>{4, 5, 6, 7}));
  EXPECT_EQ(inner->batches(), 3u);
}

TEST(BatchingSettlementTest, AnAsyncInnerAckingFromItsOwnThreadDeliversEveryEventOnce) {
  auto inner = std::make_shared<FaultyAdapter>("late");
  inner->ack_late(2ms);
  auto batching = std::make_shared<Batching>(inner, BatchingOptions{.max_size = 16, .linger = 1ms});
  Emitter emitter(config_with(batching));
  for (int c = 0; c < 40; ++c)
    commit_events(emitter, 5, c * 5);
  ASSERT_TRUE(emitter.drain(kDeadline).ok());

  const AdapterStats stats = emitter.stats().adapters.at(0);
  EXPECT_EQ(stats.delivered, 200u);
  EXPECT_EQ(stats.failed, 0u);
  EXPECT_EQ(indexes_of(inner->delivered()), iota(200));
  EXPECT_EQ(batching->delivered(), 200u);
  for (const auto& r : inner->received())
    EXPECT_LE(r.event.payload.at("i").get<int>(), 199);
  EXPECT_EQ(inner->received().size(), 200u) << "each event handed to the inner once";
}

TEST(BatchingSettlementTest, AnEventIsAcknowledgedOnlyOnceItsInnerBatchSettled) {
  auto inner = std::make_shared<FaultyAdapter>("stalled");
  inner->stall();
  auto batching =
      std::make_shared<Batching>(inner, BatchingOptions{.max_size = 4, .flush_timeout = 30s});
  Emitter emitter(config_with(batching));
  commit_events(emitter, 4);
  ASSERT_TRUE(inner->wait_for_batches(1, kDeadline));

  EXPECT_EQ(emitter.drain(50ms), Errc::timeout);
  EXPECT_EQ(delivered_by_pipeline(emitter), 0u);
  EXPECT_EQ(batching->held(), 4u);

  EXPECT_EQ(inner->release(), 1u);
  ASSERT_TRUE(emitter.drain(kDeadline).ok());
  EXPECT_EQ(delivered_by_pipeline(emitter), 4u);
  EXPECT_EQ(batching->held(), 0u);
}

TEST(BatchingSettlementTest, AnInnerThatDoesNotSettleKeepsItsEventsUnsettledUntilItDoes) {
  // flush() waits at most flush_timeout for the inner's settlements; what the inner still
  // holds then is not failed (it may yet deliver it): it is settled when the inner settles.
  auto inner = std::make_shared<FaultyAdapter>("silent");
  inner->stall();
  auto batching =
      std::make_shared<Batching>(inner, BatchingOptions{.max_size = 2, .flush_timeout = 20ms});
  Emitter emitter(config_with(batching));
  commit_events(emitter, 2);
  ASSERT_TRUE(inner->wait_for_batches(1, kDeadline));

  const auto start = std::chrono::steady_clock::now();
  const Status flushed = batching->flush(deadline_after(kDeadline));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_EQ(flushed, Errc::timeout) << flushed.to_string();
  EXPECT_THAT(flushed.message(), HasSubstr("2 events handed to the inner not settled by it"));
  EXPECT_THAT(flushed.message(), HasSubstr("flush_timeout"));
  EXPECT_EQ(batching->held(), 2u);
  EXPECT_EQ(batching->failed(), 0u);
  EXPECT_EQ(emitter.stats().adapters.at(0).failed, 0u);

  EXPECT_EQ(inner->release(), 1u);
  ASSERT_TRUE(emitter.drain(kDeadline).ok());
  EXPECT_EQ(emitter.stats().adapters.at(0).delivered, 2u);
  EXPECT_EQ(emitter.stats().adapters.at(0).failed, 0u);
  EXPECT_EQ(batching->delivered(), 2u);
  EXPECT_EQ(batching->held(), 0u);
}

// Hands `events` to `batching` as a Delivery attached to no pipeline, whose settlement the
// test can read.
std::shared_ptr<detail::DeliveryState> hand_over(Batching& batching, std::vector<Event> events) {
  auto state = detail::make_detached_delivery(batching.name(), std::move(events));
  batching.deliver(detail::DeliveryAccess::make(state));
  return state;
}

TEST(BatchingSettlementTest, OutsideAPipelineWhatTerminateLeftFailsAsAbandonedOnDestruction) {
  auto inner = std::make_shared<StuckAdapter>();
  auto batching = std::make_unique<Batching>(inner, BatchingOptions{.max_size = 10, .linger = 0ms});
  std::shared_ptr<detail::DeliveryState> in_call;
  std::shared_ptr<detail::DeliveryState> left;
  {
    const ReleaseAtExit release(*inner);
    in_call = hand_over(*batching, make_events(3));
    ASSERT_TRUE(inner->wait_entered());
    left = hand_over(*batching, make_events(4, 3));
    EXPECT_EQ(batching->terminate(deadline_after(50ms)), Errc::timeout);
    EXPECT_EQ(batching->dropped(), 4U);
    EXPECT_EQ(left->unsettled.load(), 4U) << "left for a pipeline's shutdown to count";
  }
  batching.reset();  // joins the released call, which settles its 3; abandons the 4 left
  EXPECT_EQ(in_call->delivered.load(), 3U);
  EXPECT_EQ(left->unsettled.load(), 0U);
  EXPECT_EQ(left->failed.load(), 4U);
  EXPECT_EQ(left->first_error.message(), "delivery abandoned");
  EXPECT_EQ(inner->received(), 3U);
}

TEST(BatchingSettlementTest, OneDeliverySpreadOverTwoInnerBatchesIsSettledPerEvent) {
  auto inner = std::make_shared<FaultyAdapter>("inner");
  inner->fail_batch(1, Status(Errc::unavailable, "first inner batch"));
  auto clock = std::make_shared<ManualClock>();
  Batching batching(inner, {.max_size = 3, .linger = 1h, .clock = clock});
  const std::shared_ptr<detail::DeliveryState> state = hand_over(batching, make_events(5));
  (void)batching.flush(deadline_after(kDeadline));  // the first batch's error, or ok
  ASSERT_TRUE(eventually([&] { return state->unsettled.load() == 0; }));
  EXPECT_EQ(state->failed.load(), 3U);
  EXPECT_EQ(state->delivered.load(), 2U);
  EXPECT_EQ(state->first_error.message(), "first inner batch");
  EXPECT_EQ(indexes_of(inner->delivered()), (std::vector<int>{3, 4}));
}

bool is_event(const Event& e, int i) {
  return e.payload.is_object() && e.payload.contains("i") && e.payload["i"].get<int>() == i;
}

TEST(BatchingSettlementTest, OneEventOfTenFailedByAnAsyncInnerFailsAloneWithItsStatus) {
  // One Delivery of ten events, one inner batch; the inner (acking from its own thread)
  // fails the fifth event only: exactly that one fails, with the inner's Status for it.
  auto inner = std::make_shared<FaultyAdapter>("inner");
  inner
      ->fail_events([](const Event& e) { return is_event(e, 4); },
                    Status(Errc::invalid_argument, "poison 4"))
      .ack_late(1ms);
  auto clock = std::make_shared<ManualClock>();
  Batching batching(inner, {.max_size = 10, .linger = 1h, .clock = clock});
  const std::shared_ptr<detail::DeliveryState> state = hand_over(batching, make_events(10));
  ASSERT_TRUE(eventually([&] { return state->unsettled.load() == 0; }));
  EXPECT_EQ(state->delivered.load(), 9u);
  EXPECT_EQ(state->failed.load(), 1u);
  EXPECT_EQ(state->first_error, Errc::invalid_argument);
  EXPECT_EQ(state->first_error.message(), "poison 4");
  for (std::size_t i = 0; i < 10; ++i)
    EXPECT_TRUE(state->is_settled(i)) << i;
  EXPECT_EQ(batching.delivered(), 9u);
  EXPECT_EQ(batching.failed(), 1u);
  EXPECT_EQ(batching.held(), 0u);
  EXPECT_EQ(inner->batches(), 1u);
  EXPECT_EQ(indexes_of(inner->failed()), (std::vector<int>{4}));
}

TEST(BatchingSettlementTest, InAPipelineOneFailedEventOfAnInnerBatchOfTwoDeliveriesFailsAlone) {
  // Two transactions of five events make one inner batch of ten; the inner fails event 7.
  auto inner = std::make_shared<FaultyAdapter>("inner");
  inner->fail_events([](const Event& e) { return is_event(e, 7); },
                     Status(Errc::invalid_argument, "poison 7"));
  auto clock = std::make_shared<ManualClock>();
  auto batching = std::make_shared<Batching>(
      inner, BatchingOptions{.max_size = 10, .linger = 1h, .clock = clock});
  Emitter emitter(config_with(batching));
  commit_events(emitter, 5, 0);
  commit_events(emitter, 5, 5);
  const Status drained = emitter.drain(kDeadline);
  EXPECT_TRUE(drained.ok() || drained.code() == Errc::invalid_argument) << drained.to_string();
  const AdapterStats stats = emitter.stats().adapters.at(0);
  EXPECT_EQ(stats.delivered, 9u);
  EXPECT_EQ(stats.failed, 1u);
  EXPECT_EQ(inner->batches(), 1u);
  EXPECT_EQ(indexes_of(inner->failed()), (std::vector<int>{7}));
  EXPECT_EQ(indexes_of(inner->delivered()), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 8, 9}));
}

TEST(BatchingSettlementTest, AnEventAnAsyncInnerFailedOnceIsRetriedAloneAndDeliveredOnce) {
  // The inner fails event 4 on its first attempt only (unavailable: retriable), from its own
  // thread. The pipeline retries exactly that event through Batching; the inner sees it
  // again as attempt 2, and every event ends delivered exactly once.
  auto inner = std::make_shared<FaultyAdapter>("inner");
  auto first_time = std::make_shared<std::atomic<bool>>(true);
  inner
      ->fail_events(
          [first_time](const Event& e) { return is_event(e, 4) && first_time->exchange(false); },
          Status(Errc::unavailable, "busy"))
      .ack_late(1ms);
  auto retry_clock = std::make_shared<ManualClock>();
  auto batching = std::make_shared<Batching>(inner, BatchingOptions{.max_size = 10, .linger = 0ms});
  Config config = config_with(batching);
  config.pipeline.retry = {.max_attempts = 3, .initial_backoff = std::chrono::milliseconds(10)};
  config.clock = retry_clock;
  Emitter emitter(std::move(config));
  commit_events(emitter, 10);
  ASSERT_TRUE(eventually([&] {
    retry_clock->advance(std::chrono::milliseconds(10));
    return emitter.stats().adapters.at(0).delivered == 10;
  }));
  ASSERT_TRUE(emitter.drain(kDeadline).ok());

  const AdapterStats stats = emitter.stats().adapters.at(0);
  EXPECT_EQ(stats.delivered, 10u);
  EXPECT_EQ(stats.failed, 0u);
  EXPECT_EQ(stats.retried, 1u);
  std::vector<int> delivered = indexes_of(inner->delivered());
  std::sort(delivered.begin(), delivered.end());
  EXPECT_EQ(delivered, iota(10)) << "each event delivered exactly once";
  EXPECT_EQ(indexes_of(inner->failed()), (std::vector<int>{4}));
  const std::vector<emissions::testing::ReceivedEvent> received = inner->received();
  ASSERT_EQ(received.size(), 11u);
  for (std::size_t k = 0; k < 10; ++k)
    EXPECT_EQ(received[k].attempt, 1u) << k;
  EXPECT_TRUE(is_event(received[10].event, 4));
  EXPECT_EQ(received[10].attempt, 2u) << "the inner's attempt is its events' highest";
  EXPECT_EQ(batching->delivered(), 10u);
  EXPECT_EQ(batching->failed(), 1u);
}

}  // namespace
}  // namespace emissions::adapters
