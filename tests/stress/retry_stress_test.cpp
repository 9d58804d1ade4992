// At-least-once delivery under concurrency (issue 8's stress test): 8 committing threads,
// an AsyncAdapter that acknowledges from a thread of its own (delivery-report style), 5%
// random transient failures, one permanently failing event, exact counters, exactly-once
// delivery per adapter and head-of-line order per consumer.
//
// The set-up:
// - "sync": a plain synchronous adapter (max_demand 5, so commits are cut into several runs);
//   5% of the batches it is handed for the first time fail with `unavailable`.
// - "async": an AsyncAdapter whose deliver() queues the Delivery for its own thread, which
//   settles event by event: 5% fail with `unavailable` (decided by a seeded RNG; never on
//   the last attempt, so none of them fails for good), the poison event fails with
//   `invalid_argument` (not retriable: failed at once), every other event is acknowledged.
//   max_in_flight 1, so the order rule below is the strict one.
// - "partitioned": the same adapter class with concurrency 4, partition_by the payload's
//   random key "k" (commits spread over partitions, several runs per partition), max_in_flight
//   1; the poison event fails with `unavailable` on every attempt, so it fails for good after
//   RetryPolicy::max_attempts deliveries.
// - "dead": the dead-letter adapter of all three (a synchronous recorder).
// Retry delays run on a ManualClock that a driver thread pushes past max_backoff every
// millisecond, so backoffs pass without sleeping through them.
//
// Order (AdapterOptions::retry): per consumer, a retried event is delivered again before any
// event committed after it that this consumer has not yet been handed. With max_in_flight 1
// (and a synchronous adapter) nothing else is in flight, so for every consumer (each
// partition) and every committing thread, the commit numbers of the events handed, retries
// included, never decrease; fresh events are handed in commit and emit order.
//
// Size: EMISSIONS_STRESS_SCALE (a positive integer, default 1) multiplies the events per
// thread (1'500 at scale 1: ~12k events, a few seconds on 2 loaded cores);
// EMISSIONS_STRESS_SEED (default 20'240'608) seeds the RNGs. The seed is printed.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "emissions/clock.hpp"
#include "emissions/emissions.hpp"

#include "clock_driver.hpp"

namespace emissions {
namespace {

using namespace std::chrono_literals;

constexpr int kThreads = 8;
constexpr int kEventsPerThreadAtScale1 = 1'500;
constexpr int kMaxCommitSize = 12;
constexpr int kSampleEvery = 8;  // commits with an on_settled callback: every 8th per thread
constexpr std::uint32_t kMaxAttempts = 4;
constexpr double kTransientRate = 0.05;
constexpr int kPoisonThread = 5;
constexpr std::size_t kPartitions = 4;
// How many other commits may be handed fresh between two attempts of an event, per consumer.
// The documented head-of-line rule (AdapterOptions::retry) allows none with max_in_flight 1:
// a consumer serves waiting retries before every run it hands over, also after waiting for
// room in its window (RetryTest.ARetryIsNotOvertakenByABatchTakenWhileTheWindowWasFull).
constexpr std::size_t kAsyncOvertaking = 0;

std::uint64_t env_number(const char* name, std::uint64_t fallback) {
  const char* text = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): read before threads
  if (text == nullptr || *text == '\0') return fallback;
  const auto value = std::strtoull(text, nullptr, 10);
  return value == 0 ? fallback : value;
}

// Where an event comes from: its committing thread, that thread's commit number and the
// event's sequence number in that thread (both in emit order).
struct Origin {
  int thread = 0;
  int commit = 0;
  int seq = 0;
  friend auto operator<=>(const Origin&, const Origin&) = default;
};

Origin origin_of(const Event& e) {
  return {e.payload.at("t").get<int>(), e.payload.at("c").get<int>(), e.payload.at("s").get<int>()};
}

// One event handed to an adapter (one attempt of it).
struct Handing {
  Origin origin;
  std::uint32_t attempt = 0;
};

// What the adapters and the test agree on: which event is the poison.
struct Poison {
  int thread = kPoisonThread;
  int seq = 0;
  bool is(const Event& e) const {
    return e.payload.at("t").get<int>() == thread && e.payload.at("s").get<int>() == seq;
  }
};

using emissions::test_support::ClockDriver;

// Delivery-report style: deliver() records what it was handed and queues the Delivery; the
// adapter's own thread settles each event (ack, transient failure, or the poison's error).
class ReportingAdapter final : public AsyncAdapter {
 public:
  ReportingAdapter(std::string name, std::size_t partitions, Poison poison, Errc poison_code,
                   std::uint64_t seed)
      : name_(std::move(name)),
        partitions_(partitions),
        poison_(poison),
        poison_code_(poison_code),
        rng_(seed),
        handings_(partitions),
        thread_([this] { run(); }) {}
  ~ReportingAdapter() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();  // what is still queued is abandoned with the deque (none once drained)
  }
  ReportingAdapter(const ReportingAdapter&) = delete;
  ReportingAdapter& operator=(const ReportingAdapter&) = delete;

