// Internal: the delivery pipeline behind an Emitter.
//
// How an event travels (docs/ARCHITECTURE.md draws it):
//  1. Transaction::emit appends to the transaction's Batch (recycled storage).
//  2. commit() calls Core::publish (publish.cpp). Routing first: on the committing thread,
//     with nothing reserved, each lane's adapter says which events it wants (interested)
//     and, for a partitioned lane, which partition takes each (partition_by). Then room is
//     reserved in every queue that takes at least one event (only for those events), the
//     overflow policies apply, and one pointer to the shared Batch is pushed into each such
//     queue. Drops are counted at once and reported after the commit's state is settled.
//  3. Each queue's consumer thread(s) (consumer.cpp) pop batches, cut the events routed to
//     them into runs of at most max_demand, and hand each run to the adapter in place: a
//     synchronous adapter settles the run with the Status it returns, an asynchronous one
//     gets a Delivery (delivery.cpp) and settles each event later, from any thread.
//  4. The last reference to a Batch (queues, deliveries, drop reports) recycles it.
//
// A Lane is one adapter: one queue and one consumer normally; with concurrency N, N
// consumers share one queue, or (with partition_by) each of N queues takes the events of
// its partition. drain() and shutdown() (lifecycle.cpp) wait on watermarks: a queue is
// finished below position p once no item before p is queued, in a consumer's hands or in
// an unsettled delivery.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/parking.hpp"
#include "emissions/clock.hpp"
#include "emissions/config.hpp"
#include "emissions/deadline.hpp"
#include "emissions/delivery.hpp"
#include "emissions/emitter.hpp"
#include "emissions/event.hpp"
#include "pipeline/batch.hpp"
#include "pipeline/batch_ring.hpp"
#include "pipeline/options.hpp"
#include "pipeline/settlement_tracker.hpp"

namespace emissions::detail {

namespace spool {
class Spool;
struct LogPosition;
}  // namespace spool
class HandlerDispatcher;
class RelayWindow;
struct DeliveryState;
struct DeliveryHome;

// The cascade depth of the batch being delivered on this thread (handlers read it).
int delivering_depth() noexcept;
void set_delivering_depth(int depth) noexcept;

// The settlement tracker of the batch being delivered on this thread (null when its commit
// asked for none) and the delivering lane's index: the handler dispatcher settles each
// event for the commit's callback only once its invocations have finished.
struct DeliveringSettlement {
  const std::shared_ptr<SettlementTracker>* tracker = nullptr;
  std::size_t lane = 0;
};
DeliveringSettlement delivering_settlement() noexcept;

// A dead-letter lane delivered `run` (a part of `batch`): each source adapter's
// dead_lettered counts its events.
void credit_dead_letters(const Batch& batch, std::span<const Event> run) noexcept;

// What deliveries in users' hands still reference after the Core is gone: the storage
// their events live in and the channel that wakes drains.
struct PipelineShared {
  BatchPool pool;
  WaitChannel progress;  // a batch or a delivery finished: drains re-check their watermarks

  // Drops one reference; the last one recycles the storage.
  void release(Batch* batch) noexcept {
    if (batch->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) pool.recycle(batch);
  }
};

// An event of a delivery that failed, waiting for the consumer's decision.
struct FailedEvent {
  std::size_t index;  // in the delivery's run
  Status error;
};

// One adapter's counters; shared with its deliveries, which may settle after the Core died.
struct LaneCounters {
  explicit LaneCounters(std::string n) : name(std::move(n)) {}
  const std::string name;
  alignas(64) std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> filtered{0};
  std::atomic<std::uint64_t> dropped{0};
  std::atomic<std::uint64_t> received{0};  // dead-letter lanes only (others: committed)
  std::atomic<std::uint64_t> retried{0};
  std::atomic<std::uint64_t> dead_lettered{0};
  // Commit to delivery (DeliveryLatency's buckets, non-cumulative, and the sum).
  std::array<std::atomic<std::uint64_t>, DeliveryLatency::kBounds.size() + 1> latency_buckets{};
  std::atomic<std::uint64_t> latency_sum_ns{0};

