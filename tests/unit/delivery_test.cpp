// Asynchronous adapters: Delivery handles settled later, per event, from other threads.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "emissions/emissions.hpp"

namespace {

using namespace std::chrono_literals;
using emissions::AsyncAdapter;
using emissions::Config;
using emissions::Delivery;
using emissions::Emitter;
using emissions::Errc;
using emissions::Event;
using emissions::Status;
using emissions::Transaction;

// Keeps every delivery; a test settles them (from its own thread) when it wants.
class Parking final : public AsyncAdapter {
 public:
  explicit Parking(std::size_t preferred_window = 0) : preferred_window_(preferred_window) {}
  std::string_view name() const override { return "parking"; }
  std::size_t preferred_max_in_flight() const noexcept override { return preferred_window_; }
  void deliver(Delivery delivery) override {
    {
      std::lock_guard lock(mutex_);
      held_.push_back(std::move(delivery));
    }
    changed_.notify_all();
  }
  // Called by the consumer when it finds its window full, just before it waits for room.
  Status flush(emissions::Deadline) override {
    {
      std::lock_guard lock(mutex_);
      ++flushes_;
    }
    changed_.notify_all();
    return {};
  }
  bool wait_for(std::size_t deliveries, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return held_.size() >= deliveries; });
  }
  bool wait_for_flushes(std::size_t flushes, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return flushes_ >= flushes; });
  }
  std::vector<Delivery> take() {
    std::lock_guard lock(mutex_);
    std::vector<Delivery> out;
    for (auto& d : held_)
      out.push_back(std::move(d));
    held_.clear();
    return out;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Delivery> held_;
  std::size_t flushes_ = 0;
  const std::size_t preferred_window_;
};

// Acknowledges every event from a thread of its own, like a client library's callback.
class AcksLater final : public AsyncAdapter {
 public:
  AcksLater() : worker_([this] { run(); }) {}
  ~AcksLater() override {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    changed_.notify_all();
    worker_.join();
  }
  std::string_view name() const override { return "acks_later"; }
  void deliver(Delivery delivery) override {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(delivery));
    }
    changed_.notify_all();
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      changed_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      Delivery d = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      for (std::size_t i = 0; i < d.events().size(); ++i) {
        if (d.events()[i].payload == "bad") {
          d.fail(i, Status(Errc::invalid_argument, "rejected"));
        } else {
          d.ack(i);
        }
      }
      lock.lock();
    }
  }
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Delivery> queue_;
  bool stop_ = false;
  std::thread worker_;
};

Config config_with(std::shared_ptr<emissions::Adapter> adapter,
                   emissions::AdapterOptions options = {}) {
  Config config;
  config.make_default = false;
  // These tests count each failure once: retries have tests of their own (retry_test.cpp).
  config.pipeline.retry.max_attempts = 1;
  config.add_adapter(std::move(adapter), std::move(options));
  return config;
}

Status commit(Emitter& emitter, std::initializer_list<nlohmann::json> payloads) {
  Transaction tx = emitter.start();
  for (const auto& p : payloads) {
    if (Status s = tx.emit("e", p); !s.ok()) return s;
  }
  return tx.commit();
}

TEST(DeliveryTest, EventsSettledFromAnotherThreadAreCountedOneByOne) {
  auto adapter = std::make_shared<AcksLater>();
  Emitter emitter(config_with(adapter));
  for (int i = 0; i < 200; ++i)
    ASSERT_TRUE(commit(emitter, {i, "bad", i}).ok());
  ASSERT_TRUE(emitter.drain(10s).ok());
  const auto stats = emitter.stats();
  EXPECT_EQ(stats.adapters[0].delivered, 400u);
  EXPECT_EQ(stats.adapters[0].failed, 200u);
  EXPECT_EQ(stats.adapters[0].queued, 0u);
}

TEST(DeliveryTest, DrainWaitsUntilEveryEventIsSettled) {
  auto adapter = std::make_shared<Parking>();
  Emitter emitter(config_with(adapter));
  ASSERT_TRUE(commit(emitter, {1, 2}).ok());
  ASSERT_TRUE(adapter->wait_for(1));
  EXPECT_EQ(emitter.drain(100ms).code(), Errc::timeout);  // handed over, not settled
  std::vector<Delivery> held = adapter->take();
  ASSERT_EQ(held.size(), 1u);
  std::thread settler([&] {
    held[0].ack(0);
    held[0].fail(1, Status(Errc::unavailable, "down"));
  });
  settler.join();
  EXPECT_TRUE(held[0].settled());
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 1u);
  EXPECT_EQ(emitter.stats().adapters[0].failed, 1u);
}