  std::string_view name() const override { return name_; }

  void deliver(Delivery delivery) override {
    std::lock_guard lock(mutex_);
    for (const Event& e : delivery.events())
      handings_[partition_of(e)].push_back({origin_of(e), delivery.attempt()});
    queue_.push_back(std::move(delivery));
    wake_.notify_one();
  }

  std::size_t partition_of(const Event& e) const {
    return partitions_ == 1 ? 0 : e.payload.at("k").get<std::size_t>() % partitions_;
  }

  // Read once drained (every event recorded before it is settled).
  std::vector<std::vector<Handing>> handings() const {
    std::lock_guard lock(mutex_);
    return handings_;
  }
  std::vector<std::pair<EventId, Origin>> acked() const {
    std::lock_guard lock(mutex_);
    return acked_;
  }
  std::uint64_t transient_failures() const {
    std::lock_guard lock(mutex_);
    return transient_;
  }
  std::uint64_t poison_failures() const {
    std::lock_guard lock(mutex_);
    return poison_failures_;
  }

 private:
  enum class Outcome : std::uint8_t { ack, transient, poison };

  void run() {
    for (;;) {
      Delivery delivery;
      {
        std::unique_lock lock(mutex_);
        while (queue_.empty() && !stopping_)
          wake_.wait_for(lock, 100ms);
        if (stopping_) return;
        delivery = std::move(queue_.front());
        queue_.pop_front();
      }
      settle(delivery);
    }
  }

  void settle(Delivery& delivery) {
    const auto events = delivery.events();
    const std::uint32_t attempt = delivery.attempt();
    std::vector<Outcome> outcomes(events.size(), Outcome::ack);
    std::bernoulli_distribution transient(kTransientRate);
    for (std::size_t i = 0; i < events.size(); ++i) {
      if (poison_.is(events[i])) {
        outcomes[i] = Outcome::poison;
      } else if (attempt < kMaxAttempts && transient(rng_)) {  // never fails for good
        outcomes[i] = Outcome::transient;
      }
    }
    {
      // Recorded before settling: once a drain has returned, everything is here.
      std::lock_guard lock(mutex_);
      for (std::size_t i = 0; i < events.size(); ++i) {
        switch (outcomes[i]) {
          case Outcome::ack:
            acked_.emplace_back(events[i].id, origin_of(events[i]));
            break;
          case Outcome::transient:
            ++transient_;
            break;
          case Outcome::poison:
            ++poison_failures_;
            break;
        }
      }
    }
    for (std::size_t i = 0; i < events.size(); ++i) {
      switch (outcomes[i]) {
        case Outcome::ack:
          delivery.ack(i);
          break;
        case Outcome::transient:
          delivery.fail(i, Status(Errc::unavailable, "transient"));
          break;
        case Outcome::poison:
          delivery.fail(i, Status(poison_code_, "poison"));
          break;
      }
    }
  }

  const std::string name_;
  const std::size_t partitions_;
  const Poison poison_;
  const Errc poison_code_;
  std::mt19937_64 rng_;  // the adapter thread's only
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Delivery> queue_;
  bool stopping_ = false;
  std::vector<std::vector<Handing>> handings_;  // per partition, in the order handed
  std::vector<std::pair<EventId, Origin>> acked_;
  std::uint64_t transient_ = 0;
  std::uint64_t poison_failures_ = 0;
  std::thread thread_;  // last: starts once everything above is constructed
};

