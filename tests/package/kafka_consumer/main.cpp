// A downstream program using the installed Kafka adapter: it builds an Emitter with it (no
// broker is contacted until events flow), shuts down, and checks that a bad property is a
// ConfigError naming it. It includes no librdkafka header.
#include <emissions/adapters/kafka.hpp>
#include <emissions/emissions.hpp>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

int main() {
  using emissions::adapters::Kafka;
  using emissions::adapters::KafkaOptions;
  {
    emissions::Config config;
    config.make_default = false;
    config.add_adapter(std::make_shared<Kafka>(KafkaOptions{
        .brokers = "127.0.0.1:1", .topic = "orders", .properties = {{"log_level", "0"}}}));
    emissions::Emitter emitter(std::move(config));
    if (!emitter.shutdown(std::chrono::seconds(5)).ok()) return 1;
  }
  try {
    Kafka bad(KafkaOptions{
        .brokers = "127.0.0.1:1", .topic = "orders", .properties = {{"linger.ms", "soon"}}});
    return 1;
  } catch (const emissions::ConfigError& e) {
    if (std::string(e.what()).find("linger.ms") == std::string::npos) return 1;
  }
  std::printf("kafka consumer: adapter built, shut down, bad property refused\n");
  return 0;
}
