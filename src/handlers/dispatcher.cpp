#include "handlers/dispatcher.hpp"

#include <chrono>
#include <set>

#include "common/backoff.hpp"
#include "common/best_effort.hpp"
#include "common/exceptions.hpp"
#include "common/status_copy.hpp"
#include "emissions/ambient.hpp"
#include "emissions/telemetry.hpp"
#include "emissions/transaction.hpp"
#include "pipeline/core.hpp"
#include "pipeline/thread_role.hpp"
#include "telemetry/events.hpp"
#include "transaction/transaction_access.hpp"

namespace emissions::detail {

HandlerDispatcher::HandlerDispatcher(const std::vector<std::shared_ptr<Handler>>& handlers,
                                     std::size_t threads, std::size_t max_in_flight,
                                     RetryPolicy retry, std::shared_ptr<Clock> clock)
    : max_in_flight_(max_in_flight),
      retry_(retry),
      clock_(clock ? std::move(clock) : std::make_shared<SteadyClock>()) {
  std::set<std::string> names;
  for (std::size_t i = 0; i < handlers.size(); ++i) {
    const std::string where = "handlers[" + std::to_string(i) + "]";
    if (!handlers[i]) throw ConfigError(where + " must not be a null handler (got nullptr)");
    auto entry = std::make_unique<Entry>();
    entry->handler = handlers[i];
    entry->name = std::string(handlers[i]->name());
    entry->ordered = handlers[i]->ordered();
    if (entry->name.empty()) throw ConfigError(where + ".name() must not be empty (got \"\")");
    if (!names.insert(entry->name).second) {
      throw ConfigError(where + ".name() must be unique among handlers (got '" + entry->name +
                        "')");
    }
    std::set<EventName> seen;
    for (const EventName& event : handlers[i]->events()) {
      if (event.empty()) {
        throw ConfigError(where + " ('" + entry->name +
                          "').events() must not contain an empty name (got \"\")");
      }
      if (seen.insert(event).second) subscriptions_[event].push_back(entry.get());
    }
    entries_.push_back(std::move(entry));
  }
  // Taking mutex_ before notifying: a worker that read the clock under it is waiting by the
  // time this notifies, so no advance is missed.
  clock_subscription_ = clock_->subscribe([this] {
    { const std::lock_guard lock(mutex_); }
    work_ready_.notify_all();
  });
  workers_.reserve(threads);
  try {
    for (std::size_t i = 0; i < threads; ++i)
      workers_.emplace_back([this] { worker_loop(); });
  } catch (...) {
    // A thread could not start: stop and join those that did, then report.
    join();
    throw;
  }
}

HandlerDispatcher::~HandlerDispatcher() {
  join();
}

void HandlerDispatcher::bind(std::weak_ptr<Core> core) {
  core_ = std::move(core);
}

bool HandlerDispatcher::interested(const Event& event) const {
  return subscriptions_.find(event.name) != subscriptions_.end();
}

Status HandlerDispatcher::handle_events(std::span<const Event> batch) {
  // Invocations outlive this call, so they share one copy of the batch.
  auto events = std::make_shared<const std::vector<Event>>(batch.begin(), batch.end());
  const int depth = delivering_depth();
  const DeliveringSettlement settlement = delivering_settlement();
  const std::shared_ptr<SettlementTracker>* tracker =
      settlement.tracker != nullptr && *settlement.tracker ? settlement.tracker : nullptr;
  for (std::size_t i = 0; i < events->size(); ++i) {
    const auto it = subscriptions_.find((*events)[i].name);
    if (it == subscriptions_.end()) {
      if (tracker != nullptr) {
        (*tracker)->add(settlement.lane, SettlementTracker::Outcome::delivered, 1);
      }
      continue;
    }
    std::shared_ptr<SettleWhenDone> settle;
    if (tracker != nullptr) settle = std::make_shared<SettleWhenDone>(*tracker, settlement.lane);
    for (Entry* entry : it->second)
      submit(Invocation{entry, events, i, depth, 0, 1, settle});
  }
  return {};
}

HandlerDispatcher::SettleWhenDone::~SettleWhenDone() {
  tracker->add(lane,
               dropped.load(std::memory_order_acquire) ? SettlementTracker::Outcome::dropped
                                                       : SettlementTracker::Outcome::delivered,
               1);
}

void HandlerDispatcher::submit(Invocation invocation) {
  {
    std::unique_lock lock(mutex_);
    // Backpressure: wait for room rather than queueing without bound. Woken by each
    // finished invocation, and by terminate().
    changed_.wait(lock,
                  [&] { return outstanding_.size() < max_in_flight_ || stopping_ || abandoned_; });
    invocation.seq = next_seq_++;
    outstanding_.insert(invocation.seq);
  }
  Entry* entry = invocation.entry;
  if (entry->ordered) {
    std::unique_lock strand(entry->mutex);
    if (entry->running) {
      entry->pending.push_back(std::move(invocation));
      return;
    }
    entry->running = true;
  }
  std::function<void()> task = make_task(std::move(invocation));
  std::lock_guard lock(mutex_);
  tasks_.push_back(std::move(task));
  work_ready_.notify_one();
}

std::function<void()> HandlerDispatcher::make_task(Invocation invocation) {
  if (invocation.entry->ordered) {
    return [this, inv = std::move(invocation)]() mutable { run_ordered(std::move(inv)); };
  }
  return [this, inv = std::move(invocation)]() mutable { (void)invoke(inv); };
}

void HandlerDispatcher::run_ordered(Invocation invocation) {
  Entry* entry = invocation.entry;
  for (;;) {
    // Waiting for a retry: the strand stays held, the retry's task continues it.
    if (!invoke(invocation)) return;
    std::unique_lock strand(entry->mutex);
    if (entry->pending.empty()) {
      entry->running = false;
      return;
    }
    invocation = std::move(entry->pending.front());
    entry->pending.pop_front();
  }
}

bool HandlerDispatcher::invoke(Invocation& invocation) noexcept {
  // Copies: a scheduled retry takes `invocation` (and may even run) before the report.
  const std::shared_ptr<const std::vector<Event>> events = invocation.events;
  const std::uint64_t seq = invocation.seq;
  const std::uint32_t attempt = invocation.attempt;
  const Event& event = (*events)[invocation.index];
  Entry& entry = *invocation.entry;
  bool retrying = false;
  bool abandoned = false;
  {
    std::lock_guard lock(mutex_);
    abandoned = abandoned_;
  }
  std::shared_ptr<Core> core = abandoned ? nullptr : core_.lock();
  if (!core && invocation.settle) invocation.settle->dropped.store(true, std::memory_order_release);
  if (core) {
    const ThreadRole role(core.get());  // drain() from a handler would wait for itself
    // The invocation's own ambient buffer; whatever this worker had is put back after.
    Transaction& ambient = current();
    Transaction saved = std::move(ambient);
    ambient = TransactionAccess::make(core, invocation.depth + 1);

    const bool report = events::kHandlerSuccess.enabled() || events::kHandlerError.enabled() ||
                        events::kHandlerIgnored.enabled();
    const auto started = std::chrono::steady_clock::now();
    HandlerResult result = HandlerResult::ok();
    try {
      result = entry.handler->handle_event(event);
    } catch (...) {
      result = HandlerResult::error(describe_current_exception());
    }
    // A handler may have ended its buffer itself (commit() or terminate() in shared
    // request code): then there is nothing left to commit.
    if (result.is_ok() && ambient.active()) {
      Status committed;
      try {
        committed = ambient.commit();
      } catch (...) {  // out of memory: this function must not throw
        committed = status_or_bare(Errc::unavailable, [] { return describe_current_exception(); });
      }
      if (!committed.ok()) {
        // The reason only if memory allows: this function must not throw.
        result = HandlerResult::error(std::string());
        best_effort([&] {
          result = HandlerResult::error("commit of the events it emitted failed: " +
                                        committed.to_string());
        });
        ambient.terminate();
      }
    } else if (!result.is_ok()) {
      ambient.terminate();  // a retry's next attempt starts from a fresh buffer
    }
    ambient = std::move(saved);
    std::chrono::nanoseconds delay{0};
    if (result.kind() == HandlerResult::Kind::retry) retrying = schedule_retry(invocation, delay);
    if (report)
      best_effort([&] {
        const auto duration = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                  std::chrono::steady_clock::now() - started)
                                  .count();
        switch (result.kind()) {
          case HandlerResult::Kind::ok:
            events::kHandlerSuccess.execute({{"duration", duration}},
                                            {{"handler", entry.name}, {"event", event.name.str()}});
            break;
          case HandlerResult::Kind::error:
          case HandlerResult::Kind::retry: {
            nlohmann::json measurements{{"duration", duration}};
            if (retrying) measurements["delay"] = delay.count();
            events::kHandlerError.execute(std::move(measurements), {{"handler", entry.name},
                                                                    {"event", event.name.str()},
                                                                    {"reason", result.reason()},
                                                                    {"attempt", attempt},
                                                                    {"retrying", retrying}});
            break;
          }
          case HandlerResult::Kind::ignored:
            events::kHandlerIgnored.execute({{"count", 1}},
                                            {{"handler", entry.name}, {"event", event.name.str()}});
            break;
        }
      });
  }
  if (retrying) return false;
  // The event's settlement (when its commit asked for one) before the drain watermark moves,
  // so a drain that returns has seen every callback of what it waited for.
  invocation.settle.reset();
  complete(seq);
  return true;
}

