// Tests for emissions/telemetry.hpp: the process-wide handler registry and span.
//
// The registry is global and shared with every other test in this executable, so each
// test detaches what it attaches (ScopedIds) and the fixture checks that the attachment
// count is back where it started.
#include "emissions/telemetry.hpp"

#include <atomic>
#include <cstddef>
#include <latch>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace emissions::telemetry {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const EventName kFailureEvent{"telemetry", "handler", "failure"};

std::size_t attached_count() {
  return detail::g_attached.load(std::memory_order_relaxed);
}

// Detaches the given ids at scope exit. not_found is expected for a handler that the
// registry already removed (a throwing one), so the result is deliberately ignored.
class ScopedIds {
 public:
  ScopedIds(std::initializer_list<std::string> ids) : ids_(ids) {}
  ScopedIds(const ScopedIds&) = delete;
  ScopedIds& operator=(const ScopedIds&) = delete;
  ~ScopedIds() {
    for (const std::string& id : ids_)
      static_cast<void>(detach(id));
  }

 private:
  std::vector<std::string> ids_;
};

struct Call {
  std::string tag;
  EventName event;
  json measurements;
  json metadata;
};

// Records every call of the handlers it hands out, across threads.
class Recorder {
 public:
  Handler handler(std::string tag = {}) {
    return [this, tag = std::move(tag)](const EventName& event, const json& measurements,
                                        const json& metadata) {
      std::lock_guard lock(mutex_);
      calls_.push_back(Call{tag, event, measurements, metadata});
    };
  }
  std::vector<Call> calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
  }
  std::vector<std::string> tags() const {
    std::vector<std::string> out;
    for (const Call& call : calls())
      out.push_back(call.tag);
    return out;
  }
  std::vector<EventName> events() const {
    std::vector<EventName> out;
    for (const Call& call : calls())
      out.push_back(call.event);
    return out;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<Call> calls_;
};

void no_op(const EventName&, const json&, const json&) {}

class TelemetryTest : public ::testing::Test {
 protected:
  void SetUp() override { baseline_ = attached_count(); }
  void TearDown() override {
    EXPECT_EQ(attached_count(), baseline_) << "a test left a handler attached";
  }

  std::size_t baseline_ = 0;
};

// --- attach ---------------------------------------------------------------------------

TEST_F(TelemetryTest, AttachListsTheIdUnderItsEventOnly) {
  ScopedIds ids{"attach-basic"};
  ASSERT_TRUE(attach("attach-basic", {"test", "attach", "basic"}, no_op).ok());
  EXPECT_THAT(handlers_for({"test", "attach", "basic"}), ElementsAre("attach-basic"));
  EXPECT_THAT(handlers_for({"test", "attach"}), IsEmpty());
  EXPECT_THAT(handlers_for({"test", "attach", "basic", "more"}), IsEmpty());
}

TEST_F(TelemetryTest, AttachWithIdInUseReturnsAlreadyExists) {
  ScopedIds ids{"attach-dup"};
  Recorder first;
  Recorder second;
  ASSERT_TRUE(attach("attach-dup", {"test", "dup", "a"}, first.handler()).ok());

  const Status s = attach("attach-dup", {"test", "dup", "b"}, second.handler());
  EXPECT_EQ(s.code(), Errc::already_exists);
  EXPECT_THAT(s.message(), HasSubstr("attach-dup"));

  // The original attachment is untouched and the rejected handler was not attached.
  execute({"test", "dup", "a"}, json::object(), json::object());
  execute({"test", "dup", "b"}, json::object(), json::object());
  EXPECT_EQ(first.calls().size(), 1U);
  EXPECT_TRUE(second.calls().empty());
  EXPECT_THAT(handlers_for({"test", "dup", "b"}), IsEmpty());
}

TEST_F(TelemetryTest, AttachWithEmptyIdReturnsInvalidArgument) {
  const Status s = attach("", {"test", "empty", "id"}, no_op);
  EXPECT_EQ(s.code(), Errc::invalid_argument);
  EXPECT_THAT(s.message(), HasSubstr("id"));
  EXPECT_THAT(handlers_for({"test", "empty", "id"}), IsEmpty());
}

