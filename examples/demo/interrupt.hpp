// Ctrl-C for the demo: SIGINT (or SIGTERM) ends the run early, with the summary of what ran.
//
// No signal handler runs. The constructor blocks SIGINT and SIGTERM in the calling thread,
// and every thread started afterwards (request threads, the emitter's consumers, the
// progress bar) inherits that mask, so the signals stay pending until the watcher's own
// thread takes them with sigtimedwait. There, ordinary code runs: the first signal
// requests stop on the stop_source that the request threads poll; a second one ends the
// process at once with status 128 + signal, for a user who does not want to wait for the
// drain.
//
//   demo::InterruptWatcher interrupt;  // in main, before any other thread starts
//   simulation.run(interrupt.stop_token());
//   if (interrupt.signal() != 0) return 128 + interrupt.signal();
#pragma once

#include <atomic>
#include <stop_token>
#include <thread>

#include <signal.h>

namespace demo {

class InterruptWatcher {
 public:
  // Blocks SIGINT and SIGTERM in this thread and starts the watching thread. Construct it
  // before any other thread starts, or those threads may still take the signals.
  InterruptWatcher();
  // Stops and joins the watching thread (within about 100 ms) and restores the signal mask
  // that was in place before the constructor; a signal still pending is then delivered.
  ~InterruptWatcher();
  InterruptWatcher(const InterruptWatcher&) = delete;
  InterruptWatcher& operator=(const InterruptWatcher&) = delete;

  // Stop is requested when the first signal arrives. Thread-safe.
  [[nodiscard]] std::stop_token stop_token() const noexcept { return interrupted_.get_token(); }
  // The first signal received (SIGINT or SIGTERM), or 0. Thread-safe.
  [[nodiscard]] int signal() const noexcept { return signal_.load(std::memory_order_acquire); }

 private:
  void watch(const std::stop_token& own);

  sigset_t watched_;
  sigset_t previous_mask_;
  std::stop_source interrupted_;
  std::atomic<int> signal_{0};
  std::jthread thread_;  // last: starts once everything above is ready
};

}  // namespace demo
