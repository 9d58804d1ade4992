// Internal: KafkaOptions checked and turned into a librdkafka configuration, and the
// producer instance created from it. Every mistake is a ConfigError naming the option or
// the property as the user wrote it.
#pragma once

#include <chrono>
#include <span>
#include <utility>

#include "emissions/adapters/kafka.hpp"
#include "handles.hpp"

namespace emissions::detail::kafka {

// What librdkafka calls back with, on the thread that polls (never one of its own).
struct ProducerCallbacks {
  void (*delivery_report)(rd_kafka_t*, const rd_kafka_message_t*, void*) = nullptr;
  void (*error)(rd_kafka_t*, int, const char*, void*) = nullptr;
  void* opaque = nullptr;  // passed to both
};

// Throws ConfigError when an option that librdkafka does not check is wrong: no brokers
// (and no bootstrap.servers property), both, no topic and no topic_for, an empty name, a
// flush_timeout outside 0..24 h.
void check_options(const adapters::KafkaOptions& options);

// The properties every producer starts with, before KafkaOptions::properties (the
// benchmark's raw loop uses the same).
[[nodiscard]] std::span<const std::pair<const char*, const char*>> default_properties() noexcept;

// A producer and what the adapter needs to know of its configuration.
struct CreatedProducer {
  ClientHandle client;
  // The longest librdkafka keeps a produced message before it reports it
  // (message.timeout.ms; 0, no limit, is returned as 24 h).
  std::chrono::milliseconds message_timeout{300'000};
};

// A producer created from `options`: the adapter's defaults (enable.idempotence=true,
// acks=all, linger.ms=5, compression.type=lz4), then options.properties, then
// bootstrap.servers = options.brokers, and the callbacks. Throws ConfigError for a property
// librdkafka rejects (unknown, invalid value) or a combination it refuses at creation,
// e.g. `KafkaOptions.properties["acks"] = "1": librdkafka: ...`. Blocks briefly (librdkafka
// starts its threads); does not wait for a broker.
CreatedProducer create_producer(const adapters::KafkaOptions& options,
                                const ProducerCallbacks& callbacks);

}  // namespace emissions::detail::kafka