TEST_F(TelemetryTest, AttachWithEmptyEventNameReturnsInvalidArgument) {
  const Status s = attach("empty-event", {}, no_op);
  EXPECT_EQ(s.code(), Errc::invalid_argument);
  EXPECT_THAT(s.message(), HasSubstr("event name is empty"));
  EXPECT_EQ(detach("empty-event").code(), Errc::not_found);
}

TEST_F(TelemetryTest, AttachWithAnEmptySegmentReturnsInvalidArgumentNamingIt) {
  const Status s = attach("empty-segment", {"test", "", "x"}, no_op);
  EXPECT_EQ(s.code(), Errc::invalid_argument);
  EXPECT_THAT(s.message(), HasSubstr("empty segment at index 1"));
  EXPECT_EQ(detach("empty-segment").code(), Errc::not_found);
}

TEST_F(TelemetryTest, AttachWithEmptyHandlerReturnsInvalidArgument) {
  const Status s = attach("empty-handler", {"test", "empty", "handler"}, Handler{});
  EXPECT_EQ(s.code(), Errc::invalid_argument);
  EXPECT_THAT(s.message(), HasSubstr("handler is empty"));
  EXPECT_EQ(detach("empty-handler").code(), Errc::not_found);
}

TEST_F(TelemetryTest, AttachAcceptsAGenericLambda) {
  ScopedIds ids{"generic"};
  int calls = 0;
  std::size_t seen_segments = 0;
  ASSERT_TRUE(attach("generic", {"test", "generic"},
                     [&](const auto& event, const auto& measurements, const auto& metadata) {
                       ++calls;
                       seen_segments = event.size();
                       EXPECT_EQ(measurements.at("n"), 1);
                       EXPECT_EQ(metadata.at("who"), "me");
                     })
                  .ok());
  execute({"test", "generic"}, {{"n", 1}}, {{"who", "me"}});
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen_segments, 2U);
}

// --- attach_many ----------------------------------------------------------------------

TEST_F(TelemetryTest, AttachManyCallsTheHandlerForEachOfItsEvents) {
  ScopedIds ids{"many"};
  Recorder rec;
  ASSERT_TRUE(
      attach_many("many", {{"test", "many", "a"}, {"test", "many", "b"}}, rec.handler()).ok());
  execute({"test", "many", "b"}, json::object(), json::object());
  execute({"test", "many", "a"}, json::object(), json::object());
  execute({"test", "many", "c"}, json::object(), json::object());
  EXPECT_THAT(rec.events(),
              ElementsAre(EventName{"test", "many", "b"}, EventName{"test", "many", "a"}));
}

TEST_F(TelemetryTest, AttachManyWithAnInvalidEventAttachesNothing) {
  ScopedIds ids{"many-invalid"};
  const Status s = attach_many("many-invalid", {{"test", "many", "ok"}, {"test", ""}}, no_op);
  EXPECT_EQ(s.code(), Errc::invalid_argument);
  EXPECT_THAT(s.message(), HasSubstr("(event 1)"));
  EXPECT_THAT(handlers_for({"test", "many", "ok"}), IsEmpty());
  EXPECT_EQ(attached_count(), baseline_);
  // The id was not taken either.
  EXPECT_TRUE(attach("many-invalid", {"test", "many", "ok"}, no_op).ok());
}

TEST_F(TelemetryTest, AttachManyWithAnEmptyEventNameReturnsInvalidArgument) {
  const Status s = attach_many("many-empty-name", {{"test", "a"}, {}}, no_op);
  EXPECT_EQ(s.code(), Errc::invalid_argument);
  EXPECT_THAT(handlers_for({"test", "a"}), IsEmpty());
}

TEST_F(TelemetryTest, AttachManyWithNoEventsReturnsInvalidArgument) {
  const Status s = attach_many("many-none", {}, no_op);
  EXPECT_EQ(s.code(), Errc::invalid_argument);
  EXPECT_EQ(detach("many-none").code(), Errc::not_found);
}

TEST_F(TelemetryTest, AttachManyWithARepeatedEventReturnsInvalidArgument) {
  const Status s = attach_many("many-repeat", {{"test", "r"}, {"test", "s"}, {"test", "r"}}, no_op);
  EXPECT_EQ(s.code(), Errc::invalid_argument);
  EXPECT_THAT(s.message(), HasSubstr("repeats"));
  EXPECT_THAT(handlers_for({"test", "r"}), IsEmpty());
}

