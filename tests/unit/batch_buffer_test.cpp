#include "emissions/batch_buffer.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "emissions/clock.hpp"
#include "emissions/deadline.hpp"
#include "emissions/status.hpp"
#include "emissions/telemetry.hpp"

namespace {

using namespace std::chrono_literals;
using emissions::BatchBuffer;
using emissions::BatchBufferOptions;
using emissions::Errc;
using emissions::FlushContext;
using emissions::ManualClock;
using emissions::Status;

// How long a test waits for something that should happen promptly before failing.
constexpr auto kWait = 10s;

// Records every flush call; tests wait on it instead of sleeping.
template <typename T>
class Recorder {
 public:
  struct Batch {
    std::string buffer;
    std::size_t partition = 0;
    std::size_t size = 0;
    nlohmann::json meta;
    std::vector<T> items;
  };

  // The flush callable: records, then runs `hook` (which may block or fail).
  typename BatchBuffer<T>::Flush fn(std::function<Status(const FlushContext&)> hook = nullptr) {
    return [this, hook = std::move(hook)](std::vector<T>&& items, const FlushContext& ctx) {
      {
        std::lock_guard lock(mu_);
        item_count_ += items.size();
        batches_.push_back(
            {std::string(ctx.buffer), ctx.partition, ctx.size, ctx.meta, std::move(items)});
      }
      cv_.notify_all();
      return hook ? hook(ctx) : Status{};
    };
  }

  [[nodiscard]] bool wait_batches(std::size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kWait, [&] { return batches_.size() >= n; });
  }
  [[nodiscard]] bool wait_items(std::size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kWait, [&] { return item_count_ >= n; });
  }
  std::vector<Batch> batches() const {
    std::lock_guard lock(mu_);
    return batches_;
  }
  std::size_t batch_count() const {
    std::lock_guard lock(mu_);
    return batches_.size();
  }
  // f(item) for every flushed item, in flush order (also for move-only T).
  template <typename F>
  auto collect(F f) const {
    std::lock_guard lock(mu_);
    std::vector<decltype(f(std::declval<const T&>()))> out;
    for (const Batch& b : batches_)
      for (const T& item : b.items)
        out.push_back(f(item));
    return out;
  }
  std::vector<T> items() const {
    std::lock_guard lock(mu_);
    std::vector<T> out;
    for (const Batch& b : batches_)
      out.insert(out.end(), b.items.begin(), b.items.end());
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Batch> batches_;
  std::size_t item_count_ = 0;
};

// Holds flush calls until opened.
class Gate {
 public:
  void pass() {
    std::unique_lock lock(mu_);
    ++entered_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
  }
  [[nodiscard]] bool wait_entered(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kWait, [&] { return entered_ >= n; });
  }
  void open() {
    {
      std::lock_guard lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int entered_ = 0;
  bool open_ = false;
};

// Captures the batch_buffer telemetry events of one buffer while alive.
class Capture {
 public:
  struct Event {
    std::string name;  // e.g. "flush.stop"
    nlohmann::json measurements;
    nlohmann::json metadata;
  };

  explicit Capture(std::string buffer) : buffer_(std::move(buffer)) {
    const std::vector<emissions::telemetry::EventName> names = {
        {"batch_buffer", "insert", "start"},
        {"batch_buffer", "insert", "stop"},
        {"batch_buffer", "flush", "start"},
        {"batch_buffer", "flush", "stop"},
        {"batch_buffer", "flush", "exception"}};
    const Status s = emissions::telemetry::attach_many(
        id_, names, [this](const auto& event, const nlohmann::json& m, const nlohmann::json& md) {
          if (md.value("buffer", "") != buffer_) return;
          {
            std::lock_guard lock(mu_);
            events_.push_back({event[1] + "." + event[2], m, md});
          }
          cv_.notify_all();
        });
    EXPECT_TRUE(s.ok()) << s.to_string();
  }
  ~Capture() { (void)emissions::telemetry::detach(id_); }
  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;

  std::vector<Event> events(const std::string& name) const {
    std::lock_guard lock(mu_);
    std::vector<Event> out;
    for (const Event& e : events_)
      if (e.name == name) out.push_back(e);
    return out;
  }
  [[nodiscard]] bool wait_for(const std::string& name, std::size_t n = 1) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kWait, [&] {
      return static_cast<std::size_t>(std::count_if(
                 events_.begin(), events_.end(), [&](const Event& e) { return e.name == name; })) >=
             n;
    });
  }

 private:
  std::string id_ = "batch-buffer-test-" + std::to_string(reinterpret_cast<std::uintptr_t>(this));
  std::string buffer_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Event> events_;
};

// Runs `fn` on a thread; the test keeps advancing `clock` until it has finished, so a wait
// bounded on the clock ends whatever the thread's timing.
template <typename Fn>
auto advance_until_done(ManualClock& clock, std::chrono::milliseconds step, Fn fn) {
  using Result = decltype(fn());
  std::mutex mu;
  std::condition_variable cv;
  std::optional<Result> result;
  std::thread t([&] {
    Result r = fn();
    std::lock_guard lock(mu);
    result = std::move(r);
    cv.notify_all();
  });
  const auto give_up = std::chrono::steady_clock::now() + kWait;
  std::unique_lock lock(mu);
  while (!result && std::chrono::steady_clock::now() < give_up) {
    lock.unlock();
    clock.advance(step);
    lock.lock();
    cv.wait_for(lock, 5ms, [&] { return result.has_value(); });
  }
  lock.unlock();
  t.join();
  return std::move(*result);
}

// sync_flush() returned `n` statuses, all ok.
testing::AssertionResult AllOk(const std::vector<Status>& results, std::size_t n) {
  if (results.size() != n)
    return testing::AssertionFailure() << results.size() << " results, expected " << n;
  for (std::size_t i = 0; i < n; ++i)
    if (!results[i].ok())
      return testing::AssertionFailure() << "partition " << i << ": " << results[i].to_string();
  return testing::AssertionSuccess();
}

