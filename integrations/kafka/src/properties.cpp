#include "properties.hpp"

#include <array>

#include "emissions/status.hpp"

namespace emissions::detail::kafka {

std::string quoted(const std::string& text) {
  return "\"" + text + "\"";
}

std::string property_text(const std::string& options, const std::string& key,
                          const std::string& value) {
  return options + ".properties[" + quoted(key) + "] = " + quoted(value);
}

void set_property(rd_kafka_conf_t* conf, const std::string& key, const std::string& value,
                  const std::string& what) {
  std::array<char, 512> errstr{};
  if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), errstr.data(), errstr.size()) !=
      RD_KAFKA_CONF_OK) {
    throw ConfigError(what + ": librdkafka: " + errstr.data());
  }
}

std::string blame(const std::string& options, const std::map<std::string, std::string>& properties,
                  const std::string& message) {
  std::string named;
  for (const auto& [key, value] : properties) {
    if (message.find(key) == std::string::npos) continue;
    if (!named.empty()) named += ", ";
    named += property_text(options, key, value);
  }
  if (!named.empty()) return named;
  for (const auto& [key, value] : properties) {
    if (!named.empty()) named += ", ";
    named += property_text(options, key, value);
  }
  return named.empty() ? options : named;
}

}  // namespace emissions::detail::kafka