  // `count` events of a batch committed at `committed_at` were delivered now. Batches
  // without a commit time (read back from a spool) are not measured.
  void record_latency(std::chrono::steady_clock::time_point committed_at,
                      std::uint64_t count) noexcept {
    if (committed_at == std::chrono::steady_clock::time_point{} || count == 0) return;
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::steady_clock::now() - committed_at)
                        .count();
    const double seconds = static_cast<double>(ns) * 1e-9;
    std::size_t bucket = 0;
    while (bucket < DeliveryLatency::kBounds.size() && seconds > DeliveryLatency::kBounds[bucket])
      ++bucket;
    latency_buckets[bucket].fetch_add(count, std::memory_order_relaxed);
    latency_sum_ns.fetch_add(static_cast<std::uint64_t>(ns < 0 ? 0 : ns) * count,
                             std::memory_order_relaxed);
  }
};

// A consumer's events waiting to be tried again, and the asynchronous deliveries that
// finished with failures it has not decided on yet (retry, fail for good, dead-letter).
// Shared with those deliveries, which may finish after the Core died.
struct RetryBox {
  struct Waiting {
    Batch* batch;           // a retry batch (one reference), see Batch::attempt
    Clock::time_point due;  // on Config::clock
    std::size_t ticket;     // the original batch's ring position (drain watermarks)
    bool in_hand = false;   // being delivered by the consumer now
  };
  explicit RetryBox(std::shared_ptr<PipelineShared> s) : shared(std::move(s)) {}
  ~RetryBox();
  RetryBox(const RetryBox&) = delete;
  RetryBox& operator=(const RetryBox&) = delete;

  // Whether any entry holds work from before ring position `target`.
  [[nodiscard]] bool holds_below(std::size_t target) const;

  std::shared_ptr<PipelineShared> shared;
  mutable std::mutex mutex;
  std::vector<std::shared_ptr<DeliveryState>> undecided;  // guarded by mutex
  std::size_t undecided_in_hand = 0;  // the first ones, being decided by the consumer
  std::deque<Waiting> waiting;        // guarded; in ticket order (head-of-line)
  std::atomic<std::size_t> size{0};   // undecided.size() + waiting.size()
  WaitChannel* wakeup = nullptr;      // the consumer's queue's; null once the Core is finished
  // A consumer sleeping until its first retry is due waits here, not on its queue's
  // channel: commits wake one waiter there, and must reach an idle consumer of the pool.
  // Notified by the clock's subscription, by undecided failures and by shutdown.
  WaitChannel wake;
};

// An asynchronous consumer's deliveries that are not settled yet.
struct Window {
  mutable std::mutex mutex;
  std::vector<std::shared_ptr<DeliveryState>> open;  // guarded by mutex
  std::atomic<std::size_t> size{0};                  // open.size(), readable without the lock
  // The window shrank to resume_at or below, a failure awaits the consumer's decision, or
  // shutdown gave up.
  WaitChannel freed;
  // A consumer that found its window full waits until it is back at this size, so that it
  // wakes once per few settlements, not once per settlement (see resume_size).
  std::size_t resume_at = static_cast<std::size_t>(-1);
};

// The size a full window of `max_in_flight` must shrink to before its consumer resumes:
// half of it free, rounded down (at least one slot). Waking on every settlement cost a
// futex wake-up per batch when acks stream in from another thread (docs/BENCHMARKS.md).
constexpr std::size_t resume_size(std::size_t max_in_flight) noexcept {
  return max_in_flight - (max_in_flight / 2 > 0 ? max_in_flight / 2 : 1);
}

