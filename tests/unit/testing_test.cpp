// The installable test helpers: TestAdapter, setup/reset/teardown, assert_emitted,
// refute_emitted and the gtest macros. Each helper is checked both ways: it passes when it
// should, and fails (with a message that explains itself) when it should.
#include "emissions/testing.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include "emissions/ambient.hpp"
#include "emissions/emitter.hpp"
#include "emissions/testing/gtest.hpp"

namespace emissions::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Commits one ambient transaction holding `events` (name, payload).
void commit_events(const std::vector<std::pair<EventName, nlohmann::json>>& events) {
  ASSERT_TRUE(emissions::start().ok());
  for (const auto& [name, payload] : events)
    ASSERT_TRUE(emissions::emit(name, payload).ok());
  ASSERT_TRUE(emissions::commit().ok());
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

class HelpersTest : public ::testing::Test {
 protected:
  void SetUp() override { setup(); }
  void TearDown() override {
    emissions::terminate();
    teardown();
  }
};

// --- assert_emitted(name) ---------------------------------------------------------------

TEST_F(HelpersTest, AssertEmittedPassesForACommittedEvent) {
  commit_events({{"order_created", {{"item", "widget"}}}});
  const ::testing::AssertionResult r = assert_emitted("order_created");
  EXPECT_TRUE(r);
  EXPECT_TRUE(contains(r.message(), R"("widget")")) << r.message();
  EXPECT_EMITTED("order_created");
  ASSERT_EMITTED("order_created") << "streams extra context like any gtest assertion";
}

TEST_F(HelpersTest, AssertEmittedFailsAndListsWhatWasEmitted) {
  commit_events({{"order_shipped", 1}, {"user_created", 2}, {"order_shipped", 3}});
  const ::testing::AssertionResult r = assert_emitted("order_created", 20ms);
  EXPECT_FALSE(r);
  EXPECT_TRUE(contains(r.message(), R"(named "order_created")")) << r.message();
  EXPECT_TRUE(contains(r.message(), "Emitted (3): order_shipped, user_created, order_shipped"))
      << r.message();
}

TEST_F(HelpersTest, AssertEmittedSaysWhenNothingWasEmitted) {
  const ::testing::AssertionResult r = assert_emitted("order_created", 10ms);
  EXPECT_FALSE(r);
  EXPECT_TRUE(contains(r.message(), "Nothing was emitted.")) << r.message();
}

TEST_F(HelpersTest, AssertEmittedIgnoresTerminatedTransactions) {
  ASSERT_TRUE(emissions::start().ok());
  ASSERT_TRUE(emissions::emit("order_created", 1).ok());
  emissions::terminate();
  EXPECT_FALSE(assert_emitted("order_created", 10ms));
}

TEST_F(HelpersTest, AssertEmittedWaitsForAnEventCommittedAfterTheCallStarted) {
  std::atomic<bool> committed{false};
  std::thread late([&] {
    std::this_thread::sleep_for(50ms);  // let assert_emitted start waiting first
    commit_events({{"late_event", {{"n", 1}}}});
    committed = true;
  });
  const auto started = Clock::now();
  const ::testing::AssertionResult r = assert_emitted("late_event", 10s);
  const auto elapsed = Clock::now() - started;
  late.join();
  EXPECT_TRUE(r) << r.message();
  EXPECT_TRUE(committed.load());
  // It returned when the event arrived, not at the deadline.
  EXPECT_LT(elapsed, 5s);
}

TEST_F(HelpersTest, AssertEmittedWaitsForItsTimeoutBeforeFailing) {
  auto started = Clock::now();
  EXPECT_FALSE(assert_emitted("never"));
  EXPECT_GE(Clock::now() - started, kDefaultWait);

  started = Clock::now();
  EXPECT_FALSE(assert_emitted("never", 250ms));
  EXPECT_GE(Clock::now() - started, 250ms);
}

TEST_F(HelpersTest, AssertEmittedReturnsAtOnceWhenAlreadySatisfied) {
  commit_events({{"order_created", 1}});
  ASSERT_TRUE(assert_emitted("order_created"));  // delivered now
  const auto started = Clock::now();
  EXPECT_TRUE(assert_emitted("order_created", 10s));
  EXPECT_LT(Clock::now() - started, 5s);
}

// --- assert_emitted(name, predicate) ----------------------------------------------------

TEST_F(HelpersTest, PredicatePassesWhenOneOfSeveralMatches) {
  commit_events({{"order_created", {{"item", "gadget"}}},
                 {"order_created", {{"item", "widget"}}},
                 {"other", {{"item", "widget"}}}});
  const ::testing::AssertionResult r =
      assert_emitted("order_created", [](const Event& e) { return e.payload["item"] == "widget"; });
  EXPECT_TRUE(r) << r.message();
  EXPECT_EMITTED("order_created", [](const Event& e) { return e.payload.contains("item"); });
}

TEST_F(HelpersTest, PredicateFailureShowsThePayloadsOfThatName) {
  commit_events({{"order_created", {{"item", "gadget"}}},
                 {"order_created", {{"item", "bolt"}}},
                 {"user_created", {{"item", "widget"}}}});
  const ::testing::AssertionResult r = assert_emitted(
      "order_created", [](const Event& e) { return e.payload["item"] == "widget"; }, 20ms);
  EXPECT_FALSE(r);
  EXPECT_TRUE(contains(r.message(), "none of the 2 emitted matched")) << r.message();
  EXPECT_TRUE(contains(r.message(), R"({"item":"gadget"})")) << r.message();
  EXPECT_TRUE(contains(r.message(), R"({"item":"bolt"})")) << r.message();
  EXPECT_FALSE(contains(r.message(), R"({"item":"widget"})")) << r.message();

  const ::testing::AssertionResult one = assert_emitted(
      "user_created", [](const Event& e) { return e.payload["item"] == "bolt"; }, 10ms);
  EXPECT_FALSE(one);
  EXPECT_TRUE(contains(one.message(),
                       "the one emitted did not match. Its payload:\n  {\"item\":\"widget\"}"))
      << one.message();
  EXPECT_TRUE(contains(r.message(), "Emitted (3): order_created, order_created, user_created"))
      << r.message();
}

TEST_F(HelpersTest, PredicateFailureWhenTheNameNeverAppeared) {
  commit_events({{"user_created", 1}});
  const ::testing::AssertionResult r = assert_emitted(
      "order_created", [](const Event&) { return true; }, 10ms);
  EXPECT_FALSE(r);
  EXPECT_TRUE(contains(r.message(), "none was emitted at all")) << r.message();
  EXPECT_TRUE(contains(r.message(), "Emitted (1): user_created")) << r.message();
}

TEST_F(HelpersTest, APredicateThatThrowsDoesNotMatchAndIsReported) {
  commit_events({{"order_created", {{"item", "widget"}}}});
  const ::testing::AssertionResult r = assert_emitted(
      "order_created",
      [](const Event& e) { return e.payload.at("missing_key") == 1; },  // throws out_of_range
      10ms);
  EXPECT_FALSE(r);
  EXPECT_TRUE(contains(r.message(), "The predicate threw")) << r.message();
  EXPECT_TRUE(contains(r.message(), "missing_key")) << r.message();
}

TEST_F(HelpersTest, ThePredicateSeesEachEventOnce) {
  commit_events({{"order_created", 1}, {"order_created", 2}, {"other", 3}});
  int calls = 0;
  EXPECT_FALSE(assert_emitted(
      "order_created",
      [&calls](const Event&) {
        ++calls;
        return false;
      },
      50ms));
  EXPECT_EQ(calls, 2);
}

TEST_F(HelpersTest, AnEmptyPredicateIsAFailureNotACrash) {
  commit_events({{"order_created", 1}});
  const ::testing::AssertionResult r = assert_emitted("order_created", EventPredicate{});
  EXPECT_FALSE(r);
  EXPECT_TRUE(contains(r.message(), "predicate is empty")) << r.message();
}

// --- refute_emitted ---------------------------------------------------------------------

TEST_F(HelpersTest, RefutePassesAfterATerminatedTransaction) {
  ASSERT_TRUE(emissions::start().ok());
  ASSERT_TRUE(emissions::emit("order_created", {{"id", 1}}).ok());
  emissions::terminate();
  commit_events({{"order_rejected", {{"id", 1}}}});
  const ::testing::AssertionResult r = refute_emitted("order_created");
  EXPECT_TRUE(r) << r.message();
  EXPECT_NOT_EMITTED("order_created");
  ASSERT_NOT_EMITTED("order_created");
}

TEST_F(HelpersTest, RefuteFailsAfterACommittedTransaction) {
  // No wait between commit and refute: refute drains first, so delivery is not a race.
  commit_events({{"order_created", {{"id", 7}}}, {"order_paid", {{"id", 7}}}});
  const ::testing::AssertionResult r = refute_emitted("order_created");
  EXPECT_FALSE(r);
  EXPECT_TRUE(contains(r.message(), R"(Expected no event named "order_created")")) << r.message();
  EXPECT_TRUE(contains(r.message(), "but 1 was")) << r.message();
  EXPECT_TRUE(contains(r.message(), R"({"id":7})")) << r.message();
  EXPECT_TRUE(contains(r.message(), "Emitted (2): order_created, order_paid")) << r.message();
}

TEST_F(HelpersTest, RefuteAfterFlushFails) {
  ASSERT_TRUE(emissions::start().ok());
  ASSERT_TRUE(emissions::emit("order_validated", 1).ok());
  ASSERT_TRUE(emissions::flush().ok());
  EXPECT_FALSE(refute_emitted("order_validated"));
  emissions::terminate();
}

// --- the gtest macros report failures --------------------------------------------------

TEST_F(HelpersTest, MacrosReportFailuresWithTheMessage) {
  commit_events({{"order_shipped", {{"id", 1}}}});
  EXPECT_NONFATAL_FAILURE(EXPECT_EMITTED("order_created", 10ms), "Emitted (1): order_shipped");
  EXPECT_NONFATAL_FAILURE(EXPECT_EMITTED("order_created", 10ms) << "extra context",
                          "extra context");
  EXPECT_NONFATAL_FAILURE(
      EXPECT_EMITTED(
          "order_shipped", [](const Event& e) { return e.payload["id"] == 2; }, 10ms),
      R"({"id":1})");
  EXPECT_NONFATAL_FAILURE(EXPECT_NOT_EMITTED("order_shipped"),
                          R"(Expected no event named "order_shipped")");
  EXPECT_FATAL_FAILURE(ASSERT_EMITTED("order_created", std::chrono::milliseconds(10)),
                       "Emitted (1): order_shipped");
  EXPECT_FATAL_FAILURE(ASSERT_NOT_EMITTED("order_shipped"), "but 1 was");
}

// --- reset, emitted, setup --------------------------------------------------------------

TEST_F(HelpersTest, ResetForgetsWhatWasCaptured) {
  commit_events({{"order_created", 1}});
  reset();
  EXPECT_TRUE(emitted().empty());
  EXPECT_TRUE(refute_emitted("order_created"));
  commit_events({{"order_shipped", 2}});
  const std::vector<Event> events = emitted();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].name, EventName("order_shipped"));
}