TEST_F(TelemetryTest, AttachManyWithEmptyIdOrHandlerReturnsInvalidArgument) {
  EXPECT_EQ(attach_many("", {{"test", "x"}}, no_op).code(), Errc::invalid_argument);
  EXPECT_EQ(attach_many("many-no-handler", {{"test", "x"}}, nullptr).code(),
            Errc::invalid_argument);
  EXPECT_THAT(handlers_for({"test", "x"}), IsEmpty());
}

TEST_F(TelemetryTest, AttachManyWithIdInUseReturnsAlreadyExistsAndAttachesNothing) {
  ScopedIds ids{"many-dup"};
  ASSERT_TRUE(attach("many-dup", {"test", "many-dup", "a"}, no_op).ok());
  const Status s =
      attach_many("many-dup", {{"test", "many-dup", "b"}, {"test", "many-dup", "c"}}, no_op);
  EXPECT_EQ(s.code(), Errc::already_exists);
  EXPECT_THAT(handlers_for({"test", "many-dup", "b"}), IsEmpty());
  EXPECT_THAT(handlers_for({"test", "many-dup", "c"}), IsEmpty());
  EXPECT_EQ(attached_count(), baseline_ + 1);
}

// --- detach ---------------------------------------------------------------------------

TEST_F(TelemetryTest, DetachUnknownIdReturnsNotFound) {
  const Status s = detach("never-attached");
  EXPECT_EQ(s.code(), Errc::not_found);
  EXPECT_THAT(s.message(), HasSubstr("never-attached"));
}

TEST_F(TelemetryTest, DetachRemovesEveryEventOfTheId) {
  Recorder rec;
  ASSERT_TRUE(
      attach_many("detach-all", {{"test", "detach", "a"}, {"test", "detach", "b"}}, rec.handler())
          .ok());
  ASSERT_TRUE(detach("detach-all").ok());

  EXPECT_THAT(handlers_for({"test", "detach", "a"}), IsEmpty());
  EXPECT_THAT(handlers_for({"test", "detach", "b"}), IsEmpty());
  execute({"test", "detach", "a"}, json::object(), json::object());
  execute({"test", "detach", "b"}, json::object(), json::object());
  EXPECT_TRUE(rec.calls().empty());
  EXPECT_EQ(detach("detach-all").code(), Errc::not_found);
  // The id can be reused once detached.
  ASSERT_TRUE(attach("detach-all", {"test", "detach", "a"}, no_op).ok());
  EXPECT_TRUE(detach("detach-all").ok());
}

TEST_F(TelemetryTest, DetachLeavesOtherIdsOnTheSameEvent) {
  ScopedIds ids{"keep-1", "keep-2"};
  Recorder rec;
  ASSERT_TRUE(attach("keep-1", {"test", "keep"}, rec.handler("1")).ok());
  ASSERT_TRUE(attach("gone", {"test", "keep"}, rec.handler("gone")).ok());
  ASSERT_TRUE(attach("keep-2", {"test", "keep"}, rec.handler("2")).ok());
  ASSERT_TRUE(detach("gone").ok());
  execute({"test", "keep"}, json::object(), json::object());
  EXPECT_THAT(rec.tags(), ElementsAre("1", "2"));
}

// --- execute --------------------------------------------------------------------------

TEST_F(TelemetryTest, ExecuteReachesOnlyTheHandlersOfThatEvent) {
  ScopedIds ids{"only-exact", "only-prefix", "only-longer", "only-other"};
  Recorder rec;
  ASSERT_TRUE(attach("only-exact", {"test", "only", "x"}, rec.handler("exact")).ok());
  ASSERT_TRUE(attach("only-prefix", {"test", "only"}, rec.handler("prefix")).ok());
  ASSERT_TRUE(attach("only-longer", {"test", "only", "x", "y"}, rec.handler("longer")).ok());
  ASSERT_TRUE(attach("only-other", {"test", "only", "z"}, rec.handler("other")).ok());

  execute({"test", "only", "x"}, {{"value", 7}}, {{"source", "unit"}});

  const std::vector<Call> calls = rec.calls();
  ASSERT_EQ(calls.size(), 1U);
  EXPECT_EQ(calls[0].tag, "exact");
  EXPECT_EQ(calls[0].event, (EventName{"test", "only", "x"}));
  EXPECT_EQ(calls[0].measurements, (json{{"value", 7}}));
  EXPECT_EQ(calls[0].metadata, (json{{"source", "unit"}}));
}

