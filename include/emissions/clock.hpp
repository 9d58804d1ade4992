/// @file
/// emissions/clock.hpp: the time source of components that wait for deadlines, and a manual
/// clock that lets tests move that time by hand.
///
/// A component takes a `std::shared_ptr<Clock>` (null meaning the real steady clock), reads
/// `now()` and sleeps with `wait_until`; it subscribes to the clock with a callback that
/// notifies its condition variable, so that the wait also ends when a ManualClock is
/// advanced. Tests then advance time instead of sleeping:
///
/// @code
///   auto clock = std::make_shared<emissions::ManualClock>();
///   emissions::BatchBuffer<int> buf(
///       {.name = "b", .flush_interval = 100ms, .flush_jitter = 0ms, .clock = clock}, fn);
///   ASSERT_TRUE(buf.insert(1).ok());
///   clock->advance(100ms);  // the buffer's timer wakes up at once and flushes
/// @endcode
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

namespace emissions {

/// A monotonic time source that can wake the threads waiting on it.
///
/// A clock whose now() is not `std::chrono::steady_clock::now()` must also say when a
/// waiter should wake (wake_time) or notify its subscribers when its time moves (subscribe):
/// with the defaults, waiters sleep until that time on the steady clock, too early or too
/// late for a clock of its own.
///
/// @code
///   class OffsetClock : public emissions::Clock {  // the steady clock, shifted
///     time_point now() const noexcept override { return std::chrono::steady_clock::now() + offset;
///     } time_point wake_time(time_point deadline) const noexcept override { return deadline -
///     offset; } duration offset{std::chrono::hours(1)};
///   };
/// @endcode
class Clock {
 public:
  /// `std::chrono::steady_clock`'s duration.
  using duration = std::chrono::steady_clock::duration;
  /// A time on this clock, in `std::chrono::steady_clock`'s type (a Clock need not be that
  /// clock: a ManualClock's time starts wherever it was told).
  using time_point = std::chrono::steady_clock::time_point;

  /// Keeps a wake-up callback registered; unsubscribes on destruction or reset(). Must not
  /// outlive its clock. Move-only.
  ///
  /// @code
  ///   Clock::Subscription sub = clock.subscribe([&] { cv.notify_all(); });
  /// @endcode
  class Subscription {
   public:
    /// Holds no callback.
    Subscription() noexcept = default;
    /// Takes over `other`'s callback; `other` then holds none.
    Subscription(Subscription&& other) noexcept
        : clock_(std::exchange(other.clock_, nullptr)), id_(other.id_) {}
    /// Unsubscribes this one's callback (reset()), then takes over `other`'s; `other` then
    /// holds none.
    Subscription& operator=(Subscription&& other) noexcept {
      if (this != &other) {
        reset();
        clock_ = std::exchange(other.clock_, nullptr);
        id_ = other.id_;
      }
      return *this;
    }
    Subscription(const Subscription&) = delete;
    Subscription& operator=(const Subscription&) = delete;
    /// reset().
    ~Subscription() { reset(); }

    /// Unsubscribes; once it returns, the callback is not running and will not run again.
    void reset() noexcept {
      if (clock_ != nullptr) std::exchange(clock_, nullptr)->unsubscribe(id_);
    }

   private:
    friend class Clock;
    Subscription(Clock* clock, std::uint64_t id) noexcept : clock_(clock), id_(id) {}
    Clock* clock_ = nullptr;
    std::uint64_t id_ = 0;
  };

  Clock() = default;
  Clock(const Clock&) = delete;
  Clock& operator=(const Clock&) = delete;
  virtual ~Clock() = default;

  /// The current time. Thread-safe, never blocks, never goes backwards.
  [[nodiscard]] virtual time_point now() const noexcept = 0;

  /// The `std::chrono::steady_clock` time at which a thread waiting for `deadline` (on this
  /// clock) should wake up by itself; `time_point::max()` means "only when notified" (a
  /// clock whose time moves by hand notifies its subscribers instead). Default: `deadline`,
  /// for a clock that is the steady clock. Thread-safe.
  [[nodiscard]] virtual time_point wake_time(time_point deadline) const noexcept {
    return deadline;
  }

  /// Registers `on_advance`, called (on the advancing thread) after every jump in time that
  /// a timed wait would not notice. The real clock never jumps, so the default keeps
  /// nothing (and returns an empty Subscription). `on_advance` must not subscribe,
  /// unsubscribe or advance the same clock. Thread-safe.
  [[nodiscard]] virtual Subscription subscribe(std::function<void()> on_advance) {
    (void)on_advance;
    return {};
  }

