// The webhook adapter running out of memory, on either of its threads. For n = 1, 2, ...
// the n-th C++ allocation a thread makes fails (operator new is replaced, in this
// executable alone: failing_allocations.hpp), or that one and every later one ("sticky":
// memory stays short), until the event is settled. The event must still be settled exactly
// once, delivered or retriably, never "abandoned" for good, and the process must not end
// (as a throw inside noexcept would end it).
// - The I/O thread, while it answers a request. From review of h-hook9: Client::finish()
//   moved the request into a temporary before copying the response; an allocation failing
//   there destroyed the request with its delivery, and a connection reset (retriable) was
//   settled "delivery abandoned" (internal, for good).
// - The consumer's thread, inside deliver(). From review of a1cf5d1: the catch block that
//   fails the delivery built its message with memory still short, and ended the process.
// Each allocation up to the settlement is tried in turn, so the tests do not depend on their
// order (the settlement callback disarms the injection: what follows it is not tried).
// libcurl allocates with malloc and is not affected. The payload is a number: nlohmann's
// json allocates while it destroys an object or array, and throwing there (inside a
// destructor) ends any program, ours included.
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "emissions/adapters/webhook.hpp"
#include "oom_harness.hpp"
#include "pipeline/delivery_state.hpp"
#include "test_server.hpp"
#include "webhook_fixture.hpp"

namespace {

using emissions::test_support::fail_allocations;
using emissions::test_support::FailingCaller;
using emissions::test_support::one_event;
using emissions::test_support::SettlementRecord;
using emissions::test_support::some_events;
using emissions::test_support::stop_failing_allocations;
using emissions::test_support::sweep_allocations;
using emissions::webhooks_test::options_for;
using emissions::webhooks_test::Received;
using emissions::webhooks_test::Reply;
using emissions::webhooks_test::TestServer;
using namespace std::chrono_literals;

// The I/O thread's id, learned from the settlement of a first event (answered 200), which
// also lets the thread's buffers reach their capacity.
std::thread::id learn_io_thread(emissions::adapters::Webhook& hook) {
  const auto first = std::make_shared<SettlementRecord>();
  EXPECT_TRUE(emissions::detail::deliver_detached(hook, one_event(), 1, first->callback()).ok());
  first->wait();
  std::this_thread::sleep_for(100ms);  // the I/O thread done with that request
  std::lock_guard lock(first->mutex);
  EXPECT_EQ(first->settlements, 1);
  return first->thread;
}

enum class Failing { io_thread, caller };

// Expects each of `events` settled once, delivered or retriably.
void expect_settled_once(SettlementRecord& outcome, std::size_t events) {
  std::lock_guard lock(outcome.mutex);
  EXPECT_EQ(outcome.settlements, static_cast<int>(events));
  EXPECT_EQ(outcome.failed_for_good, 0)
      << "failed for good, the last: code " << static_cast<int>(outcome.code) << ", '"
      << outcome.reason << "'";
}

// For n = 1, 2, ...: a fresh adapter, whose thread `where` runs out of memory at its n-th
// allocation (and from then on, if `sticky`) while it handles a delivery of `events` events
// (one request each) that `reply` answers; every event settled once and never for good.
// Returns how many allocations were tried.
int sweep(Failing where, bool sticky, Reply reply, std::size_t events = 1) {
  return sweep_allocations([&](int n) {
    const auto outcome = std::make_shared<SettlementRecord>();  // outlives the adapter
    TestServer server([reply](const Received&, std::size_t index) {
      return index == 0 ? Reply{.status = 200} : reply;
    });
    emissions::adapters::Webhook hook(options_for(server));
    const std::thread::id io = learn_io_thread(hook);
    if (where == Failing::io_thread) {
      fail_allocations(io, n, sticky);
      EXPECT_TRUE(
          emissions::detail::deliver_detached(hook, some_events(events), 1, outcome->callback())
              .ok());
    } else {
      FailingCaller caller(hook, n, sticky);
      // Returns ok: deliver() does not throw, whatever it could not allocate.
      EXPECT_TRUE(
          emissions::detail::deliver_detached(caller, some_events(events), 1, outcome->callback())
              .ok());
    }
    outcome->wait(static_cast<int>(events));
    stop_failing_allocations();
    expect_settled_once(*outcome, events);
  });
}

TEST(WebhookIoThreadOutOfMemory, AConnectionResetIsSettledOnceAndRetriablyWhateverAllocationFails) {
  EXPECT_GT(sweep(Failing::io_thread, false, Reply{.status = 0, .action = Reply::Action::reset}), 0)
      << "no allocation of the I/O thread was refused: the test tried nothing";
}

TEST(WebhookIoThreadOutOfMemory, AServerErrorIsSettledOnceAndRetriablyWhateverAllocationFails) {
  EXPECT_GT(
      sweep(Failing::io_thread, false, Reply{.status = 503, .headers = {{"Retry-After", "1"}}}), 0)
      << "no allocation of the I/O thread was refused: the test tried nothing";
}

TEST(WebhookIoThreadOutOfMemory, ASuccessIsSettledOnceWhateverAllocationFails) {
  // Usually none: the I/O thread allocates nothing of its own to settle a 2xx.
  (void)sweep(Failing::io_thread, false, Reply{.status = 200});
}

TEST(WebhookIoThreadOutOfMemory, AResetIsSettledOnceAndRetriablyWhileMemoryStaysShort) {
  EXPECT_GT(sweep(Failing::io_thread, true, Reply{.status = 0, .action = Reply::Action::reset}), 0)
      << "no allocation of the I/O thread was refused: the test tried nothing";
}

TEST(WebhookIoThreadOutOfMemory, RequestsStartingNewTransfersAreSettledOnceWhileMemoryStaysShort) {
  // Three requests at once: two of them need a transfer of their own (learn_io_thread left
  // one), whose setting up allocates. From review: Client::start's catch block built its
  // message with memory still short, inside noexcept.
  EXPECT_GT(sweep(Failing::io_thread, true, Reply{.status = 200}, 3), 0)
      << "no allocation of the I/O thread was refused: the test tried nothing";
}

TEST(WebhookCallerOutOfMemory, ThreeEventsAreSettledOnceAndRetriablyWhileMemoryStaysShort) {
  EXPECT_GT(sweep(Failing::caller, true, Reply{.status = 200}, 3), 0)
      << "deliver() allocated nothing: the test tried nothing";
}

TEST(WebhookCallerOutOfMemory, AnEventIsSettledOnceAndRetriablyWhateverAllocationFails) {
  EXPECT_GT(sweep(Failing::caller, false, Reply{.status = 200}), 0)
      << "deliver() allocated nothing: the test tried nothing";
}

TEST(WebhookCallerOutOfMemory, AnEventIsSettledOnceAndRetriablyWhileMemoryStaysShort) {
  EXPECT_GT(sweep(Failing::caller, true, Reply{.status = 200}), 0)
      << "deliver() allocated nothing: the test tried nothing";
}

}  // namespace