TEST(DeliveryTest, TheFirstSettlementWinsAndLaterOnesAreIgnored) {
  auto adapter = std::make_shared<Parking>();
  Emitter emitter(config_with(adapter));
  ASSERT_TRUE(commit(emitter, {1, 2, 3}).ok());
  ASSERT_TRUE(adapter->wait_for(1));
  std::vector<Delivery> held = adapter->take();
  held[0].fail(1, Status(Errc::unavailable, "down"));
  held[0].ack();  // the rest
  held[0].fail(Status(Errc::internal, "too late"));
  held[0].ack(7);  // out of range
  ASSERT_TRUE(emitter.drain(10s).ok());
  const auto stats = emitter.stats();
  EXPECT_EQ(stats.adapters[0].delivered, 2u);
  EXPECT_EQ(stats.adapters[0].failed, 1u);
}

TEST(DeliveryTest, ADroppedHandleFailsItsUnsettledEvents) {
  auto adapter = std::make_shared<Parking>();
  Emitter emitter(config_with(adapter));
  ASSERT_TRUE(commit(emitter, {1, 2}).ok());
  ASSERT_TRUE(adapter->wait_for(1));
  {
    std::vector<Delivery> held = adapter->take();
    held[0].ack(0);
  }  // destroyed with one event unsettled
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 1u);
  EXPECT_EQ(emitter.stats().adapters[0].failed, 1u);
}

TEST(DeliveryTest, TheWindowBoundsUnsettledBatchesPerConsumer) {
  auto adapter = std::make_shared<Parking>();
  Emitter emitter(config_with(adapter, {.max_in_flight = 2}));
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(commit(emitter, {i}).ok());
  ASSERT_TRUE(adapter->wait_for(2));
  std::this_thread::sleep_for(50ms);
  std::vector<Delivery> first = adapter->take();
  EXPECT_EQ(first.size(), 2u);  // the third waits for room
  for (auto& d : first)
    d.ack();
  ASSERT_TRUE(adapter->wait_for(2));
  std::vector<Delivery> second = adapter->take();
  for (auto& d : second)
    d.ack();
  ASSERT_TRUE(adapter->wait_for(1));
  for (auto& d : adapter->take())
    d.ack();
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 5u);
}

// Commits one event per batch until the consumer finds its window full (it flushes then)
// and returns how many deliveries it holds.
std::size_t window_when_full(Emitter& emitter, Parking& adapter, int commits = 10) {
  for (int i = 0; i < commits; ++i) {
    if (!commit(emitter, {i}).ok()) return 0;
  }
  if (!adapter.wait_for_flushes(1)) return 0;
  std::vector<Delivery> held = adapter.take();
  for (auto& d : held)
    d.ack();
  return held.size();
}

// Acknowledges what the adapter is handed until the emitter is drained (at most 10 s).
bool ack_until_drained(Emitter& emitter, Parking& adapter) {
  for (int i = 0; i < 1'000; ++i) {
    for (auto& d : adapter.take())
      d.ack();
    if (emitter.drain(10ms).ok()) return true;
  }
  return false;
}

TEST(DeliveryTest, TheAdaptersPreferredWindowAppliesWhenMaxInFlightIsUnset) {
  auto adapter = std::make_shared<Parking>(/*preferred_window=*/3);
  Emitter emitter(config_with(adapter, {}));
  EXPECT_EQ(window_when_full(emitter, *adapter), 3u);
  EXPECT_TRUE(ack_until_drained(emitter, *adapter));
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 10u);
}

TEST(DeliveryTest, MaxInFlightWinsOverTheAdaptersPreference) {
  auto adapter = std::make_shared<Parking>(/*preferred_window=*/3);
  Emitter emitter(config_with(adapter, {.max_in_flight = 2}));
  EXPECT_EQ(window_when_full(emitter, *adapter), 2u);
  EXPECT_TRUE(ack_until_drained(emitter, *adapter));
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 10u);
}