// A synchronous adapter: 5% of the batches it sees for the first time fail with unavailable
// (a retry batch holds exactly a failed run's events, so it is never failed again).
class FlakySyncAdapter final : public Adapter {
 public:
  FlakySyncAdapter(std::string name, std::uint64_t seed) : name_(std::move(name)), rng_(seed) {}
  std::string_view name() const override { return name_; }

  Status handle_events(std::span<const Event> batch) override {
    std::lock_guard lock(mutex_);
    bool fresh = true;
    for (const Event& e : batch) {
      const auto [it, inserted] = seen_.insert(e.id);
      (void)it;
      fresh = fresh && inserted;
    }
    for (const Event& e : batch)
      handings_.push_back({origin_of(e), fresh ? 1U : 2U});
    if (fresh && std::bernoulli_distribution(kTransientRate)(rng_)) {
      transient_ += batch.size();
      return Status(Errc::unavailable, "transient");
    }
    for (const Event& e : batch)
      acked_.emplace_back(e.id, origin_of(e));
    return {};
  }

  std::vector<Handing> handings() const {
    std::lock_guard lock(mutex_);
    return handings_;
  }
  std::vector<std::pair<EventId, Origin>> acked() const {
    std::lock_guard lock(mutex_);
    return acked_;
  }
  std::uint64_t transient_failures() const {
    std::lock_guard lock(mutex_);
    return transient_;
  }

 private:
  const std::string name_;
  mutable std::mutex mutex_;
  std::mt19937_64 rng_;
  std::set<EventId> seen_;
  std::vector<Handing> handings_;
  std::vector<std::pair<EventId, Origin>> acked_;
  std::uint64_t transient_ = 0;
};

