// At-least-once delivery on the consumer side: what becomes of events an adapter failed.
//
// A failure with a retriable code (emissions::retriable) is tried again after a backoff, in
// a retry batch (a copy of the failed events) that waits in the consumer's RetryBox, in
// ticket order: until it is delivered again the consumer takes no new batch (head-of-line,
// see AdapterOptions::retry). Any other failure, or the last attempt's, fails the events
// for good; with a dead letter configured, copies of them go to the dead-letter lane's
// queue. Decisions run on the consumer thread, never on an adapter's callback thread: a
// full dead-letter queue blocks the consumer, not a client library.
#include <algorithm>
#include <string>

#include "common/backoff.hpp"
#include "common/best_effort.hpp"
#include "common/wait.hpp"
#include "pipeline/core.hpp"
#include "pipeline/delivery_state.hpp"
#include "telemetry/events.hpp"

namespace emissions::detail {
namespace {

void report_dropped_one(const std::string& lane, const Event& event, const char* reason) {
  if (!events::kEventDropped.enabled()) return;
  best_effort([&] {
    events::kEventDropped.execute(
        {{"count", 1}}, {{"event_name", event.name.str()}, {"reason", reason}, {"adapter", lane}});
  });
}

// The route of a batch whose every event goes to one queue of one lane.
void route_all_to(Batch& batch, std::size_t lane_count, std::size_t lane, std::uint32_t queue,
                  std::size_t queue_flat, std::size_t queue_total) {
  batch.lane_count = lane_count;
  batch.whole_lanes = 0;
  batch.route.assign(batch.size * lane_count, Batch::kSkip);
  for (std::size_t i = 0; i < batch.size; ++i)
    batch.route[i * lane_count + lane] = queue;
  batch.take.assign(queue_total, 0);
  batch.take[queue_flat] = static_cast<std::uint32_t>(batch.size);
  batch.skipped.assign(lane_count, 0);
}

}  // namespace

RetryBox::~RetryBox() {
  for (const Waiting& w : waiting)
    shared->release(w.batch);
}

bool RetryBox::holds_below(std::size_t target) const {
  std::lock_guard lock(mutex);
  for (const auto& state : undecided) {
    if (state->ticket < target) return true;
  }
  for (const Waiting& w : waiting) {
    if (w.ticket < target) return true;
  }
  return false;
}

void Core::fail_run(Lane& lane, Consumer& consumer, Batch& batch, std::size_t ticket,
                    std::span<const Event> run, const Status& error) noexcept {
  std::vector<FailedEvent> failed;
  try {
    failed.reserve(run.size());
    for (std::size_t i = 0; i < run.size(); ++i)
      failed.push_back({i, error});
  } catch (...) {
    // Out of memory: the events fail for good, without a decision.
    lane.counters->failed.fetch_add(run.size(), std::memory_order_relaxed);
    if (batch.tracker)
      batch.tracker->add(lane.index, SettlementTracker::Outcome::failed, run.size());
    return;
  }
  decide_failures(lane, consumer, batch, ticket, run, failed, 0);
}

void Core::decide_failures(Lane& lane, Consumer& consumer, Batch& batch, std::size_t ticket,
                           std::span<const Event> run, std::span<FailedEvent> failed,
                           std::int64_t retry_after_ms) noexcept {
  const RetryPolicy& policy = lane.options.retry;
  const std::uint32_t attempt = batch.attempt;
  const bool attempts_left = policy.max_attempts == 0 || attempt < policy.max_attempts;
  const bool abandoning = stop_.load(std::memory_order_acquire) == StopMode::abandon;
  const auto now = std::chrono::system_clock::now();
  BatchPtr retry;
  BatchPtr dead;
  std::uint64_t failed_for_good = 0;
  std::uint64_t dropped = 0;
  const Status* retry_reason = nullptr;
  for (FailedEvent& f : failed) {
    const Event& event = run[f.index];
    const std::size_t slot = static_cast<std::size_t>(&event - batch.slots.data());
    const FailureHistory history{
        batch.history.size() > slot ? batch.history[slot].first_failed_at : now, now};
    const bool again = retriable(f.error.code()) && attempts_left;
    if (again && abandoning) {
      ++dropped;  // shutdown gave up: it will not be tried again
      report_dropped_one(lane.name, event, "shutdown");
      continue;
    }
    try {
      if (again) {
        if (!retry) {
          retry = shared_->pool.acquire();
          retry->history.clear();
          retry->dead_letter_of.clear();
        }
        retry->append(event.name, nlohmann::json(event.payload), nlohmann::json(event.metadata),
                      event.id, event.emitted_at);
        retry->history.push_back(history);
        // A dead-letter copy being retried still credits its source once delivered.
        if (!batch.dead_letter_of.empty())
          retry->dead_letter_of.push_back(batch.dead_letter_of[slot]);
        if (retry_reason == nullptr) retry_reason = &f.error;
        continue;
      }
    } catch (...) {
      // Out of memory for the copy: it fails for good below.
    }
    ++failed_for_good;
    if (lane.dead_letter == nullptr) continue;
    best_effort([&] {
      if (!dead) dead = shared_->pool.acquire();
      nlohmann::json metadata = event.metadata.is_object()
                                    ? event.metadata
                                    : nlohmann::json(nlohmann::json::value_t::object);
      metadata["dead_letter"] = {{"adapter", lane.name},
                                 {"reason", f.error.to_string()},
                                 {"attempts", attempt},
                                 {"first_failed_at", format_timestamp(history.first_failed_at)},
                                 {"last_failed_at", format_timestamp(history.last_failed_at)}};
      dead->append(event.name, nlohmann::json(event.payload), std::move(metadata), event.id,
                   event.emitted_at);
      dead->dead_letter_of.push_back(lane.counters);
      if (events::kEventDeadLettered.enabled()) {
        events::kEventDeadLettered.execute({{"count", 1}}, {{"adapter", lane.name},
                                                            {"event_name", event.name.str()},
                                                            {"reason", f.error.to_string()},
                                                            {"attempts", attempt}});
      }
    });
  }
  if (failed_for_good != 0) {
    lane.counters->failed.fetch_add(failed_for_good, std::memory_order_relaxed);
    if (batch.tracker)
      batch.tracker->add(lane.index, SettlementTracker::Outcome::failed, failed_for_good);
  }
  if (dropped != 0) {
    lane.counters->dropped.fetch_add(dropped, std::memory_order_relaxed);
    if (batch.tracker) batch.tracker->add(lane.index, SettlementTracker::Outcome::dropped, dropped);
  }
  if (retry && retry->size != 0) {
    retry->tracker = batch.tracker;
    retry->attempt = attempt + 1;
    retry->committed_at = batch.committed_at;
    retry->cascade_depth = batch.cascade_depth;
    retry->refs.store(1, std::memory_order_relaxed);
    const Queue& queue = *consumer.queue;
    auto delay = backoff_delay(policy, attempt, consumer.random);
    // A server's Retry-After is honoured up to kMaxTimeout (beyond, the nanoseconds
    // would overflow).
    const auto floor =
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::milliseconds(
            std::clamp<std::int64_t>(retry_after_ms, 0, kMaxTimeout.count())));
    if (floor > delay) delay = floor;
    const std::size_t n = retry->size;
    std::string reason;
    best_effort([&] { reason = retry_reason->to_string(); });
    bool queued = false;
    try {
      route_all_to(*retry, lanes_.size(), lane.index, static_cast<std::uint32_t>(queue.index),
                   queue.flat, all_queues_.size());
      RetryBox& box = *consumer.retries;
      const Clock::time_point due =
          clock_->now() + std::chrono::duration_cast<Clock::duration>(delay);
      std::lock_guard lock(box.mutex);
      auto at = box.waiting.end();
      while (at != box.waiting.begin() && std::prev(at)->ticket > ticket)
        --at;
      box.waiting.insert(at, RetryBox::Waiting{retry.get(), due, ticket});
      box.size.fetch_add(1, std::memory_order_seq_cst);
      queued = true;
    } catch (...) {
    }
    if (queued) {
      (void)retry.release();  // owned by the box from here on
      if (events::kAdapterRetry.enabled()) {
        best_effort([&] {
          events::kAdapterRetry.execute(
              {{"count", n}, {"delay", delay.count()}},
              {{"adapter", lane.name}, {"attempt", attempt}, {"reason", reason}});
        });
      }
    } else {
      // Out of memory to queue the retry: its events fail for good.
      lane.counters->failed.fetch_add(n, std::memory_order_relaxed);
      if (batch.tracker) batch.tracker->add(lane.index, SettlementTracker::Outcome::failed, n);
      retry->refs.store(0, std::memory_order_relaxed);
    }
  }
  if (dead) send_dead_letters(lane, std::move(dead));
}