std::vector<int> range(int from, int to) {
  std::vector<int> v(static_cast<std::size_t>(to - from));
  std::iota(v.begin(), v.end(), from);
  return v;
}

// --- options ------------------------------------------------------------------------------

TEST(BatchBufferOptions, DefaultsFollowDataBuffer) {
  const BatchBufferOptions<int> o;
  EXPECT_EQ(o.name, "");
  EXPECT_EQ(o.partitions, 1u);
  EXPECT_EQ(o.max_size, 5000u);
  EXPECT_EQ(o.max_size_jitter, 0u);
  EXPECT_EQ(o.flush_interval, 10s);
  EXPECT_EQ(o.flush_jitter, 2s);
  EXPECT_EQ(o.flush_timeout, 60s);
  EXPECT_EQ(o.insert_timeout, 5s);
  EXPECT_TRUE(o.flush_meta.is_null());
  EXPECT_FALSE(o.partition_by);
  EXPECT_EQ(o.clock, nullptr);
}

TEST(BatchBufferOptions, InvalidValuesThrowConfigErrorNamingFieldAndValue) {
  Recorder<int> rec;
  struct Case {
    std::function<void(BatchBufferOptions<int>&)> change;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](auto& o) { o.name = ""; }, "BatchBufferOptions.name must be non-empty (got \"\")"},
      {[](auto& o) { o.partitions = 0; },
       "BatchBufferOptions.partitions must be in [1, 1024] (got 0)"},
      {[](auto& o) { o.partitions = 5000; },
       "BatchBufferOptions.partitions must be in [1, 1024] (got 5000)"},
      {[](auto& o) { o.max_size = 0; },
       "BatchBufferOptions.max_size must be in [1, 16777216] (got 0)"},
      {[](auto& o) { o.max_size = emissions::kMaxBatchBufferSize + 1; },
       "BatchBufferOptions.max_size must be in [1, 16777216] (got 16777217)"},
      {[](auto& o) { o.max_size_jitter = std::numeric_limits<std::size_t>::max(); },
       "BatchBufferOptions.max_size_jitter must be in [0, 16777216] (got 18446744073709551615)"},
      {[](auto& o) { o.flush_interval = 0ms; },
       "BatchBufferOptions.flush_interval must be in [1 ms, 86400000 ms] (got 0 ms)"},
      {[](auto& o) { o.flush_interval = 24h + 1ms; },
       "BatchBufferOptions.flush_interval must be in [1 ms, 86400000 ms] (got 86400001 ms)"},
      {[](auto& o) { o.flush_jitter = -1ms; },
       "BatchBufferOptions.flush_jitter must be in [0 ms, 86400000 ms] (got -1 ms)"},
      {[](auto& o) { o.flush_jitter = 25h; },
       "BatchBufferOptions.flush_jitter must be in [0 ms, 86400000 ms] (got 90000000 ms)"},
      {[](auto& o) { o.flush_timeout = 0ms; },
       "BatchBufferOptions.flush_timeout must be in [1 ms, 86400000 ms] (got 0 ms)"},
      {[](auto& o) { o.flush_timeout = std::chrono::milliseconds::max(); },
       "BatchBufferOptions.flush_timeout must be in [1 ms, 86400000 ms] (got "},
      {[](auto& o) { o.insert_timeout = -5ms; },
       "BatchBufferOptions.insert_timeout must be in [0 ms, 86400000 ms] (got -5 ms)"},
      {[](auto& o) { o.insert_timeout = 48h; },
       "BatchBufferOptions.insert_timeout must be in [0 ms, 86400000 ms] (got 172800000 ms)"},
  };
  for (const Case& c : cases) {
    BatchBufferOptions<int> o{.name = "cfg"};
    c.change(o);
    try {
      BatchBuffer<int> buf(std::move(o), rec.fn());
      ADD_FAILURE() << "no ConfigError for: " << c.message;
    } catch (const emissions::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos)
          << e.what() << " vs " << c.message;
    }
  }
  try {
    BatchBuffer<int> buf({.name = "cfg"}, nullptr);
    ADD_FAILURE() << "no ConfigError for an empty flush callable";
  } catch (const emissions::ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "BatchBuffer's flush callable must be non-empty (got an empty function)");
  }
  // Edge values that are valid.
  BatchBuffer<int> low({.name = "cfg",
                        .partitions = emissions::kMaxBatchBufferPartitions,
                        .max_size = 1,
                        .flush_interval = 1ms,
                        .flush_jitter = 0ms,
                        .flush_timeout = 1ms,
                        .insert_timeout = 0ms},
                       rec.fn());
  EXPECT_EQ(low.partitions(), 1024u);
  EXPECT_EQ(low.name(), "cfg");
  BatchBuffer<int> high({.name = "cfg",
                         .max_size = emissions::kMaxBatchBufferSize,
                         .max_size_jitter = emissions::kMaxBatchBufferSize,
                         .flush_interval = emissions::kMaxBatchBufferTimeout,
                         .flush_jitter = emissions::kMaxBatchBufferTimeout,
                         .flush_timeout = emissions::kMaxBatchBufferTimeout,
                         .insert_timeout = emissions::kMaxBatchBufferTimeout},
                        rec.fn());
  EXPECT_EQ(high.size(), 0u);
}

// --- triggers -----------------------------------------------------------------------------

TEST(BatchBuffer, FlushesWhenAPartitionReachesMaxSize) {
  Recorder<int> rec;
  auto clock = std::make_shared<ManualClock>();  // the timer never fires on its own
  BatchBuffer<int> buf(
      {.name = "size", .max_size = 10, .flush_meta = {{"dest", "db"}}, .clock = clock}, rec.fn());
  for (int i = 0; i < 25; ++i)
    ASSERT_TRUE(buf.insert(i).ok());
  ASSERT_TRUE(rec.wait_batches(2));
  const auto batches = rec.batches();
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[0].items, range(0, 10));
  EXPECT_EQ(batches[1].items, range(10, 20));
  EXPECT_EQ(batches[0].buffer, "size");
  EXPECT_EQ(batches[0].partition, 0u);
  EXPECT_EQ(batches[0].size, 10u);
  EXPECT_EQ(batches[0].meta, (nlohmann::json{{"dest", "db"}}));
  EXPECT_EQ(buf.size(), 5u);

  EXPECT_TRUE(AllOk(buf.sync_flush(), 1));
  EXPECT_EQ(rec.batches().back().items, range(20, 25));
  EXPECT_EQ(buf.info()[0].flush_count, 3u);
  EXPECT_EQ(buf.size(), 0u);
}