// Events in flight are outside the queue's bound: a preferred window is cut to a queue's
// worth of batches (buffer_size / max_demand), so the preference never multiplies memory.
TEST(DeliveryTest, APreferredWindowIsAtMostAQueuesWorthOfBatches) {
  auto adapter = std::make_shared<Parking>(/*preferred_window=*/1'000);
  Emitter emitter(config_with(adapter, {.max_demand = 1, .buffer_size = 20}));
  EXPECT_EQ(window_when_full(emitter, *adapter, 30), 20u);
  EXPECT_TRUE(ack_until_drained(emitter, *adapter));
}

// Commits 8 events, one per batch, to `adapter` (max_in_flight 4) and takes the 4 it is
// handed once the consumer found its window full (it flushes first): settlements from then
// on are what it waits for (settled before that, it would simply find room).
[[nodiscard]] bool fill_window_of_four(Emitter& emitter, Parking& adapter,
                                       std::vector<Delivery>& held) {
  for (int i = 0; i < 8; ++i) {
    if (!commit(emitter, {i}).ok()) return false;
  }
  if (!adapter.wait_for(4) || !adapter.wait_for_flushes(1)) return false;
  held = adapter.take();
  return held.size() == 4;
}

// A full window is refilled once half of it is settled, not on every settlement: the
// consumer sleeps once per few settlements instead of once per batch.
TEST(DeliveryTest, AFullWindowIsRefilledOnceHalfOfItIsSettled) {
  auto adapter = std::make_shared<Parking>();
  Emitter emitter(config_with(adapter, {.max_in_flight = 4}));
  std::vector<Delivery> held;
  ASSERT_TRUE(fill_window_of_four(emitter, *adapter, held));
  held[0].ack();  // 3 of 4 in flight: not yet half free
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(adapter->take().empty()) << "refilled after one settlement of four";
  held[1].ack();  // half free: the consumer hands over two more, and finds it full again
  ASSERT_TRUE(adapter->wait_for(2));
  ASSERT_TRUE(adapter->wait_for_flushes(2));
  std::vector<Delivery> refill = adapter->take();
  EXPECT_EQ(refill.size(), 2u);
  held[2].ack();
  held[3].ack();
  for (auto& d : refill)
    d.ack();
  ASSERT_TRUE(adapter->wait_for(2));
  for (auto& d : adapter->take())
    d.ack();
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 8u);
}

