// emissions::testing::FaultyAdapter: each scripted fault, on its own through deliver_now and
// end to end through an Emitter (no retries: pipeline.retry.max_attempts = 1), with exact
// counts.
#include "emissions/testing/faulty_adapter.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "emissions/emitter.hpp"
#include "emissions/event.hpp"
#include "emissions/telemetry.hpp"
#include "emissions/testing.hpp"

namespace emissions::testing {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr auto kWait = 10s;  // only reached when the behaviour under test is broken

std::vector<Event> make_events(int count, int first = 0, EventName name = "e") {
  std::vector<Event> events;
  for (int i = 0; i < count; ++i) {
    Event e;
    e.name = name;
    e.payload = {{"i", first + i}};
    e.metadata = nlohmann::json::object();
    e.emitted_at = std::chrono::system_clock::now();
    e.id = EventId::generate(e.emitted_at);
    events.push_back(std::move(e));
  }
  return events;
}

std::vector<int> indexes(const std::vector<Event>& events) {
  std::vector<int> out;
  for (const Event& e : events)
    out.push_back(e.payload.at("i").get<int>());
  return out;
}

std::vector<int> range(int first, int count) {
  std::vector<int> out;
  for (int i = 0; i < count; ++i)
    out.push_back(first + i);
  return out;
}

std::vector<int> concat(std::vector<int> a, const std::vector<int>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// --- directly, through deliver_now ----------------------------------------------------------

TEST(FaultyAdapterTest, ByDefaultAcknowledgesEveryEventInlineAndRecordsIt) {
  FaultyAdapter faulty("sink");
  EXPECT_EQ(faulty.name(), "sink");
  const std::vector<Event> events = make_events(3);
  ASSERT_TRUE(deliver_now(faulty, events).ok());

  EXPECT_EQ(faulty.batches(), 1u);
  EXPECT_EQ(indexes(faulty.delivered()), range(0, 3));
  EXPECT_TRUE(faulty.failed().empty());
  const std::vector<ReceivedEvent> received = faulty.received();
  ASSERT_EQ(received.size(), 3u);
  for (std::size_t i = 0; i < received.size(); ++i) {
    EXPECT_EQ(received[i].event.id, events[i].id);
    EXPECT_EQ(received[i].batch, 1u);
    EXPECT_EQ(received[i].attempt, 1u);
  }
  EXPECT_TRUE(faulty.wait_for_settled(0ms));
}

TEST(FaultyAdapterTest, FailBatchFailsExactlyTheNthCallWithItsStatus) {
  FaultyAdapter faulty;
  faulty.fail_batch(2, Status(Errc::unavailable, "broker down"));
  EXPECT_TRUE(deliver_now(faulty, make_events(2, 0)).ok());
  const Status second = deliver_now(faulty, make_events(2, 2));
  EXPECT_EQ(second, Errc::unavailable);
  EXPECT_EQ(second.message(), "broker down");
  EXPECT_TRUE(deliver_now(faulty, make_events(2, 4)).ok());

  EXPECT_EQ(faulty.batches(), 3u);
  EXPECT_EQ(indexes(faulty.delivered()), (std::vector<int>{0, 1, 4, 5}));
  EXPECT_EQ(indexes(faulty.failed()), (std::vector<int>{2, 3}));
}

TEST(FaultyAdapterTest, ThrowOnBatchThrowsFromDeliverAndFailsItsEventsAsInternal) {
  FaultyAdapter faulty("thrower");
  faulty.throw_on_batch(1);
  const Status thrown = deliver_now(faulty, make_events(2));
  EXPECT_EQ(thrown, Errc::internal);
  EXPECT_THAT(thrown.message(), HasSubstr("FaultyAdapter 'thrower': scripted throw on batch 1"));
  EXPECT_EQ(indexes(faulty.failed()), range(0, 2));

  EXPECT_TRUE(deliver_now(faulty, make_events(1, 2)).ok()) << "only call 1 throws";
  EXPECT_EQ(indexes(faulty.delivered()), std::vector<int>{2});
  EXPECT_EQ(faulty.batches(), 2u);
}

TEST(FaultyAdapterTest, FailEveryKthCallFailsCallsKTwoKAndSoOn) {
  FaultyAdapter faulty;
  faulty.fail_every(3, Status(Errc::timeout, "slow"));
  std::vector<int> failed_calls;
  for (int call = 1; call <= 7; ++call) {
    if (deliver_now(faulty, make_events(1, call)) == Errc::timeout) failed_calls.push_back(call);
  }
  EXPECT_EQ(failed_calls, (std::vector<int>{3, 6}));
  EXPECT_EQ(indexes(faulty.failed()), (std::vector<int>{3, 6}));
  EXPECT_EQ(indexes(faulty.delivered()), (std::vector<int>{1, 2, 4, 5, 7}));
}

TEST(FaultyAdapterTest, APoisonEventFailsAloneWhileTheRestOfItsCallIsAcknowledged) {
  FaultyAdapter faulty;
  faulty.fail_events([](const Event& e) { return e.payload.at("i") == 1; },
                     Status(Errc::invalid_argument, "poison"));
  const Status status = deliver_now(faulty, make_events(3));
  EXPECT_EQ(status, Errc::invalid_argument);
  EXPECT_EQ(status.message(), "poison");
  EXPECT_EQ(indexes(faulty.delivered()), (std::vector<int>{0, 2}));
  EXPECT_EQ(indexes(faulty.failed()), std::vector<int>{1});
}

TEST(FaultyAdapterTest, TheFirstMatchingEventRuleGivesTheError) {
  FaultyAdapter faulty;
  faulty.fail_events([](const Event& e) { return e.payload.at("i").get<int>() >= 1; },
                     Status(Errc::unavailable, "first"));
  faulty.fail_events([](const Event&) { return true; }, Status(Errc::invalid_argument, "second"));
  EXPECT_EQ(deliver_now(faulty, make_events(1, 5)), Errc::unavailable);
  EXPECT_EQ(deliver_now(faulty, make_events(1, 0)), Errc::invalid_argument);
}

TEST(FaultyAdapterTest, AThrowingPredicateFailsItsWholeCallAsInternal) {
  FaultyAdapter faulty;
  faulty.fail_events([](const Event&) -> bool { throw std::runtime_error("bad predicate"); },
                     Status(Errc::unavailable, "unused"));
  const Status status = deliver_now(faulty, make_events(2));
  EXPECT_EQ(status, Errc::internal);
  EXPECT_THAT(status.message(), HasSubstr("bad predicate"));
  EXPECT_EQ(faulty.failed().size(), 2u);
}

TEST(FaultyAdapterTest, BatchRulesTakePrecedenceInTheDocumentedOrder) {
  FaultyAdapter faulty;
  faulty.throw_on_batch(1)
      .fail_batch(1, Status(Errc::unavailable, "batch 1"))
      .fail_batch(2, Status(Errc::unavailable, "batch 2"))
      .fail_every(2, Status(Errc::timeout, "every 2nd"))
      .fail_events([](const Event&) { return true; }, Status(Errc::invalid_argument, "event"));
  EXPECT_EQ(deliver_now(faulty, make_events(1)), Errc::internal) << "throw beats fail_batch";
  EXPECT_EQ(deliver_now(faulty, make_events(1)).message(), "batch 2") << "fail_batch first";
  EXPECT_EQ(deliver_now(faulty, make_events(1)).message(), "event") << "then the event rules";
  EXPECT_EQ(deliver_now(faulty, make_events(1)).message(), "every 2nd") << "fail_every before them";
}

TEST(FaultyAdapterTest, CallNumbersStartAtOne) {
  FaultyAdapter faulty;
  EXPECT_THROW(faulty.fail_batch(0, Status(Errc::unavailable, "x")), std::invalid_argument);
  EXPECT_THROW(faulty.throw_on_batch(0), std::invalid_argument);
  EXPECT_THROW(faulty.fail_every(0, Status(Errc::unavailable, "x")), std::invalid_argument);
  EXPECT_THROW(faulty.fail_events({}, Status(Errc::unavailable, "x")), std::invalid_argument);
}

TEST(FaultyAdapterTest, StallHoldsDeliveriesUnsettledUntilReleased) {
  FaultyAdapter faulty;
  faulty.fail_batch(2, Status(Errc::unavailable, "decided on arrival"));
  faulty.stall();
  EXPECT_TRUE(deliver_now(faulty, make_events(2, 0)).ok()) << "unsettled is not failed";
  EXPECT_TRUE(deliver_now(faulty, make_events(2, 2)).ok());
  EXPECT_EQ(faulty.held(), 2u);
  EXPECT_TRUE(faulty.delivered().empty());
  EXPECT_FALSE(faulty.wait_for_settled(1ms));

  EXPECT_EQ(faulty.release(), 2u);
  EXPECT_EQ(faulty.held(), 0u);
  EXPECT_TRUE(faulty.wait_for_settled(0ms));
  EXPECT_EQ(indexes(faulty.delivered()), (std::vector<int>{0, 1}));
  EXPECT_EQ(indexes(faulty.failed()), (std::vector<int>{2, 3}));

  EXPECT_TRUE(deliver_now(faulty, make_events(1, 4)).ok());
  EXPECT_EQ(indexes(faulty.delivered()), (std::vector<int>{0, 1, 4})) << "inline again";
}

// The threads that reported [emissions, adapter, success] (the settling threads) while alive.
class SettlingThreads {
 public:
  SettlingThreads() {
    const Status s = telemetry::attach(
        "faulty-adapter-test", {"emissions", "adapter", "success"},
        [this](const telemetry::EventName&, const nlohmann::json&, const nlohmann::json&) {
          std::lock_guard lock(mutex_);
          threads_.insert(std::this_thread::get_id());
        });
    if (!s.ok()) throw std::runtime_error(s.to_string());
  }
  ~SettlingThreads() { (void)telemetry::detach("faulty-adapter-test"); }
  SettlingThreads(const SettlingThreads&) = delete;
  SettlingThreads& operator=(const SettlingThreads&) = delete;
  std::set<std::thread::id> threads() const {
    std::lock_guard lock(mutex_);
    return threads_;
  }

 private:
  mutable std::mutex mutex_;
  std::set<std::thread::id> threads_;
};

TEST(FaultyAdapterTest, AckLateSettlesFromItsOwnThreadAfterTheDelayInArrivalOrder) {
  const SettlingThreads settling;
  FaultyAdapter faulty;
  faulty.ack_late(200ms);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(deliver_now(faulty, make_events(2, 0)).ok());
  ASSERT_TRUE(deliver_now(faulty, make_events(2, 2)).ok());
  EXPECT_TRUE(faulty.delivered().empty()) << "deliver() returned before the acks";

  ASSERT_TRUE(faulty.wait_for_settled(kWait));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 200ms);
  EXPECT_EQ(indexes(faulty.delivered()), range(0, 4));
  const std::set<std::thread::id> threads = settling.threads();
  ASSERT_EQ(threads.size(), 1u);
  EXPECT_NE(*threads.begin(), std::this_thread::get_id());

  faulty.ack_inline();
  ASSERT_TRUE(deliver_now(faulty, make_events(1, 4)).ok());
  EXPECT_EQ(indexes(faulty.delivered()), range(0, 5)) << "inline again";
}

TEST(FaultyAdapterTest, DestroyingItWithLateAcksPendingJoinsItsThreadAtOnce) {
  const auto start = std::chrono::steady_clock::now();
  {
    FaultyAdapter faulty;
    faulty.ack_late(1h);
    ASSERT_TRUE(deliver_now(faulty, make_events(2)).ok());
  }  // abandons the delivery, joins the thread: no hour-long wait, no detached thread
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST(FaultyAdapterTest, WaitForBatchesWaitsForDeliverCalls) {
  FaultyAdapter faulty;
  EXPECT_FALSE(faulty.wait_for_batches(1, 1ms));
  std::thread caller([&] { (void)deliver_now(faulty, make_events(1)); });
  EXPECT_TRUE(faulty.wait_for_batches(1, kWait));
  caller.join();
}

// --- through an Emitter (no retries) -------------------------------------------------------

Config config_with(const std::shared_ptr<FaultyAdapter>& faulty) {
  Config config;
  config.make_default = false;
  config.pipeline.retry.max_attempts = 1;  // holds with and without the pipeline's retries
  config.add_adapter(faulty);
  return config;
}

// One transaction of `count` events: one deliver() call.
void commit(Emitter& emitter, int count, int first, EventName name = "e") {
  Transaction tx = emitter.start();
  for (int i = 0; i < count; ++i)
    ASSERT_TRUE(tx.emit(name, {{"i", first + i}}).ok());
  ASSERT_TRUE(tx.commit().ok());
}

TEST(FaultyAdapterEmitterTest, AFailedCallIsCountedFailedOnceAndTheOthersDelivered) {
  auto faulty = std::make_shared<FaultyAdapter>("sink");
  faulty->fail_batch(2, Status(Errc::unavailable, "broker down"));
  Emitter emitter(config_with(faulty));
  for (int tx = 0; tx < 3; ++tx)
    commit(emitter, 4, tx * 4);
  EXPECT_EQ(emitter.drain(kWait), Errc::ok);

  const AdapterStats stats = emitter.stats().adapters.at(0);
  EXPECT_EQ(stats.name, "sink");
  EXPECT_EQ(stats.delivered, 8u);
  EXPECT_EQ(stats.failed, 4u);
  EXPECT_EQ(stats.dropped, 0u);
  EXPECT_EQ(faulty->batches(), 3u);
  EXPECT_EQ(indexes(faulty->delivered()), concat(range(0, 4), range(8, 4)));
  EXPECT_EQ(indexes(faulty->failed()), range(4, 4));
  for (const ReceivedEvent& r : faulty->received())
    EXPECT_EQ(r.attempt, 1u);
  EXPECT_EQ(faulty->received().size(), 12u);
}

TEST(FaultyAdapterEmitterTest, EveryKthCallFails) {
  auto faulty = std::make_shared<FaultyAdapter>();
  faulty->fail_every(2, Status(Errc::timeout, "slow"));
  Emitter emitter(config_with(faulty));
  for (int tx = 0; tx < 6; ++tx)
    commit(emitter, 3, tx * 3);
  EXPECT_EQ(emitter.drain(kWait), Errc::ok);

  EXPECT_EQ(emitter.stats().adapters.at(0).delivered, 9u);
  EXPECT_EQ(emitter.stats().adapters.at(0).failed, 9u);
  EXPECT_EQ(indexes(faulty->failed()), concat(concat(range(3, 3), range(9, 3)), range(15, 3)));
}

TEST(FaultyAdapterEmitterTest, APoisonEventFailsAloneAndEveryOtherEventIsDelivered) {
  auto faulty = std::make_shared<FaultyAdapter>();
  faulty->fail_events([](const Event& e) { return e.name == EventName("poison"); },
                      Status(Errc::invalid_argument, "poison"));
  Emitter emitter(config_with(faulty));
  {
    Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit("e", {{"i", 0}}).ok());
    ASSERT_TRUE(tx.emit("poison", {{"i", 1}}).ok());
    ASSERT_TRUE(tx.emit("e", {{"i", 2}}).ok());
    ASSERT_TRUE(tx.commit().ok());
  }
  commit(emitter, 2, 3);
  EXPECT_EQ(emitter.drain(kWait), Errc::ok);

  EXPECT_EQ(emitter.stats().adapters.at(0).delivered, 4u);
  EXPECT_EQ(emitter.stats().adapters.at(0).failed, 1u);
  EXPECT_EQ(indexes(faulty->delivered()), (std::vector<int>{0, 2, 3, 4}));
  EXPECT_EQ(indexes(faulty->failed()), std::vector<int>{1});
}

TEST(FaultyAdapterEmitterTest, AThrowFailsItsCallAndThePipelineCallsInitAgain) {
  auto faulty = std::make_shared<FaultyAdapter>();
  faulty->throw_on_batch(1);
  Emitter emitter(config_with(faulty));
  commit(emitter, 2, 0);
  commit(emitter, 3, 2);
  EXPECT_EQ(emitter.drain(kWait), Errc::ok);

  EXPECT_EQ(emitter.stats().adapters.at(0).failed, 2u);
  EXPECT_EQ(emitter.stats().adapters.at(0).delivered, 3u);
  EXPECT_EQ(faulty->inits(), 2u) << "once before the first call, again after the throw";
  EXPECT_EQ(indexes(faulty->delivered()), range(2, 3));
}

TEST(FaultyAdapterEmitterTest, AStalledAdapterHoldsDrainUntilReleased) {
  auto faulty = std::make_shared<FaultyAdapter>();
  faulty->stall();
  Emitter emitter(config_with(faulty));
  commit(emitter, 3, 0);
  ASSERT_TRUE(faulty->wait_for_batches(1, kWait));

  EXPECT_EQ(emitter.drain(50ms), Errc::timeout);
  EXPECT_EQ(faulty->held(), 1u);
  EXPECT_EQ(emitter.stats().adapters.at(0).delivered, 0u);

  EXPECT_EQ(faulty->release(), 1u);
  EXPECT_EQ(emitter.drain(kWait), Errc::ok);
  EXPECT_EQ(emitter.stats().adapters.at(0).delivered, 3u);
  EXPECT_EQ(indexes(faulty->delivered()), range(0, 3));
}

TEST(FaultyAdapterEmitterTest, LateAcksFromItsOwnThreadAreCountedInOrder) {
  auto faulty = std::make_shared<FaultyAdapter>();
  faulty->ack_late(1ms);
  Emitter emitter(config_with(faulty));
  for (int tx = 0; tx < 20; ++tx)
    commit(emitter, 5, tx * 5);
  EXPECT_EQ(emitter.drain(kWait), Errc::ok);

  EXPECT_EQ(emitter.stats().adapters.at(0).delivered, 100u);
  EXPECT_EQ(indexes(faulty->delivered()), range(0, 100));
  EXPECT_EQ(faulty->batches(), 20u);
}

TEST(FaultyAdapterEmitterTest, WhatIsStalledAtShutdownIsCountedDroppedNotLost) {
  auto faulty = std::make_shared<FaultyAdapter>();
  faulty->stall();
  {
    Emitter emitter(config_with(faulty));
    commit(emitter, 5, 0);
    ASSERT_TRUE(faulty->wait_for_batches(1, kWait));
    const Status shut = emitter.shutdown(100ms);
    EXPECT_EQ(shut, Errc::timeout) << shut.to_string();
    const AdapterStats stats = emitter.stats().adapters.at(0);
    EXPECT_EQ(stats.delivered, 0u);
    EXPECT_EQ(stats.failed, 0u);
    EXPECT_EQ(stats.dropped, 5u);
    EXPECT_EQ(faulty->terminations(), 1u);
    EXPECT_EQ(faulty->held(), 1u) << "terminate() releases nothing";
  }
  EXPECT_EQ(faulty->release(), 1u) << "settling after the Emitter is gone is harmless";
}

}  // namespace
}  // namespace emissions::testing
