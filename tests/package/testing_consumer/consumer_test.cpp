// A downstream project's test, using the installed emissions::testing helpers.
#include <emissions/emissions.hpp>
#include <emissions/testing.hpp>
#include <emissions/testing/gtest.hpp>

#include <gtest/gtest.h>

namespace {

void create_order(int id, bool valid) {
  ASSERT_TRUE(emissions::start().ok());
  ASSERT_TRUE(emissions::emit("order_created", {{"id", id}}).ok());
  if (valid) {
    ASSERT_TRUE(emissions::commit().ok());
  } else {
    emissions::terminate();
  }
}

class OrdersTest : public ::testing::Test {
 protected:
  void SetUp() override { emissions::testing::setup(); }
  void TearDown() override { emissions::testing::teardown(); }
};

TEST_F(OrdersTest, CreatingAnOrderEmitsOrderCreated) {
  create_order(7, true);
  EXPECT_EMITTED("order_created");
  EXPECT_EMITTED("order_created",
                 [](const emissions::Event& e) { return e.payload.at("id") == 7; });
}

TEST_F(OrdersTest, AFailedOrderEmitsNothing) {
  create_order(8, false);
  EXPECT_NOT_EMITTED("order_created");
}

}  // namespace