TEST(BatchBuffer, FlushesWhenTheIntervalExpiresOnTheManualClock) {
  Recorder<int> rec;
  auto clock = std::make_shared<ManualClock>();
  const auto t0 = clock->now();
  BatchBuffer<int> buf({.name = "time",
                        .max_size = 1000,
                        .flush_interval = 100ms,
                        .flush_jitter = 0ms,
                        .clock = clock},
                       rec.fn());
  EXPECT_EQ(buf.info()[0].next_flush, t0 + 100ms);
  for (int i = 1; i <= 3; ++i)
    ASSERT_TRUE(buf.insert(i).ok());

  clock->advance(99ms);
  EXPECT_EQ(buf.info()[0].next_flush, t0 + 100ms);
  EXPECT_EQ(buf.size(), 3u);

  clock->advance(1ms);
  ASSERT_TRUE(rec.wait_batches(1));
  EXPECT_EQ(rec.batches()[0].items, (std::vector<int>{1, 2, 3}));
  EXPECT_TRUE(AllOk(buf.sync_flush(), 1));  // waits for the running flush
  auto info = buf.info()[0];
  EXPECT_EQ(info.flush_count, 1u);
  EXPECT_EQ(info.last_flush, t0 + 100ms);
  EXPECT_EQ(info.next_flush, t0 + 200ms);  // the interval restarts with each flush

  // An interval with nothing buffered calls nothing.
  clock->advance(100ms);
  ASSERT_TRUE(buf.insert(4).ok());
  clock->advance(100ms);
  ASSERT_TRUE(rec.wait_batches(2));
  const auto batches = rec.batches();
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[1].items, (std::vector<int>{4}));
}

TEST(BatchBuffer, ShortIntervalOnTheRealClockFlushesPromptly) {
  // The "linger" use: batches of up to max_size or whatever arrived within 5 ms.
  Recorder<int> rec;
  BatchBuffer<int> buf(
      {.name = "linger", .max_size = 1000, .flush_interval = 5ms, .flush_jitter = 0ms}, rec.fn());
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(buf.insert(1).ok());
  ASSERT_TRUE(rec.wait_items(1));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);  // 5 ms + scheduling, generously
  for (int i = 2; i <= 50; ++i)
    ASSERT_TRUE(buf.insert(i).ok());
  ASSERT_TRUE(rec.wait_items(50));
  EXPECT_EQ(rec.items(), range(1, 51));
}

TEST(BatchBuffer, MaxSizeJitterStaysWithinBoundsAndIsRedrawn) {
  Recorder<int> rec;
  auto clock = std::make_shared<ManualClock>();
  BatchBuffer<int> buf({.name = "jitter", .max_size = 10, .max_size_jitter = 5, .clock = clock},
                       rec.fn());
  for (int i = 0; i < 3000; ++i)
    ASSERT_TRUE(buf.insert(i).ok());
  EXPECT_TRUE(AllOk(buf.sync_flush(), 1));
  const auto batches = rec.batches();
  ASSERT_GT(batches.size(), 100u);
  std::set<std::size_t> sizes;
  for (std::size_t b = 0; b + 1 < batches.size(); ++b) {  // the last one is sync_flush's
    EXPECT_GE(batches[b].items.size(), 10u);
    EXPECT_LE(batches[b].items.size(), 15u);
    sizes.insert(batches[b].items.size());
  }
  EXPECT_GT(sizes.size(), 1u);  // redrawn after each flush (all equal: ~6^-200)
  EXPECT_EQ(rec.items(), range(0, 3000));
}

TEST(BatchBuffer, FlushJitterStaysWithinBoundsAndIsRedrawn) {
  Recorder<int> rec;
  auto clock = std::make_shared<ManualClock>();
  BatchBuffer<int> buf({.name = "interval-jitter",
                        .max_size = 1000,
                        .flush_interval = 100ms,
                        .flush_jitter = 50ms,
                        .clock = clock},
                       rec.fn());
  std::set<ManualClock::duration::rep> delays;
  for (int round = 0; round < 20; ++round) {
    const auto delay = buf.info()[0].next_flush - clock->now();
    EXPECT_GE(delay, 100ms);
    EXPECT_LE(delay, 150ms);
    delays.insert(delay.count());
    ASSERT_TRUE(buf.insert(round).ok());
    clock->advance(std::chrono::duration_cast<ManualClock::duration>(delay));
    ASSERT_TRUE(rec.wait_batches(static_cast<std::size_t>(round) + 1));
    EXPECT_TRUE(AllOk(buf.sync_flush(), 1));
  }
  EXPECT_GT(delays.size(), 1u);  // 20 equal draws out of 51 values: ~51^-19
  EXPECT_EQ(rec.items(), range(0, 20));
}

// --- partitioning -------------------------------------------------------------------------

struct Keyed {
  std::uint64_t key;
  int seq;
};

