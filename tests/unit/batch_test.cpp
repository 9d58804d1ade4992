// A transaction's batch (pipeline/batch.hpp): what reset() keeps and what it frees, and the
// "plain" shortcut that lets whoever recycles a batch of primitive payloads skip its events.
#include "pipeline/batch.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <deque>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

using emissions::EventId;
using emissions::EventName;
using emissions::detail::Batch;
using emissions::detail::BatchPool;

void append(Batch& batch, nlohmann::json payload, nlohmann::json metadata = nullptr) {
  const auto now = std::chrono::system_clock::now();
  batch.append(EventName("e"), std::move(payload), std::move(metadata), EventId::generate(now),
               now);
}

TEST(BatchTest, PrimitivePayloadsWithoutMetadataKeepTheBatchPlain) {
  Batch batch;
  append(batch, 1);
  append(batch, true);
  append(batch, 2.5);
  append(batch, nullptr);
  EXPECT_TRUE(batch.plain);
  for (std::size_t i = 0; i < batch.size; ++i) {
    EXPECT_TRUE(batch.slots[i].metadata.is_object()) << i;
    EXPECT_TRUE(batch.slots[i].metadata.empty()) << i;
  }
  batch.reset();
  EXPECT_EQ(batch.size, 0u);
  EXPECT_TRUE(batch.plain);
}

TEST(BatchTest, APayloadThatOwnsMemoryOrAnyMetadataMakesResetFreeAndEmptyEverySlot) {
  for (int kind = 0; kind < 4; ++kind) {
    Batch batch;
    append(batch, 1);
    switch (kind) {
      case 0:
        append(batch, nlohmann::json{{"id", 7}});
        break;
      case 1:
        append(batch, std::string(100, 'x'));
        break;
      case 2:
        append(batch, nlohmann::json::array({1, 2}));
        break;
      default:
        append(batch, 2, nlohmann::json{{"trace", "t-1"}});
        break;
    }
    EXPECT_FALSE(batch.plain) << kind;
    batch.reset();
    EXPECT_TRUE(batch.plain) << kind;
    EXPECT_TRUE(batch.slots[1].metadata.is_object()) << kind;
    EXPECT_TRUE(batch.slots[1].metadata.empty()) << kind;
    EXPECT_FALSE(Batch::owns_memory(batch.slots[1].payload)) << kind;
  }
}

TEST(BatchTest, ARecycledSlotTakesNewEventsWithoutKeepingTheOldOnesMetadata) {
  Batch batch;
  append(batch, nlohmann::json{{"id", 1}}, nlohmann::json{{"trace", "old"}});
  batch.reset();
  append(batch, 5);
  EXPECT_TRUE(batch.plain);
  EXPECT_EQ(batch.slots[0].payload, 5);
  EXPECT_TRUE(batch.slots[0].metadata.empty());
  batch.reset();
  append(batch, 6);
  EXPECT_EQ(batch.slots[0].payload, 6);
  EXPECT_TRUE(batch.slots[0].metadata.empty());
}

TEST(BatchPoolTest, ARecycledBatchComesBackEmptyWithItsPayloadsDestroyedByTheThreadTakingIt) {
  // recycle() keeps the events (their memory is freed by the acquiring thread, usually the
  // committing one that allocated it); acquire() hands the batch out with no event.
  BatchPool pool;
  emissions::detail::BatchPtr batch = pool.acquire();
  append(*batch, nlohmann::json{{"order", std::string(200, 'x')}}, nlohmann::json{{"t", 1}});
  append(*batch, std::string(300, 'y'));
  Batch* raw = batch.release();
  std::thread([&] { pool.recycle(raw); }).join();
  EXPECT_EQ(raw->size, 2u);  // still there, in the pool
  emissions::detail::BatchPtr again = pool.acquire();
  ASSERT_EQ(again.get(), raw);
  EXPECT_EQ(again->size, 0u);
  EXPECT_TRUE(again->plain);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_FALSE(Batch::owns_memory(again->slots[i].payload)) << i;
    EXPECT_TRUE(again->slots[i].metadata.is_object()) << i;
    EXPECT_TRUE(again->slots[i].metadata.empty()) << i;
  }
  append(*again, 3);
  EXPECT_EQ(again->events().size(), 1u);
  EXPECT_EQ(again->events()[0].payload, 3);
  pool.recycle(again.release());
}