bool HandlerDispatcher::schedule_retry(Invocation& invocation,
                                       std::chrono::nanoseconds& delay) noexcept {
  if (retry_.max_attempts != 0 && invocation.attempt >= retry_.max_attempts) return false;
  try {
    {
      std::lock_guard lock(mutex_);
      if (abandoned_) return false;
      delay = backoff_delay(retry_, invocation.attempt, random_);
      const Clock::time_point due = clock_->now() + delay;
      ++invocation.attempt;
      retries_.emplace(due, std::move(invocation));
    }
    // Every idle worker re-reads the earliest due time (one may be sleeping until a later
    // one).
    work_ready_.notify_all();
    return true;
  } catch (...) {
    return false;  // no memory for the entry: the attempt counts as the last one
  }
}

void HandlerDispatcher::complete(std::uint64_t seq) noexcept {
  {
    std::lock_guard lock(mutex_);
    outstanding_.erase(seq);
  }
  changed_.notify_all();
}

void HandlerDispatcher::worker_loop() {
  struct Exit {
    HandlerDispatcher& self;
    ~Exit() {
      {
        std::lock_guard lock(self.mutex_);
        ++self.exited_;
      }
      self.changed_.notify_all();
    }
  } on_exit{*this};
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mutex_);
      for (;;) {
        if (!tasks_.empty()) {
          task = std::move(tasks_.front());
          tasks_.pop_front();
          break;
        }
        if (!retries_.empty()) {
          // The earliest retry: run it once due; abandoned, at once (invoke() drops it).
          const auto first = retries_.begin();
          if (abandoned_ || clock_->now() >= first->first) {
            task = make_task(std::move(first->second));
            retries_.erase(first);
            break;
          }
          // Until it is due, a new task or retry, the clock moving, or abandon().
          const Clock::time_point wake = clock_->wake_time(first->first);
          if (wake == Clock::time_point::max()) {
            work_ready_.wait(lock);
          } else {
            work_ready_.wait_until(lock, wake);
          }
          continue;
        }
        if (stopping_) return;  // nothing left to run, and no retry waiting
        work_ready_.wait(lock);
      }
    }
    task();
  }
}