TEST_F(HelpersTest, ResetDiscardsAnAmbientTransactionLeftOpen) {
  ASSERT_TRUE(emissions::start().ok());
  ASSERT_TRUE(emissions::emit("half_done", 1).ok());
  reset();
  EXPECT_FALSE(emissions::active());
  EXPECT_TRUE(emissions::start().ok());  // not already_started
  emissions::terminate();
  EXPECT_TRUE(refute_emitted("half_done"));
}

TEST_F(HelpersTest, EmittedReturnsEverythingInCommitOrder) {
  commit_events({{"a", 1}, {"b", 2}});
  commit_events({{"c", 3}});
  const std::vector<Event> events = emitted();  // drains: no wait needed
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].name, EventName("a"));
  EXPECT_EQ(events[1].name, EventName("b"));
  EXPECT_EQ(events[2].name, EventName("c"));
  EXPECT_EQ(events[2].payload, 3);
  EXPECT_EQ(adapter().size(), 3u);
}

TEST_F(HelpersTest, SetupWithAConfigKeepsItsAdaptersAndReplacesThePreviousSetup) {
  Emitter& first = setup();
  const TestAdapter* first_capture = &adapter();
  commit_events({{"before", 1}});

  auto extra = std::make_shared<TestAdapter>("extra");
  Config config;
  config.make_default = false;  // setup() makes it the default anyway
  config.add_adapter(extra);
  Emitter& second = setup(std::move(config));
  EXPECT_NE(&first, &second);
  EXPECT_NE(&adapter(), first_capture);
  EXPECT_EQ(&emitter(), &second);

  commit_events({{"after", 2}});  // the ambient functions now go to the new emitter
  EXPECT_EMITTED("after");
  EXPECT_NOT_EMITTED("before");  // the new TestAdapter starts empty
  ASSERT_TRUE(extra->wait_for([](auto events) { return events.size() == 1; }, 5s));
  EXPECT_EQ(extra->events()[0].name, EventName("after"));
  const EmitterStats stats = second.stats();
  ASSERT_EQ(stats.adapters.size(), 2u);
  EXPECT_EQ(stats.adapters[0].name, "test_adapter");
  EXPECT_EQ(stats.adapters[1].name, "extra");
}

