// Retries with backoff, head-of-line order and dead letters (AdapterOptions::retry,
// AdapterOptions::dead_letter). Every timing rule is driven by a ManualClock: nothing here
// sleeps to let a backoff pass.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "clock_driver.hpp"
#include "emissions/adapters/batching.hpp"
#include "emissions/adapters/json_lines.hpp"
#include "emissions/emissions.hpp"
#include "emissions/testing.hpp"
#include "recording_adapter.hpp"

namespace {

using namespace std::chrono_literals;
using emissions::Adapter;
using emissions::AdapterOptions;
using emissions::Config;
using emissions::ConfigError;
using emissions::Delivery;
using emissions::Emitter;
using emissions::Errc;
using emissions::Event;
using emissions::ManualClock;
using emissions::RetryPolicy;
using emissions::Status;
using emissions::Transaction;
using emissions::test_support::RecordingAdapter;
using emissions::test_support::TelemetryRecorder;
using emissions::testing::FaultyAdapter;

Config manual_config(const std::shared_ptr<ManualClock>& clock) {
  Config config;
  config.make_default = false;
  config.clock = clock;
  config.pipeline.retry = RetryPolicy{
      .max_attempts = 8, .initial_backoff = 100ms, .max_backoff = 30s, .multiplier = 2.0};
  return config;
}

Status commit(Emitter& emitter, const std::string& name, int count = 1) {
  Transaction tx = emitter.start();
  for (int i = 0; i < count; ++i) {
    if (Status s = tx.emit(emissions::EventName(name), i); !s.ok()) return s;
  }
  return tx.commit();
}

std::vector<std::string> names_of(const std::vector<emissions::testing::ReceivedEvent>& got) {
  std::vector<std::string> out;
  for (const auto& r : got)
    out.push_back(r.event.name.str());
  return out;
}

using emissions::test_support::ClockDriver;

const std::vector<std::string> kRetry{"emissions", "adapter", "retry"};

TEST(RetryTest, ARetriableFailureIsDeliveredAgainOnlyOnceItsBackoffHasPassed) {
  TelemetryRecorder retries("retry-once", {kRetry});
  auto clock = std::make_shared<ManualClock>();
  auto adapter = std::make_shared<FaultyAdapter>("flaky");
  adapter->fail_batch(1, Status(Errc::unavailable, "down"));
  Config config = manual_config(clock);
  config.add_adapter(adapter);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(commit(emitter, "order", 3).ok());
  ASSERT_TRUE(retries.wait_for(kRetry, 1, 10s));  // scheduled at time 0
  // The first retry waits d/2..d with d = initial_backoff = 100 ms: not before 50 ms.
  clock->advance(49ms);
  EXPECT_FALSE(adapter->wait_for_batches(2, 100ms));
  EXPECT_EQ(emitter.drain(50ms).code(), Errc::timeout);  // a waiting retry is not settled
  clock->advance(51ms);                                  // 100 ms: due whatever the jitter drew
  ASSERT_TRUE(adapter->wait_for_batches(2, 10s));
  ASSERT_TRUE(emitter.drain(10s).ok());
  const auto received = adapter->received();
  ASSERT_EQ(received.size(), 6u);
  for (std::size_t i = 0; i < 3; ++i)
    EXPECT_EQ(received[i].attempt, 1u);
  for (std::size_t i = 3; i < 6; ++i)
    EXPECT_EQ(received[i].attempt, 2u);
  EXPECT_EQ(adapter->delivered().size(), 3u);
  const auto stats = emitter.stats().adapters[0];
  EXPECT_EQ(stats.received, 3u);
  EXPECT_EQ(stats.delivered, 3u);
  EXPECT_EQ(stats.failed, 0u);
  EXPECT_EQ(stats.retried, 3u);
}

TEST(RetryTest, ACodeThatIsNotRetriableFailsForGoodAtOnce) {
  auto clock = std::make_shared<ManualClock>();
  auto adapter = std::make_shared<FaultyAdapter>("strict");
  adapter->fail_batch(1, Status(Errc::invalid_argument, "bad payload"));
  Config config = manual_config(clock);
  config.add_adapter(adapter);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(commit(emitter, "order", 2).ok());
  ASSERT_TRUE(emitter.drain(10s).ok());  // no clock advance needed
  const auto stats = emitter.stats().adapters[0];
  EXPECT_EQ(stats.failed, 2u);
  EXPECT_EQ(stats.retried, 0u);
  EXPECT_EQ(adapter->batches(), 1u);
}

TEST(RetryTest, AfterMaxAttemptsTheEventsFailForGood) {
  auto clock = std::make_shared<ManualClock>();
  auto adapter = std::make_shared<FaultyAdapter>("down");
  adapter->fail_every(1, Status(Errc::timeout, "no answer"));
  Config config = manual_config(clock);
  config.add_adapter(
      adapter,
      {.retry = RetryPolicy{
           .max_attempts = 3, .initial_backoff = 10ms, .max_backoff = 1s, .multiplier = 2.0}});
  Emitter emitter(std::move(config));
  ASSERT_TRUE(commit(emitter, "order", 2).ok());
  {
    ClockDriver driver(clock, 50ms);
    ASSERT_TRUE(emitter.drain(10s).ok());
  }
  EXPECT_EQ(adapter->batches(), 3u);
  const auto received = adapter->received();
  ASSERT_EQ(received.size(), 6u);
  EXPECT_EQ(received[5].attempt, 3u);
  const auto stats = emitter.stats().adapters[0];
  EXPECT_EQ(stats.failed, 2u);
  EXPECT_EQ(stats.retried, 4u);  // 2 events, each delivered again twice
  EXPECT_EQ(stats.received, stats.delivered + stats.failed + stats.filtered + stats.dropped);
}

TEST(RetryTest, BackoffGrowsByTheMultiplierAndIsCappedByMaxBackoff) {
  TelemetryRecorder retries("retry-growth", {kRetry});
  auto clock = std::make_shared<ManualClock>();
  auto adapter = std::make_shared<FaultyAdapter>("down");
  adapter->fail_every(1, Status(Errc::unavailable, "down"));
  Config config = manual_config(clock);
  config.add_adapter(
      adapter,
      {.retry = RetryPolicy{
           .max_attempts = 0, .initial_backoff = 100ms, .max_backoff = 300ms, .multiplier = 2.0}});
  Emitter emitter(std::move(config));
  ASSERT_TRUE(commit(emitter, "order", 1).ok());
  // Attempt k+1 waits [d/2, d] with d = min(300, 100 * 2^(k-1)) ms: 100, 200, 300, 300.
  const std::chrono::milliseconds caps[] = {100ms, 200ms, 300ms, 300ms};
  for (std::size_t k = 0; k < 4; ++k) {
    ASSERT_TRUE(retries.wait_for(kRetry, k + 1, 10s));  // scheduled: the clock may move
    clock->advance(caps[k] / 2 - 1ms);
    EXPECT_FALSE(adapter->wait_for_batches(k + 2, 30ms)) << "attempt " << k + 2 << " too early";
    clock->advance(caps[k] / 2 + 1ms);
    ASSERT_TRUE(adapter->wait_for_batches(k + 2, 10s)) << "attempt " << k + 2 << " never came";
  }
  // max_attempts = 0 retries until shutdown, which counts the waiting event as dropped.
  EXPECT_EQ(emitter.shutdown(100ms).code(), Errc::timeout);
  const auto stats = emitter.stats().adapters[0];
  EXPECT_EQ(stats.dropped, 1u);
  EXPECT_EQ(stats.failed, 0u);
  EXPECT_EQ(stats.retried, 4u);
  EXPECT_EQ(stats.received, stats.delivered + stats.failed + stats.filtered + stats.dropped);
}

// Fails each event's first delivery with unavailable after asking for `retry_after`.
class RetryAfterAdapter final : public emissions::AsyncAdapter {
 public:
  explicit RetryAfterAdapter(std::chrono::milliseconds after) : after_(after) {}
  std::string_view name() const override { return "retry-after"; }
  void deliver(Delivery delivery) override {
    calls_.fetch_add(1);
    if (delivery.attempt() == 1) {
      delivery.retry_after(after_);
      delivery.fail(Status(Errc::unavailable, "429"));
    } else {
      delivery.ack();
    }
  }
  std::atomic<int> calls_{0};

