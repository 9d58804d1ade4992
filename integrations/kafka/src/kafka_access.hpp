// Internal: what tests reach inside a Kafka adapter (the way librdkafka's own tests raise a
// fatal error in a producer). Not installed.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include <librdkafka/rdkafka.h>

#include "emissions/adapters/kafka.hpp"
#include "emissions/sources/kafka.hpp"

namespace emissions::detail {

struct KafkaAccess {
  // Raises `error` as a fatal error of the adapter's current producer
  // (rd_kafka_test_fatal_error): the adapter must fail what is in flight retriably and
  // create a new producer. NO_ERROR when raised; __STATE when there is no producer.
  static rd_kafka_resp_err_t raise_fatal(adapters::Kafka& kafka, rd_kafka_resp_err_t error,
                                         const char* reason);
  // How many producers replaced one stopped by a fatal error.
  static std::size_t restarts(const adapters::Kafka& kafka) noexcept;
  // How many turns the poll thread's loop took (each serves, or waits with a deadline).
  static std::uint64_t poll_looks(const adapters::Kafka& kafka) noexcept;
  // Sets how often the poll thread looks whether deliver() made progress (kProducingCheck):
  // a long one keeps it from serving reports while a test delivers.
  static void set_producing_check(adapters::Kafka& kafka,
                                  std::chrono::nanoseconds interval) noexcept;
  // Hands the source the answer to a commit, as librdkafka's offset-commit callback does:
  // `error` for the request, `offsets` (may be null) with each partition's error. The mock
  // cluster refuses a commit for all its partitions or none; a coordinator can refuse some
  // of them (librdkafka 2.0.2 then gives the request a refused partition's error and sets it
  // on every partition).
  static void commit_answered(sources::KafkaSource& source, rd_kafka_resp_err_t error,
                              const rd_kafka_topic_partition_list_t* offsets) noexcept;
};

}  // namespace emissions::detail