TEST_F(TelemetryTest, ExecuteCallsHandlersInAttachOrder) {
  ScopedIds ids{"order-c", "order-a", "order-b"};
  Recorder rec;
  const EventName event{"test", "order"};
  // Ids deliberately not in alphabetical order: the order is attach order, not by id.
  ASSERT_TRUE(attach("order-c", event, rec.handler("c")).ok());
  ASSERT_TRUE(attach("order-a", event, rec.handler("a")).ok());
  ASSERT_TRUE(attach("order-b", event, rec.handler("b")).ok());
  // Re-attaching moves an id to the end.
  ASSERT_TRUE(detach("order-c").ok());
  ASSERT_TRUE(attach("order-c", event, rec.handler("c")).ok());

  execute(event, json::object(), json::object());
  EXPECT_THAT(rec.tags(), ElementsAre("a", "b", "c"));
  EXPECT_THAT(handlers_for(event), ElementsAre("order-a", "order-b", "order-c"));
}

TEST_F(TelemetryTest, ExecuteWithNoHandlerForTheEventDoesNothing) {
  ScopedIds ids{"elsewhere"};
  Recorder rec;
  ASSERT_TRUE(attach("elsewhere", {"test", "elsewhere"}, rec.handler()).ok());
  execute({"test", "nobody", "listens"}, json::object(), json::object());
  EXPECT_TRUE(rec.calls().empty());
}

TEST_F(TelemetryTest, ThrowingHandlerIsDetachedAndReportedOnce) {
  ScopedIds ids{"before", "thrower", "after", "failure-watch"};
  const EventName event{"test", "throws"};
  Recorder rec;
  Recorder failures;
  ASSERT_TRUE(attach("failure-watch", kFailureEvent, failures.handler()).ok());
  ASSERT_TRUE(attach("before", event, rec.handler("before")).ok());
  ASSERT_TRUE(attach("thrower", event, [&](const EventName&, const json&, const json&) {
                rec.handler("thrower")(event, json{}, json{});
                throw std::runtime_error("boom");
              }).ok());
  ASSERT_TRUE(attach("after", event, rec.handler("after")).ok());
  const std::size_t attached_with_thrower = attached_count();

  execute(event, json::object(), json::object());
  execute(event, json::object(), json::object());

  // The thrower ran once, the others ran both times and after it in the same call.
  EXPECT_THAT(rec.tags(), ElementsAre("before", "thrower", "after", "before", "after"));
  EXPECT_THAT(handlers_for(event), ElementsAre("before", "after"));
  EXPECT_EQ(attached_count(), attached_with_thrower - 1);

  const std::vector<Call> reports = failures.calls();
  ASSERT_EQ(reports.size(), 1U);
  EXPECT_EQ(reports[0].event, kFailureEvent);
  EXPECT_EQ(reports[0].measurements, json::object());
  EXPECT_EQ(reports[0].metadata, (json{{"handler_id", "thrower"},
                                       {"event_name", json::array({"test", "throws"})},
                                       {"reason", "boom"}}));
}

TEST_F(TelemetryTest, HandlerThrowingANonStdExceptionIsReportedWithReasonUnknown) {
  ScopedIds ids{"throws-int", "failure-watch"};
  Recorder failures;
  ASSERT_TRUE(attach("failure-watch", kFailureEvent, failures.handler()).ok());
  ASSERT_TRUE(attach("throws-int", {"test", "throws", "int"},
                     [](const EventName&, const json&, const json&) { throw 42; })
                  .ok());

  EXPECT_NO_THROW(execute({"test", "throws", "int"}, json::object(), json::object()));

  const std::vector<Call> reports = failures.calls();
  ASSERT_EQ(reports.size(), 1U);
  EXPECT_EQ(reports[0].metadata.at("handler_id"), "throws-int");
  EXPECT_EQ(reports[0].metadata.at("reason"), "unknown");
  EXPECT_EQ(detach("throws-int").code(), Errc::not_found);
}

