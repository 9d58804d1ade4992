// The producer side: routing a committed batch, reserving room, applying the overflow
// policies and handing the batch to the queues.
//
// Rules that keep it safe to re-enter (a telemetry handler that commits, an interested()
// that emits): user code (interested, partition_by) runs before anything is reserved; the
// only scratch is the batch itself (owned by this call until it is pushed); drops are
// counted here and reported by the caller afterwards (DropReport::fire).
#include <sched.h>

#include <exception>
#include <string>

#include "common/best_effort.hpp"
#include "common/status_copy.hpp"
#include "common/wait.hpp"
#include "pipeline/core.hpp"
#include "telemetry/events.hpp"

namespace emissions::detail {
namespace {

// Why a blocking reservation failed; the message is built after every reservation is undone.
enum class Refusal { none, closed, full, cascade_full };

}  // namespace

void Core::route(Batch& batch) const {
  const std::size_t n = batch.size;
  const std::size_t lane_count = lanes_.size();
  batch.lane_count = lane_count;
  batch.whole_lanes = 0;
  batch.route.clear();  // nothing of an earlier commit's table survives (capacity does)
  batch.take.assign(all_queues_.size(), 0);
  batch.skipped.assign(lane_count, 0);
  // The per-event table, made only when some lane filters or partitions this batch's
  // events. Dead-letter lanes take no commits (only the copies send_dead_letters makes).
  bool table = false;
  auto make_table = [&] {
    if (table) return;
    batch.route.resize(n * lane_count);
    for (std::size_t l = routed_lanes_; l < lane_count; ++l) {
      for (std::size_t i = 0; i < n; ++i)
        batch.route[i * lane_count + l] = Batch::kSkip;
    }
    table = true;
  };
  for (std::size_t l = 0; l < routed_lanes_; ++l) {
    if (batch.only_lane != Batch::kAllLanes && l != batch.only_lane) {
      // A relayed batch is another lane's business: this one takes none of it.
      make_table();
      for (std::size_t i = 0; i < n; ++i)
        batch.route[i * lane_count + l] = Batch::kSkip;
      continue;
    }
    const Lane& lane = *lanes_[l];
    const Adapter& adapter = *lane.adapter;
    const std::size_t partitions = lane.queues.size();
    // Whole until an event is not wanted: then the entries of the events before it are
    // written, and every later one. A partitioned lane writes them all.
    bool whole = partitions == 1 && l < Batch::kWholeLaneBits;
    if (!whole) make_table();
    for (std::size_t i = 0; i < n; ++i) {
      const Event& event = batch.slots[i];
      bool wanted = true;
      try {
        wanted = adapter.interested(event);
      } catch (...) {
        wanted = true;  // let the adapter see it rather than silently losing the event
      }
      if (whole) {
        if (wanted) continue;
        make_table();
        for (std::size_t j = 0; j < i; ++j)
          batch.route[j * lane_count + l] = 0;
        batch.take[lane.queues[0]->flat] += static_cast<std::uint32_t>(i);
        whole = false;
      }
      std::uint32_t queue = Batch::kSkip;
      if (wanted) {
        queue = 0;
        if (partitions > 1) {
          std::uint64_t key = 0;
          try {
            key = lane.options.partition_by(event);
          } catch (...) {
            key = 0;  // documented: a throwing key function sends the event to consumer 0
          }
          queue = static_cast<std::uint32_t>(key % partitions);
        }
        ++batch.take[lane.queues[queue]->flat];
      } else {
        ++batch.skipped[l];
      }
      batch.route[i * lane_count + l] = queue;
    }
    if (whole) {
      batch.whole_lanes |= std::uint64_t{1} << l;
      batch.take[lane.queues[0]->flat] += static_cast<std::uint32_t>(n);
    }
  }
}

bool Core::try_reserve(Queue& queue, std::size_t n, std::size_t limit) noexcept {
  std::size_t current = queue.occupancy.load(std::memory_order_relaxed);
  for (;;) {
    // A batch larger than the whole buffer is admitted alone, or it could never commit.
    if (current != 0 && current + n > limit) return false;
    if (queue.occupancy.compare_exchange_weak(current, current + n, std::memory_order_acq_rel)) {
      return true;
    }
  }
}

bool Core::reserve_blocking(Queue& queue, std::size_t n, Deadline& wait_deadline,
                            std::chrono::milliseconds timeout, bool cascade) noexcept {
  if (try_reserve(queue, n, queue.capacity)) return true;
  // One deadline for the whole commit, read from the clock only when a queue is full.
  if (wait_deadline == Deadline{}) wait_deadline = deadline_after(timeout);
  // A consumer usually frees room within microseconds: yield a few times before parking.
  for (int i = 0; i < 16; ++i) {
    sched_yield();
    if (try_reserve(queue, n, queue.capacity)) return true;
  }
  const std::atomic<bool>& refused = cascade ? sealed_ : closed_;
  bool reserved = false;
  wait_until(
      queue.space,
      [&] {
        reserved = try_reserve(queue, n, queue.capacity);
        return reserved || refused.load(std::memory_order_seq_cst);
      },
      wait_deadline);
  return reserved;
}

void Core::unreserve(Queue& queue, std::size_t n) noexcept {
  queue.occupancy.fetch_sub(n, std::memory_order_acq_rel);
  queue.space.notify();
}

Batch* Core::evict_oldest(Lane& lane, Queue& queue) noexcept {
  // `evicting` covers the moment between the pop and the count (see finished_below).
  queue.evicting.fetch_add(1, std::memory_order_seq_cst);
  Batch* victim = queue.ring.try_pop();
  if (victim != nullptr) {
    const std::size_t k = victim->take[queue.flat];
    queue.occupancy.fetch_sub(k, std::memory_order_acq_rel);
    lane.counters->dropped.fetch_add(k, std::memory_order_relaxed);
  }
  queue.evicting.fetch_sub(1, std::memory_order_seq_cst);
  if (victim != nullptr) shared_->progress.notify();
  return victim;
}

void Core::record_drop(DropReport& drops, Lane& lane, const Queue& queue, Batch* batch) noexcept {
  // The entry takes over one reference to `batch`. Without memory for it the drop is still
  // counted; only its telemetry is lost.
  try {
    drops.shared_ = shared_;
    drops.entries_.push_back(DropReport::Entry{batch, &lane.counters->name, lane.counters,
                                               lane.index,
                                               static_cast<std::uint32_t>(queue.index)});
  } catch (...) {
    shared_->release(batch);
  }
}

Status Core::publish(BatchPtr& buffer, int cascade_depth, DropReport& drops,
                     std::function<void(const Settlement&)>* on_settled,
                     std::shared_ptr<SettlementTracker>* tracker) {
  Batch& batch = *buffer;
  const std::size_t n = batch.size;
  if (n == 0) return {};
  const bool cascade = cascade_depth > 0;

  // Shutdown waits for publishes under way (publishes_in_flight) after it refuses new ones:
  // the increment before the check and its store before its count make a Dekker pair.
  Shard& shard = my_shard();
  shard.in_flight.fetch_add(1, std::memory_order_seq_cst);
  struct Exit {
    Core& core;
    Shard& shard;
    ~Exit() {
      shard.in_flight.fetch_sub(1, std::memory_order_seq_cst);
      core.publishes_.notify();
    }
  } exit{*this, shard};
  if ((cascade ? sealed_ : closed_).load(std::memory_order_seq_cst)) {
    return Status(Errc::closed, "the emitter has been shut down");
  }
  if (spool_) return publish_to_spool(buffer, cascade_depth, drops, on_settled, tracker);
  batch.committed_at = std::chrono::steady_clock::now();  // for DeliveryLatency

  // 1. Routing: user code, with nothing reserved. May allocate (the batch's routing
  //    vectors grow to the largest commit seen, then stay).
  try {
    route(batch);
  } catch (const std::exception& e) {
    return status_or_bare(Errc::internal,
                          [&] { return std::string("routing the commit failed: ") + e.what(); });
  }
  // Shutdown may have begun while user code ran (even from that code: interested() calling
  // shutdown(), which waits for this very publish). Nothing is reserved yet: refuse now
  // rather than queue events for consumers that may be gone.
  if ((cascade ? sealed_ : closed_).load(std::memory_order_seq_cst)) {
    return Status(Errc::closed, "the emitter has been shut down");
  }

  // The commit's settlement tracker (only when someone asked): made before anything is
  // reserved, so running out of memory refuses the commit cleanly.
  if (on_settled != nullptr) {
    try {
      batch.tracker =
          std::make_shared<SettlementTracker>(settled_names_, n, std::move(*on_settled));
    } catch (const std::exception& e) {
      return Status(Errc::internal,
                    std::string("tracking the commit's settlement failed: ") + e.what());
    }
  }
  struct ForgetTracker {  // on every refusal below: the callback must never be called
    Batch& batch;
    bool keep = false;
    ~ForgetTracker() {
      if (!keep) batch.tracker.reset();
    }
  } forget_tracker{batch};

  // 2. Blocking lanes: every queue that takes events must have room, or none gets any.
  Deadline wait_deadline{};
  std::size_t reserved = 0;  // reservations made, in the order of the loops below
  Refusal refusal = Refusal::none;
  const Lane* refused_lane = nullptr;
  for (auto& lane_ptr : lanes_) {
    Lane& lane = *lane_ptr;
    if (lane.options.overflow != Overflow::block) continue;
    for (auto& queue_ptr : lane.queues) {
      Queue& queue = *queue_ptr;
      const std::size_t k = batch.take[queue.flat];
      if (k == 0) continue;
      bool ok = false;
      if (cascade && &lane == dispatcher_lane_) {
        // Handlers' own events never wait for the dispatcher: the pool that emits them is
        // what drains it. They may use the ring's headroom; beyond it they fail at once.
        ok = try_reserve(queue, k, queue.ring.capacity());
        if (!ok) refusal = Refusal::cascade_full;
      } else {
        ok = reserve_blocking(queue, k, wait_deadline, lane.options.block_timeout, cascade);
        if (!ok) {
          refusal = (cascade ? sealed_ : closed_).load(std::memory_order_seq_cst) ? Refusal::closed
                                                                                  : Refusal::full;
        }
      }
      if (!ok) {
        refused_lane = &lane;
        break;
      }
      ++reserved;
    }
    if (refusal != Refusal::none) break;
  }
  if (refusal != Refusal::none) {
    for (auto& lane_ptr : lanes_) {
      if (lane_ptr->options.overflow != Overflow::block) continue;
      for (auto& queue_ptr : lane_ptr->queues) {
        const std::size_t k = batch.take[queue_ptr->flat];
        if (k == 0 || reserved == 0) continue;
        unreserve(*queue_ptr, k);
        --reserved;
      }
    }
    switch (refusal) {
      case Refusal::closed:
        return Status(Errc::closed, "the emitter has been shut down");
      case Refusal::cascade_full:
        return Status(Errc::overloaded,
                      "the handler dispatcher's queue is full (" +
                          std::to_string(refused_lane->options.buffer_size) +
                          " events, twice that for handlers' cascades, which never wait for "
                          "it); nothing was delivered");
      default:
        return Status(Errc::overloaded,
                      "adapter '" + refused_lane->name + "' queue stayed full (" +
                          std::to_string(refused_lane->options.buffer_size) +
                          " events) for block_timeout " +
                          std::to_string(refused_lane->options.block_timeout.count()) +
                          " ms; nothing was delivered");
    }
  }

  // 3. Dropping lanes never wait: make room by evicting (drop_oldest) or drop this batch's
  //    events for that queue (drop_newest, or drop_oldest with nothing left to evict because
  //    the room is reserved by commits that have not pushed yet).
  std::uint32_t self_references = 0;  // drop entries that hold this very batch
  for (auto& lane_ptr : lanes_) {
    Lane& lane = *lane_ptr;
    if (lane.options.overflow == Overflow::block) continue;
    for (auto& queue_ptr : lane.queues) {
      Queue& queue = *queue_ptr;
      const std::size_t k = batch.take[queue.flat];
      if (k == 0 || try_reserve(queue, k, queue.capacity)) continue;
      bool room = false;
      if (lane.options.overflow == Overflow::drop_oldest) {
        while (Batch* victim = evict_oldest(lane, queue)) {
          record_drop(drops, lane, queue, victim);
          if (try_reserve(queue, k, queue.capacity)) {
            room = true;
            break;
          }
        }
      }
      if (room) continue;
      lane.counters->dropped.fetch_add(k, std::memory_order_relaxed);
      batch.take[queue.flat] = 0;
      const std::size_t before = drops.entries_.size();
      record_drop(drops, lane, queue, &batch);
      if (drops.entries_.size() > before) ++self_references;
    }
  }

  // 4. Nothing can fail from here on: count what each lane filtered out, then hand the batch
  //    over, one pointer per queue that takes events (after the pushes it may be recycled).
  for (std::size_t l = 0; l < lanes_.size(); ++l) {
    if (batch.skipped[l] != 0) {
      lanes_[l]->counters->filtered.fetch_add(batch.skipped[l], std::memory_order_relaxed);
    }
  }
  forget_tracker.keep = true;
  if (batch.tracker) {
    // The caller holds the tracker's hold, so nothing here completes it (no user code runs).
    for (std::size_t l = 0; l < routed_lanes_; ++l) {
      batch.tracker->add(l, SettlementTracker::Outcome::filtered, batch.skipped[l]);
    }
    if (tracker != nullptr) *tracker = batch.tracker;
  }
  std::uint32_t accepted = 0;
  for (const Queue* queue : all_queues_)
    accepted += batch.take[queue->flat] != 0 ? 1U : 0U;
  if (accepted + self_references == 0) {
    batch.reset();  // nobody wants it: keep the storage for the next transaction
    batch.tracker.reset();
  } else {
    batch.cascade_depth = cascade_depth;
    batch.refs.store(accepted + self_references, std::memory_order_relaxed);
    push_to_queues(buffer.release(), !role_sharing_lanes_.empty());  // owned by its refs now
  }
  if (cascade) cascade_commits_.fetch_add(1, std::memory_order_relaxed);
  shard.events.fetch_add(n, std::memory_order_relaxed);
  shard.transactions.fetch_add(1, std::memory_order_relaxed);
  // Still a publish under way (shutdown waits for it): the consumers' state stays alive.
  if (accepted != 0 && !role_sharing_lanes_.empty()) help_consumers();
  return {};
}

void Core::push_to_queues(Batch* batch, bool helping_after) noexcept {
  // Once the last push is done the batch may be consumed and recycled at once: find the
  // last queue first, and read nothing of the batch after pushing to it.
  const std::size_t queues = all_queues_.size();
  std::size_t end = 0;  // one past the last queue that takes events
  for (std::size_t q = 0; q < queues; ++q) {
    if (batch->take[q] != 0) end = q + 1;
  }
  for (std::size_t q = 0; q < end; ++q) {
    Queue& queue = *all_queues_[q];
    if (batch->take[q] == 0) continue;
    // Room is reserved, so a full ring is transient: a consumer is between taking a cell
    // and releasing it.
    while (!queue.ring.try_push(batch))
      sched_yield();
    // The push (seq_cst) then notify's seq_cst load pair with idle_wait's prepare then
    // check: either we see the consumer waiting, or it sees our push.
    if (!(helping_after && queue.role_shared)) queue.wakeup.notify(1);
  }
}

bool Core::publishes_in_flight() const noexcept {
  std::int64_t in_flight = 0;
  for (const auto& shard : shards_)
    in_flight += shard.in_flight.load(std::memory_order_seq_cst);
  return in_flight != 0;
}

// ---- DropReport ------------------------------------------------------------------------

void DropReport::fire() noexcept {
  if (events::kEventDropped.enabled()) {
    for (const Entry& entry : entries_) {
      const Batch& batch = *entry.batch;
      for (std::size_t i = 0; i < batch.size; ++i) {
        if (!dropped(entry, i)) continue;
        best_effort([&] {
          events::kEventDropped.execute({{"count", 1}}, {{"event_name", batch.slots[i].name.str()},
                                                         {"reason", "overflow"},
                                                         {"adapter", *entry.lane}});
        });
      }
    }
  }
  release();
}

void DropReport::release() noexcept {
  for (const Entry& entry : entries_) {
    const Batch& batch = *entry.batch;
    if (batch.tracker) {
      std::uint64_t k = 0;
      for (std::size_t i = 0; i < batch.size; ++i)
        k += dropped(entry, i) ? 1U : 0U;
      batch.tracker->add(entry.lane_index, SettlementTracker::Outcome::dropped, k);
    }
    shared_->release(entry.batch);
  }
  entries_.clear();
}

}  // namespace emissions::detail