struct Consumer {
  struct Queue* queue = nullptr;
  std::thread thread;
  // The ring position this consumer is taking or working on (see BoundedRing::try_pop),
  // kNoClaim while it holds nothing.
  static constexpr std::size_t kNoClaim = static_cast<std::size_t>(-1);
  alignas(64) std::atomic<std::size_t> claim{kNoClaim};
  std::atomic<std::uint32_t> exited{0};
  std::atomic<std::uint64_t> in_call_events{0};  // events of the batch being delivered now
  // Inside adapter code now (init, handle_events, deliver, flush): what shutdown, past its
  // deadline, leaves for finish(). A consumer waiting for room in its window is not.
  std::atomic<bool> in_adapter_call{false};
  std::shared_ptr<Window> window;  // asynchronous adapters only
  // What its deliveries share (see DeliveryHome), made by the consumer thread at its first
  // delivery, once the lane's wiring (dead letters) is final.
  std::shared_ptr<const DeliveryHome> delivery_home;
  std::shared_ptr<RetryBox> retries;
  std::minstd_rand random;       // backoff jitter (common/backoff.hpp), consumer thread only
  bool serving_retries = false;  // inside serve_retries_first (consumer thread only)
  bool joined = false;

  // Who takes this consumer's batches now (AdapterOptions::deliver_on_commit; otherwise
  // always kConsumerThread). The consumer thread holds the role except while it waits idle;
  // then a committing thread may take it (compare-and-swap from kIdle) to deliver what is
  // queued itself, and gives it back (Core::help_consumer). Everything below it and the
  // fields marked "consumer thread only" belong to the holder: the role's hand-over orders
  // them (acquire, release).
  static constexpr std::uint32_t kConsumerThread = 0;
  static constexpr std::uint32_t kIdle = 1;
  static constexpr std::uint32_t kCommittingThread = 2;
  alignas(64) std::atomic<std::uint32_t> role{kConsumerThread};
  WaitChannel role_returned;  // notified when a committing thread gives the role back
  // Takes the role for `taker` if it is idle; otherwise leaves its holder in `*holder`.
  bool try_take_role(std::uint32_t taker, std::uint32_t* holder = nullptr) noexcept {
    std::uint32_t expected = kIdle;
    const bool taken = role.compare_exchange_strong(expected, taker, std::memory_order_seq_cst);
    if (holder != nullptr) *holder = expected;
    return taken;
  }
  // Gives the role back (the holder's work on the consumer's state is published to the
  // next holder) and wakes a consumer thread waiting for it.
  void give_role_back() noexcept {
    role.store(kIdle, std::memory_order_seq_cst);
    role_returned.notify();
  }
  // Committing threads that found the consumer thread holding the role: it lets them have
  // it after its batch (yield_role), so that under load the commits deliver what they
  // commit instead of queueing it for a consumer that never catches up.
  std::atomic<std::uint64_t> help_wanted{0};
  // A committing thread gave the role back with work it could not do (a full window, a
  // retry, its batch limit, shutdown): the consumer thread takes it on at once.
  std::atomic<bool> leftovers{false};
  bool need_init = true;  // the adapter's init() is due before its next call
  bool helping = false;   // a committing thread holds the role (its deliveries never wait)
  // A batch a committing thread stopped delivering behind a retry (the rest of its commit
  // waits behind it): the consumer thread delivers the rest from event `resume_from`, after
  // the retry. Its claim is kept meanwhile (drains wait for it).
  Batch* resume_batch = nullptr;
  std::size_t resume_from = 0;
  // Its events still to hand over (for shutdown's report; any thread reads it).
  std::atomic<std::uint64_t> held_events{0};
};

// One bounded ring with its reservation counter and the threads waiting on it.
struct Queue {
  Queue(std::size_t capacity_events, std::size_t ring_slots, std::size_t partition,
        std::size_t flat_index)
      : ring(ring_slots), capacity(capacity_events), index(partition), flat(flat_index) {}

  // No item before `target` is queued or being taken (each was handed to the adapter or
  // dropped). Reads head, then evictions, then claims: the order that makes it exact.
  [[nodiscard]] bool handed_over_below(std::size_t target) const noexcept;
  // Moreover no delivery of an item before `target` is unsettled. Call after
  // handed_over_below(target) held (claims move past a batch only after its deliveries are
  // in the window).
  [[nodiscard]] bool settled_below(std::size_t target) const;