  /// Waits on `cv` (with `lock` held on entry and on return) until `pred()` holds or
  /// `deadline` on this clock has passed: true once `pred()` holds, false when the deadline
  /// came first. Whoever changes what `pred` reads notifies `cv`, and so must a subscription of
  /// this clock (see subscribe), so that a manual advance ends the wait. Works with
  /// `std::condition_variable` (and a `std::unique_lock<std::mutex>`) or
  /// `std::condition_variable_any` (and any lock). Blocks; never busy-waits.
  template <typename Lock, typename CondVar, typename Predicate>
  bool wait_until(Lock& lock, CondVar& cv, time_point deadline, Predicate pred) const {
    while (!pred()) {
      if (now() >= deadline) return false;
      const time_point wake = wake_time(deadline);
      if (wake == time_point::max()) {
        cv.wait(lock);
      } else {
        cv.wait_until(lock, wake);
      }
    }
    return true;
  }

 protected:
  /// For subclasses that keep subscribers: a handle whose reset() calls unsubscribe(id).
  [[nodiscard]] Subscription make_subscription(std::uint64_t id) noexcept { return {this, id}; }
  /// Removes subscriber `id`; after it returns its callback is not running. Thread-safe.
  virtual void unsubscribe(std::uint64_t id) noexcept { (void)id; }
};

/// `std::chrono::steady_clock` as a Clock: what components use when given no clock.
///
/// @code
///   std::shared_ptr<emissions::Clock> clock = std::make_shared<emissions::SteadyClock>();
/// @endcode
class SteadyClock final : public Clock {
 public:
  /// `std::chrono::steady_clock::now()`. Thread-safe, never blocks.
  [[nodiscard]] time_point now() const noexcept override {
    return std::chrono::steady_clock::now();
  }
};

/// A clock that only moves when told to: for deterministic tests of timers and timeouts.
///
/// @code
///   emissions::ManualClock clock;                    // starts at time_point{} unless given
///   auto t0 = clock.now();
///   clock.advance(std::chrono::seconds(5));          // wakes every subscriber
///   assert(clock.now() - t0 == std::chrono::seconds(5));
/// @endcode
class ManualClock final : public Clock {
 public:
  /// A clock that reads `start` until it is advanced.
  explicit ManualClock(time_point start = time_point{}) noexcept
      : now_(start.time_since_epoch().count()) {}

  /// The start plus every advance so far. Thread-safe, lock-free.
  [[nodiscard]] time_point now() const noexcept override {
    return time_point(duration(now_.load(std::memory_order_acquire)));
  }
  /// `time_point::max()`: waiters never time out by themselves, only advance() moves this
  /// clock.
  [[nodiscard]] time_point wake_time(time_point /*deadline*/) const noexcept override {
    return time_point::max();
  }

  /// Keeps `on_advance` until the Subscription is reset or destroyed. Thread-safe;
  /// `on_advance` runs under this clock's lock (see Clock::subscribe).
  [[nodiscard]] Subscription subscribe(std::function<void()> on_advance) override {
    std::lock_guard lock(mu_);
    const std::uint64_t id = next_id_++;
    subscribers_.emplace_back(id, std::move(on_advance));
    return make_subscription(id);
  }

  /// Moves time forward by `d` (a negative `d` is ignored: time never goes back), then calls
  /// every subscriber before returning. Thread-safe; concurrent advances are serialised.
  /// Blocks while a subscriber runs.
  void advance(duration d) {
    std::lock_guard lock(mu_);
    if (d > duration::zero()) now_.fetch_add(d.count(), std::memory_order_acq_rel);
    for (const auto& [id, on_advance] : subscribers_)
      if (on_advance) on_advance();
  }

 private:
  void unsubscribe(std::uint64_t id) noexcept override {
    std::lock_guard lock(mu_);  // waits for a running advance(), hence for its callbacks
    std::erase_if(subscribers_, [id](const auto& s) { return s.first == id; });
  }

  std::atomic<duration::rep> now_;
  std::mutex mu_;  // guards subscribers_ and next_id_; held while callbacks run
  std::vector<std::pair<std::uint64_t, std::function<void()>>> subscribers_;
  std::uint64_t next_id_ = 1;
};

}  // namespace emissions
