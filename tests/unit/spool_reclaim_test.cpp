// Spool::reclaim (src/spool/spool_overflow.cpp), driven step by step as a relay would drive
// it: a commit a relay handed over before the reclaim stays the relay's to deliver, one it
// read but had not handed over is dropped (and may not be handed over after), and each
// dropped commit is counted and settled exactly once.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "spool/spool.hpp"
#include "temp_dir.hpp"

namespace emissions::detail::spool {
namespace {

using test_support::TempDir;

constexpr std::uint64_t kSegmentBytes = 1u << 20;

std::vector<Event> one_event(int k) {
  Event e;
  e.name = EventName("big");
  e.payload = std::string(16 * 1024, static_cast<char>('a' + k % 26));
  e.id = EventId(1, static_cast<std::uint64_t>(k) + 1);
  return {e};
}

struct Fixture {
  explicit Fixture(const TempDir& dir)
      : spool(Spool::open(
            SpoolOptions{
                .dir = dir.path(), .max_bytes = 2 * kSegmentBytes, .segment_bytes = kSegmentBytes},
            {"a"})) {
    spool->set_overflow({Overflow::drop_oldest}, [this](std::size_t lane, std::uint64_t events) {
      EXPECT_EQ(lane, 0u);
      reported += events;
    });
  }

  // Appends one commit (with an on_settled callback); its seq.
  std::uint64_t append(int k) {
    std::function<void(const Settlement&)> callback = [this, k](const Settlement& s) {
      ++calls[k];
      settled[k] = s.adapters.at(0);
    };
    bool dropped = false;
    const Status s = spool->append(one_event(k), 0, scratch, std::chrono::milliseconds(0),
                                   &callback, nullptr, &dropped);
    EXPECT_TRUE(s.ok()) << s.to_string();
    EXPECT_FALSE(dropped);
    return spool->log().end_seq() - 1;
  }

  // Appends commit `k` and reads it with `reader`, as a relay does: its position.
  LogPosition append_and_read(int k, LogReader& reader) {
    append(k);
    LogReader::Next next{};
    std::vector<Event> events;
    LogPosition at;
    EXPECT_TRUE(reader.next(next, events, at).ok());
    EXPECT_EQ(next, LogReader::Next::commit);
    return at;
  }

  // Appends commits `k`, k + 1, ... (commit k is seq k + 1) until the oldest segment has
  // been reclaimed once; the number of commits appended in all.
  int fill_until_reclaimed(int k) {
    const std::uint64_t first_segment = spool->log().segments().front();
    while (spool->log().segments().front() == first_segment && k < 1000)
      append(k++);
    return k;
  }