void Core::send_dead_letters(Lane& source, BatchPtr copies) noexcept {
  Lane& lane = *source.dead_letter;
  Queue& queue = *lane.queues.front();
  const std::size_t n = copies->size;
  lane.counters->received.fetch_add(n, std::memory_order_relaxed);
  bool ok = false;
  try {
    route_all_to(*copies, lanes_.size(), lane.index, 0, queue.flat, all_queues_.size());
    if (lane.options.overflow == Overflow::block) {
      Deadline wait{};
      ok = reserve_blocking(queue, n, wait, lane.options.block_timeout, /*cascade=*/true);
    } else {
      ok = try_reserve(queue, n, queue.capacity);
    }
  } catch (...) {
    ok = false;
  }
  if (!ok) {
    lane.counters->dropped.fetch_add(n, std::memory_order_relaxed);
    for (const Event& e : copies->events())
      report_dropped_one(lane.name, e, sealed_.load() ? "shutdown" : "overflow");
    return;  // `copies` goes back to the pool
  }
  copies->refs.store(1, std::memory_order_relaxed);
  Batch* batch = copies.release();
  while (!queue.ring.try_push(batch))
    sched_yield();
  dead_letter_pushes_.fetch_add(1, std::memory_order_seq_cst);
  queue.wakeup.notify();
}

