// Internal: parking threads on a 32-bit word (Linux futex), and the CPU's spin-wait hint
// (cpu_relax, defined in emissions/detail/cpu_relax.hpp).
//
// The library never busy-waits without bound: a waiting thread polls briefly, then parks
// here until another thread changes the word and wakes it (see wait.hpp for the helper
// that every deadline-bounded wait goes through).
#pragma once

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "emissions/detail/cpu_relax.hpp"  // cpu_relax(), shared with the public headers

namespace emissions::detail {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));

// Sleeps while `word == expected`, at most `timeout` (negative: no limit). May return
// spuriously: callers re-check their condition. True when a FUTEX_WAKE woke it (or, rarely,
// spuriously); false when it did not sleep, timed out or was interrupted.
inline bool park(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                 std::chrono::nanoseconds timeout = std::chrono::nanoseconds(-1)) noexcept {
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout.count() >= 0) {
    ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
    tsp = &ts;
  }
  return syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected,
                 tsp, nullptr, 0) == 0;
}

// Wakes at most `count` threads parked on `word`; returns how many it woke.
inline int unpark(std::atomic<std::uint32_t>& word, int count = INT_MAX) noexcept {
  const long woken = syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE,
                             count, nullptr, nullptr, 0);
  return woken > 0 ? static_cast<int>(woken) : 0;
}

// A wake-up channel for "something changed" notifications with any number of waiters:
//   waiter:   auto t = ch.prepare(); if (!condition()) ch.wait(t, timeout); ch.done();
//   notifier: make condition true; ch.notify();
// notify() costs one load when nobody waits, and makes the futex call only when a waiter
// is parked (or about to park) and not already woken: a waiter woken by one notify() and
// not yet running costs the next notify() nothing (settlements streaming in from another
// thread would otherwise make one futex call each until it runs).
class WaitChannel {
 public:
  std::uint32_t prepare() noexcept {
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    return epoch_.load(std::memory_order_seq_cst);
  }
  void wait(std::uint32_t token, std::chrono::nanoseconds timeout) noexcept {
    // Counted before the futex reads the epoch: a notify() that bumps the epoch after this
    // either sees the count (and wakes) or came after it and the futex call returns at once.
    parked_.fetch_add(1, std::memory_order_seq_cst);
    // Woken by a FUTEX_WAKE: the waker took this one off `parked_`. Otherwise (did not
    // sleep, timed out, interrupted) it takes itself off. A rare spurious wake-up leaves the
    // count one high: later notify() calls then make a futex call that wakes nobody.
    if (!park(epoch_, token, timeout)) parked_.fetch_sub(1, std::memory_order_seq_cst);
  }
  void done() noexcept { waiters_.fetch_sub(1, std::memory_order_seq_cst); }
  void notify(int count = INT_MAX) noexcept {
    if (waiters_.load(std::memory_order_seq_cst) != 0) {
      epoch_.fetch_add(1, std::memory_order_seq_cst);
      if (parked_.load(std::memory_order_seq_cst) != 0) {
        const int woken = unpark(epoch_, count);
        if (woken > 0)
          parked_.fetch_sub(static_cast<std::uint32_t>(woken), std::memory_order_seq_cst);
      }
    }
  }

 private:
  std::atomic<std::uint32_t> epoch_{0};
  std::atomic<std::uint32_t> waiters_{0};
  std::atomic<std::uint32_t> parked_{0};  // in (or entering) the futex wait, not yet woken
};

}  // namespace emissions::detail
