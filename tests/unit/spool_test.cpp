// Config::spool end to end (src/pipeline/spool_relay.cpp, src/spool/spool.*): commits go
// through the on-disk log, every adapter gets every event, and an Emitter constructed on the
// same directory delivers what the previous one had not settled.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "emissions/emissions.hpp"
#include "emissions/testing/faulty_adapter.hpp"
#include "recording_adapter.hpp"
#include "temp_dir.hpp"

namespace emissions {
namespace {

using test_support::RecordingAdapter;
using test_support::TempDir;
using testing::FaultyAdapter;

constexpr auto kWait = std::chrono::seconds(30);

Config spooled(const std::filesystem::path& dir) {
  Config config;
  config.make_default = false;
  config.spool = SpoolOptions{.dir = dir, .segment_bytes = 1u << 20};
  return config;
}

// Commits `count` transactions of two events each: "e<k>.a" and "e<k>.b" (payload k).
void commit_pairs(Emitter& emitter, int first, int count) {
  for (int k = first; k < first + count; ++k) {
    Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit("e.a", k).ok());
    ASSERT_TRUE(tx.emit("e.b", k).ok());
    ASSERT_TRUE(tx.commit().ok());
  }
}

std::vector<int> payloads(const std::vector<Event>& events) {
  std::vector<int> out;
  for (const Event& e : events)
    out.push_back(e.payload.get<int>());
  return out;
}

std::vector<int> pairs(int first, int count) {
  std::vector<int> out;
  for (int k = first; k < first + count; ++k) {
    out.push_back(k);
    out.push_back(k);
  }
  return out;
}

// Commits `bursts` bursts of `per_burst` pairs (commit_pairs), draining after each (the
// pauses in which a lane that fell behind catches up); returns the payloads every adapter
// must see, in order.
std::vector<std::int64_t> commit_bursts(Emitter& emitter, int bursts, int per_burst) {
  for (int burst = 0; burst < bursts; ++burst) {
    commit_pairs(emitter, burst * per_burst, per_burst);
    EXPECT_TRUE(emitter.drain(kWait).ok());
  }
  std::vector<std::int64_t> want;
  for (int k : pairs(0, bursts * per_burst))
    want.push_back(k);
  return want;
}

TEST(SpoolTest, EveryAdapterGetsEveryCommittedEventInOrder) {
  TempDir dir;
  auto a = std::make_shared<FaultyAdapter>("a");
  auto b = std::make_shared<FaultyAdapter>("b");
  Config config = spooled(dir.path());
  config.add_adapter(a).add_adapter(b);
  Emitter emitter(std::move(config));
  commit_pairs(emitter, 0, 500);
  ASSERT_TRUE(emitter.drain(kWait).ok());
  EXPECT_EQ(payloads(a->delivered()), pairs(0, 500));
  EXPECT_EQ(payloads(b->delivered()), pairs(0, 500));
  const EmitterStats stats = emitter.stats();
  EXPECT_EQ(stats.committed, 1000u);
  EXPECT_EQ(stats.transactions, 500u);
  for (const AdapterStats& s : stats.adapters) {
    EXPECT_EQ(s.received, 1000u) << s.name;
    EXPECT_EQ(s.delivered, 1000u) << s.name;
  }
  EXPECT_GT(stats.spool_bytes, 0u);
  EXPECT_EQ(stats.spool_corrupt_records, 0u);
}

TEST(SpoolTest, ARestartDeliversWhatAnAdapterHadNotSettledWithTheOriginalEvents) {
  TempDir dir;
  std::vector<Event> committed;
  {
    auto fast = std::make_shared<FaultyAdapter>("fast");
    auto stuck = std::make_shared<FaultyAdapter>("stuck");
    stuck->stall();
    Config config = spooled(dir.path());
    config.shutdown_timeout = std::chrono::milliseconds(200);
    config.add_adapter(fast).add_adapter(stuck);
    Emitter emitter(std::move(config));
    commit_pairs(emitter, 0, 100);
    // `fast` settles everything; `stuck` holds what it got unsettled.
    for (int i = 0; i < 1000 && fast->delivered().size() < 200; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    committed = fast->delivered();
    ASSERT_EQ(committed.size(), 200u);
  }  // shutdown gives up on `stuck`: its events stay in the spool
  auto fast = std::make_shared<FaultyAdapter>("fast");
  auto stuck = std::make_shared<FaultyAdapter>("stuck");
  Config config = spooled(dir.path());
  config.add_adapter(fast).add_adapter(stuck);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(emitter.drain(kWait).ok());
  EXPECT_TRUE(fast->delivered().empty()) << "fast had settled everything";
  const std::vector<Event> recovered = stuck->delivered();
  ASSERT_EQ(recovered.size(), committed.size());
  for (std::size_t i = 0; i < recovered.size(); ++i) {
    EXPECT_EQ(recovered[i].id, committed[i].id);
    EXPECT_EQ(recovered[i].name, committed[i].name);
    EXPECT_EQ(recovered[i].payload, committed[i].payload);
    EXPECT_EQ(recovered[i].metadata, committed[i].metadata);
    EXPECT_EQ(recovered[i].emitted_at, committed[i].emitted_at);
  }
  // Anything newer comes after the recovered backlog.
  commit_pairs(emitter, 100, 5);
  ASSERT_TRUE(emitter.drain(kWait).ok());
  std::vector<int> want = pairs(0, 105);
  EXPECT_EQ(payloads(stuck->delivered()), want);
  EXPECT_EQ(payloads(fast->delivered()), pairs(100, 5));
}

TEST(SpoolTest, ANewAdapterGetsOnlyWhatIsCommittedAfterItJoins) {
  TempDir dir;
  {
    auto a = std::make_shared<FaultyAdapter>("a");
    Config config = spooled(dir.path());
    config.add_adapter(a);
    Emitter emitter(std::move(config));
    commit_pairs(emitter, 0, 10);
    ASSERT_TRUE(emitter.drain(kWait).ok());
  }
  auto a = std::make_shared<FaultyAdapter>("a");
  auto late = std::make_shared<FaultyAdapter>("late");
  Config config = spooled(dir.path());
  config.add_adapter(a).add_adapter(late);
  Emitter emitter(std::move(config));
  commit_pairs(emitter, 10, 3);
  ASSERT_TRUE(emitter.drain(kWait).ok());
  EXPECT_EQ(payloads(late->delivered()), pairs(10, 3));
  EXPECT_EQ(payloads(a->delivered()), pairs(10, 3));
}

TEST(SpoolTest, AnAdapterThatLeftKeepsItsBacklogUnlessForgotten) {
  TempDir dir;
  {
    auto a = std::make_shared<FaultyAdapter>("a");
    auto gone = std::make_shared<FaultyAdapter>("gone");
    gone->stall();
    Config config = spooled(dir.path());
    config.shutdown_timeout = std::chrono::milliseconds(100);
    config.add_adapter(a).add_adapter(gone);
    Emitter emitter(std::move(config));
    commit_pairs(emitter, 0, 20);
  }
  {
    auto a = std::make_shared<FaultyAdapter>("a");
    Config config = spooled(dir.path());
    config.add_adapter(a);
    Emitter emitter(std::move(config));
    EXPECT_EQ(emitter.stats().spool_orphaned_events, 40u);
  }
  {
    auto a = std::make_shared<FaultyAdapter>("a");
    Config config = spooled(dir.path());
    config.spool->forget_missing_adapters = true;
    config.add_adapter(a);
    Emitter emitter(std::move(config));
    EXPECT_EQ(emitter.stats().spool_orphaned_events, 0u);
  }
  auto a = std::make_shared<FaultyAdapter>("a");
  auto gone = std::make_shared<FaultyAdapter>("gone");
  Config config = spooled(dir.path());
  config.add_adapter(a).add_adapter(gone);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(emitter.drain(kWait).ok());
  EXPECT_TRUE(gone->delivered().empty()) << "forgotten: it came back as a new adapter";
}

TEST(SpoolTest, TheDirectoryItCreatesIsTheOwnersOnlyAndFreedWhenTheEmitterGoes) {
  TempDir parent;
  const std::filesystem::path dir = parent.path() / "a" / "spool";
  {
    Config config = spooled(dir);
    config.add_adapter(std::make_shared<FaultyAdapter>("a"));
    Emitter emitter(std::move(config));
    EXPECT_EQ(std::filesystem::status(dir).permissions() & std::filesystem::perms::all,
              std::filesystem::perms::owner_all);
    Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit("e.a", 1).ok());
    ASSERT_TRUE(tx.commit([](const Settlement&) {}).ok());
  }
  // The same process opens it again at once: nothing kept the lock.
  Config config = spooled(dir);
  config.add_adapter(std::make_shared<FaultyAdapter>("a"));
  EXPECT_NO_THROW(Emitter emitter(std::move(config)));
}

TEST(SpoolTest, ASecondEmitterOnTheDirectoryIsAConfigErrorNamingTheHolder) {
  TempDir dir;
  Config first = spooled(dir.path());
  first.add_adapter(std::make_shared<FaultyAdapter>("a"));
  Emitter emitter(std::move(first));
  Config second = spooled(dir.path());
  second.add_adapter(std::make_shared<FaultyAdapter>("a"));
  try {
    Emitter other(std::move(second));
    FAIL() << "a second Emitter opened a spool in use";
  } catch (const ConfigError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("spool.dir"), std::string::npos) << message;
    EXPECT_NE(message.find(dir.path().string()), std::string::npos) << message;
    EXPECT_NE(message.find(std::to_string(::getpid())), std::string::npos) << message;
  }
}