  std::unique_ptr<Spool> spool;
  std::vector<std::uint8_t> scratch;
  std::uint64_t reported = 0;
  std::map<int, int> calls;
  std::map<int, AdapterStats> settled;
};

TEST(SpoolReclaimTest, ACommitReadButNotHandedOverIsDroppedAndRefusedAfterwards) {
  TempDir dir;
  Fixture f(dir);
  LogReader reader(f.spool->log(), f.spool->start(0));
  const LogPosition at = f.append_and_read(0, reader);
  // read, not yet published()

  const int commits = f.fill_until_reclaimed(1);
  const std::uint64_t fence_seq = f.spool->log().segments().front();
  // Every commit before the fence was dropped, the one read included: none was handed over.
  EXPECT_EQ(f.reported, fence_seq - 1);
  EXPECT_FALSE(f.spool->published(0, at)) << "reclaimed: the relay may not hand it over";
  const std::optional<LogPosition> fence = f.spool->fence(0, reader.cursor().seq);
  ASSERT_TRUE(fence.has_value());
  EXPECT_EQ(fence->seq, fence_seq);
  for (int k = 0; k < commits; ++k) {
    const bool before_fence = static_cast<std::uint64_t>(k) + 1 < fence_seq;
    EXPECT_EQ(f.calls[k], before_fence ? 1 : 0) << "commit " << k;
    if (before_fence) {
      EXPECT_EQ(f.settled[k].dropped, 1u) << "commit " << k;
      EXPECT_EQ(f.settled[k].received, 1u) << "commit " << k;
    }
  }
  EXPECT_FALSE(f.spool->fence(0, fence_seq).has_value()) << "a relay at the fence reads on";
  f.spool->close();
}

TEST(SpoolReclaimTest, ACommitHandedOverBeforeTheReclaimIsStillTheRelaysToSettle) {
  TempDir dir;
  Fixture f(dir);
  LogReader reader(f.spool->log(), f.spool->start(0));
  const LogPosition at = f.append_and_read(0, reader);
  ASSERT_TRUE(f.spool->published(0, at));
  f.spool->handed_over(0, reader.cursor());

  f.fill_until_reclaimed(1);
  const std::uint64_t fence_seq = f.spool->log().segments().front();
  EXPECT_EQ(f.reported, fence_seq - 2) << "all but the commit handed over";
  EXPECT_EQ(f.calls[0], 0) << "not settled by the reclaim";
  AdapterStats delivered;
  delivered.delivered = 1;
  delivered.received = 1;
  f.spool->settled(0, at.seq, delivered);  // its late settlement: reported as it came
  EXPECT_EQ(f.calls[0], 1);
  EXPECT_EQ(f.settled[0].delivered, 1u);
  EXPECT_EQ(f.settled[0].dropped, 0u);
  for (int k = 1; static_cast<std::uint64_t>(k) + 1 < fence_seq; ++k) {
    EXPECT_EQ(f.calls[k], 1) << "commit " << k;
    EXPECT_EQ(f.settled[k].dropped, 1u) << "commit " << k;
  }
  f.spool->close();
}

TEST(SpoolReclaimTest, ACommitBeingHandedOverDuringTheReclaimIsStillTheRelays) {
  TempDir dir;
  Fixture f(dir);
  LogReader reader(f.spool->log(), f.spool->start(0));
  const LogPosition at = f.append_and_read(0, reader);
  ASSERT_TRUE(f.spool->published(0, at));  // the relay waits for room in its queue

  f.fill_until_reclaimed(1);
  const std::uint64_t fence_seq = f.spool->log().segments().front();
  EXPECT_EQ(f.reported, fence_seq - 2) << "all but the commit being handed over";
  EXPECT_EQ(f.calls[0], 0);
  f.spool->handed_over(0, reader.cursor());  // the relay's queue had room at last
  EXPECT_TRUE(f.spool->fence(0, reader.cursor().seq).has_value()) << "it reads on at the fence";
  f.spool->close();
}

TEST(SpoolReclaimTest, ACommitSettledBeforeItsRelayMovedOnIsNotDroppedByAReclaim) {
  // A fast adapter settles a relayed commit before its relay calls handed_over(): the
  // commit has left in_flight, and the lane's cursor is still at it.
  TempDir dir;
  Fixture f(dir);
  LogReader reader(f.spool->log(), f.spool->start(0));
  const LogPosition at = f.append_and_read(0, reader);
  ASSERT_TRUE(f.spool->published(0, at));
  AdapterStats delivered;
  delivered.delivered = 1;
  delivered.received = 1;
  f.spool->settled(0, at.seq, delivered);
  ASSERT_EQ(f.calls[0], 1);

  f.fill_until_reclaimed(1);
  const std::uint64_t fence_seq = f.spool->log().segments().front();
  EXPECT_EQ(f.reported, fence_seq - 2) << "all but the commit handed over and settled";
  EXPECT_EQ(f.calls[0], 1) << "settled once, as delivered";
  EXPECT_EQ(f.settled[0].delivered, 1u);
  EXPECT_EQ(f.settled[0].dropped, 0u);
  f.spool->handed_over(0, reader.cursor());
  for (int k = 1; static_cast<std::uint64_t>(k) + 1 < fence_seq; ++k) {
    EXPECT_EQ(f.calls[k], 1) << "commit " << k;
    EXPECT_EQ(f.settled[k].dropped, 1u) << "commit " << k;
  }
  f.spool->close();
}

TEST(SpoolReclaimTest, ACommitWithdrawnAfterAReclaimPassedItIsDroppedOnce) {
  // The relay claimed the commit (so the reclaim left it alone), then could not hand it
  // over: nobody else will, so it is the withdraw that drops it.
  TempDir dir;
  Fixture f(dir);
  LogReader reader(f.spool->log(), f.spool->start(0));
  const LogPosition at = f.append_and_read(0, reader);
  ASSERT_TRUE(f.spool->published(0, at));

  f.fill_until_reclaimed(1);
  const std::uint64_t fence_seq = f.spool->log().segments().front();
  EXPECT_EQ(f.reported, fence_seq - 2);
  EXPECT_EQ(f.calls[0], 0);
  EXPECT_TRUE(f.spool->withdraw(0, at, 1)) << "dropped: the relay reads on at the fence";
  EXPECT_EQ(f.reported, fence_seq - 1) << "every commit before the fence, once";
  EXPECT_EQ(f.calls[0], 1);
  EXPECT_EQ(f.settled[0].dropped, 1u);
  EXPECT_EQ(f.settled[0].received, 1u);
  EXPECT_FALSE(f.spool->published(0, at)) << "and it may not be handed over after";
  f.spool->close();
}

TEST(SpoolReclaimTest, ACommitWithdrawnBeforeAnyReclaimIsTheRelaysToRetry) {
  TempDir dir;
  Fixture f(dir);
  LogReader reader(f.spool->log(), f.spool->start(0));
  const LogPosition at = f.append_and_read(0, reader);
  ASSERT_TRUE(f.spool->published(0, at));
  EXPECT_FALSE(f.spool->withdraw(0, at, 1));
  EXPECT_EQ(f.reported, 0u);
  EXPECT_EQ(f.calls[0], 0);
  // Withdrawn, so unclaimed: a reclaim now drops it with the rest.
  f.fill_until_reclaimed(1);
  const std::uint64_t fence_seq = f.spool->log().segments().front();
  EXPECT_EQ(f.reported, fence_seq - 1);
  EXPECT_EQ(f.calls[0], 1);
  EXPECT_EQ(f.settled[0].dropped, 1u);
  f.spool->close();
}

TEST(SpoolReclaimTest, ACommitThatCanNeverFitIsRefusedAtOnceAndReclaimsNothing) {
  TempDir dir;
  Fixture f(dir);
  for (int k = 0; k < 100; ++k)
    f.append(k);  // more than one segment behind the lane, which never reads
  const std::vector<std::uint64_t> before = f.spool->log().segments();
  ASSERT_GE(before.size(), 2u);
  // Bigger than max_bytes minus the segment being written: no reclaim could make room.
  Event huge;
  huge.name = EventName("huge");
  huge.payload = std::string(kSegmentBytes + 1024, 'h');
  huge.id = EventId(2, 1);
  std::function<void(const Settlement&)> callback = [](const Settlement&) {
    ADD_FAILURE() << "a refused commit is not settled";
  };
  bool dropped = false;
  const Status s = f.spool->append(std::vector<Event>{huge}, 0, f.scratch,
                                   std::chrono::milliseconds(0), &callback, nullptr, &dropped);
  EXPECT_EQ(s.code(), Errc::invalid_argument) << s.to_string();
  EXPECT_NE(s.message().find("max_bytes"), std::string::npos) << s.message();
  EXPECT_FALSE(dropped);
  EXPECT_EQ(f.reported, 0u) << "no backlog dropped for it";
  EXPECT_EQ(f.spool->log().segments(), before);
  EXPECT_TRUE(static_cast<bool>(callback)) << "the caller keeps its callback";
  f.spool->close();
}

TEST(SpoolReclaimTest, ABlockingLaneHoldingTheOldestSegmentStopsTheReclaim) {
  TempDir dir;
  auto spool = Spool::open(
      SpoolOptions{
          .dir = dir.path(), .max_bytes = 2 * kSegmentBytes, .segment_bytes = kSegmentBytes},
      {"dropping", "blocking"});
  std::uint64_t reported = 0;
  spool->set_overflow({Overflow::drop_oldest, Overflow::block},
                      [&](std::size_t, std::uint64_t events) { reported += events; });
  std::vector<std::uint8_t> scratch;
  Status s;
  bool dropped = false;
  for (int k = 0; k < 1000 && s.ok(); ++k) {
    s = spool->append(one_event(k), 0, scratch, std::chrono::milliseconds(0), nullptr, nullptr,
                      &dropped);
  }
  EXPECT_EQ(s.code(), Errc::overloaded) << s.to_string();
  EXPECT_FALSE(dropped) << "a blocking lane: refused, not dropped";
  EXPECT_EQ(reported, 0u);
  spool->close();
}

}  // namespace
}  // namespace emissions::detail::spool