// The dead-letter adapter: keeps a copy of every event.
class DeadLetters final : public Adapter {
 public:
  std::string_view name() const override { return "dead"; }
  Status handle_events(std::span<const Event> batch) override {
    std::lock_guard lock(mutex_);
    events_.insert(events_.end(), batch.begin(), batch.end());
    return {};
  }
  std::vector<Event> events() const {
    std::lock_guard lock(mutex_);
    return events_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<Event> events_;
};

// One commit with an on_settled callback, and what the callback saw.
struct Sampled {
  Origin first;             // the commit's first event
  std::size_t size = 0;     // its events
  bool has_poison = false;  // whether the poison is one of them
  std::atomic<int> calls{0};
  std::mutex mutex;
  Settlement seen;
};

// The order of one consumer's handings (each partition's, retries included):
// - fresh events of each committing thread come in commit and emit order, each once;
// - attempt k+1 of an event follows attempt k;
// - head-of-line: between attempt k of an event and attempt k+1, the fresh events handed
//   belong to the event's own commit (its other runs) or to at most `overtaking` other
//   commits. The documented rule allows none (with max_in_flight 1 nothing else is in
//   flight); see kAsyncOvertaking.
// Returns the violations (at most 10) and counts the retries that other commits overtook.
struct OrderReport {
  std::vector<std::string> violations;
  std::size_t overtaken = 0;  // retries handed after a fresh event of another commit
};

OrderReport check_order(const std::string& consumer, const std::vector<Handing>& handings,
                        std::size_t overtaking) {
  OrderReport report;
  auto violation = [&](std::size_t i, const std::string& what) {
    if (report.violations.size() >= 10) return;
    const Handing& h = handings[i];
    report.violations.push_back(
        consumer + " #" + std::to_string(i) + " thread " + std::to_string(h.origin.thread) +
        " commit " + std::to_string(h.origin.commit) + " seq " + std::to_string(h.origin.seq) +
        " attempt " + std::to_string(h.attempt) + ": " + what);
  };
  std::vector<int> last_fresh_seq(kThreads, -1);
  std::map<Origin, std::pair<std::uint32_t, std::size_t>> last;  // attempt, where
  for (std::size_t i = 0; i < handings.size(); ++i) {
    const Handing& h = handings[i];
    const auto t = static_cast<std::size_t>(h.origin.thread);
    const auto found = last.find(h.origin);
    if (found == last.end()) {
      if (h.attempt != 1) violation(i, "first handed at a later attempt");
      if (h.origin.seq <= last_fresh_seq[t]) {
        violation(i, "fresh after seq " + std::to_string(last_fresh_seq[t]));
      }
      last_fresh_seq[t] = std::max(last_fresh_seq[t], h.origin.seq);
      last.emplace(h.origin, std::pair{h.attempt, i});
      continue;
    }
    const auto [attempt, at] = found->second;
    if (h.attempt != attempt + 1) {
      violation(i, "follows attempt " + std::to_string(attempt));
    }
    // The other commits handed fresh since the failed attempt.
    std::set<std::pair<int, int>> others;
    for (std::size_t j = at + 1; j < i; ++j) {
      const Origin& o = handings[j].origin;
      if (handings[j].attempt == 1 &&
          (o.thread != h.origin.thread || o.commit != h.origin.commit)) {
        others.emplace(o.thread, o.commit);
      }
    }
    if (!others.empty()) ++report.overtaken;
    if (others.size() > overtaking) {
      violation(i, "overtaken by " + std::to_string(others.size()) + " later commits");
    }
    found->second = {h.attempt, i};
  }
  return report;
}

// Every event but `except` acknowledged exactly once, under the id it was committed with.
void expect_exactly_once(const std::string& adapter,
                         const std::vector<std::pair<EventId, Origin>>& acked,
                         const std::map<Origin, EventId>& ids, const Origin* except) {
  SCOPED_TRACE(adapter);
  std::set<EventId> acked_ids;
  std::size_t duplicates = 0;
  std::size_t unknown = 0;
  for (const auto& [id, origin] : acked) {
    if (!acked_ids.insert(id).second) ++duplicates;
    const auto it = ids.find(origin);
    if (it == ids.end() || it->second != id) ++unknown;
  }
  EXPECT_EQ(duplicates, 0u);
  EXPECT_EQ(unknown, 0u);
  std::set<EventId> expected;
  for (const auto& [origin, id] : ids) {
    if (except == nullptr || origin != *except) expected.insert(id);
  }
  EXPECT_EQ(acked_ids.size(), expected.size());
  EXPECT_TRUE(acked_ids == expected);
}

TEST(RetryStressTest, EightThreadsTransientFailuresAPoisonEventExactCountsAndOrder) {
  const std::uint64_t scale = env_number("EMISSIONS_STRESS_SCALE", 1);
  const std::uint64_t seed = env_number("EMISSIONS_STRESS_SEED", 20'240'608);
  const int per_thread = static_cast<int>(kEventsPerThreadAtScale1 * scale);
  const Poison poison{.thread = kPoisonThread, .seq = per_thread / 2};
  std::cout << "retry stress: seed " << seed << ", " << kThreads << " x " << per_thread
            << " events\n";

  auto clock = std::make_shared<ManualClock>();
  auto sync = std::make_shared<FlakySyncAdapter>("sync", seed + 1);
  auto async =
      std::make_shared<ReportingAdapter>("async", 1, poison, Errc::invalid_argument, seed + 2);
  auto parted = std::make_shared<ReportingAdapter>("partitioned", kPartitions, poison,
                                                   Errc::unavailable, seed + 3);
  auto dead = std::make_shared<DeadLetters>();

  Config config;
  config.make_default = false;
  config.clock = clock;
  config.pipeline.max_demand = 16;
  config.pipeline.buffer_size = 2'048;  // small enough that head-of-line waits back up commits
  config.pipeline.block_timeout = 60s;
  config.pipeline.retry = RetryPolicy{
      .max_attempts = kMaxAttempts, .initial_backoff = 10ms, .max_backoff = 80ms, .multiplier = 2};
  config.add_adapter(sync, {.max_demand = 5, .dead_letter = dead});
  config.add_adapter(async, {.dead_letter = dead, .max_in_flight = 1});
  config.add_adapter(
      parted,
      {.concurrency = kPartitions,
       .partition_by = [](const Event& e) { return e.payload.at("k").get<std::uint64_t>(); },
       .dead_letter = dead,
       .max_in_flight = 1});

  // Per thread: the commits sampled for on_settled (stable addresses for the callbacks).
  std::vector<std::deque<Sampled>> sampled(kThreads);
  std::atomic<int> commit_errors{0};
  std::atomic<int> emit_errors{0};
  const auto started = std::chrono::steady_clock::now();
  {
    Emitter emitter(std::move(config));
    ClockDriver driver(clock, 100ms);  // > max_backoff: every waiting retry is due each tick
    {
      std::latch go(kThreads);
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
          std::mt19937_64 rng(seed * 31 + static_cast<std::uint64_t>(t));
          std::uniform_int_distribution<int> commit_size(1, kMaxCommitSize);
          std::uniform_int_distribution<std::uint64_t> key(0, 1'023);
          go.arrive_and_wait();
          int seq = 0;
          for (int c = 0; seq < per_thread; ++c) {
            const int size = std::min(commit_size(rng), per_thread - seq);
            Transaction tx = emitter.start();
            bool has_poison = false;
            for (int j = 0; j < size; ++j) {
              has_poison = has_poison || (t == poison.thread && seq + j == poison.seq);
              if (!tx.emit("tick", {{"t", t}, {"c", c}, {"s", seq + j}, {"k", key(rng)}}).ok()) {
                emit_errors.fetch_add(1);
                return;
              }
            }
            Status s;
            if (c % kSampleEvery == 0 || has_poison) {
              Sampled& slot = sampled[static_cast<std::size_t>(t)].emplace_back();
              slot.first = {t, c, seq};
              slot.size = static_cast<std::size_t>(size);
              slot.has_poison = has_poison;
              s = tx.commit([&slot](const Settlement& settlement) {
                std::lock_guard lock(slot.mutex);
                slot.seen = settlement;
                slot.calls.fetch_add(1);
              });
            } else {
              s = tx.commit();
            }
            if (!s.ok()) {
              commit_errors.fetch_add(1);
              ADD_FAILURE() << "commit: " << s.to_string();
              return;
            }
            seq += size;
          }
        });
      }
      for (auto& th : threads)
        th.join();
    }
    ASSERT_EQ(emit_errors.load(), 0);
    ASSERT_EQ(commit_errors.load(), 0);
    const Status drained = emitter.drain(std::chrono::seconds(60 * scale));
    ASSERT_TRUE(drained.ok()) << drained.to_string();