TEST(SpoolTest, BadOptionsAreConfigErrorsNamingTheField) {
  TempDir dir;
  auto expect_error = [&](SpoolOptions options, const std::string& field) {
    Config config;
    config.make_default = false;
    config.spool = options;
    config.add_adapter(std::make_shared<FaultyAdapter>("a"));
    try {
      Emitter emitter(std::move(config));
      ADD_FAILURE() << field << " was accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  expect_error(SpoolOptions{}, "spool.dir");
  expect_error(SpoolOptions{.dir = dir.path(), .segment_bytes = 1000}, "spool.segment_bytes");
  expect_error(SpoolOptions{.dir = dir.path(), .max_bytes = 1u << 20, .segment_bytes = 2u << 20},
               "spool.segment_bytes");
  expect_error(SpoolOptions{.dir = dir.path(), .max_bytes = 3u << 20, .segment_bytes = 2u << 20},
               "spool.max_bytes");
  expect_error(SpoolOptions{.dir = "/proc/emissions-cannot-be-here"}, "spool.dir");
}

TEST(SpoolTest, OnSettledIsCalledOnceEveryAdapterSettled) {
  TempDir dir;
  auto a = std::make_shared<FaultyAdapter>("a");
  auto b = std::make_shared<FaultyAdapter>("b");
  b->fail_events([](const Event& e) { return e.name == "e.b"; },
                 Status(Errc::invalid_argument, "poison"));
  Config config = spooled(dir.path());
  config.add_adapter(a).add_adapter(b);
  Emitter emitter(std::move(config));
  std::atomic<int> calls{0};
  Settlement seen;
  Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("e.a", 1).ok());
  ASSERT_TRUE(tx.emit("e.b", 1).ok());
  ASSERT_TRUE(tx.commit([&](const Settlement& s) {
                  seen = s;
                  ++calls;
                }).ok());
  ASSERT_TRUE(emitter.drain(kWait).ok());
  ASSERT_EQ(calls.load(), 1);
  ASSERT_EQ(seen.adapters.size(), 2u);
  EXPECT_EQ(seen.adapters[0].name, "a");
  EXPECT_EQ(seen.adapters[0].delivered, 2u);
  EXPECT_EQ(seen.adapters[1].name, "b");
  EXPECT_EQ(seen.adapters[1].delivered, 1u);
  EXPECT_EQ(seen.adapters[1].failed, 1u);
}

// Wants no event at all: every commit is settled (filtered) as soon as it is handed over.
class WantsNothing final : public Adapter {
 public:
  [[nodiscard]] std::string_view name() const override { return "none"; }
  [[nodiscard]] bool interested(const Event& /*event*/) const override { return false; }
  Status handle_events(std::span<const Event> /*events*/) override { return {}; }
};

TEST(SpoolTest, OnSettledOfACommitSettledAtOnceRunsAfterTheCommitIsHandedOff) {
  // The lane is live (caught up) and filters every event, so the commit is settled at the
  // moment it is handed over. The callback must still run outside publish: here it shuts
  // the emitter down, which waits for every publish under way.
  TempDir dir;
  Config config = spooled(dir.path());
  config.add_adapter(std::make_shared<WantsNothing>());
  Emitter emitter(std::move(config));
  commit_pairs(emitter, 0, 3);
  ASSERT_TRUE(emitter.drain(kWait).ok());  // the relay caught up: the lane is live
  Status shutdown_status(Errc::internal, "on_settled was not called");
  Settlement seen;
  Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("e.a", 1).ok());
  ASSERT_TRUE(tx.commit([&](const Settlement& settled) {
                  seen = settled;
                  shutdown_status = emitter.shutdown(std::chrono::seconds(5));
                }).ok());
  ASSERT_TRUE(emitter.drain(kWait).ok() || emitter.closed());
  EXPECT_TRUE(shutdown_status.ok()) << shutdown_status.to_string();
  ASSERT_EQ(seen.adapters.size(), 1u);
  EXPECT_EQ(seen.adapters[0].filtered, 1u);
}

