// An order service and a worker joined by Kafka: the service commits events per request
// and the Kafka adapter produces each one to the topic a TopicRouter picks ("shop.orders",
// "shop.payments"), keyed by order id; the worker, a KafkaSource in group "workers", reads
// them back into an Emitter of its own whose handlers react. Start as many workers as you
// like, on as many machines: the group shares the partitions between them.
//
//   $ example_kafka_pipeline                  # an in-process mock cluster (librdkafka's)
//   $ example_kafka_pipeline kafka-1:9092     # a real cluster (the topics must exist)
//   service: 20 orders committed, 40 events delivered to Kafka
//   worker: receipt for order 0 (paid 1500)
//   ...
//   worker: 20 orders created, 20 receipts sent; source consumed 40, committed ...
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "emissions/adapters/kafka.hpp"
#include "emissions/emissions.hpp"
#include "emissions/sources/kafka.hpp"

namespace {

using namespace std::chrono_literals;

constexpr int kOrders = 20;

// librdkafka's mock cluster, for running the example without Kafka: a broker in this
// process that speaks the real protocol.
class MockKafka {
 public:
  MockKafka() {
    std::string error(512, '\0');
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    (void)rd_kafka_conf_set(conf, "log_level", "2", error.data(), error.size());
    owner_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error.data(), error.size());
    if (owner_ == nullptr) throw std::runtime_error("mock cluster: " + error);
    cluster_ = rd_kafka_mock_cluster_new(owner_, 1);
    if (cluster_ == nullptr) throw std::runtime_error("mock cluster: could not start");
    for (const char* topic : {"shop.orders", "shop.payments"})
      (void)rd_kafka_mock_topic_create(cluster_, topic, 3, 1);
  }
  ~MockKafka() {
    rd_kafka_mock_cluster_destroy(cluster_);
    rd_kafka_destroy(owner_);
  }
  MockKafka(const MockKafka&) = delete;
  MockKafka& operator=(const MockKafka&) = delete;
  std::string bootstraps() const { return rd_kafka_mock_cluster_bootstraps(cluster_); }

 private:
  rd_kafka_t* owner_ = nullptr;
  rd_kafka_mock_cluster_t* cluster_ = nullptr;
};

// The worker's handlers: count created orders, send a receipt once an order is paid.
class OrderCounter final : public emissions::Handler {
 public:
  std::string_view name() const override { return "order_counter"; }
  std::vector<emissions::EventName> events() const override { return {"order_created"}; }
  emissions::HandlerResult handle_event(const emissions::Event&) override {
    created.fetch_add(1);
    return emissions::HandlerResult::ok();
  }
  std::atomic<int> created{0};
};

class ReceiptSender final : public emissions::Handler {
 public:
  std::string_view name() const override { return "receipt_sender"; }
  std::vector<emissions::EventName> events() const override { return {"order_paid"}; }
  emissions::HandlerResult handle_event(const emissions::Event& e) override {
    // Where the event came from is in its metadata: {topic, partition, offset}.
    const auto& where = e.metadata.at("kafka");
    std::printf("worker: receipt for order %d (paid %d, %s/%d@%lld)\n",
                e.payload.at("order_id").get<int>(), e.payload.at("amount").get<int>(),
                where.at("topic").get<std::string>().c_str(), where.at("partition").get<int>(),
                static_cast<long long>(where.at("offset").get<std::int64_t>()));
    {
      std::lock_guard lock(mutex_);
      ++sent_;
    }
    changed_.notify_all();
    return emissions::HandlerResult::ok();
  }
  bool wait_for(int receipts, std::chrono::seconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return sent_ >= receipts; });
  }
  int sent() {
    std::lock_guard lock(mutex_);
    return sent_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  int sent_ = 0;
};

// The order service: each request commits its events as one unit of work.
bool run_service(const std::string& brokers) {
  static const emissions::TopicRouter router{{"orders", {"order_created"}},
                                             {"payments", {"order_paid"}}};
  auto kafka = std::make_shared<emissions::adapters::Kafka>(emissions::adapters::KafkaOptions{
      .brokers = brokers,
      .topic_for =
          [](const emissions::Event& e) {
            const auto topic = router.topic_for_event(e.name);
            return topic ? "shop." + std::string(*topic) : std::string();  // "": failed for good
          },
      // Same key, same partition: an order's events stay in order.
      .key_for = [](const emissions::Event& e) { return e.payload.at("order_id").dump(); },
      .properties = {{"log_level", "2"}}});
  emissions::Config config;
  config.make_default = false;
  // The committing thread produces what it commits while the adapter's consumer is idle.
  config.add_adapter(kafka, {.deliver_on_commit = true});
  emissions::Emitter service(std::move(config));
  for (int order = 0; order < kOrders; ++order) {
    emissions::Transaction request = service.start();
    (void)request.emit("order_created", {{"order_id", order}, {"items", 3}});
    (void)request.emit("order_paid", {{"order_id", order}, {"amount", 1500 + order}});
    if (const emissions::Status status = request.commit(); !status.ok()) {
      std::printf("service: commit failed: %s\n", status.to_string().c_str());
      return false;
    }
  }
  const emissions::Status drained = service.drain(30s);
  const emissions::AdapterStats stats = service.stats().adapters.at(0);
  std::printf("service: %d orders committed, %llu events delivered to Kafka\n", kOrders,
              static_cast<unsigned long long>(stats.delivered));
  return drained.ok() && stats.delivered == 2 * kOrders;
}

// A worker: a group member whose Emitter runs the handlers.
bool run_worker(const std::string& brokers) {
  auto counter = std::make_shared<OrderCounter>();
  auto receipts = std::make_shared<ReceiptSender>();
  emissions::Config config;
  config.make_default = false;
  config.add_handler(counter).add_handler(receipts);
  emissions::Emitter worker(std::move(config));
  emissions::sources::KafkaSource source(worker, {.brokers = brokers,
                                                  .group_id = "workers",
                                                  .topics = {"shop.orders", "shop.payments"},
                                                  .properties = {{"log_level", "2"}}});
  if (!source.start().ok()) return false;
  const bool all = receipts->wait_for(kOrders, 60s);
  // Stops reading, waits for what is in flight, commits it and leaves the group.
  (void)source.stop(10s);
  const emissions::sources::KafkaSourceStats stats = source.stats();
  std::printf(
      "worker: %d orders created, %d receipts sent; source consumed %llu, "
      "committed %llu offsets\n",
      counter->created.load(), receipts->sent(), static_cast<unsigned long long>(stats.consumed),
      static_cast<unsigned long long>(stats.committed));
  return all;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::unique_ptr<MockKafka> mock;
    std::string brokers = argc > 1 ? argv[1] : "";
    if (brokers.empty()) {
      mock = std::make_unique<MockKafka>();
      brokers = mock->bootstraps();
    }
    const bool produced = run_service(brokers);
    const bool consumed = produced && run_worker(brokers);
    return consumed ? 0 : 1;
  } catch (const std::exception& e) {
    std::printf("kafka_pipeline: %s\n", e.what());
    return 1;
  }
}
