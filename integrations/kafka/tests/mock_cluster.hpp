// Test support: librdkafka's in-process mock cluster (rdkafka_mock.h) and a plain
// librdkafka consumer that reads a topic back, for the Kafka integration's tests.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "handles.hpp"

namespace emissions::testing::kafka {

// The Kafka protocol's ApiKey of Produce requests (rd_kafka_mock_push_request_errors).
inline constexpr std::int16_t kProduceApi = 0;

// Client properties every test client gets: quiet logs (a broker taken down on purpose
// logs connection errors at LOG_ERR; librdkafka's own errors still reach error_cb).
inline const std::map<std::string, std::string> kQuiet{{"log_level", "2"}};

// A mock cluster of `brokers` brokers (ids 1..brokers), on its own rd_kafka_t. Its
// destructor stops it. Thread-safe as librdkafka's mock API is.
class MockCluster {
 public:
  explicit MockCluster(int brokers) {
    detail::kafka::ConfHandle conf(rd_kafka_conf_new());
    std::array<char, 512> errstr{};
    (void)rd_kafka_conf_set(conf.get(), "log_level", "2", errstr.data(), errstr.size());
    owner_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr.data(), errstr.size()));
    if (!owner_) throw std::runtime_error(std::string("mock owner: ") + errstr.data());
    (void)conf.release();
    cluster_ = rd_kafka_mock_cluster_new(owner_.get(), brokers);
    if (cluster_ == nullptr) throw std::runtime_error("rd_kafka_mock_cluster_new failed");
  }
  ~MockCluster() { rd_kafka_mock_cluster_destroy(cluster_); }
  MockCluster(const MockCluster&) = delete;
  MockCluster& operator=(const MockCluster&) = delete;

  [[nodiscard]] std::string bootstraps() const {
    return rd_kafka_mock_cluster_bootstraps(cluster_);
  }
  [[nodiscard]] rd_kafka_mock_cluster_t* get() const { return cluster_; }

  void create_topic(const std::string& topic, int partitions, int replication = 1) {
    const rd_kafka_resp_err_t err =
        rd_kafka_mock_topic_create(cluster_, topic.c_str(), partitions, replication);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw std::runtime_error("mock topic " + topic + ": " + rd_kafka_err2str(err));
    }
  }

 private:
  detail::kafka::ClientHandle owner_;
  rd_kafka_mock_cluster_t* cluster_ = nullptr;  // destroyed before owner_
};

// One message read back.
struct Record {
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::string key;
  bool null_key = true;
  std::string value;
  std::map<std::string, std::string> headers;
};