TEST(BatchBuffer, PartitionByKeepsEachKeyInOnePartitionInOrder) {
  Recorder<Keyed> rec;
  constexpr std::size_t kPartitions = 4;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 3000;
  BatchBuffer<Keyed> buf({.name = "keyed",
                          .partitions = kPartitions,
                          .max_size = 7,
                          .max_size_jitter = 3,
                          .flush_interval = 1ms,
                          .flush_jitter = 0ms,
                          .partition_by = [](const Keyed& k) { return k.key; }},
                         rec.fn());
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const Keyed item{static_cast<std::uint64_t>(t * 10 + i % 10), i};
        if (i % 50 == 0) {
          ASSERT_TRUE(buf.insert_batch({item}).ok());
        } else {
          ASSERT_TRUE(buf.insert(item).ok());
        }
      }
    });
  }
  for (auto& t : threads)
    t.join();
  for (const Status& s : buf.sync_flush())
    EXPECT_TRUE(s.ok());

  std::map<std::uint64_t, int> last_seq;
  std::size_t total = 0;
  for (const auto& batch : rec.batches()) {
    EXPECT_LE(batch.items.size(), 10u);
    for (const Keyed& k : batch.items) {
      EXPECT_EQ(k.key % kPartitions, batch.partition);
      auto [it, fresh] = last_seq.try_emplace(k.key, -1);
      EXPECT_GT(k.seq, it->second) << "key " << k.key << " out of order";
      it->second = k.seq;
      ++total;
    }
  }
  EXPECT_EQ(total, static_cast<std::size_t>(kThreads * kPerThread));
}

// Batches sorted by their first item, with the partition each went to.
std::vector<std::pair<int, std::size_t>> batch_partitions(const Recorder<int>& rec) {
  std::vector<std::pair<int, std::size_t>> out;
  for (const auto& b : rec.batches())
    out.emplace_back(b.items.front(), b.partition);
  std::sort(out.begin(), out.end());
  return out;
}

TEST(BatchBuffer, RoundRobinMovesToTheNextPartitionWithEachBatch) {
  Recorder<int> rec_a;
  Recorder<int> rec_b;
  auto clock = std::make_shared<ManualClock>();
  BatchBuffer<int> a({.name = "rr-a", .partitions = 4, .max_size = 8, .clock = clock}, rec_a.fn());
  BatchBuffer<int> b({.name = "rr-b", .partitions = 2, .max_size = 8, .clock = clock}, rec_b.fn());
  // A partial batch stays in one partition.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(a.insert(i).ok());
    ASSERT_TRUE(b.insert(i).ok());
  }
  std::size_t holding = 0;
  for (const auto& p : a.info())
    holding += p.size == 3 ? 1 : 0;
  EXPECT_EQ(holding, 1u);
  // Each filled batch moves the thread on to the next partition. Alternating between two
  // buffers on one thread must not skew either one. (Waiting for each flush keeps the
  // flushers parked while a batch fills: a thread that finds its partition locked by anyone,
  // a flusher included, moves on early, which would make the order less predictable.)
  for (int i = 3; i < 64; ++i) {
    ASSERT_TRUE(a.insert(i).ok());
    ASSERT_TRUE(b.insert(i).ok());
    if (i % 8 == 7) {
      EXPECT_TRUE(AllOk(a.sync_flush(), 4));
      EXPECT_TRUE(AllOk(b.sync_flush(), 2));
    }
  }
  for (const auto& [rec, n] :
       {std::pair{&rec_a, std::size_t{4}}, std::pair{&rec_b, std::size_t{2}}}) {
    const auto batches = batch_partitions(*rec);
    ASSERT_EQ(batches.size(), 8u);
    for (std::size_t k = 0; k < batches.size(); ++k) {
      EXPECT_EQ(batches[k].first, static_cast<int>(8 * k));  // whole batches of 8, in order
      EXPECT_EQ(batches[k].second, (batches[0].second + k) % n) << "batch " << k;
    }
  }
  // insert_batch goes whole to the current partition; filling it moves on, too.
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(a.insert_batch(range(100 * (i + 1), 100 * (i + 1) + 8)).ok());
    EXPECT_TRUE(AllOk(a.sync_flush(), 4));
  }
  std::set<std::size_t> used;
  for (const auto& [first, partition] : batch_partitions(rec_a))
    if (first >= 100) used.insert(partition);
  EXPECT_EQ(used.size(), 4u);
}

// --- backpressure -------------------------------------------------------------------------

TEST(BatchBuffer, FullPartitionTimesOutWithoutConsumingTheItem) {
  Recorder<std::unique_ptr<int>> rec;
  Gate gate;
  auto clock = std::make_shared<ManualClock>();
  BatchBuffer<std::unique_ptr<int>> buf(
      {.name = "backpressure", .max_size = 2, .insert_timeout = 1s, .clock = clock},
      rec.fn([&](const FlushContext&) {
        gate.pass();
        return Status{};
      }));
  for (int i = 1; i <= 2; ++i)
    ASSERT_TRUE(buf.insert(std::make_unique<int>(i)).ok());
  ASSERT_TRUE(gate.wait_entered(1));  // batch {1, 2} is flushing and blocked
  for (int i = 3; i <= 4; ++i)
    ASSERT_TRUE(buf.insert(std::make_unique<int>(i)).ok());
  EXPECT_EQ(buf.size(), 2u);  // full: a fresh batch filled while the old one flushes

  auto item = std::make_unique<int>(5);
  const Status s = advance_until_done(*clock, 250ms, [&] { return buf.insert(std::move(item)); });
  EXPECT_EQ(s.code(), Errc::timeout) << s.to_string();
  ASSERT_NE(item, nullptr);  // still the caller's
  EXPECT_EQ(*item, 5);

  // A waiting insert goes through as soon as the flush returns.
  Status waited;
  std::thread waiter([&] { waited = buf.insert(std::move(item)); });
  gate.open();
  waiter.join();
  EXPECT_TRUE(waited.ok()) << waited.to_string();
  EXPECT_EQ(item, nullptr);
  EXPECT_TRUE(AllOk(buf.sync_flush(), 1));
  EXPECT_EQ(rec.collect([](const auto& p) { return *p; }), (std::vector<int>{1, 2, 3, 4, 5}));
}

