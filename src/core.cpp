#include "core.hpp"

#include <sched.h>

#include <algorithm>
#include <exception>
#include <set>
#include <sstream>

#include "emissions/telemetry.hpp"
#include "telemetry_events.hpp"

namespace emissions::detail {
namespace {

using Clock = std::chrono::steady_clock;

std::int64_t elapsed_ns(Clock::time_point since) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - since).count();
}

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
  return LaneOptions{o.max_demand.value_or(p.max_demand), o.buffer_size.value_or(p.buffer_size),
                     o.overflow.value_or(p.overflow), o.block_timeout.value_or(p.block_timeout),
                     p.idle_spin};
}

void validate(const std::string& where, const LaneOptions& o) {
  if (o.max_demand == 0) config_error(where + ".max_demand", "must be > 0", "0");
  if (o.buffer_size == 0) config_error(where + ".buffer_size", "must be > 0", "0");
  if (o.block_timeout.count() < 0) {
    config_error(where + ".block_timeout", "must be >= 0 ms",
                 std::to_string(o.block_timeout.count()) + " ms");
  }
  if (o.overflow != Overflow::block && o.overflow != Overflow::drop_oldest &&
      o.overflow != Overflow::drop_newest) {
    config_error(where + ".overflow", "must be block, drop_oldest or drop_newest",
                 std::to_string(static_cast<int>(o.overflow)));
  }
}

std::atomic<std::uint32_t> g_next_shard{0};

}  // namespace

Core::Core(Config config) {
  const PipelineOptions& p = config.pipeline;
  validate("pipeline",
           LaneOptions{p.max_demand, p.buffer_size, p.overflow, p.block_timeout, p.idle_spin});
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
    lanes_.push_back(std::make_unique<Lane>(std::move(entry.adapter), options));
  }
}

Core::~Core() {
  // Normally ~Emitter already shut down and joined; this covers a Core that never started
  // or whose owner skipped that.
  (void)shutdown(std::chrono::milliseconds(0));
  finish();
  for (auto& lane : lanes_) {
    while (Batch* batch = lane->ring.try_pop())
      release(batch);
  }
}