  BoundedRing<Batch> ring;
  const std::size_t capacity;  // events
  const std::size_t index;     // partition number within its lane
  const std::size_t flat;      // index among all the pipeline's queues (Batch::take)
  std::vector<Consumer*> consumers;
  alignas(64) std::atomic<std::size_t> occupancy{0};  // events reserved or queued
  std::atomic<std::uint32_t> evicting{0};             // threads popping to drop
  WaitChannel space;                                  // commits blocked on a full queue
  WaitChannel wakeup;                                 // idle consumers
  // Its consumer's role may be taken by committing threads (deliver_on_commit): a commit's
  // push does not wake it, help_consumers() does if it must.
  bool role_shared = false;
};

// One adapter: its queues, consumers and counters.
struct Lane {
  Lane(std::shared_ptr<Adapter> a, LaneOptions o, std::size_t lane_index);

  [[nodiscard]] bool partitioned() const noexcept { return queues.size() > 1; }

  std::shared_ptr<Adapter> adapter;
  AsyncAdapter* async = nullptr;  // adapter, when it is asynchronous
  std::shared_ptr<LaneCounters> counters;
  const std::string& name;  // counters->name
  const LaneOptions options;
  const std::size_t index;      // position in Core::lanes_
  Lane* dead_letter = nullptr;  // where this lane's failures for good go
  bool is_dead_letter = false;  // a dead-letter lane: takes only dead-letter copies
  // Whether failures go through the consumer's decision (retry or dead letter).
  [[nodiscard]] bool decides_failures() const noexcept {
    return options.retry.max_attempts != 1 || dead_letter != nullptr;
  }
  std::vector<std::unique_ptr<Queue>> queues;
  std::vector<std::unique_ptr<Consumer>> consumers;
  // flush() and terminate() never overlap, and nothing is called after terminate(): a
  // flusher counts itself in `flushing` and then checks `terminating`; terminate sets
  // `terminating`, then waits for `flushing` to reach 0 (a Dekker pair, no lock held
  // while user code runs).
  std::atomic<std::uint32_t> flushing{0};
  std::atomic<bool> terminating{false};
  WaitChannel flush_done;
  bool terminated = false;  // touched by shutdown and finish only
};

// Drops decided by one publish, reported ([emissions, event, dropped]) by the caller once
// the transaction's own state is settled, so a telemetry handler may commit again. Their
// settlement trackers are told then too (a drop may complete another commit's settlement).
class DropReport {
 public:
  DropReport() = default;
  DropReport(const DropReport&) = delete;
  DropReport& operator=(const DropReport&) = delete;
  ~DropReport() { release(); }

  // Fires the telemetry (user code) and lets go of the batches. Call with no state held.
  void fire() noexcept;

 private:
  friend class Core;
  struct Entry {
    Batch* batch;             // one reference held
    const std::string* lane;  // the lane's name (kept alive by `counters`)
    std::shared_ptr<LaneCounters> counters;
    std::size_t lane_index;
    std::uint32_t partition;  // the lane's queue whose events were dropped, or kWholeBatch
  };
  // Every event of the batch, routed or not (a full spool drops a commit before routing).
  static constexpr std::uint32_t kWholeBatch = 0xffffffffU;
  [[nodiscard]] static bool dropped(const Entry& entry, std::size_t event) noexcept {
    return entry.partition == kWholeBatch ||
           entry.batch->route_of(event, entry.lane_index) == entry.partition;
  }
  void release() noexcept;
  std::shared_ptr<PipelineShared> shared_;
  std::vector<Entry> entries_;
};

class Core : public std::enable_shared_from_this<Core> {
 public:
  explicit Core(Config config);  // validates (ConfigError); starts no thread
  ~Core();
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  void start();

  // Hands the batch to every lane that wants some of its events. On success `batch` is
  // taken (null); on error it is left untouched and nothing was delivered anywhere.
  // `cascade_depth` > 0 marks events emitted by handlers: they are accepted until shutdown
  // seals the pipeline, and never wait for room in the handler dispatcher's own queue
  // (the pool that emits them is what drains it): when it is full they fail at once.
  // Drops are counted here and left in `drops` for the caller to fire().
  // With `on_settled`, the batch gets a SettlementTracker (left in `tracker`, whose hold the
  // caller releases after firing the drops).
  Status publish(BatchPtr& batch, int cascade_depth, DropReport& drops,
                 std::function<void(const Settlement&)>* on_settled = nullptr,
                 std::shared_ptr<SettlementTracker>* tracker = nullptr);

