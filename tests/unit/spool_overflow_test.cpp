// A full spool (SpoolOptions::max_bytes) applies the adapters' overflow policies
// (src/spool/spool_overflow.cpp, Core::drop_for_every_lane): drop_oldest lanes let go of the
// oldest segment, a commit no lane blocks for is dropped for every lane, and a blocking lane
// makes the commit wait, then refuses it. Every event is settled exactly once per adapter.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "emissions/emissions.hpp"
#include "emissions/testing/faulty_adapter.hpp"
#include "recording_adapter.hpp"
#include "temp_dir.hpp"

namespace emissions {
namespace {

using test_support::TelemetryRecorder;
using test_support::TempDir;
using testing::FaultyAdapter;

constexpr auto kWait = std::chrono::seconds(30);
constexpr std::size_t kPayloadBytes = 16 * 1024;  // ~60 commits per 1 MiB segment

Config small_spool(const std::filesystem::path& dir, Durability durability) {
  Config config;
  config.make_default = false;
  config.spool = SpoolOptions{
      .dir = dir, .durability = durability, .max_bytes = 2u << 20, .segment_bytes = 1u << 20};
  config.shutdown_timeout = std::chrono::milliseconds(200);
  return config;
}

// The settlement of each commit, by the commit's number (its event's payload "k").
class Settlements {
 public:
  std::function<void(const Settlement&)> for_commit(int k) {
    return [this, k](const Settlement& s) {
      std::lock_guard lock(mutex_);
      ++calls_[k];
      last_[k] = s;
    };
  }
  [[nodiscard]] std::map<int, int> calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
  }
  [[nodiscard]] std::map<int, Settlement> last() const {
    std::lock_guard lock(mutex_);
    return last_;
  }