TEST(BatchPoolTest, AtMostKDeferredRecycledBatchesKeepTheirEvents) {
  // Found in review: with every recycled batch keeping its events, a burst of small commits
  // followed by large ones one at a time left the pool holding a large payload per pooled
  // batch (1,000 x 1 MiB while at most 1 MiB was ever live). Only kDeferred batches keep
  // their events; the others are reset as they are recycled.
  BatchPool pool;
  std::vector<Batch*> batches;
  for (std::size_t i = 0; i < BatchPool::kDeferred + 8; ++i) {
    emissions::detail::BatchPtr batch = pool.acquire();
    append(*batch, std::string(1000, 'p'));
    batches.push_back(batch.release());
  }
  for (Batch* batch : batches)
    pool.recycle(batch);
  std::size_t keeping = 0;
  for (const Batch* batch : batches)
    keeping += batch->size != 0 ? 1 : 0;
  EXPECT_EQ(keeping, BatchPool::kDeferred);
  // Plain batches (nothing to free) never take a deferred place.
  emissions::detail::BatchPtr plain = pool.acquire();  // a deferred one, reset here
  EXPECT_EQ(plain->size, 0u);
  append(*plain, 1);
  Batch* raw = plain.release();
  pool.recycle(raw);
  EXPECT_EQ(raw->size, 0u);
}

TEST(BatchPoolTest, AStaleBatchHandsItsOldEventsBackOneAppendAtATime) {
  // acquire_stale() (a transaction's emits): the deferred batch's old events are destroyed
  // by the appends that replace them (each old payload comes back in the caller's
  // argument), the ones left over by drop_stale() or reset(); none is ever live again.
  BatchPool pool;
  emissions::detail::BatchPtr batch = pool.acquire();
  for (int i = 0; i < 3; ++i)
    append(*batch, nlohmann::json{{"old", i}}, nlohmann::json{{"m", i}});
  Batch* raw = batch.release();
  pool.recycle(raw);
  emissions::detail::BatchPtr again = pool.acquire_stale();
  ASSERT_EQ(again.get(), raw);
  EXPECT_EQ(again->size, 0u);
  EXPECT_EQ(again->stale, 3u);
  EXPECT_TRUE(again->plain);
  EXPECT_TRUE(again->events().empty());

  nlohmann::json payload = nlohmann::json{{"new", 0}};
  const auto now = std::chrono::system_clock::now();
  again->append(EventName("e"), std::move(payload), nullptr, EventId::generate(now), now);
  EXPECT_EQ(payload, (nlohmann::json{{"old", 0}}));  // handed back, for the caller to destroy
  ASSERT_EQ(again->events().size(), 1u);
  EXPECT_EQ(again->events()[0].payload, (nlohmann::json{{"new", 0}}));
  EXPECT_TRUE(again->events()[0].metadata.is_object());
  EXPECT_TRUE(again->events()[0].metadata.empty());  // the old metadata is not kept

  again->drop_stale();  // what the commit does before the batch leaves the thread
  EXPECT_EQ(again->stale, 0u);
  for (std::size_t i = 1; i < 3; ++i) {
    EXPECT_FALSE(Batch::owns_memory(again->slots[i].payload)) << i;
    EXPECT_TRUE(again->slots[i].metadata.empty()) << i;
  }
  pool.recycle(again.release());

  // Stale slots left over when the batch is recycled or reset are emptied too.
  emissions::detail::BatchPtr third = pool.acquire_stale();
  ASSERT_EQ(third.get(), raw);
  EXPECT_EQ(third->stale, 1u);
  third->reset();
  EXPECT_EQ(third->stale, 0u);
  EXPECT_FALSE(Batch::owns_memory(third->slots[0].payload));
  pool.recycle(third.release());

  // Without a deferred batch it is acquire(): nothing stale.
  BatchPool fresh;
  EXPECT_EQ(fresh.acquire_stale()->stale, 0u);
}

TEST(BatchPoolTest, AtMostKDeferredBatchesAreOutWithStaleEventsAtOnce) {
  // Found in review: each transaction left open after one emit kept its batch's other old
  // events (100 open transactions kept 215 MB of dead 10 KB payloads). Past kDeferred loans
  // acquire_stale() destroys the old events as acquire() does; a loan ends with the
  // transaction's use of the batch (drop_stale(), reset() or recycle()).
  BatchPool pool;
  const auto deferred_batch = [&pool] {
    emissions::detail::BatchPtr batch = pool.acquire();
    append(*batch, std::string(1000, 'o'));
    append(*batch, std::string(1000, 'o'));
    pool.recycle(batch.release());
  };
  std::vector<emissions::detail::BatchPtr> open;
  for (std::size_t i = 0; i < BatchPool::kDeferred; ++i) {
    deferred_batch();
    open.push_back(pool.acquire_stale());
    ASSERT_EQ(open.back()->stale, 2u) << i;
  }
  EXPECT_EQ(pool.stale_loans(), BatchPool::kDeferred);

  deferred_batch();
  emissions::detail::BatchPtr over = pool.acquire_stale();
  EXPECT_EQ(over->stale, 0u);
  for (std::size_t i = 0; i < 2; ++i)
    EXPECT_FALSE(Batch::owns_memory(over->slots[i].payload)) << i;  // destroyed here
  EXPECT_EQ(pool.stale_loans(), BatchPool::kDeferred);
  pool.recycle(over.release());

  open.front()->drop_stale();  // the first transaction commits
  EXPECT_EQ(pool.stale_loans(), BatchPool::kDeferred - 1);
  deferred_batch();
  emissions::detail::BatchPtr next = pool.acquire_stale();
  EXPECT_EQ(next->stale, 2u);
  open.push_back(std::move(next));

  for (emissions::detail::BatchPtr& batch : open)  // the others end (rolled back, destroyed)
    pool.recycle(batch.release());
  EXPECT_EQ(pool.stale_loans(), 0u);
}

