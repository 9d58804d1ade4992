// The consumer side: a consumer thread takes batches from its queue, cuts the events routed
// to it into runs of at most max_demand and hands each run to its adapter, synchronously or
// as a Delivery.
#include <sched.h>

#include <algorithm>
#include <exception>
#include <string>
#include <utility>

#include "common/best_effort.hpp"
#include "common/exceptions.hpp"
#include "common/wait.hpp"
#include "pipeline/adapter_call.hpp"
#include "pipeline/core.hpp"
#include "pipeline/delivery_state.hpp"
#include "pipeline/idle_policy.hpp"
#include "pipeline/thread_role.hpp"
#include "telemetry/events.hpp"

namespace emissions::detail {
namespace {

thread_local int t_delivering_depth = 0;
thread_local DeliveringSettlement t_delivering_settlement;

using SteadyClock = std::chrono::steady_clock;

// Polls (a pause each) before an idle consumer first reads the clock.
constexpr unsigned kQuickPolls = 64;

// A deliver_on_commit consumer that let the commits have its role looks this often whether
// they still take the batches (Core::yield_role).
constexpr std::chrono::milliseconds kYieldCheck{1};

void report_dropped(const std::string& lane, std::span<const Event> events, const char* reason) {
  if (!events::kEventDropped.enabled()) return;
  for (const Event& event : events) {
    best_effort([&] {
      events::kEventDropped.execute(
          {{"count", 1}},
          {{"event_name", event.name.str()}, {"reason", reason}, {"adapter", lane}});
    });
  }
}

// Marks the consumer as inside adapter code for the scope (see Consumer::in_adapter_call).
// Relaxed: the flag orders nothing. A shutdown past its deadline that misses a consumer
// just entering a call waits for it at most its short exit grace; one that misses it just
// leaving waits for the exit that follows at once.
class AdapterCallScope {
 public:
  explicit AdapterCallScope(Consumer& consumer) noexcept : consumer_(consumer) {
    consumer_.in_adapter_call.store(true, std::memory_order_relaxed);
  }
  ~AdapterCallScope() { consumer_.in_adapter_call.store(false, std::memory_order_relaxed); }
  AdapterCallScope(const AdapterCallScope&) = delete;
  AdapterCallScope& operator=(const AdapterCallScope&) = delete;