// Emits "e.echo" with the same payload for every "e.a" it handles.
class EchoHandler final : public Handler {
 public:
  [[nodiscard]] std::vector<EventName> events() const override { return {"e.a"}; }
  HandlerResult handle_event(const Event& event) override {
    if (Status s = emit("e.echo", event.payload); !s) return HandlerResult::error(s.message());
    return HandlerResult::ok();
  }
  [[nodiscard]] std::string_view name() const override { return "echo"; }
};

TEST(SpoolTest, HandlersCascadesGoThroughTheSpoolAndDrainWaitsForThem) {
  TempDir dir;
  auto a = std::make_shared<FaultyAdapter>("a");
  Config config = spooled(dir.path());
  config.add_adapter(a);
  config.add_handler(std::make_shared<EchoHandler>());
  Emitter emitter(std::move(config));
  commit_pairs(emitter, 0, 20);
  ASSERT_TRUE(emitter.drain(kWait).ok());
  std::size_t echoes = 0;
  for (const Event& e : a->delivered())
    echoes += e.name == "e.echo" ? 1u : 0u;
  EXPECT_EQ(echoes, 20u);
  EXPECT_EQ(a->delivered().size(), 60u);
}

TEST(SpoolTest, AFullSpoolRefusesTheCommitAfterBlockTimeoutAndKeepsItsEvents) {
  TempDir dir;
  auto stuck = std::make_shared<FaultyAdapter>("stuck");
  stuck->stall();
  Config config = spooled(dir.path());
  config.spool->max_bytes = 2u << 20;
  config.pipeline.block_timeout = std::chrono::milliseconds(50);
  config.shutdown_timeout = std::chrono::milliseconds(100);
  config.add_adapter(stuck, AdapterOptions{.buffer_size = 10});
  Emitter emitter(std::move(config));
  const std::string big(64 * 1024, 'x');
  Status refused;
  int accepted = 0;
  for (int i = 0; i < 200 && refused.ok(); ++i) {
    Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit("big", big).ok());
    refused = tx.commit();
    if (refused.ok()) {
      ++accepted;
    } else {
      EXPECT_EQ(tx.size(), 1u) << "the transaction keeps its events";
    }
  }
  EXPECT_EQ(refused.code(), Errc::overloaded);
  EXPECT_NE(refused.message().find("max_bytes"), std::string::npos) << refused.message();
  EXPECT_GT(accepted, 10);
  EXPECT_EQ(emitter.stats().committed, static_cast<std::uint64_t>(accepted));
}