// A one-event batch from `pool` holding a payload of `bytes` bytes to free.
Batch* one_event(BatchPool& pool, std::size_t bytes) {
  emissions::detail::BatchPtr batch = pool.acquire_stale();
  append(*batch, std::string(bytes, 'e'));
  batch->drop_stale();  // what the commit does
  return batch.release();
}

TEST(BatchPoolTest, ASettlingThreadHandsBackAWindowOfSmallBatchesWithTheirEvents) {
  // An asynchronous adapter's thread (the webhook adapter's I/O thread) settles one-event
  // deliveries steadily while the committing thread, blocked by a full queue, takes batches
  // in bursts. With kDeferred places the settling thread destroyed the events of all but 32
  // of each burst itself, freeing what the committing thread had allocated. A reserved pool
  // keeps small batches with their events, and taking one destroys the next one's too, so
  // they do not pile up: each round's recycles find room.
  constexpr std::size_t kQueue = 2000;
  constexpr std::size_t kBurst = 500;
  BatchPool pool;
  pool.reserve(kQueue);
  std::deque<Batch*> out;
  for (std::size_t i = 0; i < kQueue; ++i)
    out.push_back(one_event(pool, 100));
  std::size_t reset_by_settler = 0;
  for (int round = 0; round < 8; ++round) {
    std::vector<Batch*> settled(out.begin(), out.begin() + kBurst);
    out.erase(out.begin(), out.begin() + kBurst);
    std::thread([&] {
      for (Batch* batch : settled) {
        pool.recycle(batch);
        if (batch->size == 0) ++reset_by_settler;  // still the pool's: nothing else runs
      }
    }).join();
    for (std::size_t i = 0; i < kBurst; ++i)
      out.push_back(one_event(pool, 100));
  }
  EXPECT_EQ(reset_by_settler, 0u);
  for (Batch* batch : out)
    pool.recycle(batch);
}

TEST(BatchPoolTest, SettlementsComingBackInBurstsOfThousandsStillLeaveTheEventsToTheCommitter) {
  // The webhook bench: one-event commits, a queue of 10,000, and the I/O thread settling
  // thousands at a time while the committing thread waits for room. Bounded at 1,024
  // batches, the pool had the I/O thread destroy most of each burst's payloads (two thirds
  // of them in the bench). Bounded by events (kDeferredSmallEvents), a burst of 3,000 fits.
  constexpr std::size_t kQueue = 10000;
  constexpr std::size_t kBurst = 3000;
  static_assert(kBurst <= BatchPool::kDeferredSmallEvents);
  BatchPool pool;
  pool.reserve(kQueue);
  std::deque<Batch*> out;
  for (std::size_t i = 0; i < kQueue; ++i)
    out.push_back(one_event(pool, 100));
  std::size_t reset_by_settler = 0;
  for (int round = 0; round < 4; ++round) {
    std::vector<Batch*> settled(out.begin(), out.begin() + kBurst);
    out.erase(out.begin(), out.begin() + kBurst);
    std::thread([&] {
      for (Batch* batch : settled) {
        pool.recycle(batch);
        if (batch->size == 0) ++reset_by_settler;  // still the pool's: nothing else runs
      }
    }).join();
    for (std::size_t i = 0; i < kBurst; ++i)
      out.push_back(one_event(pool, 100));
  }
  EXPECT_EQ(reset_by_settler, 0u);
  for (Batch* batch : out)
    pool.recycle(batch);
}

