/// @file
/// emissions/testing/gtest.hpp: GoogleTest macros over the assertions of testing.hpp.
///
/// @code
///   EXPECT_EMITTED("order_created");
///   EXPECT_EMITTED("order_created",
///                  [](const emissions::Event& e) { return e.payload.at("id") == 1; });
///   EXPECT_EMITTED("order_created", std::chrono::seconds(1));  // a longer wait
///   ASSERT_NOT_EMITTED("order_created") << "the order was rejected";
///   EXPECT_EMITTED(*capture, emitter, "order_created");  // an explicit adapter/emitter
/// @endcode
///
/// The arguments are those of emissions::testing::assert_emitted / refute_emitted. EXPECT_*
/// records a non-fatal failure and carries on; ASSERT_* returns from the current function.
/// Like every gtest assertion they accept `<< "more context"`. The failure text is the
/// assertion's own message, which lists what was emitted:
///
/// @code{.unparsed}
///   orders_test.cpp:42: Failure
///   Expected an event named "order_created" to be emitted (waited 100 ms), but none was.
///   Emitted (1): order_rejected
/// @endcode
#pragma once

#include <gtest/gtest.h>

#include "emissions/testing.hpp"

namespace emissions::testing::detail {
// A gtest predicate-formatter that hands back an AssertionResult computed by the macro
// argument, so the failure shows only that result's message.
inline ::testing::AssertionResult pass_through(const char* /*expression*/,
                                               const ::testing::AssertionResult& result) {
  return result;
}
}  // namespace emissions::testing::detail

/// Checks emissions::testing::assert_emitted(...); on failure, records it and carries on.
#define EXPECT_EMITTED(...)                                       \
  EXPECT_PRED_FORMAT1(::emissions::testing::detail::pass_through, \
                      ::emissions::testing::assert_emitted(__VA_ARGS__))
/// Checks emissions::testing::assert_emitted(...); on failure, returns from the function.
#define ASSERT_EMITTED(...)                                       \
  ASSERT_PRED_FORMAT1(::emissions::testing::detail::pass_through, \
                      ::emissions::testing::assert_emitted(__VA_ARGS__))
/// Checks emissions::testing::refute_emitted(...); on failure, records it and carries on.
#define EXPECT_NOT_EMITTED(...)                                   \
  EXPECT_PRED_FORMAT1(::emissions::testing::detail::pass_through, \
                      ::emissions::testing::refute_emitted(__VA_ARGS__))
/// Checks emissions::testing::refute_emitted(...); on failure, returns from the function.
#define ASSERT_NOT_EMITTED(...)                                   \
  ASSERT_PRED_FORMAT1(::emissions::testing::detail::pass_through, \
                      ::emissions::testing::refute_emitted(__VA_ARGS__))
