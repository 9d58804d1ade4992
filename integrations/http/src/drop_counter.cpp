#include "drop_counter.hpp"

#include <algorithm>
#include <cstdint>

#include "emissions/telemetry.hpp"

namespace emissions::http::detail {

// The handler id is made unique by the shared state's address (no process-wide counter):
// no two live counters share it, and a dead one's id was detached with it.
DropCounter::DropCounter()
    : id_("emissions.http.drops/" +
          std::to_string(reinterpret_cast<std::uintptr_t>(shared_.get()))) {
  std::weak_ptr<Shared> weak = shared_;
  auto handler = [weak](const telemetry::EventName&, const nlohmann::json& measurements,
                        const nlohmann::json& metadata) {
    // Never throws: an exception would detach the handler for good. Drops without an
    // adapter (not_started, cascade_limit) are not an adapter's: they are not counted here.
    try {
      const auto adapter = metadata.find("adapter");
      if (adapter == metadata.end() || !adapter->is_string()) return;
      const auto reason = metadata.find("reason");
      const auto count = measurements.find("count");
      std::uint64_t n = 1;
      if (count != measurements.end() && count->is_number_unsigned()) {
        n = count->get<std::uint64_t>();
      } else if (count != measurements.end() && count->is_number_integer()) {
        n = static_cast<std::uint64_t>(std::max<std::int64_t>(0, count->get<std::int64_t>()));
      }
      const auto shared = weak.lock();
      if (!shared) return;
      std::string why =
          reason != metadata.end() && reason->is_string() ? reason->get<std::string>() : "unknown";
      std::lock_guard lock(shared->mu);
      shared->counts[{adapter->get<std::string>(), std::move(why)}] += n;
    } catch (...) {  // out of memory: this drop is not counted by reason (stats() has it)
    }
  };
  attached_ = telemetry::attach_many(
                  id_, {{"emissions", "event", "dropped"}, {"emissions", "spool", "dropped"}},
                  std::move(handler))
                  .ok();
}

DropCounter::~DropCounter() {
  if (attached_) (void)telemetry::detach(id_);
}

DropCounter::Counts DropCounter::counts() const {
  std::lock_guard lock(shared_->mu);
  return shared_->counts;
}

}  // namespace emissions::http::detail
