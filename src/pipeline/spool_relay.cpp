// The pipeline's side of the spool (Config::spool): the commit path appends to the log,
// and one relay thread per routed lane reads the log and hands each commit to its lane.
// src/spool/ is the log itself; docs/SPOOL.md the guarantees.
#include <sched.h>

#include <algorithm>
#include <optional>

#include "common/best_effort.hpp"
#include "common/status_copy.hpp"
#include "common/wait.hpp"
#include "pipeline/core.hpp"
#include "pipeline/relay_window.hpp"
#include "pipeline/thread_role.hpp"
#include "spool/spool.hpp"
#include "telemetry/events.hpp"

namespace emissions::detail {

namespace {

// A relay that found nothing to do wakes after this long when positions moved since the
// last checkpoint (a settlement came in), to save them; otherwise it sleeps until woken.
constexpr auto kCheckpointEvery = std::chrono::milliseconds(10);
// A relay waiting for room in its lane's queue re-checks whether relays stop this often.
constexpr auto kRoomCheck = std::chrono::milliseconds(100);
// A drain waiting for the relays re-checks at least this often.
constexpr auto kRelayWaitSlice = std::chrono::milliseconds(5);
// How long a relay waits before handing over again a commit it could not (out of memory).
constexpr auto kRetryPublish = std::chrono::milliseconds(10);
// A live lane's relay re-checks its state this often even without a wake-up (a bound on
// any wake-up it might miss).
constexpr auto kLiveRecheck = std::chrono::milliseconds(100);
// How long a commit waits, at most, for room in a lane's window while its relay hands over
// from it (see hand_over_live), and for how long after a wait that timed out commits do
// not wait for that lane's window again: at most 1 ms lost in 50 to a relay that is held up.
constexpr auto kWindowRoomWait = std::chrono::milliseconds(1);
constexpr auto kWindowWaitPause = std::chrono::milliseconds(50);
// How long a commit waits, at most, before the append lock, for room in the queues of a live
// lane that blocks (see await_live_room: a consumer that did not get a core for a few
// milliseconds must not make its lane fall behind), and for how long after a wait that timed
// out commits do not wait for that lane's queues again. A lane that falls behind is not
// waited for until its relay caught up with the log, so a stalled adapter costs commits one
// such wait per stall, and at most 5 ms in 100 if it stalls again and again.
constexpr auto kLiveRoomWait = std::chrono::milliseconds(5);
constexpr auto kLiveWaitPause = std::chrono::milliseconds(100);
// How long a relay that caught up with the log polls (yielding) before it parks.
constexpr auto kRelaySpin = std::chrono::microseconds(50);

}  // namespace

// Hands a commit to the live lanes, under the spool's append lock (Spool::AppendHook): a lane
// whose queues have room takes it as the in-memory pipeline would; one that has none falls
// behind, and its relay reads the commit back from the log. Runs no user code.
class Core::LiveHandoff final : public spool::Spool::AppendHook {
 public:
  LiveHandoff(Core& core, BatchPtr& buffer, std::shared_ptr<SettlementTracker> tracker,
              int cascade_depth)
      : core_(core), buffer_(buffer), tracker_(std::move(tracker)), cascade_depth_(cascade_depth) {}

  void appended(const spool::LogPosition& at, const spool::LogPosition& next) noexcept override {
    handed_ = core_.hand_over_live(buffer_, tracker_, cascade_depth_, at, next);
  }
  // Whether some queue took the batch (then it is no longer the caller's).
  [[nodiscard]] bool handed() const noexcept { return handed_; }