 private:
  mutable std::mutex mutex_;
  std::map<int, int> calls_;
  std::map<int, Settlement> last_;
};

int payload_number(const Event& e) {
  return std::stoi(e.payload.get<std::string>().substr(0, 8));
}

std::string big_payload(int k) {
  std::string head = std::to_string(k);
  head.insert(0, 8 - std::min<std::size_t>(8, head.size()), '0');  // 8 digits: payload_number
  return head + std::string(kPayloadBytes, 'x');
}

// Commits events 0..count-1, one per transaction, each with an on_settled callback;
// returns how many commits did not return ok.
int commit_numbered(Emitter& emitter, int count, Settlements& settlements) {
  int failures = 0;
  for (int k = 0; k < count; ++k) {
    Transaction tx = emitter.start();
    EXPECT_TRUE(tx.emit("big", big_payload(k)).ok());
    if (!tx.commit(settlements.for_commit(k)).ok()) ++failures;
  }
  return failures;
}

// Commits events 0, 1, ... (no callback) until one is refused (at most 300); how many were
// accepted. The refused transaction must keep its event.
int commit_until_refused(Emitter& emitter, Status& refused) {
  int accepted = 0;
  for (int k = 0; k < 300 && refused.ok(); ++k) {
    Transaction tx = emitter.start();
    EXPECT_TRUE(tx.emit("big", big_payload(k)).ok());
    refused = tx.commit();
    if (refused.ok()) {
      ++accepted;
    } else {
      EXPECT_EQ(tx.size(), 1u) << "the transaction keeps its events";
    }
  }
  return accepted;
}

// The events the adapter was handed, in arrival order (delivered() is in settlement order,
// which release() interleaves with inline acknowledgements).
std::vector<int> arrivals(const FaultyAdapter& adapter) {
  std::vector<int> out;
  for (const testing::ReceivedEvent& r : adapter.received())
    out.push_back(payload_number(r.event));
  return out;
}

std::uint64_t sum_counts(const std::vector<TelemetryRecorder::Record>& records) {
  std::uint64_t total = 0;
  for (const TelemetryRecorder::Record& r : records)
    total += r.measurements.at("count").get<std::uint64_t>();
  return total;
}

class SpoolOverflowTest : public ::testing::TestWithParam<Durability> {};

INSTANTIATE_TEST_SUITE_P(Durabilities, SpoolOverflowTest,
                         ::testing::Values(Durability::process, Durability::machine),
                         [](const auto& param_info) {
                           return param_info.param == Durability::process ? std::string("process")
                                                                          : std::string("machine");
                         });

// With process durability the stalled lane's window (relay_window.hpp) is full of the very
// commits the reclaim lets go of: its relay, moved past them by the fence, releases them from
// the window unhanded (10 of them here, as a temporary trace showed). The exact settlements
// below prove none of them is delivered or settled twice. Likewise the two-lane test below.
TEST_P(SpoolOverflowTest, ADropOldestLaneLetsGoOfItsOldestBacklogAndNoCommitWaits) {
  TempDir dir;
  const std::vector<std::string> kSpoolDropped = {"emissions", "spool", "dropped"};
  TelemetryRecorder telemetry("spool-overflow", {kSpoolDropped});
  auto stuck = std::make_shared<FaultyAdapter>("stuck");
  auto fast = std::make_shared<FaultyAdapter>("fast");
  Config config = small_spool(dir.path(), GetParam());
  // A commit that waited for the stuck lane would be refused after this (it never
  // settles while stalled): every commit returning ok proves none waited for it.
  config.pipeline.block_timeout = std::chrono::milliseconds(2000);
  config.add_adapter(stuck, {.buffer_size = 10, .overflow = Overflow::drop_oldest})
      .add_adapter(fast);
  Emitter emitter(std::move(config));
  stuck->stall();
  Settlements settlements;
  constexpr int kCommits = 400;  // ~6.5 MiB through a 2 MiB spool
  ASSERT_EQ(commit_numbered(emitter, kCommits, settlements), 0);
  EXPECT_LE(emitter.stats().spool_bytes, 2u << 20);
  stuck->release();
  ASSERT_TRUE(emitter.drain(kWait).ok());

  const EmitterStats stats = emitter.stats();
  const AdapterStats& s = stats.adapters[0];
  EXPECT_EQ(stats.committed, static_cast<std::uint64_t>(kCommits));
  EXPECT_EQ(s.received, static_cast<std::uint64_t>(kCommits));
  EXPECT_GT(s.dropped, 0u) << "the spool was full";
  EXPECT_EQ(s.delivered + s.dropped, static_cast<std::uint64_t>(kCommits));
  EXPECT_EQ(s.failed, 0u);
  EXPECT_EQ(sum_counts(telemetry.records(kSpoolDropped)), s.dropped);
  for (const TelemetryRecorder::Record& r : telemetry.records(kSpoolDropped)) {
    EXPECT_EQ(r.metadata.at("adapter"), "stuck");
    EXPECT_EQ(r.metadata.at("reason"), "overflow");
  }
  EXPECT_EQ(stats.adapters[1].delivered, static_cast<std::uint64_t>(kCommits));
  EXPECT_EQ(stats.adapters[1].dropped, 0u);

  // What it got, it got once and in order; what it did not get is exactly what its
  // settlements say was dropped.
  const std::vector<int> got = arrivals(*stuck);
  EXPECT_TRUE(std::is_sorted(got.begin(), got.end()));
  EXPECT_EQ(std::adjacent_find(got.begin(), got.end()), got.end()) << "a duplicate";
  EXPECT_EQ(got.size(), s.delivered);
  const std::set<int> delivered(got.begin(), got.end());
  const std::map<int, int> calls = settlements.calls();
  const std::map<int, Settlement> last = settlements.last();
  ASSERT_EQ(calls.size(), static_cast<std::size_t>(kCommits));
  for (int k = 0; k < kCommits; ++k) {
    ASSERT_EQ(calls.at(k), 1) << "commit " << k;
    const AdapterStats& mine = last.at(k).adapters.at(0);
    EXPECT_EQ(mine.delivered + mine.dropped, 1u) << "commit " << k;
    EXPECT_EQ(mine.dropped == 1, delivered.count(k) == 0) << "commit " << k;
    EXPECT_EQ(last.at(k).adapters.at(1).delivered, 1u) << "commit " << k;
  }
  EXPECT_GT(delivered.count(kCommits - 1), 0u) << "the newest events are kept";
}

TEST_P(SpoolOverflowTest, WhatADropOldestLaneLetGoOfIsNotDeliveredAgainAfterARestart) {
  TempDir dir;
  Settlements settlements;
  constexpr int kCommits = 300;
  // The reclaims' drops are settled inside commit(); the shutdown's come later, and those
  // of commits the spool still protected are delivered again by design: only the former
  // are "let go of".
  std::map<int, Settlement> reclaimed;
  {
    auto stuck = std::make_shared<FaultyAdapter>("stuck");
    Config config = small_spool(dir.path(), GetParam());
    config.add_adapter(stuck, {.buffer_size = 10, .overflow = Overflow::drop_oldest});
    Emitter emitter(std::move(config));
    stuck->stall();
    ASSERT_EQ(commit_numbered(emitter, kCommits, settlements), 0);
    reclaimed = settlements.last();
    EXPECT_FALSE(emitter.shutdown(std::chrono::milliseconds(100)).ok()) << "it holds events";
    stuck->release();
  }
  std::set<int> dropped;
  for (const auto& [k, settlement] : reclaimed) {
    if (settlement.adapters.at(0).dropped == 1 && settlement.adapters.at(0).received == 1) {
      dropped.insert(k);
    }
  }
  ASSERT_FALSE(dropped.empty());
  auto again = std::make_shared<FaultyAdapter>("stuck");
  Config config = small_spool(dir.path(), GetParam());
  config.add_adapter(again, {.buffer_size = 10, .overflow = Overflow::drop_oldest});
  Emitter emitter(std::move(config));
  ASSERT_TRUE(emitter.drain(kWait).ok());
  const std::vector<int> got = arrivals(*again);
  ASSERT_FALSE(got.empty()) << "the backlog after the last reclaim is still on disk";
  EXPECT_TRUE(std::is_sorted(got.begin(), got.end()));
  for (int k : got)
    EXPECT_EQ(dropped.count(k), 0u) << "commit " << k << " was dropped, then delivered";
  EXPECT_EQ(got.back(), kCommits - 1);
}

TEST_P(SpoolOverflowTest, WithNoBlockingLaneAFullSpoolDropsNewCommitsForEveryLane) {
  TempDir dir;
  const std::vector<std::string> kDropped = {"emissions", "event", "dropped"};
  TelemetryRecorder telemetry("spool-overflow", {kDropped});
  auto stuck = std::make_shared<FaultyAdapter>("stuck");
  Config config = small_spool(dir.path(), GetParam());
  config.add_adapter(stuck, {.buffer_size = 10, .overflow = Overflow::drop_newest});
  Emitter emitter(std::move(config));
  stuck->stall();
  Settlements settlements;
  constexpr int kCommits = 300;
  ASSERT_EQ(commit_numbered(emitter, kCommits, settlements), 0) << "dropping never refuses";
  EXPECT_LE(emitter.stats().spool_bytes, 2u << 20);
  // Each dropped commit's settlement is known as soon as its commit returned.
  const std::map<int, Settlement> early = settlements.last();
  stuck->release();
  ASSERT_TRUE(emitter.drain(kWait).ok());

  const AdapterStats s = emitter.stats().adapters[0];
  EXPECT_EQ(s.received, static_cast<std::uint64_t>(kCommits));
  EXPECT_GT(s.dropped, 0u);
  EXPECT_EQ(s.delivered + s.dropped, static_cast<std::uint64_t>(kCommits));
  // The oldest are kept: it gets a prefix of the commits, in order, and the rest are the
  // dropped ones.
  const std::vector<int> got = arrivals(*stuck);
  ASSERT_EQ(got.size(), s.delivered);
  for (std::size_t i = 0; i < got.size(); ++i)
    ASSERT_EQ(got[i], static_cast<int>(i));
  const std::vector<TelemetryRecorder::Record> drops = telemetry.records(kDropped);
  for (const TelemetryRecorder::Record& r : drops) {
    EXPECT_EQ(r.metadata.at("reason"), "overflow");
    EXPECT_EQ(r.metadata.at("adapter"), "stuck");
    EXPECT_EQ(r.metadata.at("event_name"), "big");
  }
  EXPECT_EQ(sum_counts(drops), s.dropped);
  const std::map<int, int> calls = settlements.calls();
  for (int k = 0; k < kCommits; ++k) {
    ASSERT_EQ(calls.at(k), 1) << "commit " << k;
    const bool was_dropped = k >= static_cast<int>(got.size());
    EXPECT_EQ(settlements.last().at(k).adapters.at(0).dropped, was_dropped ? 1u : 0u);
    if (was_dropped) {
      EXPECT_EQ(early.count(k), 1u) << "commit " << k;
    }
  }
}

TEST_P(SpoolOverflowTest, ABlockingLaneMakesTheCommitWaitThenRefusesItWhateverTheOthersDo) {
  TempDir dir;
  auto stuck = std::make_shared<FaultyAdapter>("stuck");
  auto waiting = std::make_shared<FaultyAdapter>("waiting");
  Config config = small_spool(dir.path(), GetParam());
  config.pipeline.block_timeout = std::chrono::milliseconds(50);
  // The drop_newest lane holds the oldest segment; the blocking one is never behind, but
  // the log is shared: no room can be made, so its commits wait, then are refused.
  config.add_adapter(stuck, {.buffer_size = 10, .overflow = Overflow::drop_newest})
      .add_adapter(waiting, {.overflow = Overflow::block});
  Emitter emitter(std::move(config));
  stuck->stall();
  Status refused;
  const int accepted = commit_until_refused(emitter, refused);
  EXPECT_EQ(refused.code(), Errc::overloaded) << refused.to_string();
  EXPECT_NE(refused.message().find("max_bytes"), std::string::npos) << refused.message();
  stuck->release();
  ASSERT_TRUE(emitter.drain(kWait).ok());
  const EmitterStats stats = emitter.stats();
  EXPECT_EQ(stats.committed, static_cast<std::uint64_t>(accepted));
  for (const AdapterStats& s : stats.adapters) {
    EXPECT_EQ(s.delivered, static_cast<std::uint64_t>(accepted)) << s.name;
    EXPECT_EQ(s.dropped, 0u) << s.name << ": a refused commit is nobody's drop";
  }
}

TEST_P(SpoolOverflowTest, ADropOldestLaneCannotReclaimWhatABlockingLaneStillHolds) {
  TempDir dir;
  auto dropping = std::make_shared<FaultyAdapter>("dropping");
  auto blocking = std::make_shared<FaultyAdapter>("blocking");
  Config config = small_spool(dir.path(), GetParam());
  config.pipeline.block_timeout = std::chrono::milliseconds(50);
  config.add_adapter(dropping, {.buffer_size = 10, .overflow = Overflow::drop_oldest})
      .add_adapter(blocking, {.buffer_size = 10, .overflow = Overflow::block});
  Emitter emitter(std::move(config));
  dropping->stall();
  blocking->stall();
  Status refused;
  const int accepted = commit_until_refused(emitter, refused);
  EXPECT_EQ(refused.code(), Errc::overloaded) << refused.to_string();
  dropping->release();
  blocking->release();
  ASSERT_TRUE(emitter.drain(kWait).ok());
  for (const AdapterStats& s : emitter.stats().adapters) {
    EXPECT_EQ(s.delivered, static_cast<std::uint64_t>(accepted)) << s.name;
    EXPECT_EQ(s.dropped, 0u) << s.name;
  }
}

TEST_P(SpoolOverflowTest, ACommitBiggerThanTheBudgetIsRefusedAtOnceAndDropsNothing) {
  TempDir dir;
  auto stuck = std::make_shared<FaultyAdapter>("stuck");
  Config config = small_spool(dir.path(), GetParam());
  config.add_adapter(stuck, {.buffer_size = 10, .overflow = Overflow::drop_oldest});
  Emitter emitter(std::move(config));
  stuck->stall();
  Settlements settlements;
  constexpr int kCommits = 100;  // more than one segment, less than two
  ASSERT_EQ(commit_numbered(emitter, kCommits, settlements), 0);
  // max_bytes (2 MiB) minus the segment being written (1 MiB) cannot hold it, whatever the
  // drop_oldest lane let go of: refused, and its backlog kept.
  Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("huge", std::string((1u << 20) + 1024, 'h')).ok());
  const Status refused = tx.commit();
  EXPECT_EQ(refused.code(), Errc::invalid_argument) << refused.to_string();
  EXPECT_NE(refused.message().find("max_bytes"), std::string::npos) << refused.message();
  EXPECT_EQ(tx.size(), 1u) << "the transaction keeps its events";
  EXPECT_EQ(emitter.stats().adapters[0].dropped, 0u);
  stuck->release();
  ASSERT_TRUE(emitter.drain(kWait).ok());
  const EmitterStats stats = emitter.stats();
  EXPECT_EQ(stats.committed, static_cast<std::uint64_t>(kCommits));
  EXPECT_EQ(stats.adapters[0].received, static_cast<std::uint64_t>(kCommits));
  EXPECT_EQ(stats.adapters[0].delivered, static_cast<std::uint64_t>(kCommits));
  EXPECT_EQ(stats.adapters[0].dropped, 0u);
  std::vector<int> expected(kCommits);
  for (int k = 0; k < kCommits; ++k)
    expected[static_cast<std::size_t>(k)] = k;
  EXPECT_EQ(arrivals(*stuck), expected);
}