    // ---- counters ----
    const std::uint64_t total = std::uint64_t{kThreads} * static_cast<std::uint64_t>(per_thread);
    const EmitterStats stats = emitter.stats();
    EXPECT_EQ(stats.committed, total);
    ASSERT_EQ(stats.adapters.size(), 4u);
    EXPECT_EQ(stats.adapters[0].name, "sync");
    EXPECT_EQ(stats.adapters[1].name, "async");
    EXPECT_EQ(stats.adapters[2].name, "partitioned");
    EXPECT_EQ(stats.adapters[3].name, "dead");
    for (std::size_t i = 0; i < 3; ++i) {
      const AdapterStats& a = stats.adapters[i];
      SCOPED_TRACE(a.name);
      EXPECT_EQ(a.received, total);
      EXPECT_EQ(a.delivered + a.failed + a.filtered + a.dropped, a.received);
      EXPECT_EQ(a.filtered, 0u);
      EXPECT_EQ(a.dropped, 0u);
      EXPECT_EQ(a.queued, 0u);
      EXPECT_EQ(a.dead_lettered, a.failed);
    }
    const std::uint64_t sync_transient = sync->transient_failures();
    const std::uint64_t async_transient = async->transient_failures();
    const std::uint64_t parted_transient = parted->transient_failures();
    std::cout << "retry stress: transient failures sync " << sync_transient << ", async "
              << async_transient << ", partitioned " << parted_transient << "\n";
    EXPECT_GT(sync_transient, 0u);
    EXPECT_GT(async_transient, 0u);
    EXPECT_GT(parted_transient, 0u);
    EXPECT_EQ(stats.adapters[0].failed, 0u);
    EXPECT_EQ(stats.adapters[0].delivered, total);
    EXPECT_EQ(stats.adapters[0].retried, sync_transient);
    // invalid_argument: failed at once, one delivery.
    EXPECT_EQ(async->poison_failures(), 1u);
    EXPECT_EQ(stats.adapters[1].failed, 1u);
    EXPECT_EQ(stats.adapters[1].delivered, total - 1);
    EXPECT_EQ(stats.adapters[1].retried, async_transient);
    // unavailable on every attempt: failed after kMaxAttempts deliveries.
    EXPECT_EQ(parted->poison_failures(), kMaxAttempts);
    EXPECT_EQ(stats.adapters[2].failed, 1u);
    EXPECT_EQ(stats.adapters[2].delivered, total - 1);
    EXPECT_EQ(stats.adapters[2].retried, parted_transient + (kMaxAttempts - 1));
    const AdapterStats& dl = stats.adapters[3];
    EXPECT_EQ(dl.received, 2u);
    EXPECT_EQ(dl.delivered, 2u);
    EXPECT_EQ(dl.failed + dl.filtered + dl.dropped + dl.queued, 0u);

