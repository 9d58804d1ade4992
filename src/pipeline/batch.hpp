// Internal: the storage of a transaction's events, handed whole to the pipeline on commit
// and recycled after delivery.
//
// Allocation is what the hot path would otherwise spend most of its time on: a fresh
// vector per commit, and an empty metadata map per event, each freed on a consumer thread
// (so the committing thread's malloc cache never gets them back). A Batch keeps its slots
// after delivery and goes back to a pool, so a steady stream of commits allocates nothing
// per event. Up to kDeferred pooled batches, and batches of at most kSmallEvents events
// holding up to kDeferredSmallEvents events in all, keep their events until the pool hands
// them out again: their payloads and metadata are then destroyed (metadata emptied, its map
// kept) on the thread that takes them, usually a committing thread, the one that allocated
// them. Freed on the consumer or acking thread that recycled the batch, a payload's blocks
// go to that thread's malloc cache and the committing thread allocates from glibc's slow
// paths (the pipeline bench's object payloads ran at 0.4x the speed). The bound is what a
// pool may keep alive that no event needs any more: the events of kDeferred batches and
// kDeferredSmallEvents events of small ones (each take of a deferred batch also destroys
// one small one's), the most recently released ones (kept first in, first out: a steady
// stream replaces them), and the old events of at most kDeferred batches handed out by
// acquire_stale() (a transaction's emits destroy them one by one; one left open keeps the
// rest until it ends).
// Other batches are reset by whoever recycles them, as before.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "emissions/event.hpp"
#include "emissions/transaction.hpp"
#include "pipeline/batch_ring.hpp"

namespace emissions::detail {

class SettlementTracker;
struct LaneCounters;

// When an event being retried first and last failed (wall clock, for dead-letter metadata).
struct FailureHistory {
  std::chrono::system_clock::time_point first_failed_at;
  std::chrono::system_clock::time_point last_failed_at;
};

struct Batch {
  std::vector<Event> slots;  // [0, size) are live; the rest are recycled, with {} metadata
  std::size_t size = 0;
  // Slots [size, stale) still hold the events of the batch's previous use (a deferred
  // batch handed out by BatchPool::acquire_stale()): append() hands each old payload back
  // to its caller, who destroys it; reset() and drop_stale() destroy the rest. 0 otherwise.
  std::size_t stale = 0;
  // The pool's count of batches out with stale events, while this one is (see
  // BatchPool::acquire_stale()); released by drop_stale().
  std::atomic<std::size_t>* stale_loans = nullptr;
  // Every live event has a payload that owns no memory (number, boolean, null) and the
  // empty metadata its slot keeps: reset() then has nothing to free and touches no event.
  bool plain = true;
  int cascade_depth = 0;  // 0 for a request's events, k for events of a level-k handler
  // When the commit was published (a retry batch keeps its original's); unset (epoch) for
  // batches read back from a spool and for dead-letter copies: their latency is not measured.
  std::chrono::steady_clock::time_point committed_at{};
  // Queues holding the batch, plus deliveries and drop reports still reading it.
  std::atomic<std::uint32_t> refs{0};

  // Routing, decided once per commit on the committing thread, before anything is
  // reserved (Core::route). A lane in `whole_lanes` (bit l, for l < 64) takes every event
  // into its queue 0: the common case (no filter, no partitions), which writes no per-event
  // entry, so consumers read no more of the batch than its events. For any other lane l,
  // route[i * lane_count + l] is the queue of lane l (its partition) that takes event i, or
  // kSkip when lane l does not want it. take[q] is how many events queue q (the pipeline's
  // flattened queue index) takes; 0 = the batch is not pushed there. The vectors keep their
  // capacity across recycling: no allocation in steady state.
  static constexpr std::uint32_t kSkip = 0xffffffffU;
  static constexpr std::size_t kWholeLaneBits = 64;
  std::uint64_t whole_lanes = 0;
  std::vector<std::uint32_t> route;
  std::vector<std::uint32_t> take;
  std::vector<std::uint32_t> skipped;  // per lane: events it did not want (filtered)
  std::size_t lane_count = 0;
  [[nodiscard]] bool takes_whole(std::size_t lane) const noexcept {
    return lane < kWholeLaneBits && ((whole_lanes >> lane) & 1U) != 0;
  }
  [[nodiscard]] std::uint32_t route_of(std::size_t event, std::size_t lane) const noexcept {
    return takes_whole(lane) ? 0U : route[event * lane_count + lane];
  }
  // How many events the queue `queue_flat` of lane `lane` takes (what take[] holds), read
  // from the header for a whole lane: consumers then touch no routing memory at all.
  [[nodiscard]] std::size_t taken_by(std::size_t lane, std::size_t queue_flat) const noexcept {
    return takes_whole(lane) ? size : take[queue_flat];
  }