TEST(BatchBuffer, ZeroInsertTimeoutFailsAtOnceAndInsertBatchIsAllOrNothing) {
  Recorder<int> rec;
  Gate gate;
  BatchBuffer<int> buf({.name = "all-or-nothing", .max_size = 4, .insert_timeout = 0ms},
                       rec.fn([&](const FlushContext&) {
                         gate.pass();
                         return Status{};
                       }));
  ASSERT_TRUE(buf.insert_batch({1, 2, 3, 4}).ok());
  ASSERT_TRUE(gate.wait_entered(1));
  ASSERT_TRUE(buf.insert_batch({5, 6}).ok());
  ASSERT_TRUE(buf.insert_batch({7, 8, 9}).ok());  // below the limit: takes the whole group
  EXPECT_EQ(buf.size(), 5u);
  EXPECT_EQ(buf.insert_batch({10, 11}).code(), Errc::timeout);
  EXPECT_EQ(buf.insert(10).code(), Errc::timeout);
  EXPECT_EQ(buf.size(), 5u);  // nothing of the rejected calls was taken
  gate.open();
  EXPECT_TRUE(AllOk(buf.sync_flush(), 1));
  const auto batches = rec.batches();
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(batches[0].items, range(1, 5));
  EXPECT_EQ(batches[1].items, range(5, 9));  // no flush exceeds the limit
  EXPECT_EQ(batches[2].items, (std::vector<int>{9}));
}

TEST(BatchBuffer, InsertBatchSpreadByKeyIsAllOrNothingAcrossPartitions) {
  Recorder<int> rec;
  Gate gate;
  auto clock = std::make_shared<ManualClock>();
  BatchBuffer<int> buf({.name = "spread",
                        .partitions = 2,
                        .max_size = 2,
                        .insert_timeout = 0ms,
                        .partition_by = [](const int& v) { return static_cast<std::uint64_t>(v); },
                        .clock = clock},
                       rec.fn([&](const FlushContext& ctx) {
                         if (ctx.partition == 1) gate.pass();
                         return Status{};
                       }));
  ASSERT_TRUE(buf.insert_batch({1, 3}).ok());  // partition 1: flushing, blocked
  ASSERT_TRUE(gate.wait_entered(1));
  ASSERT_TRUE(buf.insert_batch({5, 7}).ok());  // partition 1: full
  EXPECT_EQ(buf.insert_batch({2, 4, 9}).code(), Errc::timeout);
  EXPECT_EQ(buf.info()[0].size, 0u);             // partition 0 got none of it
  ASSERT_TRUE(buf.insert_batch({10, 12}).ok());  // partition 0 alone is fine
  gate.open();
  EXPECT_TRUE(AllOk(buf.sync_flush(), 2));
  std::map<std::size_t, std::vector<int>> by_partition;
  for (const auto& b : rec.batches())
    by_partition[b.partition].insert(by_partition[b.partition].end(), b.items.begin(),
                                     b.items.end());
  EXPECT_EQ(by_partition[0], (std::vector<int>{10, 12}));
  EXPECT_EQ(by_partition[1], (std::vector<int>{1, 3, 5, 7}));
}

TEST(BatchBuffer, RoundRobinInsertMovesOnFromAFullPartition) {
  Recorder<int> rec;
  Gate gate;
  auto clock = std::make_shared<ManualClock>();
  // The manual clock never advances: an insert waiting for room waits until some partition
  // makes room, and would hang (not time out) if it waited for the wrong partition.
  BatchBuffer<int> buf(
      {.name = "spill", .partitions = 2, .max_size = 2, .insert_timeout = 1s, .clock = clock},
      rec.fn([&](const FlushContext& ctx) {
        if (ctx.partition == 0) gate.pass();
        return Status{};
      }));
  // Partition 0 soon holds a blocked flush and a full batch; inserts then go to partition 1.
  for (int i = 0; i < 100; ++i)
    ASSERT_TRUE(buf.insert(i).ok()) << i;
  ASSERT_TRUE(gate.wait_entered(1));
  EXPECT_EQ(buf.info()[0].size, 2u);
  EXPECT_TRUE(buf.info()[0].flushing);
  gate.open();
  EXPECT_TRUE(AllOk(buf.sync_flush(), 2));
  auto items = rec.items();
  std::sort(items.begin(), items.end());
  EXPECT_EQ(items, range(0, 100));
}

TEST(BatchBuffer, AFlushOfOnePartitionDoesNotDelayAnother) {
  Recorder<int> rec;
  Gate gate;
  BatchBuffer<int> buf({.name = "independent",
                        .partitions = 2,
                        .max_size = 100,
                        .partition_by = [](const int& v) { return static_cast<std::uint64_t>(v); }},
                       rec.fn([&](const FlushContext& ctx) {
                         if (ctx.partition == 0) gate.pass();
                         return Status{};
                       }));
  ASSERT_TRUE(buf.insert(0).ok());
  buf.flush();
  ASSERT_TRUE(gate.wait_entered(1));  // partition 0 is stuck in its flush
  ASSERT_TRUE(buf.insert(1).ok());
  ASSERT_TRUE(buf.insert(2).ok());
  buf.flush();
  ASSERT_TRUE(rec.wait_batches(2));
  const auto batches = rec.batches();
  EXPECT_EQ(batches[1].partition, 1u);
  EXPECT_EQ(batches[1].items, (std::vector<int>{1}));
  EXPECT_EQ(buf.size(), 1u);  // 2 waits behind partition 0's running flush
  gate.open();
  EXPECT_TRUE(AllOk(buf.sync_flush(), 2));
  EXPECT_EQ(rec.batches().back().items, (std::vector<int>{2}));
}

// --- dump, sync_flush, failures -----------------------------------------------------------

TEST(BatchBuffer, DumpReturnsItemsPartitionByPartitionWithoutFlushing) {
  Recorder<int> rec;
  auto clock = std::make_shared<ManualClock>();
  BatchBuffer<int> buf({.name = "dump",
                        .partitions = 2,
                        .max_size = 100,
                        .partition_by = [](const int& v) { return static_cast<std::uint64_t>(v); },
                        .clock = clock},
                       rec.fn());
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(buf.insert(i).ok());
  EXPECT_EQ(buf.size(), 10u);
  EXPECT_EQ(buf.dump(), (std::vector<int>{0, 2, 4, 6, 8, 1, 3, 5, 7, 9}));
  EXPECT_EQ(buf.size(), 0u);
  EXPECT_TRUE(buf.dump().empty());
  EXPECT_TRUE(AllOk(buf.sync_flush(), 2));
  EXPECT_EQ(rec.batch_count(), 0u);
}

