// The Kafka source against librdkafka's mock cluster: what the adapter wrote comes back as
// the same events, malformed messages are skipped and reported, committed offsets let the
// next member of the group continue where the last one stopped.
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "emissions/adapters/kafka.hpp"
#include "emissions/emitter.hpp"
#include "emissions/sources/kafka.hpp"
#include "emissions/telemetry.hpp"
#include "emissions/testing.hpp"
#include "mock_cluster.hpp"

namespace {

using emissions::adapters::Kafka;
using emissions::adapters::KafkaOptions;
using emissions::sources::KafkaSource;
using emissions::sources::KafkaSourceOptions;
using emissions::testing::TestAdapter;
using emissions::testing::kafka::MockCluster;
using emissions::testing::kafka::produce_raw;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

KafkaSourceOptions source_options(const MockCluster& cluster, std::string group) {
  return KafkaSourceOptions{.brokers = cluster.bootstraps(),
                            .group_id = std::move(group),
                            .topics = {"orders"},
                            // librdkafka 2.0.2's mock group holds a join for about the
                            // session timeout after a member goes: keep it short.
                            .properties = {{"log_level", "2"}, {"session.timeout.ms", "6000"}},
                            .commit_interval = 100ms};
}

// Emits `count` events (payload {"seq": first + i}) through a Kafka adapter; returns copies.
std::vector<emissions::Event> produce(const MockCluster& cluster, int first, int count) {
  auto kafka = std::make_shared<Kafka>(KafkaOptions{
      .brokers = cluster.bootstraps(), .topic = "orders", .properties = {{"log_level", "2"}}});
  auto copy = std::make_shared<TestAdapter>("copy");
  emissions::Config config;
  config.make_default = false;
  config.add_adapter(kafka).add_adapter(copy);
  emissions::Emitter emitter(std::move(config));
  emissions::Transaction tx = emitter.start();
  for (int i = first; i < first + count; ++i) {
    EXPECT_TRUE(tx.emit("order_created", {{"seq", i}}, {{"trace", "t-" + std::to_string(i)}}).ok());
  }
  EXPECT_TRUE(tx.commit().ok());
  EXPECT_TRUE(emitter.drain(20s).ok());
  EXPECT_EQ(emitter.stats().adapters.at(0).delivered, static_cast<std::uint64_t>(count));
  return copy->events();
}

struct Worker {
  explicit Worker() {
    emissions::Config config;
    config.make_default = false;
    config.add_adapter(handled);
    emitter = std::make_unique<emissions::Emitter>(std::move(config));
  }
  std::shared_ptr<TestAdapter> handled = std::make_shared<TestAdapter>("handled");
  std::unique_ptr<emissions::Emitter> emitter;
};

TEST(KafkaSource, ReadsWhatTheAdapterWroteBackIntoTheSameEvents) {
  MockCluster cluster(1);
  cluster.create_topic("orders", 3);
  const std::vector<emissions::Event> sent = produce(cluster, 0, 300);

  Worker worker;
  KafkaSource source(*worker.emitter, source_options(cluster, "workers"));
  ASSERT_TRUE(source.start().ok());
  EXPECT_TRUE(worker.handled->wait_for([](auto events) { return events.size() >= 300; }, 30s));
  EXPECT_TRUE(source.stop(10s).ok());

  std::map<std::string, emissions::Event> got;
  for (const emissions::Event& e : worker.handled->events())
    got.emplace(e.id.str(), e);
  ASSERT_EQ(got.size(), sent.size());
  for (const emissions::Event& e : sent) {
    SCOPED_TRACE(e.id.str());
    ASSERT_TRUE(got.contains(e.id.str()));
    const emissions::Event& back = got.at(e.id.str());
    EXPECT_EQ(back.name, e.name);
    EXPECT_EQ(back.payload, e.payload);
    EXPECT_EQ(emissions::format_timestamp(back.emitted_at),
              emissions::format_timestamp(e.emitted_at));
    EXPECT_EQ(back.metadata.at("trace"), e.metadata.at("trace"));
    const auto& where = back.metadata.at("kafka");
    EXPECT_EQ(where.at("topic"), "orders");
    EXPECT_GE(where.at("partition").get<int>(), 0);
    EXPECT_GE(where.at("offset").get<std::int64_t>(), 0);
  }
  const emissions::sources::KafkaSourceStats stats = source.stats();
  EXPECT_EQ(stats.consumed, 300u);
  EXPECT_EQ(stats.published, 300u);
  EXPECT_EQ(stats.malformed, 0u);
  EXPECT_GT(stats.committed, 0u);
}

TEST(KafkaSource, AMalformedMessageIsCountedReportedAndSkipped) {
  MockCluster cluster(1);
  cluster.create_topic("orders", 1);
  emissions::Event good;
  good.name = emissions::EventName("order_created");
  good.id = emissions::EventId::generate();
  good.payload = {{"id", 1}};
  good.metadata = nlohmann::json::object();
  good.emitted_at = std::chrono::system_clock::now();
  produce_raw(cluster.bootstraps(), "orders", 0,
              {"not json", emissions::serialize(good), R"({"name":"no id"})"});
  std::atomic<int> reported{0};
  nlohmann::json where;
  ASSERT_TRUE(emissions::telemetry::attach("malformed", {"emissions", "source", "malformed"},
                                           [&](const auto&, const auto&, const nlohmann::json& m) {
                                             if (reported.fetch_add(1) == 0) where = m;
                                           })
                  .ok());

  Worker worker;
  KafkaSource source(*worker.emitter, source_options(cluster, "workers"));
  ASSERT_TRUE(source.start().ok());
  EXPECT_TRUE(worker.handled->wait_for([](auto events) { return !events.empty(); }, 30s));
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (source.stats().consumed < 3 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(source.stop(10s).ok());
  (void)emissions::telemetry::detach("malformed");

  ASSERT_EQ(worker.handled->size(), 1u);
  EXPECT_EQ(worker.handled->events()[0].id, good.id);
  EXPECT_EQ(source.stats().malformed, 2u);
  EXPECT_EQ(reported.load(), 2);
  EXPECT_EQ(where.at("topic"), "orders");
  EXPECT_EQ(where.at("partition"), 0);
  EXPECT_EQ(where.at("offset"), 0);
  EXPECT_THAT(where.at("reason").get<std::string>(), HasSubstr("not valid JSON"));
}

TEST(KafkaSource, TheNextMemberOfTheGroupContinuesAfterWhatWasCommitted) {
  MockCluster cluster(1);
  cluster.create_topic("orders", 2);
  (void)produce(cluster, 0, 100);
  {
    Worker first;
    KafkaSource source(*first.emitter, source_options(cluster, "workers"));
    ASSERT_TRUE(source.start().ok());
    EXPECT_TRUE(first.handled->wait_for([](auto events) { return events.size() >= 100; }, 30s));
    EXPECT_TRUE(source.stop(10s).ok());  // commits what settled, leaves the group
    EXPECT_EQ(first.handled->size(), 100u);
  }
  (void)produce(cluster, 100, 50);
  Worker second;
  KafkaSource source(*second.emitter, source_options(cluster, "workers"));
  ASSERT_TRUE(source.start().ok());
  EXPECT_TRUE(second.handled->wait_for([](auto events) { return events.size() >= 50; }, 30s));
  std::this_thread::sleep_for(300ms);  // anything read twice would arrive by now
  EXPECT_TRUE(source.stop(10s).ok());
  ASSERT_EQ(second.handled->size(), 50u);
  for (const emissions::Event& e : second.handled->events()) {
    EXPECT_GE(e.payload.at("seq").get<int>(), 100);
  }
}

TEST(KafkaSource, AMemberThatLostItsPartitionsResumesAfterWhatItHandled) {
  // A commit refused with ILLEGAL_GENERATION (the group moved on: a rebalance, a session
  // that expired) makes librdkafka drop the assignment as lost and rejoin; the partitions
  // come back and would be read again from the group's last commit (here: none). The
  // source resumes after what it handled instead, and commits that.
  MockCluster cluster(1);
  cluster.create_topic("orders", 2);
  (void)produce(cluster, 0, 100);
  constexpr std::int16_t kOffsetCommitApi = 8;
  rd_kafka_mock_push_request_errors(cluster.get(), kOffsetCommitApi, 1,
                                    RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION);
  std::atomic<int> revoked{0};
  ASSERT_TRUE(emissions::telemetry::attach(
                  "revoked", {"emissions", "source", "revoked"},
                  [&](const auto&, const auto&, const auto&) { revoked.fetch_add(1); })
                  .ok());

  Worker worker;
  KafkaSource source(*worker.emitter, source_options(cluster, "workers"));
  ASSERT_TRUE(source.start().ok());
  EXPECT_TRUE(worker.handled->wait_for([](auto events) { return events.size() >= 100; }, 30s));
  // The refused commit, the rejoin (the mock holds it for about the session timeout), the
  // same partitions again, then a commit that goes through.
  const auto until = std::chrono::steady_clock::now() + 30s;
  while ((revoked.load() == 0 || source.stats().committed == 0) &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(20ms);
  }
  std::this_thread::sleep_for(300ms);  // anything read twice would arrive by now
  EXPECT_TRUE(source.stop(10s).ok());
  (void)emissions::telemetry::detach("revoked");

  EXPECT_GE(revoked.load(), 1) << "the refused commit did not cost the assignment";
  EXPECT_GT(source.stats().committed, 0u);
  EXPECT_EQ(worker.handled->size(), 100u) << "events handled again after the rejoin";
  EXPECT_EQ(source.stats().consumed, 100u);
}

TEST(KafkaSource, BadOptionsAreAConfigErrorNamingThem) {
  Worker worker;
  const auto error_of = [&](KafkaSourceOptions options) -> std::string {
    try {
      KafkaSource source(*worker.emitter, std::move(options));
    } catch (const emissions::ConfigError& e) {
      return e.what();
    }
    return "no ConfigError";
  };
  const KafkaSourceOptions valid{.brokers = "127.0.0.1:1",
                                 .group_id = "g",
                                 .topics = {"t"},
                                 .properties = {{"log_level", "0"}}};
  KafkaSourceOptions options = valid;
  options.group_id.clear();
  EXPECT_THAT(error_of(options), HasSubstr("KafkaSourceOptions.group_id must be set"));
  options = valid;
  options.topics.clear();
  EXPECT_THAT(error_of(options), HasSubstr("KafkaSourceOptions.topics must be non-empty"));
  options = valid;
  options.properties["enable.auto.commit"] = "true";
  EXPECT_THAT(error_of(options), HasSubstr("the source commits offsets itself"));
  options = valid;
  options.properties["session.timeout.ms"] = "never";
  EXPECT_THAT(error_of(options),
              HasSubstr("KafkaSourceOptions.properties[\"session.timeout.ms\"] = \"never\""));
  options = valid;
  options.max_batch = 0;
  EXPECT_THAT(error_of(options), HasSubstr("KafkaSourceOptions.max_batch must be in"));
  KafkaSource fine(*worker.emitter, valid);  // never started: the destructor is enough
}

}  // namespace