TEST_F(TelemetryTest, ThrowingFailureHandlerIsDetachedWithoutRecursing) {
  ScopedIds ids{"throws-first", "failure-thrower", "failure-watch"};
  Recorder failures;
  ASSERT_TRUE(
      attach("failure-thrower", kFailureEvent, [](const EventName&, const json&, const json&) {
        throw std::logic_error("handler of failures failed");
      }).ok());
  ASSERT_TRUE(attach("failure-watch", kFailureEvent, failures.handler()).ok());
  ASSERT_TRUE(
      attach("throws-first", {"test", "throws", "first"},
             [](const EventName&, const json&, const json&) { throw std::runtime_error("first"); })
          .ok());

  execute({"test", "throws", "first"}, json::object(), json::object());

  // Reports arrive innermost first: the failure handler's own failure is executed while
  // the report of the first failure is still being delivered.
  const std::vector<Call> reports = failures.calls();
  ASSERT_EQ(reports.size(), 2U);
  EXPECT_EQ(reports[0].metadata.at("handler_id"), "failure-thrower");
  EXPECT_EQ(reports[0].metadata.at("event_name"), json(kFailureEvent));
  EXPECT_EQ(reports[0].metadata.at("reason"), "handler of failures failed");
  EXPECT_EQ(reports[1].metadata.at("handler_id"), "throws-first");
  EXPECT_THAT(handlers_for(kFailureEvent), ElementsAre("failure-watch"));
}

TEST_F(TelemetryTest, HandlerThrowingOnSeveralThreadsAtOnceIsReportedOnce) {
  constexpr int kThreads = 4;
  ScopedIds ids{"shared-thrower", "failure-watch"};
  const EventName event{"test", "throws", "together"};
  Recorder failures;
  ASSERT_TRUE(attach("failure-watch", kFailureEvent, failures.handler()).ok());
  // Every thread is inside the handler before any of them throws, so all of them catch
  // an exception from the same attachment.
  std::latch all_inside(kThreads);
  ASSERT_TRUE(attach("shared-thrower", event, [&](const EventName&, const json&, const json&) {
                all_inside.arrive_and_wait();
                throw std::runtime_error("together");
              }).ok());

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] { execute(event, json::object(), json::object()); });
  }
  for (std::thread& thread : threads)
    thread.join();

  EXPECT_EQ(failures.calls().size(), 1U);
  EXPECT_THAT(handlers_for(event), IsEmpty());
}

TEST_F(TelemetryTest, ReattachedIdIsNotDetachedByAnEarlierAttachmentsFailure) {
  ScopedIds ids{"reused"};
  const EventName event{"test", "reused"};
  Recorder rec;
  std::latch thrower_entered(1);
  std::latch reattached(1);
  ASSERT_TRUE(attach("reused", event, [&](const EventName&, const json&, const json&) {
                thrower_entered.count_down();
                reattached.wait();
                throw std::runtime_error("old attachment");
              }).ok());

  std::thread caller([&] { execute(event, json::object(), json::object()); });
  thrower_entered.wait();
  // While the old handler is still running, its id is detached and attached again.
  ASSERT_TRUE(detach("reused").ok());
  ASSERT_TRUE(attach("reused", event, rec.handler("new")).ok());
  reattached.count_down();
  caller.join();

  EXPECT_THAT(handlers_for(event), ElementsAre("reused"));
  execute(event, json::object(), json::object());
  EXPECT_THAT(rec.tags(), ElementsAre("new"));
}

TEST_F(TelemetryTest, HandlerMayAttachDetachAndExecuteFromInsideAHandler) {
  ScopedIds ids{"reentrant", "late", "inner"};
  const EventName outer{"test", "reentry", "outer"};
  const EventName inner{"test", "reentry", "inner"};
  Recorder rec;
  ASSERT_TRUE(attach("inner", inner, rec.handler("inner")).ok());
  ASSERT_TRUE(attach("reentrant", outer,
                     [&, owned = std::string("captured state")](const EventName&, const json&,
                                                                const json&) {
                       EXPECT_TRUE(attach("late", outer, rec.handler("late")).ok());
                       execute(inner, json::object(), json::object());
                       EXPECT_TRUE(detach("reentrant").ok());
                       // This call's snapshot keeps the handler alive after its detach.
                       rec.handler(owned)(outer, json{}, json{});
                     })
                  .ok());

  execute(outer, json::object(), json::object());
  // The handler attached during the call is only seen by later calls.
  EXPECT_THAT(rec.tags(), ElementsAre("inner", "captured state"));
  execute(outer, json::object(), json::object());
  EXPECT_THAT(rec.tags(), ElementsAre("inner", "captured state", "late"));
  EXPECT_THAT(handlers_for(outer), ElementsAre("late"));
}

