// The Kafka adapter against librdkafka's mock cluster: what a message looks like, how each
// event is settled (delivered, retried, failed for good to the dead letter), backpressure,
// a fatal producer error, and terminate() with a broker down.
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "emissions/adapters/kafka.hpp"
#include "emissions/emitter.hpp"
#include "emissions/event.hpp"
#include "emissions/telemetry.hpp"
#include "emissions/testing.hpp"
#include "kafka_access.hpp"
#include "mock_cluster.hpp"
#include "pipeline/delivery_state.hpp"

namespace {

using emissions::Errc;
using emissions::adapters::Kafka;
using emissions::adapters::KafkaOptions;
using emissions::testing::TestAdapter;
using emissions::testing::kafka::MockCluster;
using emissions::testing::kafka::read_back;
using emissions::testing::kafka::Record;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

KafkaOptions options_for(const MockCluster& cluster, std::string topic) {
  return KafkaOptions{.brokers = cluster.bootstraps(),
                      .topic = std::move(topic),
                      .properties = {{"log_level", "2"}}};
}

// One order_created event, as a delivery outside any pipeline (deliver() called directly).
std::shared_ptr<emissions::detail::DeliveryState> one_event_delivery(int id) {
  std::vector<emissions::Event> events(1);
  events[0].name = emissions::EventName("order_created");
  events[0].id = emissions::EventId::generate();
  events[0].payload = {{"id", id}};
  return emissions::detail::make_detached_delivery("kafka", std::move(events));
}

// Retries come quickly in these tests.
emissions::RetryPolicy quick_retries() {
  return emissions::RetryPolicy{.max_attempts = 20, .initial_backoff = 10ms, .max_backoff = 200ms};
}

emissions::Config config_with(const std::shared_ptr<Kafka>& kafka,
                              emissions::AdapterOptions options = {}) {
  emissions::Config config;
  config.make_default = false;
  config.add_adapter(kafka, std::move(options));
  return config;
}

std::map<std::string, Record> by_event_id(const std::vector<Record>& records) {
  std::map<std::string, Record> out;
  for (const Record& r : records)
    out[r.headers.at("event-id")] = r;
  return out;
}

TEST(KafkaAdapter, EachEventBecomesOneMessageWithTheEnvelopeKeyAndHeaders) {
  MockCluster cluster(1);
  cluster.create_topic("orders", 3);
  KafkaOptions options = options_for(cluster, "orders");
  options.key_for = [](const emissions::Event& e) {
    const int id = e.payload.at("id").get<int>();
    return id % 2 == 0 ? "order-" + std::to_string(id) : std::string();  // odd: null key
  };
  auto kafka = std::make_shared<Kafka>(std::move(options));
  auto copy = std::make_shared<TestAdapter>("copy");
  emissions::Config config = config_with(kafka);
  config.add_adapter(copy);
  emissions::Emitter emitter(std::move(config));

  emissions::Transaction tx = emitter.start();
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(tx.emit("order_created", {{"id", i}}).ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 10u);
  EXPECT_EQ(kafka->outstanding(), 0u);

  const auto records = by_event_id(read_back(cluster.bootstraps(), "orders", 3, 10s));
  ASSERT_EQ(records.size(), 10u);
  for (const emissions::Event& event : copy->events()) {
    SCOPED_TRACE(event.id.str());
    ASSERT_TRUE(records.contains(event.id.str()));
    const Record& r = records.at(event.id.str());
    EXPECT_EQ(r.value, emissions::serialize(event));
    EXPECT_EQ(r.headers.at("event-name"), "order_created");
    EXPECT_EQ(r.headers.at("emitted-at"), emissions::format_timestamp(event.emitted_at));
    EXPECT_EQ(r.headers.at("content-type"), "application/json");
    const int id = event.payload.at("id").get<int>();
    EXPECT_EQ(r.null_key, id % 2 != 0);
    if (id % 2 == 0) {
      EXPECT_EQ(r.key, "order-" + std::to_string(id));
    }
  }
}

TEST(KafkaAdapter, TopicForWinsAndAnEmptyTopicFailsThatEventForGood) {
  MockCluster cluster(1);
  cluster.create_topic("shop.orders", 1);
  cluster.create_topic("fallback", 1);
  KafkaOptions options = options_for(cluster, "fallback");
  options.topic_for = [](const emissions::Event& e) {
    return e.name.str() == "order_created" ? std::string("shop.orders") : std::string();
  };
  auto kafka = std::make_shared<Kafka>(std::move(options));
  auto dead = std::make_shared<TestAdapter>("dead");
  emissions::Emitter emitter(config_with(kafka, {.retry = quick_retries(), .dead_letter = dead}));

  emissions::Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("order_created", {{"id", 1}}).ok());
  ASSERT_TRUE(tx.emit("unrouted", {{"id", 2}}).ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(emitter.drain(10s).ok());

  const emissions::AdapterStats stats = emitter.stats().adapters[0];
  EXPECT_EQ(stats.delivered, 1u);
  EXPECT_EQ(stats.failed, 1u);
  EXPECT_EQ(stats.retried, 0u);  // for good: never tried again
  ASSERT_EQ(dead->size(), 1u);
  const emissions::Event copy = dead->events()[0];
  EXPECT_EQ(copy.name.str(), "unrouted");
  EXPECT_THAT(copy.metadata.at("dead_letter").at("reason").get<std::string>(),
              HasSubstr("topic_for returned no topic"));
  EXPECT_EQ(read_back(cluster.bootstraps(), "shop.orders", 1, 10s).size(), 1u);
  EXPECT_EQ(read_back(cluster.bootstraps(), "fallback", 1, 10s).size(), 0u);
}

TEST(KafkaAdapter, ReportsSettledTogetherSettleEachEventOnceAndNeverOneFailedBeforeProduce) {
  // A poll's successful reports are settled together, a record whose every report is among
  // them with one Delivery::ack(): that must not touch its events failed before they were
  // produced (here every 7th, unrouted), and a record whose reports straddle polls or
  // threads is settled event by event. Counts and messages must come out exact.
  MockCluster cluster(1);
  cluster.create_topic("mixed", 3);
  KafkaOptions options = options_for(cluster, "mixed");
  options.topic_for = [](const emissions::Event& e) {
    return e.payload.at("i").get<int>() % 7 == 3 ? std::string() : std::string("mixed");
  };
  options.key_for = [](const emissions::Event& e) {
    return "k" + std::to_string(e.payload.at("i").get<int>() % 11);
  };
  auto kafka = std::make_shared<Kafka>(std::move(options));
  auto dead = std::make_shared<TestAdapter>("dead");
  emissions::Emitter emitter(config_with(kafka, {.retry = quick_retries(), .dead_letter = dead}));

  constexpr int kCommits = 40;
  constexpr int kPerCommit = 50;
  int unrouted = 0;
  for (int c = 0; c < kCommits; ++c) {
    emissions::Transaction tx = emitter.start();
    for (int j = 0; j < kPerCommit; ++j) {
      const int i = c * kPerCommit + j;
      unrouted += i % 7 == 3 ? 1 : 0;
      ASSERT_TRUE(tx.emit("order_created", {{"i", i}}).ok());
    }
    ASSERT_TRUE(tx.commit().ok());
  }
  ASSERT_TRUE(emitter.drain(30s).ok());
  const auto total = static_cast<std::uint64_t>(kCommits * kPerCommit);
  const emissions::AdapterStats stats = emitter.stats().adapters[0];
  EXPECT_EQ(stats.delivered, total - static_cast<std::uint64_t>(unrouted));
  EXPECT_EQ(stats.failed, static_cast<std::uint64_t>(unrouted));
  EXPECT_EQ(stats.dropped, 0u);
  EXPECT_EQ(dead->size(), static_cast<std::size_t>(unrouted));
  EXPECT_EQ(kafka->outstanding(), 0u);
  const auto records = read_back(cluster.bootstraps(), "mixed", 3, 10s);
  EXPECT_EQ(records.size(), total - static_cast<std::uint64_t>(unrouted));
  EXPECT_EQ(by_event_id(records).size(), records.size());  // no duplicate
}

TEST(KafkaAdapter, WhileBatchesKeepComingTheProducingThreadSettlesThemThenThePollThread) {
  // While deliver() calls make progress, the poll thread leaves the delivery reports to
  // them: each is settled on the consumer thread that produced it (the poll thread's look
  // for progress is made rare here, so that a slow machine cannot pass for an idle
  // producer). Once the batches stop, the poll thread settles the rest; each event once.
  MockCluster cluster(1);
  cluster.create_topic("orders", 2);
  KafkaOptions options = options_for(cluster, "orders");
  std::mutex mutex;
  std::thread::id producing_on;  // key_for runs inside deliver(), on the consumer thread
  options.key_for = [&](const emissions::Event&) {
    const std::lock_guard lock(mutex);
    producing_on = std::this_thread::get_id();
    return std::string("k");
  };
  auto kafka = std::make_shared<Kafka>(std::move(options));
  emissions::detail::KafkaAccess::set_producing_check(*kafka, std::chrono::hours(1));
  emissions::Emitter emitter(config_with(kafka));

  std::atomic<bool> batches_coming{true};
  std::atomic<int> settled_producing{0};  // while batches came, on the producing thread
  std::atomic<int> settled_elsewhere{0};  // while batches came, on another thread
  std::atomic<int> settled_after{0};      // once they stopped
  const auto on_settled = [&](const emissions::Settlement&) {
    if (!batches_coming.load()) {
      settled_after.fetch_add(1);
      return;
    }
    const std::lock_guard lock(mutex);
    (std::this_thread::get_id() == producing_on ? settled_producing : settled_elsewhere)
        .fetch_add(1);
  };
  constexpr int kPerCommit = 5;
  int commits = 0;
  const auto until = std::chrono::steady_clock::now() + 60s;  // a bound, not an assertion
  while (settled_producing.load() + settled_elsewhere.load() < 40 &&
         std::chrono::steady_clock::now() < until) {
    emissions::Transaction tx = emitter.start();
    for (int j = 0; j < kPerCommit; ++j)
      ASSERT_TRUE(tx.emit("order_created", {{"i", commits * kPerCommit + j}}).ok());
    ASSERT_TRUE(tx.commit(on_settled).ok());
    ++commits;
    std::this_thread::sleep_for(200us);  // pacing: batches keep coming, the queue stays short
  }
  batches_coming.store(false);
  // The look as usual again: the poll thread settles what the last batches left.
  emissions::detail::KafkaAccess::set_producing_check(*kafka, 1ms);
  ASSERT_TRUE(emitter.drain(30s).ok());

  EXPECT_GE(settled_producing.load(), 40);
  EXPECT_EQ(settled_elsewhere.load(), 0);
  EXPECT_EQ(settled_producing.load() + settled_elsewhere.load() + settled_after.load(), commits);
  const emissions::AdapterStats stats = emitter.stats().adapters[0];
  EXPECT_EQ(stats.delivered, static_cast<std::uint64_t>(commits * kPerCommit));
  EXPECT_EQ(stats.failed, 0u);
  EXPECT_EQ(stats.dropped, 0u);
  EXPECT_EQ(kafka->outstanding(), 0u);
  const auto records = read_back(cluster.bootstraps(), "orders", 2, 10s);
  EXPECT_EQ(records.size(), static_cast<std::size_t>(commits * kPerCommit));
  EXPECT_EQ(by_event_id(records).size(), records.size());  // no duplicate
}

TEST(KafkaAdapter, TopicForOrKeyForThrowingFailsThatEventWithInternal) {
  MockCluster cluster(1);
  cluster.create_topic("orders", 1);
  KafkaOptions options = options_for(cluster, "orders");
  options.topic_for = [](const emissions::Event& e) -> std::string {
    if (e.name.str() == "no_topic") throw std::runtime_error("router exploded");
    return "orders";
  };
  options.key_for = [](const emissions::Event& e) -> std::string {
    if (e.name.str() == "no_key") throw std::runtime_error("key exploded");
    return "k";
  };
  auto kafka = std::make_shared<Kafka>(std::move(options));
  auto dead = std::make_shared<TestAdapter>("dead");
  emissions::Emitter emitter(config_with(kafka, {.retry = quick_retries(), .dead_letter = dead}));

  emissions::Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("no_topic").ok());
  ASSERT_TRUE(tx.emit("fine").ok());
  ASSERT_TRUE(tx.emit("no_key").ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(emitter.drain(10s).ok());

  const emissions::AdapterStats stats = emitter.stats().adapters[0];
  EXPECT_EQ(stats.delivered, 1u);
  EXPECT_EQ(stats.failed, 2u);
  EXPECT_EQ(stats.retried, 0u);
  ASSERT_EQ(dead->size(), 2u);
  for (const emissions::Event& copy : dead->events()) {
    const std::string reason = copy.metadata.at("dead_letter").at("reason").get<std::string>();
    EXPECT_THAT(reason, HasSubstr("internal"));
    EXPECT_THAT(reason, HasSubstr("exploded"));
  }
}

TEST(KafkaAdapter, AMessageTooLargeGoesToTheDeadLetterWithItsReason) {
  MockCluster cluster(1);
  cluster.create_topic("orders", 1);
  KafkaOptions options = options_for(cluster, "orders");
  options.properties["message.max.bytes"] = "2000";
  auto kafka = std::make_shared<Kafka>(std::move(options));
  auto dead = std::make_shared<TestAdapter>("dead");
  emissions::Emitter emitter(config_with(kafka, {.retry = quick_retries(), .dead_letter = dead}));

  emissions::Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("small", {{"id", 1}}).ok());
  ASSERT_TRUE(tx.emit("huge", {{"blob", std::string(5'000, 'x')}}).ok());
  ASSERT_TRUE(tx.emit("small", {{"id", 2}}).ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(emitter.drain(10s).ok());

  const emissions::AdapterStats stats = emitter.stats().adapters[0];
  EXPECT_EQ(stats.delivered, 2u);
  EXPECT_EQ(stats.failed, 1u);
  EXPECT_EQ(stats.retried, 0u);
  EXPECT_EQ(stats.dead_lettered, 1u);
  ASSERT_EQ(dead->size(), 1u);
  const emissions::Event copy = dead->events()[0];
  EXPECT_EQ(copy.name.str(), "huge");
  const auto& why = copy.metadata.at("dead_letter");
  EXPECT_EQ(why.at("adapter"), "kafka");
  EXPECT_EQ(why.at("attempts"), 1);
  EXPECT_THAT(why.at("reason").get<std::string>(), HasSubstr("invalid_argument"));
  EXPECT_THAT(why.at("reason").get<std::string>(), HasSubstr("MSG_SIZE_TOO_LARGE"));
  EXPECT_EQ(read_back(cluster.bootstraps(), "orders", 1, 10s).size(), 2u);
}

TEST(KafkaAdapter, AFullQueueIsWaitedOutAndNothingIsDropped) {
  MockCluster cluster(1);
  cluster.create_topic("orders", 2);
  KafkaOptions options = options_for(cluster, "orders");
  options.properties["queue.buffering.max.messages"] = "8";  // full after 8 messages
  auto kafka = std::make_shared<Kafka>(std::move(options));
  emissions::Emitter emitter(config_with(kafka, {.max_demand = 500}));

  constexpr int kEvents = 500;
  emissions::Transaction tx = emitter.start();
  for (int i = 0; i < kEvents; ++i)
    ASSERT_TRUE(tx.emit("order_created", {{"id", i}}).ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(emitter.drain(30s).ok());

  const emissions::AdapterStats stats = emitter.stats().adapters[0];
  EXPECT_EQ(stats.delivered, static_cast<std::uint64_t>(kEvents));
  EXPECT_EQ(stats.failed + stats.dropped + stats.retried, 0u);
  EXPECT_EQ(read_back(cluster.bootstraps(), "orders", 2, 10s).size(),
            static_cast<std::size_t>(kEvents));
}

TEST(KafkaAdapter, AFatalProducerErrorFailsInFlightEventsRetriablyAndANewProducerDeliversThem) {
  MockCluster cluster(1);
  cluster.create_topic("orders", 1);
  auto kafka = std::make_shared<Kafka>(options_for(cluster, "orders"));
  std::atomic<int> restarted{0};
  ASSERT_TRUE(emissions::telemetry::attach(
                  "kafka-restarted", {"emissions", "kafka", "restarted"},
                  [&](const auto&, const auto&, const auto&) { restarted.fetch_add(1); })
                  .ok());
  emissions::Emitter emitter(config_with(kafka, {.retry = quick_retries()}));

  // With the broker down the events wait in librdkafka's queue: in flight, unreported.
  rd_kafka_mock_broker_set_down(cluster.get(), 1);
  constexpr int kEvents = 20;
  emissions::Transaction tx = emitter.start();
  for (int i = 0; i < kEvents; ++i)
    ASSERT_TRUE(tx.emit("order_created", {{"id", i}}).ok());
  ASSERT_TRUE(tx.commit().ok());
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (kafka->outstanding() < kEvents && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_EQ(kafka->outstanding(), static_cast<std::size_t>(kEvents));

  ASSERT_EQ(emissions::detail::KafkaAccess::raise_fatal(
                *kafka, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, "injected by the test"),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_mock_broker_set_up(cluster.get(), 1);
  ASSERT_TRUE(emitter.drain(20s).ok());
  (void)emissions::telemetry::detach("kafka-restarted");

  EXPECT_EQ(emissions::detail::KafkaAccess::restarts(*kafka), 1u);
  EXPECT_EQ(restarted.load(), 1);
  const emissions::AdapterStats stats = emitter.stats().adapters[0];
  EXPECT_EQ(stats.delivered, static_cast<std::uint64_t>(kEvents));
  EXPECT_EQ(stats.failed + stats.dropped, 0u);
  EXPECT_EQ(stats.retried, static_cast<std::uint64_t>(kEvents));  // each failed once, retriably
  const auto records = read_back(cluster.bootstraps(), "orders", 1, 10s);
  EXPECT_EQ(by_event_id(records).size(), static_cast<std::size_t>(kEvents));
  EXPECT_EQ(records.size(), static_cast<std::size_t>(kEvents));
}

TEST(KafkaAdapter, TwoFatalErrorsInARowRecreateTheProducerTwiceAndLoseOrSettleNothingTwice) {
  MockCluster cluster(1);
  cluster.create_topic("orders", 1);
  auto kafka = std::make_shared<Kafka>(options_for(cluster, "orders"));
  emissions::Emitter emitter(config_with(kafka, {.retry = quick_retries()}));
  const auto wait_for = [](const auto& done) {
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (!done() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(1ms);
    }
    return done();
  };

  rd_kafka_mock_broker_set_down(cluster.get(), 1);
  constexpr int kEvents = 20;
  emissions::Transaction tx = emitter.start();
  for (int i = 0; i < kEvents; ++i)
    ASSERT_TRUE(tx.emit("order_created", {{"id", i}}).ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(wait_for([&] { return kafka->outstanding() == kEvents; }));

  ASSERT_EQ(emissions::detail::KafkaAccess::raise_fatal(
                *kafka, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, "the first one"),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_TRUE(wait_for([&] { return emissions::detail::KafkaAccess::restarts(*kafka) == 1; }));
  // The failed events retried into the second producer (the broker still down) ...
  ASSERT_TRUE(wait_for([&] {
    return kafka->outstanding() == kEvents && emitter.stats().adapters[0].retried == kEvents;
  }));
  // ... which fails too, before or while the first is retired.
  ASSERT_EQ(emissions::detail::KafkaAccess::raise_fatal(
                *kafka, RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID, "the second one"),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_TRUE(wait_for([&] { return emissions::detail::KafkaAccess::restarts(*kafka) == 2; }));
  rd_kafka_mock_broker_set_up(cluster.get(), 1);
  ASSERT_TRUE(emitter.drain(20s).ok());

  EXPECT_EQ(emissions::detail::KafkaAccess::restarts(*kafka), 2u);
  EXPECT_EQ(kafka->outstanding(), 0u);
  const emissions::AdapterStats stats = emitter.stats().adapters[0];
  EXPECT_EQ(stats.delivered, static_cast<std::uint64_t>(kEvents));  // each settled once
  EXPECT_EQ(stats.failed + stats.dropped, 0u);
  EXPECT_EQ(stats.retried, static_cast<std::uint64_t>(2 * kEvents));  // once per fatal error
  const auto records = read_back(cluster.bootstraps(), "orders", 1, 10s);
  EXPECT_EQ(by_event_id(records).size(), static_cast<std::size_t>(kEvents));
  EXPECT_EQ(records.size(), static_cast<std::size_t>(kEvents));
}

TEST(KafkaAdapter, TerminateWithTheBrokerDownReturnsWithinFlushTimeoutAndReportsWhatWasLeft) {
  MockCluster cluster(1);
  cluster.create_topic("orders", 1);
  rd_kafka_mock_broker_set_down(cluster.get(), 1);
  KafkaOptions options = options_for(cluster, "orders");
  options.flush_timeout = 500ms;
  Kafka kafka(std::move(options));
  std::atomic<std::int64_t> left{-1};
  ASSERT_TRUE(emissions::telemetry::attach(
                  "kafka-terminated", {"emissions", "kafka", "terminated"},
                  [&](const auto&, const nlohmann::json& measurements, const auto&) {
                    left.store(measurements.at("left").get<std::int64_t>());
                  })
                  .ok());

  std::vector<emissions::Event> events(5);
  for (std::size_t i = 0; i < events.size(); ++i) {
    events[i].name = emissions::EventName("order_created");
    events[i].id = emissions::EventId::generate();
    events[i].metadata = nlohmann::json::object();
  }
  EXPECT_TRUE(emissions::testing::deliver_now(kafka, events).ok());  // produced, not reported
  EXPECT_EQ(kafka.outstanding(), 5u);

  const auto started = std::chrono::steady_clock::now();
  const emissions::Status status = kafka.terminate(emissions::deadline_after(30s));
  const auto took = std::chrono::steady_clock::now() - started;
  (void)emissions::telemetry::detach("kafka-terminated");

  EXPECT_EQ(status.code(), Errc::timeout);
  EXPECT_THAT(status.message(), HasSubstr("5 messages had no delivery report"));
  EXPECT_EQ(left.load(), 5);
  EXPECT_EQ(kafka.outstanding(), 0u);  // failed, so nothing is left unsettled
  EXPECT_GE(took, 500ms);
  EXPECT_LT(took, 2s) << "terminate() overran flush_timeout";

  // The adapter is closed now.
  EXPECT_EQ(emissions::testing::deliver_now(kafka, events).code(), Errc::closed);
  EXPECT_TRUE(kafka.terminate(emissions::deadline_after(1s)).ok());  // idempotent
}

TEST(KafkaAdapter, TerminateStopsAtItsDeadlineBeforeFlushTimeout) {
  MockCluster cluster(1);
  cluster.create_topic("orders", 1);
  rd_kafka_mock_broker_set_down(cluster.get(), 1);
  auto kafka = std::make_shared<Kafka>(options_for(cluster, "orders"));  // flush_timeout 10 s
  emissions::Config config = config_with(kafka);
  emissions::Emitter emitter(std::move(config));
  emissions::Transaction tx = emitter.start();
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(tx.emit("order_created", {{"id", i}}).ok());
  ASSERT_TRUE(tx.commit().ok());

  const auto started = std::chrono::steady_clock::now();
  const emissions::Status status = emitter.shutdown(300ms);
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_FALSE(status.ok());
  EXPECT_LT(took, 2s) << "shutdown(300ms) overran: " << status.to_string();
  const emissions::AdapterStats stats = emitter.stats().adapters[0];
  EXPECT_EQ(stats.delivered, 0u);
  EXPECT_EQ(stats.dropped + stats.failed, 3u);
}

TEST(KafkaAdapter, ConcurrentTerminateCallsEachReturnByTheirOwnDeadline) {
  // The first call waits for the reports until its deadline (3 s, the broker down); a
  // second call with a short deadline must not wait for the first one past its own.
  MockCluster cluster(1);
  cluster.create_topic("orders", 1);
  rd_kafka_mock_broker_set_down(cluster.get(), 1);
  KafkaOptions options = options_for(cluster, "orders");
  options.flush_timeout = 3s;
  Kafka kafka(std::move(options));
  std::vector<emissions::Event> events(3);
  for (auto& event : events) {
    event.name = emissions::EventName("order_created");
    event.id = emissions::EventId::generate();
    event.metadata = nlohmann::json::object();
  }
  EXPECT_TRUE(emissions::testing::deliver_now(kafka, events).ok());  // produced, not reported

  std::atomic<bool> first_began{false};
  emissions::Status first_status;
  std::thread first([&] {
    first_began.store(true);
    first_status = kafka.terminate(emissions::deadline_after(30s));
  });
  while (!first_began.load())
    std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(100ms);  // the first call is waiting for the reports
  const auto started = std::chrono::steady_clock::now();
  const emissions::Status second = kafka.terminate(emissions::deadline_after(200ms));
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_LT(took, 1s) << "terminate(200 ms) waited for the other call: "
                      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                      << " ms";
  EXPECT_EQ(second.code(), Errc::timeout) << second.to_string();
  first.join();
  EXPECT_EQ(first_status.code(), Errc::timeout);  // 3 messages without a report
  EXPECT_EQ(kafka.outstanding(), 0u);
  // Once the first call ended, another returns at once.
  EXPECT_TRUE(kafka.terminate(emissions::deadline_after(0ms)).ok());
}

// terminate() while deliver() is between two events of a batch (here key_for blocks; a
// settlement callback calling terminate() inside the reports deliver() serves when
// librdkafka's queue is full is the same case): what deliver() had not produced fails for
// good with `closed`, and nothing goes to the producer that terminate() tore down.
TEST(KafkaAdapter, DeliverProducesNothingOnceTerminateBegan) {
  MockCluster cluster(1);
  cluster.create_topic("orders", 1);
  std::atomic<bool> reached{false};
  std::atomic<bool> release{false};
  KafkaOptions options = options_for(cluster, "orders");
  options.key_for = [&](const emissions::Event& e) {
    if (e.payload.at("id").get<int>() == 5) {
      reached.store(true);
      const auto until = std::chrono::steady_clock::now() + 20s;
      while (!release.load() && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(1ms);
    }
    return std::string("k");
  };
  auto kafka = std::make_shared<Kafka>(std::move(options));
  emissions::Emitter emitter(config_with(kafka, {.retry = quick_retries()}));
  emissions::Transaction tx = emitter.start();
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(tx.emit("order_created", {{"id", i}}).ok());
  ASSERT_TRUE(tx.commit().ok());
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (!reached.load() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(reached.load());
  const emissions::Status terminated = kafka->terminate(emissions::deadline_after(10s));
  release.store(true);
  EXPECT_TRUE(terminated.ok()) << terminated.message();  // events 0-4 were reported
  ASSERT_TRUE(emitter.drain(10s).ok());
  const emissions::AdapterStats stats = emitter.stats().adapters.at(0);
  EXPECT_EQ(stats.delivered, 5u);
  EXPECT_EQ(stats.failed, 5u);
  EXPECT_EQ(stats.retried, 0u) << "events produced after terminate() and failed retriably";
  EXPECT_EQ(stats.dropped, 0u);
  EXPECT_EQ(kafka->outstanding(), 0u);
  EXPECT_EQ(read_back(cluster.bootstraps(), "orders", 1, 10s).size(), 5u);
}

// Re-entry: each commit's on_settled commits a follow-up event. Delivery reports are served
// on the poll thread and, after each batch, inside deliver() on the pipeline's consumer
// thread: a callback committing from either must neither deadlock nor lose or duplicate.
TEST(KafkaAdapter, SettlementCallbacksThatCommitAgainDeliverEverythingExactlyOnce) {
  MockCluster cluster(1);
  cluster.create_topic("orders", 3);
  auto kafka = std::make_shared<Kafka>(options_for(cluster, "orders"));
  emissions::Emitter emitter(config_with(kafka));
  constexpr int kCommits = 300;
  std::atomic<int> called{0};
  std::atomic<int> follow_ups_ok{0};
  for (int i = 0; i < kCommits; ++i) {
    emissions::Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit("order_created", {{"id", i}}).ok());
    ASSERT_TRUE(tx.commit([&emitter, &called, &follow_ups_ok, i](const emissions::Settlement& s) {
                    emissions::Transaction next = emitter.start();
                    const bool ok = s.adapters.at(0).delivered == 1 &&
                                    next.emit("order_confirmed", {{"id", i}}).ok() &&
                                    next.commit().ok();
                    if (ok) follow_ups_ok.fetch_add(1);
                    called.fetch_add(1);
                  }).ok());
    // Paced, so that reports are ready while later batches are handed over (librdkafka
    // lingers 5 ms): deliver() then serves some of them on the consumer thread.
    if (i % 5 == 4) std::this_thread::sleep_for(1ms);
  }
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (called.load() < kCommits && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(5ms);
  ASSERT_EQ(called.load(), kCommits);
  EXPECT_EQ(follow_ups_ok.load(), kCommits);
  ASSERT_TRUE(emitter.drain(30s).ok());
  const emissions::AdapterStats stats = emitter.stats().adapters.at(0);
  EXPECT_EQ(stats.received, 2u * kCommits);
  EXPECT_EQ(stats.delivered, 2u * kCommits);
  EXPECT_EQ(stats.failed + stats.dropped, 0u);
  EXPECT_EQ(kafka->outstanding(), 0u);
  const auto records = read_back(cluster.bootstraps(), "orders", 3, 10s);
  EXPECT_EQ(records.size(), 2u * kCommits);
  EXPECT_EQ(by_event_id(records).size(), 2u * kCommits) << "a message written twice";
}

// deliver_on_commit: three threads commit at once, the commits producing what they commit
// while the consumer is idle (and serving delivery reports there, whose settlement callbacks
// commit again on the committing thread), the consumer thread what they leave. Each event is
// written once, the events of one key in the order their thread committed them.
TEST(KafkaAdapter, DeliveredOnCommitFromSeveralThreadsEachEventOnceInOrderPerKey) {
  MockCluster cluster(1);
  cluster.create_topic("orders", 4);
  KafkaOptions options = options_for(cluster, "orders");
  options.key_for = [](const emissions::Event& e) {
    return e.payload.at("key").get<std::string>();
  };
  auto kafka = std::make_shared<Kafka>(std::move(options));
  emissions::Emitter emitter(config_with(kafka, {.deliver_on_commit = true}));
  constexpr int kThreads = 3;
  constexpr int kCommits = 200;
  constexpr int kEvents = 5;
  std::atomic<int> follow_ups{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int c = 0; c < kCommits; ++c) {
        emissions::Transaction tx = emitter.start();
        for (int e = 0; e < kEvents; ++e) {
          const int seq = c * kEvents + e;
          (void)tx.emit("order_created",
                        {{"key", "t" + std::to_string(t) + "-" + std::to_string(seq % 7)},
                         {"thread", t},
                         {"seq", seq}});
        }
        const bool follow_up = c % 10 == 0;
        const emissions::Status committed =
            follow_up ? tx.commit([&emitter, &follow_ups, t, c](const emissions::Settlement&) {
              emissions::Transaction next = emitter.start();
              if (next.emit("order_confirmed", {{"key", "f"}, {"thread", t}, {"seq", c}}).ok() &&
                  next.commit().ok()) {
                follow_ups.fetch_add(1);
              }
            })
                      : tx.commit();
        if (!committed.ok()) refused.fetch_add(1);
      }
    });
  }
  for (std::thread& t : threads)
    t.join();
  ASSERT_EQ(refused.load(), 0);
  const int expected_follow_ups = kThreads * (kCommits / 10);
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (follow_ups.load() < expected_follow_ups && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(5ms);
  ASSERT_EQ(follow_ups.load(), expected_follow_ups);
  ASSERT_TRUE(emitter.drain(30s).ok());
  const std::size_t total =
      static_cast<std::size_t>(kThreads * kCommits * kEvents + expected_follow_ups);
  const emissions::AdapterStats stats = emitter.stats().adapters.at(0);
  EXPECT_EQ(stats.received, total);
  EXPECT_EQ(stats.delivered, total);
  EXPECT_EQ(stats.failed + stats.dropped, 0u);
  const auto records = read_back(cluster.bootstraps(), "orders", 4, 20s);
  ASSERT_EQ(records.size(), total);
  EXPECT_EQ(by_event_id(records).size(), total) << "a message written twice";
  // read_back returns each partition's records in offset order; a key lives in one.
  std::map<std::string, int> last_seq;
  for (const Record& r : records) {
    if (r.key == "f") continue;
    const nlohmann::json envelope = nlohmann::json::parse(r.value);
    const int seq = envelope.at("payload").at("seq").get<int>();
    const auto found = last_seq.find(r.key);
    if (found != last_seq.end()) {
      EXPECT_LT(found->second, seq) << "key " << r.key;
    }
    last_seq[r.key] = seq;
  }
  EXPECT_EQ(last_seq.size(), static_cast<std::size_t>(kThreads * 7));
}

// The callbacks below run on the adapter's poll thread (delivery reports are served there):
// terminate() there must neither join nor wait for that thread.

TEST(KafkaAdapter, ShuttingTheEmitterDownFromASettlementCallbackOnThePollThreadIsSafe) {
  MockCluster cluster(1);
  cluster.create_topic("orders", 1);
  auto kafka = std::make_shared<Kafka>(options_for(cluster, "orders"));
  auto emitter = std::make_unique<emissions::Emitter>(config_with(kafka));
  auto emitter_shutdown = [&] { return emitter->shutdown(500ms); };
  std::atomic<bool> called{false};
  std::thread::id called_on;
  emissions::Status shut;
  emissions::Transaction tx = emitter->start();
  ASSERT_TRUE(tx.emit("order_created", {{"id", 1}}).ok());
  ASSERT_TRUE(tx.commit([&](const emissions::Settlement&) {
                  called_on = std::this_thread::get_id();
                  shut = emitter_shutdown();
                  called.store(true);
                }).ok());
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (!called.load() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(called.load());
  EXPECT_NE(called_on, std::this_thread::get_id());
  // The Emitter cannot drain the settlement whose callback is running: it may time out.
  EXPECT_TRUE(shut.ok() || shut.code() == Errc::timeout) << shut.message();
  EXPECT_TRUE(emitter->closed());
  EXPECT_EQ(emitter->stats().adapters.at(0).delivered, 1u);
  EXPECT_EQ(kafka->outstanding(), 0u);
  emitter.reset();
  kafka.reset();  // the last reference, here: joins the poll thread, which ended by itself
  EXPECT_EQ(read_back(cluster.bootstraps(), "orders", 1, 10s).size(), 1u);
}

TEST(KafkaAdapter, DroppingTheLastReferenceOnThePollThreadIsSafe) {
  // A broker that is down makes librdkafka report errors, which the poll thread hands to
  // telemetry: the handler drops the only reference to the adapter.
  MockCluster cluster(1);
  cluster.create_topic("orders", 1);
  rd_kafka_mock_broker_set_down(cluster.get(), 1);
  auto kafka = std::make_shared<Kafka>(options_for(cluster, "orders"));
  std::atomic<bool> dropped{false};
  std::atomic<int> terminated{0};
  std::thread::id dropped_on;
  ASSERT_TRUE(emissions::telemetry::attach("drop", {"emissions", "kafka", "error"},
                                           [&](const auto&, const auto&, const auto&) {
                                             if (!kafka) return;
                                             dropped_on = std::this_thread::get_id();
                                             kafka.reset();
                                             dropped.store(true);
                                           })
                  .ok());
  ASSERT_TRUE(emissions::telemetry::attach(
                  "terminated", {"emissions", "kafka", "terminated"},
                  [&](const auto&, const auto&, const auto&) { terminated.fetch_add(1); })
                  .ok());
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (!dropped.load() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(5ms);
  // The thread ends by itself; nothing of it is left to wait for but librdkafka's exit.
  std::this_thread::sleep_for(200ms);
  (void)emissions::telemetry::detach("drop");
  (void)emissions::telemetry::detach("terminated");
  ASSERT_TRUE(dropped.load());
  EXPECT_NE(dropped_on, std::this_thread::get_id());
  EXPECT_EQ(terminated.load(), 1);
}

// The same inside terminate(), whose telemetry runs before it builds its result: the
// adapter must stay alive until terminate() returns (as until deliver() returns, where a
// settlement callback or an error's telemetry may drop it too). Visible to ASan only.
TEST(KafkaAdapter, DroppingTheLastReferenceInsideTerminateIsSafe) {
  MockCluster cluster(1);
  cluster.create_topic("orders", 1);
  rd_kafka_mock_broker_set_down(cluster.get(), 1);
  auto kafka = std::make_shared<Kafka>(options_for(cluster, "orders"));
  Kafka* const adapter = kafka.get();
  const auto batch = one_event_delivery(1);
  adapter->deliver(emissions::detail::DeliveryAccess::make(batch));  // no report: broker down
  std::atomic<bool> dropped{false};
  ASSERT_TRUE(emissions::telemetry::attach("drop", {"emissions", "kafka", "terminated"},
                                           [&](const auto&, const auto&, const auto&) {
                                             if (!kafka) return;
                                             kafka.reset();
                                             dropped.store(true);
                                           })
                  .ok());
  const emissions::Status status = adapter->terminate(emissions::deadline_after(100ms));
  (void)emissions::telemetry::detach("drop");
  EXPECT_TRUE(dropped.load());
  EXPECT_EQ(status.code(), Errc::timeout);
  EXPECT_THAT(status.message(), HasSubstr("1 messages had no delivery report"));
  EXPECT_EQ(batch->unsettled.load(), 0u);
}

// From review: once terminate() began, a deliver() (refused: closed) moved the progress
// count past the poll thread's last look, and its idle wait, which ends when the count
// moves, then returned at once on every turn: the poll thread spun until terminate() ended
// (up to flush_timeout). A few turns are expected while terminate() waits (each waits up to
// 100 ms for a report); a spinning thread takes thousands.
TEST(KafkaAdapter, ADeliverDuringTerminateDoesNotMakeThePollThreadSpin) {
  MockCluster cluster(1);
  cluster.create_topic("orders", 1);
  rd_kafka_mock_broker_set_down(cluster.get(), 1);
  KafkaOptions options = options_for(cluster, "orders");
  options.flush_timeout = 3s;
  auto kafka = std::make_shared<Kafka>(std::move(options));
  const auto first = one_event_delivery(1);
  kafka->deliver(emissions::detail::DeliveryAccess::make(first));  // no report: broker down
  std::thread terminating([&] { (void)kafka->terminate(emissions::deadline_after(10s)); });
  // Refused once terminate() has begun; until then it produces and waits for a report.
  std::shared_ptr<emissions::detail::DeliveryState> refused;
  for (int i = 2; !refused; ++i) {
    auto batch = one_event_delivery(i);
    kafka->deliver(emissions::detail::DeliveryAccess::make(batch));
    if (batch->unsettled.load() == 0) refused = batch;
    std::this_thread::sleep_for(10ms);
  }
  const std::uint64_t before = emissions::detail::KafkaAccess::poll_looks(*kafka);
  std::this_thread::sleep_for(500ms);  // terminate() waits for the first event's report
  const std::uint64_t looks = emissions::detail::KafkaAccess::poll_looks(*kafka) - before;
  terminating.join();
  EXPECT_LT(looks, 1000u);
}

}  // namespace