TEST_P(SpoolOverflowTest, TwoDropOldestLanesEachDropOnlyWhatTheyAloneHeldBack) {
  TempDir dir;
  const std::vector<std::string> kSpoolDropped = {"emissions", "spool", "dropped"};
  TelemetryRecorder telemetry("spool-overflow-two", {kSpoolDropped});
  auto slow = std::make_shared<FaultyAdapter>("slow");
  auto slower = std::make_shared<FaultyAdapter>("slower");
  auto fast = std::make_shared<FaultyAdapter>("fast");
  Config config = small_spool(dir.path(), GetParam());
  config.pipeline.block_timeout = std::chrono::milliseconds(2000);
  config.add_adapter(slow, {.buffer_size = 50, .overflow = Overflow::drop_oldest})
      .add_adapter(slower, {.buffer_size = 10, .overflow = Overflow::drop_oldest})
      .add_adapter(fast);
  Emitter emitter(std::move(config));
  slow->stall();
  slower->stall();
  Settlements settlements;
  constexpr int kCommits = 500;
  ASSERT_EQ(commit_numbered(emitter, kCommits / 2, settlements), 0);
  slow->release();  // catches up while slower stays stalled
  for (int k = kCommits / 2; k < kCommits; ++k) {
    Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit("big", big_payload(k)).ok());
    ASSERT_TRUE(tx.commit(settlements.for_commit(k)).ok()) << "commit " << k;
  }
  slower->release();
  ASSERT_TRUE(emitter.drain(kWait).ok());

  const EmitterStats stats = emitter.stats();
  const std::map<int, int> calls = settlements.calls();
  const std::map<int, Settlement> last = settlements.last();
  ASSERT_EQ(calls.size(), static_cast<std::size_t>(kCommits));
  std::map<std::string, std::uint64_t> reported;
  for (const TelemetryRecorder::Record& r : telemetry.records(kSpoolDropped)) {
    reported[r.metadata.at("adapter").get<std::string>()] +=
        r.measurements.at("count").get<std::uint64_t>();
  }
  const std::vector<std::shared_ptr<FaultyAdapter>> adapters = {slow, slower, fast};
  for (std::size_t l = 0; l < adapters.size(); ++l) {
    const AdapterStats& s = stats.adapters[l];
    SCOPED_TRACE(s.name);
    EXPECT_EQ(s.received, static_cast<std::uint64_t>(kCommits));
    EXPECT_EQ(s.delivered + s.dropped, static_cast<std::uint64_t>(kCommits));
    EXPECT_EQ(s.failed, 0u);
    EXPECT_EQ(reported[s.name], s.dropped) << "each lane's drops are its own";
    const std::vector<int> got = arrivals(*adapters[l]);
    EXPECT_TRUE(std::is_sorted(got.begin(), got.end()));
    EXPECT_EQ(std::adjacent_find(got.begin(), got.end()), got.end()) << "a duplicate";
    EXPECT_EQ(got.size(), s.delivered);
    const std::set<int> delivered(got.begin(), got.end());
    for (int k = 0; k < kCommits; ++k) {
      ASSERT_EQ(calls.at(k), 1) << "commit " << k;
      const AdapterStats& mine = last.at(k).adapters.at(l);
      ASSERT_EQ(mine.delivered + mine.dropped, 1u) << "commit " << k;
      ASSERT_EQ(mine.dropped == 1, delivered.count(k) == 0) << "commit " << k;
    }
  }
  EXPECT_GT(stats.adapters[1].dropped, 0u) << "slower stalled through ~8 MiB";
  EXPECT_EQ(stats.adapters[2].dropped, 0u) << "a lane that kept up loses nothing";
  EXPECT_LT(stats.adapters[0].dropped, stats.adapters[1].dropped)
      << "slow caught up halfway: it let go of less than slower";
}