TEST(BatchPoolTest, SmallBatchesKeptWithTheirEventsAreBoundedByTheirEventsNotTheirNumber) {
  // Four-event batches: at most kDeferredSmallEvents / 4 of them keep their events (plus
  // kDeferred in the other ring); the rest are reset by the thread that recycles them.
  BatchPool pool;
  pool.reserve(BatchPool::kMaxSmall);
  std::vector<Batch*> burst;
  for (std::size_t i = 0; i < 3000; ++i) {
    emissions::detail::BatchPtr batch = pool.acquire();
    for (std::size_t e = 0; e < BatchPool::kSmallEvents; ++e)
      append(*batch, std::string(100, 'f'));
    burst.push_back(batch.release());
  }
  for (Batch* batch : burst)
    pool.recycle(batch);
  std::size_t kept_events = 0;
  for (const Batch* batch : burst)  // still the pool's: nothing else runs
    kept_events += batch->size;
  EXPECT_EQ(kept_events, BatchPool::kDeferredSmallEvents + BatchPool::kDeferred * 4);
}

TEST(BatchPoolTest, CommitsOneAtATimeAfterABurstLeaveNoPileOfDeadEvents) {
  // The case of AtMostKDeferredRecycledBatchesKeepTheirEvents with a reserved pool: a burst
  // of small commits, then large ones one at a time. Each take destroys a second deferred
  // batch's events, so the dead large payloads kept are one or two, not one per pooled
  // batch (kDeferred of them before: 32 x 1 MB while at most 1 MB was ever live).
  BatchPool pool;
  pool.reserve(1000);
  std::vector<Batch*> burst;
  for (std::size_t i = 0; i < 1000; ++i)
    burst.push_back(one_event(pool, 10));
  for (Batch* batch : burst)
    pool.recycle(batch);
  std::set<Batch*> seen;
  for (std::size_t i = 0; i < 1000; ++i) {
    Batch* batch = one_event(pool, 10000);
    seen.insert(batch);
    pool.recycle(batch);
  }
  std::size_t dead_large = 0;
  for (const Batch* batch : seen) {
    for (const auto& slot : batch->slots)
      if (slot.payload.is_string() && slot.payload.get_ref<const std::string&>().size() == 10000)
        ++dead_large;
  }
  EXPECT_LE(dead_large, 2u);
  // Large batches (more than kSmallEvents events) are deferred as before: at most kDeferred.
  std::vector<Batch*> large;
  for (std::size_t i = 0; i < BatchPool::kDeferred + 8; ++i) {
    emissions::detail::BatchPtr batch = pool.acquire();
    for (std::size_t e = 0; e <= BatchPool::kSmallEvents; ++e)
      append(*batch, std::string(100, 'l'));
    large.push_back(batch.release());
  }
  for (Batch* batch : large)
    pool.recycle(batch);
  std::size_t keeping = 0;
  for (const Batch* batch : large)
    keeping += batch->size != 0 ? 1 : 0;
  EXPECT_EQ(keeping, BatchPool::kDeferred);
}

TEST(BatchPoolTest, SmallBatchesKeptWithTheirEventsAreBoundedByCountAndDrainedByLargeCommits) {
  // From review: the small batches kept with their events were as many as the reservation
  // (up to kMaxSmall), and only takes of small batches drained them: a burst of one-event
  // commits followed by nothing, or by commits of more than kSmallEvents events, kept every
  // one of the burst's payloads (10,000 of 10 KB: 100 MB) until the Emitter was destroyed.
  constexpr std::size_t kBurst = 10000;
  BatchPool pool;
  pool.reserve(BatchPool::kMaxSmall);
  std::vector<Batch*> burst;
  for (std::size_t i = 0; i < kBurst; ++i)
    burst.push_back(one_event(pool, 100));
  for (Batch* batch : burst)
    pool.recycle(batch);
  const auto keeping = [&] {
    std::size_t n = 0;
    for (const Batch* batch : burst) {  // still the pool's: nothing else runs
      const auto& payload = batch->slots.front().payload;
      if (batch->size != 0 && payload.is_string() &&
          payload.get_ref<const std::string&>() == std::string(100, 'e'))
        ++n;
    }
    return n;
  };
  EXPECT_LE(keeping(), BatchPool::kDeferredSmallEvents + BatchPool::kDeferred);
  // Commits of more than kSmallEvents events, one at a time: each takes the deferred large
  // batch and destroys one small batch's events.
  for (std::size_t i = 0; i < BatchPool::kDeferredSmall + BatchPool::kDeferred + 1; ++i) {
    emissions::detail::BatchPtr batch = pool.acquire();
    for (std::size_t e = 0; e <= BatchPool::kSmallEvents; ++e)
      append(*batch, std::string(100, 'l'));
    pool.recycle(batch.release());
  }
  EXPECT_EQ(keeping(), 0u);
}

}  // namespace