TEST_F(HelpersTest, AnInvalidConfigLeavesThePreviousSetupInPlace) {
  Emitter& before = emitter();
  Config bad;
  bad.add_adapter(nullptr);
  EXPECT_THROW((void)setup(std::move(bad)), ConfigError);
  EXPECT_EQ(&emitter(), &before);
  commit_events({{"still_works", 1}});
  EXPECT_EMITTED("still_works");
}

TEST(HelpersWithoutSetup, AssertionsFailAndAccessorsThrow) {
  teardown();
  EXPECT_FALSE(assert_emitted("x", 1ms));
  EXPECT_TRUE(contains(assert_emitted("x", 1ms).message(), "setup()"));
  EXPECT_FALSE(assert_emitted(
      "x", [](const Event&) { return true; }, 1ms));
  EXPECT_FALSE(refute_emitted("x"));
  EXPECT_THROW(reset(), std::logic_error);
  EXPECT_THROW((void)emitted(), std::logic_error);
  EXPECT_THROW((void)emitter(), std::logic_error);
  EXPECT_THROW((void)adapter(), std::logic_error);
  teardown();  // harmless when there is nothing to tear down
}

// --- explicit adapter/emitter pairs -----------------------------------------------------

TEST(HelpersOnAnExplicitPair, WorkWithoutTheProcessWideEmitter) {
  auto capture = std::make_shared<TestAdapter>();
  Config config;
  config.make_default = false;
  config.add_adapter(capture);
  Emitter emitter(std::move(config));

  Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("order_created", {{"id", 1}}).ok());
  ASSERT_TRUE(tx.commit().ok());
  EXPECT_TRUE(assert_emitted(*capture, emitter, "order_created"));
  EXPECT_TRUE(assert_emitted(*capture, emitter, "order_created",
                             [](const Event& e) { return e.payload["id"] == 1; }));
  EXPECT_FALSE(assert_emitted(
      *capture, emitter, "order_created", [](const Event& e) { return e.payload["id"] == 2; },
      10ms));
  EXPECT_FALSE(refute_emitted(*capture, emitter, "order_created"));
  EXPECT_TRUE(refute_emitted(*capture, emitter, "order_deleted"));
  EXPECT_EMITTED(*capture, emitter, "order_created");
  EXPECT_NOT_EMITTED(*capture, emitter, "order_deleted");
}