    // ---- exactly once, by id ----
    std::map<Origin, EventId> ids;  // every committed event, from the adapter that acks all
    for (const auto& [id, origin] : sync->acked())
      ids.emplace(origin, id);
    ASSERT_EQ(ids.size(), total);
    const Origin* poison_origin = nullptr;
    for (const auto& [origin, id] : ids) {
      if (origin.thread == poison.thread && origin.seq == poison.seq) poison_origin = &origin;
    }
    ASSERT_NE(poison_origin, nullptr);
    const EventId poison_id = ids.at(*poison_origin);
    expect_exactly_once("sync", sync->acked(), ids, nullptr);
    expect_exactly_once("async", async->acked(), ids, poison_origin);
    expect_exactly_once("partitioned", parted->acked(), ids, poison_origin);

    // ---- dead letters: the poison, once per adapter that failed it ----
    const std::vector<Event> copies = dead->events();
    ASSERT_EQ(copies.size(), 2u);
    std::map<std::string, std::int64_t> attempts_by_adapter;
    for (const Event& copy : copies) {
      EXPECT_EQ(copy.id, poison_id);
      const auto& why = copy.metadata.at("dead_letter");
      attempts_by_adapter[why.at("adapter").get<std::string>()] = why.at("attempts").get<int>();
      EXPECT_NE(why.at("reason").get<std::string>().find("poison"), std::string::npos);
    }
    EXPECT_EQ(attempts_by_adapter,
              (std::map<std::string, std::int64_t>{{"async", 1}, {"partitioned", kMaxAttempts}}));

    // ---- handings: every event handed fresh once, attempts add up, order per consumer ----
    auto count_handings = [](const std::vector<Handing>& hs, std::uint64_t& fresh,
                             std::uint64_t& again) {
      for (const Handing& h : hs)
        ++(h.attempt == 1 ? fresh : again);
    };
    {
      std::uint64_t fresh = 0;
      std::uint64_t again = 0;
      const auto hs = sync->handings();
      count_handings(hs, fresh, again);
      EXPECT_EQ(fresh, total);
      EXPECT_EQ(again, stats.adapters[0].retried);
      const OrderReport order = check_order("sync", hs, 0);
      EXPECT_TRUE(order.violations.empty()) << ::testing::PrintToString(order.violations);
    }
    for (const auto& [adapter, entry] : {std::pair{async.get(), &stats.adapters[1]},
                                         std::pair{parted.get(), &stats.adapters[2]}}) {
      std::uint64_t fresh = 0;
      std::uint64_t again = 0;
      std::size_t overtaken = 0;
      const auto per_partition = adapter->handings();
      for (std::size_t p = 0; p < per_partition.size(); ++p) {
        count_handings(per_partition[p], fresh, again);
        const OrderReport order =
            check_order(std::string(adapter->name()) + "[" + std::to_string(p) + "]",
                        per_partition[p], kAsyncOvertaking);
        EXPECT_TRUE(order.violations.empty()) << ::testing::PrintToString(order.violations);
        overtaken += order.overtaken;
      }
      std::cout << "retry stress: " << adapter->name() << ": " << overtaken
                << " retries overtaken by a later commit's batch\n";
      EXPECT_EQ(fresh, total) << adapter->name();
      EXPECT_EQ(again, entry->retried) << adapter->name();
    }
  }  // ~ClockDriver, ~Emitter

  // ---- settlements: each sampled commit called back exactly once, with its own counts ----
  // (on_settled may still be running on a settling thread when drain() returns: wait.)
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  auto all_called = [&] {
    for (const auto& per_thread_slots : sampled) {
      for (const Sampled& s : per_thread_slots) {
        if (s.calls.load() == 0) return false;
      }
    }
    return true;
  };
  while (!all_called() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  std::size_t samples = 0;
  std::size_t poison_samples = 0;
  for (auto& per_thread_slots : sampled) {
    for (Sampled& s : per_thread_slots) {
      ++samples;
      SCOPED_TRACE("thread " + std::to_string(s.first.thread) + " commit " +
                   std::to_string(s.first.commit));
      ASSERT_EQ(s.calls.load(), 1);
      std::lock_guard lock(s.mutex);
      ASSERT_EQ(s.seen.adapters.size(), 3u);
      const std::uint64_t bad = s.has_poison ? 1 : 0;
      poison_samples += s.has_poison ? 1U : 0U;
      const char* names[] = {"sync", "async", "partitioned"};
      for (std::size_t i = 0; i < 3; ++i) {
        const AdapterStats& a = s.seen.adapters[i];
        EXPECT_EQ(a.name, names[i]);
        EXPECT_EQ(a.received, s.size);
        const std::uint64_t failed = i == 0 ? 0 : bad;
        EXPECT_EQ(a.failed, failed);
        EXPECT_EQ(a.delivered, s.size - failed);
        EXPECT_EQ(a.filtered + a.dropped, 0u);
      }
    }
  }
  EXPECT_EQ(poison_samples, 1u);
  EXPECT_GT(samples, std::size_t{kThreads});
  std::cout << "retry stress: " << samples << " commits called back, "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - started)
                   .count()
            << " ms\n";
}