 private:
  std::chrono::milliseconds after_;
};

TEST(RetryTest, RetryAfterIsALowerBoundOnTheDelayEvenAboveMaxBackoff) {
  TelemetryRecorder retries("retry-after", {kRetry});
  auto clock = std::make_shared<ManualClock>();
  auto adapter = std::make_shared<RetryAfterAdapter>(10s);
  Config config = manual_config(clock);
  config.add_adapter(
      adapter,
      {.retry = RetryPolicy{
           .max_attempts = 2, .initial_backoff = 10ms, .max_backoff = 20ms, .multiplier = 2.0}});
  Emitter emitter(std::move(config));
  ASSERT_TRUE(commit(emitter, "order", 1).ok());
  ASSERT_TRUE(retries.wait_for(kRetry, 1, 10s));
  clock->advance(9s);
  EXPECT_EQ(emitter.drain(100ms).code(), Errc::timeout);
  EXPECT_EQ(adapter->calls_.load(), 1);
  clock->advance(1s);
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(adapter->calls_.load(), 2);
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 1u);
}

TEST(RetryTest, ARetriedEventIsDeliveredBeforeLaterCommitsOfItsConsumer) {
  TelemetryRecorder retries("retry-order", {kRetry});
  auto clock = std::make_shared<ManualClock>();
  auto adapter = std::make_shared<FaultyAdapter>("ordered");
  adapter->fail_batch(1, Status(Errc::unavailable, "down"));
  Config config = manual_config(clock);
  config.add_adapter(adapter);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(commit(emitter, "a", 2).ok());
  ASSERT_TRUE(retries.wait_for(kRetry, 1, 10s));
  ASSERT_TRUE(commit(emitter, "b", 2).ok());
  EXPECT_FALSE(adapter->wait_for_batches(2, 100ms));  // b waits behind a's retry
  clock->advance(100ms);
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(names_of(adapter->received()),
            (std::vector<std::string>{"a", "a", "a", "a", "b", "b"}));
}

TEST(RetryTest, WithPartitionsOnlyTheFailedEventsConsumerWaits) {
  TelemetryRecorder retries("retry-partitions", {kRetry});
  auto clock = std::make_shared<ManualClock>();
  auto adapter = std::make_shared<FaultyAdapter>("parted");
  // Partition 0 (even payloads) fails its first delivery.
  adapter->fail_batch(1, Status(Errc::unavailable, "down"));
  Config config = manual_config(clock);
  config.add_adapter(adapter, {.concurrency = 2, .partition_by = [](const Event& e) {
                                 return e.payload.get<std::uint64_t>();
                               }});
  Emitter emitter(std::move(config));
  {
    Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit("even", 0).ok());
    ASSERT_TRUE(tx.commit().ok());
  }
  ASSERT_TRUE(adapter->wait_for_batches(1, 10s));
  {
    Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit("odd", 1).ok());
    ASSERT_TRUE(tx.commit().ok());
  }
  // The odd partition's consumer goes on while the even one waits for its retry.
  ASSERT_TRUE(adapter->wait_for_batches(2, 10s));
  ASSERT_TRUE(adapter->wait_for_settled(10s));
  ASSERT_EQ(adapter->delivered().size(), 1u);
  EXPECT_EQ(adapter->delivered()[0].name.str(), "odd");
  ASSERT_TRUE(retries.wait_for(kRetry, 1, 10s));
  clock->advance(100ms);
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(adapter->delivered().size(), 2u);
  EXPECT_EQ(emitter.stats().adapters[0].retried, 1u);
}