// Reads `topic` (partitions 0..partitions-1) from the beginning with a plain consumer (no
// group join: assign()) up to each partition's end (its high watermark when the call
// begins: call it once producing is over), or until `timeout` passed.
inline std::vector<Record> read_back(const std::string& bootstraps, const std::string& topic,
                                     int partitions, std::chrono::milliseconds timeout) {
  detail::kafka::ConfHandle conf(rd_kafka_conf_new());
  std::array<char, 512> errstr{};
  for (const auto& [key, value] :
       std::map<std::string, std::string>{{"bootstrap.servers", bootstraps},
                                          {"group.id", "emissions-read-back"},
                                          {"enable.auto.commit", "false"},
                                          {"enable.partition.eof", "false"},
                                          {"log_level", "2"}}) {
    if (rd_kafka_conf_set(conf.get(), key.c_str(), value.c_str(), errstr.data(), errstr.size()) !=
        RD_KAFKA_CONF_OK) {
      throw std::runtime_error(errstr.data());
    }
  }
  detail::kafka::ClientHandle consumer(
      rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), errstr.data(), errstr.size()));
  if (!consumer) throw std::runtime_error(errstr.data());
  (void)conf.release();
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) {
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  const rd_kafka_resp_err_t assigned = rd_kafka_assign(consumer.get(), list);
  rd_kafka_topic_partition_list_destroy(list);
  if (assigned != RD_KAFKA_RESP_ERR_NO_ERROR) throw std::runtime_error(rd_kafka_err2str(assigned));

  const auto until = std::chrono::steady_clock::now() + timeout;
  std::map<std::int32_t, std::int64_t> end;  // partition -> high watermark
  for (std::int32_t p = 0; p < partitions; ++p) {
    std::int64_t low = 0;
    std::int64_t high = 0;
    const rd_kafka_resp_err_t err =
        rd_kafka_query_watermark_offsets(consumer.get(), topic.c_str(), p, &low, &high, 10'000);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) throw std::runtime_error(rd_kafka_err2str(err));
    if (high > low) end[p] = high;
  }
  std::vector<Record> records;
  std::map<std::int32_t, std::int64_t> next;  // partition -> next offset to read
  const auto done = [&] {
    for (const auto& [p, high] : end) {
      if (next[p] < high) return false;
    }
    return true;
  };
  while (!done() && std::chrono::steady_clock::now() < until) {
    detail::kafka::MessageHandle message(rd_kafka_consumer_poll(consumer.get(), 100));
    if (!message || message->err != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    next[message->partition] = message->offset + 1;
    Record record;
    record.partition = message->partition;
    record.offset = message->offset;
    record.null_key = message->key == nullptr;
    if (message->key != nullptr)
      record.key.assign(static_cast<const char*>(message->key), message->key_len);
    record.value.assign(static_cast<const char*>(message->payload), message->len);
    rd_kafka_headers_t* headers = nullptr;
    if (rd_kafka_message_headers(message.get(), &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* name = nullptr;
      const void* value = nullptr;
      std::size_t size = 0;
      for (std::size_t i = 0;
           rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
           ++i) {
        record.headers[name] = std::string(static_cast<const char*>(value), size);
      }
    }
    records.push_back(std::move(record));
  }
  (void)rd_kafka_consumer_close(consumer.get());
  return records;
}

// Writes `values` to `topic` partition `partition` with a plain producer and waits until
// librdkafka has sent them all (flush; throws when a produce call or the flush fails).
inline void produce_raw(const std::string& bootstraps, const std::string& topic,
                        std::int32_t partition, const std::vector<std::string>& values) {
  detail::kafka::ConfHandle conf(rd_kafka_conf_new());
  std::array<char, 512> errstr{};
  for (const auto& [key, value] :
       std::map<std::string, std::string>{{"bootstrap.servers", bootstraps}, {"log_level", "2"}}) {
    if (rd_kafka_conf_set(conf.get(), key.c_str(), value.c_str(), errstr.data(), errstr.size()) !=
        RD_KAFKA_CONF_OK) {
      throw std::runtime_error(errstr.data());
    }
  }
  detail::kafka::ClientHandle producer(
      rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr.data(), errstr.size()));
  if (!producer) throw std::runtime_error(errstr.data());
  (void)conf.release();
  for (const std::string& value : values) {
    std::array<rd_kafka_vu_t, 4> vus{};
    vus[0].vtype = RD_KAFKA_VTYPE_TOPIC;
    vus[0].u.cstr = topic.c_str();
    vus[1].vtype = RD_KAFKA_VTYPE_PARTITION;
    vus[1].u.i32 = partition;
    vus[2].vtype = RD_KAFKA_VTYPE_VALUE;
    vus[2].u.mem.ptr = const_cast<char*>(value.data());
    vus[2].u.mem.size = value.size();
    vus[3].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    vus[3].u.i = RD_KAFKA_MSG_F_COPY;
    if (rd_kafka_error_t* error = rd_kafka_produceva(producer.get(), vus.data(), vus.size())) {
      const std::string what = rd_kafka_error_string(error);
      rd_kafka_error_destroy(error);
      throw std::runtime_error("produce: " + what);
    }
  }
  if (rd_kafka_flush(producer.get(), 10'000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw std::runtime_error("produce: not flushed within 10 s");
  }
}

}  // namespace emissions::testing::kafka
