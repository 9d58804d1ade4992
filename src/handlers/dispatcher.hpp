// Internal: the adapter that runs in-process handlers.
//
// It joins the pipeline like any adapter (its own queue, backpressure and telemetry). For
// each event it receives it starts one invocation per subscribed handler on a pool of
// worker threads it owns. Invocations get their own ambient buffer at cascade depth + 1;
// what they emit is committed when the handler returns ok. At most `max_in_flight`
// invocations are queued or running: beyond that handle_events waits, which is how a
// slow handler pushes back on the pipeline. Each invocation has a sequence number, so that
// a drain waits for exactly the invocations started before it (not for a count).
//
// Retries: an invocation whose handler returns HandlerResult::retry() (and has attempts
// left under `retry`) keeps its sequence number, so drains wait for it, and waits in
// `retries_`, ordered by due time on `clock`. Idle workers sleep until the earliest due
// time (a ManualClock's advance wakes them through a subscription) and run it like a new
// task. An ordered handler's strand stays held while its invocation waits, so its later
// invocations run after it. Once the dispatcher is abandoned (shutdown's deadline passed),
// waiting retries are released at once and dropped like every invocation not yet started.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "emissions/adapter.hpp"
#include "emissions/clock.hpp"
#include "emissions/config.hpp"
#include "emissions/handler.hpp"
#include "pipeline/settlement_tracker.hpp"

namespace emissions::detail {

class Core;

class HandlerDispatcher final : public Adapter {
 public:
  static constexpr std::string_view kName = "emissions.handlers";

  // Throws ConfigError for a null handler, an empty or duplicate name, or an empty event
  // name in a subscription. Starts `threads` workers (joined again if one fails to start).
  // `retry` (already validated) says how often and how late an invocation that returned
  // retry() runs again; delays are measured on `clock` (null: the steady clock).
  HandlerDispatcher(const std::vector<std::shared_ptr<Handler>>& handlers, std::size_t threads,
                    std::size_t max_in_flight, RetryPolicy retry = {.max_attempts = 1},
                    std::shared_ptr<Clock> clock = {});
  ~HandlerDispatcher() override;

  void bind(std::weak_ptr<Core> core);

  std::string_view name() const override { return kName; }
  bool interested(const Event& event) const override;
  Status handle_events(std::span<const Event> batch) override;
  // Stops the pool once the invocations already submitted have finished, if they do by
  // `deadline` (retries keep running on schedule until then); otherwise drops those not yet
  // started, and the retries not yet run, and returns timeout (join() then waits for the
  // running ones). Callable again.
  Status terminate(Deadline deadline) override;
  // Shutdown gave up: invocations not started yet (and waiting retries) are dropped, and
  // handle_events no longer
  // waits for room among the in-flight ones. The workers keep running until terminate().
  void abandon();
  // Joins the pool, without limit (after terminate).
  void join();

  [[nodiscard]] bool idle() const;
  // Waits until every invocation submitted before the call has finished. False on timeout.
  bool wait_idle(Deadline deadline);

 private:
  struct Entry;
  // Settles one event for its commit's on_settled callback when the last invocation of it
  // is gone (finished, or dropped by a shutdown). Made only when the commit has a callback.
  struct SettleWhenDone {
    std::shared_ptr<SettlementTracker> tracker;
    std::size_t lane;
    std::atomic<bool> dropped{false};  // an invocation of it was dropped by a shutdown
    SettleWhenDone(std::shared_ptr<SettlementTracker> t, std::size_t l)
        : tracker(std::move(t)), lane(l) {}
    ~SettleWhenDone();
    SettleWhenDone(const SettleWhenDone&) = delete;
    SettleWhenDone& operator=(const SettleWhenDone&) = delete;
  };
  struct Invocation {
    Entry* entry;
    std::shared_ptr<const std::vector<Event>> events;
    std::size_t index;
    int depth;
    std::uint64_t seq = 0;      // assigned by submit(); kept by every attempt
    std::uint32_t attempt = 1;  // 1 on the first run
    std::shared_ptr<SettleWhenDone> settle = {};
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
  // The pool task that runs `invocation` (through its strand when its handler is ordered).
  std::function<void()> make_task(Invocation invocation);
  void run_ordered(Invocation invocation);
  // Runs one attempt. True once the invocation is finished (complete()d); false when it was
  // moved into retries_ to run again (an ordered strand then stays held).
  bool invoke(Invocation& invocation) noexcept;
  // Moves `invocation` into retries_ if it has attempts left and the dispatcher is not
  // abandoned; `delay` gets the drawn delay. Wakes the workers.
  bool schedule_retry(Invocation& invocation, std::chrono::nanoseconds& delay) noexcept;
  void complete(std::uint64_t seq) noexcept;
  void worker_loop();

  std::vector<std::unique_ptr<Entry>> entries_;
  std::unordered_map<EventName, std::vector<Entry*>> subscriptions_;
  std::weak_ptr<Core> core_;
  const std::size_t max_in_flight_;
  const RetryPolicy retry_;
  const std::shared_ptr<Clock> clock_;  // never null

  mutable std::mutex mutex_;
  std::condition_variable work_ready_;  // workers wait for tasks, due retries, the clock
  std::condition_variable changed_;     // room freed / an invocation finished / stopping
  std::deque<std::function<void()>> tasks_;
  std::uint64_t next_seq_ = 0;           // the next invocation's sequence number
  std::set<std::uint64_t> outstanding_;  // submitted, not finished (waiting retries too)
  // Invocations waiting to run again, by due time on clock_ (ties in scheduling order).
  std::multimap<Clock::time_point, Invocation> retries_;
  std::minstd_rand random_{std::random_device{}()};  // draws retry delays
  bool stopping_ = false;
  bool abandoned_ = false;  // invocations not yet started are dropped
  std::size_t exited_ = 0;  // workers that returned
  std::vector<std::thread> workers_;
  // Wakes the workers when a ManualClock moves (the steady clock needs none). Reset before
  // the workers are joined; its callback only takes mutex_ and notifies work_ready_.
  Clock::Subscription clock_subscription_;
};

}  // namespace emissions::detail