TEST(BatchBuffer, SyncFlushReturnsEachPartitionsStatus) {
  Recorder<int> rec;
  auto clock = std::make_shared<ManualClock>();
  BatchBuffer<int> buf({.name = "statuses",
                        .partitions = 3,
                        .partition_by = [](const int& v) { return static_cast<std::uint64_t>(v); },
                        .clock = clock},
                       rec.fn([](const FlushContext& ctx) {
                         return ctx.partition == 1 ? Status(Errc::unavailable, "down") : Status{};
                       }));
  ASSERT_TRUE(buf.insert(0).ok());
  ASSERT_TRUE(buf.insert(1).ok());
  const auto results = buf.sync_flush();
  ASSERT_EQ(results.size(), 3u);
  EXPECT_TRUE(results[0].ok());
  EXPECT_EQ(results[1].code(), Errc::unavailable);
  EXPECT_EQ(results[1].message(), "down");
  EXPECT_TRUE(results[2].ok());             // empty
  EXPECT_TRUE(AllOk(buf.sync_flush(), 3));  // nothing left: all ok
  auto items = rec.items();                 // partitions flush in parallel: no order between them
  std::sort(items.begin(), items.end());
  EXPECT_EQ(items, (std::vector<int>{0, 1}));
}

TEST(BatchBuffer, SyncFlushDrainsWhileOthersInsert) {
  Recorder<int> rec;
  BatchBuffer<int> buf({.name = "drain",
                        .partitions = 2,
                        .max_size = 32,
                        .flush_interval = 5ms,
                        .flush_jitter = 0ms},
                       rec.fn());
  std::atomic<int> accepted{0};
  std::atomic<bool> stop{false};
  std::thread producer([&] {
    for (int i = 0; !stop.load(); ++i) {
      ASSERT_TRUE(buf.insert(i).ok());
      accepted.fetch_add(1);
    }
  });
  for (int round = 0; round < 50; ++round) {
    const int before = accepted.load();
    for (const Status& s : buf.sync_flush())
      ASSERT_TRUE(s.ok());
    EXPECT_GE(rec.items().size(), static_cast<std::size_t>(before));
  }
  stop = true;
  producer.join();
  EXPECT_TRUE(buf.shutdown().ok());
  auto items = rec.items();
  std::sort(items.begin(), items.end());
  EXPECT_EQ(items, range(0, accepted.load()));
}

TEST(BatchBuffer, AThrowingFlushIsReportedAndTheBufferCarriesOn) {
  Capture capture("throws");
  Recorder<int> rec;
  std::atomic<int> calls{0};
  auto clock = std::make_shared<ManualClock>();
  BatchBuffer<int> buf({.name = "throws", .clock = clock},
                       rec.fn([&](const FlushContext&) -> Status {
                         if (calls.fetch_add(1) == 0) throw std::runtime_error("boom");
                         return {};
                       }));
  ASSERT_TRUE(buf.insert(1).ok());
  auto results = buf.sync_flush();
  EXPECT_EQ(results[0].code(), Errc::internal);
  EXPECT_NE(results[0].message().find("boom"), std::string::npos);
  ASSERT_TRUE(capture.wait_for("flush.exception"));
  const auto ex = capture.events("flush.exception")[0];
  EXPECT_EQ(ex.metadata["kind"], "exception");
  EXPECT_EQ(ex.metadata["reason"], "boom");
  EXPECT_EQ(ex.metadata["size"], 1);
  EXPECT_TRUE(ex.measurements.contains("duration"));

  ASSERT_TRUE(buf.insert(2).ok());
  EXPECT_TRUE(AllOk(buf.sync_flush(), 1));
  EXPECT_EQ(rec.items(), (std::vector<int>{1, 2}));
}

TEST(BatchBuffer, AFlushPastFlushTimeoutIsReportedWhileInsertsContinue) {
  Capture capture("slow");
  Recorder<int> rec;
  Gate gate;
  auto clock = std::make_shared<ManualClock>();
  BatchBuffer<int> buf({.name = "slow", .max_size = 100, .flush_timeout = 1s, .clock = clock},
                       rec.fn([&](const FlushContext&) {
                         gate.pass();
                         return Status{};
                       }));
  ASSERT_TRUE(buf.insert(1).ok());
  buf.flush();
  ASSERT_TRUE(gate.wait_entered(1));
  const auto results = advance_until_done(*clock, 250ms, [&] { return buf.sync_flush(); });
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].code(), Errc::timeout) << results[0].to_string();
  ASSERT_TRUE(capture.wait_for("flush.exception"));
  const auto ex = capture.events("flush.exception")[0];
  EXPECT_EQ(ex.metadata["kind"], "timeout");
  EXPECT_EQ(ex.metadata["partition"], 0);
  EXPECT_EQ(ex.metadata["size"], 1);

  // The buffer keeps accepting into a fresh batch; the stuck partition fails fast.
  for (int i = 2; i <= 5; ++i)
    ASSERT_TRUE(buf.insert(i).ok());
  EXPECT_TRUE(buf.info()[0].flushing);
  EXPECT_EQ(buf.sync_flush()[0].code(), Errc::timeout);

  gate.open();
  std::vector<Status> later;
  do {  // the late flush returns; then the partition recovers
    later = buf.sync_flush();
  } while (later[0].code() == Errc::timeout);
  EXPECT_TRUE(later[0].ok()) << later[0].to_string();
  EXPECT_EQ(rec.items(), range(1, 6));
  ASSERT_TRUE(capture.wait_for("flush.stop", 2));
  EXPECT_EQ(capture.events("flush.stop")[0].metadata["timed_out"], true);
  EXPECT_FALSE(capture.events("flush.stop")[1].metadata.contains("timed_out"));
}

