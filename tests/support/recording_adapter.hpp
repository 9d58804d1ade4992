// Test support: an adapter whose behaviour each test controls (record, block, fail, throw),
// with exact counters. Not installed: users get emissions::testing::TestAdapter.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "emissions/adapter.hpp"
#include "emissions/telemetry.hpp"

namespace emissions::test_support {

class RecordingAdapter : public Adapter {
 public:
  explicit RecordingAdapter(std::string name = "recording") : name_(std::move(name)) {}

  std::string_view name() const override { return name_; }

  Status init() override {
    inits_.fetch_add(1);
    std::lock_guard lock(mutex_);
    if (fail_init_) return Status(Errc::unavailable, "init refused");
    return {};
  }

  bool interested(const Event& event) const override { return !filter_ || filter_(event); }

  Status handle_events(std::span<const Event> batch) override {
    std::unique_lock lock(mutex_);
    ++calls_in_progress_;
    changed_.notify_all();
    changed_.wait(lock, [&] { return !blocked_; });
    --calls_in_progress_;
    batch_sizes_.push_back(batch.size());
    if (throw_next_ > 0) {
      --throw_next_;
      changed_.notify_all();
      throw std::runtime_error("adapter exploded");
    }
    if (fail_next_ > 0) {
      --fail_next_;
      changed_.notify_all();
      return Status(Errc::unavailable, "destination down");
    }
    for (const Event& e : batch) {
      names_.push_back(e.name.str());
      payloads_.push_back(e.payload);
      if (on_event_) on_event_(e);
    }
    received_ += batch.size();
    changed_.notify_all();
    return {};
  }

  emissions::Status terminate(emissions::Deadline) override {
    terminated_.fetch_add(1);
    return {};
  }

  // --- control ---
  void block() {
    std::lock_guard lock(mutex_);
    blocked_ = true;
  }
  void unblock() {
    std::lock_guard lock(mutex_);
    blocked_ = false;
    changed_.notify_all();
  }
  void fail_next(int n) {
    std::lock_guard lock(mutex_);
    fail_next_ = n;
  }
  void throw_next(int n) {
    std::lock_guard lock(mutex_);
    throw_next_ = n;
  }
  void fail_init(bool fail) {
    std::lock_guard lock(mutex_);
    fail_init_ = fail;
  }
  // Set before the emitter starts.
  void set_filter(std::function<bool(const Event&)> f) { filter_ = std::move(f); }
  void set_on_event(std::function<void(const Event&)> f) { on_event_ = std::move(f); }

  // Waits (with a deadline, never as an assertion by itself) until a call is blocked.
  bool wait_until_blocked_in_call(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return calls_in_progress_ > 0; });
  }
  bool wait_for_received(std::size_t n,
                         std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return received_ >= n; });
  }

  // --- observations ---
  std::vector<std::string> names() const {
    std::lock_guard lock(mutex_);
    return names_;
  }
  std::vector<nlohmann::json> payloads() const {
    std::lock_guard lock(mutex_);
    return payloads_;
  }
  std::vector<std::size_t> batch_sizes() const {
    std::lock_guard lock(mutex_);
    return batch_sizes_;
  }
  std::size_t received() const {
    std::lock_guard lock(mutex_);
    return received_;
  }
  int inits() const { return inits_.load(); }
  int terminations() const { return terminated_.load(); }

 private:
  std::string name_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  bool blocked_ = false;
  int calls_in_progress_ = 0;
  int fail_next_ = 0;
  int throw_next_ = 0;
  bool fail_init_ = false;
  std::function<bool(const Event&)> filter_;
  std::function<void(const Event&)> on_event_;
  std::vector<std::string> names_;
  std::vector<nlohmann::json> payloads_;
  std::vector<std::size_t> batch_sizes_;
  std::size_t received_ = 0;
  std::atomic<int> inits_{0};
  std::atomic<int> terminated_{0};
};

// Records telemetry events while alive (detaches on destruction).
class TelemetryRecorder {
 public:
  struct Record {
    std::vector<std::string> event;
    nlohmann::json measurements;
    nlohmann::json metadata;
  };
  TelemetryRecorder(std::string id, std::vector<std::vector<std::string>> events);
  ~TelemetryRecorder();
  std::vector<Record> records() const;
  std::vector<Record> records(const std::vector<std::string>& event) const;
  // Waits until `n` records of `event` arrived, or `timeout` passed: whether they did.
  bool wait_for(const std::vector<std::string>& event, std::size_t n,
                std::chrono::milliseconds timeout) const;

 private:
  std::string id_;
  mutable std::mutex mutex_;
  mutable std::condition_variable arrived_;
  std::vector<Record> records_;
};

// Detaches the telemetry handler `id` when it leaves scope, also through a failed ASSERT (a
// handler left attached would write to the ended test's variables).
struct DetachOnExit {
  std::string id;
  ~DetachOnExit() { (void)telemetry::detach(id); }
};

}  // namespace emissions::test_support