  [[nodiscard]] std::span<const Event> events() const noexcept { return {slots.data(), size}; }

  // At-least-once bookkeeping, all empty/default on the happy path:
  // - tracker: the commit's settlement callback (Transaction::commit(on_settled)), shared by
  //   the batch and the retry batches copied from it;
  // - attempt/history: a retry batch (a copy of the events one delivery failed) holds the
  //   attempt its next delivery is and, per event, when it first and last failed;
  // - dead_letter_of: a dead-letter batch names, per event, the lane whose failure it copies.
  std::shared_ptr<SettlementTracker> tracker;
  std::uint32_t attempt = 1;
  std::vector<FailureHistory> history;
  std::vector<std::shared_ptr<LaneCounters>> dead_letter_of;

  // With a spool: a relayed batch is routed to this lane only (kAllLanes: every routed
  // lane, as for a commit), and `spool_body` is the commit path's encoding scratch, kept
  // with the storage so that steady traffic allocates nothing for it.
  static constexpr std::size_t kAllLanes = static_cast<std::size_t>(-1);
  std::size_t only_lane = kAllLanes;
  std::vector<std::uint8_t> spool_body;

  // Appends an event, reusing a recycled slot when there is one. `metadata` null means
  // none: the slot's empty object is kept.
  void append(EventName name, nlohmann::json&& payload, nlohmann::json&& metadata, EventId id,
              std::chrono::system_clock::time_point at) {
    if (size == slots.size()) {
      if (slots.capacity() == 0) slots.reserve(kInitialSlots);
      slots.emplace_back();
    }
    if (plain && (owns_memory(payload) || !metadata.is_null())) plain = false;
    Event& e = slots[size];
    e.name = name;
    // swap, not assignment: nlohmann's operator= builds and destroys a temporary. The
    // slot's old value (null, or a primitive left by reset()) goes back to the caller.
    e.payload.swap(payload);
    if (!metadata.is_null()) {
      e.metadata.swap(metadata);
    } else if (!e.metadata.is_object() || !e.metadata.empty()) {
      // value_t::object builds the empty map directly (json::object() goes through the
      // initializer-list constructor, several times slower).
      e.metadata = nlohmann::json(nlohmann::json::value_t::object);
    }
    e.id = id;
    e.emitted_at = at;
    ++size;
  }

  // Destroys the previous use's events left in [size, stale) (see `stale`).
  void drop_stale() noexcept {
    for (std::size_t i = size; i < stale; ++i)
      clear_slot(slots[i]);
    stale = 0;
    if (stale_loans != nullptr) {
      stale_loans->fetch_sub(1, std::memory_order_relaxed);
      stale_loans = nullptr;
    }
  }

  // Drops the live events' payloads and empties their metadata, keeping the storage.
  // Payloads that own no memory (numbers, booleans, null) are left for append() to
  // overwrite: nothing to free.
  // Stale slots (see `stale`) are emptied too.
  void reset() noexcept {
    for (std::size_t i = 0; !plain && i < size; ++i)
      clear_slot(slots[i]);
    drop_stale();
    size = 0;
    plain = true;
  }

  static void clear_slot(Event& slot) noexcept {
    if (owns_memory(slot.payload)) slot.payload = nullptr;
    if (slot.metadata.is_object()) {
      slot.metadata.get_ref<nlohmann::json::object_t&>().clear();
    } else {
      slot.metadata = nullptr;
    }
  }

  [[nodiscard]] static bool owns_memory(const nlohmann::json& value) noexcept {
    return value.is_structured() || value.is_string() || value.is_binary();
  }

  static constexpr std::size_t kInitialSlots = 16;
};

using BatchPtr = std::unique_ptr<Batch, BatchDeleter>;

// Batches waiting for reuse. Lock-free; bounded. Two rings: batches whose storage has
// grown past kInitialSlots (at most kCapacity of them, as the memory they keep is larger),
// and small ones, as many as the pipeline's queues can hold at once (reserve()): commits of
// one event fill a queue of buffer_size events with as many batches, and a pool smaller
// than that freed the surplus on the consumer threads, for the committing thread to
// allocate again (five allocations a commit, each freed on another thread).
class BatchPool {
 public:
  static constexpr std::size_t kCapacity = 1024;
  static constexpr std::size_t kMaxSmall = 16384;  // reserve()'s bound
  static constexpr std::size_t kMaxSlots = 256;    // larger batches are freed, not kept