TEST_F(TelemetryTest, HandlerDetachedByAnEarlierHandlerStillRunsInThatCallOnly) {
  ScopedIds ids{"detacher", "victim"};
  const EventName event{"test", "snapshot"};
  Recorder rec;
  ASSERT_TRUE(attach("detacher", event, [&](const EventName&, const json&, const json&) {
                rec.handler("detacher")(event, json{}, json{});
                static_cast<void>(detach("victim"));
              }).ok());
  ASSERT_TRUE(attach("victim", event, rec.handler("victim")).ok());

  execute(event, json::object(), json::object());
  execute(event, json::object(), json::object());
  EXPECT_THAT(rec.tags(), ElementsAre("detacher", "victim", "detacher"));
}

// --- enabled --------------------------------------------------------------------------

TEST_F(TelemetryTest, EnabledCountsAttachmentsAndIsFalseOnceEverythingIsDetached) {
  ASSERT_EQ(baseline_, 0U) << "another test left a handler attached: " << baseline_;
  EXPECT_FALSE(enabled());

  ASSERT_TRUE(attach("enabled-one", {"test", "enabled", "a"}, no_op).ok());
  EXPECT_TRUE(enabled());
  ASSERT_TRUE(
      attach_many("enabled-two", {{"test", "enabled", "a"}, {"test", "enabled", "b"}}, no_op).ok());
  EXPECT_EQ(attached_count(), 3U);  // one per (id, event)

  ASSERT_TRUE(detach("enabled-two").ok());
  EXPECT_EQ(attached_count(), 1U);
  EXPECT_TRUE(enabled());
  ASSERT_TRUE(detach("enabled-one").ok());
  EXPECT_EQ(attached_count(), 0U);
  EXPECT_FALSE(enabled());
}

TEST_F(TelemetryTest, EnabledIsFalseAfterTheLastHandlerDetachesItselfByThrowing) {
  ASSERT_EQ(baseline_, 0U) << "another test left a handler attached: " << baseline_;
  ASSERT_TRUE(
      attach("last-thrower", {"test", "last"}, [](const EventName&, const json&, const json&) {
        throw std::runtime_error("bye");
      }).ok());
  EXPECT_TRUE(enabled());
  execute({"test", "last"}, json::object(), json::object());
  EXPECT_FALSE(enabled());
}

// --- span -----------------------------------------------------------------------------

class SpanTest : public TelemetryTest {
 protected:
  void SetUp() override {
    TelemetryTest::SetUp();
    ASSERT_TRUE(
        attach_many("span-watch",
                    {detail::with_suffix(prefix_, "start"), detail::with_suffix(prefix_, "stop"),
                     detail::with_suffix(prefix_, "exception")},
                    rec_.handler())
            .ok());
  }
  void TearDown() override {
    EXPECT_TRUE(detach("span-watch").ok());
    TelemetryTest::TearDown();
  }

  const EventName prefix_{"test", "span"};
  Recorder rec_;
};

TEST(TelemetryDetail, WithSuffixAppendsOneSegment) {
  EXPECT_EQ(detail::with_suffix({"a", "b"}, "stop"), (EventName{"a", "b", "stop"}));
}

TEST(TelemetryDetail, MonotonicNsNeverGoesBackwards) {
  const std::int64_t first = detail::monotonic_ns();
  const std::int64_t second = detail::monotonic_ns();
  EXPECT_GT(first, 0);
  EXPECT_LE(first, second);
}

TEST_F(SpanTest, SpanEmitsStartAndStopAndReturnsTheValue) {
  const json metadata{{"table", "orders"}};
  const std::int64_t before = detail::monotonic_ns();
  const int result = span(prefix_, metadata, [] { return 42; });
  const std::int64_t after = detail::monotonic_ns();

  EXPECT_EQ(result, 42);
  const std::vector<Call> calls = rec_.calls();
  ASSERT_EQ(calls.size(), 2U);
  EXPECT_EQ(calls[0].event, (EventName{"test", "span", "start"}));
  EXPECT_EQ(calls[1].event, (EventName{"test", "span", "stop"}));
  EXPECT_EQ(calls[0].metadata, metadata);
  EXPECT_EQ(calls[1].metadata, metadata);

  const json& start = calls[0].measurements;
  ASSERT_EQ(start.size(), 2U);
  const auto start_ns = start.at("monotonic_time").get<std::int64_t>();
  EXPECT_GE(start_ns, before);
  EXPECT_GT(start.at("system_time").get<std::int64_t>(), 0);

  const json& stop = calls[1].measurements;
  ASSERT_EQ(stop.size(), 2U);
  const auto stop_ns = stop.at("monotonic_time").get<std::int64_t>();
  EXPECT_LE(stop_ns, after);
  EXPECT_EQ(stop.at("duration").get<std::int64_t>(), stop_ns - start_ns);
  EXPECT_GE(stop.at("duration").get<std::int64_t>(), 0);
}

