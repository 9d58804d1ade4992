// Built by tests/compile_fail/CMakeLists.txt. As is, this must compile (the control). Each
// EMISSIONS_CASE_* macro swaps in one mistake that must stop the build with a readable name.
#include "emissions/topic_router.hpp"

constexpr auto kTopics = emissions::make_topic_router(
#if defined(EMISSIONS_CASE_DUPLICATE_EVENT)
    emissions::topic("orders", "order_created", "order_updated"),
    emissions::topic("users", "user_created", "order_created"),
#elif defined(EMISSIONS_CASE_DUPLICATE_EVENT_SAME_TOPIC)
    emissions::topic("orders", "order_created", "order_updated", "order_created"),
    emissions::topic("users", "user_created"),
#elif defined(EMISSIONS_CASE_DUPLICATE_TOPIC)
    emissions::topic("orders", "order_created", "order_updated"),
    emissions::topic("orders", "user_created"),
#elif defined(EMISSIONS_CASE_EMPTY_EVENT)
    emissions::topic("orders", "order_created", ""), emissions::topic("users", "user_created"),
#elif defined(EMISSIONS_CASE_EMPTY_TOPIC)
    emissions::topic("orders", "order_created", "order_updated"),
    emissions::topic("", "user_created"),
#else
    emissions::topic("orders", "order_created", "order_updated"),
    emissions::topic("users", "user_created"),
#endif
    emissions::topic("inventory", "item_moved"));

static_assert(kTopics.topic_for_event("item_moved") == "inventory");

int main() {
  return kTopics.topic_for_event("order_created") == "orders" ? 0 : 1;
}
