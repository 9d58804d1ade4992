// The producer side of the pipeline: routing, reservations, overflow policies, re-entry.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "emissions/emissions.hpp"
#include "recording_adapter.hpp"

namespace {

using namespace std::chrono_literals;
using emissions::AdapterOptions;
using emissions::Config;
using emissions::Emitter;
using emissions::Errc;
using emissions::Event;
using emissions::Overflow;
using emissions::Status;
using emissions::Transaction;
using emissions::test_support::RecordingAdapter;

Config config_with(std::initializer_list<std::shared_ptr<emissions::Adapter>> adapters) {
  Config config;
  config.make_default = false;
  for (const auto& a : adapters)
    config.add_adapter(a);
  return config;
}

Status commit_one(Emitter& emitter, const std::string& name, nlohmann::json payload = nullptr) {
  Transaction tx = emitter.start();
  if (Status s = tx.emit(name, std::move(payload)); !s.ok()) return s;
  return tx.commit();
}

// Every adapter accounted for every committed event.
void expect_exact(const emissions::EmitterStats& stats) {
  for (const auto& a : stats.adapters) {
    EXPECT_EQ(a.delivered + a.failed + a.filtered + a.dropped, stats.committed) << a.name;
    EXPECT_EQ(a.queued, 0u) << a.name;
  }
}

TEST(PublishTest, ADroppedEventHandlerThatCommitsAgainDoesNotCorruptThePipeline) {
  // Defect 1: publish kept its accepting queues in one thread_local vector and reported
  // drops while its reservations were held; a handler that committed from there misrouted
  // batches and wedged every later commit with overloaded.
  auto stalled = std::make_shared<RecordingAdapter>("stalled");
  auto audit = std::make_shared<RecordingAdapter>("audit");
  Config config = config_with({});
  config.add_adapter(stalled, {.buffer_size = 1, .overflow = Overflow::drop_newest});
  config.add_adapter(audit, {.block_timeout = 1s});
  Emitter emitter(std::move(config));
  Emitter audit_log(config_with({std::make_shared<RecordingAdapter>("audit_log")}));

  std::atomic<int> reentries{0};
  ASSERT_TRUE(
      emissions::telemetry::attach(
          "audit-drops", {"emissions", "event", "dropped"},
          [&](const std::vector<std::string>&, const nlohmann::json&, const nlohmann::json&) {
            // Commit to this very emitter and to another one, from the report.
            if (reentries.fetch_add(1) < 50) {
              EXPECT_TRUE(commit_one(emitter, "drop_audited").ok());
              EXPECT_TRUE(commit_one(audit_log, "drop_audited").ok());
            }
          })
          .ok());
  stalled->block();
  ASSERT_TRUE(commit_one(emitter, "first").ok());
  ASSERT_TRUE(stalled->wait_until_blocked_in_call());
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(commit_one(emitter, "e", i).ok()) << i;
  (void)emissions::telemetry::detach("audit-drops");
  stalled->unblock();
  ASSERT_TRUE(emitter.drain(10s).ok());
  ASSERT_TRUE(audit_log.drain(10s).ok());
  EXPECT_GT(reentries.load(), 0);
  const auto stats = emitter.stats();
  expect_exact(stats);
  EXPECT_EQ(stats.adapters[1].delivered, stats.committed);  // audit saw every event
  EXPECT_TRUE(commit_one(emitter, "after").ok());
}

TEST(PublishTest, AStalledAdapterThatWantsNoneOfTheEventsNeverBlocksACommit) {
  // Defect 11: reservation ignored interested(), so a stalled adapter blocked (and failed)
  // every commit under the default block policy, even for events it filters out.
  auto only_x = std::make_shared<RecordingAdapter>("only_x");
  only_x->set_filter([](const Event& e) { return e.name == emissions::EventName("x"); });
  auto all = std::make_shared<RecordingAdapter>("all");
  Config config = config_with({});
  config.add_adapter(only_x, {.buffer_size = 1, .block_timeout = 100ms});
  config.add_adapter(all);
  Emitter emitter(std::move(config));
  only_x->block();
  ASSERT_TRUE(commit_one(emitter, "x").ok());
  ASSERT_TRUE(only_x->wait_until_blocked_in_call());
  ASSERT_TRUE(commit_one(emitter, "x").ok());  // fills its queue
  for (int i = 0; i < 10; ++i)
    EXPECT_TRUE(commit_one(emitter, "y", i).ok()) << i;
  EXPECT_EQ(commit_one(emitter, "x").code(), Errc::overloaded);  // it does block what it wants
  only_x->unblock();
  ASSERT_TRUE(emitter.drain(10s).ok());
  const auto stats = emitter.stats();
  expect_exact(stats);
  EXPECT_EQ(stats.adapters[0].filtered, 10u);
  EXPECT_EQ(stats.adapters[0].delivered, 2u);
  EXPECT_EQ(all->received(), 12u);
}

TEST(PublishTest, APartitionedPoolQueuesEachEventOnce) {
  // Defect 9: each partition's queue reserved the whole batch, so 10 waiting events showed
  // as 40 queued with 4 partitions.
  auto pool = std::make_shared<RecordingAdapter>("pool");
  Config config = config_with({});
  config.add_adapter(pool, {.concurrency = 4, .partition_by = [](const Event& e) {
                              return e.payload.get<std::uint64_t>();
                            }});
  Emitter emitter(std::move(config));
  pool->block();
  {
    Transaction tx = emitter.start();
    for (int key = 0; key < 4; ++key)
      ASSERT_TRUE(tx.emit("wedge", key).ok());
    ASSERT_TRUE(tx.commit().ok());
  }
  // Every consumer is inside a call now; the next commit waits in the queues.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (emitter.stats().adapters[0].queued != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  {
    Transaction tx = emitter.start();
    for (int key = 0; key < 10; ++key)
      ASSERT_TRUE(tx.emit("waiting", key).ok());
    ASSERT_TRUE(tx.commit().ok());
  }
  EXPECT_EQ(emitter.stats().adapters[0].queued, 10u);
  pool->unblock();
  ASSERT_TRUE(emitter.drain(10s).ok());
  expect_exact(emitter.stats());
  EXPECT_EQ(pool->received(), 14u);
}

