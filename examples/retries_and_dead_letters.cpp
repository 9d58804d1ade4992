// At-least-once delivery end to end: an asynchronous adapter whose client library confirms
// each event later, from its own thread; transient failures retried with backoff; an event
// the destination rejects for good copied to a dead-letter file; a commit that is told when
// every event is settled; then the dead letters read back and replayed into a healthy
// adapter with Emitter::publish.
//
//   $ example_retries_and_dead_letters
//   broker: order_placed #0 attempt 1 -> unavailable: partition leader moving
//   ...
//   settled: broker delivered 9, failed 1, filtered 0, dropped 0
//   ...
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "emissions/adapters/json_lines.hpp"
#include "emissions/emissions.hpp"

namespace {

using namespace std::chrono_literals;

// Stands in for a client library (a Kafka producer, an HTTP client): send() returns at once
// and the outcome comes back later through a callback, on the client's own thread. This
// broker refuses the first attempt of every third order (a transient error, with a
// Retry-After hint) and rejects "order_corrupted" for good.
class FakeBrokerClient {
 public:
  using Callback = std::function<void(emissions::Status, std::chrono::milliseconds)>;

  FakeBrokerClient() : thread_([this] { run(); }) {}
  ~FakeBrokerClient() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();  // callbacks still queued are dropped: their Delivery fails them
  }
  FakeBrokerClient(const FakeBrokerClient&) = delete;
  FakeBrokerClient& operator=(const FakeBrokerClient&) = delete;

  void send(const emissions::Event& event, std::uint32_t attempt, Callback done) {
    std::string name = event.name.str();
    const int id = event.payload.value("id", -1);
    {
      std::lock_guard lock(mutex_);
      queue_.push_back([name = std::move(name), id, attempt, done = std::move(done)] {
        emissions::Status status;
        std::chrono::milliseconds retry_after{0};
        if (name == "order_corrupted") {
          status = {emissions::Errc::invalid_argument, "schema rejected"};  // not retriable
        } else if (attempt == 1 && id % 3 == 0) {
          status = {emissions::Errc::unavailable, "partition leader moving"};  // retriable
          retry_after = 20ms;
        }
        std::printf("broker: %s #%d attempt %u -> %s\n", name.c_str(), id, attempt,
                    status.to_string().c_str());
        done(status, retry_after);
      });
    }
    wake_.notify_one();
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      std::function<void()> task = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      task();  // the "delivery report" callback, on this thread
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts after the members it uses
};

// The asynchronous adapter: deliver() hands each event to the client and returns; the
// client's callback settles it, one by one, from the client's thread.
class BrokerAdapter final : public emissions::AsyncAdapter {
 public:
  std::string_view name() const override { return "broker"; }

  void deliver(emissions::Delivery delivery) override {
    // Shared by the callbacks: the last one to finish lets go of the batch.
    auto shared = std::make_shared<emissions::Delivery>(std::move(delivery));
    const std::uint32_t attempt = shared->attempt();  // 1, then 2, ... on retries
    for (std::size_t i = 0; i < shared->events().size(); ++i) {
      client_.send(shared->events()[i], attempt,
                   [shared, i](emissions::Status status, std::chrono::milliseconds retry_after) {
                     if (status.ok()) {
                       shared->ack(i);
                       return;
                     }
                     // A server's hint: a lower bound on the backoff, given before the fail.
                     if (retry_after.count() > 0) shared->retry_after(retry_after);
                     shared->fail(i, std::move(status));
                   });
    }
  }

