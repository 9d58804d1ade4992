// The Batching adapter: full batches by size, partial ones by linger, drain and shutdown,
// the inner's errors and restarts, delegation, options, backpressure and concurrency.
#include "emissions/adapters/batching.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "emissions/clock.hpp"
#include "emissions/emitter.hpp"
#include "emissions/event.hpp"
#include "recording_adapter.hpp"

namespace emissions::adapters {
namespace {

using test_support::RecordingAdapter;
using test_support::TelemetryRecorder;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

// Generous: only reached when the behaviour under test is broken.
constexpr auto kDeadline = 10s;

Config config_with(std::shared_ptr<Adapter> adapter) {
  Config config;
  config.make_default = false;
  config.add_adapter(std::move(adapter));
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

// Events the pipeline has handed to the adapter in slot 0 (and Batching accepted).
std::uint64_t accepted_by_pipeline(const Emitter& emitter) {
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
  Emitter emitter(config_with(std::make_shared<Batching>(
      inner, BatchingOptions{.max_size = 100, .linger = 50ms, .clock = clock})));
  for (int c = 0; c < 100; ++c)
    commit_events(emitter, 10, c * 10);

  ASSERT_TRUE(inner->wait_for_received(1000, kDeadline));
  EXPECT_EQ(inner->batch_sizes(), std::vector<std::size_t>(10, 100));
  EXPECT_EQ(payload_indexes(*inner), iota(1000));
}

TEST(BatchingTest, LingerDeliversAPartialBatchWithoutDrain) {
  auto inner = std::make_shared<RecordingAdapter>("inner");
  auto clock = std::make_shared<ManualClock>();
  Emitter emitter(config_with(std::make_shared<Batching>(
      inner, BatchingOptions{.max_size = 100, .linger = 50ms, .clock = clock})));
  commit_events(emitter, 3);
  ASSERT_TRUE(eventually([&] { return accepted_by_pipeline(emitter) == 3; }));
  EXPECT_EQ(inner->received(), 0U) << "time has not moved: the batch must still be lingering";

  clock->advance(50ms);
  ASSERT_TRUE(inner->wait_for_received(3, kDeadline));
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
    ASSERT_TRUE(batching.handle_events(events).ok());
    EXPECT_EQ(inner->received(), 0U);
  }
  EXPECT_EQ(inner->received(), 5U);
  EXPECT_EQ(inner->terminations(), 1);
}

TEST(BatchingTest, HandleEventsAfterTerminateIsClosedAndCounted) {
  auto inner = std::make_shared<RecordingAdapter>("inner");
  Batching batching(inner, {.max_size = 10});
  (void)batching.terminate(emissions::Deadline::max());
  const std::vector<Event> events = make_events(2);
  EXPECT_EQ(batching.handle_events(events), Errc::closed);
  EXPECT_EQ(batching.rejected(), 2U);
  EXPECT_TRUE(batching.flush(emissions::Deadline::max()).ok()) << "nothing is held after terminate";
  EXPECT_EQ(inner->terminations(), 1);
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
  // The pipeline counted every event as delivered to Batching.
  ASSERT_TRUE(emitter.drain(kDeadline).ok());
  EXPECT_EQ(emitter.stats().adapters.at(0).delivered, 30U);
  EXPECT_EQ(inner->inits(), 1) << "an error status is not a restart";
}

TEST(BatchingTest, InnerThrowIsReportedAndInitRunsAgainBeforeTheNextBatch) {
  TelemetryRecorder recorder("batching-throw", {kError});
  auto inner = std::make_shared<RecordingAdapter>("warehouse");
  inner->throw_next(1);
  auto clock = std::make_shared<ManualClock>();
  Batching batching(inner, {.max_size = 4, .linger = 1h, .clock = clock});
  EXPECT_EQ(inner->inits(), 0) << "init waits for the first batch";

  ASSERT_TRUE(batching.handle_events(make_events(4)).ok());
  ASSERT_TRUE(eventually([&] { return batching.failed() == 4; }));
  EXPECT_EQ(inner->inits(), 1);
  ASSERT_TRUE(batching.handle_events(make_events(4, 4)).ok());
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

  ASSERT_TRUE(batching.handle_events(make_events(3)).ok());
  const Status first = batching.flush(emissions::Deadline::max());
  EXPECT_EQ(first, Errc::unavailable);
  EXPECT_THAT(first.message(), HasSubstr("init failed"));
  EXPECT_EQ(batching.failed(), 3U);
  EXPECT_EQ(inner->received(), 0U);

  inner->fail_init(false);
  ASSERT_TRUE(batching.handle_events(make_events(2, 3)).ok());
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
  EXPECT_THAT(message([&] { Batching b(nullptr); }), HasSubstr("inner adapter must not be null"));
  EXPECT_THAT(message([&] { Batching b(inner, {.max_size = 0}); }),
              HasSubstr("max_size must be > 0 (got 0)"));
  EXPECT_THAT(message([&] { Batching b(inner, {.linger = -5ms}); }),
              HasSubstr("linger must be >= 0 (got -5ms)"));
  EXPECT_THAT(message([&] { Batching b(inner, {.insert_timeout = -1ms}); }),
              HasSubstr("insert_timeout must be >= 0 (got -1ms)"));
  EXPECT_THAT(message([&] { Batching b(inner, {.flush_timeout = 0ms}); }),
              HasSubstr("flush_timeout must be > 0 (got 0ms)"));
}

TEST(BatchingTest, FullBufferTimesOutAndRejectsTheWholeBatch) {
  auto inner = std::make_shared<RecordingAdapter>("inner");
  inner->block();
  Batching batching(inner, {.max_size = 2, .linger = 1h, .insert_timeout = 20ms});
  ASSERT_TRUE(batching.handle_events(make_events(2)).ok());  // full: goes to the inner
  ASSERT_TRUE(inner->wait_until_blocked_in_call(kDeadline));
  ASSERT_TRUE(batching.handle_events(make_events(2, 2)).ok());  // fills the next batch
  EXPECT_EQ(batching.handle_events(make_events(3, 4)), Errc::timeout);
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

// ---- adversarial review: a stuck inner adapter and the deadlines of drain and shutdown ----

// DISABLED: not fixed. Batching::flush(deadline) ignores its deadline: BatchBuffer::
// sync_flush() takes none (it is bounded only by flush_timeout, 60 s by default, on the
// buffer's clock). Fixing it needs a deadline-bounded sync_flush that unregisters its waiter
// on timeout (src/adapters/batching.cpp:85, include/emissions/batch_buffer.hpp:764).
TEST(BatchingTest, DISABLED_DrainReturnsByItsDeadlineWhileTheInnerIsStuck) {
  // adapter.hpp: flush(deadline) "must return by deadline". Batching::flush ignored it and
  // waited in BatchBuffer::sync_flush() for up to flush_timeout (60 s by default), so
  // drain(200ms) returned a minute later.
  auto inner = std::make_shared<RecordingAdapter>("inner");
  auto clock = std::make_shared<ManualClock>();  // only drain flushes
  Emitter emitter(config_with(std::make_shared<Batching>(
      inner, BatchingOptions{.max_size = 100, .linger = 1h, .clock = clock})));
  inner->block();
  commit_events(emitter, 3);
  const auto started = std::chrono::steady_clock::now();
  auto drained = std::async(std::launch::async, [&] { return emitter.drain(200ms); });
  const bool returned = drained.wait_for(2s) == std::future_status::ready;
  EXPECT_TRUE(returned) << "drain(200ms) still running after 2 s";
  inner->unblock();
  const Status result = drained.get();
  if (returned) {
    EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
    EXPECT_EQ(result.code(), Errc::timeout) << result.to_string();
  }
}

// DISABLED: not fixed. On top of flush (above), Batching::terminate(deadline) calls
// BatchBuffer::shutdown() with no timeout, deliberately ("the inner's terminate() must come
// after its last batch", src/adapters/batching.cpp:101): honouring the deadline needs a way
// to terminate the inner later (from the last flush, or ~Batching) once its call returns.
TEST(BatchingTest, DISABLED_ShutdownReturnsByItsDeadlineWhileTheInnerIsStuck) {
  // emitter.hpp: shutdown returns by its deadline (plus a few ms) even when an adapter is
  // stuck. Batching's flush (during shutdown's drain) and terminate() (BatchBuffer::
  // shutdown(), "unbounded") both waited for the inner's stuck call.
  auto inner = std::make_shared<RecordingAdapter>("inner");
  auto clock = std::make_shared<ManualClock>();
  Emitter emitter(config_with(std::make_shared<Batching>(
      inner, BatchingOptions{.max_size = 100, .linger = 1h, .clock = clock})));
  inner->block();
  commit_events(emitter, 3);
  auto down = std::async(std::launch::async, [&] { return emitter.shutdown(200ms); });
  const bool returned = down.wait_for(2s) == std::future_status::ready;
  EXPECT_TRUE(returned) << "shutdown(200ms) still running after 2 s";
  inner->unblock();
  const Status result = down.get();
  if (returned) {
    EXPECT_FALSE(result.ok());
  }
}

}  // namespace
}  // namespace emissions::adapters