TEST_F(SpanTest, SpanWithAVoidFnEmitsStartAndStop) {
  int runs = 0;
  span(prefix_, json::object(), [&] { ++runs; });
  static_assert(std::is_void_v<decltype(span(prefix_, json::object(), [] {}))>);

  EXPECT_EQ(runs, 1);
  EXPECT_THAT(rec_.events(),
              ElementsAre(EventName{"test", "span", "start"}, EventName{"test", "span", "stop"}));
}

TEST_F(SpanTest, SpanReturnsAReferenceToTheSameObject) {
  int target = 1;
  decltype(auto) ref = span(prefix_, json::object(), [&]() -> int& { return target; });
  static_assert(std::is_same_v<decltype(ref), int&>);
  ref = 5;
  EXPECT_EQ(target, 5);
  EXPECT_EQ(rec_.calls().size(), 2U);
}

TEST_F(SpanTest, SpanReturnsAMoveOnlyValue) {
  std::unique_ptr<int> value =
      span(prefix_, json::object(), [] { return std::make_unique<int>(3); });
  ASSERT_NE(value, nullptr);
  EXPECT_EQ(*value, 3);
}

TEST_F(SpanTest, SpanEmitsExceptionInsteadOfStopAndRethrows) {
  const json metadata{{"table", "orders"}};
  try {
    span(prefix_, metadata, []() -> int { throw std::runtime_error("db down"); });
    FAIL() << "span swallowed the exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "db down");
  }

  const std::vector<Call> calls = rec_.calls();
  ASSERT_EQ(calls.size(), 2U);
  EXPECT_EQ(calls[0].event, (EventName{"test", "span", "start"}));
  EXPECT_EQ(calls[1].event, (EventName{"test", "span", "exception"}));
  EXPECT_EQ(calls[1].metadata,
            (json{{"table", "orders"}, {"kind", "exception"}, {"reason", "db down"}}));
  const json& m = calls[1].measurements;
  ASSERT_EQ(m.size(), 2U);
  EXPECT_EQ(m.at("duration").get<std::int64_t>(),
            m.at("monotonic_time").get<std::int64_t>() -
                calls[0].measurements.at("monotonic_time").get<std::int64_t>());
}

TEST_F(SpanTest, SpanWithAVoidFnThatThrowsANonStdExceptionReportsUnknown) {
  EXPECT_THROW(span(prefix_, json{}, [] { throw 7; }), int);

  const std::vector<Call> calls = rec_.calls();
  ASSERT_EQ(calls.size(), 2U);
  EXPECT_EQ(calls[1].event, (EventName{"test", "span", "exception"}));
  // A null metadata (what `{}` gives) becomes an object holding only kind and reason.
  EXPECT_EQ(calls[1].metadata, (json{{"kind", "exception"}, {"reason", "unknown"}}));
}

TEST_F(SpanTest, SpanExceptionKeepsNonObjectMetadataUnderItsOwnKey) {
  EXPECT_THROW(span(prefix_, json("request-7"), [] { throw std::out_of_range("x"); }),
               std::out_of_range);
  const std::vector<Call> calls = rec_.calls();
  ASSERT_EQ(calls.size(), 2U);
  EXPECT_EQ(calls[1].metadata,
            (json{{"metadata", "request-7"}, {"kind", "exception"}, {"reason", "x"}}));
}

TEST_F(TelemetryTest, SpanWithNothingAttachedOnlyCallsFn) {
  ASSERT_EQ(baseline_, 0U) << "another test left a handler attached: " << baseline_;
  int runs = 0;
  EXPECT_EQ(span({"test", "span", "idle"}, json::object(), [&] { return ++runs; }), 1);
  EXPECT_THROW(span({"test", "span", "idle"}, json::object(), [] { throw 1; }), int);
}

// --- concurrency ----------------------------------------------------------------------

