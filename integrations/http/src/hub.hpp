// Internal: what the server's adapter saw, shared with the I/O thread. The adapter
// (emissions.http) publishes each batch here; every WebSocket client has a bounded queue of
// serialized envelopes, and what does not fit is counted as missed for that client. No
// Boost here: the adapter and the tests use it without the network.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "emissions/adapter.hpp"
#include "emissions/event.hpp"

namespace emissions::http::detail {

// One WebSocket client's queue. Only the Hub touches it, under its mutex.
struct ClientQueue {
  std::deque<std::string> events;  // serialized envelopes, oldest first
  std::uint64_t missed = 0;        // events that found the queue full, not yet reported
};

class Hub {
 public:
  // `max_per_second`: events serialized for viewers per second at most (a bucket holding
  // one second's worth); the others are only counted, and are missed for every client.
  Hub(bool show_payloads, std::size_t history, std::size_t client_queue,
      std::size_t max_per_second);

  // On the adapter's consumer thread (one thread at a time): serializes what the rate
  // allows (outside the lock), appends it to the history and to every client's queue,
  // counts the rest as missed, then wakes the I/O side once.
  void publish(std::span<const Event> batch);

  // A new client's queue, filled with the most recent history (at most client_queue).
  std::shared_ptr<ClientQueue> subscribe();
  void unsubscribe(const std::shared_ptr<ClientQueue>& client);

  // Moves up to `max` queued events out, and the missed count (reset to 0).
  struct Taken {
    std::vector<std::string> events;
    std::uint64_t missed = 0;
  };
  Taken take(ClientQueue& client, std::size_t max);
  // Whether the client has anything to send.
  bool pending(const ClientQueue& client);

  // Called (under the hub's lock: it must only post work) after a publish that queued
  // something for a client, at most once until rearm(). Null: nobody listens.
  void set_wake(std::function<void()> wake);
  // The I/O side has taken the wake-up: the next publish may wake again.
  void rearm();

  // Events seen per name since the start (the page derives rates from it).
  std::map<std::string, std::uint64_t> counts();
  // Events seen in all.
  std::uint64_t seen();

  // The JSON text an event is shown as: its envelope, or {id, name, emitted_at} without
  // payloads.
  [[nodiscard]] std::string render(const Event& event) const;

 private:
  const bool show_payloads_;
  const std::size_t history_limit_;
  const std::size_t client_queue_;
  const double max_per_second_;
  // The sampling bucket: only publish() touches it (one thread).
  double budget_;
  std::chrono::steady_clock::time_point refilled_ = std::chrono::steady_clock::now();
  std::mutex mu_;
  std::deque<std::string> history_;
  std::vector<std::shared_ptr<ClientQueue>> clients_;
  std::unordered_map<std::string, std::uint64_t> counts_;
  std::uint64_t seen_ = 0;
  std::function<void()> wake_;
  bool wake_armed_ = true;
};

// The server's adapter: hands every batch to the hub.
class WatchAdapter final : public Adapter {
 public:
  explicit WatchAdapter(std::shared_ptr<Hub> hub) : hub_(std::move(hub)) {}
  [[nodiscard]] std::string_view name() const override { return "emissions.http"; }
  Status handle_events(std::span<const Event> batch) override {
    hub_->publish(batch);
    return {};
  }

 private:
  std::shared_ptr<Hub> hub_;
};

}  // namespace emissions::http::detail
