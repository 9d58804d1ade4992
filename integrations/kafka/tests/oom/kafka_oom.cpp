// The Kafka adapter's deliver() running out of memory on the consumer's thread. For
// n = 1, 2, ... the n-th C++ allocation of that thread inside deliver() fails (operator new
// is replaced, in this executable alone: failing_allocations.hpp), or that one and every
// later one ("sticky": memory stays short), until the event is settled. The event must be
// settled exactly once, delivered or retriably, and the process must not end. From review
// of a1cf5d1: deliver()'s catch blocks built their message (and a terminated adapter its
// "is terminated") with memory still short, a throw inside noexcept that ended the process.
// librdkafka allocates with malloc and is not affected. Against librdkafka's mock cluster.
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "emissions/adapters/kafka.hpp"
#include "mock_cluster.hpp"
#include "oom_harness.hpp"
#include "pipeline/delivery_state.hpp"

namespace {

using emissions::adapters::Kafka;
using emissions::adapters::KafkaOptions;
using emissions::test_support::FailingCaller;
using emissions::test_support::one_event;
using emissions::test_support::SettlementRecord;
using emissions::test_support::stop_failing_allocations;
using emissions::test_support::sweep_allocations;
using emissions::testing::kafka::MockCluster;
using namespace std::chrono_literals;

KafkaOptions options_for(const MockCluster& cluster) {
  return KafkaOptions{
      .brokers = cluster.bootstraps(), .topic = "orders", .properties = {{"log_level", "2"}}};
}

// Delivers one event through `caller` and waits for its settlement.
std::shared_ptr<SettlementRecord> deliver_one(emissions::AsyncAdapter& caller) {
  auto outcome = std::make_shared<SettlementRecord>();
  // Returns ok: deliver() does not throw, whatever it could not allocate.
  EXPECT_TRUE(
      emissions::detail::deliver_detached(caller, one_event(), 1, outcome->callback()).ok());
  outcome->wait();
  stop_failing_allocations();
  return outcome;
}

enum class Adapter { live, terminated };

// For n = 1, 2, ...: a fresh adapter (`live`, its producer connected by a first event, or
// `terminated`), and one event delivered with the caller's n-th allocation failing (and
// every later one, if `sticky`); every event settled once, never for good unless `accepted`
// says so. Returns how many allocations were tried.
template <typename Accepted>
int sweep(MockCluster& cluster, Adapter state, bool sticky, Accepted accepted) {
  return sweep_allocations([&](int n) {
    Kafka kafka(options_for(cluster));
    if (state == Adapter::live) {
      const auto first = deliver_one(kafka);
      std::lock_guard lock(first->mutex);
      EXPECT_TRUE(first->delivered) << first->reason;
    } else {
      EXPECT_TRUE(kafka.terminate(emissions::deadline_after(5s)).ok());
    }
    FailingCaller caller(kafka, n, sticky);
    const auto outcome = deliver_one(caller);
    std::lock_guard lock(outcome->mutex);
    EXPECT_EQ(outcome->settlements, 1);
    EXPECT_TRUE(accepted(*outcome))
        << "code " << static_cast<int>(outcome->code) << ", '" << outcome->reason << "'";
  });
}

bool delivered_or_retriable(const SettlementRecord& outcome) {
  return outcome.delivered || emissions::retriable(outcome.code);
}

class KafkaCallerOutOfMemory : public ::testing::Test {
 protected:
  KafkaCallerOutOfMemory() { cluster_.create_topic("orders", 1); }
  MockCluster cluster_{1};
};

TEST_F(KafkaCallerOutOfMemory, AnEventIsSettledOnceAndRetriablyWhateverAllocationFails) {
  EXPECT_GT(sweep(cluster_, Adapter::live, false, delivered_or_retriable), 0)
      << "deliver() allocated nothing: the test tried nothing";
}

TEST_F(KafkaCallerOutOfMemory, AnEventIsSettledOnceAndRetriablyWhileMemoryStaysShort) {
  EXPECT_GT(sweep(cluster_, Adapter::live, true, delivered_or_retriable), 0)
      << "deliver() allocated nothing: the test tried nothing";
}

TEST_F(KafkaCallerOutOfMemory, AfterTerminateAnEventFailsOnceWhileMemoryStaysShort) {
  // `closed` as usual, or `unavailable` when even that message could not be made.
  const auto failed_as_closed = [](const SettlementRecord& outcome) {
    return !outcome.delivered && (outcome.code == emissions::Errc::closed ||
                                  outcome.code == emissions::Errc::unavailable);
  };
  EXPECT_GT(sweep(cluster_, Adapter::terminated, true, failed_as_closed), 0)
      << "deliver() allocated nothing: the test tried nothing";
}

}  // namespace
