#include "core.hpp"

#include "adapter_call.hpp"

#include <sched.h>

#include <algorithm>
#include <exception>
#include <set>
#include <span>
#include <sstream>

#include "emissions/telemetry.hpp"
#include "handler_dispatcher.hpp"
#include "telemetry/events.hpp"

namespace emissions::detail {
namespace {

using Clock = std::chrono::steady_clock;

std::chrono::nanoseconds remaining(Clock::time_point deadline) noexcept {
  const auto left = deadline - Clock::now();
  return left.count() > 0 ? std::chrono::duration_cast<std::chrono::nanoseconds>(left)
                          : std::chrono::nanoseconds(0);
}

[[noreturn]] void config_error(const std::string& field, const std::string& rule,
                               const std::string& got) {
  throw ConfigError(field + " " + rule + " (got " + got + ")");
}

LaneOptions resolve(const PipelineOptions& p, const AdapterOptions& o) {
  return LaneOptions{o.max_demand.value_or(p.max_demand),
                     o.buffer_size.value_or(p.buffer_size),
                     o.overflow.value_or(p.overflow),
                     o.block_timeout.value_or(p.block_timeout),
                     p.idle_spin,
                     o.concurrency,
                     o.partition_by};
}

void validate(const std::string& where, const LaneOptions& o) {
  if (o.max_demand == 0) config_error(where + ".max_demand", "must be > 0", "0");
  if (o.buffer_size == 0) config_error(where + ".buffer_size", "must be > 0", "0");
  if (o.block_timeout.count() < 0) {
    config_error(where + ".block_timeout", "must be >= 0 ms",
                 std::to_string(o.block_timeout.count()) + " ms");
  }
  if (o.concurrency == 0) config_error(where + ".concurrency", "must be >= 1", "0");
  if (o.overflow != Overflow::block && o.overflow != Overflow::drop_oldest &&
      o.overflow != Overflow::drop_newest) {
    config_error(where + ".overflow", "must be block, drop_oldest or drop_newest",
                 std::to_string(static_cast<int>(o.overflow)));
  }
}

std::atomic<std::uint32_t> g_next_shard{0};
thread_local int t_delivering_depth = 0;

}  // namespace

int delivering_depth() noexcept {
  return t_delivering_depth;
}

Lane::Lane(std::shared_ptr<Adapter> a, LaneOptions o)
    : adapter(std::move(a)), name(adapter->name()), options(std::move(o)) {
  // Partitioned: one queue per consumer, each holding every batch, sized so that all of
  // them together reference at most buffer_size events. Otherwise one shared queue.
  const std::size_t queue_count = options.partition_by ? options.concurrency : 1;
  const std::size_t per_queue = (options.buffer_size + queue_count - 1) / queue_count;
  for (std::size_t i = 0; i < queue_count; ++i) {
    queues.push_back(std::make_unique<Queue>(per_queue, i));
  }
  for (std::size_t i = 0; i < options.concurrency; ++i) {
    auto consumer = std::make_unique<Consumer>();
    consumer->queue = queues[i % queue_count].get();
    consumers.push_back(std::move(consumer));
  }
}

bool Lane::owns(const Queue& queue, const Event& event) const noexcept {
  if (queues.size() == 1) return true;
  std::uint64_t key = 0;
  try {
    key = options.partition_by(event);
  } catch (...) {
    key = 0;  // documented: a throwing key function sends the event to consumer 0
  }
  return key % queues.size() == queue.index;
}

Core::Core(Config config) {
  const PipelineOptions& p = config.pipeline;
  validate("pipeline", resolve(p, AdapterOptions{}));
  if (p.idle_spin.count() < 0) {
    config_error("pipeline.idle_spin", "must be >= 0 us", std::to_string(p.idle_spin.count()));
  }
  if (config.shutdown_timeout.count() < 0) {
    config_error("shutdown_timeout", "must be >= 0 ms",
                 std::to_string(config.shutdown_timeout.count()));
  }
  std::set<std::string> names;
  std::set<const Adapter*> instances;
  for (std::size_t i = 0; i < config.adapters.size(); ++i) {
    auto& entry = config.adapters[i];
    const std::string where = "adapters[" + std::to_string(i) + "]";
    if (!entry.adapter) config_error(where, "must not be a null adapter", "nullptr");
    const std::string name(entry.adapter->name());
    if (name.empty()) config_error(where + ".name()", "must not be empty", "\"\"");
    if (!instances.insert(entry.adapter.get()).second) {
      config_error(where, "must not add the same adapter object twice", "'" + name + "'");
    }
    if (!names.insert(name).second) {
      config_error(where + ".name()", "must be unique among adapters", "'" + name + "'");
    }
    LaneOptions options = resolve(p, entry.options);
    validate(where + " ('" + name + "')", options);
    lanes_.push_back(std::make_unique<Lane>(std::move(entry.adapter), std::move(options)));
  }
  if (config.max_cascade_depth < 0) {
    config_error("max_cascade_depth", "must be >= 0", std::to_string(config.max_cascade_depth));
  }
  max_cascade_depth_ = config.max_cascade_depth;
  if (!config.handlers.empty()) {
    if (config.handler_concurrency == 0) config_error("handler_concurrency", "must be >= 1", "0");
    if (names.count(std::string(HandlerDispatcher::kName)) != 0) {
      config_error("adapters[].name()", "must not be the reserved name of the handler dispatcher",
                   "'" + std::string(HandlerDispatcher::kName) + "'");
    }
    LaneOptions options = resolve(p, config.handler_options);
    validate("handler_options", options);
    dispatcher_ = std::make_shared<HandlerDispatcher>(
        config.handlers, config.handler_concurrency,
        std::max(config.handler_concurrency * options.max_demand, std::size_t{64}));
    lanes_.push_back(std::make_unique<Lane>(dispatcher_, std::move(options)));
    dispatcher_lane_ = lanes_.back().get();
  }
  for (auto& lane : lanes_) {
    for (auto& queue : lane->queues)
      all_queues_.push_back(queue.get());
  }
}

Core::~Core() {
  // Normally ~Emitter already shut down and joined; this covers a Core that never started
  // or whose owner skipped that.
  (void)shutdown(std::chrono::milliseconds(0));
  finish();
  for (Queue* queue : all_queues_) {
    while (Batch* batch = queue->ring.try_pop())
      release(batch);
  }
}

void Core::start() {
  if (dispatcher_) dispatcher_->bind(weak_from_this());
  started_ = true;
  for (auto& lane : lanes_) {
    Lane* l = lane.get();
    for (auto& consumer : lane->consumers) {
      Consumer* c = consumer.get();
      c->thread = std::thread([this, l, c] { run_consumer(*l, *c); });
    }
  }
}

Core::Shard& Core::my_shard() noexcept {
  thread_local const std::uint32_t index =
      g_next_shard.fetch_add(1, std::memory_order_relaxed) % kShards;
  return shards_[index];
}

void Core::count_discarded(std::size_t events) noexcept {
  my_shard().discarded.fetch_add(events, std::memory_order_relaxed);
}

void Core::count_cascade_dropped() noexcept {
  my_shard().cascade_dropped.fetch_add(1, std::memory_order_relaxed);
}

// ---- producer side ---------------------------------------------------------------------

bool Core::try_reserve(Queue& queue, std::size_t n) noexcept {
  std::size_t current = queue.occupancy.load(std::memory_order_relaxed);
  for (;;) {
    // A batch larger than the whole buffer is admitted alone, or it could never commit.
    if (current != 0 && current + n > queue.capacity) return false;
    if (queue.occupancy.compare_exchange_weak(current, current + n, std::memory_order_acq_rel)) {
      return true;
    }
  }
}

bool Core::reserve_blocking(Queue& queue, std::size_t n, Clock::time_point& commit_start,
                            std::chrono::milliseconds timeout) noexcept {
  if (try_reserve(queue, n)) return true;
  if (commit_start == Clock::time_point{}) commit_start = Clock::now();
  const auto deadline = commit_start + timeout;
  // A consumer usually frees room within microseconds: yield a few times before parking.
  for (int i = 0; i < 16; ++i) {
    sched_yield();
    if (try_reserve(queue, n)) return true;
  }
  for (;;) {
    const std::uint32_t token = queue.space.prepare();
    if (try_reserve(queue, n)) {
      queue.space.done();
      return true;
    }
    const auto left = remaining(deadline);
    if (left.count() == 0 || closed_.load(std::memory_order_seq_cst)) {
      queue.space.done();
      return false;
    }
    queue.space.wait(token, left);
    queue.space.done();
  }
}

void Core::unreserve(Queue& queue, std::size_t n) noexcept {
  queue.occupancy.fetch_sub(n, std::memory_order_acq_rel);
  queue.space.notify();
}

void Core::count_dropped(Lane& lane, const Queue& queue, std::span<const Event> events,
                         const char* reason) noexcept {
  std::uint64_t dropped = 0;
  std::uint64_t unwanted = 0;
  const bool report = events::kEventDropped.enabled();
  for (const Event& event : events) {
    if (!lane.owns(queue, event)) continue;  // another partition accounts for it
    bool wanted = true;
    try {
      wanted = lane.adapter->interested(event);
    } catch (...) {
      wanted = true;  // a throwing filter must not hide a drop
    }
    if (!wanted) {
      ++unwanted;
      continue;
    }
    ++dropped;
    if (report) {
      events::kEventDropped.execute(
          {{"count", 1}},
          {{"event_name", event.name.str()}, {"reason", reason}, {"adapter", lane.name}});
    }
  }
  lane.dropped.fetch_add(dropped, std::memory_order_relaxed);
  lane.filtered.fetch_add(unwanted, std::memory_order_relaxed);
}

bool Core::evict_oldest(Lane& lane, Queue& queue, const char* reason) noexcept {
  Batch* batch = queue.ring.try_pop();
  if (batch == nullptr) return false;
  queue.occupancy.fetch_sub(batch->size, std::memory_order_acq_rel);
  count_dropped(lane, queue, batch->events(), reason);
  release(batch);
  finish_batch(queue);
  return true;
}

Status Core::publish(BatchPtr& buffer, int cascade_depth) {
  const std::size_t n = buffer->size;
  if (n == 0) return {};
  const bool cascade = cascade_depth > 0;
  Shard& shard = my_shard();
  shard.in_flight.fetch_add(1, std::memory_order_seq_cst);
  struct InFlight {
    Shard& shard;
    ~InFlight() { shard.in_flight.fetch_sub(1, std::memory_order_release); }
  } in_flight{shard};
  if ((cascade ? sealed_ : closed_).load(std::memory_order_seq_cst)) {
    return Status(Errc::closed, "the emitter has been shut down");
  }

  // Which queues take this batch. A thread-local scratch avoids allocating.
  thread_local std::vector<Queue*> accepted;
  accepted.clear();
  // Read the clock only if some queue is full (it costs ~25 ns on these VMs).
  Clock::time_point commit_start{};

  // Blocking lanes first: all of their queues must have room, or none gets anything.
  for (auto& lane_ptr : lanes_) {
    Lane& lane = *lane_ptr;
    if (lane.options.overflow != Overflow::block) continue;
    for (auto& queue_ptr : lane.queues) {
      Queue& queue = *queue_ptr;
      if (cascade && &lane == dispatcher_lane_) {
        // Handlers' own events never wait for the dispatcher (the pool that emits them is
        // what drains it). Bounded: at most max_in_flight invocations emit at once.
        queue.occupancy.fetch_add(n, std::memory_order_acq_rel);
      } else if (!reserve_blocking(queue, n, commit_start, lane.options.block_timeout)) {
        for (Queue* taken : accepted)
          unreserve(*taken, n);
        accepted.clear();
        if (closed_.load(std::memory_order_seq_cst) && !cascade) {
          return Status(Errc::closed, "the emitter has been shut down");
        }
        return Status(Errc::overloaded, "adapter '" + lane.name + "' queue stayed full (" +
                                            std::to_string(lane.options.buffer_size) +
                                            " events) for block_timeout " +
                                            std::to_string(lane.options.block_timeout.count()) +
                                            " ms; nothing was delivered");
      }
      accepted.push_back(&queue);
    }
  }
  for (auto& lane_ptr : lanes_) {
    Lane& lane = *lane_ptr;
    if (lane.options.overflow == Overflow::block) continue;
    for (auto& queue_ptr : lane.queues) {
      Queue& queue = *queue_ptr;
      if (lane.options.overflow == Overflow::drop_newest) {
        if (try_reserve(queue, n)) {
          accepted.push_back(&queue);
        } else {
          count_dropped(lane, queue, buffer->events(), "overflow");
        }
        continue;
      }
      // drop_oldest: evict whole batches from the head until this one fits.
      while (!try_reserve(queue, n)) {
        if (!evict_oldest(lane, queue, "overflow")) {
          // Room is reserved by a commit that has not pushed yet; it will in a moment.
          sched_yield();
        }
      }
      accepted.push_back(&queue);
    }
  }

  if (accepted.empty()) {
    buffer->reset();  // every adapter dropped it: keep the storage for the next transaction
  } else {
    buffer->cascade_depth = cascade_depth;
    buffer->refs.store(static_cast<std::uint32_t>(accepted.size()), std::memory_order_relaxed);
    Batch* shared = buffer.release();  // owned by the queues' references from here on
    for (Queue* queue : accepted) {
      while (!queue->ring.try_push(shared))
        cpu_relax();  // transient: room is reserved
    }
    // The push (seq_cst) then notify's seq_cst load pair with idle_wait's prepare then
    // check: either we see the consumer waiting, or it sees our push.
    for (Queue* queue : accepted)
      queue->wakeup.notify(1);
  }
  if (cascade) cascade_commits_.fetch_add(1, std::memory_order_relaxed);
  shard.events.fetch_add(n, std::memory_order_relaxed);
  shard.transactions.fetch_add(1, std::memory_order_relaxed);
  return {};
}

// ---- consumer side ---------------------------------------------------------------------

void Core::run_consumer(Lane& lane, Consumer& consumer) noexcept {
  Queue& queue = *consumer.queue;
  bool need_init = true;
  for (;;) {
    if (stop_.load(std::memory_order_acquire) == StopMode::abandon) break;
    Batch* batch = queue.ring.try_pop();
    if (batch == nullptr) {
      if (stop_.load(std::memory_order_acquire) != StopMode::running) break;
      idle_wait(queue, lane.options.idle_spin);
      continue;
    }
    const std::size_t n = batch->size;
    const std::size_t left = queue.occupancy.fetch_sub(n, std::memory_order_acq_rel) - n;
    // Wake blocked commits only once a quarter of the queue is free (or it is empty):
    // waking them on every pop makes them fight over one batch's worth of room.
    if (left == 0 || left <= queue.capacity - queue.capacity / 4) queue.space.notify();
    consumer.in_call_events.store(n, std::memory_order_relaxed);
    t_delivering_depth = batch->cascade_depth;
    deliver(lane, queue, *batch, need_init);
    consumer.in_call_events.store(0, std::memory_order_relaxed);
    release(batch);
    finish_batch(queue);
  }
  consumer.exited.store(1, std::memory_order_release);
  exits_.notify();
}

void Core::finish_batch(Queue& queue) noexcept {
  queue.completed.fetch_add(1, std::memory_order_seq_cst);
  progress_.notify();
}

void Core::idle_wait(Queue& queue, std::chrono::microseconds idle_spin) noexcept {
  // Poll politely for idle_spin (a burst usually follows a burst), then park.
  const auto start = Clock::now();
  for (unsigned i = 0;; ++i) {
    if (queue.ring.has_item() || stop_.load(std::memory_order_acquire) != StopMode::running) {
      return;
    }
    if (i < 64) {
      cpu_relax();
      continue;
    }
    if (Clock::now() - start >= idle_spin) break;
    sched_yield();  // on an oversubscribed core, let the producer run
  }
  const std::uint32_t token = queue.wakeup.prepare();
  if (!queue.ring.has_item() && stop_.load(std::memory_order_seq_cst) == StopMode::running) {
    queue.wakeup.wait(token, std::chrono::nanoseconds(-1));
  }
  queue.wakeup.done();
}

void Core::deliver(Lane& lane, const Queue& queue, const Batch& batch, bool& need_init) noexcept {
  // Runs of consecutive wanted events, at most max_demand long, handed over in place.
  const Event* const begin = batch.slots.data();
  const std::size_t size = batch.size;
  const bool partitioned = lane.partitioned();
  std::size_t run_start = 0;
  std::size_t run_length = 0;
  std::uint64_t unwanted = 0;
  for (std::size_t i = 0; i < size; ++i) {
    if (partitioned && !lane.owns(queue, begin[i])) {
      if (run_length > 0) deliver_run(lane, {begin + run_start, run_length}, need_init);
      run_length = 0;
      continue;
    }
    bool wanted = true;
    try {
      wanted = lane.adapter->interested(begin[i]);
    } catch (...) {
      wanted = true;  // let handle_events decide rather than silently losing the event
    }
    if (!wanted) {
      ++unwanted;
      if (run_length > 0) deliver_run(lane, {begin + run_start, run_length}, need_init);
      run_length = 0;
      continue;
    }
    if (run_length == 0) run_start = i;
    if (++run_length == lane.options.max_demand) {
      deliver_run(lane, {begin + run_start, run_length}, need_init);
      run_length = 0;
    }
  }
  if (run_length > 0) deliver_run(lane, {begin + run_start, run_length}, need_init);
  if (unwanted != 0) lane.filtered.fetch_add(unwanted, std::memory_order_relaxed);
}

void Core::deliver_run(Lane& lane, std::span<const Event> run, bool& need_init) noexcept {
  // Clock reads and JSON only when someone listens.
  const bool report = delivery_reported();
  const DeliveryOutcome outcome = deliver_to(*lane.adapter, run, need_init, report);
  const auto count = static_cast<std::uint64_t>(run.size());
  (outcome.status.ok() ? lane.delivered : lane.failed).fetch_add(count, std::memory_order_relaxed);
  if (report) report_delivery(lane.name, run.size(), outcome);
}

void Core::terminate_adapter(Lane& lane) noexcept {
  if (lane.terminated) return;
  lane.terminated = true;
  try {
    lane.adapter->terminate();
  } catch (...) {
    // terminate() is the last call; there is no one left to report to but telemetry.
    report_delivery(lane.name, 0, {Status(Errc::internal, "terminate() threw"), true, 0});
  }
}

// ---- drain and shutdown ----------------------------------------------------------------

std::vector<std::size_t> Core::push_targets() const {
  std::vector<std::size_t> targets;
  targets.reserve(all_queues_.size());
  for (const Queue* queue : all_queues_)
    targets.push_back(queue->ring.pushes());
  return targets;
}

bool Core::all_done(const std::vector<std::size_t>& targets) const noexcept {
  for (std::size_t i = 0; i < all_queues_.size(); ++i) {
    if (all_queues_[i]->completed.load(std::memory_order_seq_cst) < targets[i]) return false;
  }
  return true;
}

Status Core::wait_for(const std::vector<std::size_t>& targets, Clock::time_point deadline) {
  while (!all_done(targets)) {
    const std::uint32_t token = progress_.prepare();
    if (all_done(targets)) {
      progress_.done();
      break;
    }
    const auto left = remaining(deadline);
    if (left.count() == 0) {
      progress_.done();
      return Status(Errc::timeout, "");
    }
    progress_.wait(token, left);
    progress_.done();
  }
  return {};
}

Status Core::drain_until(Clock::time_point deadline, std::chrono::milliseconds timeout) {
  // Each round delivers what was committed so far; with handlers, a round's invocations may
  // commit cascaded events, which the next round delivers. Cascades are at most
  // max_cascade_depth levels deep, so the rounds end.
  Status flush_error;
  for (int round = 0;; ++round) {
    const std::uint64_t cascades_before = cascade_commits_.load(std::memory_order_seq_cst);
    const std::vector<std::size_t> targets = push_targets();
    bool done = wait_for(targets, deadline).ok();
    if (done && dispatcher_) done = dispatcher_->wait_idle(deadline);
    if (done) {
      // Adapters that hold events back deliver them now (a handler's flush may cascade).
      for (const auto& lane : lanes_) {
        Status flushed;
        try {
          flushed = lane->adapter->flush();
        } catch (const std::exception& e) {
          flushed = Status(Errc::internal, e.what());
        } catch (...) {
          flushed = Status(Errc::internal, "unknown exception");
        }
        if (!flushed.ok()) {
          flush_error.update(Status(
              flushed.code(), "adapter '" + lane->name + "' flush failed: " + flushed.message()));
        }
      }
    }
    if (!done) {
      std::ostringstream msg;
      msg << "drain timed out after " << timeout.count() << " ms;";
      std::size_t q = 0;  // all_queues_ lists each lane's queues in lane order
      for (const auto& lane : lanes_) {
        std::uint64_t pending = 0;
        for (std::size_t k = 0; k < lane->queues.size(); ++k, ++q) {
          const auto finished = all_queues_[q]->completed.load();
          if (finished < targets[q]) pending += targets[q] - finished;
        }
        if (pending > 0)
          msg << " adapter '" << lane->name << "' has " << pending << " batches pending;";
      }
      if (dispatcher_ && !dispatcher_->idle()) msg << " handler invocations are still running;";
      return Status(Errc::timeout, msg.str());
    }
    if (!dispatcher_ || cascade_commits_.load(std::memory_order_seq_cst) == cascades_before ||
        round > max_cascade_depth_) {
      return flush_error;
    }
  }
}

Status Core::drain(std::chrono::milliseconds timeout) {
  return drain_until(Clock::now() + timeout, timeout);
}

std::uint64_t Core::discard_queued(Lane& lane, const char* reason) noexcept {
  std::uint64_t left_behind = 0;
  for (auto& queue : lane.queues) {
    while (Batch* batch = queue->ring.try_pop()) {
      for (const Event& e : batch->events())
        if (lane.owns(*queue, e)) ++left_behind;
      queue->occupancy.fetch_sub(batch->size, std::memory_order_acq_rel);
      count_dropped(lane, *queue, batch->events(), reason);
      release(batch);
      finish_batch(*queue);
    }
  }
  return left_behind;
}

Status Core::shutdown(std::chrono::milliseconds timeout) {
  std::lock_guard lock(shutdown_mutex_);
  if (shut_down_) return shutdown_result_;
  shut_down_ = true;
  const auto deadline = Clock::now() + timeout;

  auto wait_commits = [this] {
    for (;;) {
      std::int64_t in_flight = 0;
      for (auto& shard : shards_)
        in_flight += shard.in_flight.load(std::memory_order_seq_cst);
      if (in_flight == 0) return;
      for (Queue* queue : all_queues_)
        queue->space.notify();
      sched_yield();  // commits inside publish() finish in microseconds
    }
  };

  // 1. Refuse new requests' commits; release commits blocked on full queues.
  closed_.store(true, std::memory_order_seq_cst);
  wait_commits();

  // 2. Deliver what was committed (and what handlers cascade from it) until the deadline;
  //    then refuse everything.
  const Status drained = started_ ? drain_until(deadline, timeout) : Status();
  sealed_.store(true, std::memory_order_seq_cst);
  wait_commits();
  stop_.store(drained.ok() ? StopMode::when_empty : StopMode::abandon, std::memory_order_seq_cst);
  for (Queue* queue : all_queues_)
    queue->wakeup.notify();

  // 3. Join the consumers that return in time; terminate their adapters. A consumer that
  //    is not inside an adapter call exits within microseconds of being woken, so it gets
  //    a short grace even past the deadline; one stuck in a call is left for finish().
  const auto grace = std::max(deadline, Clock::now() + std::chrono::milliseconds(200));
  auto settled = [&] {
    const bool past_deadline = Clock::now() >= deadline;
    for (auto& lane : lanes_) {
      for (auto& consumer : lane->consumers) {
        if (!consumer->thread.joinable() || consumer->exited.load(std::memory_order_acquire)) {
          continue;
        }
        if (!past_deadline || consumer->in_call_events.load(std::memory_order_relaxed) == 0) {
          return false;
        }
      }
    }
    return true;
  };
  while (!settled() && Clock::now() < grace) {
    const std::uint32_t token = exits_.prepare();
    if (!settled()) {
      const auto until = Clock::now() < deadline ? deadline : grace;
      exits_.wait(token, std::min(remaining(until), std::chrono::nanoseconds(10'000'000)));
    }
    exits_.done();
  }
  for (auto& lane : lanes_) {
    bool all_joined = true;
    for (auto& consumer : lane->consumers) {
      if (consumer->thread.joinable() && consumer->exited.load(std::memory_order_acquire)) {
        consumer->thread.join();
        consumer->joined = true;
      }
      all_joined = all_joined && consumer->joined;
    }
    // The dispatcher's terminate joins its pool: only when no handler is still running.
    const bool can_terminate =
        all_joined && (lane.get() != dispatcher_lane_ || dispatcher_->idle());
    if (can_terminate) terminate_adapter(*lane);
  }

  // 4. Whatever is still queued will not be delivered: count it, and say so.
  std::ostringstream undelivered;
  for (auto& lane : lanes_) {
    const std::uint64_t left_behind = discard_queued(*lane, "shutdown");
    std::uint64_t in_call = 0;
    for (auto& consumer : lane->consumers) {
      if (!consumer->joined) in_call += consumer->in_call_events.load(std::memory_order_relaxed);
    }
    if (left_behind + in_call > 0) {
      undelivered << " adapter '" << lane->name << "' did not deliver " << left_behind
                  << " queued events";
      if (in_call > 0) {
        undelivered << " (and " << in_call << " are in a call that has not returned)";
      }
      undelivered << ";";
    }
  }
  if (!drained.ok() || !undelivered.str().empty()) {
    shutdown_result_ =
        Status(Errc::timeout, "shutdown timed out after " + std::to_string(timeout.count()) +
                                  " ms;" + undelivered.str());
  }
  return shutdown_result_;
}

void Core::finish() {
  std::lock_guard lock(shutdown_mutex_);
  for (auto& lane : lanes_) {
    for (auto& consumer : lane->consumers) {
      if (consumer->thread.joinable()) {
        consumer->thread.join();  // an adapter call that never returns blocks here, by design
        consumer->joined = true;
      }
    }
    terminate_adapter(*lane);
    // A consumer that came back after an abandoning shutdown may leave batches behind.
    discard_queued(*lane, "shutdown");
  }
}

EmitterStats Core::stats() const {
  EmitterStats out;
  for (const auto& shard : shards_) {
    out.committed += shard.events.load(std::memory_order_relaxed);
    out.transactions += shard.transactions.load(std::memory_order_relaxed);
    out.discarded += shard.discarded.load(std::memory_order_relaxed);
    out.cascade_dropped += shard.cascade_dropped.load(std::memory_order_relaxed);
  }
  out.adapters.reserve(lanes_.size());
  for (const auto& lane : lanes_) {
    AdapterStats s;
    s.name = lane->name;
    s.delivered = lane->delivered.load(std::memory_order_relaxed);
    s.failed = lane->failed.load(std::memory_order_relaxed);
    s.filtered = lane->filtered.load(std::memory_order_relaxed);
    s.dropped = lane->dropped.load(std::memory_order_relaxed);
    for (const auto& queue : lane->queues) {
      s.queued += queue->occupancy.load(std::memory_order_relaxed);
    }
    out.adapters.push_back(std::move(s));
  }
  return out;
}

}  // namespace emissions::detail