// Known bugs (disabled until fixed; run with --gtest_also_run_disabled_tests). The consumer
// checks for waiting retries only at the top of its loop (src/pipeline/consumer.cpp,
// Core::run_consumer), not before each hand-over in Core::deliver: so the rest of a batch
// it is cutting into runs, and a batch it took while waiting in deliver_async() for room in
// its window, are handed before a retry that became due in the meantime.

// Head-of-line within one commit: with max_demand 1 the commit is two runs.
TEST(RetryTest, ARetriedEventIsDeliveredBeforeTheRestOfItsCommit) {
  TelemetryRecorder retries("retry-runs", {kRetry});
  auto clock = std::make_shared<ManualClock>();
  auto adapter = std::make_shared<FaultyAdapter>("runs");
  adapter->fail_batch(1, Status(Errc::unavailable, "down"));
  Config config = manual_config(clock);
  config.add_adapter(adapter, {.max_demand = 1});
  Emitter emitter(std::move(config));
  Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("first", 1).ok());
  ASSERT_TRUE(tx.emit("second", 2).ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(retries.wait_for(kRetry, 1, 10s));
  clock->advance(100ms);
  ASSERT_TRUE(emitter.drain(10s).ok());
  // Today: first, second, first.
  EXPECT_EQ(names_of(adapter->received()), (std::vector<std::string>{"first", "first", "second"}));
}

// The same with partitions: one key's events are separate runs when another key's event
// sits between them in the commit, and lose their order on a retry.
TEST(RetryTest, PerKeyOrderWithinACommitSurvivesARetry) {
  TelemetryRecorder retries("retry-runs-key", {kRetry});
  auto clock = std::make_shared<ManualClock>();
  auto adapter = std::make_shared<FaultyAdapter>("keyed");
  adapter->fail_events([](const Event& e) { return e.name.str() == "created"; },
                       Status(Errc::unavailable, "down"));
  Config config = manual_config(clock);
  config.add_adapter(
      adapter,
      {.concurrency = 2,
       .partition_by = [](const Event& e) { return e.payload.at("customer").get<std::uint64_t>(); },
       .retry = RetryPolicy{.max_attempts = 2, .initial_backoff = 100ms}});
  Emitter emitter(std::move(config));
  Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("created", {{"customer", 2}}).ok());
  ASSERT_TRUE(tx.emit("other", {{"customer", 1}}).ok());
  ASSERT_TRUE(tx.emit("paid", {{"customer", 2}}).ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(retries.wait_for(kRetry, 1, 10s));
  clock->advance(100ms);
  ASSERT_TRUE(emitter.drain(10s).ok());
  std::vector<std::string> customer2;
  for (const auto& r : adapter->received()) {
    if (r.event.payload.at("customer") == 2) customer2.push_back(r.event.name.str());
  }
  // Today: created, paid, created.
  EXPECT_EQ(customer2, (std::vector<std::string>{"created", "created", "paid"}));
}

// With max_in_flight 1 nothing but the failed delivery is in flight, yet the batch the
// consumer took while its window was full goes first.
TEST(RetryTest, ARetryIsNotOvertakenByABatchTakenWhileTheWindowWasFull) {
  TelemetryRecorder retries("retry-window", {kRetry});
  auto clock = std::make_shared<ManualClock>();
  auto adapter = std::make_shared<FaultyAdapter>("windowed");
  adapter->stall().fail_batch(1, Status(Errc::unavailable, "down"));
  Config config = manual_config(clock);
  config.add_adapter(adapter, {.max_in_flight = 1});
  Emitter emitter(std::move(config));
  ASSERT_TRUE(commit(emitter, "a", 1).ok());
  ASSERT_TRUE(commit(emitter, "b", 1).ok());
  // "a" is held in flight; the consumer takes "b" and waits for room in its window.
  ASSERT_TRUE(adapter->wait_for_batches(1, 10s));
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (emitter.stats().adapters[0].queued != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  ASSERT_EQ(emitter.stats().adapters[0].queued, 0u);
  ASSERT_EQ(adapter->release(), 1u);  // "a" fails with unavailable: a retry is scheduled
  ASSERT_TRUE(retries.wait_for(kRetry, 1, 10s));
  clock->advance(100ms);
  ASSERT_TRUE(emitter.drain(10s).ok());
  // Today: a, b, a.
  EXPECT_EQ(names_of(adapter->received()), (std::vector<std::string>{"a", "a", "b"}));
}

TEST(RetryTest, ASynchronousAdapterErrorIsRetriedToo) {
  auto clock = std::make_shared<ManualClock>();
  auto adapter = std::make_shared<RecordingAdapter>("sync");
  adapter->fail_next(1);  // unavailable
  Config config = manual_config(clock);
  config.add_adapter(adapter);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(commit(emitter, "order", 3).ok());
  {
    ClockDriver driver(clock, 50ms);
    ASSERT_TRUE(emitter.drain(10s).ok());
  }
  EXPECT_EQ(adapter->names().size(), 3u);
  const auto stats = emitter.stats().adapters[0];
  EXPECT_EQ(stats.delivered, 3u);
  EXPECT_EQ(stats.retried, 3u);
  EXPECT_EQ(stats.failed, 0u);
}

TEST(RetryTest, ARetryIsReportedWithItsDelayAttemptAndReason) {
  TelemetryRecorder rec("retry-telemetry", {{"emissions", "adapter", "retry"}});
  auto clock = std::make_shared<ManualClock>();
  auto adapter = std::make_shared<FaultyAdapter>("flaky");
  adapter->fail_batch(1, Status(Errc::overloaded, "busy"));
  Config config = manual_config(clock);
  config.add_adapter(adapter);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(commit(emitter, "order", 2).ok());
  ASSERT_TRUE(rec.wait_for(kRetry, 1, 10s));
  clock->advance(100ms);
  ASSERT_TRUE(emitter.drain(10s).ok());
  const auto records = rec.records({"emissions", "adapter", "retry"});
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].measurements["count"], 2);
  const auto delay = records[0].measurements["delay"].get<std::int64_t>();
  EXPECT_GE(delay, std::chrono::nanoseconds(50ms).count());
  EXPECT_LE(delay, std::chrono::nanoseconds(100ms).count());
  EXPECT_EQ(records[0].metadata["adapter"], "flaky");
  EXPECT_EQ(records[0].metadata["attempt"], 1);
  EXPECT_NE(records[0].metadata["reason"].get<std::string>().find("busy"), std::string::npos);
}

