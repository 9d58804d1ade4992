// Delivery handles and their settlement.
#include "pipeline/delivery_state.hpp"

#include <bit>

#include "common/best_effort.hpp"
#include "common/exceptions.hpp"
#include "common/status_copy.hpp"
#include "pipeline/adapter_call.hpp"
#include "telemetry/events.hpp"

namespace emissions {

bool retriable(Errc code) noexcept {
  return code == Errc::unavailable || code == Errc::timeout || code == Errc::overloaded;
}

Status AsyncAdapter::handle_events(std::span<const Event> batch) {
  (void)batch;
  return Status(Errc::internal,
                "AsyncAdapter::handle_events is not used: the pipeline calls "
                "deliver()");
}

namespace detail {

DeliveryState::DeliveryState(std::shared_ptr<const DeliveryHome> delivery_home, Batch* batch_ref,
                             std::span<const Event> run, std::size_t position)
    : home(std::move(delivery_home)),
      shared(home->shared.get()),
      counters(home->counters.get()),
      window(home->window.get()),
      batch(batch_ref),
      events(run),
      ticket(position),
      unsettled(run.size()),
      retries(home->retries.get()) {
  const std::size_t words = (run.size() + 63) / 64;
  std::atomic<std::uint64_t>* storage = inline_words;
  std::size_t stride = kInlineWords;
  if (words > kInlineWords) {
    heap_words = std::make_unique<std::atomic<std::uint64_t>[]>(3 * words);
    storage = heap_words.get();
    stride = words;
  }
  settled_words = storage;
  unrecorded_words = storage + stride;
  unrecorded_retriable_words = storage + 2 * stride;
}

DeliveryState::~DeliveryState() {
  if (batch != nullptr) shared->release(batch);
}

namespace {

thread_local int t_settling_depth = 0;

// Counts a settlement under way on this thread for its scope (settling_depth()).
class SettlingScope {
 public:
  SettlingScope() noexcept { ++t_settling_depth; }
  ~SettlingScope() { --t_settling_depth; }
  SettlingScope(const SettlingScope&) = delete;
  SettlingScope& operator=(const SettlingScope&) = delete;
};

void report_dropped_event(const std::string& lane, const Event& event, const char* reason) {
  if (!events::kEventDropped.enabled()) return;
  best_effort([&] {
    events::kEventDropped.execute(
        {{"count", 1}}, {{"event_name", event.name.str()}, {"reason", reason}, {"adapter", lane}});
  });
}

}  // namespace

void credit_dead_letters(const Batch& batch, std::span<const Event> run) noexcept {
  const auto first = static_cast<std::size_t>(run.data() - batch.slots.data());
  for (std::size_t i = first; i < first + run.size() && i < batch.dead_letter_of.size(); ++i) {
    batch.dead_letter_of[i]->dead_lettered.fetch_add(1, std::memory_order_relaxed);
  }
}

int settling_depth() noexcept {
  return t_settling_depth;
}

std::size_t DeliveryState::settle(std::size_t index, Outcome outcome, Status* error,
                                  const char* reason) noexcept {
  const SettlingScope settling;
  const std::size_t first = index == kAll ? 0 : index;
  const std::size_t last = index == kAll ? events.size() : index + 1;
  if (first >= events.size()) return 0;
  // A failure the consumer decides on (retry, dead letter) is recorded, not counted.
  const bool defer = outcome == Outcome::failed && retries != nullptr;
  const bool notify = static_cast<bool>(on_settled);  // a detached delivery's listener
  const bool credit = outcome == Outcome::delivered && batch != nullptr &&
                      !batch->dead_letter_of.empty();  // a dead-letter lane's delivery
  const bool each = notify || defer || credit || outcome == Outcome::dropped;
  std::size_t count = 0;
  // Claim the range's bits a word at a time (first one wins), then, when something is done
  // per event, visit the events this call won, in order.
  for (std::size_t word = first / 64; word * 64 < last; ++word) {
    const std::size_t base = word * 64;
    const std::size_t lo = first > base ? first - base : 0;
    const std::size_t hi = last - base < 64 ? last - base : 64;
    const std::uint64_t mask = (hi == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << hi) - 1) &
                               ~((std::uint64_t{1} << lo) - 1);
    std::uint64_t won = mask & ~settled_words[word].fetch_or(mask, std::memory_order_acq_rel);
    count += static_cast<std::size_t>(std::popcount(won));
    for (; each && won != 0; won &= won - 1) {
      const std::size_t i = base + static_cast<std::size_t>(std::countr_zero(won));
      if (notify) {
        on_settled(i, outcome == Outcome::delivered, outcome == Outcome::failed ? error : nullptr,
                   std::chrono::milliseconds(retry_after_ms.load(std::memory_order_relaxed)));
      }
      if (outcome == Outcome::dropped) report_dropped_event(counters->name, events[i], reason);
      if (credit) credit_dead_letters(*batch, events.subspan(i, 1));
      if (defer) {
        try {
          std::lock_guard lock(failures_mutex);
          failures.push_back(
              {i, error != nullptr ? copy_or_bare(*error) : Status(Errc::internal, "failed")});
          deferred.store(true, std::memory_order_release);
        } catch (...) {
          // Out of memory for the entry: its bits stand for it, and the consumer decides it
          // with the rest (retried if its error was retriable), by its error's class alone.
          const std::uint64_t bit = std::uint64_t{1} << (i % 64);
          if (error != nullptr && retriable(error->code())) {
            unrecorded_retriable_words[i / 64].fetch_or(bit, std::memory_order_relaxed);
          }
          unrecorded_words[i / 64].fetch_or(bit, std::memory_order_release);
          deferred.store(true, std::memory_order_release);
        }
      }
    }
  }
  if (count == 0) return 0;
  switch (outcome) {
    case Outcome::delivered:
      counters->delivered.fetch_add(count, std::memory_order_relaxed);
      if (batch != nullptr) counters->record_latency(batch->committed_at, count);
      delivered.fetch_add(count, std::memory_order_relaxed);
      if (batch != nullptr && batch->tracker)
        batch->tracker->add(lane_index, SettlementTracker::Outcome::delivered, count);
      break;
    case Outcome::failed:
      if (!defer) {
        counters->failed.fetch_add(count, std::memory_order_relaxed);
        if (batch != nullptr && batch->tracker) {
          batch->tracker->add(lane_index, SettlementTracker::Outcome::failed, count);
        }
      }
      failed.fetch_add(count, std::memory_order_relaxed);
      if (error != nullptr && !has_error.exchange(true, std::memory_order_acq_rel)) {
        first_error = std::move(*error);
      }
      break;
    case Outcome::dropped:
      counters->dropped.fetch_add(count, std::memory_order_relaxed);
      if (batch != nullptr && batch->tracker) {
        batch->tracker->add(lane_index, SettlementTracker::Outcome::dropped, count);
      }
      break;
  }
  if (unsettled.fetch_sub(count, std::memory_order_acq_rel) == count) complete();
  return count;
}

std::size_t DeliveryState::take_failures(std::vector<FailedEvent>& out) noexcept {
  {
    std::lock_guard lock(failures_mutex);
    out.swap(failures);
  }
  std::size_t left_out = 0;
  const std::size_t words = (events.size() + 63) / 64;
  for (std::size_t word = 0; word < words; ++word) {
    // The failure's bit is set after its class's (release), and both before the settlement
    // counts it: taken with its class.
    std::uint64_t bits = unrecorded_words[word].exchange(0, std::memory_order_acquire);
    if (bits == 0) continue;
    const std::uint64_t again =
        unrecorded_retriable_words[word].fetch_and(~bits, std::memory_order_relaxed) & bits;
    for (; bits != 0; bits &= bits - 1) {
      const auto bit = static_cast<std::size_t>(std::countr_zero(bits));
      try {
        // A code-only Status allocates nothing; the entry may.
        out.push_back({word * 64 + bit,
                       Status((again >> bit & 1U) != 0 ? Errc::unavailable : Errc::internal, {})});
      } catch (...) {
        ++left_out;
      }
    }
  }
  return left_out;
}

bool DeliveryState::has_failures() noexcept {
  const std::size_t words = (events.size() + 63) / 64;
  for (std::size_t word = 0; word < words; ++word) {
    if (unrecorded_words[word].load(std::memory_order_acquire) != 0) return true;
  }
  std::lock_guard lock(failures_mutex);
  return !failures.empty();
}

std::size_t DeliveryState::drop_failures(const char* reason) noexcept {
  std::vector<FailedEvent> undecided;
  const std::size_t left_out = take_failures(undecided);
  const std::size_t count = undecided.size() + left_out;
  if (count == 0) return 0;
  for (const FailedEvent& f : undecided)
    report_dropped_event(counters->name, events[f.index], reason);
  counters->dropped.fetch_add(count, std::memory_order_relaxed);
  if (batch != nullptr && batch->tracker) {
    batch->tracker->add(lane_index, SettlementTracker::Outcome::dropped, count);
  }
  return count;
}

void DeliveryState::complete() noexcept {
  // Failures wait for the consumer's decision in its retry box; they enter it before the
  // delivery leaves the window, so a drain never sees neither.
  // (The happy path, nothing failed, takes no lock here.)
  bool decision_pending = false;  // queued for the consumer, which may wait for this slot
  if (retries != nullptr && deferred.load(std::memory_order_acquire)) {
    std::shared_ptr<DeliveryState> self;
    {
      std::lock_guard lock(window->mutex);
      for (const auto& open : window->open) {
        if (open.get() == this) self = open;
      }
    }
    const bool undecided = has_failures();
    if (undecided && self == nullptr) {
      (void)drop_failures("shutdown");  // not in a window: nobody will decide
    } else if (undecided) {
      bool queued = false;
      {
        std::lock_guard lock(retries->mutex);
        if (retries->wakeup != nullptr) {
          try {
            retries->undecided.push_back(self);
            retries->size.fetch_add(1, std::memory_order_seq_cst);
            retries->wakeup->notify();
            retries->wake.notify();
            window->freed.notify();  // a consumer waiting for room decides it first
            queued = true;
            decision_pending = true;
          } catch (...) {
          }
        }
      }
      // The pipeline is finished (or out of memory): nobody will decide; they are dropped.
      if (!queued) (void)drop_failures("shutdown");
    }
  }
  // Out of the window first, so the consumer and drains see the room at once.
  std::shared_ptr<DeliveryState> keep;  // the window's reference, dropped after the lock
  std::size_t left = 0;
  {
    std::lock_guard lock(window->mutex);
    auto& open = window->open;
    // At its slot (the window holds up to max_in_flight deliveries: a scan read all of them,
    // written by the consumer's core, on every completion).
    std::size_t i = window_slot;
    if (i >= open.size() || open[i].get() != this) {
      for (i = 0; i < open.size() && open[i].get() != this; ++i) {
      }
    }
    if (i < open.size()) {
      keep = std::move(open[i]);
      if (i + 1 != open.size()) {
        open[i] = std::move(open.back());
        open[i]->window_slot = i;
      }
      open.pop_back();
    }
    left = open.size();
    window->size.store(left, std::memory_order_seq_cst);
  }
  if (left <= window->resume_at || decision_pending) window->freed.notify();
  shared->progress.notify();
  const std::uint64_t ok = delivered.load(std::memory_order_relaxed);
  const std::uint64_t bad = failed.load(std::memory_order_relaxed);
  if ((ok != 0 || bad != 0) && delivery_reported()) {
    best_effort([&] {
      DeliveryOutcome outcome;
      if (handed_at != std::chrono::steady_clock::time_point{}) {
        outcome.duration_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                  std::chrono::steady_clock::now() - handed_at)
                                  .count();
      }
      if (ok != 0) report_delivery(counters->name, ok, outcome);
      if (bad != 0) {
        outcome.status = !first_error.ok() ? first_error : Status(Errc::internal, "failed");
        report_delivery(counters->name, bad, outcome);
      }
    });
  }
  // The events' storage goes back to the pool when the last handle is gone (~DeliveryState):
  // a settled handle's events() stay readable.
  (void)keep;
}

