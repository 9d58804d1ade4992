// The Webhook adapter's lifecycle against its own I/O thread: terminate() from another thread
// wakes that thread and returns by its deadline; the adapter shut down, or released for the
// last time, from a callback running on that thread neither joins the thread from itself
// (std::terminate) nor frees what the loop still uses.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "emissions/adapters/webhook.hpp"
#include "emissions/emitter.hpp"
#include "emissions/event.hpp"
#include "emissions/telemetry.hpp"
#include "emissions/testing.hpp"
#include "pipeline/delivery_state.hpp"
#include "recording_adapter.hpp"
#include "test_server.hpp"
#include "webhook_fixture.hpp"

namespace {

using emissions::Errc;
using emissions::adapters::Webhook;
using emissions::test_support::DetachOnExit;
using emissions::webhooks_test::commit_each;
using emissions::webhooks_test::config_with;
using emissions::webhooks_test::options_for;
using emissions::webhooks_test::Received;
using emissions::webhooks_test::Reply;
using emissions::webhooks_test::TestServer;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

const std::vector<std::string> kResponse = {"emissions", "webhook", "response"};

std::vector<emissions::Event> events(std::size_t n) {
  std::vector<emissions::Event> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    out[i].id = emissions::EventId::generate();
    out[i].name = emissions::EventName("order_created");
    out[i].payload = {{"n", i}};
  }
  return out;
}

TEST(WebhookLifecycle, TerminateReturnsByItsDeadlineWhileARequestHangsOnAServerThatNeverAnswers) {
  TestServer server(
      [](const Received&, std::size_t) { return Reply{.status = 200, .delay = 10min}; });
  auto options = options_for(server);
  options.timeout = std::chrono::minutes(5);  // the request alone would hang for minutes
  Webhook hook(std::move(options));
  const std::vector<emissions::Event> batch = events(2);
  ASSERT_TRUE(emissions::testing::deliver_now(hook, batch).ok());
  ASSERT_TRUE(server.wait_for_requests(2, 5s));
  // The I/O thread now sleeps in curl_multi_poll with nothing to do until the server answers.
  const auto started = std::chrono::steady_clock::now();
  const emissions::Status status = hook.terminate(emissions::deadline_after(200ms));
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(status.code(), Errc::timeout);
  EXPECT_THAT(status.message(), HasSubstr("2 requests had no response by the deadline"));
  EXPECT_EQ(hook.outstanding(), 0u);
  EXPECT_GE(took, 200ms);
  // Woken at once (curl_multi_wakeup), not after its longest sleep (1 s) or the requests'
  // timeout: the bound is well under both, with room for a loaded machine.
  EXPECT_LT(took, 200ms + 750ms) << std::chrono::duration_cast<std::chrono::milliseconds>(took);
}

// What a handler on the I/O thread shares with its test: held by the handler itself, since
// the thread may still be running it (for a later response) once the test has returned.
struct Shared {
  std::mutex mutex;
  std::condition_variable reported;
  std::vector<nlohmann::json> responses;        // the metadata of every response report
  std::unique_ptr<emissions::Emitter> emitter;  // handed to the handler
  std::shared_ptr<Webhook> hook;                // handed to the handler
  std::atomic<bool> returned{false};
  emissions::Status inside;  // written before `returned`

  // Records a response report (first thing the handler does).
  void record(const nlohmann::json& metadata) {
    std::lock_guard lock(mutex);
    responses.push_back(metadata);
    reported.notify_all();  // under the lock: the test may return once it sees the count
  }
  // Waits for `n` response reports; a copy of them (fewer when 10 s passed first).
  std::vector<nlohmann::json> wait_for(std::size_t n) {
    std::unique_lock lock(mutex);
    reported.wait_for(lock, std::chrono::seconds(10), [&] { return responses.size() >= n; });
    return responses;
  }
};

TEST(WebhookLifecycle, ACallbackOnTheIoThreadThatShutsDownAndDestroysTheEmitterIsSafe) {
  TestServer server([](const Received&, std::size_t) { return Reply{.status = 200}; });
  auto hook = std::make_shared<Webhook>(options_for(server));
  const std::weak_ptr<Webhook> watch = hook;
  auto emitter = std::make_unique<emissions::Emitter>(config_with(hook));
  hook.reset();  // the Emitter holds the last reference

  const auto shared = std::make_shared<Shared>();
  const DetachOnExit attached{"webhook-lifecycle-shutdown"};
  ASSERT_TRUE(emissions::telemetry::attach(attached.id, kResponse,
                                           [shared](auto&, auto&, const nlohmann::json& metadata) {
                                             shared->record(metadata);
                                             std::unique_ptr<emissions::Emitter> mine;
                                             {
                                               std::lock_guard lock(shared->mutex);
                                               mine = std::move(shared->emitter);
                                             }
                                             if (!mine) return;
                                             // On the adapter's I/O thread: terminate() runs
                                             // here, then ~Webhook with the Emitter.
                                             shared->inside = mine->shutdown(300ms);
                                             mine.reset();
                                             shared->returned = true;
                                           })
                  .ok());
  commit_each(*emitter, 3);
  {
    std::lock_guard lock(shared->mutex);
    shared->emitter = std::move(emitter);
  }
  // One report per request, each exactly once: the one answered, and the rest failed when
  // the loop ended after the callback.
  EXPECT_EQ(shared->wait_for(3).size(), 3u);
  ASSERT_TRUE(shared->returned.load());
  EXPECT_FALSE(shared->inside.ok());  // it could not drain what its own thread was to settle
  EXPECT_TRUE(watch.expired());
}