TEST(RetryTest, ShutdownKeepsRetryingUntilItsDeadlineThenDropsWhatIsLeft) {
  auto clock = std::make_shared<ManualClock>();
  auto adapter = std::make_shared<FaultyAdapter>("down");
  adapter->fail_every(1, Status(Errc::unavailable, "down"));
  Config config = manual_config(clock);
  config.add_adapter(adapter);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(commit(emitter, "order", 4).ok());
  ASSERT_TRUE(adapter->wait_for_batches(1, 10s));
  const auto started = std::chrono::steady_clock::now();
  const Status down = emitter.shutdown(200ms);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_EQ(down.code(), Errc::timeout);
  const auto stats = emitter.stats().adapters[0];
  EXPECT_EQ(stats.dropped, 4u);
  EXPECT_EQ(stats.failed, 0u);
  EXPECT_EQ(stats.received, 4u);
  EXPECT_EQ(stats.received, stats.delivered + stats.failed + stats.filtered + stats.dropped);
}

TEST(DeadLetterTest, AnEventThatFailsForGoodIsCopiedWithWhyAndWhen) {
  auto clock = std::make_shared<ManualClock>();
  auto adapter = std::make_shared<FaultyAdapter>("orders");
  adapter->fail_events([](const Event& e) { return e.name.str() == "poison"; },
                       Status(Errc::invalid_argument, "cannot parse"));
  auto dead = std::make_shared<FaultyAdapter>("orders.dead");
  Config config = manual_config(clock);
  config.add_adapter(adapter, {.dead_letter = dead});
  Emitter emitter(std::move(config));
  Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("fine", 1).ok());
  ASSERT_TRUE(tx.emit("poison", 2, {{"trace", "t-1"}}).ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(emitter.drain(10s).ok());
  const auto copies = dead->delivered();
  ASSERT_EQ(copies.size(), 1u);
  const Event& copy = copies[0];
  EXPECT_EQ(copy.name.str(), "poison");
  EXPECT_EQ(copy.payload, 2);
  EXPECT_EQ(copy.metadata["trace"], "t-1");
  const auto& why = copy.metadata["dead_letter"];
  EXPECT_EQ(why["adapter"], "orders");
  EXPECT_NE(why["reason"].get<std::string>().find("cannot parse"), std::string::npos);
  EXPECT_EQ(why["attempts"], 1);
  EXPECT_TRUE(why["first_failed_at"].is_string());
  EXPECT_EQ(why["first_failed_at"], why["last_failed_at"]);
  const auto stats = emitter.stats();
  ASSERT_EQ(stats.adapters.size(), 2u);
  EXPECT_EQ(stats.adapters[0].name, "orders");
  EXPECT_EQ(stats.adapters[0].failed, 1u);
  EXPECT_EQ(stats.adapters[0].delivered, 1u);
  EXPECT_EQ(stats.adapters[0].dead_lettered, 1u);
  EXPECT_EQ(stats.adapters[1].name, "orders.dead");
  EXPECT_EQ(stats.adapters[1].received, 1u);
  EXPECT_EQ(stats.adapters[1].delivered, 1u);
}