// First run: a stalled blocking lane fills a 4 MiB spool. The second run opens it with a
// 2 MiB budget: the spool starts over budget.
int fill_four_mebibytes(const std::filesystem::path& dir, Durability durability) {
  auto stuck = std::make_shared<FaultyAdapter>("a");
  Config config = small_spool(dir, durability);
  config.spool->max_bytes = 4u << 20;
  config.pipeline.block_timeout = std::chrono::milliseconds(20);
  config.add_adapter(stuck, {.buffer_size = 10, .overflow = Overflow::block});
  Emitter emitter(std::move(config));
  stuck->stall();
  Status refused;
  const int accepted = commit_until_refused(emitter, refused);
  EXPECT_EQ(refused.code(), Errc::overloaded) << refused.to_string();
  EXPECT_FALSE(emitter.shutdown(std::chrono::milliseconds(100)).ok()) << "it holds events";
  stuck->release();
  return accepted;
}

TEST_P(SpoolOverflowTest, RestartedOverBudgetADropOldestLaneDropsExactlyItsOldestBacklog) {
  TempDir dir;
  const int backlog = fill_four_mebibytes(dir.path(), GetParam());
  ASSERT_GT(backlog, 150) << "more than the 2 MiB budget of the second run";
  const std::vector<std::string> kSpoolDropped = {"emissions", "spool", "dropped"};
  TelemetryRecorder telemetry("spool-overflow-restart", {kSpoolDropped});
  auto stuck = std::make_shared<FaultyAdapter>("a");
  Config config = small_spool(dir.path(), GetParam());  // 2 MiB
  config.add_adapter(stuck, {.buffer_size = 10, .overflow = Overflow::drop_oldest});
  Emitter emitter(std::move(config));
  stuck->stall();
  Settlements settlements;
  constexpr int kMore = 100;
  constexpr int kFirst = 1000;  // the new commits' numbers: after the backlog's
  for (int k = kFirst; k < kFirst + kMore; ++k) {
    Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit("big", big_payload(k)).ok());
    ASSERT_TRUE(tx.commit(settlements.for_commit(k)).ok()) << "commit " << k;
  }
  EXPECT_LE(emitter.stats().spool_bytes, 2u << 20) << "back within the budget";
  stuck->release();
  ASSERT_TRUE(emitter.drain(kWait).ok());

  const AdapterStats s = emitter.stats().adapters[0];
  EXPECT_EQ(s.received, static_cast<std::uint64_t>(backlog + kMore)) << "each event once";
  EXPECT_EQ(s.delivered + s.dropped, s.received);
  EXPECT_GT(s.dropped, 0u);
  EXPECT_EQ(sum_counts(telemetry.records(kSpoolDropped)), s.dropped);
  const std::vector<int> got = arrivals(*stuck);
  EXPECT_EQ(got.size(), s.delivered);
  EXPECT_TRUE(std::is_sorted(got.begin(), got.end()));
  EXPECT_EQ(std::adjacent_find(got.begin(), got.end()), got.end()) << "a duplicate";
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back(), kFirst + kMore - 1) << "the newest are kept";
  // The old backlog came first; what it got of it was read before the reclaims (its queue
  // and window, delivered unprotected) or after them.
  const auto first_new = std::lower_bound(got.begin(), got.end(), kFirst);
  EXPECT_LT(first_new - got.begin(), backlog) << "it let go of some of the old backlog";
  if (first_new != got.begin()) {
    EXPECT_LT(*(first_new - 1), backlog);
  }
  const std::map<int, Settlement> last = settlements.last();
  const std::set<int> delivered(got.begin(), got.end());
  for (int k = kFirst; k < kFirst + kMore; ++k) {
    ASSERT_EQ(settlements.calls().at(k), 1) << "commit " << k;
    EXPECT_EQ(last.at(k).adapters.at(0).dropped == 1, delivered.count(k) == 0) << "commit " << k;
  }
}

