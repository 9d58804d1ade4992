// The telemetry registry: a copy-on-write table of attachments.
//
// Writers (attach, detach, a failing handler's removal) build a new immutable Table under
// the registry's write mutex and publish it. Readers (execute, handlers_for) copy the
// current shared_ptr under a short snapshot mutex and then work on that snapshot with no
// lock held, so handlers may re-enter the registry. A mutex-guarded copy rather than
// std::atomic<std::shared_ptr> because not every standard library ships the latter.
#include "emissions/telemetry.hpp"

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "no_destroy.hpp"
#include "time/system_time.hpp"

namespace emissions::telemetry {

namespace detail {
std::atomic<std::size_t> g_attached{0};
}  // namespace detail

namespace {

struct EventNameHash {
  static constexpr auto kGolden = static_cast<std::size_t>(0x9e3779b97f4a7c15ULL);
  std::size_t operator()(const EventName& name) const noexcept {
    std::size_t seed = name.size();
    for (const std::string& segment : name) {
      // boost-style mixing; segments are short, so hashing is cheap next to a handler call.
      seed ^= std::hash<std::string>{}(segment) + kGolden + (seed << 6) + (seed >> 2);
    }
    return seed;
  }
};

// One (id, event) attachment. The handler is shared between the entries of one id and
// between table versions, so copying a table never copies a std::function.
struct Entry {
  std::string id;
  std::shared_ptr<const Handler> handler;
};

struct Table {
  // Per event, entries in attach order: execute's iteration order.
  std::unordered_map<EventName, std::vector<Entry>, EventNameHash> by_event;
  // Per id, its events and handler, for detach and the id-in-use check.
  struct Attachment {
    std::vector<EventName> events;
    std::shared_ptr<const Handler> handler;
  };
  std::unordered_map<std::string, Attachment> by_id;
  std::size_t attachments = 0;  // number of (id, event) pairs
};

using Snapshot = std::shared_ptr<const Table>;

}  // namespace

struct ProbeAccess {
  static void refresh(Probe& probe, const Table* table) noexcept {
    const bool active =
        table != nullptr && table->by_event.find(probe.event_) != table->by_event.end();
    probe.active_.store(active, std::memory_order_relaxed);
  }
};

namespace {

struct Registry {
  // Serialises writers: the read-copy-update of the table happens entirely under it.
  std::mutex write_mutex;
  // Guards only the copy/replace of `table` itself; never held while calling out.
  std::mutex snapshot_mutex;
  Snapshot table;              // null while nothing is attached
  std::vector<Probe*> probes;  // guarded by write_mutex
};

// The registry is never destroyed: static destructors in other files (an emitter shutting
// down at exit) may still execute events after this file's statics would be gone.
Registry& registry() {
  static emissions::detail::NoDestroy<Registry> storage;
  return storage.value;
}

Snapshot load_table() {
  Registry& r = registry();
  std::lock_guard lock(r.snapshot_mutex);
  return r.table;
}

// Caller holds write_mutex. The caller also keeps the previous table alive in a variable
// that outlives its lock, so that handler destructors (user code, which may attach or
// detach) never run under a registry lock.
void publish_table(Snapshot next) {
  const std::size_t attachments = next ? next->attachments : 0;
  Registry& r = registry();
  {
    std::lock_guard lock(r.snapshot_mutex);
    r.table.swap(next);
  }
  detail::g_attached.store(attachments, std::memory_order_relaxed);
  for (Probe* probe : r.probes)
    ProbeAccess::refresh(*probe, r.table.get());
}

Status validate_id(const std::string& id) {
  if (id.empty()) return {Errc::invalid_argument, "handler id is empty"};
  return {};
}

Status validate_event(const EventName& event) {
  if (event.empty()) return {Errc::invalid_argument, "event name is empty"};
  for (std::size_t i = 0; i < event.size(); ++i) {
    if (event[i].empty()) {
      return {Errc::invalid_argument,
              "event name has an empty segment at index " + std::to_string(i)};
    }
  }
  return {};
}

nlohmann::json event_to_json(const EventName& event) {
  nlohmann::json out = nlohmann::json::array();
  for (const std::string& segment : event)
    out.push_back(segment);
  return out;
}

std::string describe(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown";
  }
}

// Caller holds write_mutex; `retired` receives the replaced table (see publish_table).
// With `expected`, removes `id` only while it is still attached with that handler.
Status remove_locked(const std::string& id, const std::shared_ptr<const Handler>* expected,
                     Snapshot& retired) {
  retired = load_table();
  const Snapshot& current = retired;
  if (!current) return {Errc::not_found, "no handler attached with id '" + id + "'"};
  const auto found = current->by_id.find(id);
  if (found == current->by_id.end()) {
    return {Errc::not_found, "no handler attached with id '" + id + "'"};
  }
  if (expected != nullptr && found->second.handler != *expected) {
    return {Errc::not_found, "handler id '" + id + "' was re-attached"};
  }
  auto next = std::make_shared<Table>(*current);
  for (const EventName& event : found->second.events) {
    const auto slot = next->by_event.find(event);
    if (slot == next->by_event.end()) continue;  // unreachable: by_id and by_event agree
    std::erase_if(slot->second, [&](const Entry& entry) { return entry.id == id; });
    if (slot->second.empty()) next->by_event.erase(slot);
  }
  next->attachments -= found->second.events.size();
  next->by_id.erase(id);
  publish_table(next->attachments == 0 ? nullptr : std::move(next));
  return {};
}

bool detach_if_same(const std::string& id, const std::shared_ptr<const Handler>& handler) {
  try {
    Snapshot retired;  // released after the lock
    std::lock_guard lock(registry().write_mutex);
    return remove_locked(id, &handler, retired).ok();
  } catch (...) {
    // Copying the table ran out of memory: the handler stays attached and will be
    // reported again on its next failure.
    return false;
  }
}

void report_failure(const std::string& id, const EventName& event,
                    const std::exception_ptr& error) noexcept {
  try {
    static const EventName kFailureEvent{"telemetry", "handler", "failure"};
    const nlohmann::json metadata{
        {"handler_id", id}, {"event_name", event_to_json(event)}, {"reason", describe(error)}};
    execute(kFailureEvent, nlohmann::json::object(), metadata);
  } catch (...) {
    // Out of memory while building the report: execute must not throw, so the report is
    // lost; the handler has already been detached.
  }
}

}  // namespace

