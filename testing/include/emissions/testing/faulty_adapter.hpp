/// @file
/// emissions/testing/faulty_adapter.hpp: an asynchronous adapter that fails, throws, stalls
/// and acknowledges late on cue, to test how code copes with an unreliable destination.
///
/// By default a FaultyAdapter acknowledges every event inline, inside deliver(). A test
/// scripts what goes wrong, before or while events flow, and then checks what the adapter
/// received, what it acknowledged and what it failed:
///
/// @code
///   auto faulty = std::make_shared<emissions::testing::FaultyAdapter>("kafka");
///   faulty->fail_batch(2, {emissions::Errc::unavailable, "broker down"})  // the 2nd deliver()
///       .fail_events([](const emissions::Event& e) { return e.name == "poison"; },
///                    {emissions::Errc::invalid_argument, "poison"});
///   emissions::Config config;
///   config.add_adapter(faulty);
///   emissions::Emitter emitter(std::move(config));
///   // ... commits ...
///   (void)emitter.drain(std::chrono::seconds(1));
///   faulty->delivered();  // the events it acknowledged, in order
///   faulty->batches();    // how many deliver() calls there were
/// @endcode
///
/// Included by emissions/testing.hpp.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "emissions/delivery.hpp"
#include "emissions/event.hpp"
#include "emissions/status.hpp"

namespace emissions::testing {

/// One event as a FaultyAdapter received it: a copy, which deliver() call brought it and
/// that delivery's attempt number.
///
/// @code
///   for (const ReceivedEvent& r : faulty->received())
///     std::cout << r.batch << " " << r.attempt << " " << r.event.name << '\n';
/// @endcode
struct ReceivedEvent {
  Event event;                ///< a copy of the event
  std::uint64_t batch = 0;    ///< the deliver() call that brought it, 1-based
  std::uint32_t attempt = 0;  ///< Delivery::attempt() of that call (1 on first delivery)
};

/// An AsyncAdapter scripted to misbehave; see the file comment.
///
/// The script. Each deliver() call is numbered (1-based, counting every call, also those
/// that throw or fail) and decided when it arrives, by the first rule that applies:
/// 1. throw_on_batch(n): deliver() fails every event of call n with `internal` and throws
///    std::runtime_error (the pipeline then calls init() again before the next call);
/// 2. fail_batch(n, error): every event of call n fails with `error`;
/// 3. fail_every(k, error): every event of calls k, 2k, 3k, ... fails with `error`;
/// 4. fail_events(predicate, error): each event for which a predicate is true fails alone
///    with that rule's error (the first matching rule's); the others are acknowledged;
/// 5. otherwise every event is acknowledged.
/// An ok `error` counts as `internal` (as Delivery::fail does). Rules added later apply to
/// calls that arrive later. The outcome is then carried out: inline, in deliver() (the
/// default); held unsettled while stall() is in force, until release(); or from the
/// adapter's own thread `delay` after the call, after ack_late(delay).
///
/// Recording. Every received event is recorded (received()), then each event as it is
/// settled (delivered() or failed(), in settlement order), before its settlement is made:
/// once the pipeline counts an event settled (drain() returned), it is in these lists.
///
/// Threads and lifetime. Only ack_late() starts a thread, once; the destructor stops and
/// joins it. Deliveries still held or waiting for a late ack when the adapter is destroyed
/// are abandoned (Delivery fails them with internal "delivery abandoned"; a no-op when a
/// shutdown already counted them dropped). terminate() releases nothing: a stalled
/// adapter's events stay unsettled, and a pipeline's shutdown counts them dropped.
///
/// Thread-safety: every member may be called from any thread at any time. Predicates and
/// settlements (which may run the pipeline's telemetry handlers) run with no lock of the
/// adapter held; predicates on the thread that calls deliver().
class FaultyAdapter final : public AsyncAdapter {
 public:
  /// What fail_events() matches.
  using EventPredicate = std::function<bool(const Event&)>;

  /// An adapter reported under `name` in stats and telemetry, acknowledging everything
  /// inline until scripted otherwise.
  explicit FaultyAdapter(std::string name = "faulty");
  /// Stops and joins the late-ack thread; abandons what is still held (see the class
  /// comment).
  ~FaultyAdapter() override;
  FaultyAdapter(const FaultyAdapter&) = delete;
  FaultyAdapter& operator=(const FaultyAdapter&) = delete;

  /// @name The script
  /// Each returns `*this`, to chain. `n` and `k` start at 1 (0 throws std::invalid_argument).
  /// @{

