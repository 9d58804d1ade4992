#include "producer_config.hpp"

#include <array>
#include <cerrno>
#include <charconv>
#include <string>
#include <utility>

#include "common/config_check.hpp"
#include "properties.hpp"

namespace emissions::detail::kafka {
namespace {

// What the adapter sets before the user's properties (which override them): no duplicates
// and per-partition order across librdkafka's retries, every in-sync replica's ack, small
// batches sent soon, cheap compression.
constexpr std::array<std::pair<const char*, const char*>, 4> kDefaults{{
    {"enable.idempotence", "true"},
    {"acks", "all"},
    {"linger.ms", "5"},
    {"compression.type", "lz4"},
}};

constexpr std::chrono::milliseconds kMaxFlushTimeout = std::chrono::hours(24);

std::chrono::milliseconds read_message_timeout(const rd_kafka_conf_t* conf) {
  std::array<char, 64> text{};
  std::size_t size = text.size();
  if (rd_kafka_conf_get(conf, "message.timeout.ms", text.data(), &size) != RD_KAFKA_CONF_OK) {
    return std::chrono::milliseconds(300'000);  // librdkafka's default
  }
  long long ms = 0;
  const char* end = text.data() + std::char_traits<char>::length(text.data());
  if (std::from_chars(text.data(), end, ms).ec != std::errc() || ms < 0) {
    return std::chrono::milliseconds(300'000);
  }
  if (ms == 0) return kMaxFlushTimeout;  // 0: librdkafka never times a message out
  return std::chrono::milliseconds(ms);
}

}  // namespace

std::span<const std::pair<const char*, const char*>> default_properties() noexcept {
  return kDefaults;
}

void check_options(const adapters::KafkaOptions& options) {
  const bool bootstrap_property = options.properties.contains("bootstrap.servers") ||
                                  options.properties.contains("metadata.broker.list");
  if (options.brokers.empty() && !bootstrap_property) {
    config_error("KafkaOptions.brokers", "set (host:port[,host:port...])", "\"\"");
  }
  if (!options.brokers.empty() && bootstrap_property) {
    throw ConfigError(
        "KafkaOptions.brokers and KafkaOptions.properties[\"bootstrap.servers\"] (or "
        "\"metadata.broker.list\") are both set: give the brokers once");
  }
  if (options.topic.empty() && !options.topic_for) {
    config_error("KafkaOptions.topic", "set when topic_for is not", "\"\"");
  }
  if (options.name.empty()) config_error("KafkaOptions.name", "non-empty", "\"\"");
  check_range("KafkaOptions.flush_timeout", options.flush_timeout, std::chrono::milliseconds(0),
              kMaxFlushTimeout);
}

CreatedProducer create_producer(const adapters::KafkaOptions& options,
                                const ProducerCallbacks& callbacks) {
  ConfHandle conf(rd_kafka_conf_new());
  for (const auto& [key, value] : kDefaults)
    set_property(conf.get(), key, value, "default " + std::string(key));
  for (const auto& [key, value] : options.properties) {
    set_property(conf.get(), key, value, property_text("KafkaOptions", key, value));
  }
  if (!options.brokers.empty()) {
    set_property(conf.get(), "bootstrap.servers", options.brokers,
                 "KafkaOptions.brokers = " + quoted(options.brokers));
  }
  rd_kafka_conf_set_dr_msg_cb(conf.get(), callbacks.delivery_report);
  rd_kafka_conf_set_error_cb(conf.get(), callbacks.error);
  rd_kafka_conf_set_opaque(conf.get(), callbacks.opaque);

  CreatedProducer created;
  created.message_timeout = read_message_timeout(conf.get());
  std::array<char, 512> errstr{};
  created.client.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr.data(), errstr.size()));
  if (!created.client) {
    const std::string message = errstr.data();
    throw ConfigError(blame("KafkaOptions", options.properties, message) +
                      ": librdkafka: " + message);
  }
  (void)conf.release();  // rd_kafka_new() took it
  return created;
}

}  // namespace emissions::detail::kafka
