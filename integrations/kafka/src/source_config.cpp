#include "source_config.hpp"

#include <array>
#include <string>

#include "common/config_check.hpp"
#include "properties.hpp"

namespace emissions::detail::kafka {

void check_options(const sources::KafkaSourceOptions& options) {
  const bool bootstrap_property = options.properties.contains("bootstrap.servers") ||
                                  options.properties.contains("metadata.broker.list");
  if (options.brokers.empty() && !bootstrap_property) {
    config_error("KafkaSourceOptions.brokers", "set (host:port[,host:port...])", "\"\"");
  }
  if (!options.brokers.empty() && bootstrap_property) {
    throw ConfigError(
        "KafkaSourceOptions.brokers and KafkaSourceOptions.properties[\"bootstrap.servers\"] "
        "(or \"metadata.broker.list\") are both set: give the brokers once");
  }
  if (options.group_id.empty()) config_error("KafkaSourceOptions.group_id", "set", "\"\"");
  if (options.properties.contains("group.id")) {
    throw ConfigError(
        "KafkaSourceOptions.properties[\"group.id\"] is set: use KafkaSourceOptions.group_id");
  }
  if (options.topics.empty()) config_error("KafkaSourceOptions.topics", "non-empty", "{}");
  for (const std::string& topic : options.topics) {
    if (topic.empty()) config_error("KafkaSourceOptions.topics", "non-empty names", "\"\"");
  }
  for (const char* own : {"enable.auto.commit", "enable.auto.offset.store"}) {
    if (const auto found = options.properties.find(own); found != options.properties.end()) {
      throw ConfigError(property_text("KafkaSourceOptions", found->first, found->second) +
                        ": the source commits offsets itself, once events are settled");
    }
  }
  check_range("KafkaSourceOptions.max_batch", options.max_batch, 1, 1'000'000);
  check_range("KafkaSourceOptions.commit_interval", options.commit_interval,
              std::chrono::milliseconds(1), std::chrono::milliseconds(std::chrono::hours(24)));
  if (options.name.empty()) config_error("KafkaSourceOptions.name", "non-empty", "\"\"");
}

ClientHandle create_consumer(const sources::KafkaSourceOptions& options,
                             void (*rebalance)(rd_kafka_t*, rd_kafka_resp_err_t,
                                               rd_kafka_topic_partition_list_t*, void*),
                             void* opaque) {
  ConfHandle conf(rd_kafka_conf_new());
  set_property(conf.get(), "auto.offset.reset", "earliest", "default auto.offset.reset");
  for (const auto& [key, value] : options.properties) {
    set_property(conf.get(), key, value, property_text("KafkaSourceOptions", key, value));
  }
  set_property(conf.get(), "group.id", options.group_id,
               "KafkaSourceOptions.group_id = " + quoted(options.group_id));
  if (!options.brokers.empty()) {
    set_property(conf.get(), "bootstrap.servers", options.brokers,
                 "KafkaSourceOptions.brokers = " + quoted(options.brokers));
  }
  set_property(conf.get(), "enable.auto.commit", "false", "enable.auto.commit");
  set_property(conf.get(), "enable.auto.offset.store", "false", "enable.auto.offset.store");
  rd_kafka_conf_set_rebalance_cb(conf.get(), rebalance);
  rd_kafka_conf_set_opaque(conf.get(), opaque);

  std::array<char, 512> errstr{};
  ClientHandle consumer(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), errstr.data(), errstr.size()));
  if (!consumer) {
    const std::string message = errstr.data();
    throw ConfigError(blame("KafkaSourceOptions", options.properties, message) +
                      ": librdkafka: " + message);
  }
  (void)conf.release();  // rd_kafka_new() took it
  // Every message comes through rd_kafka_consumer_poll(), and so does the rebalance callback.
  (void)rd_kafka_poll_set_consumer(consumer.get());
  return consumer;
}

}  // namespace emissions::detail::kafka
