// The hub between the server's adapter and its WebSocket clients: bounded queues, missed
// counts, history, wake-ups.
#include "hub.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace emissions::http::detail {
namespace {

std::vector<Event> events(int n) {
  std::vector<Event> out(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    out[static_cast<std::size_t>(i)].name = "e";
    out[static_cast<std::size_t>(i)].payload = {{"i", i}};
    out[static_cast<std::size_t>(i)].metadata = nlohmann::json::object();
  }
  return out;
}

TEST(Hub, AClientQueueHoldsAtMostClientQueueEventsAndCountsTheRest) {
  Hub hub(true, 10, 100);
  auto client = hub.subscribe();
  const auto batch = events(1000);
  hub.publish(batch);
  EXPECT_EQ(client->events.size(), 100U);
  const Hub::Taken t = hub.take(*client, 30);
  EXPECT_EQ(t.events.size(), 30U);
  EXPECT_EQ(t.missed, 900U);
  EXPECT_EQ(nlohmann::json::parse(t.events[0]).at("payload").at("i"), 0);
  EXPECT_EQ(hub.take(*client, 1000).events.size(), 70U);
  EXPECT_EQ(hub.take(*client, 1000).missed, 0U);
  EXPECT_EQ(hub.seen(), 1000U);
  EXPECT_EQ(hub.counts().at("e"), 1000U);
}

TEST(Hub, HistoryKeepsTheNewestAndFillsANewClient) {
  Hub hub(true, 3, 2);
  hub.publish(events(5));
  auto client = hub.subscribe();
  const Hub::Taken t = hub.take(*client, 10);
  ASSERT_EQ(t.events.size(), 2U);  // capped by client_queue
  EXPECT_EQ(nlohmann::json::parse(t.events[1]).at("payload").at("i"), 4);
}

TEST(Hub, WithoutPayloadsEventsShowNameIdAndTime) {
  Hub hub(false, 1, 1);
  const auto e = events(1);
  const auto j = nlohmann::json::parse(hub.render(e[0]));
  EXPECT_EQ(j.size(), 3U);
  EXPECT_TRUE(j.contains("id") && j.contains("name") && j.contains("emitted_at"));
}

TEST(Hub, WakesOnceUntilRearmed) {
  Hub hub(true, 0, 10);
  int wakes = 0;
  hub.set_wake([&] { ++wakes; });
  hub.publish(events(1));  // nobody subscribed: nothing queued, no wake-up
  EXPECT_EQ(wakes, 0);
  auto client = hub.subscribe();
  hub.publish(events(1));
  hub.publish(events(1));
  EXPECT_EQ(wakes, 1);
  hub.rearm();
  hub.publish(events(1));
  EXPECT_EQ(wakes, 2);
  hub.unsubscribe(client);
  hub.rearm();
  hub.publish(events(1));
  EXPECT_EQ(wakes, 2);
}

}  // namespace
}  // namespace emissions::http::detail