// A consumer that waits for its window to get down to half must not hand over anything
// once shutdown gives up, although the window has room by then.
TEST(DeliveryTest, AConsumerWaitingForHalfItsWindowHandsOverNothingAfterShutdownGivesUp) {
  auto adapter = std::make_shared<Parking>();
  Emitter emitter(config_with(adapter, {.max_in_flight = 4}));
  std::vector<Delivery> held;
  ASSERT_TRUE(fill_window_of_four(emitter, *adapter, held));
  held[0].ack();  // room for one, but the consumer waits for two
  EXPECT_EQ(emitter.shutdown(100ms).code(), Errc::timeout);
  // A starved consumer may count the run in its hand as dropped after shutdown returned.
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (emitter.stats().adapters[0].dropped < 7 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(5ms);
  EXPECT_TRUE(adapter->take().empty()) << "a run was handed over after shutdown gave up";
  const auto stats = emitter.stats().adapters[0];
  EXPECT_EQ(stats.delivered, 1u);
  EXPECT_EQ(stats.dropped, 7u);  // 3 unsettled, 1 in the consumer's hand, 3 queued
  EXPECT_EQ(stats.received, stats.delivered + stats.failed + stats.filtered + stats.dropped);
}

// A failed delivery is decided at once, not when half the window is free: its retry takes
// the slot it freed while the other deliveries are still in flight.
TEST(DeliveryTest, AFailureInAFullWindowIsRetriedWithoutWaitingForHalfOfIt) {
  auto clock = std::make_shared<emissions::ManualClock>();
  auto adapter = std::make_shared<Parking>();
  Config config;
  config.make_default = false;
  config.clock = clock;  // the default RetryPolicy: up to 8 attempts
  config.add_adapter(adapter, {.max_in_flight = 4});
  Emitter emitter(std::move(config));
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(commit(emitter, {i}).ok());
  ASSERT_TRUE(adapter->wait_for(4));
  ASSERT_TRUE(commit(emitter, {4}).ok());  // waits behind the full window
  ASSERT_TRUE(adapter->wait_for_flushes(1));
  std::vector<Delivery> held = adapter->take();
  ASSERT_EQ(held.size(), 4u);
  held[0].fail(Status(Errc::unavailable, "broker busy"));
  // The retry is due after its backoff on the manual clock: move it on until it comes.
  bool retried = false;
  for (int i = 0; i < 50 && !retried; ++i) {
    clock->advance(1s);
    retried = adapter->wait_for(1, 100ms);
  }
  ASSERT_TRUE(retried) << "the retry waited for half the window";
  std::vector<Delivery> retry = adapter->take();
  ASSERT_EQ(retry.size(), 1u);
  EXPECT_EQ(retry[0].attempt(), 2u);
  EXPECT_EQ(retry[0].events()[0].payload, 0);
  for (std::size_t i = 1; i < held.size(); ++i)
    held[i].ack();
  retry[0].ack();
  ASSERT_TRUE(adapter->wait_for(1));
  for (auto& d : adapter->take())
    d.ack();
  ASSERT_TRUE(emitter.drain(10s).ok());
  const auto stats = emitter.stats().adapters[0];
  EXPECT_EQ(stats.delivered, 5u);
  EXPECT_EQ(stats.retried, 1u);
}

TEST(DeliveryTest, ShutdownCountsWhatIsStillUnsettledAsDroppedAndLaterSettlementsAreNoOps) {
  auto adapter = std::make_shared<Parking>();
  std::vector<Delivery> held;
  {
    Emitter emitter(config_with(adapter));
    ASSERT_TRUE(commit(emitter, {1, 2, 3}).ok());
    ASSERT_TRUE(adapter->wait_for(1));
    held = adapter->take();
    held[0].ack(0);
    const Status down = emitter.shutdown(100ms);
    EXPECT_EQ(down.code(), Errc::timeout);
    EXPECT_NE(down.message().find("'parking' did not deliver 2 events"), std::string::npos)
        << down.to_string();
    EXPECT_TRUE(held[0].settled());
    const auto stats = emitter.stats();
    EXPECT_EQ(stats.adapters[0].delivered, 1u);
    EXPECT_EQ(stats.adapters[0].dropped, 2u);
  }
  // The emitter is gone: settling is a no-op, and the events are still readable.
  EXPECT_EQ(held[0].events().size(), 3u);
  EXPECT_EQ(held[0].events()[2].payload, 3);
  held[0].ack();
  held[0].fail(Status(Errc::unavailable, "after the emitter"));
}

TEST(DeliveryTest, AHandleSettledAfterItsEmitterIsDestroyedTouchesNoFreedMemory) {
  auto adapter = std::make_shared<Parking>();
  std::vector<Delivery> held;
  {
    Config config = config_with(adapter);
    config.shutdown_timeout = 0ms;
    Emitter emitter(std::move(config));
    ASSERT_TRUE(commit(emitter, {"x", "y"}).ok());
    ASSERT_TRUE(adapter->wait_for(1));
    held = adapter->take();
  }
  std::thread late([&] { held[0].ack(1); });
  late.join();
  EXPECT_TRUE(held[0].settled());
  EXPECT_EQ(held[0].events()[0].payload, "x");
}

TEST(DeliveryTest, AnExceptionFromDeliverFailsTheBatchAndInitRunsAgain) {
  class Throwing final : public AsyncAdapter {
   public:
    std::string_view name() const override { return "throwing"; }
    Status init() override {
      inits.fetch_add(1);
      return {};
    }
    void deliver(Delivery d) override {
      if (calls.fetch_add(1) == 0) throw std::runtime_error("boom");
      d.ack();
    }
    std::atomic<int> inits{0};
    std::atomic<int> calls{0};
  };
  auto adapter = std::make_shared<Throwing>();
  Emitter emitter(config_with(adapter));
  ASSERT_TRUE(commit(emitter, {1}).ok());
  ASSERT_TRUE(emitter.drain(10s).ok());
  ASSERT_TRUE(commit(emitter, {2}).ok());
  ASSERT_TRUE(emitter.drain(10s).ok());
  const auto stats = emitter.stats();
  EXPECT_EQ(stats.adapters[0].failed, 1u);
  EXPECT_EQ(stats.adapters[0].delivered, 1u);
  EXPECT_EQ(adapter->inits.load(), 2);
}

TEST(DeliveryTest, RetriableCodesAreTheTransientOnes) {
  EXPECT_TRUE(emissions::retriable(Errc::unavailable));
  EXPECT_TRUE(emissions::retriable(Errc::timeout));
  EXPECT_TRUE(emissions::retriable(Errc::overloaded));
  EXPECT_FALSE(emissions::retriable(Errc::invalid_argument));
  EXPECT_FALSE(emissions::retriable(Errc::internal));
  EXPECT_FALSE(emissions::retriable(Errc::closed));
}

// Runs up to 64 events keep their settlement bits in one inline word; longer ones in
// several words: 200 covers a whole word, a partial one and the boundaries between them.
TEST(DeliveryTest, SettlingOneHandleFromManyThreadsAtOnceCountsEachEventOnce) {
  for (const std::size_t n : {std::size_t{64}, std::size_t{200}}) {
    auto adapter = std::make_shared<Parking>();
    Emitter emitter(config_with(adapter, {.max_demand = n}));
    Transaction tx = emitter.start();
    for (std::size_t i = 0; i < n; ++i)
      ASSERT_TRUE(tx.emit("e", i).ok());
    ASSERT_TRUE(tx.commit().ok());
    ASSERT_TRUE(adapter->wait_for(1));
    auto shared = std::make_shared<Delivery>(std::move(adapter->take()[0]));
    ASSERT_EQ(shared->events().size(), n);
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([shared, t, n] {
        for (std::size_t i = 0; i < n; ++i) {
          if ((i + static_cast<std::size_t>(t)) % 3 == 0) {
            shared->fail(i, Status(Errc::unavailable, "t" + std::to_string(t)));
          } else {
            shared->ack(i);
          }
        }
        if (t == 7) shared->ack();
        if (t == 6) shared->fail(Status(Errc::internal, "all"));
      });
    }
    for (auto& thread : threads)
      thread.join();
    EXPECT_TRUE(shared->settled());
    ASSERT_TRUE(emitter.drain(10s).ok());
    const auto stats = emitter.stats();
    EXPECT_EQ(stats.adapters[0].delivered + stats.adapters[0].failed, n) << n;
    EXPECT_EQ(shared->events().size(), n);  // still readable after settlement
  }
}