TEST(PublishTest, EachAdapterGetsExactlyTheEventsItWantsWhenItsInterestChangesWithinACommit) {
  // Routing writes no per-event entries for a lane that takes a whole commit; it switches
  // to them at the first event a lane does not want. Lanes that want everything, want
  // all but the first event, want a prefix, want every other event, want nothing, or are
  // partitioned, side by side, over commits of 1 to 12 events.
  auto all = std::make_shared<RecordingAdapter>("all");
  auto not_first = std::make_shared<RecordingAdapter>("not_first");
  auto prefix = std::make_shared<RecordingAdapter>("prefix");
  auto even = std::make_shared<RecordingAdapter>("even");
  auto none = std::make_shared<RecordingAdapter>("none");
  auto pool = std::make_shared<RecordingAdapter>("pool");
  auto index_of = [](const Event& e) { return e.payload.at("i").get<int>(); };
  not_first->set_filter([=](const Event& e) { return index_of(e) != 0; });
  prefix->set_filter([=](const Event& e) { return index_of(e) < 3; });
  even->set_filter([=](const Event& e) { return index_of(e) % 2 == 0; });
  none->set_filter([](const Event&) { return false; });
  Config config = config_with({all, not_first, prefix, even, none});
  config.add_adapter(pool, {.concurrency = 3, .partition_by = [](const Event& e) {
                              return e.payload.at("n").get<std::uint64_t>();
                            }});
  Emitter emitter(std::move(config));

  std::vector<int> want_all, want_not_first, want_prefix, want_even;
  int serial = 0;
  for (int size = 1; size <= 12; ++size) {
    Transaction tx = emitter.start();
    for (int i = 0; i < size; ++i, ++serial) {
      ASSERT_TRUE(tx.emit("routed", {{"i", i}, {"n", serial}}).ok());
      want_all.push_back(serial);
      if (i != 0) want_not_first.push_back(serial);
      if (i < 3) want_prefix.push_back(serial);
      if (i % 2 == 0) want_even.push_back(serial);
    }
    ASSERT_TRUE(tx.commit().ok());
  }
  ASSERT_TRUE(emitter.drain(10s).ok());

  auto serials = [](const RecordingAdapter& adapter) {
    std::vector<int> out;
    for (const auto& payload : adapter.payloads())
      out.push_back(payload.at("n").get<int>());
    return out;
  };
  EXPECT_EQ(serials(*all), want_all);
  EXPECT_EQ(serials(*not_first), want_not_first);
  EXPECT_EQ(serials(*prefix), want_prefix);
  EXPECT_EQ(serials(*even), want_even);
  EXPECT_TRUE(serials(*none).empty());
  std::vector<int> pooled = serials(*pool);
  std::sort(pooled.begin(), pooled.end());
  EXPECT_EQ(pooled, want_all);

  const auto stats = emitter.stats();
  const auto committed = static_cast<std::uint64_t>(serial);
  ASSERT_EQ(stats.committed, committed);
  expect_exact(stats);
  EXPECT_EQ(stats.adapters[1].filtered, committed - want_not_first.size());
  EXPECT_EQ(stats.adapters[2].filtered, committed - want_prefix.size());
  EXPECT_EQ(stats.adapters[3].filtered, committed - want_even.size());
  EXPECT_EQ(stats.adapters[4].filtered, committed);
  EXPECT_EQ(stats.adapters[5].delivered, committed);
}

