// The client's request queue (src/ring_queue.hpp): first in, first out across the end of its
// buffer and while it grows, a slot emptied as its element is taken, and no allocation in
// the steady state (its capacity stays put).
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ring_queue.hpp"

namespace {

using emissions::detail::webhooks::RingQueue;

TEST(WebhookRingQueue, KeepsOrderWhenItGrowsWithItsElementsWrappedAroundTheEnd) {
  RingQueue<std::string> queue;
  int next_in = 0;
  int next_out = 0;
  // Fill the first buffer, take a few so the head moves on, refill past the end (wrapped),
  // then push beyond the capacity: the growth must keep the order.
  for (int i = 0; i < 16; ++i)
    queue.push_back(std::to_string(next_in++));
  ASSERT_EQ(queue.capacity(), 16U);
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(queue.take_front(), std::to_string(next_out++));
  for (int i = 0; i < 5 + 20; ++i)
    queue.push_back(std::to_string(next_in++));
  EXPECT_EQ(queue.capacity(), 64U);
  EXPECT_EQ(queue.size(), static_cast<std::size_t>(next_in - next_out));
  while (!queue.empty())
    EXPECT_EQ(queue.take_front(), std::to_string(next_out++));
  EXPECT_EQ(next_out, next_in);
}

TEST(WebhookRingQueue, KeepsItsCapacityWhenFilledAndEmptiedOverAndOver) {
  RingQueue<std::string> queue;
  for (int i = 0; i < 10; ++i)
    queue.push_back(std::to_string(i));
  const std::size_t capacity = queue.capacity();
  int next_in = 10;
  int next_out = 0;
  for (int round = 0; round < 1000; ++round) {
    // The head goes round the buffer many times; the queue never holds more than 10.
    queue.push_back(std::to_string(next_in++));
    EXPECT_EQ(queue.take_front(), std::to_string(next_out++));
  }
  EXPECT_EQ(queue.capacity(), capacity);
  EXPECT_EQ(queue.size(), 10U);
}

TEST(WebhookRingQueue, ATakenElementLeavesNothingOwnedInItsSlot) {
  // What was taken is released by whoever took it: the queue keeps no reference to it.
  RingQueue<std::shared_ptr<int>> queue;
  auto value = std::make_shared<int>(7);
  const std::weak_ptr<int> watch = value;
  queue.push_back(std::move(value));
  {
    const std::shared_ptr<int> taken = queue.take_front();
    EXPECT_EQ(*taken, 7);
  }
  EXPECT_TRUE(watch.expired());
  EXPECT_TRUE(queue.empty());
}

TEST(WebhookRingQueue, SwapHandsOverTheElementsInOrder) {
  RingQueue<std::string> queue;
  for (int i = 0; i < 20; ++i)
    queue.push_back(std::to_string(i));
  for (int i = 0; i < 3; ++i)
    (void)queue.take_front();
  RingQueue<std::string> other;
  other.swap(queue);
  EXPECT_TRUE(queue.empty());
  std::vector<std::string> seen;
  while (!other.empty())
    seen.push_back(other.take_front());
  ASSERT_EQ(seen.size(), 17U);
  for (std::size_t i = 0; i < seen.size(); ++i)
    EXPECT_EQ(seen[i], std::to_string(i + 3));
}

TEST(WebhookRingQueue, AMovedFromQueueIsEmptyAndUsable) {
  // Found in review: the implicit moves left the source's count without its slots, so a
  // take_front() on it read past an empty buffer.
  RingQueue<std::string> queue;
  for (int i = 0; i < 5; ++i)
    queue.push_back(std::to_string(i));
  RingQueue<std::string> moved(std::move(queue));
  EXPECT_TRUE(queue.empty());  // NOLINT(bugprone-use-after-move): the contract under test
  EXPECT_EQ(moved.size(), 5U);
  RingQueue<std::string> assigned;
  assigned.push_back("old");
  assigned = std::move(moved);
  EXPECT_TRUE(moved.empty());  // NOLINT(bugprone-use-after-move)
  ASSERT_EQ(assigned.size(), 5U);
  EXPECT_EQ(assigned.take_front(), "0");
  queue.push_back("again");
  EXPECT_EQ(queue.take_front(), "again");
}

}  // namespace
