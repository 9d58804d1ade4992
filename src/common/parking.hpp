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
// spuriously: callers re-check their condition.
inline void park(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                 std::chrono::nanoseconds timeout = std::chrono::nanoseconds(-1)) noexcept {
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout.count() >= 0) {
    ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
    tsp = &ts;
  }
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, tsp,
          nullptr, 0);
}

inline void unpark(std::atomic<std::uint32_t>& word, int count = INT_MAX) noexcept {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, count, nullptr,
          nullptr, 0);
}

// A wake-up channel for "something changed" notifications with any number of waiters:
//   waiter:   auto t = ch.prepare(); if (!condition()) ch.wait(t, timeout); ch.done();
//   notifier: make condition true; ch.notify();
// notify() costs one load when nobody waits.
class WaitChannel {
 public:
  std::uint32_t prepare() noexcept {
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    return epoch_.load(std::memory_order_seq_cst);
  }
  void wait(std::uint32_t token, std::chrono::nanoseconds timeout) noexcept {
    park(epoch_, token, timeout);
  }
  void done() noexcept { waiters_.fetch_sub(1, std::memory_order_seq_cst); }
  void notify(int count = INT_MAX) noexcept {
    if (waiters_.load(std::memory_order_seq_cst) != 0) {
      epoch_.fetch_add(1, std::memory_order_seq_cst);
      unpark(epoch_, count);
    }
  }

 private:
  std::atomic<std::uint32_t> epoch_{0};
  std::atomic<std::uint32_t> waiters_{0};
};

}  // namespace emissions::detail