TEST_F(TelemetryTest, ConcurrentAttachDetachAndExecuteFromEightThreadsCountExactly) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 150;
  constexpr int kExecutesPerRound = 10;
  const EventName shared{"test", "concurrent", "shared"};

  std::atomic<long> shared_calls{0};
  std::atomic<long> failures{0};
  ScopedIds ids{"concurrent-shared", "concurrent-failures"};
  ASSERT_TRUE(attach("concurrent-shared", shared, [&](const EventName&, const json&, const json&) {
                shared_calls.fetch_add(1, std::memory_order_relaxed);
              }).ok());
  ASSERT_TRUE(
      attach("concurrent-failures", kFailureEvent, [&](const EventName&, const json&, const json&) {
        failures.fetch_add(1, std::memory_order_relaxed);
      }).ok());

  std::vector<long> own_calls(kThreads, 0);
  std::vector<int> errors(kThreads, 0);
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const auto slot = static_cast<std::size_t>(t);
      const std::string id = "concurrent-" + std::to_string(t);
      const std::string thrower = "concurrent-thrower-" + std::to_string(t);
      const EventName own{"test", "concurrent", std::to_string(t)};
      long& calls = own_calls[slot];
      int& err = errors[slot];
      start.arrive_and_wait();
      for (int round = 0; round < kRounds; ++round) {
        if (!attach(id, own, [&](const EventName&, const json&, const json&) { ++calls; }).ok()) {
          ++err;
        }
        if (!attach(thrower, own, [](const EventName&, const json&, const json&) {
               throw std::runtime_error("concurrent");
             }).ok()) {
          ++err;
        }
        for (int i = 0; i < kExecutesPerRound; ++i) {
          execute(own, json::object(), json::object());
          execute(shared, json::object(), json::object());
        }
        if (handlers_for(shared) != std::vector<std::string>{"concurrent-shared"}) ++err;
        if (!detach(id).ok()) ++err;
        // The thrower detached itself on the first execute of this round.
        if (detach(thrower).code() != Errc::not_found) ++err;
        execute(own, json::object(), json::object());  // nothing attached: not counted
      }
    });
  }
  for (std::thread& thread : threads)
    thread.join();

  for (int t = 0; t < kThreads; ++t) {
    const auto slot = static_cast<std::size_t>(t);
    EXPECT_EQ(errors[slot], 0) << "thread " << t;
    EXPECT_EQ(own_calls[slot], kRounds * kExecutesPerRound) << "thread " << t;
  }
  EXPECT_EQ(shared_calls.load(), kThreads * kRounds * kExecutesPerRound);
  EXPECT_EQ(failures.load(), kThreads * kRounds);
}

}  // namespace
}  // namespace emissions::telemetry

namespace emissions::telemetry {
namespace {

TEST(TelemetryProbeTest, ProbeFollowsAttachAndDetachOfItsOwnEvent) {
  const Probe probe({"probe_test", "watched"});
  const Probe other({"probe_test", "other"});
  EXPECT_FALSE(probe.enabled());
  ASSERT_TRUE(
      attach("probe-watch", {"probe_test", "other"}, [](const auto&, const auto&, const auto&) {
      }).ok());
  EXPECT_FALSE(probe.enabled());  // something is attached, but not to this event
  EXPECT_TRUE(other.enabled());
  int calls = 0;
  ASSERT_TRUE(attach("probe-watch-2", {"probe_test", "watched"},
                     [&](const auto&, const auto&, const auto&) { ++calls; })
                  .ok());
  EXPECT_TRUE(probe.enabled());
  probe.execute({{"n", 1}}, nlohmann::json::object());
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE(detach("probe-watch-2").ok());
  EXPECT_FALSE(probe.enabled());
  ASSERT_TRUE(detach("probe-watch").ok());
  EXPECT_FALSE(other.enabled());
}

TEST(TelemetryProbeTest, ProbeCreatedAfterAttachStartsEnabled) {
  ASSERT_TRUE(
      attach("probe-late", {"probe_test", "late"}, [](const auto&, const auto&, const auto&) {
      }).ok());
  const Probe late({"probe_test", "late"});
  EXPECT_TRUE(late.enabled());
  ASSERT_TRUE(detach("probe-late").ok());
  EXPECT_FALSE(late.enabled());
}

}  // namespace
}  // namespace emissions::telemetry