TEST(DeadLetterTest, OneDeadLetterServesSeveralAdaptersAndAFileOfThemCanBeReplayed) {
  const auto path =
      std::filesystem::temp_directory_path() /
      ("emissions-dead-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "-" +
       std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + ".jsonl");
  auto clock = std::make_shared<ManualClock>();
  auto a = std::make_shared<FaultyAdapter>("a");
  auto b = std::make_shared<FaultyAdapter>("b");
  a->fail_every(1, Status(Errc::unavailable, "a down"));
  b->fail_every(1, Status(Errc::unavailable, "b down"));
  auto dead = std::make_shared<emissions::adapters::JsonLines>(path.string());
  std::vector<Event> originals;
  {
    Config config = manual_config(clock);
    const AdapterOptions options{
        .retry =
            RetryPolicy{
                .max_attempts = 2, .initial_backoff = 10ms, .max_backoff = 10ms, .multiplier = 1.0},
        .dead_letter = dead};
    config.add_adapter(a, options).add_adapter(b, options);
    Emitter emitter(std::move(config));
    ASSERT_TRUE(commit(emitter, "order", 3).ok());
    {
      ClockDriver driver(clock, 10ms);
      ASSERT_TRUE(emitter.drain(10s).ok());
    }
    for (const auto& r : a->received()) {
      if (r.attempt == 1) originals.push_back(r.event);
    }
    const auto stats = emitter.stats();
    ASSERT_EQ(stats.adapters.size(), 3u);
    EXPECT_EQ(stats.adapters[0].dead_lettered, 3u);
    EXPECT_EQ(stats.adapters[1].dead_lettered, 3u);
    EXPECT_EQ(stats.adapters[2].received, 6u);
    EXPECT_EQ(stats.adapters[2].delivered, 6u);
  }
  std::vector<Event> back;
  ASSERT_TRUE(emissions::adapters::read_json_lines(path, back).ok());
  ASSERT_EQ(back.size(), 6u);
  std::size_t from_b = 0;
  for (const Event& e : back) {
    EXPECT_EQ(e.metadata["dead_letter"]["attempts"], 2);
    from_b += e.metadata["dead_letter"]["adapter"] == "b" ? 1U : 0U;
  }
  EXPECT_EQ(from_b, 3u);
  // Replayed through publish: same ids, same times.
  auto sink = std::make_shared<FaultyAdapter>("replay");
  Config config;
  config.make_default = false;
  config.add_adapter(sink);
  Emitter replay(std::move(config));
  ASSERT_TRUE(replay.publish(back).ok());
  ASSERT_TRUE(replay.drain(10s).ok());
  const auto got = sink->delivered();
  ASSERT_EQ(got.size(), 6u);
  for (std::size_t i = 0; i < 6; ++i)
    EXPECT_EQ(got[i].id, back[i].id);
  bool found = false;
  for (const Event& e : got)
    found = found || e.id == originals[0].id;
  EXPECT_TRUE(found);
  std::filesystem::remove(path);
}

TEST(RetryConfigTest, BadPoliciesAndDeadLettersAreConfigErrorsNamingTheField) {
  auto expect_error = [](Config config, const std::string& field) {
    config.make_default = false;
    try {
      Emitter emitter(std::move(config));
      ADD_FAILURE() << "no ConfigError for " << field;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  auto adapter = std::make_shared<RecordingAdapter>("one");
  {
    Config c;
    c.pipeline.retry.multiplier = std::nan("");
    expect_error(std::move(c), "pipeline.retry.multiplier");
  }
  {
    Config c;
    c.pipeline.retry.multiplier = 0.5;
    expect_error(std::move(c), "pipeline.retry.multiplier");
  }
  {
    Config c;
    c.handler_retry.initial_backoff = 0ms;
    expect_error(std::move(c), "handler_retry.initial_backoff");
  }
  {
    Config c;
    c.add_adapter(std::make_shared<RecordingAdapter>("x"));
    c.add_adapter(std::make_shared<RecordingAdapter>("y"));
    c.add_adapter(adapter, {.retry = RetryPolicy{.initial_backoff = 2s, .max_backoff = 1s}});
    expect_error(std::move(c), "adapters[2] ('one').retry.max_backoff");
  }
  {
    Config c;
    c.add_adapter(std::make_shared<FaultyAdapter>("async"), {.max_in_flight = 0});
    expect_error(std::move(c), "adapters[0] ('async').max_in_flight");
  }
  {
    Config c;
    auto other = std::make_shared<RecordingAdapter>("other");
    c.add_adapter(adapter, {.dead_letter = other});
    c.add_adapter(other);
    expect_error(std::move(c), "adapters[0].dead_letter");
  }
  {
    Config c;
    c.add_adapter(adapter, {.dead_letter = std::make_shared<RecordingAdapter>("one")});
    expect_error(std::move(c), "adapters[0].dead_letter.name()");
  }
}

TEST(SettlementTest, OnSettledIsCalledOnceWithThisCommitsCountsAfterItsRetries) {
  TelemetryRecorder retries("settlement-retry", {kRetry});
  auto clock = std::make_shared<ManualClock>();
  auto flaky = std::make_shared<FaultyAdapter>("flaky");
  flaky->fail_batch(1, Status(Errc::unavailable, "down"));
  auto picky = std::make_shared<RecordingAdapter>("picky");
  picky->set_filter([](const Event& e) { return e.payload.get<int>() != 0; });
  Config config = manual_config(clock);
  config.add_adapter(flaky).add_adapter(picky);
  Emitter emitter(std::move(config));
  std::atomic<int> calls{0};
  emissions::Settlement seen;
  std::mutex mutex;
  Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("order", 0).ok());
  ASSERT_TRUE(tx.emit("order", 1).ok());
  ASSERT_TRUE(tx.commit([&](const emissions::Settlement& s) {
                  std::lock_guard lock(mutex);
                  seen = s;
                  calls.fetch_add(1);
                }).ok());
  ASSERT_TRUE(retries.wait_for(kRetry, 1, 10s));
  EXPECT_EQ(calls.load(), 0);  // flaky's events wait for their retry
  clock->advance(100ms);
  ASSERT_TRUE(emitter.drain(10s).ok());
  ASSERT_EQ(calls.load(), 1);
  std::lock_guard lock(mutex);
  ASSERT_EQ(seen.adapters.size(), 2u);
  EXPECT_EQ(seen.adapters[0].name, "flaky");
  EXPECT_EQ(seen.adapters[0].delivered, 2u);
  EXPECT_EQ(seen.adapters[1].name, "picky");
  EXPECT_EQ(seen.adapters[1].delivered, 1u);
  EXPECT_EQ(seen.adapters[1].filtered, 1u);
}

TEST(SettlementTest, ARefusedCommitNeverCallsBackAndAnEmptyOneCallsBackAtOnce) {
  auto adapter = std::make_shared<RecordingAdapter>("one");
  Config config;
  config.make_default = false;
  config.add_adapter(adapter);
  Emitter emitter(std::move(config));
  std::atomic<int> calls{0};
  Transaction empty = emitter.start();
  ASSERT_TRUE(empty
                  .commit([&](const emissions::Settlement& s) {
                    EXPECT_EQ(s.adapters.size(), 1u);
                    calls.fetch_add(1);
                  })
                  .ok());
  EXPECT_EQ(calls.load(), 1);
  Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("order", 1).ok());
  ASSERT_TRUE(emitter.shutdown(5s).ok());
  EXPECT_EQ(tx.commit([&](const emissions::Settlement&) { calls.fetch_add(1); }).code(),
            Errc::closed);
  EXPECT_EQ(calls.load(), 1);
}

