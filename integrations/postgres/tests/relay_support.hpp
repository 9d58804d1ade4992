// Test support for relays: an adapter that appends what it receives to a log shared by
// several emitters (so that order across relays can be checked), with a gate that holds
// deliveries back, and helpers that stage committed or rolled-back transactions.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "emissions/adapter.hpp"
#include "emissions/emitter.hpp"
#include "pg_test_support.hpp"
#include "relay_faults.hpp"

namespace emissions::postgres::test {

struct Delivered {
  std::string relay;  // the adapter's name
  Event event;
};

class SharedLog {
 public:
  void add(const std::string& relay, std::span<const Event> batch) {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return open_; });
    for (const Event& e : batch)
      entries_.push_back({relay, e});
    changed_.notify_all();
  }
  // While closed, deliveries wait (rows stay in flight).
  void close() {
    const std::lock_guard lock(mutex_);
    open_ = false;
  }
  void open() {
    const std::lock_guard lock(mutex_);
    open_ = true;
    changed_.notify_all();
  }
  bool wait_for_size(std::size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return entries_.size() >= n; });
  }
  std::vector<Delivered> entries() const {
    const std::lock_guard lock(mutex_);
    return entries_;
  }
  std::size_t size() const {
    const std::lock_guard lock(mutex_);
    return entries_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  bool open_ = true;
  std::vector<Delivered> entries_;
};

class LogAdapter final : public Adapter {
 public:
  LogAdapter(std::string name, std::shared_ptr<SharedLog> log)
      : name_(std::move(name)), log_(std::move(log)) {}
  std::string_view name() const override { return name_; }
  Status handle_events(std::span<const Event> batch) override {
    log_->add(name_, batch);
    return {};
  }

 private:
  std::string name_;
  std::shared_ptr<SharedLog> log_;
};

inline Config log_config(const std::string& name, const std::shared_ptr<SharedLog>& log) {
  Config config;
  config.make_default = false;
  config.add_adapter(std::make_shared<LogAdapter>(name, log));
  return config;
}

// Stages `count` events named `name` with payload {"n": first + i, "key": key} in one
// database transaction, committed or rolled back.
inline void stage_events(Emitter& emitter, const Db& db, const OutboxOptions& outbox, int first,
                         int count, bool commit, const std::string& key = "",
                         const std::string& name = "e") {
  Transaction tx = emitter.start();
  for (int i = 0; i < count; ++i) {
    nlohmann::json payload = {{"n", first + i}};
    if (!key.empty()) payload["key"] = key;
    EXPECT_TRUE(tx.emit(name, std::move(payload)).ok());
  }
  db.exec("BEGIN");
  const Status s = stage(tx, db.get(), outbox);
  EXPECT_TRUE(s.ok()) << s.to_string();
  db.exec(commit ? "COMMIT" : "ROLLBACK");
}

inline OutboxOptions keyed(OutboxOptions outbox) {
  outbox.ordering_key = [](const Event& e) {
    return e.payload.is_object() ? e.payload.value("key", std::string()) : std::string();
  };
  return outbox;
}

// The relay tests' fixture: a connection, a fresh outbox table of the test's own (`table`:
// its quoted name) and a log for the adapters. Clears the fault hook a test may have set.
class RelayFixture : public ::testing::Test {
 protected:
  ~RelayFixture() override { detail::set_fault_hook({}); }
  Db db;
  OutboxOptions outbox = fresh_outbox(db);
  std::string table = "\"" + outbox.table + "\"";
  std::shared_ptr<SharedLog> log = std::make_shared<SharedLog>();
};

// Waits until `condition()` holds or `timeout` passes; its last value.
template <typename Condition>
bool eventually(Condition&& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return condition();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace emissions::postgres::test
