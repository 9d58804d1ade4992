// Adversary: a Kafka adapter and a KafkaSource at namespace scope, pointed at a broker that
// never answers (127.0.0.1:1, connection refused), with events in flight, destroyed during
// static destruction without stop() or shutdown(). The promises (emissions/adapters/kafka.hpp,
// emissions/sources/kafka.hpp): terminate() flushes within its deadline and reports what was
// left; ~KafkaSource stops the source itself; neither hangs the exit.
// Exit status: 0 ok; 3 the exit took too long; 4 messages still outstanding after ~Emitter.
#include <emissions/adapters/kafka.hpp>
#include <emissions/emissions.hpp>
#include <emissions/sources/kafka.hpp>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "exit_watch.hpp"

namespace {

using namespace std::chrono_literals;

const std::string kNowhere = "127.0.0.1:1";

std::shared_ptr<emissions::adapters::Kafka> g_kafka = std::make_shared<emissions::adapters::Kafka>(
    emissions::adapters::KafkaOptions{.brokers = kNowhere,
                                      .topic = "orders",
                                      .properties = {{"log_level", "0"}},
                                      .flush_timeout = 1s});

struct Checker {
  ~Checker() {
    if (g_kafka->outstanding() != 0) {
      adversarial::fail("kafka_static_exit: messages outstanding after ~Emitter\n", 4);
    }
    if (adversarial::seconds_since_main_returned() > 15.0) {
      adversarial::fail("kafka_static_exit: the exit took more than 15 s\n", 3);
    }
  }
} g_checker;

emissions::Config make_config() {
  emissions::Config config;
  config.make_default = false;
  config.shutdown_timeout = 500ms;
  config.add_adapter(g_kafka);
  return config;
}
emissions::Emitter g_emitter(make_config());

// Destroyed first: its destructor stops it, with the broker unreachable.
emissions::sources::KafkaSource g_source(g_emitter, emissions::sources::KafkaSourceOptions{
                                                        .brokers = kNowhere,
                                                        .group_id = "adversarial",
                                                        .topics = {"orders"},
                                                        .properties = {{"log_level", "0"}}});

}  // namespace

int main() {
  if (!g_source.start().ok()) return 1;
  for (int i = 0; i < 20; ++i) {
    emissions::Transaction tx = g_emitter.start();
    if (!tx.emit("order_created", {{"n", i}}).ok()) return 1;
    if (!tx.commit().ok()) return 1;
  }
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (g_kafka->outstanding() == 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(5ms);
  std::printf("kafka_static_exit: %zu messages outstanding; returning from main\n",
              g_kafka->outstanding());
  std::fflush(stdout);
  adversarial::main_returns();
  return 0;
}