TEST(PublishTest, RecycledBatchesRouteEachCommitAfreshAndQueueExactlyWhatEachLaneTakes) {
  // Lanes whose wishes change from one commit to the next, with a drain between commits so
  // every batch comes back from the pool holding the previous commit's routing: a lane
  // that took a whole commit must not inherit the previous table, nor a filtering lane the
  // previous whole bit. While the adapters are blocked, `queued` shows exactly how many
  // events routing gave each queue (the count consumers give back).
  auto whole = std::make_shared<RecordingAdapter>("whole");
  auto alternating = std::make_shared<RecordingAdapter>("alternating");
  auto suffix = std::make_shared<RecordingAdapter>("suffix");
  auto commit_of = [](const Event& e) { return e.payload.at("c").get<int>(); };
  auto index_of = [](const Event& e) { return e.payload.at("i").get<int>(); };
  alternating->set_filter([=](const Event& e) { return commit_of(e) % 2 == 0; });
  suffix->set_filter([=](const Event& e) { return index_of(e) >= commit_of(e) % 5; });
  Emitter emitter(config_with({whole, alternating, suffix}));

  auto commit = [&](int c, int size) {
    Transaction tx = emitter.start();
    for (int i = 0; i < size; ++i)
      ASSERT_TRUE(tx.emit("routed", {{"c", c}, {"i", i}}).ok());
    ASSERT_TRUE(tx.commit().ok());
  };
  std::uint64_t want_alternating = 0;
  std::uint64_t want_suffix = 0;
  std::uint64_t committed = 0;
  for (int c = 0; c < 20; ++c) {
    commit(c, 8);
    committed += 8;
    want_alternating += c % 2 == 0 ? 8U : 0U;
    want_suffix += static_cast<std::uint64_t>(8 - c % 5);
    ASSERT_TRUE(emitter.drain(10s).ok());
    ASSERT_EQ(whole->received(), committed) << "commit " << c;
    ASSERT_EQ(alternating->received(), want_alternating) << "commit " << c;
    ASSERT_EQ(suffix->received(), want_suffix) << "commit " << c;
  }

  // Wedge each consumer inside a call, then look at what waits in the queues.
  whole->block();
  alternating->block();
  suffix->block();
  commit(0, 1);  // every lane wants it (c = 0, i = 0)
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  auto queued = [&](std::size_t lane) { return emitter.stats().adapters[lane].queued; };
  while ((queued(0) + queued(1) + queued(2)) != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  commit(3, 8);  // alternating wants none; suffix wants i >= 3: 5 events
  commit(4, 8);  // alternating wants all 8; suffix wants i >= 4: 4 events
  EXPECT_EQ(queued(0), 16u);
  EXPECT_EQ(queued(1), 8u);
  EXPECT_EQ(queued(2), 9u);
  whole->unblock();
  alternating->unblock();
  suffix->unblock();
  ASSERT_TRUE(emitter.drain(10s).ok());
  expect_exact(emitter.stats());
  EXPECT_EQ(whole->received(), committed + 17);
  EXPECT_EQ(alternating->received(), want_alternating + 1 + 8);
  EXPECT_EQ(suffix->received(), want_suffix + 1 + 5 + 4);
}

TEST(PublishTest, CommitsOfShrinkingSizeThroughRecycledBatchesDeliverExactlyTheirOwnEvents) {
  // A transaction's batch comes from the pool with the previous commit's events still in
  // its slots (BatchPool::acquire_stale()): each emit hands one back to be destroyed, the
  // commit drops the rest. Commits of 8, 7, ..., 1 object payloads, then a publish into a
  // transaction: each delivers its own events, never an old one.
  auto recording = std::make_shared<RecordingAdapter>("recording");
  Emitter emitter(config_with({recording}));
  std::vector<nlohmann::json> want;
  for (int c = 0; c < 8; ++c) {
    Transaction tx = emitter.start();
    for (int i = 0; i < 8 - c; ++i) {
      nlohmann::json payload = {{"c", c}, {"i", i}, {"pad", std::string(64, 'p')}};
      want.push_back(payload);
      ASSERT_TRUE(tx.emit("sized", std::move(payload), {{"m", c}}).ok());
    }
    ASSERT_TRUE(tx.commit().ok());
    ASSERT_TRUE(emitter.drain(10s).ok());
  }
  std::vector<Event> events(2);
  for (int p = 0; p < 2; ++p) {
    Event& e = events[static_cast<std::size_t>(p)];
    e.name = emissions::EventName("published");
    e.payload = {{"p", p}};
    e.metadata = nlohmann::json::object();
    e.emitted_at = std::chrono::system_clock::now();
    e.id = emissions::EventId::generate();
  }
  want.push_back(events[0].payload);
  want.push_back(events[1].payload);
  const Status published = emitter.publish(std::move(events));
  ASSERT_TRUE(published.ok()) << published.message();
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(recording->payloads(), want);
  expect_exact(emitter.stats());
}

TEST(PublishTest, DropOldestUnderContentionCountsEveryEventExactly) {
  // Defect 13: the drop_oldest loop could spin without bound; counters must stay exact.
  auto slow = std::make_shared<RecordingAdapter>("slow");
  Config config = config_with({});
  config.add_adapter(slow, {.buffer_size = 4, .overflow = Overflow::drop_oldest});
  Emitter emitter(std::move(config));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&emitter, t] {
      for (int i = 0; i < 2'000; ++i) {
        Transaction tx = emitter.start();
        EXPECT_TRUE(tx.emit("e", t).ok());
        EXPECT_TRUE(tx.emit("e", t).ok());
        EXPECT_TRUE(tx.commit().ok());
      }
    });
  }
  for (auto& thread : threads)
    thread.join();
  ASSERT_TRUE(emitter.drain(30s).ok());
  const auto stats = emitter.stats();
  EXPECT_EQ(stats.committed, 16'000u);
  expect_exact(stats);
  EXPECT_EQ(slow->received(), stats.adapters[0].delivered);
}