  // Event storage for a transaction, recycled from delivered batches when possible.
  BatchPtr acquire_batch() { return shared_->pool.acquire(); }
  // The same, for a Transaction's emits: may hold stale events (BatchPool::acquire_stale()).
  BatchPtr acquire_stale_batch() { return shared_->pool.acquire_stale(); }
  void recycle(Batch* batch) noexcept { shared_->pool.recycle(batch); }

  Status drain(std::chrono::milliseconds timeout);
  Status shutdown(std::chrono::milliseconds timeout);
  // After shutdown: waits, without limit, for consumers stuck in an adapter call, then
  // terminates their adapters and lets go of every adapter and handler (so that a Core
  // kept alive by a thread's cache holds no sockets or files). Used by ~Emitter.
  void finish();

  [[nodiscard]] bool closed() const noexcept { return closed_.load(std::memory_order_relaxed); }
  // Whether a transaction at `cascade_depth` may still emit and commit: requests until
  // shutdown starts, handlers' cascades until it seals the pipeline.
  [[nodiscard]] bool accepting(int cascade_depth) const noexcept {
    return !(cascade_depth > 0 ? sealed_ : closed_).load(std::memory_order_relaxed);
  }
  [[nodiscard]] int max_cascade_depth() const noexcept { return max_cascade_depth_; }
  [[nodiscard]] EmitterStats stats() const;
  // A Settlement of no event: the settled lanes' names, every count 0.
  [[nodiscard]] Settlement empty_settlement() const;
  void count_discarded(std::size_t events) noexcept;
  void count_cascade_dropped() noexcept;

 private:
  enum class StopMode : std::uint32_t { running, when_empty, abandon };

  // Per-thread-ish counters, so committing threads do not share a cache line.
  struct alignas(64) Shard {
    std::atomic<std::int64_t> in_flight{0};  // publishes under way
    std::atomic<std::uint64_t> events{0};
    std::atomic<std::uint64_t> transactions{0};
    std::atomic<std::uint64_t> discarded{0};
    std::atomic<std::uint64_t> cascade_dropped{0};
  };
  static constexpr std::size_t kShards = 16;
  Shard& my_shard() noexcept;

  // ---- publish.cpp
  void route(Batch& batch) const;  // user code: interested(), partition_by
  [[nodiscard]] bool try_reserve(Queue& queue, std::size_t n, std::size_t limit) noexcept;
  bool reserve_blocking(Queue& queue, std::size_t n, Deadline& wait_deadline,
                        std::chrono::milliseconds timeout, bool cascade) noexcept;
  void unreserve(Queue& queue, std::size_t n) noexcept;
  // Pops the oldest batch of `queue` to drop it; counts it. Null when the ring is empty.
  Batch* evict_oldest(Lane& lane, Queue& queue) noexcept;
  void record_drop(DropReport& drops, Lane& lane, const Queue& queue, Batch* batch) noexcept;
  // Pushes `batch` (its refs set) to every queue whose take[] is not 0, in queue order, and
  // wakes their consumers (with `helping_after`, not those of role-shared queues: the caller
  // calls help_consumers() next). Room must be reserved. The batch may be recycled as soon as the
  // last push is done: the caller must not touch it after this call.
  void push_to_queues(Batch* batch, bool helping_after = false) noexcept;
  [[nodiscard]] bool publishes_in_flight() const noexcept;
  // On a committing thread, after its pushes (deliver_on_commit lanes): for each such lane
  // whose consumer is idle with batches queued, takes the consumer's role and delivers the
  // queued batches itself while nothing would make it wait (a retry waiting, a window
  // without room for a whole batch, shutdown), at most kMaxHelpedBatches; then gives the
  // role back and wakes the consumer for what is left. Runs adapter code; never blocks
  // otherwise.
  void help_consumers() noexcept;
  // help_consumers() for one lane's consumer (a committing thread, no pipeline role).
  void help_consumer(Lane& lane, Consumer& consumer) noexcept;

