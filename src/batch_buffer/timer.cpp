// BatchTimer: the one timer thread of a BatchBuffer (intervals and flush_timeout watches).
#include "emissions/detail/batch_timer.hpp"

#include <algorithm>
#include <chrono>
#include <utility>

#include "emissions/telemetry.hpp"

namespace emissions::detail {

BatchTimer::BatchTimer(const BatchBufferSettings& settings)
    : settings_(settings), clock_(*settings.clock), rng_(random_seed()) {
  const Clock::time_point now = clock_.now();
  slots_.resize(settings_.partitions);
  for (Slot& s : slots_)
    s.deadline = next_interval(now);
}

BatchTimer::~BatchTimer() {
  stop();
}

std::uint64_t BatchTimer::draw_seed() noexcept {
  std::lock_guard lock(mu_);
  return rng_.next();
}

void BatchTimer::start(Callbacks callbacks) {
  callbacks_ = std::move(callbacks);
  thread_ = std::thread([this] { run(); });
}

void BatchTimer::stop() noexcept {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void BatchTimer::wake() noexcept {
  {
    std::lock_guard lock(mu_);
    kick_ = true;
  }
  cv_.notify_all();
}

void BatchTimer::flush_started(std::size_t partition, std::uint64_t batch, std::size_t size,
                               std::int64_t start_ns) {
  {
    std::lock_guard lock(mu_);
    const Clock::time_point now = clock_.now();
    Slot& s = slots_[partition];
    s.deadline = next_interval(now);  // a flush restarts the interval
    s.watching = true;
    s.reported = false;
    s.watch_batch = batch;
    s.watch_deadline = add_saturating(now, settings_.flush_timeout);
    s.watch_size = size;
    s.watch_start_ns = start_ns;
    kick_ = true;
  }
  cv_.notify_one();
}

bool BatchTimer::flush_finished(std::size_t partition) {
  std::lock_guard lock(mu_);
  slots_[partition].watching = false;
  return slots_[partition].reported;
}

Clock::time_point BatchTimer::next_flush(std::size_t partition) const {
  std::lock_guard lock(mu_);
  return slots_[partition].deadline;
}

Clock::time_point BatchTimer::next_interval(Clock::time_point now) {
  const auto jitter = std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(
      rng_.upto(static_cast<std::uint64_t>(settings_.flush_jitter.count()))));
  return add_saturating(add_saturating(now, settings_.flush_interval), jitter);
}

// Fires interval timers and flush_timeout watches; sleeps until the earliest of them.
void BatchTimer::run() {
  struct Expired {
    std::size_t partition;
    std::uint64_t batch;
    std::size_t size;
    std::int64_t start_ns;
  };
  std::vector<std::size_t> due;
  std::vector<Expired> expired;
  due.reserve(slots_.size());
  expired.reserve(slots_.size());
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    const Clock::time_point now = clock_.now();
    Clock::time_point next = Clock::time_point::max();
    due.clear();
    expired.clear();
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      Slot& s = slots_[i];
      if (s.deadline <= now) {
        due.push_back(i);
        s.deadline = next_interval(now);
      }
      next = std::min(next, s.deadline);
      if (s.watching && !s.reported) {
        if (s.watch_deadline <= now) {
          s.reported = true;
          expired.push_back({i, s.watch_batch, s.watch_size, s.watch_start_ns});
        } else {
          next = std::min(next, s.watch_deadline);
        }
      }
    }
    if (!due.empty() || !expired.empty()) {
      lock.unlock();  // the callbacks take partitions' locks, never held with mu_
      for (std::size_t i : due)
        callbacks_.interval_due(i);
      for (const Expired& e : expired) {
        callbacks_.flush_overdue(e.partition, e.batch);
        if (telemetry::enabled()) batch_flush_overdue(settings_, e.partition, e.size, e.start_ns);
      }
      lock.lock();
      continue;
    }
    kick_ = false;
    clock_.wait_until(lock, cv_, next, [&] { return kick_ || stop_; });
  }
}

}  // namespace emissions::detail
