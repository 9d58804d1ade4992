// Quick start, as in the README: emit events inside transactions; only committed ones reach
// the adapters. Here one adapter writes each event as a JSON line to standard output.
//
//   $ example_quickstart
//   {"emitted_at":"...","id":"...","metadata":{"source":"api"},"name":"order_created",...}
//   {"emitted_at":"...","id":"...","metadata":{},"name":"order_paid","payload":{...}}
//
// Every call that can fail returns an emissions::Status, checked here: an unchecked commit()
// can lose events without a trace (on error nothing was delivered).
#include <chrono>
#include <iostream>
#include <memory>
#include <utility>

#include <emissions/adapters/json_lines.hpp>
#include <emissions/emissions.hpp>

struct Order {
  int id = 0;
  double total = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Order, id, total)  // any type with to_json is a payload

// Your service's own work, e.g. a database write.
bool save(const Order& order) {
  return order.total > 0;
}

int main() {
  emissions::Config config;
  config.add_adapter(std::make_shared<emissions::adapters::JsonLines>("-"));  // "-": stdout
  emissions::Emitter emitter(std::move(config));  // owns one consumer thread per adapter

  // Per request, on the request's thread (the ambient buffer): nothing reaches an adapter
  // unless committed. update() keeps the first error of several results.
  const Order order{.id = 1, .total = 9.5};
  emissions::Status status = emissions::start();
  status.update(emissions::emit("order_created", order, {{"source", "api"}}));
  if (status.ok() && save(order)) {
    status.update(emissions::commit());  // one hand-off to the pipeline; returns once queued
  }
  emissions::terminate();  // discards what was not committed; a no-op after a commit

  // Or explicitly, as an RAII object: destroyed while active, it discards its events.
  emissions::Transaction tx = emitter.start();
  status.update(tx.emit("order_paid", {{"id", order.id}, {"method", "card"}}));
  if (emissions::Status s = tx.commit(); !s.ok()) {
    std::cerr << "order_paid not delivered: " << s.to_string() << '\n';  // retry, or give up
    status.update(s);
  }

  // Delivery is asynchronous: wait until everything committed so far is handled.
  status.update(emitter.drain(std::chrono::seconds(1)));
  if (!status.ok()) std::cerr << status.to_string() << '\n';
  return status.ok() ? 0 : 1;
}  // ~Emitter drains, calls each adapter's terminate() and joins its threads
