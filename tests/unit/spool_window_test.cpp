// A spool lane's in-memory window (src/pipeline/relay_window.hpp): commits a lane does not
// take at commit time (it is behind, or its queues are full) are handed over by its relay
// from memory when they are still there, from the log otherwise. Whichever way a commit
// goes, each lane gets each event it wants exactly once, in order within a partition, with
// exact counts and one settlement per commit.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "emissions/emissions.hpp"
#include "spool/codec.hpp"
#include "temp_dir.hpp"

namespace emissions {
namespace {

using test_support::TempDir;

constexpr auto kWait = std::chrono::seconds(60);
constexpr std::int64_t kThreadStride = 1'000'000;

// Records payloads per partition; now and then slow, so that its lane falls behind, and
// filters out multiples of 5.
class PickyPartitioned final : public Adapter {
 public:
  [[nodiscard]] std::string_view name() const override { return "picky"; }
  [[nodiscard]] bool interested(const Event& event) const override {
    return event.payload.get<std::int64_t>() % 5 != 0;
  }
  Status handle_events(std::span<const Event> events) override {
    if (calls_.fetch_add(1) % 16 == 0) std::this_thread::sleep_for(std::chrono::microseconds(500));
    std::lock_guard lock(mutex_);
    for (const Event& e : events) {
      const std::int64_t value = e.payload.get<std::int64_t>();
      by_partition_[partition_of(value)].push_back(value);
    }
    return {};
  }
  static std::uint64_t partition_of(std::int64_t value) {
    return static_cast<std::uint64_t>(value % kThreadStride) % 4;
  }
  [[nodiscard]] std::map<std::uint64_t, std::vector<std::int64_t>> seen() const {
    std::lock_guard lock(mutex_);
    return by_partition_;
  }

 private:
  std::atomic<std::uint64_t> calls_{0};
  mutable std::mutex mutex_;
  std::map<std::uint64_t, std::vector<std::int64_t>> by_partition_;
};

class Counter final : public Adapter {
 public:
  [[nodiscard]] std::string_view name() const override { return "all"; }
  Status handle_events(std::span<const Event> events) override {
    count_.fetch_add(events.size());
    return {};
  }
  [[nodiscard]] std::uint64_t count() const { return count_.load(); }

 private:
  std::atomic<std::uint64_t> count_{0};
};

// The lane's buffer size bounds its window: a small one sends most of its backlog through
// the log, a larger one most of it through memory.
class SpoolWindowTest : public ::testing::TestWithParam<std::size_t> {};

TEST_P(SpoolWindowTest, ALaggingPartitionedFilteringLaneGetsEachWantedEventOnceInOrder) {
  TempDir dir;
  auto picky = std::make_shared<PickyPartitioned>();
  auto all = std::make_shared<Counter>();
  Config config;
  config.make_default = false;
  config.spool = SpoolOptions{.dir = dir.path(), .segment_bytes = 1u << 20};
  config
      .add_adapter(picky,
                   {.buffer_size = GetParam(),
                    .concurrency = 4,
                    .partition_by =
                        [](const Event& e) {
                          return PickyPartitioned::partition_of(e.payload.get<std::int64_t>());
                        }})
      .add_adapter(all);
  Emitter emitter(std::move(config));

  constexpr int kThreads = 3;
  constexpr std::int64_t kCommits = 1500;  // per thread, 3 events each
  std::atomic<int> failures{0};
  std::atomic<std::uint64_t> settlements{0};
  std::atomic<std::uint64_t> settled_wrongly{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (std::int64_t c = 0; c < kCommits; ++c) {
        Transaction tx = emitter.start();
        std::uint64_t filtered = 0;
        for (std::int64_t j = 0; j < 3; ++j) {
          const std::int64_t value = t * kThreadStride + c * 3 + j;
          filtered += value % 5 == 0 ? 1 : 0;
          if (!tx.emit("n", value).ok()) failures.fetch_add(1);
        }
        const Status committed = tx.commit([&, filtered](const Settlement& s) {
          settlements.fetch_add(1);
          const AdapterStats& p = s.adapters.at(0);
          const AdapterStats& a = s.adapters.at(1);
          if (p.filtered != filtered || p.delivered != 3 - filtered || a.delivered != 3) {
            settled_wrongly.fetch_add(1);
          }
        });
        if (!committed.ok()) failures.fetch_add(1);
        if (c % 250 == 249) std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    });
  }
  for (std::thread& thread : threads)
    thread.join();
  ASSERT_EQ(failures.load(), 0);
  ASSERT_TRUE(emitter.drain(kWait).ok());