Probe::Probe(EventName event) : event_(std::move(event)) {
  Registry& r = registry();
  std::lock_guard lock(r.write_mutex);
  r.probes.push_back(this);
  const Snapshot table = load_table();
  ProbeAccess::refresh(*this, table.get());
}

Probe::~Probe() {
  Registry& r = registry();
  std::lock_guard lock(r.write_mutex);
  std::erase(r.probes, this);
}

void Probe::execute(const nlohmann::json& measurements,
                    const nlohmann::json& metadata) const noexcept {
  telemetry::execute(event_, measurements, metadata);
}

Status attach(std::string id, EventName event, Handler handler) {
  std::vector<EventName> events;
  events.push_back(std::move(event));
  return attach_many(std::move(id), std::move(events), std::move(handler));
}

Status attach_many(std::string id, std::vector<EventName> events, Handler handler) {
  if (Status s = validate_id(id); !s.ok()) return s;
  if (events.empty()) return {Errc::invalid_argument, "no event names given"};
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (Status s = validate_event(events[i]); !s.ok()) {
      if (events.size() > 1) {
        return {Errc::invalid_argument, s.message() + " (event " + std::to_string(i) + ")"};
      }
      return s;
    }
    for (std::size_t j = 0; j < i; ++j) {
      // A duplicate would call the handler twice per execute; almost certainly a mistake.
      if (events[j] == events[i]) {
        return {Errc::invalid_argument,
                "event " + std::to_string(i) + " repeats event " + std::to_string(j)};
      }
    }
  }
  if (!handler) return {Errc::invalid_argument, "handler is empty"};

  auto shared_handler = std::make_shared<const Handler>(std::move(handler));
  Snapshot current;  // released after the lock
  std::lock_guard lock(registry().write_mutex);
  current = load_table();
  if (current && current->by_id.contains(id)) {
    return {Errc::already_exists, "handler id '" + id + "' is already attached"};
  }
  // Everything that can fail (allocation) happens on the private copy before it is
  // published, so attaching is all-or-nothing.
  auto next = current ? std::make_shared<Table>(*current) : std::make_shared<Table>();
  for (const EventName& event : events) {
    next->by_event[event].push_back(Entry{id, shared_handler});
  }
  next->attachments += events.size();
  next->by_id.emplace(std::move(id), Table::Attachment{std::move(events), shared_handler});
  publish_table(std::move(next));
  return {};
}

