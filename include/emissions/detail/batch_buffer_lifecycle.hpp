// emissions/detail/batch_buffer_lifecycle.hpp: BatchBufferCore<T>'s threads: construction,
// shutdown, joining, and waking the waits after a jump of the clock. Not part of the API;
// included by emissions/batch_buffer.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "emissions/batch_buffer.hpp"
#include "emissions/detail/batch_buffer_core.hpp"

namespace emissions::detail {

template <typename T>
BatchBufferCore<T>::BatchBufferCore(BatchBufferOptions<T> options, Flush on_flush)
    : settings_(checked_settings(
          {std::move(options.name), options.partitions, options.max_size, options.max_size_jitter,
           options.flush_interval, options.flush_jitter, options.flush_timeout,
           options.insert_timeout, std::move(options.flush_meta), std::move(options.clock)},
          static_cast<bool>(on_flush))),
      partition_by_(std::move(options.partition_by)),
      flush_(std::move(on_flush)),
      clock_(settings_.clock.get()),
      timer_(settings_) {
  constexpr std::size_t kReserveBytes = std::size_t{1} << 20;
  reserve_ = std::min(settings_.max_size + settings_.max_size_jitter,
                      std::max<std::size_t>(1, kReserveBytes / sizeof(T)));
  id_ = next_batch_buffer_id();
  n_ = settings_.partitions;
  round_robin_ = !partition_by_ && n_ > 1;

  parts_.reserve(n_);
  for (std::size_t i = 0; i < n_; ++i) {
    auto p = std::make_unique<Partition>(timer_.draw_seed());
    p->limit = settings_.max_size + p->size_rng.upto(settings_.max_size_jitter);
    p->items.reserve(reserve_);
    p->spare.reserve(reserve_);
    p->waiters.reserve(4);
    parts_.push_back(std::move(p));
  }
  subscription_ = clock_->subscribe([this] { wake_all(); });
  flushers_.reserve(n_);
  try {
    for (std::size_t i = 0; i < n_; ++i)
      flushers_.emplace_back([this, i] { run_flusher(i); });
    timer_.start(
        {.interval_due = [this](std::size_t i) { request_flush(*parts_[i]); },
         .flush_overdue = [this](std::size_t i, std::uint64_t batch) { flush_overdue(i, batch); }});
  } catch (...) {
    for (auto& p : parts_) {
      Lock lock(p->mu);
      p->closed = true;
      p->flusher_cv.notify_all();
    }
    join_threads();
    throw;
  }
  // Return once every flusher is parked, so that none holds its partition's lock while the
  // first inserts arrive (a round-robin insert moves away from a locked partition).
  for (auto& p : parts_) {
    Lock lock(p->mu);
    p->changed_cv.wait(lock, [&] { return p->started; });
  }
}

template <typename T>
BatchBufferCore<T>::~BatchBufferCore() {
  (void)shutdown(Deadline::max());
  subscription_.reset();
}

template <typename T>
Status BatchBufferCore<T>::shutdown(Deadline deadline) {
  std::lock_guard guard(shutdown_mu_);
  if (joined_) return {};
  for (auto& p : parts_) {
    {
      Lock lock(p->mu);
      p->closed = true;
    }
    p->flusher_cv.notify_all();
    p->changed_cv.notify_all();  // waiting inserts return closed
  }
  note_room();
  BatchBacklog left;
  for (auto& p : parts_) {
    Lock lock(p->mu);
    if (wait_until(lock, p->changed_cv, deadline, [&] { return p->exited; })) continue;
    const std::size_t in_flight = p->busy ? p->slot_end - p->slot_base : 0;
    ++left.partitions;
    left.pending += p->items.size() + in_flight;
    left.in_flight += in_flight;
  }
  if (left.partitions != 0) return batch_shutdown_timeout_status(settings_, left);
  join_threads();
  joined_ = true;
  return {};
}

template <typename T>
void BatchBufferCore<T>::join_threads() {
  for (auto& t : flushers_)
    if (t.joinable()) t.join();
  timer_.stop();
}

// Called by the clock after a manual advance: every clock-bounded wait re-checks its deadline.
template <typename T>
void BatchBufferCore<T>::wake_all() {
  timer_.wake();
  for (auto& p : parts_) {
    { std::lock_guard lock(p->mu); }  // a waiter is either before its check or waiting
    p->changed_cv.notify_all();
  }
  { std::lock_guard lock(room_mu_); }
  room_cv_.notify_all();
}

}  // namespace emissions::detail