 private:
  Core& core_;
  BatchPtr& buffer_;
  std::shared_ptr<SettlementTracker> tracker_;
  int cascade_depth_;
  bool handed_ = false;
};

Status Core::publish_to_spool(BatchPtr& buffer, int cascade_depth, DropReport& drops,
                              std::function<void(const Settlement&)>* on_settled,
                              std::shared_ptr<SettlementTracker>* tracker_out) {
  Batch& batch = *buffer;
  const std::size_t n = batch.size;
  std::shared_ptr<SettlementTracker> tracker;
  if (spool_->live_handoff()) {
    // Routing is user code: done before the append lock is taken, for every lane (which of
    // them is live is known only under it).
    try {
      route(batch);
      tracker = std::make_shared<SettlementTracker>(spool_, 0, n, routed_lanes_);
    } catch (const std::exception& e) {
      return status_or_bare(Errc::internal,
                            [&] { return std::string("routing the commit failed: ") + e.what(); });
    }
    if ((cascade_depth > 0 ? sealed_ : closed_).load(std::memory_order_seq_cst)) {
      return Status(Errc::closed, "the emitter has been shut down");
    }
    if (await_live_room(batch, cascade_depth) &&
        (cascade_depth > 0 ? sealed_ : closed_).load(std::memory_order_seq_cst)) {
      // Shut down while this commit waited: refused, as it would have been before the wait.
      return Status(Errc::closed, "the emitter has been shut down");
    }
  }
  LiveHandoff handoff(*this, buffer, tracker, cascade_depth);
  bool dropped = false;
  if (Status s = spool_->append(batch.events(), static_cast<std::uint32_t>(cascade_depth),
                                batch.spool_body, spool_wait_, on_settled,
                                tracker ? &handoff : nullptr, &dropped);
      !s) {
    return s;
  }
  if (dropped) return drop_for_every_lane(buffer, cascade_depth, drops, on_settled, tracker_out);
  if (cascade_depth > 0) cascade_commits_.fetch_add(1, std::memory_order_relaxed);
  Shard& shard = my_shard();
  shard.events.fetch_add(n, std::memory_order_relaxed);
  shard.transactions.fetch_add(1, std::memory_order_relaxed);
  // Not handed to any queue: the events are in the log, relays deliver them.
  if (!handoff.handed()) shared_->pool.recycle(buffer.release());
  if (tracker) {
    if (tracker_out != nullptr) {
      // The caller releases the hold once its transaction is handed off: on_settled may
      // run then (every live lane filtered every event), never inside publish.
      *tracker_out = std::move(tracker);
    } else {
      tracker->release_hold();  // no lock held: this may settle the commit
    }
  }
  return {};
}

Status Core::drop_for_every_lane(BatchPtr& buffer, int cascade_depth, DropReport& drops,
                                 std::function<void(const Settlement&)>* on_settled,
                                 std::shared_ptr<SettlementTracker>* tracker_out) {
  // The spool is full and no lane blocks: nothing was written, and the commit is dropped
  // for every lane, before routing (an event a lane would have filtered counts dropped).
  // As in memory, the caller fires the drops' telemetry, then their settlement, once the
  // transaction is handed off.
  Batch& batch = *buffer;
  const std::size_t n = batch.size;
  try {
    drops.entries_.reserve(drops.entries_.size() + routed_lanes_);
    if (on_settled != nullptr && *on_settled) {
      batch.tracker =
          std::make_shared<SettlementTracker>(settled_names_, n, std::move(*on_settled));
    }
  } catch (const std::exception& e) {
    return status_or_bare(Errc::internal, [&] {
      return std::string("reporting the commit's drop failed: ") + e.what();
    });
  }
  drops.shared_ = shared_;
  batch.refs.store(static_cast<std::uint32_t>(routed_lanes_), std::memory_order_relaxed);
  for (std::size_t l = 0; l < routed_lanes_; ++l) {
    Lane& lane = *lanes_[l];
    lane.counters->received.fetch_add(n, std::memory_order_relaxed);
    lane.counters->dropped.fetch_add(n, std::memory_order_relaxed);
    drops.entries_.push_back(
        DropReport::Entry{&batch, &lane.counters->name, lane.counters, l, DropReport::kWholeBatch});
  }
  if (tracker_out != nullptr && batch.tracker) *tracker_out = batch.tracker;
  Batch* owned = buffer.release();  // owned by the drop entries from here on
  if (routed_lanes_ == 0) shared_->pool.recycle(owned);
  if (cascade_depth > 0) cascade_commits_.fetch_add(1, std::memory_order_relaxed);
  Shard& shard = my_shard();
  shard.events.fetch_add(n, std::memory_order_relaxed);
  shard.transactions.fetch_add(1, std::memory_order_relaxed);
  return {};
}

void Core::count_spool_overflow(std::size_t lane_index, std::uint64_t events) noexcept {
  // Events of commits a drop_oldest lane had not read when the full spool reclaimed their
  // segment: never handed to the lane, so received and dropped at once.
  Lane& lane = *lanes_[lane_index];
  lane.counters->received.fetch_add(events, std::memory_order_relaxed);
  lane.counters->dropped.fetch_add(events, std::memory_order_relaxed);
  if (events::kSpoolDropped.enabled()) {
    best_effort([&] {
      events::kSpoolDropped.execute({{"count", events}},
                                    {{"adapter", lane.name}, {"reason", "overflow"}});
    });
  }
}

bool Core::await_live_room(const Batch& batch, int cascade_depth) noexcept {
  // A live lane whose queue has no room for this commit falls behind at it, and its relay
  // then hands over from the window or reads the log, which costs far more than the
  // consumer freeing room (on a busy machine the relay may never catch up). A consumer that
  // is behind for a moment (it did not get a core) is waited for here, as the in-memory
  // pipeline's block policy would, briefly and with no lock held. Cascades, commits from the
  // pipeline's own threads and commits from settlement callbacks (which may run on an
  // adapter's own thread, its acknowledgements) never wait: they may be what drains the
  // queue.
  if (cascade_depth > 0 || current_thread_owner() != nullptr || in_settlement_callback()) {
    return false;
  }
  Deadline deadline{};  // one for the whole commit, read from the clock only when needed
  bool waited = false;
  for (std::size_t l = 0; l < routed_lanes_ && l < windows_.size(); ++l) {
    Lane& lane = *lanes_[l];
    if (lane.options.overflow != Overflow::block || lane.options.block_timeout.count() == 0 ||
        !spool_->is_live(l)) {
      continue;
    }
    RelayWindow& window = *windows_[l];
    for (auto& queue_ptr : lane.queues) {
      Queue& queue = *queue_ptr;
      const std::size_t k = batch.take[queue.flat];
      const auto room = [&] {
        const std::size_t used = queue.occupancy.load(std::memory_order_relaxed);
        return used == 0 || used + k <= queue.capacity;
      };
      if (k == 0 || room()) continue;
      const auto now = std::chrono::steady_clock::now();
      if (!window.may_wait_live(now)) break;
      if (deadline == Deadline{}) deadline = now + kLiveRoomWait;
      // The commit's time to wait is spent (on an earlier lane): this lane falls behind
      // without a wait of its own, and is not paused for it.
      if (now >= deadline) break;
      waited = true;
      const auto stop = [&] {
        return room() || relays_stop_.load(std::memory_order_acquire) ||
               closed_.load(std::memory_order_acquire);
      };
      if (!wait_until(queue.space, stop, std::min(deadline, now + lane.options.block_timeout))) {
        // The consumer is held up (a slow adapter): the lane falls behind, commits go on.
        window.live_wait_timed_out(std::chrono::steady_clock::now() + kLiveWaitPause);
        break;
      }
    }
  }
  return waited;
}

bool Core::hand_over_live(BatchPtr& buffer, const std::shared_ptr<SettlementTracker>& tracker,
                          int cascade_depth, const spool::LogPosition& at,
                          const spool::LogPosition& next) noexcept {
  Batch& batch = *buffer;
  const std::size_t n = batch.size;
  tracker->set_seq(at.seq);
  std::uint32_t accepted = 0;
  windowing_.clear();  // reserved for every lane: no allocation
  // A lane that does not take the commit now keeps it in its window if it fits, with what
  // each of its queues would take; its take[] entries are cleared either way.
  auto keep_or_skip = [&](std::size_t l) noexcept {
    Lane& lane = *lanes_[l];
    if (n != 0 && l < windows_.size() && !windows_[l]->fits(n) && window_room_coming(l, n)) {
      // The relay is working near the window (in it, or in a short gap before it) and the
      // lane's queues have room: a moment's wait keeps the gap from growing (the relay reads
      // a gap from the log, which may take it longer than the producer takes to commit it,
      // so a gap that grows is never closed). Every commit waits with this one (the append
      // lock is held): the producer slows to the relay's pace until it is back in the
      // window. A wait that times out means the relay was held up after all (a slow adapter,
      // a core it did not get): no more waits on this lane for kWindowWaitPause.
      RelayWindow& window = *windows_[l];
      const bool room = wait_until(
          window.room,
          [&] { return window.fits(n) || relays_stop_.load(std::memory_order_acquire); },
          deadline_after(kWindowRoomWait));
      if (!room) window.wait_timed_out(std::chrono::steady_clock::now() + kWindowWaitPause);
    }
    if (n != 0 && l < windows_.size() && windows_[l]->fits(n)) {
      std::uint32_t* takes = windows_[l]->prepare();
      for (std::size_t q = 0; q < lane.queues.size(); ++q)
        takes[q] = batch.take[lane.queues[q]->flat];
      windowing_.push_back(l);
    }
    for (auto& queue_ptr : lane.queues)
      batch.take[queue_ptr->flat] = 0;
  };
  for (std::size_t l = 0; l < routed_lanes_; ++l) {
    if (!spool_->live(l)) {
      keep_or_skip(l);  // its relay hands it over, from the window or from the log
      continue;
    }
    Lane& lane = *lanes_[l];
    // Room in every queue of the lane that takes events, then the lane's bookkeeping (the
    // only step that can fail: memory), or the lane falls behind at this commit and is
    // handed nothing (its position has not passed the commit).
    std::size_t reserved = 0;
    bool takes = true;
    for (auto& queue_ptr : lane.queues) {
      const std::size_t k = batch.take[queue_ptr->flat];
      if (k == 0) continue;
      if (!try_reserve(*queue_ptr, k, queue_ptr->capacity)) {
        takes = false;
        break;
      }
      ++reserved;
    }
    if (takes) {
      try {
        spool_->handed_over_live(l, at, next);
      } catch (...) {
        takes = false;
      }
    }
    if (!takes) {
      for (auto& queue_ptr : lane.queues) {
        const std::size_t k = batch.take[queue_ptr->flat];
        if (k != 0 && reserved != 0) {
          unreserve(*queue_ptr, k);
          --reserved;
        }
      }
      keep_or_skip(l);
      spool_->fall_behind(l, at);
      continue;
    }
    tracker->hand_to(l);
    lane.counters->received.fetch_add(n, std::memory_order_relaxed);
    if (batch.skipped[l] != 0) {
      lane.counters->filtered.fetch_add(batch.skipped[l], std::memory_order_relaxed);
      tracker->add(l, SettlementTracker::Outcome::filtered, batch.skipped[l]);
    }
    for (auto& queue_ptr : lane.queues)
      accepted += batch.take[queue_ptr->flat] != 0 ? 1U : 0U;
  }
  if (accepted == 0 && windowing_.empty()) return false;
  batch.tracker = tracker;
  batch.cascade_depth = cascade_depth;
  // Every reference is counted before any of them is visible. The queues first: pushing reads
  // every take[] entry, and a relay writes its lane's entries once it took the batch from its
  // window. The windows' references keep the batch alive until they are published.
  batch.refs.store(accepted + static_cast<std::uint32_t>(windowing_.size()),
                   std::memory_order_relaxed);
  Batch* owned = buffer.release();  // owned by its references from here on
  if (accepted != 0) push_to_queues(owned);
  for (const std::size_t l : windowing_) {
    windows_[l]->publish(RelayWindow::Entry{at.seq, owned, static_cast<std::uint32_t>(n)});
  }
  return true;
}

template <typename Share>
bool Core::reserve_for_relay(Lane& lane, const Share& share) noexcept {
  // Room in every queue of the lane that takes events (share(q) of them): wait as long as it
  // takes (the backlog waits on disk), until relays stop; then undo what was reserved.
  for (std::size_t q = 0; q < lane.queues.size(); ++q) {
    const std::size_t k = share(q);
    if (k == 0) continue;
    Queue& queue = *lane.queues[q];
    if (try_reserve(queue, k, queue.capacity)) continue;
    if (lane.index < windows_.size()) {
      windows_[lane.index]->taker_waits();  // commits must not wait for room meanwhile
    }
    for (;;) {
      Deadline wait_deadline{};
      if (reserve_blocking(queue, k, wait_deadline, kRoomCheck, /*cascade=*/true)) break;
      if (relays_stop_.load(std::memory_order_seq_cst) || sealed_.load(std::memory_order_seq_cst)) {
        for (std::size_t u = 0; u < q; ++u) {
          if (share(u) != 0) unreserve(*lane.queues[u], share(u));
        }
        return false;
      }
    }
  }
  return true;
}

template <typename Share>
void Core::push_to_lane(Lane& lane, Batch* batch, const Share& share) noexcept {
  // Once the last push is done the batch may be consumed and recycled at once: find the
  // last queue first, and read nothing of the batch after pushing to it.
  std::size_t end = 0;
  for (std::size_t q = 0; q < lane.queues.size(); ++q) {
    if (share(q) != 0) end = q + 1;
  }
  for (std::size_t q = 0; q < end; ++q) {
    if (share(q) == 0) continue;
    Queue& queue = *lane.queues[q];
    while (!queue.ring.try_push(batch))
      sched_yield();
    queue.wakeup.notify(1);
  }
}

Status Core::publish_relayed(Lane& lane, BatchPtr& buffer, std::uint64_t seq, int cascade_depth) {
  Batch& batch = *buffer;
  const std::size_t n = batch.size;
  batch.only_lane = lane.index;
  try {
    route(batch);
  } catch (const std::exception& e) {
    return Status(Errc::internal, std::string("routing the commit failed: ") + e.what());
  }
  // The lane's settlement of this commit moves its position in the spool. The tracker may
  // outlive the Core (a late ack): it holds the spool, not the Core.
  std::shared_ptr<SettlementTracker> tracker;
  try {
    tracker = std::make_shared<SettlementTracker>(spool_, seq, n, routed_lanes_);
    tracker->hand_to(lane.index);
  } catch (const std::exception& e) {
    return Status(Errc::internal,
                  std::string("tracking the commit's settlement failed: ") + e.what());
  }
  const auto share = [&batch, &lane](std::size_t q) -> std::size_t {
    return batch.take[lane.queues[q]->flat];
  };
  if (!reserve_for_relay(lane, share))
    return Status(Errc::closed, "the emitter has been shut down");
  lane.counters->received.fetch_add(n, std::memory_order_relaxed);
  if (batch.skipped[lane.index] != 0) {
    lane.counters->filtered.fetch_add(batch.skipped[lane.index], std::memory_order_relaxed);
    tracker->add(lane.index, SettlementTracker::Outcome::filtered, batch.skipped[lane.index]);
  }
  std::uint32_t accepted = 0;
  for (const auto& queue : lane.queues)
    accepted += batch.take[queue->flat] != 0 ? 1U : 0U;
  if (accepted == 0) {
    shared_->pool.recycle(buffer.release());
  } else {
    batch.tracker = tracker;
    batch.cascade_depth = cascade_depth;
    batch.refs.store(accepted, std::memory_order_relaxed);
    push_to_lane(lane, buffer.release(), share);
  }
  tracker->release_hold();  // no lock held: this may complete the settlement
  return {};
}

bool Core::window_room_coming(std::size_t l, std::size_t n) noexcept {
  Lane& lane = *lanes_[l];
  if (!windows_[l]->may_wait(std::chrono::steady_clock::now())) return false;
  for (const auto& queue : lane.queues) {
    // A queue without room for this commit: the adapter is the slow one; its backlog goes
    // to the log.
    if (queue->occupancy.load(std::memory_order_relaxed) + n > queue->capacity) return false;
  }
  return windows_[l]->taker_near();
}

Status Core::publish_windowed(Lane& lane, Batch* batch, const std::uint32_t* takes) {
  const std::size_t n = batch->size;
  // Routed at commit time; the lane's part of the tracker starts here (no hold: the lane's
  // events settle only once pushed below).
  batch->tracker->hand_to_later(lane.index);
  const auto share = [takes](std::size_t q) -> std::size_t { return takes[q]; };
  if (!reserve_for_relay(lane, share)) {
    shared_->release(batch);
    return Status(Errc::closed, "the emitter has been shut down");
  }
  lane.counters->received.fetch_add(n, std::memory_order_relaxed);
  const std::uint32_t skipped = batch->skipped[lane.index];
  if (skipped != 0) lane.counters->filtered.fetch_add(skipped, std::memory_order_relaxed);
  std::uint32_t accepted = 0;
  for (std::size_t q = 0; q < lane.queues.size(); ++q)
    accepted += takes[q] != 0 ? 1U : 0U;
  if (accepted == 0) {
    // Every event filtered: settled here, and the window's reference goes.
    if (skipped != 0)
      batch->tracker->add(lane.index, SettlementTracker::Outcome::filtered, skipped);
    shared_->release(batch);
    return {};
  }
  // The window's reference becomes one of the queues'. take[] of this lane's queues is
  // written by this thread alone (the commit path cleared it); other lanes' consumers read
  // only their own queues' entries.
  batch->refs.fetch_add(accepted - 1, std::memory_order_relaxed);
  for (std::size_t q = 0; q < lane.queues.size(); ++q)
    batch->take[lane.queues[q]->flat] = takes[q];
  if (skipped != 0) batch->tracker->add(lane.index, SettlementTracker::Outcome::filtered, skipped);
  push_to_lane(lane, batch, share);
  return {};
}

void Core::clear_windows() noexcept {
  std::vector<Batch*> stale;
  for (const auto& window : windows_) {
    try {
      window->clear(stale);
    } catch (...) {
      // Out of memory: what this window holds is kept until the Core goes (the pool's
      // batches are freed with it).
    }
    for (Batch* batch : stale)
      shared_->release(batch);
    stale.clear();
  }
}

void Core::run_relay(std::size_t lane_index) noexcept {
  const ThreadRole role(this);  // user code it runs (interested) may not drain this emitter
  Lane& lane = *lanes_[lane_index];
  spool::Spool& spool = *spool_;
  std::optional<spool::LogReader> reading;
  reading.emplace(spool.log(), spool.start(lane_index));
  std::vector<Event> events;
  std::uint64_t corrupt_reported = 0;
  auto last_checkpoint = std::chrono::steady_clock::now();
  // Set once the lane went live: the reader's cursor is then behind what the commit path
  // handed over, and the relay reads on from where the lane falls behind (resume_at).
  // A lane with no backlog starts live: whatever it later falls behind at, it reads from
  // resume_at() (reading from start() would deliver again what was handed over live).
  bool reader_stale = spool.started_live(lane_index);
  // The lane's window (none with machine durability). Its scratch is allocated once, here:
  // without it the relay reads every commit from the log, and the window stays full.
  RelayWindow* window = lane_index < windows_.size() ? windows_[lane_index].get() : nullptr;
  std::vector<std::uint32_t> takes;
  std::vector<Batch*> stale;
  try {
    if (window != nullptr) {
      takes.resize(window->queues());
      stale.reserve(window->capacity());
    }
  } catch (...) {
    try {
      windows_[lane_index]->disable();  // the commit path keeps nothing for it
    } catch (...) {
    }
    window = nullptr;
  }
  auto stopping = [&] { return relays_stop_.load(std::memory_order_acquire); };
  while (!stopping()) {
    const bool live = spool.is_live(lane_index);   // read once: it may change any time
    if (window != nullptr) window->taker_waits();  // until it takes again (taker_at)
    if (live) {
      // The commit path hands this lane its commits: sleep until it falls behind, saving
      // positions every kCheckpointEvery while they move.
      if (std::chrono::steady_clock::now() - last_checkpoint >= kCheckpointEvery) {
        (void)spool.checkpoint();
        last_checkpoint = std::chrono::steady_clock::now();
      }
      spool.prefault_log();  // the commit path's next pages, off its thread
      const bool moved = spool.moved();
      wait_until(
          spool.relay_wake(lane_index),
          [&] { return stopping() || !spool.is_live(lane_index) || (!moved && spool.moved()); },
          deadline_after(moved ? kCheckpointEvery : kLiveRecheck));
      continue;
    }
    if (reader_stale) {
      reading.emplace(spool.log(), spool.resume_at(lane_index));
      corrupt_reported = 0;
      reader_stale = false;
    }
    if (const auto fence = spool.fence(lane_index, reading->cursor().seq)) {
      // A full spool reclaimed the commits before the fence for this drop_oldest lane.
      reading.emplace(spool.log(), *fence);
      corrupt_reported = 0;
    }
    spool::LogReader& reader = *reading;
    spool::LogReader::Next next{};
    spool::LogPosition at;
    if (window != nullptr) {
      // The next commit may be in memory: hand it over without decoding it.
      RelayWindow::Entry entry;
      stale.clear();
      window->taker_at(reader.cursor().seq);
      const bool kept = window->take(reader.cursor().seq, entry, takes.data(), stale);
      for (Batch* batch : stale)
        shared_->release(batch);
      if (kept) {
        const spool::LogPosition before = reader.cursor();
        const std::uint64_t corrupt_before = reader.corrupt_commits();
        std::uint32_t count = 0;
        const Status skipped = reader.skip(next, count, at);
        if (!skipped || next != spool::LogReader::Next::commit || at.seq != entry.seq ||
            count != entry.events || reader.corrupt_commits() != corrupt_before) {
          // Not the commit the window holds (it cannot be, short of a damaged page): read
          // it from the log instead.
          shared_->release(entry.batch);
          reading.emplace(spool.log(), before);
          corrupt_reported = 0;
          continue;
        }
        if (!spool.published(lane_index, at)) {  // reclaimed meanwhile: see the fence
          shared_->release(entry.batch);
          continue;
        }
        const Status published = publish_windowed(lane, entry.batch, takes.data());
        if (!published) break;  // closed: the relays stop
        spool.handed_over(lane_index, reader.cursor());
        relayed_from_window_.fetch_add(1, std::memory_order_relaxed);
        if (std::chrono::steady_clock::now() - last_checkpoint >= kCheckpointEvery) {
          (void)spool.checkpoint();
          last_checkpoint = std::chrono::steady_clock::now();
        }
        continue;
      }
    }
    events.clear();
    const std::uint64_t from = reader.cursor().seq;
    const Status read = reader.next(next, events, at);
    if (reader.corrupt_commits() != corrupt_reported) {
      // The commits in [from, upto) could not be read: skipped whole, counted once per
      // commit however many lanes come across them.
      const std::uint64_t skipped = reader.corrupt_commits() - corrupt_reported;
      corrupt_reported = reader.corrupt_commits();
      const std::uint64_t upto =
          read && next == spool::LogReader::Next::commit ? at.seq : reader.cursor().seq;
      // The lane's position stops at the commit returned (it is not handed over yet).
      spool.skipped(lane_index, from, upto,
                    read && next == spool::LogReader::Next::commit ? at : reader.cursor());
      if (events::kSpoolCorrupt.enabled()) {
        best_effort([&] {
          events::kSpoolCorrupt.execute({{"count", skipped}}, {{"adapter", lane.name}});
        });
      }
    }
    const auto now = std::chrono::steady_clock::now();
    if (now - last_checkpoint >= kCheckpointEvery) {
      (void)spool.checkpoint();  // an I/O error is retried at the next one
      last_checkpoint = now;
    }
    if (!read || next == spool::LogReader::Next::end) {
      // Caught up: with live handoff the commit path hands the lane what comes next, unless
      // a commit came in meanwhile (then read on).
      if (window != nullptr) window->taker_waits();  // go_live takes the append lock
      if (read && spool.live_handoff()) {
        if (spool.go_live(lane_index, reader.cursor())) {
          reader_stale = true;
          if (window != nullptr) {  // nothing in it is ahead of the end of the log
            stale.clear();
            window->clear(stale);
            for (Batch* batch : stale)
              shared_->release(batch);
          }
        }
        continue;
      }
      // Caught up (or the disk failed a read: try again shortly). Sleep until a commit is
      // appended, or until a checkpoint is due if positions moved.
      const std::uint64_t cursor = reader.cursor().seq;
      // Commits usually follow each other within microseconds: yield the core a while
      // before parking, so a steady stream costs no wake-up per commit (a futex wake is
      // several microseconds on a virtual machine).
      if (read) {
        const auto spin_until = std::chrono::steady_clock::now() + kRelaySpin;
        bool more = false;
        while (!more && std::chrono::steady_clock::now() < spin_until &&
               !relays_stop_.load(std::memory_order_acquire)) {
          sched_yield();
          more = spool.log().end_seq() > cursor;
        }
        if (more) continue;
      }
      const Deadline wake =
          !read || spool.moved() ? deadline_after(kCheckpointEvery) : Deadline::max();
      wait_until(
          spool.appended,
          [&] {
            return relays_stop_.load(std::memory_order_acquire) || spool.log().end_seq() > cursor;
          },
          wake);
      continue;
    }
    if (!spool.published(lane_index, at)) continue;  // reclaimed meanwhile: see the fence
    const auto event_count = static_cast<std::uint32_t>(events.size());
    BatchPtr batch = acquire_batch();
    for (Event& e : events) {
      // Empty metadata goes in as null: the recycled slot keeps its own empty object, and
      // the batch stays plain (recycled without touching its events).
      nlohmann::json metadata;
      if (!e.metadata.is_object() || !e.metadata.empty()) metadata = std::move(e.metadata);
      batch->append(e.name, std::move(e.payload), std::move(metadata), e.id, e.emitted_at);
    }
    const Status published =
        publish_relayed(lane, batch, at.seq, static_cast<int>(reader.last_flags()));
    if (!published && published.code() == Errc::closed) break;
    if (!published) {
      // Routing threw or memory ran out: withdraw the commit (its position must not stick
      // at a commit nobody will settle) and try it again shortly.
      if (spool.withdraw(lane_index, at, event_count)) continue;  // dropped: see the fence
      reading.emplace(spool.log(), at);
      corrupt_reported = 0;
      wait_until(spool.relay_wake(lane_index), stopping, deadline_after(kRetryPublish));
      continue;
    }
    spool.handed_over(lane_index, reader.cursor());
    relayed_from_log_.fetch_add(1, std::memory_order_relaxed);
  }
  (void)spool.checkpoint();
}

bool Core::wait_for_relays(Deadline deadline) noexcept {
  if (!spool_) return true;
  const std::uint64_t end = spool_->log().end().seq;
  auto reached = [&] {
    for (std::size_t l = 0; l < spool_->lanes(); ++l) {
      if (!spool_->published_before(l, end)) return false;
    }
    return true;
  };
  spool_->wake_relays_waiter_at(end);
  bool done = false;
  // Woken when a relay reaches `end`; re-checked every few milliseconds too, since a
  // concurrent drain may have moved the wake-up mark.
  while (!(done = reached()) && std::chrono::steady_clock::now() < deadline) {
    const Deadline slice = std::min(deadline, std::chrono::steady_clock::now() + kRelayWaitSlice);
    if ((done = wait_until(spool_->progress, reached, slice))) break;
  }
  spool_->clear_relays_waiter(end);
  return done;
}

void Core::stop_relays() noexcept {
  relays_stop_.store(true, std::memory_order_seq_cst);
  if (!spool_) return;
  spool_->appended.notify();
  spool_->wake_relays();
  for (Queue* queue : all_queues_)
    queue->space.notify();
  for (std::thread& relay : relays_) {
    if (relay.joinable()) relay.join();
  }
  (void)spool_->checkpoint();
}

}  // namespace emissions::detail
