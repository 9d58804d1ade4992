#include "demo_adapters.hpp"

#include <optional>
#include <thread>

namespace demo {

emissions::Status Measured::handle_events(std::span<const emissions::Event> batch) {
  emissions::Status status = inner_->handle_events(batch);
  if (!status.ok()) return status;
  // One clock read per batch: every event of the batch was delivered when the call returned.
  const std::int64_t delivered_at = steady_now_ns();
  for (const emissions::Event& event : batch) {
    const std::optional<std::size_t> slot = CommitLog::slot_of(event);
    if (!slot) continue;
    if (const std::optional<std::int64_t> committed = commits_->committed_at(*slot)) {
      latency_.record(delivered_at - *committed);
    }
  }
  return status;
}

emissions::Status Summary::handle_events(std::span<const emissions::Event> batch) {
  for (const emissions::Event& event : batch) {
    ++counts_[event.name];
    if (event.name == order_confirmed_) {
      revenue_cents_ += event.payload.value("total_cents", std::int64_t{0});
    }
  }
  return {};
}

std::map<std::string, std::uint64_t> Summary::counts() const {
  std::map<std::string, std::uint64_t> sorted;
  for (const auto& [name, count] : counts_)
    sorted.emplace(name.str(), count);
  return sorted;
}

emissions::Status SlowArchive::handle_events(std::span<const emissions::Event> batch) {
  std::this_thread::sleep_for(per_event_ * static_cast<std::int64_t>(batch.size()));
  return {};
}

}  // namespace demo
