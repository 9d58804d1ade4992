// Test support: drives a ManualClock forward from a thread of its own, so that a test can
// wait (drain, wait_for_...) for backoffs of any length without sleeping through them.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "emissions/clock.hpp"

namespace emissions::test_support {

// Advances `clock` by `step` every millisecond of real time while it lives.
class ClockDriver {
 public:
  ClockDriver(std::shared_ptr<ManualClock> clock, std::chrono::milliseconds step)
      : clock_(std::move(clock)), step_(step), thread_([this] {
          while (!stop_.load()) {
            clock_->advance(step_);
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
          }
        }) {}
  ~ClockDriver() {
    stop_.store(true);
    thread_.join();
  }
  ClockDriver(const ClockDriver&) = delete;
  ClockDriver& operator=(const ClockDriver&) = delete;

 private:
  std::shared_ptr<ManualClock> clock_;
  std::chrono::milliseconds step_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace emissions::test_support
