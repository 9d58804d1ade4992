// Test support for the out-of-memory tests (with failing_allocations.hpp): one event handed
// to an adapter outside any pipeline, how it was settled, and a caller whose allocations
// fail inside deliver().
//
//   auto outcome = std::make_shared<SettlementRecord>();
//   FailingCaller caller(kafka, /*n=*/3, /*sticky=*/true);
//   (void)detail::deliver_detached(caller, one_event(), 1, outcome->callback());
//   outcome->wait();  // then: outcome->settlements == 1, ...
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "emissions/delivery.hpp"
#include "emissions/event.hpp"
#include "emissions/status.hpp"
#include "failing_allocations.hpp"
#include "pipeline/delivery_state.hpp"

namespace emissions::test_support {

// `count` events named order_created whose payloads are numbers: nlohmann's json allocates
// while it destroys an object or array, and throwing there (inside a destructor) ends any
// program, ours included.
inline std::vector<Event> some_events(std::size_t count) {
  std::vector<Event> out(count);
  for (std::size_t i = 0; i < count; ++i) {
    out[i].id = EventId::generate();
    out[i].name = EventName("order_created");
    out[i].payload = static_cast<int>(i);
  }
  return out;
}

inline std::vector<Event> one_event() {
  return some_events(1);
}

// How the events of a delivery were settled. Held by a shared_ptr that the settlement callback
// shares: the callback may outlive the test's frame when a test fails (an event settled late, by
// the adapter's destructor).
struct SettlementRecord : std::enable_shared_from_this<SettlementRecord> {
  std::mutex mutex;
  int settlements = 0;
  int failed_for_good = 0;  // failed with a code that is not retriable()
  bool delivered = false;   // the last settlement's
  Errc code = Errc::internal;
  std::string reason;
  std::thread::id thread;  // the settling thread

  // Records each settlement. Allocations stop failing first: the callback's are the test's.
  detail::DeliveryState::SettledCallback callback() {
    return [self = shared_from_this()](std::size_t, bool ok, const Status* error,
                                       std::chrono::milliseconds) {
      stop_failing_allocations();
      std::lock_guard lock(self->mutex);
      ++self->settlements;
      self->delivered = ok;
      self->thread = std::this_thread::get_id();
      if (!ok && (error == nullptr || !retriable(error->code()))) ++self->failed_for_good;
      if (error != nullptr) {
        self->code = error->code();
        self->reason = error->message();
      }
    };
  }

  // Waits (10 s at most) for `expected` settlements, then a little longer: one too many
  // would come then.
  void wait(int expected = 1) {
    for (int i = 0; i < 2000; ++i) {
      {
        std::lock_guard lock(mutex);
        if (settlements >= expected) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
};

// Runs `attempt(n)` for n = 1, 2, ... (at most `limit`), each making the n-th allocation of
// the thread under test fail (and those after it, if sticky) and checking what follows.
// Stops after an attempt that refused no allocation (every one was tried) or that failed
// the test. Returns how many attempts refused one, also recorded as the test's property
// `allocations_failed`.
template <typename Attempt>
int sweep_allocations(Attempt&& attempt, int limit = 200) {
  int refused = 0;
  for (int n = 1; n <= limit; ++n) {
    SCOPED_TRACE("allocation " + std::to_string(n));
    attempt(n);
    if (!allocation_refused() || ::testing::Test::HasFailure()) break;
    refused = n;
  }
  ::testing::Test::RecordProperty("allocations_failed", refused);
  return refused;
}

// Hands each delivery to `inner` with the calling thread's allocations failing from the
// `n`-th (and every later one with `sticky`) until deliver() returns or the event is
// settled: the consumer's thread out of memory inside the adapter.
class FailingCaller final : public AsyncAdapter {
 public:
  FailingCaller(AsyncAdapter& inner, int n, bool sticky) : inner_(inner), n_(n), sticky_(sticky) {}
  void deliver(Delivery delivery) override {
    fail_allocations(std::this_thread::get_id(), n_, sticky_);
    inner_.deliver(std::move(delivery));
    stop_failing_allocations();
  }
  [[nodiscard]] std::string_view name() const override { return inner_.name(); }

 private:
  AsyncAdapter& inner_;
  int n_;
  bool sticky_;
};

}  // namespace emissions::test_support