TEST(PublishTest, AHugeBufferSizeIsAConfigErrorNotASilentLoss) {
  // Defect 14: above 2^63 the ring got one slot and commits overwrote each other; 2^40
  // threw bad_alloc. Both are now a ConfigError naming the field and the bound.
  for (const std::size_t size :
       {std::size_t{1} << 40, (std::size_t{1} << 63) + 1, emissions::kMaxBufferSize + 1}) {
    Config config = config_with({});
    config.add_adapter(std::make_shared<RecordingAdapter>("a"), {.buffer_size = size});
    try {
      Emitter emitter(std::move(config));
      ADD_FAILURE() << "no ConfigError for buffer_size " << size;
    } catch (const emissions::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("adapters[0] ('a').buffer_size must be in [1, " +
                                           std::to_string(emissions::kMaxBufferSize) + "]"),
                std::string::npos)
          << e.what();
    }
  }
  Config config = config_with({std::make_shared<RecordingAdapter>("a")});
  config.pipeline.max_demand = emissions::kMaxBufferSize + 1;
  EXPECT_THROW(Emitter{std::move(config)}, emissions::ConfigError);
  Config timeouts = config_with({std::make_shared<RecordingAdapter>("a")});
  timeouts.shutdown_timeout = std::chrono::milliseconds::max();
  EXPECT_THROW(Emitter{std::move(timeouts)}, emissions::ConfigError);
  Config cascade = config_with({std::make_shared<RecordingAdapter>("a")});
  cascade.max_cascade_depth = emissions::kMaxCascadeDepth + 1;
  EXPECT_THROW(Emitter{std::move(cascade)}, emissions::ConfigError);
}

