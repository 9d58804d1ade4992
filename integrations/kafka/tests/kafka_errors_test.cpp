// Every librdkafka error maps to a retriable code (unavailable: the pipeline tries again)
// or to invalid_argument (permanent: failed for good, to the dead letter).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "emissions/delivery.hpp"
#include "errors.hpp"

namespace {

using emissions::Errc;
using emissions::detail::kafka::event_status;
using emissions::detail::kafka::permanent;

TEST(KafkaErrors, TransientBrokerAndClientErrorsAreRetriable) {
  for (rd_kafka_resp_err_t error :
       {RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_RESP_ERR__TIMED_OUT,
        RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION,
        RD_KAFKA_RESP_ERR__PURGE_QUEUE, RD_KAFKA_RESP_ERR__PURGE_INFLIGHT, RD_KAFKA_RESP_ERR__FATAL,
        RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR}) {
    SCOPED_TRACE(rd_kafka_err2name(error));
    EXPECT_FALSE(permanent(error));
    const emissions::Status status = event_status(error, "orders");
    EXPECT_EQ(status.code(), Errc::unavailable);
    EXPECT_TRUE(emissions::retriable(status.code()));
  }
}

TEST(KafkaErrors, RecordSizeAuthorizationAndSupportErrorsArePermanent) {
  for (rd_kafka_resp_err_t error :
       {RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, RD_KAFKA_RESP_ERR_INVALID_RECORD,
        RD_KAFKA_RESP_ERR_INVALID_MSG, RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE,
        RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED, RD_KAFKA_RESP_ERR__AUTHENTICATION,
        RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION, RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION}) {
    SCOPED_TRACE(rd_kafka_err2name(error));
    EXPECT_TRUE(permanent(error));
    const emissions::Status status = event_status(error, "orders");
    EXPECT_EQ(status.code(), Errc::invalid_argument);
    EXPECT_FALSE(emissions::retriable(status.code()));
  }
}

TEST(KafkaErrors, TheMessageNamesLibrdkafkasErrorAndTheTopic) {
  const emissions::Status status = event_status(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, "orders");
  EXPECT_THAT(status.message(), ::testing::HasSubstr("MSG_SIZE_TOO_LARGE"));
  EXPECT_THAT(status.message(), ::testing::HasSubstr("topic orders"));
  EXPECT_THAT(status.message(), ::testing::StartsWith("kafka: "));
}

}  // namespace
