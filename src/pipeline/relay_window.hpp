// Internal: a spool lane's in-memory window (src/pipeline/spool_relay.cpp). A commit that a
// lane does not take at commit time (it is behind, or its queue is full) stays referenced
// here, with how many events each of the lane's queues takes, so that the lane's relay hands
// it over without reading it back from the log. Reading back costs a relay about what the
// commit cost its producer, so a relay that reads every commit may never catch up with a
// steady producer; from the window it catches up and the lane goes live again.
//
// Bounded: at most `capacity_entries` commits and `capacity_events` events (the lane's
// buffer size). A commit that does not fit is not kept (its relay reads it from the log):
// the window holds the oldest commits the relay has not reached, so that a relay reading a
// gap from the log reaches them, rather than the newest, which would move away from it.
//
// Thread-safety: one adder (the commit path, under the spool's append lock) and one taker
// (the lane's relay); `mutex` guards the published range [head, tail). A slot is prepared
// at `tail` before it is published, by the adder alone.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <vector>

#include "common/parking.hpp"
#include "pipeline/batch.hpp"

namespace emissions::detail {

class RelayWindow {
 public:
  struct Entry {
    std::uint64_t seq = 0;
    Batch* batch = nullptr;  // one reference, the window's
    std::uint32_t events = 0;
  };

  RelayWindow(std::size_t queues, std::size_t capacity_entries, std::size_t capacity_events)
      : queues_(queues),
        entries_(capacity_entries),
        takes_(capacity_entries * queues),
        capacity_events_(capacity_events) {}

  // Adder: whether a commit of `events` events fits now. Room only grows until the adder
  // publishes (the taker only removes).
  [[nodiscard]] bool fits(std::size_t events) {
    std::lock_guard lock(mutex_);
    return count_ < entries_.size() && events_ + events <= capacity_events_;
  }
  // Adder, after fits(): the takes of the lane's queues for the next entry (queues() of them,
  // in the lane's queue order), not visible to the taker yet.
  [[nodiscard]] std::uint32_t* prepare() {
    std::lock_guard lock(mutex_);
    return &takes_[tail_locked() * queues_];
  }
  // Adder: publishes the prepared entry (the batch's reference is the window's from now on).
  void publish(const Entry& entry) {
    std::lock_guard lock(mutex_);
    entries_[tail_locked()] = entry;
    ++count_;
    events_ += entry.events;
  }

  // Adder: whether the taker reads the window's first commit soon: it is working (reading
  // the log or taking from the window, not parked, not waiting for room in its queues or
  // for a lock), and it hands over from the window or reads a gap before it no longer than
  // the window (a gap of more is a backlog: the commit path does not wait for that).
  [[nodiscard]] bool taker_near() {
    if (!taker_working_.load(std::memory_order_seq_cst)) return false;
    std::lock_guard lock(mutex_);
    return count_ != 0 &&
           relay_next_.load(std::memory_order_relaxed) + entries_.size() >= entries_[head_].seq;
  }
  // Taker: the commit it reads next (set before each take()), and so it is working.
  void taker_at(std::uint64_t seq) noexcept {
    relay_next_.store(seq, std::memory_order_relaxed);
    taker_working_.store(true, std::memory_order_seq_cst);
  }
  // Taker: about to wait (parked, for room in its lane's queues, for the append lock):
  // commits must not wait for it meanwhile.
  void taker_waits() noexcept { taker_working_.store(false, std::memory_order_seq_cst); }
  // Adder: a wait for room timed out: no more waits for a while (whatever kept the taker
  // from freeing room may go on; the commit path must not be slowed by it for long).
  [[nodiscard]] bool may_wait(std::chrono::steady_clock::time_point now) const noexcept {
    return now.time_since_epoch().count() >= no_wait_until_.load(std::memory_order_relaxed);
  }
  void wait_timed_out(std::chrono::steady_clock::time_point until) noexcept {
    no_wait_until_.store(until.time_since_epoch().count(), std::memory_order_relaxed);
  }
  // The same for the commit path's waits for room in the lane's queues while the lane is
  // live (Core::await_live_room), paused separately: once the lane fell behind, the window's
  // waits are what bring its relay back. Any thread.
  [[nodiscard]] bool may_wait_live(std::chrono::steady_clock::time_point now) const noexcept {
    return now.time_since_epoch().count() >= no_live_wait_until_.load(std::memory_order_relaxed);
  }
  void live_wait_timed_out(std::chrono::steady_clock::time_point until) noexcept {
    no_live_wait_until_.store(until.time_since_epoch().count(), std::memory_order_relaxed);
  }
  // The taker cannot take (no memory for its scratch): nothing fits from now on.
  void disable() {
    std::lock_guard lock(mutex_);
    capacity_events_ = 0;
  }
  // Notified whenever entries leave.
  WaitChannel room;

  // Taker: drops (into `stale`, to be released by the caller without the lock) the entries
  // before `seq`; then, if the first one is `seq`, moves it out with its takes (copied into
  // `takes`, queues() of them) and returns true.
  bool take(std::uint64_t seq, Entry& out, std::uint32_t* takes, std::vector<Batch*>& stale) {
    std::lock_guard lock(mutex_);
    while (count_ != 0 && entries_[head_].seq < seq) {
      stale.push_back(entries_[head_].batch);
      pop_locked();
    }
    if (count_ == 0 || entries_[head_].seq != seq) {
      if (!stale.empty()) room.notify();
      return false;
    }
    out = entries_[head_];
    for (std::size_t q = 0; q < queues_; ++q)
      takes[q] = takes_[head_ * queues_ + q];
    pop_locked();
    room.notify();
    return true;
  }
  // Taker, or once no adder or taker runs: every entry, to be released by the caller.
  void clear(std::vector<Batch*>& stale) {
    std::lock_guard lock(mutex_);
    while (count_ != 0) {
      stale.push_back(entries_[head_].batch);
      pop_locked();
    }
    room.notify();
  }

  [[nodiscard]] std::size_t queues() const noexcept { return queues_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return entries_.size(); }

 private:
  // The slot after the last published entry: entries leave only at the head, which keeps
  // head_ + count_ (and so this slot) where it is until the adder publishes, and fits() said
  // the slot is free.
  [[nodiscard]] std::size_t tail_locked() const noexcept {
    return (head_ + count_) % entries_.size();
  }
  void pop_locked() noexcept {
    events_ -= entries_[head_].events;
    entries_[head_] = Entry{};
    head_ = (head_ + 1) % entries_.size();
    --count_;
  }

  const std::size_t queues_;
  std::mutex mutex_;
  std::vector<Entry> entries_;        // a ring: [head_, head_ + count_)
  std::vector<std::uint32_t> takes_;  // entries_.size() * queues_, by slot
  std::size_t capacity_events_;       // guarded by mutex_
  std::size_t head_ = 0;              // guarded by mutex_
  std::size_t count_ = 0;             // guarded by mutex_
  std::size_t events_ = 0;            // guarded by mutex_
  std::atomic<std::uint64_t> relay_next_{0};
  std::atomic<bool> taker_working_{false};
  // steady_clock ticks; see may_wait and may_wait_live
  std::atomic<std::chrono::steady_clock::rep> no_wait_until_{0};
  std::atomic<std::chrono::steady_clock::rep> no_live_wait_until_{0};
};

}  // namespace emissions::detail
