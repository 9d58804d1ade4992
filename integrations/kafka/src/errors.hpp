// Internal: what a librdkafka error means for an event: delivered, retriable or permanent.
#pragma once

#include <string_view>

#include <librdkafka/rdkafka.h>

#include "emissions/status.hpp"

namespace emissions::detail::kafka {

// Whether trying the same message again cannot succeed: the record, its size or its topic
// is invalid, authorization or authentication failed, or the broker does not support what
// was asked. Every other error (timeouts, transport, leadership, replicas, purges, a fatal
// producer error, unknown topics and anything unlisted) is taken as retriable.
[[nodiscard]] bool permanent(rd_kafka_resp_err_t error) noexcept;

// The Status an event is settled with for `error` (not NO_ERROR): invalid_argument when
// permanent(), otherwise unavailable. The message reads
// "kafka: <librdkafka's description> (<error name>), topic <topic>".
[[nodiscard]] Status event_status(rd_kafka_resp_err_t error, std::string_view topic);

}  // namespace emissions::detail::kafka