TEST(PublishEventsTest, EventsKeepTheirIdsAndTimesAndOneWithoutAnIdPublishesNothing) {
  auto sink = std::make_shared<FaultyAdapter>("sink");
  Config config;
  config.make_default = false;
  config.add_adapter(sink);
  Emitter emitter(std::move(config));
  Event good;
  good.name = emissions::EventName("order");
  good.id = emissions::EventId::generate();
  good.emitted_at = std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000));
  good.payload = {{"id", 7}};
  Event nameless_id = good;
  nameless_id.id = emissions::EventId();
  const Status bad = emitter.publish({good, nameless_id});
  EXPECT_EQ(bad.code(), Errc::invalid_argument);
  EXPECT_NE(bad.message().find("events[1]"), std::string::npos);
  std::atomic<int> settled{0};
  ASSERT_TRUE(emitter
                  .publish({good},
                           [&](const emissions::Settlement& s) {
                             EXPECT_EQ(s.adapters[0].delivered, 1u);
                             settled.fetch_add(1);
                           })
                  .ok());
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(settled.load(), 1);
  const auto got = sink->delivered();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, good.id);
  EXPECT_EQ(got[0].emitted_at, good.emitted_at);
  EXPECT_EQ(got[0].payload, good.payload);
  EXPECT_EQ(emitter.stats().committed, 1u);
}

}  // namespace

namespace {

// Blocks every invocation until released.
class GateHandler final : public emissions::Handler {
 public:
  std::vector<emissions::EventName> events() const override { return {"paid"}; }
  std::string_view name() const override { return "gate"; }
  emissions::HandlerResult handle_event(const Event&) override {
    std::unique_lock lock(mutex_);
    ++entered_;
    changed_.notify_all();
    changed_.wait(lock, [&] { return open_; });
    return emissions::HandlerResult::ok();
  }
  bool wait_entered(int n) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, 10s, [&] { return entered_ >= n; });
  }
  void open() {
    std::lock_guard lock(mutex_);
    open_ = true;
    changed_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  int entered_ = 0;
  bool open_ = false;
};

TEST(SettlementTest, HandlersSettleAnEventOnlyOnceItsInvocationsHaveFinished) {
  auto gate = std::make_shared<GateHandler>();
  auto sink = std::make_shared<RecordingAdapter>("sink");
  Config config;
  config.make_default = false;
  config.handler_concurrency = 2;
  config.add_adapter(sink).add_handler(gate);
  Emitter emitter(std::move(config));
  std::atomic<int> calls{0};
  emissions::Settlement seen;
  std::mutex mutex;
  Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("paid", 1).ok());
  ASSERT_TRUE(tx.emit("shipped", 2).ok());  // no handler wants it: settled when dispatched
  ASSERT_TRUE(tx.commit([&](const emissions::Settlement& s) {
                  std::lock_guard lock(mutex);
                  seen = s;
                  calls.fetch_add(1);
                }).ok());
  ASSERT_TRUE(gate->wait_entered(1));
  EXPECT_EQ(emitter.drain(100ms).code(), Errc::timeout);
  EXPECT_EQ(calls.load(), 0);  // the invocation of "paid" is still running
  gate->open();
  ASSERT_TRUE(emitter.drain(10s).ok());
  ASSERT_EQ(calls.load(), 1);
  std::lock_guard lock(mutex);
  ASSERT_EQ(seen.adapters.size(), 2u);
  EXPECT_EQ(seen.adapters[0].name, "sink");
  EXPECT_EQ(seen.adapters[0].delivered, 2u);
  EXPECT_EQ(seen.adapters[1].name, "emissions.handlers");
  EXPECT_EQ(seen.adapters[1].delivered + seen.adapters[1].filtered, 2u);
}

}  // namespace

// Regression tests from the adversarial review of at-least-once delivery: each reproduced a
// defect (described above it) before its fix.
namespace {

template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return pred();
}