  // ---- retry.cpp
  // Decides what becomes of `failed` events of `run` (a part of `batch`, at ring position
  // `ticket`): tried again later, failed for good (and dead-lettered), or dropped when
  // shutdown gave up. `failed` lists (index in run, error); `retry_after_ms` is the
  // adapter's lower bound. Consumer thread only; may block (a full dead-letter queue).
  void decide_failures(Lane& lane, Consumer& consumer, Batch& batch, std::size_t ticket,
                       std::span<const Event> run, std::span<FailedEvent> failed,
                       std::int64_t retry_after_ms) noexcept;
  // The same for a whole run failed with one Status.
  void fail_run(Lane& lane, Consumer& consumer, Batch& batch, std::size_t ticket,
                std::span<const Event> run, const Status& error) noexcept;
  // Decides the asynchronous deliveries that finished with failures, then delivers the
  // first waiting retry when it is due, or sleeps until it is (or until woken).
  void serve_retries(Lane& lane, Consumer& consumer, bool& need_init) noexcept;
  // Before handing over the next run of a batch: serves every waiting retry (sleeping until
  // each is due) so that no event is handed before an earlier one's retry (head-of-line).
  // Does nothing inside a retry's own delivery.
  void serve_retries_first(Lane& lane, Consumer& consumer, bool& need_init) noexcept;
  void send_dead_letters(Lane& source, BatchPtr copies) noexcept;
  std::uint64_t drop_retries(Lane& lane, bool all, const char* reason) noexcept;

  // ---- spool_relay.cpp (only with Config::spool)
  // The commit path with a spool: appends the batch to the log (its events are on disk when
  // this returns ok), counts it and recycles the batch. Relays deliver it.
  // With `tracker`, the live handoff's tracker is left there for the caller to release
  // (as publish does).
  Status publish_to_spool(BatchPtr& batch, int cascade_depth, DropReport& drops,
                          std::function<void(const Settlement&)>* on_settled,
                          std::shared_ptr<SettlementTracker>* tracker);
  class LiveHandoff;  // the Spool::AppendHook of one commit
  // A full spool with no blocking lane dropped the commit (nothing was written): counts it
  // dropped for every lane and reports its settlement as in-memory drops do.
  Status drop_for_every_lane(BatchPtr& buffer, int cascade_depth, DropReport& drops,
                             std::function<void(const Settlement&)>* on_settled,
                             std::shared_ptr<SettlementTracker>* tracker_out);
  // The spool reclaimed `events` a drop_oldest lane had not read (Spool::set_overflow).
  void count_spool_overflow(std::size_t lane_index, std::uint64_t events) noexcept;
  // Under the spool's append lock (live handoff): hands the committed batch, commit `at` of
  // the log, to every live lane with room in its queues; the others fall behind (their
  // relays read it back). True when some queue took the batch (`buffer` is then released).
  bool hand_over_live(BatchPtr& buffer, const std::shared_ptr<SettlementTracker>& tracker,
                      int cascade_depth, const spool::LogPosition& at,
                      const spool::LogPosition& next) noexcept;
  // One routed lane's relay thread: reads the log from the lane's position and hands each
  // commit to that lane alone (publish_relayed), until relays_stop_.
  void run_relay(std::size_t lane) noexcept;
  // Routes `batch` (commit `seq` of the log) to `lane` only, waits for room in its queues
  // (never drops: the backlog is on disk), and pushes it. closed once the relays stop.
  Status publish_relayed(Lane& lane, BatchPtr& batch, std::uint64_t seq, int cascade_depth);
  // A relay's room in `lane`'s queues, share(q) events in its queue q (the relay paths'
  // common part; defined in spool_relay.cpp, its only user): false, nothing reserved, once
  // the relays stop.
  template <typename Share>
  bool reserve_for_relay(Lane& lane, const Share& share) noexcept;
  // Pushes `batch` (its refs set, room reserved) to each of `lane`'s queues whose share is
  // not 0; the caller must not touch the batch afterwards.
  template <typename Share>
  void push_to_lane(Lane& lane, Batch* batch, const Share& share) noexcept;
  // The relay's side of the lane's window: hands `batch` (commit `seq`, kept by the commit
  // path with one reference, `takes` events for each of the lane's queues) to the lane,
  // waiting for room in its queues as publish_relayed does. The window's reference is
  // released or passed on in every case; closed once the relays stop.
  Status publish_windowed(Lane& lane, Batch* batch, const std::uint32_t* takes);
  // Before the append lock (live handoff, no lock held): for each live lane that blocks and
  // whose queue has no room for `batch`, waits for room so that it need not fall behind: up
  // to 5 ms in all (and no longer than any such lane's block_timeout); a wait that times out
  // pauses these waits on that lane for 100 ms. Never waits on the pipeline's own threads,
  // inside a settlement callback (on an adapter's thread, which may be what frees room) or
  // for a cascade. Returns whether it waited.
  bool await_live_room(const Batch& batch, int cascade_depth) noexcept;
  // Under the append lock: whether room in lane `l`'s full window for a commit of `n` events
  // is coming soon (its relay is near the window, and its queues have room).
  bool window_room_coming(std::size_t l, std::size_t n) noexcept;
  // Releases what the lanes' windows still hold (no adder or taker may run).
  void clear_windows() noexcept;
  // Waits until every relay handed over every commit appended before this call.
  bool wait_for_relays(Deadline deadline) noexcept;
  void stop_relays() noexcept;

