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

}  // namespace