// DEFECT (lost wake-up, publish.cpp:325 + retry.cpp:311): a consumer that sleeps until its
// retry is due parks on the same Queue::wakeup as the idle consumers of its queue, and
// publish() wakes only one waiter (notify(1)). With concurrency > 1 (no partition_by) the
// one woken may be the retry sleeper, which goes back to sleep: the idle consumer never
// learns of the batch, which stays queued until some later commit (with a ManualClock, or a
// long backoff, forever). drain() then times out although a consumer was free.
TEST(RetryRegressionTest, ACommitIsTakenByAnIdleConsumerWhileAnotherOfItsPoolWaitsForARetry) {
  auto clock = std::make_shared<ManualClock>();
  auto adapter = std::make_shared<FaultyAdapter>("pool");
  adapter->fail_batch(1, Status(Errc::unavailable, "down"));
  TelemetryRecorder retries("review8-lost-wakeup", {kRetry});
  Config config = manual_config(clock);
  config.pipeline.idle_spin = 0us;  // park at once (the futex queue order decides)
  config.add_adapter(adapter, {.concurrency = 2});
  Emitter emitter(std::move(config));
  std::this_thread::sleep_for(50ms);  // both consumers parked
  ASSERT_TRUE(commit(emitter, "first").ok());
  ASSERT_TRUE(retries.wait_for(kRetry, 1, 5s));  // one consumer now sleeps on its retry
  std::this_thread::sleep_for(50ms);
  // Every later commit must reach the other (idle) consumer promptly.
  for (std::uint64_t i = 1; i <= 6; ++i) {
    ASSERT_TRUE(commit(emitter, "later").ok());
    EXPECT_TRUE(eventually([&] { return adapter->delivered().size() >= i; }, 1s))
        << "commit " << i << " of 'later' stayed queued while a consumer was idle";
    std::this_thread::sleep_for(20ms);  // let the consumer park again
  }
  clock->advance(1s);
}

// DEFECT (retry.cpp:125-133): a retry batch copies the events, their history, tracker and
// attempt, but not Batch::dead_letter_of. When the dead-letter adapter fails a copy with a
// retriable code and delivers it on the retry, credit_dead_letters finds nothing to credit:
// the source adapter's `dead_lettered` stays 0 although its dead letter was delivered.
TEST(RetryRegressionTest, ADeadLetterDeliveredOnItsRetryStillCountsAsDeadLettered) {
  auto clock = std::make_shared<ManualClock>();
  auto source = std::make_shared<FaultyAdapter>("source");
  source->fail_events([](const Event&) { return true; },
                      Status(Errc::invalid_argument, "rejected"));
  auto dlq = std::make_shared<FaultyAdapter>("dlq");
  dlq->fail_batch(1, Status(Errc::unavailable, "dlq briefly down"));
  TelemetryRecorder retries("review8-dlq-retry", {kRetry});
  Config config = manual_config(clock);
  config.add_adapter(source, {.dead_letter = dlq});
  Emitter emitter(std::move(config));
  ASSERT_TRUE(commit(emitter, "poison").ok());
  ASSERT_TRUE(retries.wait_for(kRetry, 1, 5s));  // the dead letter's retry
  clock->advance(1s);
  ASSERT_TRUE(dlq->wait_for_batches(2, 5s));
  ASSERT_TRUE(emitter.drain(5s).ok());
  const auto stats = emitter.stats();
  ASSERT_EQ(stats.adapters.size(), 2u);
  EXPECT_EQ(stats.adapters[1].name, "dlq");
  EXPECT_EQ(stats.adapters[1].delivered, 1u);
  EXPECT_EQ(stats.adapters[0].failed, 1u);
  EXPECT_EQ(stats.adapters[0].dead_lettered, 1u);  // 0 on main
}

// DEFECT (delivery.cpp, DeliveryState::settle): an asynchronous dead-letter adapter that
// acks one event of a delivery and then the rest with ack() credited the source adapter's
// `dead_lettered` for every event of the delivery on the ack(), including the one already
// credited: 4 dead letters counted for 3.
TEST(RetryRegressionTest, ADeadLetterAckedPartlyThenWhollyCountsEachEventOnce) {
  class AckFirstThenAll final : public emissions::AsyncAdapter {
   public:
    [[nodiscard]] std::string_view name() const override { return "dlq"; }
    void deliver(Delivery delivery) override {
      delivery.ack(0);
      delivery.ack();
    }
  };
  auto clock = std::make_shared<ManualClock>();
  auto source = std::make_shared<FaultyAdapter>("source");
  source->fail_events([](const Event&) { return true; },
                      Status(Errc::invalid_argument, "rejected"));
  Config config = manual_config(clock);
  config.add_adapter(source, {.dead_letter = std::make_shared<AckFirstThenAll>()});
  Emitter emitter(std::move(config));
  ASSERT_TRUE(commit(emitter, "poison", 3).ok());
  ASSERT_TRUE(emitter.drain(5s).ok());
  const auto stats = emitter.stats();
  ASSERT_EQ(stats.adapters.size(), 2u);
  EXPECT_EQ(stats.adapters[1].delivered, 3u);
  EXPECT_EQ(stats.adapters[0].failed, 3u);
  EXPECT_EQ(stats.adapters[0].dead_lettered, 3u);  // 4 before the fix
}

// DEFECT (lifecycle.cpp:329-361, discard_queued): what shutdown (and finish) discard from
// the queues is counted dropped on the lane but never reported to the batch's
// SettlementTracker, so a commit(on_settled) whose events were still queued when shutdown
// gave up never gets its callback, although every event of it is settled (dropped).
TEST(RetryRegressionTest, OnSettledFiresForACommitThatShutdownDiscardedFromTheQueue) {
  auto adapter = std::make_shared<RecordingAdapter>("slow");
  Config config;
  config.make_default = false;
  config.pipeline.retry = RetryPolicy{.max_attempts = 1};
  config.add_adapter(adapter);
  std::atomic<int> calls{0};
  std::atomic<std::uint64_t> dropped{0};
  {
    Emitter emitter(std::move(config));
    adapter->block();
    ASSERT_TRUE(commit(emitter, "first").ok());
    ASSERT_TRUE(adapter->wait_until_blocked_in_call(5s));  // the consumer is stuck in handle_events
    Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit("second", 1).ok());
    ASSERT_TRUE(tx.commit([&](const emissions::Settlement& s) {
                    dropped.store(s.adapters.at(0).dropped);
                    calls.fetch_add(1);
                  }).ok());
    EXPECT_EQ(emitter.shutdown(100ms).code(), Errc::timeout);
    EXPECT_EQ(emitter.stats().adapters[0].dropped, 1u);  // counted on the lane...
    EXPECT_EQ(calls.load(), 1);                          // ...but never settled: 0 on main
    adapter->unblock();
  }
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(dropped.load(), 1u);
}

