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
#include "emitter_view.hpp"

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
  // payloads. Bytes that are not UTF-8 in a string are shown as U+FFFD. Throws only
  // bad_alloc.
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
  std::unordered_map<EventName, std::uint64_t> counts_;  // interned: hashing is free
  std::uint64_t seen_ = 0;
  std::function<void()> wake_;
  bool wake_armed_ = true;
};

// What one WebSocket client is sent next, one message at a time (the I/O thread asks once
// the previous write has finished). Only that thread uses it.
class ClientFeed {
 public:
  // The next message, or empty when nothing is pending: events are taken from `client`'s
  // queue (at most `max_events` a message); a missed count taken with them is sent first,
  // as {"type":"missed","count":n}, and the events are held until the next call, which
  // sends them before taking more (taking more first would overwrite them: neither sent
  // nor counted).
  std::string next(Hub& hub, ClientQueue& client, std::size_t max_events);

 private:
  std::vector<std::string> held_;
};

// {"type":"events","events":[...]} of serialized envelopes.
[[nodiscard]] std::string events_message(const std::vector<std::string>& events);

// The server's adapter: hands every batch to the hub, and tells the server's view of the
// Emitter when the Emitter lets go of it (terminate() at shutdown; the destructor when
// terminate() was skipped), so that the server stops reading an Emitter that may be
// destroyed next.
class WatchAdapter final : public Adapter {
 public:
  WatchAdapter(std::shared_ptr<Hub> hub, std::shared_ptr<EmitterView> view)
      : hub_(std::move(hub)), view_(std::move(view)) {}
  ~WatchAdapter() override { view_->detach(); }
  WatchAdapter(const WatchAdapter&) = delete;
  WatchAdapter& operator=(const WatchAdapter&) = delete;
  [[nodiscard]] std::string_view name() const override { return "emissions.http"; }
  Status handle_events(std::span<const Event> batch) override {
    hub_->publish(batch);
    return {};
  }
  Status terminate(Deadline) override {
    view_->detach_after_snapshot();
    return {};
  }

 private:
  std::shared_ptr<Hub> hub_;
  std::shared_ptr<EmitterView> view_;
};

}  // namespace emissions::http::detail
