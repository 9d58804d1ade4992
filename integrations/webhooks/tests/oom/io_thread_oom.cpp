// The webhook client's I/O thread running out of memory while it answers a request: for
// n = 1, 2, ... the n-th C++ allocation that thread makes after the request is handed over
// fails (operator new is replaced, in this executable alone), and the event must still be
// settled exactly once, delivered or retriably, never "abandoned" for good. From review of
// h-hook9: Client::finish() moved the request into a temporary before copying the
// response; an allocation failing there destroyed the request with its delivery, and a
// connection reset (retriable) was settled "delivery abandoned" (internal, for good).
// Every allocation is tried in turn, so the test does not depend on their order. libcurl
// allocates with malloc and is not affected. The payload is a number: nlohmann's json
// allocates while it destroys an object or array, and throwing there (inside a destructor)
// ends any program, ours included.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "emissions/adapters/webhook.hpp"
#include "pipeline/delivery_state.hpp"
#include "test_server.hpp"
#include "webhook_fixture.hpp"

namespace {

// While armed, the `g_countdown`-th operator new on the thread `g_failing` throws.
std::atomic<bool> g_armed{false};
std::atomic<std::thread::id> g_failing{};
std::atomic<int> g_countdown{0};
std::atomic<bool> g_refused{false};

void* allocate(std::size_t size) {
  if (g_armed.load(std::memory_order_acquire) &&
      std::this_thread::get_id() == g_failing.load(std::memory_order_acquire) &&
      g_countdown.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    g_armed.store(false, std::memory_order_release);
    g_refused.store(true, std::memory_order_release);
    throw std::bad_alloc();
  }
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}

}  // namespace

void* operator new(std::size_t size) {
  return allocate(size);
}
void* operator new[](std::size_t size) {
  return allocate(size);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}

namespace {

using emissions::webhooks_test::options_for;
using emissions::webhooks_test::Received;
using emissions::webhooks_test::Reply;
using emissions::webhooks_test::TestServer;
using namespace std::chrono_literals;

std::vector<emissions::Event> one_event() {
  std::vector<emissions::Event> out(1);
  out[0].id = emissions::EventId::generate();
  out[0].name = emissions::EventName("order_created");
  out[0].payload = 1;
  return out;
}

struct Outcome {
  std::mutex mutex;
  int settlements = 0;
  bool delivered = false;
  emissions::Errc code = emissions::Errc::internal;
  std::string reason;
};

// The I/O thread's id, learned from the settlement of a first event (answered 200), which
// also lets the thread's buffers reach their capacity.
std::thread::id learn_io_thread(emissions::adapters::Webhook& hook) {
  std::atomic<bool> settled{false};
  std::thread::id io;
  EXPECT_TRUE(emissions::detail::deliver_detached(
                  hook, one_event(), 1,
                  [&](std::size_t, bool, const emissions::Status*, std::chrono::milliseconds) {
                    io = std::this_thread::get_id();
                    settled = true;
                  })
                  .ok());
  for (int i = 0; i < 1000 && !settled.load(); ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(settled.load());
  std::this_thread::sleep_for(100ms);  // the I/O thread done with that request
  return io;
}

// Delivers one event while the `n`-th C++ allocation of the I/O thread fails, and records
// how it was settled. False when that thread made fewer than `n` allocations (nothing
// failed: every allocation was tried).
bool deliver_failing(emissions::adapters::Webhook& hook, std::thread::id io, int n,
                     Outcome& outcome) {
  g_refused = false;
  g_failing = io;
  g_countdown = n;
  g_armed = true;
  const bool handed = emissions::detail::deliver_detached(
                          hook, one_event(), 1,
                          [&](std::size_t, bool delivered, const emissions::Status* error,
                              std::chrono::milliseconds) {
                            // This callback's own allocations are the test's: not failed.
                            g_armed = false;
                            std::lock_guard lock(outcome.mutex);
                            ++outcome.settlements;
                            outcome.delivered = delivered;
                            if (error != nullptr) {
                              outcome.code = error->code();
                              outcome.reason = std::string(error->message());
                            }
                          })
                          .ok();
  EXPECT_TRUE(handed);
  for (int i = 0; i < 1000; ++i) {
    {
      std::lock_guard lock(outcome.mutex);
      if (outcome.settlements != 0) break;
    }
    std::this_thread::sleep_for(5ms);
  }
  std::this_thread::sleep_for(20ms);  // a second settlement would come now
  g_armed = false;
  return g_refused.load();
}

// For n = 1, 2, ...: a fresh adapter, the n-th allocation of its I/O thread failing while
// it handles the request `reply` answers; every event settled once and never for good.
// Returns how many allocations were tried (each failed once).
int sweep(Reply reply) {
  int failed_at = 0;
  for (int n = 1; n <= 200; ++n) {
    SCOPED_TRACE("allocation " + std::to_string(n));
    TestServer server([reply](const Received&, std::size_t index) {
      return index == 0 ? Reply{.status = 200} : reply;
    });
    emissions::adapters::Webhook hook(options_for(server));
    const std::thread::id io = learn_io_thread(hook);
    Outcome outcome;
    const bool refused = deliver_failing(hook, io, n, outcome);
    std::lock_guard lock(outcome.mutex);
    EXPECT_EQ(outcome.settlements, 1);
    EXPECT_TRUE(outcome.delivered || emissions::retriable(outcome.code))
        << "failed for good: code " << static_cast<int>(outcome.code) << ", '" << outcome.reason
        << "'";
    if (!refused || ::testing::Test::HasFailure()) break;
    failed_at = n;
  }
  ::testing::Test::RecordProperty("allocations_failed", failed_at);
  return failed_at;
}

TEST(WebhookIoThreadOutOfMemory, AConnectionResetIsSettledOnceAndRetriablyWhateverAllocationFails) {
  EXPECT_GT(sweep(Reply{.status = 0, .action = Reply::Action::reset}), 0)
      << "no allocation of the I/O thread was refused: the test tried nothing";
}

TEST(WebhookIoThreadOutOfMemory, AServerErrorIsSettledOnceAndRetriablyWhateverAllocationFails) {
  EXPECT_GT(sweep(Reply{.status = 503, .headers = {{"Retry-After", "1"}}}), 0)
      << "no allocation of the I/O thread was refused: the test tried nothing";
}

TEST(WebhookIoThreadOutOfMemory, ASuccessIsSettledOnceWhateverAllocationFails) {
  // Usually none: the I/O thread allocates nothing of its own to settle a 2xx.
  (void)sweep(Reply{.status = 200});
}

}  // namespace
