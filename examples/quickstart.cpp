// Quick start: emit events inside a transaction; only committed ones reach the adapters.
//
//   $ example_quickstart
//   {"emitted_at":"...","id":"...","metadata":{"source":"api"},"name":"order_created",...}
//   {"emitted_at":"...","id":"...","metadata":{},"name":"order_paid","payload":{"id":1,...}}
#include <chrono>
#include <iostream>
#include <memory>
#include <utility>

#include "emissions/adapters/json_lines.hpp"
#include "emissions/emitter.hpp"

int main() {
  emissions::Config config;
  config.add_adapter(std::make_shared<emissions::adapters::JsonLines>("-"));  // "-": stdout
  emissions::Emitter emitter(std::move(config));

  // An order that was saved: its events are delivered when the transaction commits.
  emissions::Transaction saved = emitter.start();
  emissions::Status status = saved.emit("order_created", {{"id", 1}}, {{"source", "api"}});
  status.update(saved.emit("order_paid", {{"id", 1}, {"total", 9.5}}));  // keeps the 1st error
  status.update(saved.commit());

  // An order that failed validation: terminate() discards its events.
  emissions::Transaction rejected = emitter.start();
  status.update(rejected.emit("order_created", {{"id", 2}}));
  rejected.terminate();

  // Delivery is asynchronous: wait until everything committed so far is written.
  status.update(emitter.drain(std::chrono::seconds(1)));
  if (!status.ok()) std::cerr << status.to_string() << '\n';
  return status.ok() ? 0 : 1;  // then ~Emitter terminates the adapters and joins its threads
}
