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

#include "emissions/delivery.hpp"
#include "emissions/event.hpp"
#include "emissions/status.hpp"
#include "failing_allocations.hpp"
#include "pipeline/delivery_state.hpp"

namespace emissions::test_support {

// One event named order_created whose payload is a number: nlohmann's json allocates while
// it destroys an object or array, and throwing there (inside a destructor) ends any
// program, ours included.
inline std::vector<Event> one_event() {
  std::vector<Event> out(1);
  out[0].id = EventId::generate();
  out[0].name = EventName("order_created");
  out[0].payload = 1;
  return out;
}

// How an event was settled. Held by a shared_ptr that the settlement callback shares: the
// callback may outlive the test's frame when a test fails (an event settled late, by the
// adapter's destructor).
struct SettlementRecord : std::enable_shared_from_this<SettlementRecord> {
  std::mutex mutex;
  int settlements = 0;
  bool delivered = false;
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
      if (error != nullptr) {
        self->code = error->code();
        self->reason = error->message();
      }
    };
  }

  // Waits (10 s at most) for a settlement, then a little longer: a second one would come
  // then.
  void wait() {
    for (int i = 0; i < 2000; ++i) {
      {
        std::lock_guard lock(mutex);
        if (settlements != 0) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
};

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