  // Batches kept with their events, to be reset by the thread that takes them.
  static constexpr std::size_t kDeferred = 32;
  // Batches of at most this many events are deferred apart, at most kDeferredSmall of them
  // holding at most kDeferredSmallEvents events together (and no more than reserve() made
  // room for): what they keep alive that no event needs is bounded by count, whatever the
  // reservation (from review: sized by the reservation, a burst of one-event commits of
  // 10 KB left 100 MB of dead payloads in the pool). At most 4,096 events, fewer than
  // kDeferred batches of kMaxSlots may keep. Counted in events, not batches: settlements
  // come back in bursts of thousands of one-event batches (the webhook bench's I/O thread),
  // and a bound of 1,024 batches had that thread destroy most of their payloads itself.
  static constexpr std::size_t kSmallEvents = 4;
  static constexpr std::size_t kDeferredSmall = 4096;
  static constexpr std::size_t kDeferredSmallEvents = 4096;

  BatchPool() : deferred_(kDeferred), large_(kCapacity), small_(std::in_place, kCapacity) {}
  ~BatchPool() {
    while (Batch* batch = deferred_.try_pop())
      BatchDeleter{}(batch);
    while (Batch* batch = deferred_small_ ? deferred_small_->try_pop() : nullptr)
      BatchDeleter{}(batch);
    while (Batch* batch = large_.try_pop())
      BatchDeleter{}(batch);
    while (Batch* batch = small_->try_pop())
      BatchDeleter{}(batch);
  }
  BatchPool(const BatchPool&) = delete;
  BatchPool& operator=(const BatchPool&) = delete;

  // Room for `batches` small batches (at most kMaxSmall), as many of them with their events
  // (see recycle()). Only before any other call may run concurrently (the Core's
  // constructor).
  void reserve(std::size_t batches) {
    batches = batches < kMaxSmall ? batches : kMaxSmall;
    grow(deferred_small_, std::min(batches, kDeferredSmall));
    grow(small_, batches);
  }

  // A batch with no event: a pooled one (a deferred one's previous events destroyed here,
  // on the calling thread) or a new one.
  BatchPtr acquire() {
    if (Batch* batch = deferred_.try_pop()) {
      batch->reset();
      reset_one_deferred_small();
      return BatchPtr(batch);
    }
    if (Batch* batch = take_deferred_small()) {
      batch->reset();
      return BatchPtr(batch);
    }
    if (Batch* batch = large_.try_pop()) return BatchPtr(batch);
    if (Batch* batch = small_->try_pop()) return BatchPtr(batch);
    return BatchPtr(std::make_unique<Batch>().release());
  }

  // As acquire(), but a deferred batch's previous events are not destroyed here: they stay
  // in its slots as `stale`, and each append() hands one back to its caller, so that the
  // caller frees an old event's blocks as it allocates the next one's (what glibc's
  // per-thread cache serves best: destroying a hundred events at once overflowed it, and
  // the allocations that followed took malloc's slow paths). The caller calls drop_stale()
  // before the batch leaves its thread (Transaction::hand_off), so that the old events are
  // never kept longer than by acquire().
  // At most kDeferred batches are out with stale events at once (a transaction left open
  // keeps its batch's old events until it ends: unbounded, open transactions would keep
  // dead events without limit); past that, the old events are destroyed here as by
  // acquire().
  BatchPtr acquire_stale() {
    if (Batch* batch = deferred_.try_pop()) {
      reset_one_deferred_small();
      return lend_stale(batch);
    }
    if (Batch* batch = take_deferred_small()) return lend_stale(batch);
    return acquire();
  }

  // How many batches are out with stale events (at most kDeferred).
  [[nodiscard]] std::size_t stale_loans() const noexcept {
    return stale_loans_.load(std::memory_order_relaxed);
  }

  // Takes ownership of `batch` (no other reference may remain). Its events stay until
  // acquire() hands it out again while there is room for it with the deferred batches: a
  // batch of at most kSmallEvents events among reserve()'s small ones, any other among
  // kDeferred; otherwise they are destroyed here (see the file comment).
  void recycle(Batch* batch) noexcept {
    batch->drop_stale();  // a transaction that ended without a commit (no-op otherwise)
    batch->cascade_depth = 0;
    batch->committed_at = {};
    batch->only_lane = Batch::kAllLanes;
    if (batch->tracker) batch->tracker.reset();
    if (batch->attempt != 1 || !batch->dead_letter_of.empty()) {
      batch->attempt = 1;
      batch->history.clear();
      batch->dead_letter_of.clear();
    }
    batch->refs.store(0, std::memory_order_relaxed);
    const std::size_t slots = batch->slots.capacity();
    if (slots > kMaxSlots) {
      BatchDeleter{}(batch);
      return;
    }
    if (!batch->plain) {
      if (batch->size <= kSmallEvents && push_deferred_small(batch)) return;
      if (deferred_.try_push(batch)) return;
    }
    keep_reset(batch);
  }