  // ---- consumer.cpp
  void run_consumer(Lane& lane, Consumer& consumer) noexcept;
  // Takes back the role of a deliver_on_commit consumer after it waited idle, waiting for a
  // committing thread that holds it to give it back (consumer thread).
  void reclaim_role(Consumer& consumer) noexcept;
  // Lets committing threads that asked (help_wanted) have a deliver_on_commit consumer's
  // role: waits while they take its batches, then takes it back (consumer thread).
  void yield_role(Consumer& consumer) noexcept;
  // Delivers `batch`, just taken from the consumer's queue at consumer.claim, and lets go of
  // it (the role's holder).
  void consume(Lane& lane, Consumer& consumer, Batch* batch) noexcept;
  // The part of consume() after the bookkeeping of the pop: delivers `batch` from event
  // `from` (a batch left behind a retry resumes here), then lets go of it unless a
  // committing thread stopped again (Consumer::resume_batch).
  // `events`: how many of them are routed to this consumer from `from` on.
  void deliver_taken(Lane& lane, Consumer& consumer, Batch* batch, std::size_t from,
                     std::size_t events) noexcept;
  // How many events of `batch` from event `from` on are routed to `consumer`.
  [[nodiscard]] static std::size_t events_from(const Lane& lane, const Consumer& consumer,
                                               const Batch& batch, std::size_t from) noexcept;
  // How many deliveries handing `batch` to `consumer`'s adapter makes (its runs).
  [[nodiscard]] static std::size_t runs_in(const Lane& lane, const Consumer& consumer,
                                           const Batch& batch) noexcept;
  // Waits for the next batch (or retry, or shutdown): polls for up to `spin`, then parks.
  // Returns the idle spell for IdlePolicy: zero when polling found the work, otherwise how
  // long it waited, parked included.
  std::chrono::nanoseconds idle_wait(Queue& queue, const RetryBox& retries,
                                     std::chrono::nanoseconds spin) noexcept;
  // Hands the events of `batch` routed to this consumer, from event `from`, to the adapter
  // in runs. Returns batch.size once done (also when shutdown dropped the rest), or, on a
  // committing thread that found a retry waiting, the first event of the run it did not
  // hand over (Consumer::resume_batch).
  std::size_t deliver(Lane& lane, Consumer& consumer, Batch& batch, std::size_t position,
                      bool& need_init, std::size_t from) noexcept;
  void deliver_sync(Lane& lane, Consumer& consumer, Batch& batch, std::size_t position,
                    std::span<const Event> run, bool& need_init) noexcept;
  // False when the consumer was told to abandon its work (before the call, or while it
  // waited for its window).
  bool deliver_async(Lane& lane, Consumer& consumer, Batch& batch, std::size_t position,
                     std::span<const Event> run, bool& need_init) noexcept;