TEST_P(SpoolOverflowTest, RestartedOverBudgetABlockingLaneLosesNothingAndCommitsResume) {
  TempDir dir;
  const int backlog = fill_four_mebibytes(dir.path(), GetParam());
  auto stuck = std::make_shared<FaultyAdapter>("a");
  Config config = small_spool(dir.path(), GetParam());  // 2 MiB
  config.pipeline.block_timeout = std::chrono::milliseconds(20);
  config.add_adapter(stuck, {.buffer_size = 10, .overflow = Overflow::block});
  Emitter emitter(std::move(config));
  stuck->stall();
  {
    Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit("big", big_payload(1000)).ok());
    EXPECT_EQ(tx.commit().code(), Errc::overloaded) << "over budget, nothing can be freed";
  }
  stuck->release();
  ASSERT_TRUE(emitter.drain(kWait).ok());
  constexpr int kMore = 50;
  for (int k = 1000; k < 1000 + kMore; ++k) {
    Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit("big", big_payload(k)).ok());
    ASSERT_TRUE(tx.commit().ok()) << "commit " << k;
  }
  ASSERT_TRUE(emitter.drain(kWait).ok());
  const AdapterStats s = emitter.stats().adapters[0];
  EXPECT_EQ(s.delivered, static_cast<std::uint64_t>(backlog + kMore));
  EXPECT_EQ(s.dropped, 0u);
  std::vector<int> expected;
  for (int k = 0; k < backlog; ++k)
    expected.push_back(k);
  for (int k = 1000; k < 1000 + kMore; ++k)
    expected.push_back(k);
  EXPECT_EQ(arrivals(*stuck), expected) << "every acknowledged event, once, in order";
}

}  // namespace
}  // namespace emissions