// A synchronous adapter that records payloads and takes its time, so that a small queue
// fills and its lane falls behind the log (its relay reads the backlog back) and then
// catches up (the commit path hands it commits directly again).
// (Or sleeps `pause` in every `every`-th call.)
class SlowRecorder final : public Adapter {
 public:
  explicit SlowRecorder(std::string name, std::uint64_t every = 8,
                        std::chrono::microseconds pause = std::chrono::microseconds(300))
      : name_(std::move(name)), every_(every), pause_(pause) {}
  [[nodiscard]] std::string_view name() const override { return name_; }
  Status handle_events(std::span<const Event> events) override {
    if (++calls_ % every_ == 0) std::this_thread::sleep_for(pause_);
    std::lock_guard lock(mutex_);
    for (const Event& e : events)
      seen_.push_back(e.payload.get<std::int64_t>());
    return {};
  }
  [[nodiscard]] std::vector<std::int64_t> seen() const {
    std::lock_guard lock(mutex_);
    return seen_;
  }

 private:
  std::string name_;
  std::uint64_t every_;
  std::chrono::microseconds pause_;
  std::uint64_t calls_ = 0;  // the consumer thread only
  mutable std::mutex mutex_;
  std::vector<std::int64_t> seen_;
};

TEST(SpoolTest, ALaneThatFallsBehindReadsItsBacklogBackAndCatchesUpInOrder) {
  TempDir dir;
  auto slow = std::make_shared<SlowRecorder>("slow");
  auto fast = std::make_shared<SlowRecorder>("fast");
  Config config = spooled(dir.path());
  // block_timeout 0: commits do not wait for room in its queue, so it falls behind.
  config.add_adapter(slow, {.buffer_size = 8, .block_timeout = std::chrono::milliseconds(0)})
      .add_adapter(fast);
  Emitter emitter(std::move(config));
  // Bursts with pauses: the slow lane falls behind in each burst and catches up (goes live
  // again) in the pause after it.
  const std::vector<std::int64_t> want = commit_bursts(emitter, 5, 400);
  EXPECT_EQ(slow->seen(), want);
  EXPECT_EQ(fast->seen(), want);
  const EmitterStats stats = emitter.stats();
  for (const AdapterStats& s : stats.adapters) {
    EXPECT_EQ(s.received, want.size()) << s.name;
    EXPECT_EQ(s.delivered, want.size()) << s.name;
    EXPECT_EQ(s.dropped, 0u) << s.name;
  }
}

