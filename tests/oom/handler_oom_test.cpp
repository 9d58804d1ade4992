// A handler's worker thread out of memory while it commits what the handler emitted
// (operator new replaced, in this executable alone: failing_allocations.hpp). From review:
// HandlerDispatcher::invoke (noexcept) called the ambient transaction's commit() outside any
// try, and commit() threw std::bad_alloc when memory ran out (publish() built its "routing the
// commit failed" message with memory still short): the process ended. What this test reaches
// is that message (the commit's routing tables are the worker's only allocations after the
// handler returns, so one or two are tried); invoke's own catch is there for the throws of
// commit() this test does not reach.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "emissions/ambient.hpp"
#include "emissions/emitter.hpp"
#include "emissions/handler.hpp"
#include "failing_allocations.hpp"
#include "oom_harness.hpp"
#include "recording_adapter.hpp"

namespace {

using emissions::test_support::fail_allocations;
using emissions::test_support::stop_failing_allocations;
using emissions::test_support::sweep_allocations;
using namespace std::chrono_literals;

// Emits "derived", then lets its thread's allocations fail from the n-th on (first attempt
// only): what follows on this thread is the dispatcher committing "derived".
class EmitsThenRunsShort final : public emissions::Handler {
 public:
  explicit EmitsThenRunsShort(int n) : n_(n) {}
  [[nodiscard]] std::string_view name() const override { return "emits-then-runs-short"; }
  [[nodiscard]] std::vector<emissions::EventName> events() const override {
    return {emissions::EventName("placed")};
  }
  emissions::HandlerResult handle_event(const emissions::Event&) override {
    (void)emissions::emit("derived", 1);
    if (!armed_.exchange(true)) fail_allocations(std::this_thread::get_id(), n_, true);
    ran_.store(true);
    return emissions::HandlerResult::ok();
  }
  [[nodiscard]] bool ran() const { return ran_.load(); }

 private:
  int n_;
  std::atomic<bool> armed_{false};
  std::atomic<bool> ran_{false};
};

TEST(HandlerOutOfMemory, CommittingWhatAHandlerEmittedWhileMemoryStaysShortEndsNothing) {
  const int tried = sweep_allocations(
      [](int n) {
        auto sink = std::make_shared<emissions::test_support::RecordingAdapter>("sink");
        auto handler = std::make_shared<EmitsThenRunsShort>(n);
        emissions::Config config;
        config.make_default = false;
        config.handler_concurrency = 1;
        config.add_adapter(sink);
        config.add_handler(handler);
        emissions::Emitter emitter(std::move(config));
        {
          emissions::Transaction tx = emitter.start();
          ASSERT_TRUE(tx.emit("placed", 1).ok());
          ASSERT_TRUE(tx.commit().ok());
        }
        for (int i = 0; i < 1000 && !handler->ran(); ++i)
          std::this_thread::sleep_for(5ms);
        ASSERT_TRUE(handler->ran());
        // The worker commits, short of memory; drain() (on this thread, which allocates
        // freely) returns once that invocation is over.
        EXPECT_TRUE(emitter.drain(10s).ok());
        stop_failing_allocations();
        EXPECT_TRUE(emitter.drain(10s).ok());
        // "derived" reached the sink once, or (its commit failed: an error, not retried) never.
        const std::vector<std::string> names = sink->names();
        EXPECT_EQ(std::count(names.begin(), names.end(), "placed"), 1);
        EXPECT_LE(std::count(names.begin(), names.end(), "derived"), 1);
      },
      100);
  EXPECT_GT(tried, 0) << "no allocation was refused: the test tried nothing";
}

}  // namespace
