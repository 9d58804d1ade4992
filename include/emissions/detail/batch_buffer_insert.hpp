// emissions/detail/batch_buffer_insert.hpp: BatchBufferCore<T>'s insert paths: the inline
// fast path, round-robin cursors, contention, full partitions, insert_batch. Not part of
// the API; included by emissions/batch_buffer.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "emissions/batch_buffer.hpp"
#include "emissions/detail/batch_buffer_core.hpp"
#include "emissions/telemetry.hpp"

namespace emissions::detail {

template <typename T>
RoundRobinCursor& BatchBufferCore<T>::cursor() noexcept {
  RoundRobinCursor& c = t_round_robin[id_ % kRoundRobinSlots];
  if (c.owner != id_) [[unlikely]]
    reseed(c);  // this thread's first insert (or a slot collision)
  return c;
}

template <typename T>
void BatchBufferCore<T>::reseed(RoundRobinCursor& c) noexcept {
  c.owner = id_;
  c.current = round_robin_seed_.fetch_add(1, std::memory_order_relaxed) % n_;
  c.expected = kAnySize;
}

template <typename T>
void BatchBufferCore<T>::continue_run(std::size_t i, bool handed_off) noexcept {
  RoundRobinCursor& c = cursor();
  c.current = !handed_off ? i : (i + 1 == n_ ? 0 : i + 1);
  c.expected = kAnySize;
}

// The hot path: pick, lock, append, unlock. Everything else is out of line.
template <typename T>
template <typename U>
Status BatchBufferCore<T>::insert_one(U&& item) {
  RoundRobinCursor* c = round_robin_ ? &cursor() : nullptr;
  std::size_t i = 0;
  if (c != nullptr) {
    i = c->current;
  } else if (n_ > 1) {
    i = static_cast<std::size_t>(partition_by_(item) % n_);
  }
  if (telemetry::enabled()) [[unlikely]]
    return insert_traced(c, i, std::forward<U>(item));
  return insert_into(c, i, std::forward<U>(item));
}

// `c` is this thread's round-robin cursor, or null (partition_by, or one partition).
template <typename T>
template <typename U>
Status BatchBufferCore<T>::insert_into(RoundRobinCursor* c, std::size_t i, U&& item) {
  Partition& p = *parts_[i];
  bool inserter = false;
  if (!p.mu.try_lock_insert(inserter)) [[unlikely]]
    return insert_contended(c, i, inserter, std::forward<U>(item));
  Lock lock(p.mu, std::adopt_lock);
  // Round-robin: if another thread inserted here since this one did, leave it the partition
  // (without adding to it, so that the other thread sees no change and stays).
  if (c != nullptr && c->expected != p.items.size() && c->expected != kAnySize) [[unlikely]] {
    lock.unlock();
    return insert_contended(c, i, true, std::forward<U>(item));
  }
  return append_one(c, i, lock, std::forward<U>(item));
}

// With partition i locked: appends, or hands over to the blocking paths when it is full.
template <typename T>
template <typename U>
Status BatchBufferCore<T>::append_one(RoundRobinCursor* c, std::size_t i, Lock& lock, U&& item) {
  Partition& p = *parts_[i];
  if (!has_room(p) || p.closed) [[unlikely]]
    return insert_blocked(i, lock, std::forward<U>(item));
  p.items.push_back(std::forward<U>(item));
  if (c != nullptr) c->expected = p.items.size();
  if (!has_room(p) && !p.busy) [[unlikely]] {
    hand_off(p, lock);
    if (c != nullptr) continue_run(i, true);  // filled a batch: on to the next partition
  }
  return {};
}

// Partition i's lock was taken (by another insert when `inserter`), or round-robin left it.
template <typename T>
template <typename U>
Status BatchBufferCore<T>::insert_contended(RoundRobinCursor* c, std::size_t i, bool inserter,
                                            U&& item) {
  if (c != nullptr && inserter) {
    // Round-robin: take the first partition that no insert holds, rather than share one
    // (back to partition i, waiting, if every one is held).
    std::size_t k = 1;
    for (; k < n_; ++k) {
      const std::size_t j = (i + k) % n_;
      if (parts_[j]->mu.try_lock_insert(inserter)) {
        i = j;
        break;
      }
    }
    if (k == n_) parts_[i]->mu.lock_insert();
    continue_run(i, false);
  } else {
    parts_[i]->mu.lock_insert();  // keyed, or a flusher's brief hold: wait for it
  }
  Lock lock(parts_[i]->mu, std::adopt_lock);
  return append_one(c, i, lock, std::forward<U>(item));
}

template <typename T>
template <typename U>
Status BatchBufferCore<T>::insert_traced(RoundRobinCursor* c, std::size_t i, U&& item) {
  const std::int64_t start_ns = telemetry::detail::monotonic_ns();
  batch_insert_start(settings_, i, 1, start_ns);
  Status status = insert_into(c, i, std::forward<U>(item));
  batch_insert_stop(settings_, i, 1, start_ns, status);
  return status;
}

// Partition i was full or closed.
template <typename T>
template <typename U>
Status BatchBufferCore<T>::insert_blocked(std::size_t i, Lock& lock, U&& item) {
  if (!round_robin_) return insert_waiting(i, lock, std::forward<U>(item));
  Partition& p = *parts_[i];
  if (!p.closed && p.busy) {
    // The running flush will make room, often as soon as its flusher gets a CPU: give it a
    // moment (yielding this one) before spreading into partitions other threads may be
    // filling. Real time on purpose: this is a scheduling grace, not part of the contract.
    p.changed_cv.wait_for(lock, kSpillGrace, [&] { return p.closed || has_room(p) || !p.busy; });
    if (!p.closed && !has_room(p) && !p.busy) {
      take_batch(p);
      p.flusher_cv.notify_one();
    }
    if (!p.closed && has_room(p)) {
      continue_run(i, push(p, lock, std::forward<U>(item)));
      return {};
    }
  }
  lock.unlock();
  return insert_anywhere(i + 1 == n_ ? 0 : i + 1,
                         [&](std::size_t q, Partition& part, Lock& q_lock) {
                           continue_run(q, push(part, q_lock, std::forward<U>(item)));
                         });
}

// Appends to a partition with room; a batch that becomes full goes to the flusher at once.
template <typename T>
template <typename U>
bool BatchBufferCore<T>::push(Partition& p, Lock& lock, U&& item) {
  p.items.push_back(std::forward<U>(item));
  if (has_room(p) || p.busy) return false;
  hand_off(p, lock);
  return true;
}

template <typename T>
void BatchBufferCore<T>::hand_off(Partition& p, Lock& lock) {
  take_batch(p);
  lock.unlock();
  p.flusher_cv.notify_one();
}

// One partition (keyed, or the only one): waits on it until it has room.
template <typename T>
template <typename U>
Status BatchBufferCore<T>::insert_waiting(std::size_t i, Lock& lock, U&& item) {
  Partition& p = *parts_[i];
  std::optional<Clock::time_point> deadline;
  for (;;) {
    if (p.closed) return batch_closed_status(settings_);
    if (!has_room(p) && !p.busy) {
      take_batch(p);
      p.flusher_cv.notify_one();
    }
    if (has_room(p)) {
      push(p, lock, std::forward<U>(item));
      return {};
    }
    if (!deadline) deadline = add_saturating(clock_->now(), settings_.insert_timeout);
    const bool ready = clock_->wait_until(lock, p.changed_cv, *deadline,
                                          [&] { return p.closed || has_room(p) || !p.busy; });
    if (!ready) return batch_insert_timeout_status(settings_, i);
  }
}

// Round-robin: any partition will do. Takes the first with room, starting at `first`;
// when all are full, waits until one of them makes room (room_epoch_ moves).
template <typename T>
template <typename Place>
Status BatchBufferCore<T>::insert_anywhere(std::size_t first, Place&& place) {
  const std::size_t n = parts_.size();
  std::optional<Clock::time_point> deadline;
  std::optional<std::uint64_t> seen;
  for (;;) {
    for (std::size_t k = 0; k < n; ++k) {
      Partition& q = *parts_[(first + k) % n];
      q.mu.lock_insert();
      Lock lock(q.mu, std::adopt_lock);
      if (q.closed) return batch_closed_status(settings_);
      if (!has_room(q) && !q.busy) {
        take_batch(q);
        q.flusher_cv.notify_one();
      }
      if (has_room(q)) {
        place((first + k) % n, q, lock);
        return {};
      }
    }
    if (!seen) {  // read the epoch, then scan once more, so that no freed room is missed
      std::lock_guard lock(room_mu_);
      seen = room_epoch_;
      continue;
    }
    if (!deadline) deadline = add_saturating(clock_->now(), settings_.insert_timeout);
    std::unique_lock<std::mutex> lock(room_mu_);
    if (!clock_->wait_until(lock, room_cv_, *deadline, [&] { return room_epoch_ != *seen; })) {
      return batch_insert_timeout_status(settings_, first);
    }
    seen = room_epoch_;
  }
}

// Tells round-robin inserts waiting in insert_anywhere to look again.
template <typename T>
void BatchBufferCore<T>::note_room() {
  if (!round_robin_) return;
  {
    std::lock_guard lock(room_mu_);
    ++room_epoch_;
  }
  room_cv_.notify_all();
}

template <typename T>
bool BatchBufferCore<T>::append_group(Partition& p, std::vector<T>& group) {
  move_append(p.items, group, 0);
  if (has_room(p) || p.busy) return false;
  take_batch(p);
  p.flusher_cv.notify_one();
  return true;
}

template <typename T>
Status BatchBufferCore<T>::insert_batch(std::vector<T> items) {
  if (items.empty()) return {};
  const std::size_t n = parts_.size();
  const std::size_t count = items.size();
  std::vector<Group> groups;
  std::vector<std::vector<T>> split;
  std::optional<std::size_t> first;  // the partition, when the batch goes to one
  if (round_robin_) {
    first = cursor().current;
  } else if (n == 1) {
    first = 0;
    groups.push_back({0, &items});
  } else {
    std::vector<std::size_t> target(count);
    for (std::size_t k = 0; k < count; ++k)
      target[k] = partition_by_(items[k]) % n;
    if (std::all_of(target.begin(), target.end(), [&](std::size_t t) { return t == target[0]; })) {
      first = target[0];
      groups.push_back({target[0], &items});
    } else {
      split.resize(n);
      for (std::size_t k = 0; k < count; ++k)
        split[target[k]].push_back(std::move(items[k]));
      for (std::size_t j = 0; j < n; ++j)
        if (!split[j].empty()) groups.push_back({j, &split[j]});
    }
  }
  const bool traced = telemetry::enabled();
  std::int64_t start_ns = 0;
  if (traced) [[unlikely]] {
    start_ns = telemetry::detail::monotonic_ns();
    batch_insert_start(settings_, first, count, start_ns);
  }
  Status status;
  if (round_robin_) {
    status = insert_anywhere(*first, [&](std::size_t q, Partition& part, Lock&) {
      continue_run(q, append_group(part, items));
    });
  } else {
    status = insert_groups(groups);
  }
  if (traced) [[unlikely]]
    batch_insert_stop(settings_, first, count, start_ns, status);
  return status;
}

// All-or-nothing: locks the target partitions in index order (no lock-order cycles), and
// appends only when none of them is full. Otherwise waits on the first full one.
template <typename T>
Status BatchBufferCore<T>::insert_groups(std::vector<Group>& groups) {
  std::optional<Clock::time_point> deadline;
  std::vector<Lock> locks;
  locks.reserve(groups.size());
  for (;;) {
    locks.clear();
    std::size_t blocked = groups.size();
    for (std::size_t g = 0; g < groups.size(); ++g) {
      Partition& p = *parts_[groups[g].partition];
      locks.emplace_back(p.mu);
      if (p.closed) return batch_closed_status(settings_);
      if (!has_room(p) && !p.busy) {
        take_batch(p);
        p.flusher_cv.notify_one();
      }
      if (!has_room(p)) {
        blocked = g;
        break;
      }
    }
    if (blocked == groups.size()) {
      // Reserve everywhere first: a bad_alloc then leaves every partition unchanged.
      for (const Group& g : groups) {
        Partition& p = *parts_[g.partition];
        p.items.reserve(p.items.size() + g.items->size());
      }
      for (const Group& g : groups)
        append_group(*parts_[g.partition], *g.items);
      return {};
    }
    const std::size_t i = groups[blocked].partition;
    Partition& p = *parts_[i];
    Lock lock = std::move(locks[blocked]);
    locks.clear();
    if (!deadline) deadline = add_saturating(clock_->now(), settings_.insert_timeout);
    const bool ready = clock_->wait_until(lock, p.changed_cv, *deadline,
                                          [&] { return p.closed || has_room(p) || !p.busy; });
    if (!ready) return batch_insert_timeout_status(settings_, i);
  }
}

}  // namespace emissions::detail