// --- TestAdapter ------------------------------------------------------------------------

Event make_event(EventName name, int n) {
  Event e;
  e.name = name;
  e.payload = n;
  e.metadata = nlohmann::json::object();
  e.emitted_at = std::chrono::system_clock::now();
  e.id = EventId::generate(e.emitted_at);
  return e;
}

TEST(TestAdapterTest, CapturesCopiesInOrder) {
  TestAdapter adapter("capture");
  EXPECT_EQ(adapter.name(), "capture");
  std::vector<Event> batch = {make_event("a", 1), make_event("b", 2)};
  ASSERT_TRUE(adapter.handle_events(batch).ok());
  batch[0].payload = 100;  // the adapter kept its own copy
  ASSERT_TRUE(adapter.handle_events(std::vector<Event>{make_event("c", 3)}).ok());
  const std::vector<Event> events = adapter.events();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].payload, 1);
  EXPECT_EQ(events[2].name, EventName("c"));
  EXPECT_EQ(adapter.size(), 3u);
  EXPECT_EQ(adapter.batches(), 2u);
  ASSERT_EQ(adapter.events_from(2).size(), 1u);
  EXPECT_TRUE(adapter.events_from(3).empty());
  EXPECT_TRUE(adapter.events_from(10).empty());
  adapter.clear();
  EXPECT_EQ(adapter.size(), 0u);
  EXPECT_EQ(adapter.batches(), 2u);
}

TEST(TestAdapterTest, WaitForReturnsWhenTheConditionHoldsOrAtTheDeadline) {
  TestAdapter adapter;
  auto started = Clock::now();
  EXPECT_FALSE(adapter.wait_for([](auto events) { return !events.empty(); }, 30ms));
  EXPECT_GE(Clock::now() - started, 30ms);

  std::thread producer([&] {
    for (int i = 0; i < 5; ++i) {
      (void)adapter.handle_events(std::vector<Event>{make_event("tick", i)});
    }
  });
  started = Clock::now();
  EXPECT_TRUE(adapter.wait_for([](auto events) { return events.size() == 5; }, 10s));
  EXPECT_LT(Clock::now() - started, 5s);
  producer.join();
}

TEST_F(HelpersTest, ConcurrentProducersAndCheckers) {
  constexpr int kThreads = 3;
  constexpr int kPerThread = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < kPerThread; ++i) {
        commit_events({{"tick", {{"thread", t}, {"i", i}}}});
      }
    });
  }
  // Checks running while events arrive.
  EXPECT_TRUE(assert_emitted(
      "tick", [](const Event& e) { return e.payload["i"] == kPerThread - 1; }, 10s));
  for (auto& th : threads)
    th.join();
  EXPECT_EQ(emitted().size(), static_cast<std::size_t>(kThreads * kPerThread));
  EXPECT_NOT_EMITTED("tock");
}

}  // namespace
}  // namespace emissions::testing