void Core::serve_retries(Lane& lane, Consumer& consumer, bool& need_init) noexcept {
  RetryBox& box = *consumer.retries;
  // 1. Decide the asynchronous deliveries that finished with failures. They stay in the box
  //    (so drains keep waiting) until decided.
  std::vector<std::shared_ptr<DeliveryState>> undecided;
  {
    std::lock_guard lock(box.mutex);
    try {
      undecided = box.undecided;
      box.undecided_in_hand = undecided.size();
    } catch (...) {
      undecided.clear();
    }
  }
  for (const auto& state : undecided) {
    std::vector<FailedEvent> failed;
    if (const std::size_t left_out = state->take_failures(failed); left_out != 0) {
      // Out of memory for their entries here too: they fail for good, undecided.
      lane.counters->failed.fetch_add(left_out, std::memory_order_relaxed);
      if (state->batch->tracker) {
        state->batch->tracker->add(lane.index, SettlementTracker::Outcome::failed, left_out);
      }
    }
    decide_failures(lane, consumer, *state->batch, state->ticket, state->events, failed,
                    state->retry_after_ms.load(std::memory_order_relaxed));
  }
  if (!undecided.empty()) {
    std::lock_guard lock(box.mutex);
    box.undecided.erase(box.undecided.begin(),
                        box.undecided.begin() + static_cast<std::ptrdiff_t>(undecided.size()));
    box.undecided_in_hand = 0;
    box.size.fetch_sub(undecided.size(), std::memory_order_seq_cst);
    undecided.clear();
    shared_->progress.notify();
  }

  // 2. The first waiting retry: deliver it when due, otherwise sleep until it is.
  Batch* batch = nullptr;
  std::size_t ticket = 0;
  Clock::time_point due{};
  {
    std::lock_guard lock(box.mutex);
    if (box.waiting.empty()) return;
    RetryBox::Waiting& first = box.waiting.front();
    batch = first.batch;
    ticket = first.ticket;
    due = first.due;
  }
  if (clock_->now() < due) {
    const std::uint32_t token = box.wake.prepare();
    const bool wake_now =
        clock_->now() >= due || stop_.load(std::memory_order_seq_cst) == StopMode::abandon || [&] {
          std::lock_guard lock(box.mutex);
          return !box.undecided.empty() || box.waiting.empty() ||
                 box.waiting.front().batch != batch;
        }();
    if (!wake_now) {
      const Clock::time_point wake = clock_->wake_time(due);
      std::chrono::nanoseconds timeout(-1);
      if (wake != Clock::time_point::max()) {
        timeout = std::max(std::chrono::nanoseconds(0),
                           std::chrono::duration_cast<std::chrono::nanoseconds>(
                               wake - std::chrono::steady_clock::now()));
      }
      box.wake.wait(token, timeout);
    }
    box.wake.done();
    return;  // the caller loops: re-check stop, then come back
  }
  {
    // Still the first one? (A shutdown past its deadline may have dropped it meanwhile.)
    std::lock_guard lock(box.mutex);
    if (box.waiting.empty() || box.waiting.front().batch != batch) return;
    box.waiting.front().in_hand = true;
  }
  const std::size_t n = batch->size;
  lane.counters->retried.fetch_add(n, std::memory_order_relaxed);
  consumer.in_call_events.store(n, std::memory_order_relaxed);
  set_delivering_depth(batch->cascade_depth);
  (void)deliver(lane, consumer, *batch, ticket, need_init, 0);  // the consumer thread: whole
  consumer.in_call_events.store(0, std::memory_order_relaxed);
  {
    std::lock_guard lock(box.mutex);
    for (auto it = box.waiting.begin(); it != box.waiting.end(); ++it) {
      if (it->batch == batch) {
        box.waiting.erase(it);
        box.size.fetch_sub(1, std::memory_order_seq_cst);
        break;
      }
    }
  }
  shared_->release(batch);
  shared_->progress.notify();
}

