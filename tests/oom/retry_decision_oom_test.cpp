// An asynchronous failure settled while the settling thread is out of memory (operator new
// replaced, in this executable alone: failing_allocations.hpp), in a pipeline that retries.
// The failure waits for the consumer's decision in an entry of DeliveryState::failures; when
// that entry could not be allocated, the event used to count as failed for good, undecided
// (no retry, no dead letter, however retriable its error). Now bits beside the settled ones
// stand for it and the consumer decides it by its error's class.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "emissions/delivery.hpp"
#include "emissions/emitter.hpp"
#include "failing_allocations.hpp"
#include "recording_adapter.hpp"

namespace {

using emissions::test_support::allocation_refused;
using emissions::test_support::fail_allocations;
using emissions::test_support::stop_failing_allocations;
using namespace std::chrono_literals;

// Fails each event of its first delivery with `first_error` from a thread of its own whose
// allocations all fail meanwhile (one event at a time: Delivery::fail(index, ...)), and acks
// every later delivery on the caller's thread. The thread is joined by the destructor.
class FailsFirstOutOfMemory final : public emissions::AsyncAdapter {
 public:
  explicit FailsFirstOutOfMemory(emissions::Errc first_error) : first_error_(first_error) {}
  ~FailsFirstOutOfMemory() override {
    if (settler_.joinable()) settler_.join();
  }
  FailsFirstOutOfMemory(const FailsFirstOutOfMemory&) = delete;
  FailsFirstOutOfMemory& operator=(const FailsFirstOutOfMemory&) = delete;

  void deliver(emissions::Delivery delivery) override {
    attempts_.fetch_add(1);
    if (first_.exchange(false)) {
      settler_ = std::thread([this, held = std::move(delivery)]() mutable {
        // Made before memory runs short: a Status's message is an allocation of its own.
        std::vector<emissions::Status> errors;
        for (std::size_t i = 0; i < held.events().size(); ++i)
          errors.emplace_back(first_error_, "broker said no");
        fail_allocations(std::this_thread::get_id(), 1, /*sticky=*/true);
        for (std::size_t i = 0; i < errors.size(); ++i)
          held.fail(i, std::move(errors[i]));
        refused_.store(allocation_refused());
        stop_failing_allocations();
      });
      return;
    }
    delivery.ack();
  }
  [[nodiscard]] std::string_view name() const override { return "fails-first"; }
  [[nodiscard]] int attempts() const { return attempts_.load(); }
  // Whether the settling thread's failures met a refused allocation (what the test is about).
  [[nodiscard]] bool refused() const { return refused_.load(); }

 private:
  const emissions::Errc first_error_;
  std::atomic<bool> first_{true};
  std::atomic<int> attempts_{0};
  std::atomic<bool> refused_{false};
  std::thread settler_;
};

struct Outcome {
  emissions::AdapterStats stats;
  emissions::AdapterStats dead_letter_stats;
  int attempts = 0;
  bool refused = false;
};

// `events` events committed in one transaction to the adapter as one delivery (retried up to
// three times, 1 ms apart, with a dead-letter adapter), drained.
Outcome run(emissions::Errc first_error, int events) {
  auto adapter = std::make_shared<FailsFirstOutOfMemory>(first_error);
  auto dead = std::make_shared<emissions::test_support::RecordingAdapter>("dead");
  emissions::Config config;
  config.make_default = false;
  emissions::AdapterOptions options;
  options.max_demand = 200;
  options.retry =
      emissions::RetryPolicy{.max_attempts = 3, .initial_backoff = 1ms, .max_backoff = 1ms};
  options.dead_letter = dead;
  config.add_adapter(adapter, options);
  emissions::Emitter emitter(std::move(config));
  {
    emissions::Transaction tx = emitter.start();
    for (int i = 0; i < events; ++i)
      EXPECT_TRUE(tx.emit("order_created", i).ok());
    EXPECT_TRUE(tx.commit().ok());
  }
  EXPECT_TRUE(emitter.drain(10s).ok());
  Outcome out;
  for (const emissions::AdapterStats& each : emitter.stats().adapters) {
    if (each.name == "fails-first") out.stats = each;
    if (each.name == "dead") out.dead_letter_stats = each;
  }
  out.attempts = adapter->attempts();
  out.refused = adapter->refused();
  return out;
}

TEST(RetryDecisionOutOfMemory, ARetriableFailureWithoutMemoryForItsEntryIsStillRetried) {
  for (const int events : {1, 50, 130}) {  // inline bits, and three words on the heap
    SCOPED_TRACE(std::to_string(events) + " events");
    const Outcome r = run(emissions::Errc::unavailable, events);
    ASSERT_TRUE(r.refused) << "no allocation was refused: the test tried nothing";
    EXPECT_EQ(r.attempts, 2);
    EXPECT_EQ(r.stats.delivered, static_cast<std::uint64_t>(events));
    EXPECT_EQ(r.stats.failed, 0U);
    EXPECT_EQ(r.stats.dropped, 0U);
    EXPECT_EQ(r.stats.retried, static_cast<std::uint64_t>(events));
    EXPECT_EQ(r.dead_letter_stats.received, 0U);
  }
}

TEST(RetryDecisionOutOfMemory, APermanentFailureWithoutMemoryForItsEntryIsDeadLetteredNotRetried) {
  for (const int events : {1, 130}) {
    SCOPED_TRACE(std::to_string(events) + " events");
    const Outcome r = run(emissions::Errc::invalid_argument, events);
    ASSERT_TRUE(r.refused) << "no allocation was refused: the test tried nothing";
    EXPECT_EQ(r.attempts, 1);
    EXPECT_EQ(r.stats.delivered, 0U);
    EXPECT_EQ(r.stats.failed, static_cast<std::uint64_t>(events));
    EXPECT_EQ(r.stats.retried, 0U);
    EXPECT_EQ(r.stats.dead_lettered, static_cast<std::uint64_t>(events));
    EXPECT_EQ(r.dead_letter_stats.delivered, static_cast<std::uint64_t>(events));
  }
}

}  // namespace
