// Internal: drops per (adapter, reason), counted from the telemetry events that report them
// ([emissions, event, dropped], one per event, and [emissions, spool, dropped], one per
// reclaim with a count) for emissions_dropped_events_total. stats() counts drops per adapter
// only; the reason is in the telemetry. Telemetry is process-wide: drops of another
// Emitter's adapter of the same name are counted too (render_metrics shows only the
// watched Emitter's adapters). No Boost here.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace emissions::http::detail {

class DropCounter {
 public:
  // (adapter, reason) -> events.
  using Counts = std::map<std::pair<std::string, std::string>, std::uint64_t>;

  // Attaches the telemetry handler (under an id of its own), so that drops are counted from
  // now on.
  DropCounter();
  // Detaches it. A call already under way on another thread may still finish; it only
  // touches state it shares ownership of.
  ~DropCounter();
  DropCounter(const DropCounter&) = delete;
  DropCounter& operator=(const DropCounter&) = delete;

  // What was counted so far. Thread-safe.
  [[nodiscard]] Counts counts() const;

 private:
  struct Shared {
    mutable std::mutex mu;
    Counts counts;
  };
  std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
  std::string id_;
  bool attached_ = false;
};

}  // namespace emissions::http::detail
