#include "handler_dispatcher.hpp"

#include <chrono>
#include <set>

#include "core.hpp"
#include "emissions/ambient.hpp"
#include "emissions/telemetry.hpp"
#include "emissions/transaction.hpp"
#include "telemetry/events.hpp"
#include "transaction_access.hpp"

namespace emissions::detail {

HandlerDispatcher::HandlerDispatcher(const std::vector<std::shared_ptr<Handler>>& handlers,
                                     std::size_t threads, std::size_t max_in_flight)
    : max_in_flight_(max_in_flight) {
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
  workers_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i)
    workers_.emplace_back([this] { worker_loop(); });
}

HandlerDispatcher::~HandlerDispatcher() {
  terminate();
}

bool HandlerDispatcher::interested(const Event& event) const {
  return subscriptions_.find(event.name) != subscriptions_.end();
}

Status HandlerDispatcher::handle_events(std::span<const Event> batch) {
  // Invocations outlive this call, so they share one copy of the batch.
  auto events = std::make_shared<const std::vector<Event>>(batch.begin(), batch.end());
  const int depth = delivering_depth();
  for (std::size_t i = 0; i < events->size(); ++i) {
    const auto it = subscriptions_.find((*events)[i].name);
    if (it == subscriptions_.end()) continue;
    for (Entry* entry : it->second)
      submit(Invocation{entry, events, i, depth});
  }
  return {};
}

void HandlerDispatcher::submit(Invocation invocation) {
  {
    std::unique_lock lock(mutex_);
    // Backpressure: wait for room rather than queueing without bound.
    changed_.wait(lock, [&] { return submitted_ - completed_ < max_in_flight_ || stopping_; });
    ++submitted_;
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
  std::lock_guard lock(mutex_);
  if (entry->ordered) {
    tasks_.emplace_back(
        [this, inv = std::move(invocation)]() mutable { run_ordered(std::move(inv)); });
  } else {
    tasks_.emplace_back([this, inv = std::move(invocation)] { invoke(inv); });
  }
  work_ready_.notify_one();
}

void HandlerDispatcher::run_ordered(Invocation invocation) {
  Entry* entry = invocation.entry;
  for (;;) {
    invoke(invocation);
    std::unique_lock strand(entry->mutex);
    if (entry->pending.empty()) {
      entry->running = false;
      return;
    }
    invocation = std::move(entry->pending.front());
    entry->pending.pop_front();
  }
}

void HandlerDispatcher::invoke(const Invocation& invocation) noexcept {
  const Event& event = (*invocation.events)[invocation.index];
  Entry& entry = *invocation.entry;
  std::shared_ptr<Core> core = core_.lock();
  if (core) {
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
    } catch (const std::exception& e) {
      result = HandlerResult::error(e.what());
    } catch (...) {
      result = HandlerResult::error("unknown exception");
    }
    if (result.is_ok()) {
      if (Status committed = ambient.commit(); !committed.ok()) {
        result = HandlerResult::error("commit of the events it emitted failed: " +
                                      committed.to_string());
        ambient.terminate();
      }
    } else {
      ambient.terminate();
    }
    ambient = std::move(saved);
    if (report) {
      const auto duration = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                std::chrono::steady_clock::now() - started)
                                .count();
      switch (result.kind()) {
        case HandlerResult::Kind::ok:
          events::kHandlerSuccess.execute({{"duration", duration}},
                                          {{"handler", entry.name}, {"event", event.name.str()}});
          break;
        case HandlerResult::Kind::error:
          events::kHandlerError.execute(
              {{"duration", duration}},
              {{"handler", entry.name}, {"event", event.name.str()}, {"reason", result.reason()}});
          break;
        case HandlerResult::Kind::ignored:
          events::kHandlerIgnored.execute({{"count", 1}},
                                          {{"handler", entry.name}, {"event", event.name.str()}});
          break;
      }
    }
  }
  std::lock_guard lock(mutex_);
  ++completed_;
  changed_.notify_all();
}

void HandlerDispatcher::worker_loop() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mutex_);
      work_ready_.wait(lock, [&] { return !tasks_.empty() || stopping_; });
      if (tasks_.empty()) return;  // stopping, and nothing left to run
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

bool HandlerDispatcher::idle() const {
  std::lock_guard lock(mutex_);
  return submitted_ == completed_;
}

bool HandlerDispatcher::wait_idle(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  const std::uint64_t target = submitted_;
  return changed_.wait_until(lock, deadline, [&] { return completed_ >= target; });
}

void HandlerDispatcher::terminate() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
  }
  work_ready_.notify_all();
  changed_.notify_all();
  for (auto& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
  workers_.clear();
}

}  // namespace emissions::detail
