// The spool's per-lane FIFO of commits in flight (src/spool/spool_state.hpp): a ring that
// grows and wraps, checked against std::deque.
#include <gtest/gtest.h>

#include <cstdint>
#include <deque>

#include "spool/spool_state.hpp"

namespace emissions::detail::spool {
namespace {

void expect_same(const Fifo<std::uint64_t>& fifo, const std::deque<std::uint64_t>& want) {
  ASSERT_EQ(fifo.size(), want.size());
  EXPECT_EQ(fifo.empty(), want.empty());
  for (std::size_t i = 0; i < want.size(); ++i)
    EXPECT_EQ(fifo[i], want[i]) << "entry " << i;
}

TEST(SpoolFifo, KeepsOrderAcrossWrapsAndGrowth) {
  Fifo<std::uint64_t> fifo;
  std::deque<std::uint64_t> want;
  std::uint64_t next = 0;
  // Rounds that push more than they pop (growth with the head anywhere in the ring), then
  // rounds that pop more (wrap-around at a fixed capacity), pop_back now and then.
  for (int round = 0; round < 200; ++round) {
    const int pushes = round < 100 ? 7 : 3;
    const int pops = round < 100 ? 5 : 4;
    for (int i = 0; i < pushes; ++i) {
      fifo.push_back(next);
      want.push_back(next++);
    }
    if (round % 9 == 0) {
      fifo.pop_back();
      want.pop_back();
    }
    for (int i = 0; i < pops && !want.empty(); ++i) {
      EXPECT_EQ(fifo.front(), want.front());
      fifo.pop_front();
      want.pop_front();
    }
    expect_same(fifo, want);
    if (!want.empty()) {
      EXPECT_EQ(fifo.back(), want.back());
    }
  }
  while (!want.empty()) {
    fifo.pop_front();
    want.pop_front();
  }
  expect_same(fifo, want);
  fifo.push_back(42);
  EXPECT_EQ(fifo.front(), 42u);
  EXPECT_EQ(fifo.size(), 1u);
}

}  // namespace
}  // namespace emissions::detail::spool
