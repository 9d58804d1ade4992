// DeliveryLatency: commit-to-delivery histograms in AdapterStats.
#include <chrono>
#include <cmath>
#include <memory>
#include <thread>

#include <gtest/gtest.h>

#include "emissions/emissions.hpp"
#include "emissions/testing/faulty_adapter.hpp"
#include "recording_adapter.hpp"

namespace emissions {
namespace {

std::uint64_t bucket_sum(const DeliveryLatency& l) {
  std::uint64_t n = 0;
  for (const auto b : l.buckets)
    n += b;
  return n;
}

TEST(DeliveryLatency, EveryDeliveredEventIsMeasuredOnce) {
  auto sync = std::make_shared<test_support::RecordingAdapter>("sync");
  auto async = std::make_shared<testing::FaultyAdapter>("async");
  Config config;
  config.make_default = false;
  config.add_adapter(sync, {.max_demand = 3});
  config.add_adapter(async);
  Emitter emitter(std::move(config));
  for (int i = 0; i < 20; ++i) {
    Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit("a").ok());
    ASSERT_TRUE(tx.emit("b").ok());
    ASSERT_TRUE(tx.commit().ok());
  }
  ASSERT_TRUE(emitter.drain(std::chrono::seconds(5)).ok());
  for (const AdapterStats& a : emitter.stats().adapters) {
    EXPECT_EQ(a.latency.count, a.delivered) << a.name;
    EXPECT_EQ(bucket_sum(a.latency), a.latency.count) << a.name;
    EXPECT_GT(a.latency.sum_ns, 0U) << a.name;
  }
}

TEST(DeliveryLatency, ARetriedEventCountsFromItsCommit) {
  auto flaky = std::make_shared<testing::FaultyAdapter>("flaky");
  flaky->fail_batch(1, {Errc::unavailable, "down"});
  Config config;
  config.make_default = false;
  config.add_adapter(flaky, {.retry = RetryPolicy{.max_attempts = 2,
                                                  .initial_backoff = std::chrono::milliseconds(60),
                                                  .max_backoff = std::chrono::milliseconds(60)}});
  Emitter emitter(std::move(config));
  Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("a").ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(emitter.drain(std::chrono::seconds(5)).ok());
  const DeliveryLatency l = emitter.stats().adapters[0].latency;
  ASSERT_EQ(l.count, 1U);
  // The backoff is at least 30 ms (half of 60, jittered): the event waited that long.
  EXPECT_GE(l.sum_ns, 30'000'000U);
  EXPECT_GE(l.quantile(1.0), 0.05);
}

TEST(DeliveryLatency, FailedEventsAreNotMeasured) {
  auto broken = std::make_shared<testing::FaultyAdapter>("broken");
  broken->fail_every(1, {Errc::invalid_argument, "no"});
  Config config;
  config.make_default = false;
  config.add_adapter(broken);
  Emitter emitter(std::move(config));
  Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("a").ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(emitter.drain(std::chrono::seconds(5)).ok());
  EXPECT_EQ(emitter.stats().adapters[0].failed, 1U);
  EXPECT_EQ(emitter.stats().adapters[0].latency.count, 0U);
}

TEST(DeliveryLatency, QuantileIsTheUpperBoundOfItsBucket) {
  DeliveryLatency l;
  EXPECT_EQ(l.quantile(0.5), 0.0);
  l.buckets[0] = 90;  // <= 100 us
  l.buckets[5] = 9;   // <= 5 ms
  l.buckets[DeliveryLatency::kBounds.size()] = 1;
  l.count = 100;
  EXPECT_EQ(l.quantile(0.5), 0.0001);
  EXPECT_EQ(l.quantile(0.9), 0.0001);
  EXPECT_EQ(l.quantile(0.95), 0.005);
  EXPECT_EQ(l.quantile(0.99), 0.005);
  EXPECT_TRUE(std::isinf(l.quantile(1.0)));
}

}  // namespace
}  // namespace emissions
