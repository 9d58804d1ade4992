// emissions/detail/batch_buffer_flush.hpp: BatchBufferCore<T>'s flushing: hand-offs, flush
// requests, sync_flush, dump, the flusher loop and the timer's reports. Not part of the API;
// included by emissions/batch_buffer.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "emissions/batch_buffer.hpp"
#include "emissions/detail/batch_buffer_core.hpp"
#include "emissions/telemetry.hpp"

namespace emissions::detail {

// Hands up to `limit` items to the flusher (all of them when splitting an over-full batch
// runs out of memory). Needs: partition locked, not busy, not empty.
template <typename T>
void BatchBufferCore<T>::take_batch(Partition& p) {
  std::size_t n = std::min(p.items.size(), p.limit);
  p.slot.clear();
  p.slot.swap(p.items);
  p.items.swap(p.spare);    // O(1): the spare was reserved by the flusher
  if (p.slot.size() > n) {  // over-full (insert_batch): the rest opens the next batch
    try {
      move_append(p.items, p.slot, n);
      while (p.slot.size() > n)
        p.slot.pop_back();
    } catch (const std::bad_alloc&) {
      n = p.slot.size();  // cannot split it: flush it whole rather than fail
    }
  }
  p.slot_base = p.pos_items;
  p.slot_end = p.pos_items + n;
  p.pos_items += n;
  p.busy = true;
  p.limit = settings_.max_size + p.size_rng.upto(settings_.max_size_jitter);
}

// Completes the sync_flush() callers whose items have all left the partition.
template <typename T>
void BatchBufferCore<T>::resolve_waiters(Partition& p) {
  const std::uint64_t earliest = p.busy ? p.slot_base : p.pos_items;
  std::erase_if(p.waiters, [&](SyncWaiter* w) {
    if (earliest < w->target) return false;
    w->done = true;
    return true;
  });
}

// Asks the partition's flusher for what it holds now (by flush(), or the timer's interval).
template <typename T>
void BatchBufferCore<T>::request_flush(Partition& p) {
  bool wake = false;
  {
    Lock lock(p.mu);
    if (p.items.empty()) return;
    p.flush_through = std::max(p.flush_through, p.pos_items + p.items.size());
    wake = !p.busy;
  }
  if (wake) p.flusher_cv.notify_one();
}

template <typename T>
void BatchBufferCore<T>::flush() {
  for (auto& p : parts_)
    request_flush(*p);
}

template <typename T>
std::vector<Status> BatchBufferCore<T>::sync_flush(Deadline deadline) {
  const std::size_t n = parts_.size();
  std::vector<Status> results(n);
  std::vector<SyncWaiter> waiters(n);  // never resized: partitions point into it
  std::vector<bool> waiting(n, false);
  for (std::size_t i = 0; i < n; ++i) {
    Partition& p = *parts_[i];
    bool wake = false;
    {
      Lock lock(p.mu);
      const std::uint64_t target = p.pos_items + p.items.size();
      const std::uint64_t earliest = p.busy ? p.slot_base : p.pos_items;
      if (p.closed) {
        results[i] = batch_closed_status(settings_);
      } else if (earliest >= target) {
        continue;  // nothing to flush: ok
      } else if (p.stuck) {
        results[i] = batch_flush_timeout_status(settings_, i);
      } else {
        p.flush_through = std::max(p.flush_through, target);
        waiters[i].target = target;
        p.waiters.push_back(&waiters[i]);
        waiting[i] = true;
        wake = !p.busy;
      }
    }
    if (wake) p.flusher_cv.notify_one();
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (!waiting[i]) continue;
    Partition& p = *parts_[i];
    Lock lock(p.mu);
    // Also bounded by flush_timeout: a flush that runs past it completes its waiters with
    // timeout.
    if (wait_until(lock, p.changed_cv, deadline, [&] { return waiters[i].done; })) {
      results[i] = std::move(waiters[i].result);
      continue;
    }
    std::erase(p.waiters, &waiters[i]);  // it points into this frame
    const std::uint64_t target = waiters[i].target;
    const std::uint64_t earliest = p.busy ? p.slot_base : p.pos_items;  // < target: not done
    BatchBacklog left{.partitions = 1, .pending = static_cast<std::size_t>(target - earliest)};
    if (p.busy) left.in_flight = static_cast<std::size_t>(std::min(p.slot_end, target) - earliest);
    results[i] = batch_deadline_status(settings_, i, left);
  }
  return results;
}

template <typename T>
std::vector<T> BatchBufferCore<T>::dump() {
  std::vector<T> out;
  for (auto& p : parts_) {
    {
      Lock lock(p->mu);
      if (p->items.empty()) continue;
      move_append(out, p->items, 0);
      p->pos_items += p->items.size();
      p->items.clear();
      resolve_waiters(*p);
    }
    p->changed_cv.notify_all();
  }
  note_room();
  return out;
}

template <typename T>
std::size_t BatchBufferCore<T>::size() const {
  std::size_t total = 0;
  for (const auto& p : parts_) {
    Lock lock(p->mu);
    total += p->items.size();
  }
  return total;
}

template <typename T>
std::vector<BatchBufferPartitionInfo> BatchBufferCore<T>::info() const {
  std::vector<BatchBufferPartitionInfo> out(parts_.size());
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i].next_flush = timer_.next_flush(i);
    const Partition& p = *parts_[i];
    Lock lock(parts_[i]->mu);
    out[i].partition = i;
    out[i].size = p.items.size();
    out[i].in_flight = p.busy ? static_cast<std::size_t>(p.slot_end - p.slot_base) : 0;
    out[i].flush_count = p.flush_count;
    out[i].last_flush = p.last_flush;
    out[i].flushing = p.busy;
  }
  return out;
}