  // ---- lifecycle.cpp
  // timeout when the deadline passed first; otherwise the first flush() error, if any.
  // `completed` (when given) tells the two apart: a flush may itself return timeout.
  Status drain_until(Deadline deadline, std::chrono::milliseconds timeout,
                     bool* completed = nullptr);
  std::string pending_summary(const std::vector<std::size_t>& targets) const;
  Status flush_adapters(Deadline deadline);
  bool wait_for_publishes(Deadline deadline) noexcept;
  void stop_consumers(bool drained, Deadline deadline);
  Status terminate_adapters(Deadline deadline);
  Status terminate_adapter(Lane& lane, Deadline deadline) noexcept;
  std::uint64_t discard_queued(Lane& lane, const char* reason) noexcept;
  std::uint64_t drop_unsettled(Lane& lane, const char* reason) noexcept;
  Status shutdown_phases(std::chrono::milliseconds timeout);

  std::shared_ptr<PipelineShared> shared_;  // first: outlives every queue's batches
  // With Config::spool: the log, and one relay thread per routed lane (joined by
  // stop_relays). Shared with settlement trackers, which may outlive the Core.
  std::shared_ptr<spool::Spool> spool_;
  std::vector<std::thread> relays_;
  // With live handoff, per routed lane: the commits it did not take at commit time, kept in
  // memory for its relay (relay_window.hpp). Built before the relays start.
  std::vector<std::unique_ptr<RelayWindow>> windows_;
  std::vector<std::size_t> windowing_;  // hand_over_live's scratch (under the append lock)
  // Commits relays handed over, read back from the log or taken from a window (stats()).
  std::atomic<std::uint64_t> relayed_from_log_{0};
  std::atomic<std::uint64_t> relayed_from_window_{0};
  std::atomic<bool> relays_stop_{false};
  std::chrono::milliseconds spool_wait_{0};  // pipeline.block_timeout: a full spool's wait
  std::shared_ptr<Clock> clock_;             // retry delays
  // Configured adapters, then the handler dispatcher, then dead-letter lanes (which
  // commits do not route to).
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::size_t routed_lanes_ = 0;  // lanes_[0, routed_lanes_) take commits
  // A Settlement's entries: the routed lanes (shared with the commits' trackers).
  std::shared_ptr<std::vector<std::string>> settled_names_ =
      std::make_shared<std::vector<std::string>>();
  std::atomic<std::uint64_t> dead_letter_pushes_{0};
  std::vector<Queue*> all_queues_;  // flattened (Queue::flat), for routing and drains
  // The lanes with AdapterOptions::deliver_on_commit (one consumer each): help_consumers().
  std::vector<Lane*> role_sharing_lanes_;
  // The most batches one commit delivers for a consumer (help_consumers): its own and what
  // queued up before it, never an unbounded backlog (then the consumer thread takes over).
  static constexpr std::size_t kMaxHelpedBatches = 32;
  std::shared_ptr<HandlerDispatcher> dispatcher_;
  Lane* dispatcher_lane_ = nullptr;
  int max_cascade_depth_ = 8;
  std::array<Shard, kShards> shards_;
  std::atomic<bool> closed_{false};  // no new requests' commits
  std::atomic<bool> sealed_{false};  // no commits at all (after shutdown's drain)
  std::atomic<std::uint64_t> cascade_commits_{0};
  std::atomic<StopMode> stop_{StopMode::running};
  WaitChannel publishes_;  // shutdown waits here for publishes under way
  WaitChannel exits_;      // shutdown waits here for consumers to exit

  // Lifecycle: one shutdown runs; concurrent callers wait for its result.
  enum class Phase : std::uint32_t { running, shutting_down, shut_down, finished };
  std::atomic<Phase> phase_{Phase::running};
  WaitChannel phase_changed_;
  std::atomic<std::thread::id> shutting_down_on_{};
  Status shutdown_result_;  // written before phase_ becomes shut_down
  std::mutex finish_mutex_;
  bool started_ = false;
};

}  // namespace emissions::detail
