// The pieces that keep the asynchronous hot path cheap: WaitChannel (a futex call only for a
// parked waiter not yet woken), DeliveryBlocks (delivery states' recycled memory, given back
// from any thread) and BatchPool (as many small batches kept as the queues hold).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>
#include <vector>

#include "common/parking.hpp"
#include "common/wait.hpp"
#include "pipeline/batch.hpp"
#include "pipeline/delivery_state.hpp"

namespace {

using emissions::Deadline;
using emissions::detail::Batch;
using emissions::detail::BatchPool;
using emissions::detail::DeliveryBlocks;
using emissions::detail::WaitChannel;

Deadline in_30s() {
  return std::chrono::steady_clock::now() + std::chrono::seconds(30);
}

TEST(WaitChannelTest, EveryParkedWaiterIsWokenByOneNotifyAll) {
  WaitChannel channel;
  std::atomic<bool> go{false};
  std::atomic<int> woken{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 4; ++i) {
    waiters.emplace_back([&] {
      if (emissions::detail::wait_until(
              channel, [&] { return go.load(); }, in_30s()))
        ++woken;
    });
  }
  // Let them park (not needed for correctness: a late waiter sees `go` at once).
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  go.store(true);
  channel.notify();
  for (auto& t : waiters)
    t.join();
  EXPECT_EQ(woken.load(), 4);
}

TEST(WaitChannelTest, NotifyOneWakesEachParkedWaiterInTurnNoneIsLost) {
  // Tokens handed out one at a time, each with notify(1): every waiter gets exactly one,
  // also when a notify comes while an earlier one's waiter is woken but not yet running.
  constexpr int kWaiters = 3;
  constexpr int kRounds = 2000;
  WaitChannel channel;
  std::atomic<int> tokens{0};
  std::atomic<int> taken{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < kWaiters; ++i) {
    waiters.emplace_back([&] {
      for (;;) {
        bool got = false;
        const bool ok = emissions::detail::wait_until(
            channel,
            [&] {
              int t = tokens.load();
              while (t > 0) {
                if (tokens.compare_exchange_weak(t, t - 1)) {
                  got = true;
                  return true;
                }
              }
              return t < 0;  // -1: stop
            },
            in_30s());
        if (!ok || !got) return;
        taken.fetch_add(1);
      }
    });
  }
  for (int r = 0; r < kRounds; ++r) {
    tokens.fetch_add(1);
    channel.notify(1);
    if (r % 64 == 0) std::this_thread::yield();
  }
  // Every token is taken (each wait has a 30 s deadline: a lost wake-up shows as a miss).
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (taken.load() < kRounds && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(taken.load(), kRounds);
  EXPECT_EQ(tokens.load(), 0);
  tokens.store(-1);
  channel.notify();
  for (auto& t : waiters)
    t.join();
}

TEST(WaitChannelTest, PingPongBetweenTwoThreadsCompletesEveryRound) {
  constexpr std::uint32_t kRounds = 20000;
  WaitChannel to_b;
  WaitChannel to_a;
  std::atomic<std::uint32_t> ball{0};  // even: A's turn, odd: B's
  std::atomic<std::uint32_t> b_rounds{0};
  std::thread b([&] {
    for (std::uint32_t i = 0; i < kRounds; ++i) {
      if (!emissions::detail::wait_until(
              to_b, [&] { return ball.load() == 2 * i + 1; }, in_30s()))
        return;
      ball.store(2 * i + 2);
      to_a.notify();
      b_rounds.fetch_add(1);
    }
  });
  std::uint32_t a_rounds = 0;
  for (std::uint32_t i = 0; i < kRounds; ++i) {
    ball.store(2 * i + 1);
    to_b.notify();
    if (!emissions::detail::wait_until(
            to_a, [&] { return ball.load() == 2 * i + 2; }, in_30s()))
      break;
    ++a_rounds;
  }
  b.join();
  EXPECT_EQ(a_rounds, kRounds);
  EXPECT_EQ(b_rounds.load(), kRounds);
}

TEST(DeliveryBlocksTest, ABlockGivenBackFromAnotherThreadIsTakenAgain) {
  auto* blocks = new DeliveryBlocks();
  void* first = blocks->take();
  std::thread([&] { blocks->give_back(first); }).join();
  void* again = blocks->take();
  EXPECT_EQ(again, first);
  blocks->give_back(again);
  blocks->release();  // the owner's: every block is back, so it is freed (ASan checks)
}

TEST(DeliveryBlocksTest, ThePoolOutlivesItsOwnerUntilEveryBlockIsBack) {
  constexpr int kBlocks = 1000;
  auto* blocks = new DeliveryBlocks();
  std::vector<void*> taken;
  std::set<void*> distinct;
  for (int i = 0; i < kBlocks; ++i) {
    taken.push_back(blocks->take());
    distinct.insert(taken.back());
  }
  EXPECT_EQ(distinct.size(), static_cast<std::size_t>(kBlocks));
  blocks->release();  // the owner goes first; the blocks are still out
  // Given back from two threads at once; the last one frees the pool (ASan and TSan check).
  std::thread t1([&] {
    for (int i = 0; i < kBlocks; i += 2)
      blocks->give_back(taken[static_cast<std::size_t>(i)]);
  });
  std::thread t2([&] {
    for (int i = 1; i < kBlocks; i += 2)
      blocks->give_back(taken[static_cast<std::size_t>(i)]);
  });
  t1.join();
  t2.join();
}

TEST(DeliveryBlocksTest, BlocksCycleBetweenATakerAndAGiverWithoutGrowing) {
  // The consumer takes, another thread gives back: the pool holds no more blocks than were
  // out at once (here at most kOut), so a long run reuses the same few.
  constexpr int kOut = 8;
  constexpr int kCycles = 20000;
  auto* blocks = new DeliveryBlocks();
  std::atomic<void*> slots[kOut] = {};
  std::atomic<bool> stop{false};
  std::thread giver([&] {
    while (!stop.load()) {
      for (auto& slot : slots) {
        if (void* p = slot.exchange(nullptr)) blocks->give_back(p);
      }
    }
    for (auto& slot : slots) {
      if (void* p = slot.exchange(nullptr)) blocks->give_back(p);
    }
  });
  std::set<void*> seen;
  for (int i = 0; i < kCycles; ++i) {
    auto& slot = slots[i % kOut];
    while (slot.load() != nullptr)
      std::this_thread::yield();
    void* p = blocks->take();
    seen.insert(p);
    slot.store(p);
  }
  stop.store(true);
  giver.join();
  blocks->release();
  // At most kOut in the giver's hands plus the one being taken, plus those in the returned
  // stack not yet taken back: never one per cycle.
  EXPECT_LE(seen.size(), static_cast<std::size_t>(4 * kOut));
}

// A batch from the pool with one event; `recycled` tells whether it was kept by the pool
// (its slots survive recycling; a new batch has none: addresses alone would not tell, as
// malloc may hand a freed batch's address to a new one).
Batch* one_event_batch(BatchPool& pool, bool& recycled) {
  Batch* batch = pool.acquire().release();
  recycled = batch->slots.capacity() != 0;
  const auto now = std::chrono::system_clock::now();
  batch->append(emissions::EventName("e"), 1, nullptr, emissions::EventId::generate(now), now);
  return batch;
}

TEST(BatchPoolTest, KeepsAsManySmallBatchesAsReserved) {
  // A queue of 5000 events full of one-event commits: every batch it gives back is kept,
  // so the next 5000 commits allocate nothing (before, 1024 were kept and the rest freed).
  constexpr std::size_t kBatches = 5000;
  BatchPool pool;
  pool.reserve(kBatches);
  std::vector<Batch*> out;
  bool recycled = false;
  for (std::size_t i = 0; i < kBatches; ++i) {
    out.push_back(one_event_batch(pool, recycled));
    ASSERT_FALSE(recycled);
  }
  for (Batch* batch : out)
    pool.recycle(batch);
  out.clear();
  std::size_t reused = 0;
  for (std::size_t i = 0; i < kBatches; ++i) {
    out.push_back(one_event_batch(pool, recycled));
    if (recycled) ++reused;
  }
  EXPECT_EQ(reused, kBatches);
  for (Batch* batch : out)
    pool.recycle(batch);
}

TEST(BatchPoolTest, GrownBatchesAreKeptToTheSmallerBound) {
  BatchPool pool;
  pool.reserve(4 * BatchPool::kCapacity);
  std::vector<Batch*> out;
  for (std::size_t i = 0; i < 2 * BatchPool::kCapacity; ++i) {
    Batch* batch = pool.acquire().release();
    batch->slots.resize(Batch::kInitialSlots + 1);  // grown past a small batch
    out.push_back(batch);
  }
  for (Batch* batch : out)
    pool.recycle(batch);
  std::size_t grown = 0;
  out.clear();
  for (std::size_t i = 0; i < 2 * BatchPool::kCapacity; ++i) {
    out.push_back(pool.acquire().release());
    if (out.back()->slots.capacity() > Batch::kInitialSlots) ++grown;
  }
  EXPECT_EQ(grown, BatchPool::kCapacity);
  for (Batch* batch : out)
    pool.recycle(batch);
}

}  // namespace