  /// Call n fails every event with `error`.
  FaultyAdapter& fail_batch(std::uint64_t n, Status error);
  /// Call n throws (after failing its events with internal).
  FaultyAdapter& throw_on_batch(std::uint64_t n);
  /// Calls k, 2k, 3k, ... fail every event with `error`. Replaces an earlier fail_every.
  FaultyAdapter& fail_every(std::uint64_t k, Status error);
  /// Each event for which `predicate` is true fails with `error`, whichever call brings it
  /// (a "poison" event). Rules are tried in the order they were added. A predicate that
  /// throws fails its whole call with internal.
  FaultyAdapter& fail_events(EventPredicate predicate, Status error);
  /// From now on, deliveries are held unsettled (their outcome decided) until release().
  FaultyAdapter& stall();
  /// Ends stall(): settles every held delivery on the calling thread, oldest first, and
  /// returns how many there were. Later calls are settled as before the stall.
  std::size_t release();
  /// From now on, settles each call from the adapter's own thread `delay` (real time) after
  /// it arrived, in arrival order. Starts that thread on first use.
  FaultyAdapter& ack_late(std::chrono::milliseconds delay);
  /// From now on, settles each call inline again (calls already waiting for a late ack
  /// still get it).
  FaultyAdapter& ack_inline();
  /// @}

  /// @name AsyncAdapter
  /// @{
  /// The name given to the constructor.
  [[nodiscard]] std::string_view name() const override { return name_; }
  /// Counts the call (inits()); ok.
  Status init() override;
  /// Records the events and carries out the script (see the class comment). Never blocks,
  /// except on the adapter's short internal lock.
  void deliver(Delivery delivery) override;
  /// Counts the call (terminations()); settles nothing; ok.
  Status terminate(Deadline deadline) override;
  /// @}

  /// @name Observations
  /// Copies, taken under the adapter's lock.
  /// @{
  /// Every event handed to deliver(), in arrival order, with its call and attempt.
  [[nodiscard]] std::vector<ReceivedEvent> received() const;
  /// The events acknowledged, in settlement order.
  [[nodiscard]] std::vector<Event> delivered() const;
  /// The events failed (by any rule, including a throw), in settlement order.
  [[nodiscard]] std::vector<Event> failed() const;
  /// How many deliver() calls there have been.
  [[nodiscard]] std::uint64_t batches() const;
  /// How many deliveries stall() holds now.
  [[nodiscard]] std::size_t held() const;
  /// How many init() calls there have been.
  [[nodiscard]] std::uint64_t inits() const;
  /// How many terminate() calls there have been.
  [[nodiscard]] std::uint64_t terminations() const;
  /// Blocks until there have been at least `n` deliver() calls, or `timeout` passes;
  /// whether there were.
  [[nodiscard]] bool wait_for_batches(std::uint64_t n, std::chrono::milliseconds timeout) const;
  /// Blocks until every delivery received so far is settled (none held, none waiting for a
  /// late ack, none being settled), or `timeout` passes; whether they were.
  [[nodiscard]] bool wait_for_settled(std::chrono::milliseconds timeout) const;
  /// @}

 private:
  // A delivery and its decided outcome.
  struct Plan {
    Delivery delivery;
    Status batch_error;                                   // ok: per event, below
    std::vector<std::pair<std::size_t, Status>> failing;  // event index, its error
  };
  struct Late {
    std::chrono::steady_clock::time_point due;
    Plan plan;
  };
  struct EventRule {
    EventPredicate predicate;
    Status error;
  };
  using EventRules = std::vector<EventRule>;

  // Records the outcome, then settles (no lock held).
  void settle(Plan& plan);
  // The late-ack thread's loop.
  void run_late();

  const std::string name_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;  // after every call, settlement and release
  std::condition_variable late_wake_;        // new late work, or stopping_
  // The script.
  std::map<std::uint64_t, Status> fail_batches_;
  std::set<std::uint64_t> throw_batches_;
  std::uint64_t fail_every_ = 0;  // 0: none
  Status fail_every_error_;
  std::shared_ptr<const EventRules> event_rules_;  // replaced, never changed in place
  bool stalled_ = false;
  bool late_ = false;
  std::chrono::milliseconds late_delay_{0};
  // State.
  std::vector<Plan> held_;
  std::deque<Late> late_queue_;
  std::uint64_t unsettled_ = 0;  // deliveries received and not yet settled
  bool stopping_ = false;
  // Observations.
  std::vector<ReceivedEvent> received_;
  std::vector<Event> delivered_;
  std::vector<Event> failed_;
  std::uint64_t batches_ = 0;
  std::uint64_t inits_ = 0;
  std::uint64_t terminations_ = 0;
  std::thread late_thread_;  // started by ack_late(); joined by the destructor
};

}  // namespace emissions::testing
