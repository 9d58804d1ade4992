// drain() and shutdown(), as named phases, and finish().
//
// Every wait here has a deadline (the caller's) or a wake-up: watermarks are re-checked on
// shared_->progress, consumers' exits on exits_, publishes under way on publishes_.
#include <sstream>
#include <string>

#include "common/best_effort.hpp"
#include "common/exceptions.hpp"
#include "common/status_copy.hpp"
#include "common/wait.hpp"
#include "handlers/dispatcher.hpp"
#include "pipeline/adapter_call.hpp"
#include "pipeline/core.hpp"
#include "pipeline/delivery_state.hpp"
#include "pipeline/thread_role.hpp"
#include "spool/spool.hpp"
#include "telemetry/events.hpp"
#include "transaction/default_emitter.hpp"

namespace emissions::detail {
namespace {

// How long past its deadline shutdown gives consumers that are not inside an adapter call
// to notice the stop and exit (they do within microseconds unless the machine is
// oversubscribed), and publishes under way to return.
constexpr std::chrono::milliseconds kExitGrace{50};

Status closed_status() {
  return Status(Errc::closed, "the emitter has been shut down");
}

}  // namespace

// ---- drain -------------------------------------------------------------------------------

Status Core::drain(std::chrono::milliseconds timeout) {
  if (current_thread_owner() == this) {
    return Status(Errc::invalid_argument,
                  "drain() called from one of this emitter's delivery or handler threads "
                  "would wait for itself");
  }
  if (phase_.load(std::memory_order_acquire) != Phase::running) return closed_status();
  return drain_until(deadline_after(timeout), timeout);
}

Status Core::drain_until(Deadline deadline, std::chrono::milliseconds timeout, bool* completed) {
  if (completed != nullptr) *completed = false;
  // Round k delivers what was committed before it; with handlers, its invocations may
  // commit cascaded events (level k + 1), which the next round delivers. Cascades are at
  // most max_cascade_depth levels deep, so the rounds end.
  Status flush_error;
  for (int round = 0;; ++round) {
    const std::uint64_t cascades_before = cascade_commits_.load(std::memory_order_seq_cst);
    const std::uint64_t dead_letters_before = dead_letter_pushes_.load(std::memory_order_seq_cst);
    // With a spool, commits reach the queues through the relays: first every commit in the
    // log when this round began is handed over to its lanes.
    if (!wait_for_relays(deadline)) {
      return Status(Errc::timeout, "drain timed out after " + std::to_string(timeout.count()) +
                                       " ms; the spool's relays were still handing over the "
                                       "backlog");
    }
    std::vector<std::size_t> targets;
    targets.reserve(all_queues_.size());
    for (const Queue* queue : all_queues_)
      targets.push_back(queue->ring.pushes());
    auto handed_over = [&] {
      for (std::size_t q = 0; q < all_queues_.size(); ++q) {
        if (!all_queues_[q]->handed_over_below(targets[q])) return false;
      }
      return true;
    };
    auto settled = [&] {
      for (std::size_t q = 0; q < all_queues_.size(); ++q) {
        if (!all_queues_[q]->settled_below(targets[q])) return false;
      }
      return true;
    };
    // 1. Everything committed before this round reached its adapters (or was dropped),
    // 2. the handler invocations it started have finished (their cascades are committed),
    // 3. adapters that hold events back send them, 4. every delivery of it is settled.
    bool done = wait_until(shared_->progress, handed_over, deadline);
    if (done && dispatcher_) done = dispatcher_->wait_idle(deadline);
    if (done) flush_error.update(flush_adapters(deadline));
    if (done) done = wait_until(shared_->progress, settled, deadline);
    if (!done) {
      return Status(Errc::timeout, "drain timed out after " + std::to_string(timeout.count()) +
                                       " ms;" + pending_summary(targets));
    }
    // Dead-letter copies made during this round were queued after its targets: one more
    // round waits for them (dead-letter lanes make none of their own, so it ends).
    if (dead_letter_pushes_.load(std::memory_order_seq_cst) != dead_letters_before) continue;
    if (!dispatcher_ || cascade_commits_.load(std::memory_order_seq_cst) == cascades_before ||
        round >= max_cascade_depth_) {
      if (completed != nullptr) *completed = true;
      if (spool_) flush_error.update(spool_->checkpoint());  // positions on disk at once
      return flush_error;
    }
  }
}

std::string Core::pending_summary(const std::vector<std::size_t>& targets) const {
  std::ostringstream out;
  for (const auto& lane : lanes_) {
    std::uint64_t batches = 0;
    std::uint64_t unsettled = 0;
    for (const auto& queue : lane->queues) {
      const std::size_t head = queue->ring.head();
      if (head < targets[queue->flat]) batches += targets[queue->flat] - head;
    }
    std::uint64_t retrying = 0;
    for (const auto& consumer : lane->consumers) {
      retrying += consumer->retries->size.load(std::memory_order_relaxed);
      if (consumer->window) unsettled += consumer->window->size.load(std::memory_order_relaxed);
      if (consumer->in_call_events.load(std::memory_order_relaxed) != 0) ++batches;
    }
    if (batches > 0)
      out << " adapter '" << lane->name << "' has " << batches << " batches pending;";
    if (unsettled > 0) {
      out << " adapter '" << lane->name << "' has " << unsettled << " deliveries unsettled;";
    }
    if (retrying > 0) {
      out << " adapter '" << lane->name << "' has " << retrying
          << " failed deliveries waiting to be retried;";
    }
  }
  if (dispatcher_ && !dispatcher_->idle()) out << " handler invocations are still running;";
  return out.str();
}

Status Core::flush_adapters(Deadline deadline) {
  Status first;
  for (const auto& lane : lanes_) {
    lane->flushing.fetch_add(1, std::memory_order_seq_cst);
    Status flushed;
    if (!lane->terminating.load(std::memory_order_seq_cst) && lane->adapter) {
      try {
        flushed = lane->adapter->flush(deadline);
      } catch (...) {
        flushed = Status(Errc::internal, describe_current_exception());
      }
    }
    lane->flushing.fetch_sub(1, std::memory_order_seq_cst);
    lane->flush_done.notify();
    if (!flushed.ok()) {
      first.update(Status(flushed.code(),
                          "adapter '" + lane->name + "' flush failed: " + flushed.message()));
    }
  }
  return first;
}

// ---- shutdown ----------------------------------------------------------------------------

Status Core::shutdown(std::chrono::milliseconds timeout) {
  Phase expected = Phase::running;
  if (phase_.compare_exchange_strong(expected, Phase::shutting_down, std::memory_order_acq_rel)) {
    shutting_down_on_.store(std::this_thread::get_id(), std::memory_order_release);
    Status result = shutdown_phases(timeout);
    shutdown_result_ = result;
    phase_.store(Phase::shut_down, std::memory_order_release);
    phase_changed_.notify();
    return result;
  }
  if (expected == Phase::shutting_down &&
      shutting_down_on_.load(std::memory_order_acquire) == std::this_thread::get_id()) {
    // An adapter's terminate() or a telemetry handler called shutdown() again.
    return Status(Errc::closed, "shutdown() is already in progress on this thread");
  }
  const bool finished = wait_until(
      phase_changed_, [&] { return phase_.load(std::memory_order_acquire) >= Phase::shut_down; },
      deadline_after(timeout));
  if (!finished) {
    return Status(Errc::timeout, "another shutdown() was still in progress after " +
                                     std::to_string(timeout.count()) + " ms");
  }
  return shutdown_result_;
}

Status Core::shutdown_phases(std::chrono::milliseconds timeout) {
  const Deadline deadline = deadline_after(timeout);

  // 1. Refuse new requests' commits; wake the commits blocked on full queues. Threads that
  // cached this emitter as their default re-resolve it now (the older one, if open, is the
  // default again), not only once shutdown returns.
  closed_.store(true, std::memory_order_seq_cst);
  default_core_changed();
  for (Queue* queue : all_queues_)
    queue->space.notify();

  // 2. Deliver what was committed, and what handlers cascade from it, until the deadline.
  // A flush() error is not a timeout: everything was handed over, so the consumers still
  // stop after the last batch, and the error is part of the result.
  bool drained_all = true;
  Status drained = started_ ? drain_until(deadline, timeout, &drained_all) : Status();

  // 3. Seal: refuse handlers' cascades too, and let the publishes under way finish.
  sealed_.store(true, std::memory_order_seq_cst);
  for (Queue* queue : all_queues_)
    queue->space.notify();
  // The spool's relays stop handing over: what they have not is delivered by the next
  // Emitter on the directory.
  stop_relays();
  const Deadline grace = std::max(deadline, deadline_after(kExitGrace));
  const bool publishes_done = wait_for_publishes(grace);
  // Commits under way when the drain began (past the closed check, not yet pushed) were not
  // below its watermark: they are delivered and settled too, by the same deadline (the
  // consumers would otherwise stop once their queues are empty, and what an asynchronous
  // adapter had not settled yet would count as dropped).
  if (started_ && drained_all && publishes_done) {
    drained.update(drain_until(deadline, timeout, &drained_all));
  }

  // 4. Stop the consumers: after the last batch when everything drained, at once otherwise.
  stop_consumers(drained_all && publishes_done, deadline);

  // 5. Terminate the adapters whose consumers have exited (they get the deadline).
  const Status terminated = terminate_adapters(deadline);

  // 6. What is still queued or unsettled will not be delivered: count it as dropped.
  std::ostringstream undelivered;
  for (auto& lane : lanes_) {
    const std::uint64_t queued = discard_queued(*lane, "shutdown");
    const std::uint64_t unsettled =
        drop_unsettled(*lane, "shutdown") + drop_retries(*lane, /*all=*/false, "shutdown");
    std::uint64_t in_call = 0;
    for (auto& consumer : lane->consumers) {
      if (consumer->joined) continue;
      // What its call holds, and the rest of a batch waiting behind it (deliver_on_commit).
      in_call += consumer->in_call_events.load(std::memory_order_relaxed) +
                 consumer->held_events.load(std::memory_order_relaxed);
    }
    // A deliver_on_commit queue whose role a stuck commit holds was not discarded: finish()
    // does it, once that commit returns.
    for (auto& queue : lane->queues) {
      if (queue->role_shared) in_call += queue->occupancy.load(std::memory_order_acquire);
    }
    if (queued + unsettled + in_call == 0) continue;
    undelivered << " adapter '" << lane->name << "' did not deliver " << queued + unsettled
                << " events (dropped)";
    if (in_call > 0) {
      undelivered << ", and " << in_call
                  << " are in a call that has not returned (or wait behind it)";
    }
    undelivered << ";";
  }
  if (!drained_all || !undelivered.str().empty() || !publishes_done) {
    return Status(Errc::timeout, "shutdown timed out after " + std::to_string(timeout.count()) +
                                     " ms;" + undelivered.str() +
                                     (publishes_done ? "" : " commits were still under way;"));
  }
  Status result = drained;  // the first flush() error, if any
  result.update(terminated);
  return result;
}

bool Core::wait_for_publishes(Deadline deadline) noexcept {
  return wait_until(
      publishes_, [&] { return !publishes_in_flight(); }, deadline);
}

void Core::stop_consumers(bool drained, Deadline deadline) {
  // Consumers wait in two places: idle on their queue, and (asynchronous ones) on their
  // window when it is full. Every change of stop_ wakes both. When giving up, the handler
  // dispatcher's consumer may also be waiting for room among the handler invocations in
  // flight: those not started are dropped, so it is not held up by every one of them.
  auto wake_consumers = [&] {
    if (dispatcher_ && stop_.load(std::memory_order_seq_cst) == StopMode::abandon) {
      dispatcher_->abandon();
    }
    for (Queue* queue : all_queues_)
      queue->wakeup.notify();
    for (auto& lane : lanes_) {
      for (auto& consumer : lane->consumers) {
        if (consumer->window) consumer->window->freed.notify();
        consumer->retries->wake.notify();
      }
    }
  };
  stop_.store(drained ? StopMode::when_empty : StopMode::abandon, std::memory_order_seq_cst);
  wake_consumers();
  // Until the deadline, wait for every consumer; after it, only for those not inside an
  // adapter call (they exit at once), for a short grace. One stuck in a call is left to
  // finish().
  auto all_exited = [&](bool ignore_in_call) {
    for (auto& lane : lanes_) {
      for (auto& consumer : lane->consumers) {
        if (!consumer->thread.joinable() || consumer->exited.load(std::memory_order_acquire)) {
          continue;
        }
        if (ignore_in_call && consumer->in_adapter_call.load(std::memory_order_seq_cst)) {
          continue;
        }
        return false;
      }
    }
    return true;
  };
  if (!wait_until(
          exits_, [&] { return all_exited(false); }, deadline)) {
    if (stop_.load(std::memory_order_relaxed) != StopMode::abandon) {
      stop_.store(StopMode::abandon, std::memory_order_seq_cst);
      wake_consumers();
    }
    wait_until(
        exits_, [&] { return all_exited(true); }, deadline_after(kExitGrace));
  }
  for (auto& lane : lanes_) {
    for (auto& consumer : lane->consumers) {
      if (consumer->thread.joinable() && consumer->exited.load(std::memory_order_acquire)) {
        consumer->thread.join();
        consumer->joined = true;
      }
      if (!consumer->thread.joinable() && !started_) consumer->joined = true;
    }
  }
}

Status Core::terminate_adapters(Deadline deadline) {
  Status first;
  for (auto& lane : lanes_) {
    bool all_joined = true;
    for (auto& consumer : lane->consumers)
      all_joined = all_joined && consumer->joined;
    if (all_joined) first.update(terminate_adapter(*lane, deadline));
  }
  return first;
}

Status Core::terminate_adapter(Lane& lane, Deadline deadline) noexcept {
  if (lane.terminated || !lane.adapter) return {};
  // No flush may be running or start from now on.
  lane.terminating.store(true, std::memory_order_seq_cst);
  if (!wait_until(
          lane.flush_done, [&] { return lane.flushing.load(std::memory_order_seq_cst) == 0; },
          deadline)) {
    return status_or_bare(Errc::timeout,
                          [&] { return "adapter '" + lane.name + "' was still flushing"; });
  }
  Status status;
  if (&lane == dispatcher_lane_) {
    // Joins the handler pool once its invocations finish; if they do not by the deadline,
    // finish() joins it.
    status = dispatcher_->terminate(deadline);
    lane.terminated = status.ok();
  } else {
    lane.terminated = true;
    try {
      status = lane.adapter->terminate(deadline);
    } catch (...) {
      status = status_or_bare(Errc::internal,
                              [] { return "terminate() threw: " + describe_current_exception(); });
    }
  }
  if (status.ok()) return {};
  best_effort([&] {
    report_delivery(lane.name, 0, {status, false, 0});
    status = Status(status.code(), "adapter '" + lane.name + "' terminate: " + status.message());
  });
  return status;
}

std::uint64_t Core::discard_queued(Lane& lane, const char* reason) noexcept {
  std::uint64_t dropped = 0;
  for (auto& queue_ptr : lane.queues) {
    Queue& queue = *queue_ptr;
    // deliver_on_commit: only the consumer role's holder pops (help_consumers peeks, then
    // takes). Taken here while idle; while a commit holds it, the queue is left to
    // finish(), which waits for every commit first.
    Consumer* sharing = queue.role_shared ? queue.consumers.front() : nullptr;
    bool took_role = false;
    if (sharing != nullptr) {
      std::uint32_t holder = Consumer::kIdle;
      took_role = sharing->try_take_role(Consumer::kCommittingThread, &holder);
      if (!took_role && holder == Consumer::kCommittingThread) continue;
    }
    for (;;) {
      queue.evicting.fetch_add(1, std::memory_order_seq_cst);
      Batch* batch = queue.ring.try_pop();
      std::size_t k = 0;
      if (batch != nullptr) {
        k = batch->take[queue.flat];
        queue.occupancy.fetch_sub(k, std::memory_order_acq_rel);
        lane.counters->dropped.fetch_add(k, std::memory_order_relaxed);
      }
      queue.evicting.fetch_sub(1, std::memory_order_seq_cst);
      if (batch == nullptr) break;
      if (batch->tracker) batch->tracker->add(lane.index, SettlementTracker::Outcome::dropped, k);
      dropped += k;
      if (events::kEventDropped.enabled()) {
        for (std::size_t i = 0; i < batch->size; ++i) {
          if (batch->route_of(i, lane.index) != queue.index) continue;
          best_effort([&] {
            events::kEventDropped.execute({{"count", 1}},
                                          {{"event_name", batch->slots[i].name.str()},
                                           {"reason", reason},
                                           {"adapter", lane.name}});
          });
        }
      }
      shared_->release(batch);
      shared_->progress.notify();
    }
    if (took_role) sharing->give_role_back();
  }
  return dropped;
}

std::uint64_t Core::drop_unsettled(Lane& lane, const char* reason) noexcept {
  std::uint64_t dropped = 0;
  for (auto& consumer : lane.consumers) {
    if (!consumer->window) continue;
    std::vector<std::shared_ptr<DeliveryState>> open;
    try {
      std::lock_guard lock(consumer->window->mutex);
      open = consumer->window->open;
    } catch (...) {
      continue;  // out of memory: they stay unsettled (and in the window)
    }
    for (const auto& state : open) {
      dropped +=
          state->settle(DeliveryState::kAll, DeliveryState::Outcome::dropped, nullptr, reason);
    }
  }
  return dropped;
}

// ---- finish --------------------------------------------------------------------------------

void Core::finish() {
  std::lock_guard lock(finish_mutex_);
  if (phase_.load(std::memory_order_acquire) == Phase::finished) return;
  // Unbounded by design: an adapter call that never returns blocks here, as does a commit
  // stuck inside user code (interested, partition_by, a telemetry handler).
  wait_until(
      publishes_, [&] { return !publishes_in_flight(); }, Deadline::max());
  stop_relays();    // joined already unless shutdown never ran its phases
  clear_windows();  // no commit is under way and no relay runs: what they kept is released
  for (auto& lane : lanes_) {
    for (auto& consumer : lane->consumers) {
      if (consumer->thread.joinable()) consumer->thread.join();
      consumer->joined = true;
    }
  }
  for (auto& lane : lanes_) {
    (void)terminate_adapter(*lane, deadline_after(std::chrono::nanoseconds::zero()));
    // A consumer that came back after an abandoning shutdown may leave work behind.
    discard_queued(*lane, "shutdown");
    drop_unsettled(*lane, "shutdown");
    // Every consumer is joined: nobody decides failures any more. Deliveries that finish
    // from now on count theirs as dropped themselves.
    for (auto& consumer : lane->consumers) {
      std::lock_guard box_lock(consumer->retries->mutex);
      consumer->retries->wakeup = nullptr;
    }
    drop_retries(*lane, /*all=*/true, "shutdown");
  }
  if (dispatcher_) dispatcher_->join();
  // Let go of every adapter and handler: a Core kept alive by a thread's cache of the
  // default emitter or by a transaction must not keep sockets or files open.
  for (auto& lane : lanes_) {
    lane->async = nullptr;
    lane->adapter.reset();
  }
  dispatcher_lane_ = nullptr;
  dispatcher_.reset();
  // The spool's last checkpoint, its lock and files: the directory is free for the next
  // Emitter at once, even while trackers of late settlements still hold the object.
  if (spool_) spool_->close();
  phase_.store(Phase::finished, std::memory_order_release);
}

}  // namespace emissions::detail
