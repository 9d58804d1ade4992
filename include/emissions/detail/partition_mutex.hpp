// emissions/detail/partition_mutex.hpp: the lock of a BatchBuffer partition; not part of
// the API.
#pragma once

#include <atomic>
#include <cstdint>

#include "emissions/detail/cpu_relax.hpp"

namespace emissions::detail {

// The partition lock: inline uncontended lock/unlock (one atomic RMW each, no call into
// libc), a short spin when contended (critical sections are a few nanoseconds), then a
// futex wait through std::atomic::wait. Meets Lockable; waits use condition_variable_any.
// It also tells an inserter whether the lock is held by another inserter (round-robin then
// moves to another partition) or by a flusher, the timer or a reader (worth waiting for).
class PartitionMutex {
 public:
  void lock() noexcept {
    if (!acquire(kHeld)) [[unlikely]]
      lock_contended(kHeld);
  }
  bool try_lock() noexcept { return acquire(kHeld); }
  void unlock() noexcept {
    if (state_.exchange(kFree, std::memory_order_release) == kParked) [[unlikely]] {
      state_.notify_one();
    }
  }
  // lock() and try_lock() for inserts. On failure, `inserter` tells whether another insert
  // (or a waiter) holds the lock, rather than a flusher, the timer or a reader.
  void lock_insert() noexcept {
    if (!acquire(kInserting)) [[unlikely]]
      lock_contended(kInserting);
  }
  bool try_lock_insert(bool& inserter) noexcept {
    if (acquire(kInserting)) [[likely]]
      return true;
    inserter = state_.load(std::memory_order_relaxed) != kHeld;
    return false;
  }

 private:
  static constexpr std::uint32_t kFree = 0;
  static constexpr std::uint32_t kInserting = 1;  // held by an insert
  static constexpr std::uint32_t kParked = 2;     // held, and someone may be waiting
  static constexpr std::uint32_t kHeld = 3;       // held by anything else

  bool acquire(std::uint32_t as) noexcept {
    std::uint32_t expected = kFree;
    return state_.compare_exchange_strong(expected, as, std::memory_order_acquire,
                                          std::memory_order_relaxed);
  }
  void lock_contended(std::uint32_t as) noexcept {
    for (int spin = 0; spin < 100; ++spin) {
      if (state_.load(std::memory_order_relaxed) == kFree && acquire(as)) return;
      cpu_relax();
    }
    // Whoever takes the lock through here leaves it marked kParked, so that its unlock
    // wakes the next waiter.
    while (state_.exchange(kParked, std::memory_order_acquire) != kFree) {
      state_.wait(kParked, std::memory_order_relaxed);
    }
  }
  std::atomic<std::uint32_t> state_{kFree};
};

}  // namespace emissions::detail