TEST(WebhookLifecycle, ACallbackOnTheIoThreadThatReleasesTheLastReferenceIsSafe) {
  TestServer server([](const Received&, std::size_t) { return Reply{.status = 200}; });
  const auto shared = std::make_shared<Shared>();
  shared->hook = std::make_shared<Webhook>(options_for(server));
  const std::weak_ptr<Webhook> watch = shared->hook;
  const DetachOnExit attached{"webhook-lifecycle-last-reference"};
  ASSERT_TRUE(emissions::telemetry::attach(attached.id, kResponse,
                                           [shared](auto&, auto&, const nlohmann::json& metadata) {
                                             shared->record(metadata);
                                             std::shared_ptr<Webhook> last;
                                             {
                                               std::lock_guard lock(shared->mutex);
                                               last = std::move(shared->hook);
                                             }
                                             if (!last) return;
                                             last.reset();  // ~Webhook on the I/O thread
                                             shared->returned = true;
                                           })
                  .ok());
  const std::vector<emissions::Event> batch = events(3);
  {
    std::lock_guard lock(shared->mutex);
    ASSERT_TRUE(emissions::testing::deliver_now(*shared->hook, batch).ok());
  }
  const std::vector<nlohmann::json> records = shared->wait_for(3);
  ASSERT_EQ(records.size(), 3u);  // each request reported once, answered or given up
  ASSERT_TRUE(shared->returned.load());
  EXPECT_TRUE(watch.expired());
  EXPECT_EQ(records[0].at("outcome"), "delivered");
  for (std::size_t i = 1; i < records.size(); ++i) {
    if (records[i].at("outcome") != "delivered") {
      EXPECT_THAT(records[i].at("reason").get<std::string>(), HasSubstr("terminated"));
    }
  }
}

}  // namespace

// Finished requests are kept for reuse with their settled delivery, which the next delivery's
// thread releases; an adapter that receives nothing more must not keep it (and the events of
// its batch) for as long as it lives: the I/O thread releases it once idle.
TEST(WebhookLifecycle, ASettledDeliveryIsReleasedOnceTheAdapterIsIdle) {
  TestServer server([](const Received&, std::size_t) { return Reply{.status = 200}; });
  Webhook hook(options_for(server));
  auto sentinel = std::make_shared<int>(0);  // held by the delivery (its settlement listener)
  const std::weak_ptr<int> watch = sentinel;
  std::atomic<std::size_t> delivered{0};
  ASSERT_TRUE(emissions::detail::deliver_detached(
                  hook, events(3), 1,
                  [keep = std::move(sentinel), &delivered](
                      std::size_t, bool ok, const emissions::Status*, std::chrono::milliseconds) {
                    if (ok) delivered.fetch_add(1);
                  })
                  .ok());
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while ((delivered.load() < 3 || !watch.expired()) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  EXPECT_EQ(delivered.load(), 3u);
  EXPECT_TRUE(watch.expired()) << "the settled delivery is still held by the idle adapter";
  EXPECT_EQ(hook.outstanding(), 0u);
}

// Found in review: spares kept their settled deliveries and were handed back last in, first
// out, released by the I/O thread only when no transfer was active. An adapter that stayed
// busy (a request always in flight) kept the older spares' deliveries, and the batches
// (events, commit callbacks) they held, for as long as it stayed busy. A settled delivery is
// now released as soon as it is reported, busy or not.
TEST(WebhookLifecycle, ASettledDeliveryIsReleasedWhileTheAdapterStaysBusy) {
  TestServer server([](const Received& request, std::size_t) {
    Reply reply{.status = 200};
    if (request.body.find("slow") != std::string::npos) reply.delay = 400ms;
    return reply;
  });
  Webhook hook(options_for(server));
  std::atomic<std::size_t> slow_done{0};
  // Keeps a request in flight: a slow one every 150 ms (at most 3-4 at once).
  std::atomic<bool> stop{false};
  std::atomic<bool> started{false};
  std::thread busy([&] {
    while (!stop.load()) {
      std::vector<emissions::Event> slow = events(1);
      slow[0].payload["kind"] = "slow";
      (void)emissions::detail::deliver_detached(
          hook, std::move(slow), 1,
          [&slow_done](std::size_t, bool, const emissions::Status*, std::chrono::milliseconds) {
            slow_done.fetch_add(1);
          });
      started = true;
      std::this_thread::sleep_for(150ms);
    }
  });
  while (!started.load())
    std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(50ms);

  auto sentinel = std::make_shared<int>(0);  // held by the delivery (its settlement listener)
  const std::weak_ptr<int> watch = sentinel;
  std::atomic<std::size_t> delivered{0};
  ASSERT_TRUE(emissions::detail::deliver_detached(
                  hook, events(10), 1,
                  [keep = std::move(sentinel), &delivered](
                      std::size_t, bool ok, const emissions::Status*, std::chrono::milliseconds) {
                    if (ok) delivered.fetch_add(1);
                  })
                  .ok());
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (delivered.load() < 10 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  ASSERT_EQ(delivered.load(), 10u);
  // Settled long ago; the adapter goes on working.
  std::this_thread::sleep_for(3s);
  const bool held_while_busy = !watch.expired();
  stop = true;
  busy.join();
  EXPECT_FALSE(held_while_busy)
      << "a delivery settled 3 s ago is still held by the busy adapter's spares ("
      << slow_done.load() << " slow requests answered meanwhile)";
}
