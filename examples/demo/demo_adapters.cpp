#include "demo_adapters.hpp"

#include <optional>
#include <thread>

namespace demo {

void Measured::deliver(emissions::Delivery delivery) {
  std::vector<std::size_t> slots;
  slots.reserve(delivery.events().size());
  for (const emissions::Event& event : delivery.events()) {
    if (const std::optional<std::size_t> slot = CommitLog::slot_of(event)) slots.push_back(*slot);
  }
  if (auto* async = dynamic_cast<emissions::AsyncAdapter*>(inner_.get())) {
    async->deliver(std::move(delivery));  // it settles each event itself
    record(slots);
    return;
  }
  const emissions::Status status = inner_->handle_events(delivery.events());
  if (!status.ok()) {
    delivery.fail(status);
    return;
  }
  record(slots);
  delivery.ack();
}

void Measured::record(const std::vector<std::size_t>& slots) {
  // One clock read per batch: every event of the batch was handed over when the call returned.
  const std::int64_t delivered_at = steady_now_ns();
  for (const std::size_t slot : slots) {
    if (const std::optional<std::int64_t> committed = commits_->committed_at(slot)) {
      latency_.record(delivered_at - *committed);
    }
  }
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