// --- shutdown -----------------------------------------------------------------------------

TEST(BatchBuffer, ShutdownFlushesEverythingThenRefusesInserts) {
  Recorder<std::string> rec;
  auto clock = std::make_shared<ManualClock>();
  BatchBuffer<std::string> buf({.name = "shutdown", .partitions = 3, .max_size = 4, .clock = clock},
                               rec.fn());
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(buf.insert(std::to_string(i)).ok());
  ASSERT_TRUE(buf.insert_batch({"a", "b", "c", "d", "e", "f", "g", "h", "i"}).ok());
  EXPECT_TRUE(buf.shutdown(1s).ok());
  EXPECT_EQ(rec.items().size(), 19u);
  for (const auto& b : rec.batches())
    EXPECT_LE(b.items.size(), 4u);

  std::string keep = "kept";
  EXPECT_EQ(buf.insert(std::move(keep)).code(), Errc::closed);
  EXPECT_EQ(keep, "kept");
  EXPECT_EQ(buf.insert_batch({"x"}).code(), Errc::closed);
  const auto results = buf.sync_flush();
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[0].code(), Errc::closed);
  EXPECT_TRUE(buf.shutdown().ok());  // idempotent
  EXPECT_EQ(buf.size(), 0u);
}

TEST(BatchBuffer, DestructionFlushesWhatRemains) {
  Recorder<int> rec;
  {
    auto clock = std::make_shared<ManualClock>();
    BatchBuffer<int> buf({.name = "dtor", .partitions = 2, .clock = clock}, rec.fn());
    for (int i = 0; i < 7; ++i)
      ASSERT_TRUE(buf.insert(i).ok());
  }
  auto items = rec.items();
  std::sort(items.begin(), items.end());
  EXPECT_EQ(items, range(0, 7));
}

TEST(BatchBuffer, ShutdownTimesOutOnAStuckFlushAndCanBeRetried) {
  Recorder<int> rec;
  Gate gate;
  auto clock = std::make_shared<ManualClock>();
  BatchBuffer<int> buf({.name = "stuck", .clock = clock}, rec.fn([&](const FlushContext&) {
    gate.pass();
    return Status{};
  }));
  ASSERT_TRUE(buf.insert(1).ok());
  buf.flush();
  ASSERT_TRUE(gate.wait_entered(1));
  ASSERT_TRUE(buf.insert(2).ok());
  EXPECT_EQ(buf.info()[0].in_flight, 1u);
  // The deadline is real time: the manual clock, never advanced here, does not hold it up.
  const auto start = std::chrono::steady_clock::now();
  const Status s = buf.shutdown(emissions::deadline_after(50ms));
  EXPECT_LT(std::chrono::steady_clock::now() - start, kWait);
  EXPECT_EQ(s.code(), Errc::timeout) << s.to_string();
  EXPECT_NE(s.message().find("1 partition(s) still flushing"), std::string::npos) << s.message();
  EXPECT_NE(
      s.message().find("2 items not yet flushed (1 of them in a flush that has not returned)"),
      std::string::npos)
      << s.message();
  EXPECT_EQ(buf.insert(3).code(), Errc::closed);
  gate.open();
  EXPECT_TRUE(buf.shutdown().ok());
  EXPECT_EQ(rec.items(), (std::vector<int>{1, 2}));
}

TEST(BatchBuffer, SyncFlushReturnsAtItsDeadlineAndTheItemsAreFlushedLater) {
  Recorder<int> rec;
  Gate gate;
  auto clock = std::make_shared<ManualClock>();  // flush_timeout never passes on its own
  BatchBuffer<int> buf({.name = "late", .clock = clock}, rec.fn([&](const FlushContext&) {
    gate.pass();
    return Status{};
  }));
  ASSERT_TRUE(buf.insert(1).ok());
  buf.flush();
  ASSERT_TRUE(gate.wait_entered(1));
  ASSERT_TRUE(buf.insert(2).ok());
  ASSERT_TRUE(buf.insert(3).ok());

  const auto start = std::chrono::steady_clock::now();
  const auto results = buf.sync_flush(emissions::deadline_after(50ms));
  EXPECT_LT(std::chrono::steady_clock::now() - start, kWait);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].code(), Errc::timeout) << results[0].to_string();
  EXPECT_NE(
      results[0].message().find("partition 0: 3 items not yet flushed (1 of them in a flush that "
                                "has not returned) at the deadline"),
      std::string::npos)
      << results[0].message();

  gate.open();
  EXPECT_TRUE(AllOk(buf.sync_flush(), 1));
  EXPECT_EQ(rec.items(), (std::vector<int>{1, 2, 3}));
}

// --- concurrency --------------------------------------------------------------------------

TEST(BatchBuffer, EightThreadsLoseAndDuplicateNothing) {
  Recorder<int> rec;
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20'000;
  std::atomic<int> timeouts{0};
  {
    BatchBuffer<int> buf({.name = "eight",
                          .partitions = 4,
                          .max_size = 64,
                          .max_size_jitter = 16,
                          .flush_interval = 5ms,
                          .flush_jitter = 1ms,
                          .insert_timeout = 1ms},
                         rec.fn([](const FlushContext& ctx) {
                           // Slow some flushes down so that inserts hit backpressure.
                           if (ctx.size % 7 == 0) std::this_thread::sleep_for(100us);
                           return Status{};
                         }));
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread;) {
          const int v = t * kPerThread + i;
          Status s;
          if (i % 97 == 0 && i + 3 <= kPerThread) {
            s = buf.insert_batch({v, v + 1, v + 2});
            if (s.ok()) i += 3;
          } else if (i % 2 == 0) {
            s = buf.insert(v);
            if (s.ok()) ++i;
          } else {
            const int copy = v;
            s = buf.insert(copy);
            if (s.ok()) ++i;
          }
          if (!s.ok()) {
            ASSERT_EQ(s.code(), Errc::timeout) << s.to_string();
            timeouts.fetch_add(1);  // still ours: retry
          }
        }
      });
    }
    for (auto& t : threads)
      t.join();
  }  // destruction flushes the rest
  auto items = rec.items();
  EXPECT_EQ(items.size(), static_cast<std::size_t>(kThreads * kPerThread));
  std::sort(items.begin(), items.end());
  EXPECT_EQ(items, range(0, kThreads * kPerThread));
  for (const auto& b : rec.batches())
    EXPECT_LE(b.items.size(), 80u);
  std::cout << "[          ] backpressure timeouts retried: " << timeouts.load() << '\n';
}

