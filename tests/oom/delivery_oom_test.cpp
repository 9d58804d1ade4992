// A Delivery settled while memory is short (operator new replaced, in this executable alone:
// failing_allocations.hpp): the Status an event fails with keeps a failure's code even when
// there is no memory for its message. From the Kafka adapter's out-of-memory test: a
// Delivery dropped unsettled was failed with a default Status (code ok, "not an error")
// when "delivery abandoned" could not be allocated.
#include <memory>
#include <mutex>
#include <string_view>
#include <utility>

#include <gtest/gtest.h>

#include "emissions/delivery.hpp"
#include "oom_harness.hpp"
#include "pipeline/delivery_state.hpp"

namespace {

using emissions::test_support::FailingCaller;
using emissions::test_support::one_event;
using emissions::test_support::SettlementRecord;

// Does to each delivery what `step` says, nothing else.
template <typename Step>
class StepAdapter final : public emissions::AsyncAdapter {
 public:
  explicit StepAdapter(Step step) : step_(std::move(step)) {}
  void deliver(emissions::Delivery delivery) override { step_(std::move(delivery)); }
  [[nodiscard]] std::string_view name() const override { return "step"; }

 private:
  Step step_;
};

// One event through `adapter`, every allocation inside its deliver() failing; how it was
// settled.
std::shared_ptr<SettlementRecord> deliver_out_of_memory(emissions::AsyncAdapter& adapter) {
  FailingCaller caller(adapter, 1, /*sticky=*/true);
  auto outcome = std::make_shared<SettlementRecord>();
  EXPECT_TRUE(
      emissions::detail::deliver_detached(caller, one_event(), 1, outcome->callback()).ok());
  return outcome;
}

TEST(DeliveryOutOfMemory, ADeliveryDroppedUnsettledFailsWithInternalEvenWithoutAMessage) {
  StepAdapter drop([](emissions::Delivery /*dropped unsettled*/) {});
  const auto outcome = deliver_out_of_memory(drop);
  std::lock_guard lock(outcome->mutex);
  EXPECT_EQ(outcome->settlements, 1);
  EXPECT_FALSE(outcome->delivered);
  EXPECT_EQ(outcome->code, emissions::Errc::internal) << "'" << outcome->reason << "'";
}

}  // namespace