  // Each partition: every wanted value exactly once, each thread's values in commit order.
  std::uint64_t wanted = 0;
  std::map<std::uint64_t, std::vector<std::int64_t>> expected;
  for (int t = 0; t < kThreads; ++t) {
    for (std::int64_t i = 0; i < kCommits * 3; ++i) {
      const std::int64_t value = t * kThreadStride + i;
      if (value % 5 == 0) continue;
      ++wanted;
      expected[PickyPartitioned::partition_of(value)].push_back(value);
    }
  }
  const auto seen = picky->seen();
  for (const auto& [partition, values] : expected) {
    const auto it = seen.find(partition);
    ASSERT_NE(it, seen.end()) << "partition " << partition;
    ASSERT_EQ(it->second.size(), values.size()) << "partition " << partition;
    std::vector<std::int64_t> next(kThreads, -1);
    for (const std::int64_t value : it->second) {
      const auto t = static_cast<std::size_t>(value / kThreadStride);
      ASSERT_LT(t, next.size());
      ASSERT_GT(value, next[t]) << "partition " << partition << ": out of order";
      next[t] = value;
    }
  }
  const std::uint64_t total = static_cast<std::uint64_t>(kThreads * kCommits * 3);
  EXPECT_EQ(all->count(), total);
  const EmitterStats stats = emitter.stats();
  EXPECT_EQ(stats.adapters[0].received, total);
  EXPECT_EQ(stats.adapters[0].filtered, total - wanted);
  EXPECT_EQ(stats.adapters[0].delivered, wanted);
  EXPECT_EQ(stats.adapters[0].dropped, 0u);
  EXPECT_EQ(stats.adapters[1].delivered, total);
  // Every commit settled once, with its lanes' exact counts (the callbacks run after the
  // last settlement, possibly after drain() returned: wait for them).
  const auto until = std::chrono::steady_clock::now() + kWait;
  while (settlements.load() < static_cast<std::uint64_t>(kThreads * kCommits) &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(settlements.load(), static_cast<std::uint64_t>(kThreads * kCommits));
  EXPECT_EQ(settled_wrongly.load(), 0u);
  // Each commit is relayed at most once per lane, and only the picky lane can be behind.
  const EmitterStats after = emitter.stats();
  EXPECT_LE(after.spool_commits_read_back + after.spool_commits_from_window,
            static_cast<std::uint64_t>(kThreads * kCommits));
}

// Delivers nothing until opened (at most 30 s), then records payloads in order.
class Gated final : public Adapter {
 public:
  [[nodiscard]] std::string_view name() const override { return "gated"; }
  Status handle_events(std::span<const Event> events) override {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!open_.load() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::lock_guard lock(mutex_);
    for (const Event& e : events)
      seen_.push_back(e.payload.get<std::int64_t>());
    return {};
  }
  void open() { open_.store(true); }
  [[nodiscard]] std::vector<std::int64_t> seen() const {
    std::lock_guard lock(mutex_);
    return seen_;
  }