TEST(SpoolTest, ConcurrentCommitsReachALaggingAdapterExactlyOnceInEachThreadsOrder) {
  TempDir dir;
  auto slow = std::make_shared<SlowRecorder>("slow");
  auto fast = std::make_shared<SlowRecorder>("fast");
  Config config = spooled(dir.path());
  // block_timeout 0: commits do not wait for room in its queue, so it falls behind.
  config.add_adapter(slow, {.buffer_size = 16, .block_timeout = std::chrono::milliseconds(0)})
      .add_adapter(fast);
  Emitter emitter(std::move(config));
  constexpr int kThreads = 4;
  constexpr std::int64_t kPerThread = 1500;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (std::int64_t k = 0; k < kPerThread; ++k) {
        Transaction tx = emitter.start();
        const std::int64_t value = t * 1'000'000 + k;
        if (!tx.emit("e.a", value).ok() || !tx.commit().ok()) failures.fetch_add(1);
      }
    });
  }
  for (std::thread& thread : threads)
    thread.join();
  ASSERT_EQ(failures.load(), 0);
  ASSERT_TRUE(emitter.drain(kWait).ok());
  for (const auto& adapter : {slow, fast}) {
    const std::vector<std::int64_t> seen = adapter->seen();
    ASSERT_EQ(seen.size(), static_cast<std::size_t>(kThreads * kPerThread)) << adapter->name();
    std::vector<std::int64_t> next(kThreads, 0);  // each thread's next expected value
    for (const std::int64_t value : seen) {
      const auto t = static_cast<std::size_t>(value / 1'000'000);
      ASSERT_LT(t, next.size());
      ASSERT_EQ(value % 1'000'000, next[t]) << adapter->name() << ": thread " << t;
      ++next[t];
    }
  }
  for (const AdapterStats& s : emitter.stats().adapters)
    EXPECT_EQ(s.delivered, static_cast<std::uint64_t>(kThreads * kPerThread)) << s.name;
}

