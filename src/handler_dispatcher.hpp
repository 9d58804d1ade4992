// Internal: the adapter that runs in-process handlers.
//
// It joins the pipeline like any adapter (its own queue, backpressure and telemetry). For
// each event it receives it starts one invocation per subscribed handler on a pool of
// worker threads it owns. Invocations get their own ambient buffer at cascade depth + 1;
// what they emit is committed when the handler returns ok. At most `max_in_flight`
// invocations are queued or running: beyond that handle_events waits, which is how a
// slow handler pushes back on the pipeline.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "emissions/adapter.hpp"
#include "emissions/handler.hpp"

namespace emissions::detail {

class Core;

class HandlerDispatcher final : public Adapter {
 public:
  static constexpr std::string_view kName = "emissions.handlers";

  // Throws ConfigError for a null handler, an empty or duplicate name, or an empty event
  // name in a subscription.
  HandlerDispatcher(const std::vector<std::shared_ptr<Handler>>& handlers, std::size_t threads,
                    std::size_t max_in_flight);
  ~HandlerDispatcher() override;

  void bind(std::weak_ptr<Core> core) { core_ = std::move(core); }

  std::string_view name() const override { return kName; }
  bool interested(const Event& event) const override;
  Status handle_events(std::span<const Event> batch) override;
  // Joins the pool after the invocations already started have finished.
  void terminate() override;

  [[nodiscard]] bool idle() const;
  // Waits until every invocation started before the call has finished. False on timeout.
  bool wait_idle(std::chrono::steady_clock::time_point deadline);

 private:
  struct Entry;
  struct Invocation {
    Entry* entry;
    std::shared_ptr<const std::vector<Event>> events;
    std::size_t index;
    int depth;
  };
  struct Entry {
    std::shared_ptr<Handler> handler;
    std::string name;
    bool ordered;
    // Serialises an ordered handler's invocations (a strand): queued ones wait here.
    std::mutex mutex;
    std::deque<Invocation> pending;
    bool running = false;
  };

  void submit(Invocation invocation);
  void run_ordered(Invocation invocation);
  void invoke(const Invocation& invocation) noexcept;
  void worker_loop();

  std::vector<std::unique_ptr<Entry>> entries_;
  std::unordered_map<EventName, std::vector<Entry*>> subscriptions_;
  std::weak_ptr<Core> core_;
  const std::size_t max_in_flight_;

  mutable std::mutex mutex_;
  std::condition_variable work_ready_;  // workers wait for tasks
  std::condition_variable changed_;     // room freed / idle, for handle_events and drains
  std::deque<std::function<void()>> tasks_;
  std::uint64_t submitted_ = 0;  // invocations accepted (monotonic)
  std::uint64_t completed_ = 0;  // invocations finished (monotonic)
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace emissions::detail
