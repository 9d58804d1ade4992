// The demo's own adapters: a latency-measuring wrapper, the summary, the replicas and the
// deliberately slow archive. Each is a plain emissions::Adapter; none needs a lock, because
// the pipeline calls one adapter from one consumer thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "emissions/adapter.hpp"
#include "emissions/delivery.hpp"
#include "emissions/event.hpp"
#include "emissions/status.hpp"
#include "latency.hpp"

namespace demo {

// Forwards every call to `inner` and records, for each event, the time from its request's
// commit to the end of the delivery call (for a synchronous inner, only for the events it
// handled successfully). Lets us measure adapters we did not write, such as
// emissions::adapters::JsonLines (asynchronous: it settles each event itself).
class Measured final : public emissions::AsyncAdapter {
 public:
  Measured(std::shared_ptr<emissions::Adapter> inner, std::shared_ptr<const CommitLog> commits)
      : inner_(std::move(inner)), commits_(std::move(commits)) {}

  emissions::Status init() override { return inner_->init(); }
  [[nodiscard]] bool interested(const emissions::Event& event) const override {
    return inner_->interested(event);
  }
  void deliver(emissions::Delivery delivery) override;
  emissions::Status flush(emissions::Deadline deadline) override { return inner_->flush(deadline); }
  emissions::Status terminate(emissions::Deadline deadline) override {
    return inner_->terminate(deadline);
  }
  [[nodiscard]] std::string_view name() const override { return inner_->name(); }

  // Read once the emitter has shut down (its consumer thread is joined by then).
  [[nodiscard]] const LatencyHistogram& latency() const noexcept { return latency_; }

 private:
  void record(const std::vector<std::size_t>& slots);

  std::shared_ptr<emissions::Adapter> inner_;
  std::shared_ptr<const CommitLog> commits_;
  LatencyHistogram latency_;
};

// What the business would watch: how many of each event arrived, and the revenue of
// confirmed orders. Read the accessors once the emitter has shut down.
class Summary final : public emissions::Adapter {
 public:
  emissions::Status handle_events(std::span<const emissions::Event> batch) override;
  [[nodiscard]] std::string_view name() const override { return "summary"; }

  // Event counts by name, sorted by name.
  [[nodiscard]] std::map<std::string, std::uint64_t> counts() const;
  [[nodiscard]] std::int64_t revenue_cents() const noexcept { return revenue_cents_; }

 private:
  emissions::EventName order_confirmed_ = "order_confirmed";
  std::unordered_map<emissions::EventName, std::uint64_t> counts_;
  std::int64_t revenue_cents_ = 0;
};

// Stands in for a read replica or a second event stream: accepts everything, does nothing.
// Several of them show that fan-out costs each adapter its own queue, not a copy per event.
class Replica final : public emissions::Adapter {
 public:
  explicit Replica(int number) : name_("replica-" + std::to_string(number)) {}
  emissions::Status handle_events(std::span<const emissions::Event> batch) override {
    (void)batch;
    return {};
  }
  [[nodiscard]] std::string_view name() const override { return name_; }

 private:
  std::string name_;
};

// A remote archive that answers slowly: each event of a batch costs `per_event`. Given a
// small drop_oldest queue it shows that a slow destination costs bounded memory and counted
// drops, and never slows the request threads or the other adapters.
class SlowArchive final : public emissions::Adapter {
 public:
  explicit SlowArchive(std::chrono::microseconds per_event) : per_event_(per_event) {}
  emissions::Status handle_events(std::span<const emissions::Event> batch) override;
  [[nodiscard]] std::string_view name() const override { return "slow_archive"; }

 private:
  std::chrono::microseconds per_event_;
};

}  // namespace demo