TEST(SpoolTest, ALiveLaneWhoseConsumerIsBehindForAMomentIsWaitedForAndStaysLive) {
  // A commit that finds a live lane's queue full waits briefly for its consumer (as the
  // in-memory pipeline would) instead of leaving the lane behind: nothing is read back from
  // the log or handed over from the window, and every event arrives once, in order. Bursts
  // with drains between: a hiccup longer than the wait (a loaded machine) costs one burst.
  TempDir dir;
  // Sleeps in every call, so that its queue fills whenever commits come faster than that.
  auto sluggish = std::make_shared<SlowRecorder>("sluggish", 1, std::chrono::microseconds(200));
  Config config = spooled(dir.path());
  config.add_adapter(sluggish, {.max_demand = 2, .buffer_size = 32});
  Emitter emitter(std::move(config));
  const std::vector<std::int64_t> want = commit_bursts(emitter, 10, 200);
  EXPECT_EQ(sluggish->seen(), want);
  const EmitterStats stats = emitter.stats();
  EXPECT_EQ(stats.adapters[0].received, want.size());
  EXPECT_EQ(stats.adapters[0].delivered, want.size());
  // Without the wait the lane falls behind in every burst once 16 commits fill its queue,
  // and its relay hands over nearly all of the rest.
  EXPECT_LT(stats.spool_commits_read_back + stats.spool_commits_from_window,
            want.size() / 4);  // half the commits (two events each)
}

TEST(SpoolTest, AStalledLiveLaneHoldsACommitBrieflyNotForItsBlockTimeout) {
  TempDir dir;
  auto stalled = std::make_shared<FaultyAdapter>("a");
  Config config = spooled(dir.path());
  config.add_adapter(
      stalled, {.buffer_size = 8, .block_timeout = std::chrono::minutes(10), .max_in_flight = 1});
  Emitter emitter(std::move(config));
  stalled->stall();
  // The queue fills after 4 commits; the next waits (at most 5 ms) for room, times out, and
  // the lane falls behind: the later commits do not wait for it.
  const auto start = std::chrono::steady_clock::now();
  commit_pairs(emitter, 0, 500);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::minutes(1));
  stalled->release();
  ASSERT_TRUE(emitter.drain(kWait).ok());
  EXPECT_EQ(payloads(stalled->delivered()), pairs(0, 500));
  EXPECT_EQ(emitter.stats().adapters[0].dropped, 0u);
}

TEST(SpoolTest, AStalledAdapterBuildsABacklogOnDiskAndARestartDeliversIt) {
  TempDir dir;
  {
    auto stalled = std::make_shared<FaultyAdapter>("a");
    Config config = spooled(dir.path());
    config.add_adapter(stalled, {.buffer_size = 8, .max_in_flight = 1});
    Emitter emitter(std::move(config));
    stalled->stall();
    commit_pairs(emitter, 0, 1000);  // never blocks: the backlog waits on disk
    EXPECT_EQ(emitter.stats().committed, 2000u);
    EXPECT_EQ(emitter.stats().adapters[0].dropped, 0u);
    // Shut down without its settlements: what it held is delivered by the next Emitter.
    EXPECT_FALSE(emitter.shutdown(std::chrono::milliseconds(200)).ok());
    stalled->release();
  }
  auto again = std::make_shared<FaultyAdapter>("a");
  Config config = spooled(dir.path());
  config.add_adapter(again);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(emitter.drain(kWait).ok());
  EXPECT_EQ(payloads(again->delivered()), pairs(0, 1000));
}

}  // namespace
}  // namespace emissions