bool HandlerDispatcher::idle() const {
  std::lock_guard lock(mutex_);
  return outstanding_.empty();
}

bool HandlerDispatcher::wait_idle(Deadline deadline) {
  std::unique_lock lock(mutex_);
  const std::uint64_t target = next_seq_;  // exactly the invocations submitted so far
  return changed_.wait_until(
      lock, deadline, [&] { return outstanding_.empty() || *outstanding_.begin() >= target; });
}

Status HandlerDispatcher::terminate(Deadline deadline) {
  std::unique_lock lock(mutex_);
  stopping_ = true;
  work_ready_.notify_all();
  changed_.notify_all();
  const bool exited =
      changed_.wait_until(lock, deadline, [&] { return exited_ == workers_.size(); });
  if (exited) {
    lock.unlock();
    join();
    return {};
  }
  // Out of time: what has not started will not run, nor will waiting retries (each still
  // completes its bookkeeping, quickly); the running invocations are joined by join().
  abandoned_ = true;
  const std::size_t running = outstanding_.size();
  const std::size_t waiting = retries_.size();
  lock.unlock();
  work_ready_.notify_all();
  std::string message = std::to_string(running) + " handler invocations had not finished";
  if (waiting > 0) message += " (" + std::to_string(waiting) + " waiting for a retry)";
  return Status(Errc::timeout, message + "; those not started were dropped");
}

void HandlerDispatcher::abandon() {
  {
    std::lock_guard lock(mutex_);
    abandoned_ = true;
  }
  changed_.notify_all();
  work_ready_.notify_all();  // waiting retries are released (and dropped) at once
}

void HandlerDispatcher::join() {
  clock_subscription_.reset();  // its callback must not run while members go away
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    abandoned_ = true;  // waiting retries are dropped: nothing waits for the clock any more
  }
  work_ready_.notify_all();
  changed_.notify_all();
  for (auto& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
}

}  // namespace emissions::detail
