// The Kafka source against librdkafka's mock cluster: what the adapter wrote comes back as
// the same events, malformed messages are skipped and reported, committed offsets let the
// next member of the group continue where the last one stopped.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
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
#include "kafka_access.hpp"
#include "mock_cluster.hpp"
#include "recording_adapter.hpp"

namespace {

using emissions::adapters::Kafka;
using emissions::adapters::KafkaOptions;
using emissions::sources::KafkaSource;
using emissions::sources::KafkaSourceOptions;
using emissions::test_support::DetachOnExit;
using emissions::test_support::TelemetryRecorder;
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
  const DetachOnExit detach_malformed{"malformed"};

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

TEST(KafkaSource, AMessageWithANumberOutOfRangeIsMalformedAndTheRestOfItsBatchIsHandled) {
  MockCluster cluster(1);
  cluster.create_topic("orders", 1);
  std::vector<std::string> messages;
  std::vector<emissions::EventId> good;
  for (int i = 0; i < 3; ++i) {
    emissions::Event event;
    event.name = emissions::EventName("order_created");
    event.id = emissions::EventId::generate();
    event.payload = {{"id", i}};
    event.metadata = nlohmann::json::object();
    event.emitted_at = std::chrono::system_clock::now();
    std::string text = emissions::serialize(event);
    if (i == 0) {
      // The envelope's parser throws for it (nlohmann's out_of_range), not only refuses it.
      text = text.substr(0, text.rfind(R"("payload":)")) + R"("payload":1e999})";
    } else {
      good.push_back(event.id);
    }
    messages.push_back(std::move(text));
  }
  produce_raw(cluster.bootstraps(), "orders", 0, messages);

  Worker worker;
  KafkaSource source(*worker.emitter, source_options(cluster, "workers"));
  ASSERT_TRUE(source.start().ok());
  EXPECT_TRUE(worker.handled->wait_for([](auto events) { return events.size() >= 2; }, 30s));
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (source.stats().committed == 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(source.stop(10s).ok()) << "every message read was settled";

  ASSERT_EQ(worker.handled->size(), 2u);
  EXPECT_EQ(worker.handled->events()[0].id, good[0]);
  EXPECT_EQ(worker.handled->events()[1].id, good[1]);
  EXPECT_EQ(source.stats().consumed, 3u);
  EXPECT_EQ(source.stats().malformed, 1u);
  EXPECT_GT(source.stats().committed, 0u);
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

// stop() while librdkafka still holds fetched messages the source has not polled: the close
// moves them to the queue it is served on. They must be dropped there, unhandled and not
// committed (librdkafka 2.0.2 aborted the process when that queue was served with
// rd_kafka_queue_poll_callback), and the next member reads each of them.
TEST(KafkaSource, StopWithFetchedMessagesNotYetPolledLeavesThemToTheNextMember) {
  // Far more than the first member can read between its first event and stop(), even with
  // the test's thread starved for a while.
  constexpr int kEvents = 20'000;
  MockCluster cluster(1);
  cluster.create_topic("orders", 3);
  (void)produce(cluster, 0, kEvents);
  std::vector<emissions::Event> first_handled;
  {
    Worker first;
    KafkaSourceOptions options = source_options(cluster, "workers");
    options.max_batch = 1;  // most of what was fetched waits in librdkafka's queue
    KafkaSource source(*first.emitter, std::move(options));
    ASSERT_TRUE(source.start().ok());
    EXPECT_TRUE(first.handled->wait_for([](auto events) { return !events.empty(); }, 30s));
    EXPECT_TRUE(source.stop(10s).ok());  // commits what settled, drops the rest, leaves
    first_handled = first.handled->events();
    EXPECT_EQ(source.stats().consumed, first_handled.size());
  }
  ASSERT_LT(first_handled.size(), static_cast<std::size_t>(kEvents));
  Worker second;
  KafkaSource source(*second.emitter, source_options(cluster, "workers"));
  ASSERT_TRUE(source.start().ok());
  const std::size_t rest = kEvents - first_handled.size();
  EXPECT_TRUE(second.handled->wait_for([&](auto events) { return events.size() >= rest; }, 30s));
  std::this_thread::sleep_for(300ms);  // anything read twice would arrive by now
  EXPECT_TRUE(source.stop(10s).ok());
  std::vector<int> seqs;
  for (const std::vector<emissions::Event>& handled : {first_handled, second.handled->events()}) {
    for (const emissions::Event& e : handled)
      seqs.push_back(e.payload.at("seq").get<int>());
  }
  std::sort(seqs.begin(), seqs.end());
  ASSERT_EQ(seqs.size(), static_cast<std::size_t>(kEvents));  // none twice, none lost
  for (int i = 0; i < kEvents; ++i)
    ASSERT_EQ(seqs[static_cast<std::size_t>(i)], i);
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
  const DetachOnExit detach_revoked{"revoked"};

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

// An adapter that acks the events whose payload "seq" is below `hold_from` and holds the
// others (unsettled) until the test acks them, in the order they arrived.
class Holding final : public emissions::AsyncAdapter {
 public:
  explicit Holding(int hold_from) : hold_from_(hold_from) {}
  std::string_view name() const override { return "holding"; }
  void deliver(emissions::Delivery delivery) override {
    auto shared = std::make_shared<emissions::Delivery>(std::move(delivery));
    std::vector<std::size_t> ack;
    {
      std::lock_guard lock(mutex_);
      for (std::size_t i = 0; i < shared->events().size(); ++i) {
        const emissions::Event& e = shared->events()[i];
        handled_.push_back(e);
        if (e.payload.at("seq").get<int>() >= hold_from_) {
          held_.push_back(Held{shared, i});
        } else {
          ack.push_back(i);
        }
      }
    }
    for (std::size_t i : ack)
      shared->ack(i);
  }
  // Acks the first `count` events held (fewer if fewer are held).
  void ack_held(std::size_t count) {
    std::vector<Held> taken;
    {
      std::lock_guard lock(mutex_);
      count = std::min(count, held_.size());
      taken.assign(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(count));
      held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(count));
    }
    for (Held& h : taken)
      h.delivery->ack(h.index);
  }
  std::size_t held() const {
    std::lock_guard lock(mutex_);
    return held_.size();
  }
  // Every event handed over, in order (held ones included).
  std::vector<emissions::Event> handled() const {
    std::lock_guard lock(mutex_);
    return handled_;
  }

 private:
  struct Held {
    std::shared_ptr<emissions::Delivery> delivery;
    std::size_t index = 0;
  };
  const int hold_from_;
  mutable std::mutex mutex_;
  std::vector<Held> held_;
  std::vector<emissions::Event> handled_;
};

std::unique_ptr<emissions::Emitter> emitter_with(std::shared_ptr<emissions::Adapter> adapter) {
  emissions::Config config;
  config.make_default = false;
  config.add_adapter(std::move(adapter));
  return std::make_unique<emissions::Emitter>(std::move(config));
}

// The group's committed offset of orders/`partition` (RD_KAFKA_OFFSET_INVALID: none), read
// by a client that does not join the group.
std::int64_t group_offset(const MockCluster& cluster, const std::string& group, int partition) {
  emissions::detail::kafka::ConfHandle conf(rd_kafka_conf_new());
  std::array<char, 512> errstr{};
  for (const auto& [key, value] : std::map<std::string, std::string>{
           {"bootstrap.servers", cluster.bootstraps()}, {"group.id", group}, {"log_level", "2"}}) {
    EXPECT_EQ(
        rd_kafka_conf_set(conf.get(), key.c_str(), value.c_str(), errstr.data(), errstr.size()),
        RD_KAFKA_CONF_OK);
  }
  rd_kafka_t* client = rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), errstr.data(), errstr.size());
  if (client == nullptr) return -2;
  (void)conf.release();
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  (void)rd_kafka_topic_partition_list_add(list, "orders", partition);
  std::int64_t offset = -3;
  if (rd_kafka_committed(client, list, 10'000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
      list->elems[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    offset = list->elems[0].offset;
  }
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_destroy_flags(client, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);  // never joined
  return offset;
}

// Counts `[emissions, source, assigned]` reports of the source named `name`.
struct Assignments {
  explicit Assignments(std::string name) : source(std::move(name)) {
    EXPECT_TRUE(emissions::telemetry::attach("assignments-" + source,
                                             {"emissions", "source", "assigned"},
                                             [this](const auto&, const auto&, const auto& meta) {
                                               if (meta.at("source") == source) count.fetch_add(1);
                                             })
                    .ok());
  }
  ~Assignments() { (void)emissions::telemetry::detach("assignments-" + source); }
  Assignments(const Assignments&) = delete;
  Assignments& operator=(const Assignments&) = delete;
  std::string source;
  std::atomic<int> count{0};
};

template <typename Predicate>
bool eventually(Predicate done, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// The first member (`a`, holding events 5..9 of orders/0) has its partition revoked and
// given back to it: a second member joins the group subscribed to another topic only.
struct RevokedAndGivenBack {
  explicit RevokedAndGivenBack(std::chrono::milliseconds commit_interval) : cluster(1) {
    cluster.create_topic("orders", 1);
    cluster.create_topic("other", 1);
    (void)produce(cluster, 0, 10);
    KafkaSourceOptions options = source_options(cluster, "workers");
    options.name = "a";
    options.max_batch = 1;  // one publish, and so one settlement, per message
    options.commit_interval = commit_interval;
    options.properties["heartbeat.interval.ms"] = "200";  // sees a rebalance soon
    a = std::make_unique<KafkaSource>(*a_emitter, std::move(options));
  }
  void join_second_member() {
    KafkaSourceOptions options = source_options(cluster, "workers");
    options.name = "b";
    options.topics = {"other"};
    b = std::make_unique<KafkaSource>(*b_emitter, std::move(options));
    ASSERT_TRUE(b->start().ok());
  }
  ~RevokedAndGivenBack() {
    if (b) (void)b->stop(5s);
    holding->ack_held(1'000);
    if (a) (void)a->stop(5s);
  }
  MockCluster cluster;
  std::shared_ptr<Holding> holding = std::make_shared<Holding>(5);
  std::unique_ptr<emissions::Emitter> a_emitter = emitter_with(holding);
  std::unique_ptr<emissions::Emitter> b_emitter = emitter_with(std::make_shared<TestAdapter>("b"));
  Assignments a_assigned{"a"};
  std::unique_ptr<KafkaSource> a;
  std::unique_ptr<KafkaSource> b;
};

// Whether the group's offset of orders/0 reaches `offset`, waiting up to `window` after `a`'s
// latest assignment. The offset a source resumed at is committed at its next commit interval
// once the group is stable, but librdkafka 2.0.2's mock group can need further rebalances of
// session.timeout.ms - 1 s each (a member whose SyncGroup comes after the leader's has
// completed the round is refused with INVALID_REQUEST and rejoins), and the coordinator
// refuses every commit while one goes on (REBALANCE_IN_PROGRESS). How many it needs depends
// on scheduling alone, so the wait starts again with each assignment (at most `rounds`).
bool offset_reached(RevokedAndGivenBack& group, std::int64_t offset,
                    std::chrono::milliseconds window, int rounds = 8) {
  for (int round = 0; round < rounds; ++round) {
    const int seen = group.a_assigned.count.load();
    if (eventually(
            [&] {
              return group_offset(group.cluster, "workers", 0) == offset ||
                     group.a_assigned.count.load() != seen;
            },
            window) &&
        group_offset(group.cluster, "workers", 0) == offset) {
      return true;
    }
    if (group.a_assigned.count.load() == seen) return false;  // the window passed, no rebalance
  }
  return false;
}

std::vector<std::int64_t> offsets_of(const std::vector<emissions::Event>& events) {
  std::vector<std::int64_t> out;
  for (const emissions::Event& e : events)
    out.push_back(e.metadata.at("kafka").at("offset").get<std::int64_t>());
  return out;
}

TEST(KafkaSource, ARevokedPartitionsEventsInFlightAreWaitedForAndCommittedBeforeItGoes) {
  // Revoked while events 5..9 are unsettled, which settle during the wait (bounded by
  // commit_interval x 10 = 10 s): the commit made before the partition goes covers them,
  // so the partition, given back, is not read again from 5.
  RevokedAndGivenBack group(1s);
  ASSERT_TRUE(group.a->start().ok());
  ASSERT_TRUE(eventually([&] { return group.holding->held() == 5; }, 30s));
  ASSERT_TRUE(eventually([&] { return group_offset(group.cluster, "workers", 0) == 5; }, 10s));
  group.join_second_member();
  std::this_thread::sleep_for(3s);  // the rebalance began: `a` waits in its revoke
  EXPECT_EQ(group.a_assigned.count.load(), 1) << "given back before its events settled";
  group.holding->ack_held(5);
  ASSERT_TRUE(eventually([&] { return group.a_assigned.count.load() == 2; }, 30s));
  // Committed in the revoke, or (the coordinator refusing commits while the group
  // rebalances, as the mock's always does in a revoke) after the assignment, from where the
  // source resumed: at its next commit interval once the group is stable (see
  // offset_reached() for the further rebalances the mock may take first).
  EXPECT_TRUE(offset_reached(group, 10, 10s));
  std::this_thread::sleep_for(500ms);  // anything read again would arrive by now
  EXPECT_EQ(group.a->stats().consumed, 10u);
  EXPECT_EQ(offsets_of(group.holding->handled()),
            (std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

TEST(KafkaSource, ACommitTheCoordinatorRefusedIsMadeAgainAndCountedOnlyOnceAccepted) {
  // The coordinator refuses commits while its group rebalances (REBALANCE_IN_PROGRESS). A
  // refused commit is reported (one error each, with its code), not counted as committed,
  // and made again at the next commit interval until the group has it.
  std::atomic<int> refused{0};    // before the group: outlives a handler still running
  RevokedAndGivenBack group(1s);  // no second member: the group stays as it is
  ASSERT_TRUE(emissions::telemetry::attach("refused", {"emissions", "source", "error"},
                                           [&](const auto&, const auto&, const nlohmann::json& m) {
                                             if (m.at("code") == "REBALANCE_IN_PROGRESS") {
                                               refused.fetch_add(1);
                                             }
                                           })
                  .ok());
  const DetachOnExit detach_refused{"refused"};
  ASSERT_TRUE(group.a->start().ok());
  ASSERT_TRUE(eventually([&] { return group.holding->held() == 5; }, 30s));
  ASSERT_TRUE(eventually([&] { return group_offset(group.cluster, "workers", 0) == 5; }, 10s));
  // The mock stores the offset before it answers; the counter moves when the answer is in.
  ASSERT_TRUE(eventually([&] { return group.a->stats().committed == 1; }, 10s))
      << group.a->stats().committed;
  constexpr std::int16_t kOffsetCommitApi = 8;
  constexpr int kRefusals = 3;
  const std::array<rd_kafka_resp_err_t, kRefusals> refusals{
      RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS, RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
      RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS};
  rd_kafka_mock_push_request_errors_array(group.cluster.get(), kOffsetCommitApi, refusals.size(),
                                          refusals.data());
  group.holding->ack_held(5);
  EXPECT_TRUE(eventually([&] { return group_offset(group.cluster, "workers", 0) == 10; }, 30s));
  (void)emissions::telemetry::detach("refused");
  EXPECT_EQ(refused.load(), kRefusals);
  EXPECT_TRUE(eventually([&] { return group.a->stats().committed == 2; }, 10s))
      << group.a->stats().committed << ": 5, then 10 once accepted";
  std::this_thread::sleep_for(300ms);  // a commit counted twice would show by now
  EXPECT_EQ(group.a->stats().committed, 2u) << "5, then 10 once accepted";
  EXPECT_EQ(group.a->stats().consumed, 10u);
}

TEST(KafkaSource, ACommitRefusedForSomeOfItsPartitionsIsReportedOnceAndNotCounted) {
  // librdkafka 2.0.2 answers a commit that the coordinator refused for some partitions with
  // the request's error (a refused partition's) and that error set on every partition, the
  // accepted ones too: the source cannot tell them apart, so it reports the commit once,
  // counts none of it, and commits it whole again. The mock refuses all partitions or none,
  // so the answer is handed to the source as librdkafka's commit callback gives it.
  MockCluster cluster(1);
  const std::unique_ptr<emissions::Emitter> emitter =
      emitter_with(std::make_shared<TestAdapter>("handled"));
  KafkaSource source(*emitter, source_options(cluster, "workers"));
  const TelemetryRecorder recorder("partly refused", {{"emissions", "source", "error"}});
  const std::unique_ptr<rd_kafka_topic_partition_list_t,
                        decltype(&rd_kafka_topic_partition_list_destroy)>
      offsets(rd_kafka_topic_partition_list_new(2), &rd_kafka_topic_partition_list_destroy);
  for (int partition = 0; partition < 2; ++partition) {
    rd_kafka_topic_partition_t* entry =
        rd_kafka_topic_partition_list_add(offsets.get(), "orders", partition);
    entry->offset = 10;
    entry->err = RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS;
  }
  emissions::detail::KafkaAccess::commit_answered(source, RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
                                                  offsets.get());
  const std::vector<TelemetryRecorder::Record> errors = recorder.records();
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].metadata.at("code"), "REBALANCE_IN_PROGRESS");
  EXPECT_THAT(errors[0].metadata.at("reason").get<std::string>(),
              testing::HasSubstr("commit failed"));
  EXPECT_EQ(source.stats().committed, 0u);
}

TEST(KafkaSource, APartitionGivenBackResumesAtTheLastCommitAndIgnoresSettlementsOfTheOldOne) {
  // Events 5..9 stay unsettled through the revoke (its wait of commit_interval x 10 = 1 s
  // runs out): only 0..4 are committed, and the partition, given back, is read again from
  // offset 5 (not from 0, not from 10). The first copies of 5..9 settling later counts for
  // nothing: the offset moves past 5 only once the second copies settle.
  RevokedAndGivenBack group(100ms);
  ASSERT_TRUE(group.a->start().ok());
  ASSERT_TRUE(eventually([&] { return group.holding->held() == 5; }, 30s));
  ASSERT_TRUE(eventually([&] { return group_offset(group.cluster, "workers", 0) == 5; }, 10s));
  group.join_second_member();
  ASSERT_TRUE(eventually([&] { return group.a_assigned.count.load() == 2; }, 30s));
  ASSERT_TRUE(eventually([&] { return group.holding->held() == 10; }, 30s));
  EXPECT_EQ(group_offset(group.cluster, "workers", 0), 5);
  EXPECT_EQ(offsets_of(group.holding->handled()),
            (std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 5, 6, 7, 8, 9}));
  EXPECT_EQ(group.a->stats().consumed, 15u);

  group.holding->ack_held(5);       // the copies read before the revoke
  std::this_thread::sleep_for(1s);  // ten commit intervals
  EXPECT_EQ(group_offset(group.cluster, "workers", 0), 5)
      << "settlements of the old assignment moved the new one's offset";
  group.holding->ack_held(5);
  EXPECT_TRUE(offset_reached(group, 10, 10s));
}

TEST(KafkaSource, StopReturnsByItsTimeoutWhenTheBrokersAreDown) {
  // Leaving the group needs the coordinator: with every broker down right after events
  // were handled (their commit still in flight), librdkafka's close waits far longer than
  // any timeout given to stop(): until its commits time out (the session timeout, 10 s,
  // or the request timeout, socket.timeout.ms, here 5 s). The close goes on on the source's
  // own thread; the destructor waits for it at most session.timeout.ms + socket.timeout.ms
  // + 1 s from stop(), then abandons the consumer.
  MockCluster cluster(1);
  cluster.create_topic("orders", 2);
  (void)produce(cluster, 0, 20);
  Worker worker;
  KafkaSourceOptions options = source_options(cluster, "workers");
  options.properties["session.timeout.ms"] = "10000";
  options.properties["socket.timeout.ms"] = "5000";
  auto source = std::make_unique<KafkaSource>(*worker.emitter, std::move(options));
  ASSERT_TRUE(source->start().ok());
  ASSERT_TRUE(worker.handled->wait_for([](auto events) { return events.size() >= 20; }, 30s));
  rd_kafka_mock_broker_set_down(cluster.get(), 1);

  const auto began = std::chrono::steady_clock::now();
  const emissions::Status stopped = source->stop(1s);
  const auto took = std::chrono::steady_clock::now() - began;
  EXPECT_EQ(stopped.code(), emissions::Errc::timeout) << stopped.message();
  EXPECT_THAT(stopped.message(), HasSubstr("did not leave its group"));
  EXPECT_LT(took, 4s) << "stop(1 s) took "
                      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                      << " ms";
  EXPECT_TRUE(source->stop(1s).ok()) << "a second stop() has nothing left to do";
  // The broker stays down: the destructor returns by its bound (16 s after stop() here,
  // + 2 s for a librdkafka call under way and a loaded machine).
  source.reset();
  const auto destroyed = std::chrono::steady_clock::now() - began;
  EXPECT_LT(destroyed, 18s)
      << "the destructor returned "
      << std::chrono::duration_cast<std::chrono::milliseconds>(destroyed).count()
      << " ms after stop()";
}

TEST(KafkaSource, NoTelemetryHandlerRunsOnceStopReturned) {
  // stop(0) leaves the close (the revoke callback, its commit, leaving the group) to the
  // source's own thread: that thread must not report anything to the user any more.
  MockCluster cluster(1);
  cluster.create_topic("orders", 2);
  (void)produce(cluster, 0, 20);
  Worker worker;
  std::atomic<bool> returned{false};
  std::atomic<int> late{0};
  std::mutex names_mutex;
  std::vector<std::string> late_names;
  for (const char* what : {"revoked", "assigned", "error"}) {
    ASSERT_TRUE(
        emissions::telemetry::attach(std::string("quiet-") + what, {"emissions", "source", what},
                                     [&, what](const auto&, const auto&, const nlohmann::json&) {
                                       if (!returned.load()) return;
                                       late.fetch_add(1);
                                       std::lock_guard lock(names_mutex);
                                       late_names.emplace_back(what);
                                     })
            .ok());
  }
  auto source = std::make_unique<KafkaSource>(*worker.emitter, source_options(cluster, "workers"));
  ASSERT_TRUE(source->start().ok());
  ASSERT_TRUE(worker.handled->wait_for([](auto events) { return events.size() >= 20; }, 30s));
  const emissions::Status stopped = source->stop(0ms);
  returned.store(true);
  EXPECT_EQ(stopped.code(), emissions::Errc::timeout) << stopped.message();
  source.reset();  // the close ends on the source's thread (the broker is up)
  for (const char* what : {"revoked", "assigned", "error"}) {
    (void)emissions::telemetry::detach(std::string("quiet-") + what);
  }
  std::lock_guard lock(names_mutex);
  EXPECT_EQ(late.load(), 0) << "first late report: " << (late_names.empty() ? "" : late_names[0]);
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
