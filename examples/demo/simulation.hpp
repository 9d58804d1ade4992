// The simulated order service: request threads, each running orders one after another, one
// transaction per order, with the ambient API of emissions (the Elixir Emissions library's
// model):
//
//   emissions::start();
//   emissions::emit("order_created", order);
//   if (payment declined) { emissions::terminate(); return; }  // order_created is discarded
//   emissions::emit("payment_authorized", payment);
//   ...
//   emissions::commit();
//
// Each thread has its own RNG seeded from (seed, thread number) and its own share of the
// event target, so the same seed gives the same orders however the threads are scheduled.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stop_token>
#include <string>
#include <vector>

#include "latency.hpp"

namespace demo {

struct SimulationOptions {
  std::uint64_t events = 0;  // target of emitted events, discarded ones included
  std::size_t threads = 1;
  std::uint64_t seed = 0;
  double fail_rate = 0.0;
};

// What the request threads did, added up. Compared with the emitter's own statistics at
// the end: the two sides must agree.
struct OrderTotals {
  std::uint64_t orders = 0;            // transactions started
  std::uint64_t confirmed = 0;         // committed
  std::uint64_t payment_declined = 0;  // terminated after order_created
  std::uint64_t out_of_stock = 0;      // terminated after order_created, payment_authorized
  std::uint64_t rejected = 0;          // emit or commit returned an error; terminated
  std::uint64_t emitted = 0;           // events accepted by emit()
  std::uint64_t committed = 0;         // events in committed transactions
  std::uint64_t discarded = 0;         // events thrown away by terminate()
  std::int64_t revenue_cents = 0;      // total of confirmed orders
  std::string first_error;             // the first error an emit or commit returned

  OrderTotals& operator+=(const OrderTotals& other);
};

class Simulation {
 public:
  // `commits` needs one slot per order: slots_needed(options) of them.
  Simulation(SimulationOptions options, std::shared_ptr<CommitLog> commits);

  // Orders can never outnumber events (each emits at least one), so one slot per event of
  // the target is always enough.
  [[nodiscard]] static std::size_t slots_needed(const SimulationOptions& options) {
    return static_cast<std::size_t>(options.events);
  }

  // Runs the request threads on the default emitter and joins them. Call once. Once
  // `stop` is requested, each thread finishes the order it is placing (committed or
  // terminated, never left open) and starts no other.
  void run(std::stop_token stop = {});

  // Events emitted so far, by all threads. Thread-safe; for progress reports.
  [[nodiscard]] std::uint64_t emitted() const noexcept;

  // The totals of all threads; complete once run() has returned.
  [[nodiscard]] OrderTotals totals() const;

 private:
  // One request thread's counter, alone on its cache line so threads never share one.
  struct alignas(64) Progress {
    std::atomic<std::uint64_t> emitted{0};
  };

  void run_thread(std::size_t thread, const std::stop_token& stop);

  SimulationOptions options_;
  std::shared_ptr<CommitLog> commits_;
  std::vector<Progress> progress_;
  std::vector<OrderTotals> totals_;  // one per thread, written only by that thread
};

}  // namespace demo