void Core::start() {
  for (auto& lane : lanes_) {
    Lane* l = lane.get();
    l->consumer = std::thread([this, l] { run_consumer(*l); });
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

// ---- producer side ---------------------------------------------------------------------

bool Core::try_reserve(Lane& lane, std::size_t n) noexcept {
  std::size_t current = lane.occupancy.load(std::memory_order_relaxed);
  for (;;) {
    // A batch larger than the whole buffer is admitted alone, or it could never commit.
    if (current != 0 && current + n > lane.options.buffer_size) return false;
    if (lane.occupancy.compare_exchange_weak(current, current + n, std::memory_order_acq_rel)) {
      return true;
    }
  }
}

bool Core::reserve_blocking(Lane& lane, std::size_t n, Clock::time_point deadline) noexcept {
  if (try_reserve(lane, n)) return true;
  for (;;) {
    const std::uint32_t token = lane.space.prepare();
    if (try_reserve(lane, n)) {
      lane.space.done();
      return true;
    }
    const auto left = remaining(deadline);
    if (left.count() == 0 || closed_.load(std::memory_order_seq_cst)) {
      lane.space.done();
      return false;
    }
    lane.space.wait(token, left);
    lane.space.done();
  }
}

void Core::unreserve(Lane& lane, std::size_t n) noexcept {
  lane.occupancy.fetch_sub(n, std::memory_order_acq_rel);
  lane.space.notify();
}

void Core::count_dropped(Lane& lane, const std::vector<Event>& events,
                         const char* reason) noexcept {
  std::uint64_t dropped = 0;
  std::uint64_t unwanted = 0;
  const bool report = telemetry::enabled();
  for (const Event& event : events) {
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
      telemetry::execute(
          events::kEventDropped, {{"count", 1}},
          {{"event_name", event.name.str()}, {"reason", reason}, {"adapter", lane.name}});
    }
  }
  lane.dropped.fetch_add(dropped, std::memory_order_relaxed);
  lane.filtered.fetch_add(unwanted, std::memory_order_relaxed);
}

bool Core::evict_oldest(Lane& lane, const char* reason) noexcept {
  Batch* batch = lane.ring.try_pop();
  if (batch == nullptr) return false;
  lane.occupancy.fetch_sub(batch->events.size(), std::memory_order_acq_rel);
  count_dropped(lane, batch->events, reason);
  release(batch);
  finish_batch(lane);
  return true;
}

Status Core::publish(std::vector<Event>& events) {
  const std::size_t n = events.size();
  if (n == 0) return {};
  Shard& shard = my_shard();
  shard.in_flight.fetch_add(1, std::memory_order_seq_cst);
  struct InFlight {
    Shard& shard;
    ~InFlight() { shard.in_flight.fetch_sub(1, std::memory_order_release); }
  } in_flight{shard};
  if (closed_.load(std::memory_order_seq_cst)) {
    return Status(Errc::closed, "the emitter has been shut down");
  }

  // Which lanes take this batch. Lanes are few; a thread-local scratch avoids allocating.
  thread_local std::vector<Lane*> accepted;
  accepted.clear();
  const auto start = Clock::now();

  // Blocking lanes first: all of them must have room, or none gets anything.
  for (auto& lane_ptr : lanes_) {
    Lane& lane = *lane_ptr;
    if (lane.options.overflow != Overflow::block) continue;
    if (!reserve_blocking(lane, n, start + lane.options.block_timeout)) {
      for (Lane* taken : accepted)
        unreserve(*taken, n);
      accepted.clear();
      if (closed_.load(std::memory_order_seq_cst)) {
        return Status(Errc::closed, "the emitter has been shut down");
      }
      return Status(Errc::overloaded, "adapter '" + lane.name + "' queue stayed full (" +
                                          std::to_string(lane.options.buffer_size) +
                                          " events) for block_timeout " +
                                          std::to_string(lane.options.block_timeout.count()) +
                                          " ms; nothing was delivered");
    }
    accepted.push_back(&lane);
  }
  for (auto& lane_ptr : lanes_) {
    Lane& lane = *lane_ptr;
    if (lane.options.overflow == Overflow::block) continue;
    if (lane.options.overflow == Overflow::drop_newest) {
      if (try_reserve(lane, n)) {
        accepted.push_back(&lane);
      } else {
        count_dropped(lane, events, "overflow");
      }
      continue;
    }
    // drop_oldest: evict whole batches from the head until this one fits.
    while (!try_reserve(lane, n)) {
      if (!evict_oldest(lane, "overflow")) {
        // Room is reserved by a commit that has not pushed yet; it will in a moment.
        sched_yield();
      }
    }
    accepted.push_back(&lane);
  }

  if (!accepted.empty()) {
    auto batch = std::make_unique<Batch>(std::move(events));
    batch->refs.store(static_cast<std::uint32_t>(accepted.size()), std::memory_order_relaxed);
    Batch* shared = batch.release();  // owned by the lanes' references from here on
    for (Lane* lane : accepted) {
      while (!lane->ring.try_push(shared))
        cpu_relax();  // transient: room is reserved
    }
    // The push (seq_cst) then this seq_cst load pair with idle_wait's store then check:
    // either we see the consumer asleep, or it sees our push.
    for (Lane* lane : accepted) {
      if (lane->sleeping.load(std::memory_order_seq_cst) != 0 &&
          lane->sleeping.exchange(0, std::memory_order_acq_rel) != 0) {
        unpark(lane->sleeping, 1);
      }
    }
  }
  events.clear();
  shard.events.fetch_add(n, std::memory_order_relaxed);
  shard.transactions.fetch_add(1, std::memory_order_relaxed);
  return {};
}

// ---- consumer side ---------------------------------------------------------------------

void Core::run_consumer(Lane& lane) noexcept {
  bool need_init = true;
  for (;;) {
    if (stop_.load(std::memory_order_acquire) == StopMode::abandon) break;
    Batch* batch = lane.ring.try_pop();
    if (batch == nullptr) {
      if (stop_.load(std::memory_order_acquire) != StopMode::running) break;
      idle_wait(lane);
      continue;
    }
    const std::size_t n = batch->events.size();
    lane.occupancy.fetch_sub(n, std::memory_order_acq_rel);
    lane.space.notify();
    lane.in_call_events.store(n, std::memory_order_relaxed);
    deliver(lane, batch->events, need_init);
    lane.in_call_events.store(0, std::memory_order_relaxed);
    release(batch);
    finish_batch(lane);
  }
  lane.exited.store(1, std::memory_order_release);
  exits_.notify();
}

void Core::finish_batch(Lane& lane) noexcept {
  lane.completed.fetch_add(1, std::memory_order_seq_cst);
  progress_.notify();
}

void Core::idle_wait(Lane& lane) noexcept {
  // Poll politely for idle_spin (a burst usually follows a burst), then park.
  const auto start = Clock::now();
  for (unsigned i = 0;; ++i) {
    if (lane.ring.has_item() || stop_.load(std::memory_order_acquire) != StopMode::running) {
      return;
    }
    if (i < 64) {
      cpu_relax();
      continue;
    }
    if (Clock::now() - start >= lane.options.idle_spin) break;
    sched_yield();  // on an oversubscribed core, let the producer run
  }
  lane.sleeping.store(1, std::memory_order_seq_cst);
  if (lane.ring.has_item() || stop_.load(std::memory_order_seq_cst) != StopMode::running) {
    lane.sleeping.store(0, std::memory_order_relaxed);
    return;
  }
  park(lane.sleeping, 1);
  lane.sleeping.store(0, std::memory_order_relaxed);
}

void Core::deliver(Lane& lane, const std::vector<Event>& events, bool& need_init) noexcept {
  // Runs of consecutive interested events, at most max_demand long, handed over in place.
  const Event* const begin = events.data();
  const std::size_t size = events.size();
  std::size_t run_start = 0;
  std::size_t run_length = 0;
  std::uint64_t unwanted = 0;
  for (std::size_t i = 0; i < size; ++i) {
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
  const bool report = telemetry::enabled();
  const auto started = report ? Clock::now() : Clock::time_point{};
  Status status;
  bool threw = false;
  try {
    if (need_init) {
      status = lane.adapter->init();
      if (!status.ok()) {
        status = Status(status.code(), "init failed: " + status.message());
      } else {
        need_init = false;
      }
    }
    if (!need_init) status = lane.adapter->handle_events(run);
  } catch (const std::exception& e) {
    status = Status(Errc::internal, e.what());
    threw = true;
  } catch (...) {
    status = Status(Errc::internal, "unknown exception");
    threw = true;
  }
  if (threw) need_init = true;  // the seed's restart: init() again before the next batch
  const auto count = static_cast<std::uint64_t>(run.size());
  if (status.ok()) {
    lane.delivered.fetch_add(count, std::memory_order_relaxed);
  } else {
    lane.failed.fetch_add(count, std::memory_order_relaxed);
  }
  if (!report) return;
  const std::int64_t duration = elapsed_ns(started);
  if (status.ok()) {
    telemetry::execute(events::kAdapterSuccess, {{"duration", duration}},
                       {{"adapter", lane.name}, {"event_count", count}});
  } else {
    telemetry::execute(events::kAdapterError, {{"duration", duration}},
                       {{"adapter", lane.name},
                        {"reason", threw ? status.message() : status.to_string()},
                        {"event_count", count}});
  }
}

void Core::terminate_adapter(Lane& lane) noexcept {
  if (lane.terminated) return;
  lane.terminated = true;
  try {
    lane.adapter->terminate();
  } catch (...) {
    // terminate() is the last call; there is no one left to report to but telemetry.
    if (telemetry::enabled()) {
      telemetry::execute(
          events::kAdapterError, {{"duration", 0}},
          {{"adapter", lane.name}, {"reason", "terminate() threw"}, {"event_count", 0}});
    }
  }
}

// ---- drain and shutdown ----------------------------------------------------------------

bool Core::all_done(const std::vector<std::size_t>& targets) const noexcept {
  for (std::size_t i = 0; i < lanes_.size(); ++i) {
    if (lanes_[i]->completed.load(std::memory_order_seq_cst) < targets[i]) return false;
  }
  return true;
}

Status Core::drain(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::vector<std::size_t> targets;
  targets.reserve(lanes_.size());
  for (auto& lane : lanes_)
    targets.push_back(lane->ring.pushes());
  while (!all_done(targets)) {
    const std::uint32_t token = progress_.prepare();
    if (all_done(targets)) {
      progress_.done();
      break;
    }
    const auto left = remaining(deadline);
    if (left.count() == 0) {
      progress_.done();
      std::ostringstream msg;
      msg << "drain timed out after " << timeout.count() << " ms;";
      for (std::size_t i = 0; i < lanes_.size(); ++i) {
        const auto done = lanes_[i]->completed.load();
        if (done < targets[i]) {
          msg << " adapter '" << lanes_[i]->name << "' has " << (targets[i] - done)
              << " batches pending;";
        }
      }
      return Status(Errc::timeout, msg.str());
    }
    progress_.wait(token, left);
    progress_.done();
  }
  return {};
}

Status Core::shutdown(std::chrono::milliseconds timeout) {
  std::lock_guard lock(shutdown_mutex_);
  if (shut_down_) return shutdown_result_;
  shut_down_ = true;
  const auto deadline = Clock::now() + timeout;

  // 1. Refuse new commits, release commits blocked on full queues, and wait for the
  //    commits already inside publish() (they finish in microseconds).
  closed_.store(true, std::memory_order_seq_cst);
  for (auto& lane : lanes_) {
    lane->space.notify();
  }
  for (;;) {
    std::int64_t in_flight = 0;
    for (auto& shard : shards_)
      in_flight += shard.in_flight.load(std::memory_order_seq_cst);
    if (in_flight == 0) break;
    for (auto& lane : lanes_)
      lane->space.notify();
    sched_yield();
  }

  // 2. Deliver what was committed, until the deadline.
  const bool started = !lanes_.empty() && lanes_.front()->consumer.joinable();
  const Status drained =
      started ? drain(std::chrono::duration_cast<std::chrono::milliseconds>(remaining(deadline)))
              : Status();
  stop_.store(drained.ok() ? StopMode::when_empty : StopMode::abandon, std::memory_order_seq_cst);
  for (auto& lane : lanes_) {
    lane->sleeping.store(0, std::memory_order_seq_cst);
    unpark(lane->sleeping);
  }

  // 3. Join the consumers that return in time; terminate their adapters.
  for (auto& lane : lanes_) {
    if (!lane->consumer.joinable()) continue;
    for (;;) {
      const std::uint32_t token = exits_.prepare();
      if (lane->exited.load(std::memory_order_acquire) != 0) {
        exits_.done();
        break;
      }
      const auto left = remaining(deadline);
      if (left.count() == 0) {
        exits_.done();
        break;
      }
      exits_.wait(token, left);
      exits_.done();
    }
    if (lane->exited.load(std::memory_order_acquire) != 0) {
      lane->consumer.join();
      lane->joined = true;
      terminate_adapter(*lane);
    }
  }

  // 4. Whatever is still queued will not be delivered: count it, and say so.
  std::ostringstream undelivered;
  for (auto& lane : lanes_) {
    std::uint64_t left_behind = 0;
    while (Batch* batch = lane->ring.try_pop()) {
      left_behind += batch->events.size();
      lane->occupancy.fetch_sub(batch->events.size(), std::memory_order_acq_rel);
      count_dropped(*lane, batch->events, "shutdown");
      release(batch);
      finish_batch(*lane);
    }
    const std::uint64_t in_call =
        lane->joined ? 0 : lane->in_call_events.load(std::memory_order_relaxed);
    if (left_behind + in_call > 0) {
      undelivered << " adapter '" << lane->name << "' did not deliver " << left_behind
                  << " queued events";
      if (in_call > 0)
        undelivered << " (and " << in_call << " are in a call that has not returned)";
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
    if (lane->consumer.joinable()) {
      lane->consumer.join();  // an adapter call that never returns blocks here, by design
      lane->joined = true;
    }
    if (lane->joined) terminate_adapter(*lane);
    // A consumer that came back after an abandoning shutdown may leave batches behind.
    while (Batch* batch = lane->ring.try_pop()) {
      lane->occupancy.fetch_sub(batch->events.size(), std::memory_order_acq_rel);
      count_dropped(*lane, batch->events, "shutdown");
      release(batch);
      finish_batch(*lane);
    }
  }
}

EmitterStats Core::stats() const {
  EmitterStats out;
  for (const auto& shard : shards_) {
    out.committed += shard.events.load(std::memory_order_relaxed);
    out.transactions += shard.transactions.load(std::memory_order_relaxed);
    out.discarded += shard.discarded.load(std::memory_order_relaxed);
  }
  out.adapters.reserve(lanes_.size());
  for (const auto& lane : lanes_) {
    AdapterStats s;
    s.name = lane->name;
    s.delivered = lane->delivered.load(std::memory_order_relaxed);
    s.failed = lane->failed.load(std::memory_order_relaxed);
    s.filtered = lane->filtered.load(std::memory_order_relaxed);
    s.dropped = lane->dropped.load(std::memory_order_relaxed);
    s.queued = lane->occupancy.load(std::memory_order_relaxed);
    out.adapters.push_back(std::move(s));
  }
  return out;
}

}  // namespace emissions::detail
