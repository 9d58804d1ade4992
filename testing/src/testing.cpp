#include "emissions/testing.hpp"

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "common/no_destroy.hpp"
#include "emissions/ambient.hpp"
#include "pipeline/delivery_state.hpp"

namespace emissions::testing {

// --- deliver_now ---------------------------------------------------------------------

Status deliver_now(AsyncAdapter& adapter, std::span<const Event> events) {
  // A delivery of its own, attached to no pipeline; it owns a copy of the events, so the
  // adapter may keep it as long as it likes. Settlements that come later are not waited for.
  std::shared_ptr<detail::DeliveryState> state;
  try {
    state = detail::make_detached_delivery(adapter.name(),
                                           std::vector<Event>(events.begin(), events.end()));
  } catch (const std::exception& e) {
    return Status(Errc::internal, std::string("deliver_now: ") + e.what());
  }
  try {
    adapter.deliver(detail::DeliveryAccess::make(state));
  } catch (const std::exception& e) {
    return Status(Errc::internal, std::string("deliver() threw: ") + e.what());
  }
  if (state->failed.load() == 0) return {};
  if (state->unsettled.load() == 0 && !state->first_error.ok()) return state->first_error;
  return Status(Errc::internal, "some events failed");
}

// --- TestAdapter ------------------------------------------------------------------------

Status TestAdapter::handle_events(std::span<const Event> batch) {
  {
    std::lock_guard lock(mutex_);
    events_.insert(events_.end(), batch.begin(), batch.end());
    ++batches_;
  }
  changed_.notify_all();
  return {};
}

std::vector<Event> TestAdapter::events() const {
  std::lock_guard lock(mutex_);
  return events_;
}

std::vector<Event> TestAdapter::events_from(std::size_t first) const {
  std::lock_guard lock(mutex_);
  if (first >= events_.size()) return {};
  return {events_.begin() + static_cast<std::ptrdiff_t>(first), events_.end()};
}

std::size_t TestAdapter::size() const {
  std::lock_guard lock(mutex_);
  return events_.size();
}

std::uint64_t TestAdapter::batches() const {
  std::lock_guard lock(mutex_);
  return batches_;
}

void TestAdapter::clear() {
  {
    std::lock_guard lock(mutex_);
    events_.clear();
  }
  changed_.notify_all();
}

namespace {

// --- the process-wide emitter -----------------------------------------------------------

struct Installed {
  std::shared_ptr<TestAdapter> adapter;
  std::shared_ptr<Emitter> emitter;
};

struct Global {
  std::mutex mutex;
  Installed installed;
  bool teardown_at_exit = false;
};

// Never destroyed: teardown at exit runs from an atexit handler instead (see setup()), so
// nothing here depends on the order in which static objects are destroyed.
Global& global() {
  static emissions::detail::NoDestroy<Global> holder;
  return *holder;
}

// A copy of the current pair, so a concurrent teardown() cannot free it under a caller.
Installed installed() {
  Global& g = global();
  std::lock_guard lock(g.mutex);
  return g.installed;
}

Installed require_installed(const char* function) {
  Installed current = installed();
  if (!current.emitter) {
    throw std::logic_error(std::string("emissions::testing::") + function +
                           "() needs emissions::testing::setup() first");
  }
  return current;
}

void teardown_at_exit() {
  teardown();
}

// --- failure messages -------------------------------------------------------------------

constexpr std::size_t kMaxNamesListed = 50;
constexpr std::size_t kMaxPayloadsListed = 20;
constexpr std::size_t kMaxPayloadChars = 300;

std::string quoted(EventName name) {
  return nlohmann::json(name.str()).dump();
}

std::string payload_text(const Event& event) {
  std::string text;
  try {
    text = event.payload.dump();
  } catch (const std::exception& e) {
    return std::string("<payload not printable: ") + e.what() + ">";
  }
  if (text.size() > kMaxPayloadChars) {
    text.resize(kMaxPayloadChars);
    text += "...";
  }
  return text;
}

// "Emitted (3): a, b, a" or "Nothing was emitted."
std::string list_names(const std::vector<Event>& events) {
  if (events.empty()) return "Nothing was emitted.";
  std::string out = "Emitted (" + std::to_string(events.size()) + "): ";
  const std::size_t shown = std::min(events.size(), kMaxNamesListed);
  for (std::size_t i = 0; i < shown; ++i) {
    if (i > 0) out += ", ";
    out += events[i].name.str();
  }
  if (shown < events.size()) out += ", ... and " + std::to_string(events.size() - shown) + " more";
  return out;
}

// One line per event named `name`: "  {payload}".
std::string list_payloads(const std::vector<Event>& events, EventName name) {
  std::string out;
  std::size_t listed = 0;
  std::size_t matching = 0;
  for (const Event& e : events) {
    if (e.name != name) continue;
    if (++matching > kMaxPayloadsListed) continue;
    out += "\n  " + payload_text(e);
    ++listed;
  }
  if (matching > listed) out += "\n  ... and " + std::to_string(matching - listed) + " more";
  return out;
}

std::string drain_note(const Status& drained) {
  return drained.ok() ? std::string()
                      : "\n(The emitter did not drain: " + drained.to_string() + ")";
}

// --- the checks -------------------------------------------------------------------------

::testing::AssertionResult check_emitted(const TestAdapter& adapter, Emitter& emitter,
                                         EventName name, const EventPredicate* predicate,
                                         std::chrono::milliseconds timeout) {
  if (predicate != nullptr && !*predicate) {
    return ::testing::AssertionFailure()
           << "assert_emitted(" << quoted(name) << ", predicate): the predicate is empty";
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::size_t seen = 0;  // events [0, seen) have been looked at
  std::size_t named = 0;
  std::string predicate_error;
  // Looks at the events that arrived since the last call; the predicate runs here, on this
  // thread and outside the adapter's lock, once per event.
  const auto find_match = [&]() -> std::optional<Event> {
    if (adapter.size() < seen) seen = 0;  // clear() ran meanwhile: start over
    std::vector<Event> fresh = adapter.events_from(seen);
    seen += fresh.size();
    for (Event& e : fresh) {
      if (e.name != name) continue;
      ++named;
      if (predicate == nullptr) return std::move(e);
      try {
        if ((*predicate)(e)) return std::move(e);
      } catch (const std::exception& ex) {
        if (predicate_error.empty()) {
          predicate_error = "\nThe predicate threw on event " + e.id.str() + ": " + ex.what();
        }
      } catch (...) {
        if (predicate_error.empty()) {
          predicate_error = "\nThe predicate threw a non-standard exception on event " + e.id.str();
        }
      }
    }
    return std::nullopt;
  };
  const auto passed = [&](const Event& e) {
    return ::testing::AssertionSuccess()
           << "An event named " << quoted(name) << (predicate ? " matching the predicate" : "")
           << " was emitted, with payload " << payload_text(e);
  };

  if (auto match = find_match()) return passed(*match);
  // Everything committed before this call is delivered once drain() returns.
  const Status drained = emitter.drain(std::max(timeout, kDrainTimeout));
  if (auto match = find_match()) return passed(*match);
  // Then wait for events committed meanwhile, by other threads.
  while (true) {
    const std::size_t known = seen;
    const bool more = adapter.wait_until(
        [known](std::span<const Event> events) { return events.size() != known; }, deadline);
    if (auto match = find_match()) return passed(*match);
    if (!more) break;
  }

  const std::vector<Event> all = adapter.events();
  ::testing::AssertionResult failure = ::testing::AssertionFailure();
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count();
  if (predicate == nullptr) {
    failure << "Expected an event named " << quoted(name) << " to be emitted (waited " << waited
            << " ms), but none was.\n"
            << list_names(all);
  } else {
    failure << "Expected an event named " << quoted(name)
            << " matching the predicate to be emitted (waited " << waited << " ms), but ";
    if (named == 0) {
      failure << "none was emitted at all.";
    } else if (named == 1) {
      failure << "the one emitted did not match. Its payload:" << list_payloads(all, name);
    } else {
      failure << "none of the " << named
              << " emitted matched. Their payloads:" << list_payloads(all, name);
    }
    failure << predicate_error << "\n" << list_names(all);
  }
  return failure << drain_note(drained);
}

::testing::AssertionResult check_not_emitted(const TestAdapter& adapter, Emitter& emitter,
                                             EventName name) {
  const Status drained = emitter.drain(kDrainTimeout);
  if (!drained.ok()) {
    return ::testing::AssertionFailure()
           << "Cannot tell whether an event named " << quoted(name)
           << " was emitted: the emitter did not drain (" << drained.to_string() << ").\n"
           << list_names(adapter.events());
  }
  const std::vector<Event> all = adapter.events();
  const auto count = static_cast<std::size_t>(
      std::count_if(all.begin(), all.end(), [&](const Event& e) { return e.name == name; }));
  if (count == 0) {
    return ::testing::AssertionSuccess()
           << "No event named " << quoted(name) << " was emitted. " << list_names(all);
  }
  return ::testing::AssertionFailure()
         << "Expected no event named " << quoted(name) << " to be emitted, but " << count
         << (count == 1 ? " was" : " were") << ". Payloads:" << list_payloads(all, name) << "\n"
         << list_names(all);
}

}  // namespace

// --- process-wide functions -------------------------------------------------------------

Emitter& setup(Config config) {
  auto adapter = std::make_shared<TestAdapter>();
  config.adapters.insert(config.adapters.begin(), Config::AdapterEntry{adapter, {}});
  config.make_default = true;
  // Built before the old one goes, so a ConfigError leaves the previous setup in place.
  auto emitter = std::make_shared<Emitter>(std::move(config));

  Installed previous;
  Global& g = global();
  {
    std::lock_guard lock(g.mutex);
    previous = std::exchange(g.installed, Installed{adapter, emitter});
    if (!g.teardown_at_exit) {
      // Registered after the library's own statics exist (the Emitter above created them),
      // so it runs before they are destroyed: the emitter shuts down while they still work.
      g.teardown_at_exit = std::atexit(teardown_at_exit) == 0;
    }
  }
  previous = {};  // shuts the old emitter down (outside the lock: it may take a while)
  // Shutting the old one down may have cleared the default; make sure ours is it.
  emitter->make_default();
  return *emitter;
}

void teardown() {
  Installed previous;
  {
    Global& g = global();
    std::lock_guard lock(g.mutex);
    previous = std::exchange(g.installed, Installed{});
  }
  // `previous` goes out of scope here: the emitter shuts down, outside the lock.
}

void reset() {
  const Installed current = require_installed("reset");
  if (const Status drained = current.emitter->drain(kDrainTimeout); !drained.ok()) {
    ADD_FAILURE() << "emissions::testing::reset(): the emitter did not drain: "
                  << drained.to_string();
  }
  current.adapter->clear();
  emissions::terminate();
}

std::vector<Event> emitted() {
  const Installed current = require_installed("emitted");
  if (const Status drained = current.emitter->drain(kDrainTimeout); !drained.ok()) {
    ADD_FAILURE() << "emissions::testing::emitted(): the emitter did not drain: "
                  << drained.to_string();
  }
  return current.adapter->events();
}

Emitter& emitter() {
  return *require_installed("emitter").emitter;
}

TestAdapter& adapter() {
  return *require_installed("adapter").adapter;
}

::testing::AssertionResult assert_emitted(EventName name, std::chrono::milliseconds timeout) {
  const Installed current = installed();
  if (!current.emitter)
    return ::testing::AssertionFailure() << "emissions::testing::setup() was not called";
  return check_emitted(*current.adapter, *current.emitter, name, nullptr, timeout);
}

::testing::AssertionResult assert_emitted(EventName name, const EventPredicate& predicate,
                                          std::chrono::milliseconds timeout) {
  const Installed current = installed();
  if (!current.emitter)
    return ::testing::AssertionFailure() << "emissions::testing::setup() was not called";
  return check_emitted(*current.adapter, *current.emitter, name, &predicate, timeout);
}

::testing::AssertionResult refute_emitted(EventName name) {
  const Installed current = installed();
  if (!current.emitter)
    return ::testing::AssertionFailure() << "emissions::testing::setup() was not called";
  return check_not_emitted(*current.adapter, *current.emitter, name);
}

::testing::AssertionResult assert_emitted(const TestAdapter& adapter, Emitter& emitter,
                                          EventName name, std::chrono::milliseconds timeout) {
  return check_emitted(adapter, emitter, name, nullptr, timeout);
}

::testing::AssertionResult assert_emitted(const TestAdapter& adapter, Emitter& emitter,
                                          EventName name, const EventPredicate& predicate,
                                          std::chrono::milliseconds timeout) {
  return check_emitted(adapter, emitter, name, &predicate, timeout);
}

::testing::AssertionResult refute_emitted(const TestAdapter& adapter, Emitter& emitter,
                                          EventName name) {
  return check_not_emitted(adapter, emitter, name);
}

}  // namespace emissions::testing