 private:
  std::atomic<bool> open_{false};
  mutable std::mutex mutex_;
  std::vector<std::int64_t> seen_;
};

TEST(SpoolWindowStats,
     ALaneThatFellBehindGetsTheCommitsItsWindowKeptFromMemoryAndTheRestFromTheLog) {
  TempDir dir;
  auto gated = std::make_shared<Gated>();
  Config config;
  config.make_default = false;
  config.spool = SpoolOptions{.dir = dir.path(), .segment_bytes = 1u << 20};
  config.add_adapter(gated, {.max_demand = 1, .buffer_size = 100});
  Emitter emitter(std::move(config));
  // While the adapter holds its first event: about 100 commits fill its queue (taken live),
  // the lane falls behind, the next 100 or so fit its window (100 events), the rest are
  // only in the log.
  constexpr std::int64_t kCommits = 300;
  for (std::int64_t c = 0; c < kCommits; ++c) {
    Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit("n", c).ok());
    ASSERT_TRUE(tx.commit().ok());
  }
  gated->open();
  ASSERT_TRUE(emitter.drain(kWait).ok());
  std::vector<std::int64_t> want(kCommits);
  for (std::int64_t c = 0; c < kCommits; ++c)
    want[static_cast<std::size_t>(c)] = c;
  EXPECT_EQ(gated->seen(), want);
  const EmitterStats stats = emitter.stats();
  EXPECT_EQ(stats.adapters[0].delivered, static_cast<std::uint64_t>(kCommits));
  EXPECT_GT(stats.spool_commits_from_window, 0u);
  EXPECT_GT(stats.spool_commits_read_back, 0u);
  EXPECT_LT(stats.spool_commits_read_back + stats.spool_commits_from_window,
            static_cast<std::uint64_t>(kCommits));
}

TEST(SpoolWindowStats, WithoutAnAdapterBehindNothingIsRelayed) {
  TempDir dir;
  auto all = std::make_shared<Counter>();
  Config config;
  config.make_default = false;
  config.spool = SpoolOptions{.dir = dir.path(), .segment_bytes = 1u << 20};
  config.add_adapter(all, {.buffer_size = 100'000});
  Emitter emitter(std::move(config));
  for (int c = 0; c < 200; ++c) {
    Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit("n", c).ok());
    ASSERT_TRUE(tx.commit().ok());
  }
  ASSERT_TRUE(emitter.drain(kWait).ok());
  EXPECT_EQ(all->count(), 200u);
  // A lane with no backlog starts live and its queue never fills: every commit is handed
  // over at commit time, none by the relay.
  EXPECT_EQ(emitter.stats().spool_commits_read_back, 0u);
  EXPECT_EQ(emitter.stats().spool_commits_from_window, 0u);
}

// Holds its first call until released (with a deadline), recording every payload.
class HoldsFirst final : public Adapter {
 public:
  [[nodiscard]] std::string_view name() const override { return "holds-first"; }
  Status handle_events(std::span<const Event> events) override {
    std::unique_lock lock(mutex_);
    if (!entered_) {
      entered_ = true;
      changed_.notify_all();
      changed_.wait_for(lock, kWait, [&] { return released_; });
    }
    for (const Event& e : events)
      seen_.push_back(e.payload.is_object() ? e.payload.at("n").get<std::int64_t>()
                                            : e.payload.get<std::int64_t>());
    return {};
  }
  [[nodiscard]] bool wait_entered() {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, kWait, [&] { return entered_; });
  }
  void release() {
    std::lock_guard lock(mutex_);
    released_ = true;
    changed_.notify_all();
  }
  [[nodiscard]] std::vector<std::int64_t> seen() const {
    std::lock_guard lock(mutex_);
    return seen_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  bool entered_ = false;
  bool released_ = false;
  std::vector<std::int64_t> seen_;
};

// Flips a byte in the body of the last frame of the newest segment in `dir`.
void damage_last_commit(const std::filesystem::path& dir) {
  std::filesystem::path segment;  // names sort by base seq
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".log" && entry.path() > segment) segment = entry.path();
  }
  ASSERT_FALSE(segment.empty());
  std::ifstream in(segment, std::ios::binary);
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
  std::size_t offset = detail::spool::kSegmentHeaderSize;
  std::size_t last = 0;
  detail::spool::FrameHeader header;
  while (offset < bytes.size() &&
         detail::spool::check_frame(std::span(bytes).subspan(offset), header) ==
             detail::spool::FrameCheck::ok) {
    last = offset;
    offset += detail::spool::frame_size(header.body_len);
  }
  ASSERT_NE(last, 0u);
  const int fd = ::open(segment.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  const std::uint8_t flipped = bytes[last + detail::spool::kFrameHeaderSize] ^ 0xFF;
  EXPECT_EQ(::pwrite(fd, &flipped, 1, static_cast<off_t>(last + detail::spool::kFrameHeaderSize)),
            1);
  ::close(fd);
}

// A commit kept in a lane's window whose frame in the log is not what the window says
// (here: damaged after the commit) is not handed over from memory: the relay reads the log
// instead, where the damaged commit is skipped and counted, as for a lane that reads it.
TEST(SpoolWindowStats, ACommitWhoseFrameNoLongerMatchesItsWindowEntryIsReadFromTheLog) {
  TempDir dir;
  auto held = std::make_shared<HoldsFirst>();
  Config config;
  config.make_default = false;
  config.spool = SpoolOptions{.dir = dir.path(), .segment_bytes = 1u << 20};
  config.add_adapter(held, {.max_demand = 1, .buffer_size = 10});
  Emitter emitter(std::move(config));
  auto commit = [&](std::int64_t first, int events) {
    Transaction tx = emitter.start();
    for (int e = 0; e < events; ++e)
      ASSERT_TRUE(tx.emit("n", first + e).ok());
    ASSERT_TRUE(tx.commit().ok());
  };
  commit(0, 1);  // the adapter holds it
  ASSERT_TRUE(held->wait_entered());
  commit(1, 10);  // fills the lane's queue (10 events)
  auto commit_large = [&](std::int64_t n) {
    Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit("n", nlohmann::json{{"n", n}, {"pad", std::string(600'000, 'x')}}).ok());
    ASSERT_TRUE(tx.commit().ok());
  };
  // The lane falls behind: its window keeps this one ...
  commit_large(11);
  // ... and this one, which does not fit in the first segment: the relay, which cannot
  // reach it before the queue has room, has read none of its segment when it is damaged.
  commit_large(12);
  damage_last_commit(dir.path());
  held->release();
  ASSERT_TRUE(emitter.drain(kWait).ok());
  commit(13, 1);
  ASSERT_TRUE(emitter.drain(kWait).ok());

  std::vector<std::int64_t> want;
  for (std::int64_t v = 0; v <= 11; ++v)
    want.push_back(v);
  want.push_back(13);
  EXPECT_EQ(held->seen(), want);
  const EmitterStats stats = emitter.stats();
  EXPECT_EQ(stats.spool_corrupt_records, 1u);
  EXPECT_GE(stats.spool_commits_from_window, 1u);  // 11, from memory
}

INSTANTIATE_TEST_SUITE_P(BufferSizes, SpoolWindowTest, ::testing::Values(24, 600),
                         [](const ::testing::TestParamInfo<std::size_t>& param) {
                           return "Buffer" + std::to_string(param.param);
                         });

}  // namespace
}  // namespace emissions