// An AsyncAdapter that settles each delivery from its own thread a few hundred nanoseconds
// after deliver() returned (the time the consumer needs to take its next batch), failing a
// first attempt now and then: the failure then completes while the consumer is about to hand
// the next run over. Records what it was handed, in order.
class RacingFailer final : public AsyncAdapter {
 public:
  explicit RacingFailer(std::uint64_t seed) : rng_(seed), thread_([this] { run(); }) {}
  ~RacingFailer() override {
    stopping_flag_.store(true, std::memory_order_release);
    thread_.join();
  }
  RacingFailer(const RacingFailer&) = delete;
  RacingFailer& operator=(const RacingFailer&) = delete;

  std::string_view name() const override { return "racing"; }
  void deliver(Delivery delivery) override {
    std::lock_guard lock(mutex_);
    for (const Event& e : delivery.events())
      handings_.emplace_back(e.payload.at("s").get<int>(), delivery.attempt());
    queue_.push_back(std::move(delivery));
    pending_.fetch_add(1, std::memory_order_release);
  }
  std::vector<std::pair<int, std::uint32_t>> handings() const {
    std::lock_guard lock(mutex_);
    return handings_;
  }
  std::uint64_t failures() const {
    std::lock_guard lock(mutex_);
    return failures_;
  }

 private:
  void run() {
    std::uniform_int_distribution<int> spin(0, 400);
    std::bernoulli_distribution fail(0.2);
    for (;;) {
      // Polls (yielding the core) rather than parks: a wake-up takes longer than the
      // consumer's path to its next hand-over, and the point is to settle during it.
      while (pending_.load(std::memory_order_acquire) == 0) {
        if (stopping_flag_.load(std::memory_order_acquire)) return;
        std::this_thread::yield();
      }
      Delivery delivery;
      {
        std::lock_guard lock(mutex_);
        delivery = std::move(queue_.front());
        queue_.pop_front();
        pending_.fetch_sub(1, std::memory_order_relaxed);
      }
      // A short, varying pause (bounded: at most a few microseconds) moves the completion
      // across the consumer's path from one hand-over to the next.
      const int n = spin(rng_);
      for (int i = 0; i < n; ++i)
        spun_.fetch_add(1, std::memory_order_relaxed);
      if (delivery.attempt() == 1 && fail(rng_)) {
        {
          std::lock_guard lock(mutex_);
          ++failures_;
        }
        delivery.fail(0, Status(Errc::unavailable, "transient"));
      } else {
        delivery.ack(0);
      }
    }
  }