std::shared_ptr<DeliveryState> make_detached_delivery(std::string_view adapter_name,
                                                      std::vector<Event> events) {
  auto shared = std::make_shared<PipelineShared>();
  BatchPtr owned = shared->pool.acquire();
  owned->slots = std::move(events);
  owned->size = owned->slots.size();
  owned->plain = false;  // events of any kind, moved in whole
  owned->refs.store(1, std::memory_order_relaxed);
  Batch* batch = owned.release();
  const std::span<const Event> run(batch->slots.data(), batch->size);
  auto home = std::make_shared<DeliveryHome>();
  home->shared = shared;
  home->counters = std::make_shared<LaneCounters>(std::string(adapter_name));
  home->window = std::make_shared<Window>();
  auto state = std::make_shared<DeliveryState>(std::move(home), batch, run, 0);
  std::lock_guard lock(state->window->mutex);
  state->window_slot = 0;
  state->window->open.push_back(state);
  state->window->size.store(1, std::memory_order_seq_cst);
  return state;
}

Status deliver_detached(AsyncAdapter& adapter, std::vector<Event> events, std::uint32_t attempt,
                        DeliveryState::SettledCallback on_settled) noexcept {
  const std::size_t n = events.size();
  std::shared_ptr<DeliveryState> state;
  try {
    state = make_detached_delivery(adapter.name(), std::move(events));
  } catch (...) {
    Status error(Errc::internal, std::string());
    best_effort([&] { error = Status(Errc::internal, describe_current_exception()); });
    if (on_settled) {
      for (std::size_t i = 0; i < n; ++i)
        on_settled(i, false, &error, std::chrono::milliseconds(0));
    }
    return error;
  }
  state->batch->attempt = attempt;
  state->on_settled = std::move(on_settled);  // before anyone else sees the state
  try {
    adapter.deliver(DeliveryAccess::make(state));
  } catch (...) {
    Status error(Errc::internal, std::string());
    best_effort([&] { error = Status(Errc::internal, describe_current_exception()); });
    Status returned(Errc::internal, std::string());
    best_effort([&] { returned = error; });  // settle() may take its argument
    state->settle(DeliveryState::kAll, DeliveryState::Outcome::failed, &error, nullptr);
    return returned;
  }
  return {};
}

}  // namespace detail

