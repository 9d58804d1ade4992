// FaultyAdapter: a scripted, misbehaving AsyncAdapter for resilience tests.
#include "emissions/testing/faulty_adapter.hpp"

#include <exception>
#include <stdexcept>
#include <string>
#include <utility>

namespace emissions::testing {
namespace {

void check_number(std::uint64_t n, const char* what) {
  if (n == 0) {
    throw std::invalid_argument(std::string("FaultyAdapter::") + what +
                                ": calls are numbered from 1 (got 0)");
  }
}

}  // namespace

FaultyAdapter::FaultyAdapter(std::string name)
    : name_(std::move(name)), event_rules_(std::make_shared<const EventRules>()) {}

FaultyAdapter::~FaultyAdapter() {
  std::vector<Plan> held;
  std::deque<Late> late;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  late_wake_.notify_all();
  if (late_thread_.joinable()) late_thread_.join();
  {
    std::lock_guard lock(mutex_);
    held.swap(held_);
    late.swap(late_queue_);
  }
  // `held` and `late` die here, with no lock held: their Deliveries abandon what is left.
}

// --- the script ---------------------------------------------------------------------------

FaultyAdapter& FaultyAdapter::fail_batch(std::uint64_t n, Status error) {
  check_number(n, "fail_batch");
  std::lock_guard lock(mutex_);
  fail_batches_[n] = std::move(error);
  return *this;
}

FaultyAdapter& FaultyAdapter::throw_on_batch(std::uint64_t n) {
  check_number(n, "throw_on_batch");
  std::lock_guard lock(mutex_);
  throw_batches_.insert(n);
  return *this;
}

FaultyAdapter& FaultyAdapter::fail_every(std::uint64_t k, Status error) {
  check_number(k, "fail_every");
  std::lock_guard lock(mutex_);
  fail_every_ = k;
  fail_every_error_ = std::move(error);
  return *this;
}

FaultyAdapter& FaultyAdapter::fail_events(EventPredicate predicate, Status error) {
  if (!predicate) throw std::invalid_argument("FaultyAdapter::fail_events: empty predicate");
  std::lock_guard lock(mutex_);
  auto rules = std::make_shared<EventRules>(*event_rules_);
  rules->push_back({std::move(predicate), std::move(error)});
  event_rules_ = std::move(rules);
  return *this;
}

FaultyAdapter& FaultyAdapter::stall() {
  std::lock_guard lock(mutex_);
  stalled_ = true;
  return *this;
}

std::size_t FaultyAdapter::release() {
  std::vector<Plan> released;
  {
    std::lock_guard lock(mutex_);
    stalled_ = false;
    released.swap(held_);
  }
  changed_.notify_all();
  for (Plan& plan : released)
    settle(plan);
  return released.size();
}

FaultyAdapter& FaultyAdapter::ack_late(std::chrono::milliseconds delay) {
  std::lock_guard lock(mutex_);
  late_ = true;
  late_delay_ = delay;
  if (!late_thread_.joinable() && !stopping_) late_thread_ = std::thread([this] { run_late(); });
  return *this;
}

FaultyAdapter& FaultyAdapter::ack_inline() {
  std::lock_guard lock(mutex_);
  late_ = false;
  return *this;
}

// --- AsyncAdapter -------------------------------------------------------------------------

Status FaultyAdapter::init() {
  {
    std::lock_guard lock(mutex_);
    ++inits_;
  }
  changed_.notify_all();
  return {};
}

Status FaultyAdapter::terminate(Deadline deadline) {
  (void)deadline;
  {
    std::lock_guard lock(mutex_);
    ++terminations_;
  }
  changed_.notify_all();
  return {};
}

void FaultyAdapter::deliver(Delivery delivery) {
  const std::span<const Event> events = delivery.events();
  std::vector<ReceivedEvent> copies;
  copies.reserve(events.size());
  for (const Event& e : events)
    copies.push_back({e, 0, delivery.attempt()});

  Plan plan{std::move(delivery), {}, {}};
  bool throws = false;
  std::shared_ptr<const EventRules> rules;
  std::uint64_t number = 0;
  {
    std::lock_guard lock(mutex_);
    number = ++batches_;
    for (ReceivedEvent& copy : copies) {
      copy.batch = number;
      received_.push_back(std::move(copy));
    }
    ++unsettled_;
    if (throw_batches_.count(number) != 0) {
      throws = true;
    } else if (auto it = fail_batches_.find(number); it != fail_batches_.end()) {
      plan.batch_error = it->second;
    } else if (fail_every_ != 0 && number % fail_every_ == 0) {
      plan.batch_error = fail_every_error_;
    } else {
      rules = event_rules_;
    }
  }
  changed_.notify_all();

  const std::string prefix = "FaultyAdapter '" + name_ + "': ";
  if (throws) {
    const std::string what = prefix + "scripted throw on batch " + std::to_string(number);
    plan.batch_error = Status(Errc::internal, what);
    settle(plan);
    throw std::runtime_error(what);
  }
  if (plan.batch_error.ok() && rules && !rules->empty()) {
    try {
      for (std::size_t i = 0; i < events.size(); ++i) {
        for (const EventRule& rule : *rules) {
          if (rule.predicate(events[i])) {
            plan.failing.emplace_back(i, rule.error);
            break;
          }
        }
      }
    } catch (const std::exception& e) {
      plan.failing.clear();
      plan.batch_error =
          Status(Errc::internal, prefix + "a fail_events predicate threw: " + e.what());
    }
  }

  {
    std::lock_guard lock(mutex_);
    if (stalled_) {
      held_.push_back(std::move(plan));
      return;
    }
    if (late_) {
      late_queue_.push_back({std::chrono::steady_clock::now() + late_delay_, std::move(plan)});
      late_wake_.notify_one();
      return;
    }
  }
  settle(plan);
}

void FaultyAdapter::settle(Plan& plan) {
  const std::span<const Event> events = plan.delivery.events();
  std::vector<bool> fails(events.size(), !plan.batch_error.ok());
  for (const auto& [index, error] : plan.failing)
    fails[index] = true;
  std::vector<Event> ok_events;
  std::vector<Event> bad_events;
  for (std::size_t i = 0; i < events.size(); ++i)
    (fails[i] ? bad_events : ok_events).push_back(events[i]);
  {
    std::lock_guard lock(mutex_);
    for (Event& e : ok_events)
      delivered_.push_back(std::move(e));
    for (Event& e : bad_events)
      failed_.push_back(std::move(e));
  }
  if (!plan.batch_error.ok()) {
    plan.delivery.fail(std::move(plan.batch_error));
  } else {
    for (auto& [index, error] : plan.failing)
      plan.delivery.fail(index, std::move(error));
    plan.delivery.ack();
  }
  {
    std::lock_guard lock(mutex_);
    --unsettled_;
  }
  changed_.notify_all();
}

void FaultyAdapter::run_late() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (late_queue_.empty()) {
      late_wake_.wait(lock, [&] { return stopping_ || !late_queue_.empty(); });
      continue;
    }
    const auto due = late_queue_.front().due;
    if (std::chrono::steady_clock::now() < due) {
      late_wake_.wait_until(lock, due, [&] { return stopping_; });
      continue;
    }
    Plan plan = std::move(late_queue_.front().plan);
    late_queue_.pop_front();
    lock.unlock();
    settle(plan);
    lock.lock();
  }
}

// --- observations -------------------------------------------------------------------------

std::vector<ReceivedEvent> FaultyAdapter::received() const {
  std::lock_guard lock(mutex_);
  return received_;
}

std::vector<Event> FaultyAdapter::delivered() const {
  std::lock_guard lock(mutex_);
  return delivered_;
}

std::vector<Event> FaultyAdapter::failed() const {
  std::lock_guard lock(mutex_);
  return failed_;
}

std::uint64_t FaultyAdapter::batches() const {
  std::lock_guard lock(mutex_);
  return batches_;
}

std::size_t FaultyAdapter::held() const {
  std::lock_guard lock(mutex_);
  return held_.size();
}

std::uint64_t FaultyAdapter::inits() const {
  std::lock_guard lock(mutex_);
  return inits_;
}

std::uint64_t FaultyAdapter::terminations() const {
  std::lock_guard lock(mutex_);
  return terminations_;
}

bool FaultyAdapter::wait_for_batches(std::uint64_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return batches_ >= n; });
}

bool FaultyAdapter::wait_for_settled(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return unsettled_ == 0; });
}

}  // namespace emissions::testing
