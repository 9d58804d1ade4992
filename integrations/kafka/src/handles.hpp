// Internal: owning handles on librdkafka's C objects, so that each is released exactly once
// on every path (unique_ptr with the matching destroy function). Wrap a C object in one of
// these on the line that creates it.
#pragma once

#include <memory>

#include <librdkafka/rdkafka.h>

namespace emissions::detail::kafka {

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* conf) const noexcept { rd_kafka_conf_destroy(conf); }
};
struct ClientDeleter {
  // Blocks until librdkafka's threads have ended. Never call it on a librdkafka thread
  // (a callback): librdkafka aborts then.
  void operator()(rd_kafka_t* client) const noexcept { rd_kafka_destroy(client); }
};
struct QueueDeleter {
  void operator()(rd_kafka_queue_t* queue) const noexcept { rd_kafka_queue_destroy(queue); }
};
struct HeadersDeleter {
  void operator()(rd_kafka_headers_t* headers) const noexcept { rd_kafka_headers_destroy(headers); }
};
struct ErrorDeleter {
  void operator()(rd_kafka_error_t* error) const noexcept { rd_kafka_error_destroy(error); }
};
struct TopicDeleter {
  void operator()(rd_kafka_topic_t* topic) const noexcept { rd_kafka_topic_destroy(topic); }
};
struct MessageDeleter {
  void operator()(rd_kafka_message_t* message) const noexcept { rd_kafka_message_destroy(message); }
};

// rd_kafka_conf_t: consumed by rd_kafka_new() on success (then release() it).
using ConfHandle = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;
// rd_kafka_t: a producer or consumer instance.
using ClientHandle = std::unique_ptr<rd_kafka_t, ClientDeleter>;
// rd_kafka_queue_t: a reference on one of an instance's queues; release before the instance.
using QueueHandle = std::unique_ptr<rd_kafka_queue_t, QueueDeleter>;
// rd_kafka_headers_t: owned by the message once a produce call succeeded (then release() it).
using HeadersHandle = std::unique_ptr<rd_kafka_headers_t, HeadersDeleter>;
// rd_kafka_error_t: what rd_kafka_produceva() returns on failure.
using ErrorHandle = std::unique_ptr<rd_kafka_error_t, ErrorDeleter>;
// rd_kafka_topic_t: the application's reference on one topic of an instance; release before
// the instance.
using TopicHandle = std::unique_ptr<rd_kafka_topic_t, TopicDeleter>;
// rd_kafka_message_t: what a consumer's poll returns.
using MessageHandle = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;

}  // namespace emissions::detail::kafka
