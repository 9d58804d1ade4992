// Internal: KafkaSourceOptions checked and turned into a librdkafka consumer. Every mistake
// is a ConfigError naming the option or the property as the user wrote it.
#pragma once

#include "emissions/sources/kafka.hpp"
#include "handles.hpp"

namespace emissions::detail::kafka {

// Throws ConfigError for: no brokers (and no bootstrap.servers property) or both, no
// group_id, no topics or an empty one, enable.auto.commit or enable.auto.offset.store in
// the properties, max_batch outside 1..1,000,000, commit_interval outside 1 ms..24 h, an
// empty name.
void check_options(const sources::KafkaSourceOptions& options);

// A consumer created from `options`: auto.offset.reset=earliest, then options.properties,
// then the source's own (group.id, bootstrap.servers, no automatic commits or offset
// stores), with `rebalance` as the rebalance callback and `opaque` as its opaque. Throws
// ConfigError for a property librdkafka rejects.
ClientHandle create_consumer(const sources::KafkaSourceOptions& options,
                             void (*rebalance)(rd_kafka_t*, rd_kafka_resp_err_t,
                                               rd_kafka_topic_partition_list_t*, void*),
                             void* opaque);

}  // namespace emissions::detail::kafka