// ---- the handle ------------------------------------------------------------------------

Delivery::Delivery() noexcept = default;
Delivery::Delivery(std::shared_ptr<detail::DeliveryState> state) noexcept
    : state_(std::move(state)) {}
Delivery::Delivery(Delivery&& other) noexcept = default;

namespace {

// Fails what `state` left unsettled: its handle is going away.
void abandon(detail::DeliveryState* state) noexcept {
  if (state == nullptr || state->unsettled.load(std::memory_order_acquire) == 0) return;
  // The code even when memory is short for the message (a default Status would be ok).
  Status abandoned = detail::status_or_bare(Errc::internal, [] { return "delivery abandoned"; });
  state->settle(detail::DeliveryState::kAll, detail::DeliveryState::Outcome::failed, &abandoned,
                nullptr);
}

// An ok Status passed to fail() is a caller's mistake; it still counts as a failure.
void make_failure(Status& error) noexcept {
  if (error.ok()) detail::best_effort([&] { error = Status(Errc::internal, "fail(ok)"); });
}

}  // namespace

Delivery& Delivery::operator=(Delivery&& other) noexcept {
  if (this != &other) {
    abandon(state_.get());
    state_ = std::move(other.state_);
  }
  return *this;
}

Delivery::~Delivery() {
  abandon(state_.get());
}

