// Internal to src/spool/: the Spool's per-lane and per-commit state, shared by spool.cpp
// and spool_overflow.cpp.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "common/parking.hpp"
#include "emissions/settlement.hpp"
#include "spool/segment_log.hpp"
#include "spool/spool.hpp"

namespace emissions::detail::spool {

// A FIFO that keeps its storage: a ring that doubles when full and never shrinks (a
// std::deque frees and allocates a block every few entries, here on two threads: the commit
// path pushes, the lane's consumer pops). push_back may throw (std::bad_alloc) and then
// leaves the FIFO as it was; nothing else allocates.
template <typename T>
class Fifo {
 public:
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  // The i-th entry from the front, i < size().
  [[nodiscard]] T& operator[](std::size_t i) noexcept {
    return slots_[(head_ + i) & (slots_.size() - 1)];
  }
  [[nodiscard]] const T& operator[](std::size_t i) const noexcept {
    return slots_[(head_ + i) & (slots_.size() - 1)];
  }
  [[nodiscard]] T& front() noexcept { return (*this)[0]; }
  [[nodiscard]] const T& front() const noexcept { return (*this)[0]; }
  [[nodiscard]] T& back() noexcept { return (*this)[size_ - 1]; }
  void push_back(const T& value) {
    if (size_ == slots_.size()) grow();
    (*this)[size_] = value;
    ++size_;
  }
  void pop_front() noexcept {
    head_ = (head_ + 1) & (slots_.size() - 1);
    --size_;
  }
  void pop_back() noexcept { --size_; }

 private:
  void grow() {
    std::vector<T> bigger(std::max<std::size_t>(16, slots_.size() * 2));  // a power of two
    for (std::size_t i = 0; i < size_; ++i)
      bigger[i] = (*this)[i];
    slots_.swap(bigger);
    head_ = 0;
  }

  std::vector<T> slots_;
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

// One routed lane's progress: the commits its relay handed over and not yet settled, in
// log order, and the cursor after the last one. Its position is the first unsettled one.
struct Spool::Track {
  struct Entry {
    LogPosition at;
    bool settled = false;
  };
  std::string name;
  LogPosition start;
  mutable std::mutex mutex;
  Fifo<Entry> in_flight;  // guarded by mutex
  LogPosition next;       // guarded by mutex
  // One past the last commit the relay or the commit path claimed for the lane (published()
  // or handed_over_live(), less a withdraw()), guarded by mutex. A claimed commit stays the
  // lane's to settle even once it has settled and left in_flight before `next` caught up
  // with it (the relay calls handed_over() after the lane may already have settled it): a
  // reclaim must not count it dropped too.
  std::uint64_t claimed_upto = 0;
  // Live handoff: written under Spool::append_mutex_; `live` read by the relay without it.
  std::atomic<bool> live{false};
  bool started_live = false;  // set at open, before any thread reads it
  LogPosition resume;
  WaitChannel wake;
  // A full spool reclaimed every commit before `fence` for this lane (drop_oldest): its
  // relay hands none of them over. Guarded by mutex; fence_seq mirrors fence.seq for the
  // relay's check without the lock.
  LogPosition fence{0, 0, 0};
  std::atomic<std::uint64_t> fence_seq{0};

  [[nodiscard]] LogPosition position() const {  // with mutex held
    return in_flight.empty() ? next : in_flight.front().at;
  }
};

struct Spool::Pending {
  std::function<void(const Settlement&)> callback;
  Settlement settlement;
  std::size_t remaining = 0;

  // Runs the callback (user code: no lock may be held), marked as a settlement callback
  // (thread_role.hpp); an exception from it is swallowed.
  void run_callback() noexcept;
};

}  // namespace emissions::detail::spool