// A batching buffer asks no more of T than being movable: no assignment, no default.
struct Frozen {
  explicit Frozen(int v) : value(v) {}
  const int value;
};

TEST(BatchBuffer, WorksWithANonAssignableType) {
  Recorder<Frozen> rec;
  auto clock = std::make_shared<ManualClock>();
  BatchBuffer<Frozen> buf({.name = "frozen", .partitions = 2, .max_size = 3, .clock = clock},
                          rec.fn());
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(buf.insert(Frozen(i)).ok());
  std::vector<Frozen> batch;
  for (int i = 4; i < 12; ++i)
    batch.emplace_back(i);
  ASSERT_TRUE(buf.insert_batch(std::move(batch)).ok());  // over-full: split across batches
  const Frozen lvalue(12);
  ASSERT_TRUE(buf.insert(lvalue).ok());
  std::vector<int> values;
  for (const Frozen& f : buf.dump())
    values.push_back(f.value);
  EXPECT_TRUE(AllOk(buf.sync_flush(), 2));
  for (int v : rec.collect([](const Frozen& f) { return f.value; }))
    values.push_back(v);
  std::sort(values.begin(), values.end());
  EXPECT_EQ(values, range(0, 13));
  for (const auto& b : rec.batches())
    EXPECT_LE(b.items.size(), 3u);
}

// --- info and telemetry -------------------------------------------------------------------

TEST(BatchBuffer, InfoReportsSizesCountsAndTimes) {
  Recorder<int> rec;
  auto clock = std::make_shared<ManualClock>(ManualClock::time_point(5s));
  BatchBuffer<int> buf({.name = "info",
                        .partitions = 2,
                        .max_size = 100,
                        .flush_interval = 1s,
                        .flush_jitter = 0ms,
                        .partition_by = [](const int& v) { return static_cast<std::uint64_t>(v); },
                        .clock = clock},
                       rec.fn());
  ASSERT_TRUE(buf.insert(0).ok());
  ASSERT_TRUE(buf.insert(2).ok());
  ASSERT_TRUE(buf.insert(1).ok());
  auto info = buf.info();
  ASSERT_EQ(info.size(), 2u);
  EXPECT_EQ(info[0].partition, 0u);
  EXPECT_EQ(info[0].size, 2u);
  EXPECT_EQ(info[1].size, 1u);
  EXPECT_EQ(info[0].flush_count, 0u);
  EXPECT_FALSE(info[0].last_flush.has_value());
  EXPECT_EQ(info[0].next_flush, ManualClock::time_point(6s));
  EXPECT_FALSE(info[0].flushing);

  clock->advance(500ms);
  EXPECT_TRUE(AllOk(buf.sync_flush(), 2));
  info = buf.info();
  EXPECT_EQ(info[0].size, 0u);
  EXPECT_EQ(info[0].flush_count, 1u);
  EXPECT_EQ(info[1].flush_count, 1u);
  EXPECT_EQ(info[0].last_flush, ManualClock::time_point(5500ms));
  EXPECT_EQ(info[0].next_flush, ManualClock::time_point(6500ms));
}

TEST(BatchBuffer, EmitsInsertAndFlushTelemetry) {
  Capture capture("traced");
  Recorder<int> rec;
  auto clock = std::make_shared<ManualClock>();
  BatchBuffer<int> buf({.name = "traced", .max_size = 2, .clock = clock}, rec.fn());
  ASSERT_TRUE(buf.insert(1).ok());
  ASSERT_TRUE(buf.insert(2).ok());
  ASSERT_TRUE(capture.wait_for("flush.stop"));
  ASSERT_TRUE(buf.insert_batch({3, 4, 5}).ok());  // flushes {3, 4}; 5 stays
  ASSERT_TRUE(capture.wait_for("flush.stop", 2));

  const auto starts = capture.events("insert.start");
  const auto stops = capture.events("insert.stop");
  ASSERT_EQ(starts.size(), 3u);
  ASSERT_EQ(stops.size(), 3u);
  EXPECT_EQ(starts[0].metadata,
            (nlohmann::json{{"buffer", "traced"}, {"partition", 0}, {"size", 1}}));
  EXPECT_TRUE(starts[0].measurements.contains("monotonic_time"));
  EXPECT_EQ(stops[0].metadata["status"], "ok");
  EXPECT_GE(stops[0].measurements["duration"].get<std::int64_t>(), 0);
  EXPECT_EQ(stops[2].metadata["size"], 3);

  const auto fstart = capture.events("flush.start");
  const auto fstop = capture.events("flush.stop");
  ASSERT_EQ(fstart.size(), 2u);
  EXPECT_EQ(fstart[0].metadata,
            (nlohmann::json{{"buffer", "traced"}, {"partition", 0}, {"size", 2}}));
  EXPECT_TRUE(fstart[0].measurements.contains("system_time"));
  EXPECT_EQ(fstop[0].metadata["status"], "ok");
  EXPECT_EQ(fstop[0].metadata["size"], 2);
  EXPECT_GE(fstop[0].measurements["duration"].get<std::int64_t>(), 0);
  EXPECT_EQ(fstop[1].metadata["size"], 2);
  EXPECT_EQ(buf.size(), 1u);
  EXPECT_TRUE(capture.events("flush.exception").empty());
}

}  // namespace
