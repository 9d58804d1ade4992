// Event -> topic lookups: TopicRouter (text and EventName), StaticTopicRouter at run time,
// and the baseline std::unordered_map<std::string, std::string>, on the same 32 names, in
// the same run. Each iteration is one lookup; the names come in a fixed shuffled order
// (1024 lookups per cycle) so the branch predictor cannot learn the probe sequence.
//
//   build/<dir>/bench/emissions_micro_bench --benchmark_filter=Topic
#include <algorithm>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <benchmark/benchmark.h>

#include "emissions/event_name.hpp"
#include "emissions/topic_router.hpp"

namespace {

using emissions::topic;

constexpr auto kTopics = emissions::make_topic_router(
    topic("orders", "order_created", "order_updated", "order_shipped", "order_cancelled",
          "order_refunded", "order_delivered"),
    topic("inventory", "item_received", "item_adjusted", "item_moved", "item_reserved",
          "item_released", "stock_counted"),
    topic("users", "user_created", "user_updated", "user_deleted", "user_logged_in",
          "password_reset_requested"),
    topic("payments", "payment_authorized", "payment_captured", "payment_failed",
          "payment_refunded", "invoice_issued"),
    topic("shipping", "shipment_created", "label_printed", "carrier_picked_up", "shipment_delayed",
          "shipment_delivered"),
    topic("audit", "setting_changed", "role_granted", "role_revoked", "export_requested",
          "api_key_rotated"));

constexpr std::size_t kLookups = 1024;  // power of two: the index wraps with a mask

// Every event name, each as often as the others, in a fixed shuffled order. Copies of the
// texts, so no lookup can shortcut on the literal's address.
std::vector<std::string> lookup_order(bool hits) {
  std::vector<std::string> names;
  for (const std::string_view t : kTopics.topics()) {
    for (const std::string_view e : kTopics.events_for_topic(t)) {
      names.emplace_back(hits ? std::string(e) : std::string(e) + "_v2");
    }
  }
  std::vector<std::string> order;
  order.reserve(kLookups);
  for (std::size_t i = 0; i < kLookups; ++i)
    order.push_back(names[i % names.size()]);
  std::shuffle(order.begin(), order.end(), std::mt19937(42));
  return order;
}

template <typename Lookup>
void run(benchmark::State& state, Lookup lookup) {
  std::size_t i = 0;
  for (auto _ : state) {
    auto result = lookup(i);
    benchmark::DoNotOptimize(result);
    i = (i + 1) & (kLookups - 1);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_TopicRouter_StringView(benchmark::State& state) {
  const emissions::TopicRouter router(kTopics);
  const std::vector<std::string> names = lookup_order(state.range(0) != 0);
  const std::vector<std::string_view> views(names.begin(), names.end());
  run(state, [&](std::size_t i) { return router.topic_for_event(views[i]); });
}

void BM_TopicRouter_EventName(benchmark::State& state) {
  const emissions::TopicRouter router(kTopics);
  const std::vector<std::string> names = lookup_order(state.range(0) != 0);
  const std::vector<emissions::EventName> event_names(names.begin(), names.end());
  run(state, [&](std::size_t i) { return router.topic_for_event(event_names[i]); });
}

void BM_StaticTopicRouter_StringView(benchmark::State& state) {
  const std::vector<std::string> names = lookup_order(state.range(0) != 0);
  const std::vector<std::string_view> views(names.begin(), names.end());
  run(state, [&](std::size_t i) { return kTopics.topic_for_event(views[i]); });
}

void BM_StaticTopicRouter_EventName(benchmark::State& state) {
  const std::vector<std::string> names = lookup_order(state.range(0) != 0);
  const std::vector<emissions::EventName> event_names(names.begin(), names.end());
  run(state, [&](std::size_t i) { return kTopics.topic_for_event(event_names[i]); });
}

// The baseline: std::string keys built once, looked up by std::string.
void BM_UnorderedMap_String(benchmark::State& state) {
  std::unordered_map<std::string, std::string> map;
  for (const std::string_view t : kTopics.topics()) {
    for (const std::string_view e : kTopics.events_for_topic(t))
      map.emplace(e, t);
  }
  const std::vector<std::string> names = lookup_order(state.range(0) != 0);
  run(state, [&](std::size_t i) {
    const auto it = map.find(names[i]);
    return it == map.end() ? nullptr : &it->second;
  });
}

// Arg(1): every lookup finds its event; Arg(0): none does (names with a suffix).
BENCHMARK(BM_TopicRouter_StringView)->ArgName("hit")->Arg(1)->Arg(0);
BENCHMARK(BM_TopicRouter_EventName)->ArgName("hit")->Arg(1)->Arg(0);
BENCHMARK(BM_StaticTopicRouter_StringView)->ArgName("hit")->Arg(1)->Arg(0);
BENCHMARK(BM_StaticTopicRouter_EventName)->ArgName("hit")->Arg(1)->Arg(0);
BENCHMARK(BM_UnorderedMap_String)->ArgName("hit")->Arg(1)->Arg(0);

}  // namespace