TEST(DeliveryTest, EventsSettledOneByOneAcrossWordBoundariesAreLeftOutOfTheWholeAck) {
  auto adapter = std::make_shared<Parking>();
  Emitter emitter(config_with(adapter, {.max_demand = 200}));
  Transaction tx = emitter.start();
  for (int i = 0; i < 200; ++i)
    ASSERT_TRUE(tx.emit("e", i).ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(adapter->wait_for(1));
  Delivery delivery = std::move(adapter->take()[0]);
  for (const std::size_t i : {63U, 64U, 128U, 199U})
    delivery.fail(i, Status(Errc::invalid_argument, "bad " + std::to_string(i)));
  delivery.ack(127);
  delivery.fail(63, Status(Errc::internal, "again"));  // already settled: ignored
  delivery.ack(200);                                   // out of range: ignored
  EXPECT_FALSE(delivery.settled());
  delivery.ack();
  EXPECT_TRUE(delivery.settled());
  ASSERT_TRUE(emitter.drain(10s).ok());
  const auto stats = emitter.stats().adapters[0];
  EXPECT_EQ(stats.delivered, 196u);
  EXPECT_EQ(stats.failed, 4u);
}

TEST(DeliveryTest, MoveAssigningOverAnUnsettledHandleFailsItsEventsAndTakesTheOther) {
  auto adapter = std::make_shared<Parking>();
  Emitter emitter(config_with(adapter));
  ASSERT_TRUE(commit(emitter, {1, 2}).ok());
  ASSERT_TRUE(commit(emitter, {3}).ok());
  ASSERT_TRUE(adapter->wait_for(2));
  std::vector<Delivery> held = adapter->take();
  held[0].ack(0);
  held[0] = std::move(held[1]);    // {1, 2}: 2 is abandoned
  EXPECT_TRUE(held[1].settled());  // empty now
  EXPECT_TRUE(held[1].events().empty());
  ASSERT_EQ(held[0].events().size(), 1u);
  EXPECT_EQ(held[0].events()[0].payload, 3);
  held[0].ack();
  ASSERT_TRUE(emitter.drain(10s).ok());
  const auto stats = emitter.stats();
  EXPECT_EQ(stats.adapters[0].delivered, 2u);
  EXPECT_EQ(stats.adapters[0].failed, 1u);
}

}  // namespace
