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
  Hub hub(true, 10, 100, 1'000'000);
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
  Hub hub(true, 3, 2, 1'000'000);
  hub.publish(events(5));
  auto client = hub.subscribe();
  const Hub::Taken t = hub.take(*client, 10);
  ASSERT_EQ(t.events.size(), 2U);  // capped by client_queue
  EXPECT_EQ(nlohmann::json::parse(t.events[1]).at("payload").at("i"), 4);
}

TEST(Hub, WithoutPayloadsEventsShowNameIdAndTime) {
  Hub hub(false, 1, 1, 1'000'000);
  const auto e = events(1);
  const auto j = nlohmann::json::parse(hub.render(e[0]));
  EXPECT_EQ(j.size(), 3U);
  EXPECT_TRUE(j.contains("id") && j.contains("name") && j.contains("emitted_at"));
}

TEST(Hub, WakesOnceUntilRearmed) {
  Hub hub(true, 0, 10, 1'000'000);
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

TEST(Hub, BeyondTheRateEventsAreCountedAndMissedNotSerialized) {
  Hub hub(true, 100, 1000, 50);  // a bucket of 50 events
  auto client = hub.subscribe();
  hub.publish(events(80));  // the newest 50 are shown, the first 30 only counted
  const Hub::Taken t = hub.take(*client, 1000);
  ASSERT_EQ(t.events.size(), 50U);
  EXPECT_EQ(t.missed, 30U);
  EXPECT_EQ(nlohmann::json::parse(t.events[0]).at("payload").at("i"), 30);
  EXPECT_EQ(hub.seen(), 80U);
  EXPECT_EQ(hub.counts().at("e"), 80U);
  hub.publish(events(5));  // the bucket is (nearly) empty: counted and missed
  const Hub::Taken u = hub.take(*client, 1000);
  EXPECT_EQ(u.events.size() + u.missed, 5U);
  EXPECT_EQ(hub.seen(), 85U);
}

// Regression (commit 80ab326): a client that missed events again while the events taken
// with its first missed count were held lost those events (overwritten by the second
// take: neither sent nor counted). Each message in turn: every event is sent or counted.
TEST(ClientFeed, HeldEventsAreSentBeforeMoreAreTaken) {
  Hub hub(true, 0, 10, 1'000'000);
  auto client = hub.subscribe();
  ClientFeed feed;
  hub.publish(events(15));  // 10 queued, 5 missed
  auto first = nlohmann::json::parse(feed.next(hub, *client, 500));
  EXPECT_EQ(first.at("type"), "missed");
  EXPECT_EQ(first.at("count"), 5);
  hub.publish(events(15));  // the queue overflows again while the missed count is written
  auto second = nlohmann::json::parse(feed.next(hub, *client, 500));
  ASSERT_EQ(second.at("type"), "events");
  ASSERT_EQ(second.at("events").size(), 10U);  // the 10 held
  auto third = nlohmann::json::parse(feed.next(hub, *client, 500));
  EXPECT_EQ(third.at("type"), "missed");
  EXPECT_EQ(third.at("count"), 5);
  auto fourth = nlohmann::json::parse(feed.next(hub, *client, 500));
  ASSERT_EQ(fourth.at("type"), "events");
  EXPECT_EQ(fourth.at("events").size(), 10U);
  EXPECT_EQ(feed.next(hub, *client, 500), "");
  // 30 published: 20 sent, 10 missed.
}

}  // namespace
}  // namespace emissions::http::detail