 private:
  Consumer& consumer_;
};

}  // namespace

int delivering_depth() noexcept {
  return t_delivering_depth;
}

void set_delivering_depth(int depth) noexcept {
  t_delivering_depth = depth;
}

DeliveringSettlement delivering_settlement() noexcept {
  return t_delivering_settlement;
}

void Core::run_consumer(Lane& lane, Consumer& consumer) noexcept {
  const ThreadRole role(this);
  Queue& queue = *consumer.queue;
  IdlePolicy idle(lane.options.idle_spin);
  RetryBox& retries = *consumer.retries;
  // deliver_on_commit: committing threads may take this consumer's role while it is idle.
  const bool shares_role = lane.options.deliver_on_commit;
  std::uint64_t help_seen = 0;  // consumer.help_wanted when it last yielded
  // A manual clock's jumps wake this consumer when it sleeps until a retry is due.
  Clock::Subscription on_clock;
  best_effort([&] { on_clock = clock_->subscribe([&retries] { retries.wake.notify(); }); });
  // The rest of a batch a committing thread left behind a retry (deliver_on_commit).
  const auto resume = [&] {
    Batch* batch = std::exchange(consumer.resume_batch, nullptr);
    deliver_taken(lane, consumer, batch, consumer.resume_from,
                  consumer.held_events.exchange(0, std::memory_order_relaxed));
  };
  for (;;) {
    if (stop_.load(std::memory_order_acquire) == StopMode::abandon) {
      if (consumer.resume_batch != nullptr) resume();  // counted dropped, and let go of
      break;
    }
    // Retries first: while any waits, no new batch is taken (head-of-line).
    if (retries.size.load(std::memory_order_seq_cst) != 0) {
      serve_retries_first(lane, consumer, consumer.need_init);
      continue;
    }
    if (consumer.resume_batch != nullptr) {
      resume();
      continue;
    }
    Batch* batch = queue.ring.try_pop(consumer.claim);
    if (batch == nullptr) {
      // Holding nothing: no claim (a drain may have seen the one just tried).
      consumer.claim.store(Consumer::kNoClaim, std::memory_order_seq_cst);
      shared_->progress.notify();
      if (stop_.load(std::memory_order_acquire) != StopMode::running) break;
      // Idle: a committing thread may deliver what comes meanwhile (help_consumers). The
      // store publishes this thread's work on the consumer's state to it (release).
      // It parks at once: polling, it would take every batch before the commit could.
      if (shares_role) consumer.role.store(Consumer::kIdle, std::memory_order_seq_cst);
      idle.on_idle_spell(idle_wait(
          queue, retries, shares_role ? std::chrono::nanoseconds::zero() : idle.next_spin()));
      if (shares_role) reclaim_role(consumer);
      continue;
    }
    consume(lane, consumer, batch);
    if (shares_role) {
      const std::uint64_t wanted = consumer.help_wanted.load(std::memory_order_relaxed);
      if (wanted != help_seen) {
        help_seen = wanted;
        yield_role(consumer);
      }
    }
  }
  on_clock.reset();
  consumer.exited.store(1, std::memory_order_release);
  exits_.notify();
}

void Core::consume(Lane& lane, Consumer& consumer, Batch* batch) noexcept {
  Queue& queue = *consumer.queue;
  const std::size_t n = batch->taken_by(lane.index, queue.flat);
  const std::size_t left = queue.occupancy.fetch_sub(n, std::memory_order_acq_rel) - n;
  // Wake blocked commits only once a quarter of the queue is free (or it is empty):
  // waking them on every pop makes them fight over one batch's worth of room.
  if (left == 0 || left <= queue.capacity - queue.capacity / 4) queue.space.notify();
  deliver_taken(lane, consumer, batch, 0, n);
}

void Core::deliver_taken(Lane& lane, Consumer& consumer, Batch* batch, std::size_t from,
                         std::size_t events) noexcept {
  const std::size_t position = consumer.claim.load(std::memory_order_relaxed);
  consumer.in_call_events.store(events, std::memory_order_relaxed);
  t_delivering_depth = batch->cascade_depth;
  const std::size_t stopped = deliver(lane, consumer, *batch, position, consumer.need_init, from);
  consumer.in_call_events.store(0, std::memory_order_relaxed);
  if (stopped < batch->size) {
    // A committing thread found a retry waiting: the consumer thread delivers it, then the
    // rest of this batch. The claim stays (drains wait for the rest).
    consumer.resume_batch = batch;
    consumer.resume_from = stopped;
    consumer.held_events.store(events_from(lane, consumer, *batch, stopped),
                               std::memory_order_relaxed);
    return;
  }
  // Finished with `position` (what is still unsettled is in the window): drains may pass.
  consumer.claim.store(Consumer::kNoClaim, std::memory_order_seq_cst);
  shared_->release(batch);
  shared_->progress.notify();
}

void Core::reclaim_role(Consumer& consumer) noexcept {
  for (;;) {
    if (consumer.try_take_role(Consumer::kConsumerThread)) return;
    // A committing thread delivers for this consumer: it gives the role back after at most
    // kMaxHelpedBatches batches, and notifies.
    (void)wait_until(
        consumer.role_returned,
        [&] { return consumer.role.load(std::memory_order_seq_cst) == Consumer::kIdle; },
        Deadline::max());
  }
}

void Core::yield_role(Consumer& consumer) noexcept {
  Queue& queue = *consumer.queue;
  consumer.leftovers.store(false, std::memory_order_seq_cst);
  consumer.give_role_back();
  for (;;) {
    // While commits take the batches (the queue's head moves), they keep the role. The
    // consumer thread comes back when one leaves work it could not do, for a retry or
    // shutdown, or once kYieldCheck passed with batches queued and none taken.
    const std::size_t head = queue.ring.head();
    const bool called = wait_until(
        queue.wakeup,
        [&] {
          return consumer.leftovers.load(std::memory_order_seq_cst) ||
                 consumer.retries->size.load(std::memory_order_seq_cst) != 0 ||
                 stop_.load(std::memory_order_seq_cst) != StopMode::running;
        },
        deadline_after(kYieldCheck));
    if (called || !queue.ring.has_item() || queue.ring.head() == head) break;
  }
  reclaim_role(consumer);
}

std::size_t Core::events_from(const Lane& lane, const Consumer& consumer, const Batch& batch,
                              std::size_t from) noexcept {
  const auto mine = static_cast<std::uint32_t>(consumer.queue->index);
  std::size_t events = 0;
  for (std::size_t i = from; i < batch.size; ++i)
    events += batch.route_of(i, lane.index) == mine ? 1U : 0U;
  return events;
}

std::size_t Core::runs_in(const Lane& lane, const Consumer& consumer, const Batch& batch) noexcept {
  // As deliver() cuts them: consecutive events routed to this queue, at most max_demand long.
  const auto mine = static_cast<std::uint32_t>(consumer.queue->index);
  std::size_t runs = 0;
  std::size_t length = 0;
  for (std::size_t i = 0; i < batch.size; ++i) {
    if (batch.route_of(i, lane.index) != mine) {
      runs += length > 0 ? 1 : 0;
      length = 0;
    } else if (++length == lane.options.max_demand) {
      ++runs;
      length = 0;
    }
  }
  return runs + (length > 0 ? 1 : 0);
}

void Core::help_consumers() noexcept {
  // Not from this pipeline's own threads (a consumer or handler worker committing: it would
  // deliver another lane's batches, or count itself as a commit waiting for its own role),
  // nor from inside a settlement (an adapter's ack() would have its deliver() called inside
  // it, on its own callback thread): there the consumers are woken as for any push.
  if (current_thread_owner() == this || in_settlement_callback() || settling_depth() != 0) {
    for (Lane* lane : role_sharing_lanes_)
      lane->consumers.front()->queue->wakeup.notify(1);
    return;
  }
  for (Lane* lane : role_sharing_lanes_)
    help_consumer(*lane, *lane->consumers.front());
}

void Core::help_consumer(Lane& lane, Consumer& consumer) noexcept {
  Queue& queue = *consumer.queue;
  if (!queue.ring.has_item()) return;  // taken already (push_to_queues did not wake)
  std::uint32_t holder = Consumer::kIdle;
  if (!consumer.try_take_role(Consumer::kCommittingThread, &holder)) {
    // The consumer thread is at work: it takes this batch before it idles (its look at the
    // queue comes after this push), and lets the commits have the role after its current
    // batch. Or another commit holds it: its look at the queue after it gives the role back
    // sees this push.
    if (holder == Consumer::kConsumerThread) {
      consumer.help_wanted.fetch_add(1, std::memory_order_relaxed);
    }
    return;
  }
  {
    const ThreadRole role(this);  // drain() from the adapter's code is refused, as there
    const int depth = t_delivering_depth;
    consumer.helping = true;
    for (std::size_t i = 0; i < kMaxHelpedBatches; ++i) {
      if (stop_.load(std::memory_order_acquire) != StopMode::running) break;
      // The rest of a batch left behind a retry goes before any later batch: the consumer
      // thread delivers both (a commit that took the role since must not pop past it).
      if (consumer.resume_batch != nullptr) break;
      // Only the role's holder takes from this queue (deliver_on_commit rules out
      // drop_oldest's evictions and shared queues; shutdown's discard takes the role
      // first), so what peek() shows is what it takes.
      Batch* next = queue.ring.peek();
      if (next == nullptr) break;
      // Room for every run of it: a committing thread never waits for the window (only the
      // holder adds to it, so the room cannot shrink meanwhile). Read before the retry
      // box: a failed delivery enters the box before it leaves the window, so a failure
      // whose departure made this room is seen next.
      if (consumer.window->size.load(std::memory_order_seq_cst) + runs_in(lane, consumer, *next) >
          lane.options.max_in_flight) {
        break;
      }
      // Head-of-line: a retry waiting goes first, and the consumer thread serves it.
      if (consumer.retries->size.load(std::memory_order_seq_cst) != 0) break;
      Batch* batch = queue.ring.try_pop(consumer.claim);
      if (batch == nullptr) {  // cannot happen (see above); nothing taken
        consumer.claim.store(Consumer::kNoClaim, std::memory_order_seq_cst);
        break;
      }
      consume(lane, consumer, batch);
      if (consumer.resume_batch != nullptr) break;  // stopped behind a retry
    }
    consumer.helping = false;
    t_delivering_depth = depth;
  }
  // Read while the role is still held: once given back, the field is the consumer's.
  const bool left_a_batch = consumer.resume_batch != nullptr;
  // Given back (release: the consumer thread sees the state as left here), then the
  // consumer woken for what is left: the look at the queue after the store sees any batch
  // pushed by a commit whose compare-and-swap failed while this one held the role.
  consumer.give_role_back();
  if (left_a_batch || queue.ring.has_item() ||
      consumer.retries->size.load(std::memory_order_seq_cst) != 0 ||
      stop_.load(std::memory_order_seq_cst) != StopMode::running) {
    consumer.leftovers.store(true, std::memory_order_seq_cst);
    queue.wakeup.notify(1);
  }
}

std::chrono::nanoseconds Core::idle_wait(Queue& queue, const RetryBox& retries,
                                         std::chrono::nanoseconds spin) noexcept {
  auto ready = [&] {
    return queue.ring.has_item() || retries.size.load(std::memory_order_relaxed) != 0 ||
           stop_.load(std::memory_order_acquire) != StopMode::running;
  };
  // Poll politely (yielding the core to anything runnable), then park; the clock is read
  // only once the quick polls found nothing. A zero spin parks at once (idle_spin 0, or a
  // parked consumer not probing).
  for (unsigned i = 0; spin.count() > 0 && i < kQuickPolls; ++i) {
    if (ready()) return std::chrono::nanoseconds::zero();
    cpu_relax();
  }
  const auto start = SteadyClock::now();
  if (spin.count() > 0) {
    for (;;) {
      // Found while polling, however long that took (the consumer may have lost its core
      // meanwhile): polling paid off, a spell as good as none.
      if (ready()) return std::chrono::nanoseconds::zero();
      if (SteadyClock::now() - start >= spin) break;
      sched_yield();
    }
  }
  // Parked until a commit pushes (publish notifies) or shutdown stops the consumers.
  const std::uint32_t token = queue.wakeup.prepare();
  if (!queue.ring.has_item() && retries.size.load(std::memory_order_seq_cst) == 0 &&
      stop_.load(std::memory_order_seq_cst) == StopMode::running) {
    queue.wakeup.wait(token, std::chrono::nanoseconds(-1));
  }
  queue.wakeup.done();
  return SteadyClock::now() - start;
}

std::size_t Core::deliver(Lane& lane, Consumer& consumer, Batch& batch, std::size_t position,
                          bool& need_init, std::size_t from) noexcept {
  // Runs of consecutive events routed to this queue, at most max_demand long, in place.
  const Event* const begin = batch.slots.data();
  const std::size_t size = batch.size;
  const std::uint32_t mine = static_cast<std::uint32_t>(consumer.queue->index);
  std::size_t run_start = 0;
  std::size_t run_length = 0;
  std::size_t stopped_at = size;  // where a committing thread stopped behind a retry
  auto hand_over = [&](std::size_t next) {
    const std::span<const Event> run(begin + run_start, run_length);
    run_length = 0;
    // A committing thread hands no run over once a retry waits: the rest of the commit goes
    // behind it (deliver_async, which would serve it, must not wait on this thread).
    if (consumer.helping && consumer.retries->size.load(std::memory_order_seq_cst) != 0) {
      stopped_at = run_start;
      return false;
    }
    if (lane.async == nullptr) {
      // An earlier run of this batch (or a batch before it) failed and waits for a retry:
      // that goes first (head-of-line), also for the rest of this batch. (deliver_async
      // does the same once it has looked at its window.)
      if (consumer.retries->size.load(std::memory_order_seq_cst) != 0) {
        serve_retries_first(lane, consumer, need_init);
      }
      if (stop_.load(std::memory_order_acquire) != StopMode::abandon) {
        deliver_sync(lane, consumer, batch, position, run, need_init);
        return true;
      }
    } else if (deliver_async(lane, consumer, batch, position, run, need_init)) {
      return true;
    }
    // Shutdown gave up (past its deadline) before this run was handed over, for instance
    // while this consumer waited for its window: this run and the rest of the batch will
    // not be delivered.
    std::uint64_t dropped = run.size();
    report_dropped(lane.name, run, "shutdown");
    for (std::size_t i = next; i < size; ++i) {
      if (batch.route_of(i, lane.index) != mine) continue;
      ++dropped;
      report_dropped(lane.name, {begin + i, 1}, "shutdown");
    }
    lane.counters->dropped.fetch_add(dropped, std::memory_order_relaxed);
    if (batch.tracker) batch.tracker->add(lane.index, SettlementTracker::Outcome::dropped, dropped);
    return false;
  };
  for (std::size_t i = from; i < size; ++i) {
    if (batch.route_of(i, lane.index) != mine) {
      if (run_length > 0 && !hand_over(i)) return stopped_at;
      continue;
    }
    if (run_length == 0) run_start = i;
    if (++run_length == lane.options.max_demand && !hand_over(i + 1)) return stopped_at;
  }
  if (run_length > 0) (void)hand_over(size);
  return stopped_at;
}

void Core::deliver_sync(Lane& lane, Consumer& consumer, Batch& batch, std::size_t position,
                        std::span<const Event> run, bool& need_init) noexcept {
  // Clock reads and JSON only when someone listens.
  const bool report = delivery_reported();
  DeliveryOutcome outcome;
  {
    const AdapterCallScope in_call(consumer);
    const bool dispatching = &lane == dispatcher_lane_;  // only the dispatcher reads it
    if (dispatching)
      t_delivering_settlement = {batch.tracker ? &batch.tracker : nullptr, lane.index};
    outcome = deliver_to(*lane.adapter, run, need_init, report);
    if (dispatching) t_delivering_settlement = {};
  }
  const auto count = static_cast<std::uint64_t>(run.size());
  if (outcome.status.ok()) {
    lane.counters->delivered.fetch_add(count, std::memory_order_relaxed);
    lane.counters->record_latency(batch.committed_at, count);
    // The handler dispatcher settles its events itself, as their invocations finish.
    if (batch.tracker && &lane != dispatcher_lane_) {
      batch.tracker->add(lane.index, SettlementTracker::Outcome::delivered, count);
    }
    if (!batch.dead_letter_of.empty()) credit_dead_letters(batch, run);
  } else if (lane.decides_failures()) {
    if (report) report_delivery(lane.name, run.size(), outcome);
    fail_run(lane, consumer, batch, position, run, outcome.status);
    return;
  } else {
    lane.counters->failed.fetch_add(count, std::memory_order_relaxed);
    if (batch.tracker) batch.tracker->add(lane.index, SettlementTracker::Outcome::failed, count);
  }
  if (report) report_delivery(lane.name, run.size(), outcome);
}

bool Core::deliver_async(Lane& lane, Consumer& consumer, Batch& batch, std::size_t position,
                         std::span<const Event> run, bool& need_init) noexcept {
  if (stop_.load(std::memory_order_acquire) == StopMode::abandon) return false;
  Window& window = *consumer.window;
  // The window: at most max_in_flight unsettled deliveries. When it is full, ask the
  // adapter to send what it holds back, then wait until half of it is free, a failed
  // delivery waits for this consumer's decision, or shutdown gives up. Once a failure is
  // decided, the slot its delivery frees is enough (it may leave the window only after
  // waking us: drains must always see it somewhere).
  //
  // The retry box is read after the window: a delivery that fails enters the box before it
  // leaves the window (DeliveryState::complete, both seq_cst), so room seen here means its
  // failure is seen next. Reading the box only before the window let a failure completing
  // between the two reads be overtaken by this run
  // (RetryStressTest.AFailureCompletingJustBeforeTheNextRunIsRetriedBeforeIt).
  std::size_t resume_at = window.resume_at;
  for (;;) {
    const bool full = window.size.load(std::memory_order_seq_cst) >= lane.options.max_in_flight;
    // A delivery that failed is decided (retried, dead-lettered) before this run.
    // (Not on a committing thread: Core::deliver stops there before the run instead, and
    // leaves the rest of the batch to the consumer thread.)
    if (!consumer.serving_retries && !consumer.helping &&
        consumer.retries->size.load(std::memory_order_seq_cst) != 0) {
      serve_retries_first(lane, consumer, need_init);
      if (stop_.load(std::memory_order_acquire) == StopMode::abandon) return false;
      resume_at = lane.options.max_in_flight - 1;
      continue;
    }
    if (!full) break;
    best_effort([&] {
      const AdapterCallScope in_call(consumer);
      (void)lane.adapter->flush(deadline_after(lane.options.block_timeout));
    });
    wait_until(
        window.freed,
        [&] {
          return window.size.load(std::memory_order_seq_cst) <= resume_at ||
                 (!consumer.serving_retries &&
                  consumer.retries->size.load(std::memory_order_seq_cst) != 0) ||
                 stop_.load(std::memory_order_seq_cst) == StopMode::abandon;
        },
        Deadline::max());
    // Woken with room left (shutdown gave up): hand over nothing more.
    if (stop_.load(std::memory_order_seq_cst) == StopMode::abandon) return false;
  }

  const bool report = delivery_reported();
  if (need_init) {
    DeliveryOutcome outcome;
    try {
      const AdapterCallScope in_call(consumer);
      outcome.status = lane.adapter->init();
    } catch (...) {
      outcome.status = Status(Errc::internal, std::string());
      best_effort([&] { outcome.status = Status(Errc::internal, describe_current_exception()); });
    }
    if (!outcome.status.ok()) {
      best_effort([&] {
        outcome.status = Status(outcome.status.code(), "init failed: " + outcome.status.message());
      });
      if (report) report_delivery(lane.name, run.size(), outcome);
      fail_run(lane, consumer, batch, position, run, outcome.status);
      return true;
    }
    need_init = false;
  }

  std::shared_ptr<DeliveryState> state;
  batch.refs.fetch_add(1, std::memory_order_relaxed);  // the delivery's own reference
  try {
    if (!consumer.delivery_home) {
      auto home = std::make_shared<DeliveryHome>();
      home->shared = shared_;
      home->counters = lane.counters;
      home->window = consumer.window;
      home->retries = lane.decides_failures() ? consumer.retries : nullptr;
      home->blocks = new DeliveryBlocks();
      consumer.delivery_home = std::move(home);
    }
    // Recycled memory: no malloc here, no cross-thread free when an adapter's thread
    // drops the last handle.
    state = std::allocate_shared<DeliveryState>(
        DeliveryAllocator<DeliveryState>(consumer.delivery_home->blocks), consumer.delivery_home,
        &batch, run, position);
    state->lane_index = lane.index;
    std::lock_guard lock(window.mutex);
    state->window_slot = window.open.size();
    window.open.push_back(state);
    window.size.store(window.open.size(), std::memory_order_seq_cst);
  } catch (...) {
    // Out of memory: the state (if made) gives its reference back when destroyed.
    if (!state) shared_->release(&batch);
    state.reset();
    lane.counters->failed.fetch_add(run.size(), std::memory_order_relaxed);
    if (batch.tracker)
      batch.tracker->add(lane.index, SettlementTracker::Outcome::failed, run.size());
    if (report) {
      best_effort([&] {
        report_delivery(lane.name, run.size(),
                        {Status(Errc::internal, "out of memory for a delivery"), false, 0});
      });
    }
    return true;
  }
  if (report) state->handed_at = SteadyClock::now();
  try {
    const AdapterCallScope in_call(consumer);
    lane.async->deliver(DeliveryAccess::make(state));
  } catch (...) {
    Status error(Errc::internal, std::string());
    best_effort([&] { error = Status(Errc::internal, describe_current_exception()); });
    need_init = true;  // a supervisor's restart, as for handle_events
    state->settle(DeliveryState::kAll, DeliveryState::Outcome::failed, &error, nullptr);
  }
  return true;
}

}  // namespace emissions::detail