Status detach(const std::string& id) {
  Snapshot retired;  // released after the lock
  std::lock_guard lock(registry().write_mutex);
  return remove_locked(id, nullptr, retired);
}

void execute(const EventName& event, const nlohmann::json& measurements,
             const nlohmann::json& metadata) noexcept {
  if (!enabled()) return;
  // Holding the snapshot keeps every handler alive for this call even if it is detached
  // meanwhile (by itself, another handler or another thread).
  const Snapshot table = load_table();
  if (!table) return;
  const auto found = table->by_event.find(event);
  if (found == table->by_event.end()) return;
  for (const Entry& entry : found->second) {
    try {
      (*entry.handler)(event, measurements, metadata);
    } catch (...) {
      const std::exception_ptr error = std::current_exception();
      if (detach_if_same(entry.id, entry.handler)) report_failure(entry.id, event, error);
    }
  }
}

std::vector<std::string> handlers_for(const EventName& event) {
  std::vector<std::string> ids;
  const Snapshot table = load_table();
  if (!table) return ids;
  const auto found = table->by_event.find(event);
  if (found == table->by_event.end()) return ids;
  ids.reserve(found->second.size());
  for (const Entry& entry : found->second)
    ids.push_back(entry.id);
  return ids;
}

namespace detail {

EventName with_suffix(const EventName& prefix, const char* suffix) {
  EventName name;
  name.reserve(prefix.size() + 1);
  name.insert(name.end(), prefix.begin(), prefix.end());
  name.emplace_back(suffix);
  return name;
}

std::int64_t monotonic_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::int64_t span_start(const EventName& prefix, const nlohmann::json& metadata) noexcept {
  const std::int64_t start = monotonic_ns();
  try {
    const std::int64_t system_ns = emissions::detail::system_time_ns();
    execute(with_suffix(prefix, "start"),
            nlohmann::json{{"monotonic_time", start}, {"system_time", system_ns}}, metadata);
  } catch (...) {
    // Out of memory building the event: the span still runs, only this event is lost.
  }
  return start;
}

void span_stop(const EventName& prefix, const nlohmann::json& metadata,
               std::int64_t start_ns) noexcept {
  const std::int64_t now = monotonic_ns();
  try {
    execute(with_suffix(prefix, "stop"),
            nlohmann::json{{"duration", now - start_ns}, {"monotonic_time", now}}, metadata);
  } catch (...) {
    // Out of memory building the event: the span's result is still returned.
  }
}

void span_exception(const EventName& prefix, const nlohmann::json& metadata, std::int64_t start_ns,
                    std::exception_ptr error) noexcept {
  const std::int64_t now = monotonic_ns();
  try {
    nlohmann::json meta;
    if (metadata.is_object()) {
      meta = metadata;
    } else {
      meta = nlohmann::json::object();
      // A null metadata (from `{}`) is an empty object; anything else is kept, not dropped.
      if (!metadata.is_null()) meta["metadata"] = metadata;
    }
    meta["kind"] = "exception";
    meta["reason"] = describe(error);
    execute(with_suffix(prefix, "exception"),
            nlohmann::json{{"duration", now - start_ns}, {"monotonic_time", now}}, meta);
  } catch (...) {
    // Out of memory building the event: the caller still rethrows the original exception.
  }
}

}  // namespace detail

}  // namespace emissions::telemetry
