// OffsetTracker: the offset a KafkaSource commits is the first message not yet handled,
// whatever order messages are settled in.
#include <gtest/gtest.h>

#include "offset_tracker.hpp"

namespace {

using emissions::detail::kafka::OffsetTracker;

TEST(KafkaOffsetTracker, NothingIsCommittableBeforeTheFirstMessageIsSettled) {
  OffsetTracker t;
  EXPECT_TRUE(t.idle());
  EXPECT_FALSE(t.committable());
  t.add(10);
  t.add(11);
  EXPECT_FALSE(t.idle());
  t.settle(11);
  EXPECT_FALSE(t.committable()) << "10 is not handled: committing past it could lose it";
}

TEST(KafkaOffsetTracker, TheCommittableOffsetIsTheFirstUnsettledMessage) {
  OffsetTracker t;
  for (std::int64_t o = 0; o < 5; ++o)
    t.add(o);
  t.settle(0);
  t.settle(1);
  t.settle(3);
  EXPECT_EQ(t.committable(), 2);
  t.settle(2);
  EXPECT_EQ(t.committable(), 4);
  t.settle(4);
  EXPECT_EQ(t.committable(), 5);  // everything read is handled: the next one to read
  EXPECT_TRUE(t.idle());
}

TEST(KafkaOffsetTracker, AnOffsetIsCommittedOnceAndGapsAreFine) {
  OffsetTracker t;
  t.add(3);
  t.add(7);  // compaction or transaction markers leave gaps
  t.settle(3);
  EXPECT_EQ(t.committable(), 4);
  t.committed(4);
  EXPECT_FALSE(t.committable());
  t.settle(7);
  EXPECT_EQ(t.committable(), 8);
  t.settle(99);  // unknown: ignored
  EXPECT_EQ(t.committable(), 8);
}

TEST(KafkaOffsetTracker, HandledThroughIsWhereReadingCanResumeWithoutRepeats) {
  OffsetTracker t;
  EXPECT_FALSE(t.handled_through());
  t.add(5);
  t.add(6);
  t.settle(6);
  EXPECT_FALSE(t.handled_through()) << "5 is not handled";
  t.settle(5);
  EXPECT_EQ(t.handled_through(), 7);
}

TEST(KafkaOffsetTracker, AResumedPartitionCommitsItsStartUnlessTheGroupHasIt) {
  OffsetTracker mine;  // the group's commit is behind what this consumer handled
  mine.resume_at(40, /*stored=*/false);
  EXPECT_EQ(mine.committable(), 40) << "the next owner must not read 0..39 again";
  EXPECT_EQ(mine.handled_through(), 40);
  mine.add(40);
  mine.settle(40);
  EXPECT_EQ(mine.committable(), 41);

  OffsetTracker theirs;  // the group's commit is where reading starts
  theirs.resume_at(90, /*stored=*/true);
  EXPECT_FALSE(theirs.committable());
  EXPECT_EQ(theirs.handled_through(), 90);
}

TEST(KafkaOffsetTracker, AnOffsetReadAgainIsKeptInOrderAndOnce) {
  // After the consumer's position was reset, offsets may come again or lower.
  OffsetTracker t;
  t.add(5);
  t.add(6);
  t.add(6);  // pending already: ignored
  t.add(3);  // lower than the last: kept in order
  t.settle(5);
  t.settle(6);
  EXPECT_FALSE(t.committable()) << "3 is not handled";
  t.settle(3);
  EXPECT_EQ(t.committable(), 7);
  EXPECT_TRUE(t.idle()) << "6 was pending once, settled once";
}

}  // namespace
