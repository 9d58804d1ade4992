// emissions/detail/batch_timer.hpp: the timer thread of a BatchBuffer; not part of the API.
//
// One thread per buffer fires every partition's flush interval (+ jitter) and watches each
// running flush against flush_timeout, reading the buffer's clock once per wake-up. It
// knows nothing of the items: it calls back into the buffer, which does the work. Compiled
// in src/batch_buffer/timer.cpp.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "emissions/clock.hpp"
#include "emissions/detail/batch_buffer.hpp"

namespace emissions::detail {

class BatchTimer {
 public:
  // What the timer asks of the buffer: called on the timer thread, with no lock of the
  // timer held. Must not throw.
  struct Callbacks {
    // The partition's interval expired: flush what it holds.
    std::function<void(std::size_t partition)> interval_due;
    // Flush number `batch` of the partition is still running past flush_timeout (the timer
    // then reports it to telemetry).
    std::function<void(std::size_t partition, std::uint64_t batch)> flush_overdue;
  };

  // `settings`, checked and with a clock, must outlive the timer. Draws every partition's
  // first interval; starts no thread.
  explicit BatchTimer(const BatchBufferSettings& settings);
  ~BatchTimer();  // stop()
  BatchTimer(const BatchTimer&) = delete;
  BatchTimer& operator=(const BatchTimer&) = delete;

  // A seed for a partition's own generator, from the timer's. Call before start().
  [[nodiscard]] std::uint64_t draw_seed() noexcept;
  // Starts the thread (std::system_error when it cannot). Once at most.
  void start(Callbacks callbacks);
  // Stops and joins the thread. Idempotent, also before start(); not from a callback.
  void stop() noexcept;
  // Makes the thread read the clock again: for a clock that jumps (ManualClock::advance).
  // Thread-safe, never blocks for long.
  void wake() noexcept;

  // A flush of `partition` begins: its interval restarts from now, and the flush is watched
  // against flush_timeout. `size` and `start_ns` go into the report. Thread-safe.
  void flush_started(std::size_t partition, std::uint64_t batch, std::size_t size,
                     std::int64_t start_ns);
  // That flush returned: true when it had run past flush_timeout. Thread-safe.
  bool flush_finished(std::size_t partition);
  // When the partition's interval timer fires next. Thread-safe.
  [[nodiscard]] Clock::time_point next_flush(std::size_t partition) const;

 private:
  // The timer's view of one partition.
  struct Slot {
    Clock::time_point deadline;  // the interval timer fires here
    bool watching = false;       // a flush is running
    bool reported = false;       // ... and its flush_timeout has been reported
    std::uint64_t watch_batch = 0;
    Clock::time_point watch_deadline;
    std::size_t watch_size = 0;
    std::int64_t watch_start_ns = 0;
  };

  void run();
  Clock::time_point next_interval(Clock::time_point now);  // mu_ held

  const BatchBufferSettings& settings_;
  Clock& clock_;
  Callbacks callbacks_;
  mutable std::mutex mu_;  // guards the fields below
  std::condition_variable cv_;
  std::vector<Slot> slots_;
  JitterRng rng_;
  bool kick_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace emissions::detail