void Core::serve_retries_first(Lane& lane, Consumer& consumer, bool& need_init) noexcept {
  if (consumer.serving_retries) return;
  consumer.serving_retries = true;
  // Retries are delivered at their own batch's cascade depth; the run that was about to be
  // handed over when they went first keeps its own.
  const int depth = delivering_depth();
  while (consumer.retries->size.load(std::memory_order_seq_cst) != 0 &&
         stop_.load(std::memory_order_acquire) != StopMode::abandon) {
    serve_retries(lane, consumer, need_init);
  }
  set_delivering_depth(depth);
  consumer.serving_retries = false;
}

std::uint64_t Core::drop_retries(Lane& lane, bool all, const char* reason) noexcept {
  std::uint64_t dropped = 0;
  for (auto& consumer : lane.consumers) {
    RetryBox& box = *consumer->retries;
    std::vector<Batch*> batches;
    std::vector<std::shared_ptr<DeliveryState>> undecided;
    {
      std::lock_guard lock(box.mutex);
      try {
        for (auto it = box.waiting.begin(); it != box.waiting.end();) {
          if (it->in_hand && !all) {
            ++it;
            continue;
          }
          batches.push_back(it->batch);
          it = box.waiting.erase(it);
          box.size.fetch_sub(1, std::memory_order_seq_cst);
        }
        const std::size_t keep = all ? 0 : box.undecided_in_hand;
        for (std::size_t i = keep; i < box.undecided.size(); ++i)
          undecided.push_back(std::move(box.undecided[i]));
        box.size.fetch_sub(box.undecided.size() - keep, std::memory_order_seq_cst);
        box.undecided.resize(keep);
        if (all) box.undecided_in_hand = 0;
      } catch (...) {
      }
    }
    for (Batch* batch : batches) {
      dropped += batch->size;
      lane.counters->dropped.fetch_add(batch->size, std::memory_order_relaxed);
      if (batch->tracker) {
        batch->tracker->add(lane.index, SettlementTracker::Outcome::dropped, batch->size);
      }
      for (const Event& e : batch->events())
        report_dropped_one(lane.name, e, reason);
      shared_->release(batch);
    }
    for (const auto& state : undecided)
      dropped += state->drop_failures(reason);
  }
  if (dropped != 0) shared_->progress.notify();
  return dropped;
}

}  // namespace emissions::detail