TEST(PublishTest, ALargeBufferSizeWorks) {
  Config config = config_with({});
  auto a = std::make_shared<RecordingAdapter>("a");
  config.add_adapter(a, {.buffer_size = emissions::kMaxBufferSize / 16});
  Emitter emitter(std::move(config));
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(commit_one(emitter, "e", i).ok());
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(a->received(), 5u);
  expect_exact(emitter.stats());
}

TEST(PublishTest, MaxInFlightOnASynchronousAdapterIsAConfigError) {
  Config config = config_with({});
  config.add_adapter(std::make_shared<RecordingAdapter>("sync"), {.max_in_flight = 4});
  try {
    Emitter emitter(std::move(config));
    ADD_FAILURE() << "no ConfigError";
  } catch (const emissions::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("adapters[0] ('sync').max_in_flight"), std::string::npos)
        << e.what();
  }
}

// ---- adversarial review: user code that re-enters the transaction being committed ----

// interested() runs on the committing thread while the transaction's own buffer is being
// routed. These adapters use the thread's ambient transaction from inside interested().
class ReentersWhileRouting final : public emissions::Adapter {
 public:
  enum class Action { emit, commit };
  explicit ReentersWhileRouting(Action action) : action_(action) {}
  std::string_view name() const override { return "reenters"; }
  bool interested(const Event& event) const override {
    if (event.name == emissions::EventName("first") && !done_.exchange(true)) {
      result_ = action_ == Action::emit ? emissions::emit("sneaky") : emissions::commit();
    }
    return true;
  }
  Status handle_events(std::span<const Event> batch) override {
    std::lock_guard lock(mutex_);
    for (const Event& e : batch)
      names_.push_back(e.name.str());
    return {};
  }
  std::vector<std::string> names() const {
    std::lock_guard lock(mutex_);
    return names_;
  }
  Status result() const { return result_; }

 private:
  const Action action_;
  mutable std::atomic<bool> done_{false};
  mutable Status result_;
  mutable std::mutex mutex_;
  std::vector<std::string> names_;
};

TEST(PublishTest, AnInterestedThatEmitsIntoTheTransactionBeingCommittedLosesNothing) {
  // The emit lands in the batch being routed, after routing sized its tables: the event was
  // neither counted committed nor routed (the consumer read its route past the end of the
  // routing table), and the emit still returned ok.
  auto adapter = std::make_shared<ReentersWhileRouting>(ReentersWhileRouting::Action::emit);
  Config config;
  config.make_default = true;
  config.add_adapter(adapter);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(emissions::start().ok());
  ASSERT_TRUE(emissions::emit("first").ok());
  const Status committed = emissions::commit();
  emissions::terminate();
  ASSERT_TRUE(committed.ok()) << committed.to_string();
  ASSERT_TRUE(emitter.drain(5s).ok());
  const auto stats = emitter.stats();
  expect_exact(stats);
  const auto names = adapter->names();
  EXPECT_EQ(names.size(), stats.committed);
  const auto sneaky = std::count(names.begin(), names.end(), "sneaky");
  if (adapter->result().ok()) {
    EXPECT_EQ(sneaky, 1) << "emit() returned ok, so the event must be delivered exactly once";
  } else {
    EXPECT_EQ(sneaky, 0);
  }
}

TEST(PublishTest, AnInterestedThatCommitsTheTransactionBeingCommittedIsRefused) {
  // The nested commit published the very batch the outer commit was still routing; the outer
  // one then reserved and pushed a batch it no longer owned (use after free, double delivery).
  auto adapter = std::make_shared<ReentersWhileRouting>(ReentersWhileRouting::Action::commit);
  Config config;
  config.make_default = true;
  config.add_adapter(adapter);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(emissions::start().ok());
  ASSERT_TRUE(emissions::emit("first").ok());
  const Status committed = emissions::commit();
  emissions::terminate();
  EXPECT_TRUE(committed.ok()) << committed.to_string();
  EXPECT_FALSE(adapter->result().ok());
  ASSERT_TRUE(emitter.drain(5s).ok());
  const auto stats = emitter.stats();
  expect_exact(stats);
  EXPECT_EQ(stats.committed, 1u);
  EXPECT_EQ(adapter->names(), std::vector<std::string>{"first"});
}

}  // namespace