std::span<const Event> Delivery::events() const noexcept {
  return state_ ? state_->events : std::span<const Event>();
}

std::uint32_t Delivery::attempt() const noexcept {
  return state_ && state_->batch != nullptr ? state_->batch->attempt : 1;
}

void Delivery::ack() noexcept {
  if (state_) {
    state_->settle(detail::DeliveryState::kAll, detail::DeliveryState::Outcome::delivered, nullptr,
                   nullptr);
  }
}

void Delivery::ack(std::size_t index) noexcept {
  if (state_) {
    state_->settle(index, detail::DeliveryState::Outcome::delivered, nullptr, nullptr);
  }
}

void Delivery::fail(Status error) noexcept {
  if (!state_) return;
  make_failure(error);
  state_->settle(detail::DeliveryState::kAll, detail::DeliveryState::Outcome::failed, &error,
                 nullptr);
}

void Delivery::fail(std::size_t index, Status error) noexcept {
  if (!state_) return;
  make_failure(error);
  state_->settle(index, detail::DeliveryState::Outcome::failed, &error, nullptr);
}

void Delivery::retry_after(std::chrono::milliseconds delay) noexcept {
  if (!state_) return;
  std::int64_t current = state_->retry_after_ms.load(std::memory_order_relaxed);
  while (delay.count() > current &&
         !state_->retry_after_ms.compare_exchange_weak(current, delay.count())) {
  }
}

bool Delivery::settled() const noexcept {
  return !state_ || state_->unsettled.load(std::memory_order_acquire) == 0;
}

}  // namespace emissions