 private:
  // `ring` given room for at least `capacity` batches, keeping those it holds (from
  // reserve() only: not while others use the pool).
  static void grow(std::optional<BoundedRing<Batch>>& ring, std::size_t capacity) {
    if (ring && capacity <= ring->capacity()) return;
    std::vector<Batch*> kept;
    while (Batch* batch = ring ? ring->try_pop() : nullptr)
      kept.push_back(batch);
    ring.emplace(capacity);
    for (Batch* batch : kept)
      if (!ring->try_push(batch)) BatchDeleter{}(batch);
  }

  // A deferred batch lent with its events as stale (see acquire_stale()), or reset here
  // once kDeferred batches are out so. (A pooled batch holds no loan: recycle() dropped it.)
  BatchPtr lend_stale(Batch* batch) noexcept {
    if (!batch->plain && stale_loans_.fetch_add(1, std::memory_order_relaxed) < kDeferred) {
      batch->stale = std::max(batch->size, batch->stale);
      batch->stale_loans = &stale_loans_;
      batch->size = 0;
      batch->plain = true;
      return BatchPtr(batch);
    }
    if (!batch->plain) stale_loans_.fetch_sub(1, std::memory_order_relaxed);
    batch->reset();
    return BatchPtr(batch);
  }

  // `batch` emptied and put back with the batches of its size, or freed when they are full.
  void keep_reset(Batch* batch) noexcept {
    batch->reset();
    const bool kept = batch->slots.capacity() <= Batch::kInitialSlots ? small_->try_push(batch)
                                                                      : large_.try_push(batch);
    if (!kept) BatchDeleter{}(batch);
  }

  // `batch` (at most kSmallEvents events) kept with its events among the deferred small
  // ones, when they hold fewer than kDeferredSmallEvents events with it.
  bool push_deferred_small(Batch* batch) noexcept {
    if (!deferred_small_) return false;
    const std::size_t events = batch->size;
    if (deferred_small_events_.fetch_add(events, std::memory_order_relaxed) + events <=
            kDeferredSmallEvents &&
        deferred_small_->try_push(batch)) {
      return true;
    }
    deferred_small_events_.fetch_sub(events, std::memory_order_relaxed);
    return false;
  }
  // One of the deferred small batches, or null; uncounted from kDeferredSmallEvents.
  Batch* pop_deferred_small() noexcept {
    if (!deferred_small_) return nullptr;
    Batch* batch = deferred_small_->try_pop();
    if (batch != nullptr) deferred_small_events_.fetch_sub(batch->size, std::memory_order_relaxed);
    return batch;
  }

  // A deferred small batch for the caller, when there is one, and the events of the next
  // one destroyed here, that batch put back with the reset ones: each acquire takes up to
  // two, so the deferred small batches do not pile up while commits keep pace with
  // settlements (they grow only when more batches come back than are taken, by at most as
  // many as were out at once) and the thread that recycles them seldom finds no room.
  Batch* take_deferred_small() noexcept {
    Batch* batch = pop_deferred_small();
    if (batch == nullptr) return nullptr;
    reset_one_deferred_small();
    return batch;
  }

  // The events of one deferred small batch destroyed here, that batch put back with the
  // reset ones. Also on each take of a deferred large batch: otherwise commits of more than
  // kSmallEvents events after a burst of small ones would never drain the small ones.
  void reset_one_deferred_small() noexcept {
    if (Batch* next = pop_deferred_small()) keep_reset(next);
  }

  BoundedRing<Batch> deferred_;  // at most kDeferred, their events not yet destroyed
  // Batches of at most kSmallEvents events with their events: at most kDeferredSmall
  // batches holding at most kDeferredSmallEvents events, and no more than reserve() made
  // room for; none before it.
  std::optional<BoundedRing<Batch>> deferred_small_;
  std::atomic<std::size_t> deferred_small_events_{0};  // their events (<= kDeferredSmallEvents)
  std::atomic<std::size_t> stale_loans_{0};  // batches out with stale events (<= kDeferred)
  BoundedRing<Batch> large_;
  std::optional<BoundedRing<Batch>> small_;  // replaced only by reserve()
};

}  // namespace emissions::detail