  std::mt19937_64 rng_;  // the adapter thread's only
  mutable std::mutex mutex_;
  std::deque<Delivery> queue_;
  std::atomic<std::size_t> pending_{0};  // queue_'s size, read without the lock
  std::atomic<bool> stopping_flag_{false};
  std::vector<std::pair<int, std::uint32_t>> handings_;  // (seq, attempt), in order handed
  std::uint64_t failures_ = 0;
  std::atomic<std::uint64_t> spun_{0};  // the pause's work, so that it is not optimised away
  std::thread thread_;                  // last: starts once everything above is constructed
};

// Regression (a flake of the test above under load): with max_in_flight 1 a consumer
// checked for waiting failures before it looked for room in its window. A delivery that
// failed between the two checks (its failure enters the retry box just before it leaves the
// window) let the next run go first, so a later commit overtook the retry. Every failed
// event must be handed again before anything else is handed.
// `on_commit`: with AdapterOptions::deliver_on_commit, the commits deliver while the
// consumer is idle and must see the failure as the consumer thread does (window, then box).
void failure_just_before_the_next_run(bool on_commit) {
  const std::uint64_t scale = env_number("EMISSIONS_STRESS_SCALE", 1);
  const std::uint64_t seed = env_number("EMISSIONS_STRESS_SEED", 20'261'201);
  const int events = static_cast<int>(20'000 * scale);
  auto adapter = std::make_shared<RacingFailer>(seed);
  Config config;
  config.make_default = false;
  config.pipeline.max_demand = 1;
  config.pipeline.buffer_size = static_cast<std::size_t>(events);
  config.pipeline.retry =
      RetryPolicy{.max_attempts = 3, .initial_backoff = 1ms, .max_backoff = 1ms, .multiplier = 1};
  config.add_adapter(adapter, {.max_in_flight = 1, .deliver_on_commit = on_commit});
  {
    Emitter emitter(std::move(config));
    for (int s = 0; s < events; ++s) {
      Transaction tx = emitter.start();
      ASSERT_TRUE(tx.emit("tick", {{"s", s}}).ok());
      ASSERT_TRUE(tx.commit().ok());
    }
    const Status drained = emitter.drain(std::chrono::seconds(60 * scale));
    ASSERT_TRUE(drained.ok()) << drained.to_string();
    const AdapterStats stats = emitter.stats().adapters.at(0);
    EXPECT_EQ(stats.delivered, static_cast<std::uint64_t>(events));
    EXPECT_EQ(stats.failed + stats.dropped, 0u);
    EXPECT_EQ(stats.retried, adapter->failures());
  }
  const auto handings = adapter->handings();
  ASSERT_EQ(handings.size(), static_cast<std::size_t>(events) + adapter->failures());
  std::size_t overtaken = 0;
  std::string first;
  int next_fresh = 0;
  for (std::size_t i = 0; i < handings.size(); ++i) {
    const auto [seq, attempt] = handings[i];
    if (attempt == 1) {
      EXPECT_EQ(seq, next_fresh) << "#" << i;
      next_fresh = seq + 1;
      continue;
    }
    // A retry: the handing just before it must be this event's previous attempt.
    if (i == 0 || handings[i - 1] != std::pair{seq, attempt - 1}) {
      if (overtaken++ == 0) {
        first = "#" + std::to_string(i) + " seq " + std::to_string(seq) + " attempt " +
                std::to_string(attempt) + " after seq " +
                std::to_string(i == 0 ? -1 : handings[i - 1].first);
      }
    }
  }
  std::cout << "retry stress" << (on_commit ? " (deliver_on_commit): " : ": ")
            << adapter->failures() << " failures, " << overtaken << " retries overtaken\n";
  EXPECT_GT(adapter->failures(), 0u);
  EXPECT_EQ(overtaken, 0u) << "first: " << first;
}

TEST(RetryStressTest, AFailureCompletingJustBeforeTheNextRunIsRetriedBeforeIt) {
  failure_just_before_the_next_run(false);
}

TEST(RetryStressTest, AFailureCompletingJustBeforeACommitDeliversIsRetriedBeforeIt) {
  failure_just_before_the_next_run(true);
}

}  // namespace
}  // namespace emissions
