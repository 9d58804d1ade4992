// KafkaOptions are checked, and the producer created, in the constructor: every mistake is
// a ConfigError that names the option or the property as the user wrote it.
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "emissions/adapters/kafka.hpp"

namespace {

using emissions::ConfigError;
using emissions::adapters::Kafka;
using emissions::adapters::KafkaOptions;
using ::testing::HasSubstr;

// Brokers that are never contacted: construction does not wait for a broker.
KafkaOptions valid() {
  return KafkaOptions{
      .brokers = "127.0.0.1:1", .topic = "events", .properties = {{"log_level", "0"}}};
}

std::string config_error_of(KafkaOptions options) {
  try {
    Kafka kafka(std::move(options));
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no ConfigError";
}

TEST(KafkaOptions, ValidOptionsCreateAProducerWithoutABroker) {
  Kafka kafka(valid());
  EXPECT_EQ(kafka.name(), "kafka");
  EXPECT_EQ(kafka.outstanding(), 0u);
  EXPECT_TRUE(kafka.terminate(emissions::deadline_after(std::chrono::seconds(1))).ok());
}

TEST(KafkaOptions, AnUnknownPropertyIsAConfigErrorNamingIt) {
  KafkaOptions options = valid();
  options.properties["no.such.property"] = "1";
  const std::string what = config_error_of(options);
  EXPECT_THAT(what, HasSubstr("KafkaOptions.properties[\"no.such.property\"] = \"1\""));
  EXPECT_THAT(what, HasSubstr("librdkafka: "));
  EXPECT_THAT(what, HasSubstr("No such configuration property"));
}

TEST(KafkaOptions, AnInvalidValueIsAConfigErrorNamingThePropertyAndLibrdkafkasMessage) {
  KafkaOptions options = valid();
  options.properties["linger.ms"] = "forever";
  const std::string what = config_error_of(options);
  EXPECT_THAT(what,
              HasSubstr("KafkaOptions.properties[\"linger.ms\"] = \"forever\": librdkafka: "));
  EXPECT_THAT(what, HasSubstr("linger.ms"));
}

TEST(KafkaOptions, APropertyThatConflictsWithTheIdempotentDefaultIsAConfigErrorNamingIt) {
  KafkaOptions options = valid();
  options.properties["acks"] = "1";  // enable.idempotence=true (our default) needs acks=all
  const std::string what = config_error_of(options);
  EXPECT_THAT(what, HasSubstr("KafkaOptions.properties[\"acks\"] = \"1\": librdkafka: "));
  EXPECT_THAT(what, HasSubstr("enable.idempotence"));
}

TEST(KafkaOptions, DefaultsCanBeOverridden) {
  KafkaOptions options = valid();
  options.properties["enable.idempotence"] = "false";
  options.properties["acks"] = "1";
  options.properties["compression.type"] = "none";
  Kafka kafka(std::move(options));
  EXPECT_TRUE(kafka.terminate(emissions::deadline_after(std::chrono::seconds(1))).ok());
}

TEST(KafkaOptions, BrokersAreRequired) {
  KafkaOptions options = valid();
  options.brokers.clear();
  EXPECT_THAT(config_error_of(options), HasSubstr("KafkaOptions.brokers must be set"));
  options.properties["bootstrap.servers"] = "127.0.0.1:1";
  Kafka kafka(std::move(options));  // given as a property instead: fine
}

TEST(KafkaOptions, BrokersGivenTwiceAreAConfigError) {
  KafkaOptions options = valid();
  options.properties["bootstrap.servers"] = "127.0.0.1:2";
  EXPECT_THAT(config_error_of(options), HasSubstr("both set"));
}

TEST(KafkaOptions, ATopicOrTopicForIsRequired) {
  KafkaOptions options = valid();
  options.topic.clear();
  EXPECT_THAT(config_error_of(options), HasSubstr("KafkaOptions.topic must be set"));
  options.topic_for = [](const emissions::Event&) { return std::string("t"); };
  Kafka kafka(std::move(options));
}

TEST(KafkaOptions, AnEmptyNameOrAFlushTimeoutOutOfRangeIsAConfigError) {
  KafkaOptions options = valid();
  options.name.clear();
  EXPECT_THAT(config_error_of(options), HasSubstr("KafkaOptions.name must be non-empty"));
  options = valid();
  options.flush_timeout = std::chrono::milliseconds(-1);
  EXPECT_THAT(config_error_of(options), HasSubstr("KafkaOptions.flush_timeout must be in"));
}

}  // namespace