 private:
  FakeBrokerClient client_;
};

// The healthy destination of the replay: a synchronous adapter that records what it gets.
class Archive final : public emissions::Adapter {
 public:
  std::string_view name() const override { return "archive"; }
  emissions::Status handle_events(std::span<const emissions::Event> batch) override {
    std::lock_guard lock(mutex_);
    for (const emissions::Event& e : batch)
      received_.push_back(e);
    return {};
  }
  std::vector<emissions::Event> received() const {
    std::lock_guard lock(mutex_);
    return received_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<emissions::Event> received_;
};

void print_stats(const emissions::AdapterStats& a) {
  std::cout << "  " << a.name << ": received " << a.received << ", delivered " << a.delivered
            << ", failed " << a.failed << ", filtered " << a.filtered << ", dropped " << a.dropped
            << ", retried " << a.retried << ", dead_lettered " << a.dead_lettered << '\n';
}

}  // namespace

int main() {
  const std::filesystem::path dead_path =
      std::filesystem::temp_directory_path() /
      ("emissions-dead-letters-" + std::to_string(::getpid()) + ".jsonl");
  std::filesystem::remove(dead_path);
  bool ok = true;
  auto check = [&ok](bool condition, const char* what) {
    if (!condition) {
      std::cerr << "unexpected: " << what << '\n';
      ok = false;
    }
  };

  {
    emissions::Config config;
    config.make_default = false;
    // Short delays for the example; the default policy is 8 attempts from 100 ms to 30 s.
    config.pipeline.retry = {
        .max_attempts = 4, .initial_backoff = 10ms, .max_backoff = 100ms, .multiplier = 2.0};
    config.add_adapter(std::make_shared<BrokerAdapter>(),
                       {.dead_letter = std::make_shared<emissions::adapters::JsonLines>(
                            emissions::adapters::JsonLinesOptions{.path = dead_path.string(),
                                                                  .name = "broker.dead_letters"})});
    emissions::Emitter emitter(std::move(config));

    emissions::Transaction tx = emitter.start();
    emissions::Status status;
    for (int id = 0; id < 9; ++id)
      status.update(tx.emit("order_placed", {{"id", id}, {"total", 10.0 + id}}));
    status.update(tx.emit("order_corrupted", {{"id", 9}}, {{"trace", "req-42"}}));
    // on_settled runs once, on a pipeline thread, when every adapter has settled every event
    // of this commit (retries included). Keep it short: it holds up that thread.
    std::promise<emissions::Settlement> settled;
    std::future<emissions::Settlement> settlement = settled.get_future();
    status.update(tx.commit([&settled](const emissions::Settlement& s) { settled.set_value(s); }));
    if (!status.ok()) {
      std::cerr << "commit failed: " << status.to_string() << '\n';
      return 1;
    }
    if (settlement.wait_for(5s) != std::future_status::ready) {
      std::cerr << "the commit was not settled within 5 s\n";
      return 1;
    }
    for (const emissions::AdapterStats& a : settlement.get().adapters) {
      std::cout << "settled: " << a.name << " delivered " << a.delivered << ", failed " << a.failed
                << ", filtered " << a.filtered << ", dropped " << a.dropped << '\n';
      check(a.delivered == 9 && a.failed == 1, "the commit's settlement");
    }

    // drain() also waits for the dead-letter copy to be written.
    if (const emissions::Status s = emitter.drain(5s); !s.ok()) {
      std::cerr << "drain failed: " << s.to_string() << '\n';
      return 1;
    }
    std::cout << "stats (the dead-letter adapter has its own entry):\n";
    for (const emissions::AdapterStats& a : emitter.stats().adapters) {
      print_stats(a);
      check(a.received == a.delivered + a.failed + a.filtered + a.dropped,
            "received == delivered + failed + filtered + dropped");
    }
    const emissions::AdapterStats broker = emitter.stats().adapters.at(0);
    check(broker.retried == 3 && broker.dead_lettered == 1, "3 retried, 1 dead-lettered");
  }  // ~Emitter: shut down; the dead-letter file is closed

  // Inspect the dead letters, then replay them into a healthy destination. publish() keeps
  // their ids and times, so a consumer that deduplicates by id sees them as the same events.
  std::vector<emissions::Event> dead;
  if (const emissions::Status s = emissions::adapters::read_json_lines(dead_path, dead); !s.ok()) {
    std::cerr << "reading the dead letters failed: " << s.to_string() << '\n';
    return 1;
  }
  check(dead.size() == 1, "one dead letter");
  for (const emissions::Event& e : dead) {
    std::cout << "dead letter: " << e.name.str() << ' ' << e.id.str() << ' '
              << e.metadata.at("dead_letter").dump() << '\n';
  }

  auto archive = std::make_shared<Archive>();
  emissions::Config config;
  config.make_default = false;
  config.add_adapter(archive);
  emissions::Emitter replay(std::move(config));
  std::vector<emissions::EventId> ids;
  for (const emissions::Event& e : dead)
    ids.push_back(e.id);
  if (const emissions::Status s = replay.publish(std::move(dead)); !s.ok()) {
    std::cerr << "replay failed: " << s.to_string() << '\n';
    return 1;
  }
  if (const emissions::Status s = replay.drain(5s); !s.ok()) {
    std::cerr << "replay drain failed: " << s.to_string() << '\n';
    return 1;
  }
  const std::vector<emissions::Event> archived = archive->received();
  for (const emissions::Event& e : archived)
    std::cout << "replayed: " << e.name.str() << ' ' << e.id.str() << '\n';
  check(archived.size() == ids.size(), "every dead letter replayed");
  for (std::size_t i = 0; i < archived.size() && i < ids.size(); ++i)
    check(archived[i].id == ids[i], "a replayed event keeps its id");

  std::filesystem::remove(dead_path);
  return ok ? 0 : 1;
}