// One per partition: waits for a handed-off batch or a flush request, flushes with no lock
// held, and exits once the partition is closed and empty.
template <typename T>
void BatchBufferCore<T>::run_flusher(std::size_t i) {
  Partition& p = *parts_[i];
  Lock lock(p.mu);
  p.started = true;
  p.changed_cv.notify_all();  // the constructor gets the lock once this thread waits below
  for (;;) {
    p.flusher_cv.wait(lock, [&] {
      return p.busy || p.closed ||
             (!p.items.empty() && (p.flush_through > p.pos_items || !has_room(p)));
    });
    if (!p.busy) {
      if (p.items.empty()) break;  // closed and drained
      take_batch(p);
    }
    std::vector<T> batch;
    batch.swap(p.slot);
    const std::uint64_t base = p.slot_base;
    const std::uint64_t number = ++p.batches_started;
    lock.unlock();

    const Status status = run_flush(i, number, batch);
    // Keep the batch's capacity for the next hand-off unless the callable took it.
    batch.clear();
    if (batch.capacity() < reserve_) {
      std::vector<T>().swap(batch);
      try {
        batch.reserve(reserve_);
      } catch (const std::bad_alloc&) {  // the next batch then grows as it fills
      }
    }

    lock.lock();
    p.busy = false;
    p.stuck = false;
    ++p.flush_count;
    p.last_flush = clock_->now();
    for (SyncWaiter* w : p.waiters)
      if (base < w->target) w->result.update(status);
    resolve_waiters(p);
    if (p.spare.capacity() < reserve_) p.spare.swap(batch);
    if (!p.items.empty() && (p.flush_through > p.pos_items || !has_room(p) || p.closed)) {
      take_batch(p);
    }
    p.changed_cv.notify_all();
    note_room();  // lock order: a partition's mu, then room_mu_
  }
  p.exited = true;
  lock.unlock();
  p.changed_cv.notify_all();
}

// Calls the flush callable under the timer's watch; exceptions become Errc::internal.
template <typename T>
Status BatchBufferCore<T>::run_flush(std::size_t i, std::uint64_t batch, std::vector<T>& items) {
  const std::size_t n = items.size();
  const std::int64_t start_ns = telemetry::detail::monotonic_ns();
  timer_.flush_started(i, batch, n, start_ns);
  if (telemetry::enabled()) batch_flush_start(settings_, i, n, start_ns);

  Status status;
  bool threw = false;
  std::string failure;
  try {
    status = flush_(std::move(items), FlushContext{settings_.name, i, n, settings_.flush_meta});
  } catch (...) {
    threw = true;
    failure = describe_exception(std::current_exception());
    status = Status(Errc::internal, "flush threw: " + failure);
  }

  const bool timed_out = timer_.flush_finished(i);
  if (telemetry::enabled()) {
    if (threw) {
      batch_flush_exception(settings_, i, n, start_ns, "exception", failure);
    } else {
      batch_flush_stop(settings_, i, n, start_ns, status, timed_out);
    }
  }
  return status;
}

// The timer found flush number `batch` of partition i still running past flush_timeout:
// its sync_flush() callers get timeout now, and later ones at once, until it returns.
template <typename T>
void BatchBufferCore<T>::flush_overdue(std::size_t i, std::uint64_t batch) {
  Partition& p = *parts_[i];
  {
    Lock lock(p.mu);
    if (p.busy && p.batches_started == batch) {
      p.stuck = true;
      const Status timeout = batch_flush_timeout_status(settings_, i);
      for (SyncWaiter* w : p.waiters) {
        w->result.update(timeout);
        w->done = true;
      }
      p.waiters.clear();
    }
  }
  p.changed_cv.notify_all();
}

}  // namespace emissions::detail