// DEFECT (batching.cpp:374-441 + delivery_state.hpp:434): adapters::Batching hands its
// asynchronous inner a detached Delivery; a Retry-After the inner gives on it
// (Delivery::retry_after) is stored in the detached state and never forwarded to the
// pipeline's Deliveries, so the pipeline retries after its own short backoff, ignoring the
// server's hint (a 429 with Retry-After: 10 is retried after ~100 ms).
class RetryAfterInner final : public emissions::AsyncAdapter {
 public:
  std::string_view name() const override { return "inner"; }
  void deliver(Delivery delivery) override {
    if (calls.fetch_add(1) == 0) {
      delivery.retry_after(10s);
      delivery.fail(Status(Errc::overloaded, "429 Retry-After: 10"));
    } else {
      delivery.ack();
    }
  }
  std::atomic<int> calls{0};
};

TEST(RetryRegressionTest, RetryAfterGivenByBatchingsInnerDelaysThePipelinesRetry) {
  auto clock = std::make_shared<ManualClock>();
  auto inner = std::make_shared<RetryAfterInner>();
  auto batching = std::make_shared<emissions::adapters::Batching>(
      inner, emissions::adapters::BatchingOptions{.linger = 0ms});
  TelemetryRecorder retries("review8-batching-retry-after", {kRetry});
  Config config = manual_config(clock);
  config.add_adapter(batching);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(commit(emitter, "req").ok());
  ASSERT_TRUE(retries.wait_for(kRetry, 1, 5s));
  clock->advance(1s);  // past the 100 ms backoff, well before the 10 s Retry-After
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(inner->calls.load(), 1) << "retried before the inner's Retry-After";
  clock->advance(10s);
  EXPECT_TRUE(eventually([&] { return inner->calls.load() == 2; }, 5s));
  EXPECT_TRUE(emitter.drain(5s).ok());
}

// DEFECT (retry.cpp:70-80, options.cpp:48-62): RetryPolicy durations have no upper bound
// (config.hpp promises one for every duration), and backoff() converts them to nanoseconds
// with duration_cast, which overflows: max_backoff = milliseconds::max() ("no cap") becomes
// a negative cap of -1 ms, every delay is negative, and each retry is made at once, without
// any backoff (signed overflow: UB, reported by UBSan). Either a ConfigError naming
// pipeline.retry.max_backoff, or a retry that waits for its backoff, is acceptable.
TEST(RetryRegressionTest, AHugeMaxBackoffIsAConfigErrorOrStillWaitsForTheBackoff) {
  auto clock = std::make_shared<ManualClock>();
  auto adapter = std::make_shared<FaultyAdapter>("flaky");
  adapter->fail_batch(1, Status(Errc::unavailable, "down"));
  Config config = manual_config(clock);
  config.pipeline.retry.max_backoff = std::chrono::milliseconds::max();
  config.add_adapter(adapter);
  std::unique_ptr<Emitter> emitter;
  try {
    emitter = std::make_unique<Emitter>(std::move(config));
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("pipeline.retry.max_backoff"), std::string::npos);
    return;
  }
  ASSERT_TRUE(commit(*emitter, "order").ok());
  // The clock never moves: a retry must not happen (initial_backoff is 100 ms).
  EXPECT_FALSE(adapter->wait_for_batches(2, 300ms)) << "retried at once, without backoff";
  clock->advance(1h);
}

// DEFECT (emitter.cpp:27-48): Emitter::publish always commits at cascade depth 0, even from a
// handler invocation. Its events are then neither limited by max_cascade_depth nor counted
// as a cascade (Core::cascade_commits_), so drain() ends its rounds before delivering them:
// a handler that republishes (a relay, a replayer) makes drain() return ok with the
// republished events still queued.
class Republisher final : public emissions::Handler {
 public:
  std::vector<emissions::EventName> events() const override { return {"in"}; }
  std::string_view name() const override { return "republisher"; }
  emissions::HandlerResult handle_event(const Event& event) override {
    Event out = event;
    out.name = "out";
    out.id = emissions::EventId::generate(std::chrono::system_clock::now());
    const Status s = emitter->publish({out});
    return s.ok() ? emissions::HandlerResult::ok() : emissions::HandlerResult::error(s.message());
  }
  Emitter* emitter = nullptr;
};

TEST(RetryRegressionTest, DrainWaitsForEventsAHandlerRepublished) {
  auto handler = std::make_shared<Republisher>();
  auto sink = std::make_shared<RecordingAdapter>("sink");
  sink->set_on_event([](const Event& e) {
    if (e.name == "out") std::this_thread::sleep_for(200ms);
  });
  Config config;
  config.make_default = false;
  config.handler_concurrency = 1;
  config.add_adapter(sink).add_handler(handler);
  Emitter emitter(std::move(config));
  handler->emitter = &emitter;
  ASSERT_TRUE(commit(emitter, "in").ok());
  ASSERT_TRUE(emitter.drain(5s).ok());
  bool got_out = false;
  for (const std::string& n : sink->names())
    got_out = got_out || n == "out";
  EXPECT_TRUE(got_out) << "drain() returned before the republished event was delivered";
}

}  // namespace
