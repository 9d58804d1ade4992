// Internal: librdkafka configuration properties set one by one, each refusal a ConfigError
// that names the option or property as the user wrote it (the producer and the source).
#pragma once

#include <map>
#include <string>

#include <librdkafka/rdkafka.h>

namespace emissions::detail::kafka {

// `"<text>"`.
std::string quoted(const std::string& text);

// `<options>.properties["<key>"] = "<value>"`, e.g. KafkaOptions.properties["acks"] = "1".
std::string property_text(const std::string& options, const std::string& key,
                          const std::string& value);

// Sets `key` to `value` in `conf`; a ConfigError "<what>: librdkafka: <its message>" when
// librdkafka refuses it.
void set_property(rd_kafka_conf_t* conf, const std::string& key, const std::string& value,
                  const std::string& what);

// For a refusal at rd_kafka_new(): the user's properties that librdkafka's `message` names,
// as property_text() writes them; all of them when it names none; `options` when there are
// none.
std::string blame(const std::string& options, const std::map<std::string, std::string>& properties,
                  const std::string& message);

}  // namespace emissions::detail::kafka
