// Batch mode: one POST per batch, a JSON array of envelopes in commit order, cut so that no
// body exceeds max_body_bytes, `webhook-id` = first event id + "-" + count; a retried batch is
// cut as before, so its webhook-id stays the same.
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "emissions/adapters/webhook.hpp"
#include "emissions/emitter.hpp"
#include "emissions/event.hpp"
#include "emissions/testing.hpp"
#include "requests.hpp"
#include "test_server.hpp"
#include "webhook_fixture.hpp"

namespace {

using emissions::adapters::Webhook;
using emissions::adapters::WebhookOptions;
using emissions::testing::TestAdapter;
using emissions::webhooks_test::config_with;
using emissions::webhooks_test::kCanary;
using emissions::webhooks_test::kSecret;
using emissions::webhooks_test::options_for;
using emissions::webhooks_test::quick_retries;
using emissions::webhooks_test::Received;
using emissions::webhooks_test::Reply;
using emissions::webhooks_test::TestServer;
using emissions::webhooks_test::verify_request;
using namespace std::chrono_literals;

// The payload an event gets in these tests: its number, a canary, padding.
nlohmann::json payload(int n, std::size_t pad) {
  return {{"n", n}, {"canary", kCanary}, {"pad", std::string(pad, 'p')}};
}

// The size of the envelope of an event named "batched" with payload(n, pad) (ids and
// timestamps have a fixed length).
std::size_t envelope_size(int n, std::size_t pad) {
  const emissions::Event event{emissions::EventName("batched"), payload(n, pad),
                               nlohmann::json::object(), emissions::EventId::generate(),
                               std::chrono::system_clock::now()};
  return emissions::serialize(event).size();
}

std::vector<int> numbers_in(const Received& request) {
  std::vector<int> numbers;
  for (const nlohmann::json& envelope : nlohmann::json::parse(request.body))
    numbers.push_back(envelope.at("payload").at("n").get<int>());
  return numbers;
}

TEST(WebhookBatch, BatchesAreArraysInCommitOrderCutToMaxBodyBytes) {
  TestServer server([](const Received&, std::size_t) { return Reply{.status = 200}; });
  constexpr std::size_t kLimit = 1000;
  WebhookOptions options = options_for(server);
  options.batch = true;
  options.max_body_bytes = kLimit;
  auto hook = std::make_shared<Webhook>(std::move(options));
  auto copy = std::make_shared<TestAdapter>("copy");
  emissions::Config config = config_with(hook);
  config.add_adapter(copy);
  emissions::Emitter emitter(std::move(config));

  constexpr int kEvents = 20;
  emissions::Transaction tx = emitter.start();
  for (int i = 0; i < kEvents; ++i)
    ASSERT_TRUE(tx.emit("batched", payload(i, static_cast<std::size_t>(i % 5) * 40)).ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(emitter.stats().adapters[0].delivered, static_cast<std::uint64_t>(kEvents));

  const std::vector<emissions::Event> events = copy->events();
  std::map<int, std::string> id_of;
  for (const emissions::Event& e : events)
    id_of[e.payload.at("n").get<int>()] = e.id.str();

  std::map<int, Received> by_first;  // requests by their first event
  for (const Received& r : server.requests()) {
    const std::vector<int> numbers = numbers_in(r);
    ASSERT_FALSE(numbers.empty());
    by_first[numbers.front()] = r;
    EXPECT_LE(r.body.size(), kLimit);
    EXPECT_EQ(r.header("webhook-id"),
              id_of.at(numbers.front()) + "-" + std::to_string(numbers.size()));
    EXPECT_TRUE(verify_request(r, {kSecret}).ok());
    for (std::size_t k = 1; k < numbers.size(); ++k)
      EXPECT_EQ(numbers[k], numbers[k - 1] + 1);  // commit order
  }
  EXPECT_GT(by_first.size(), 3u);  // cut
  // Together, every event once, and each batch as full as the next event allows.
  int next = 0;
  for (const auto& [first, r] : by_first) {
    EXPECT_EQ(first, next);
    const std::vector<int> numbers = numbers_in(r);
    next = numbers.back() + 1;
    if (next < kEvents) {
      EXPECT_GT(r.body.size() + 1 + envelope_size(next, static_cast<std::size_t>(next % 5) * 40),
                kLimit);
    }
    // The body is exactly the envelopes, as serialize() writes them, in an array.
    std::string expected = "[";
    for (std::size_t k = 0; k < numbers.size(); ++k) {
      if (k != 0) expected += ",";
      expected += emissions::serialize(events[static_cast<std::size_t>(numbers[k])]);
    }
    EXPECT_EQ(r.body, expected + "]");
  }
  EXPECT_EQ(next, kEvents);
}

TEST(WebhookBatch, ARetriedBatchIsCutAsBeforeAndKeepsItsWebhookId) {
  // Three events, cut into three batches of one: 0 and 2 are small, 1 is too large to join
  // either. 0 and 2 fail on their first attempt and are retried together, in one delivery;
  // cut afresh they would be one batch of two (a new webhook-id), but each keeps its own.
  constexpr std::size_t kSmall = 150;
  const std::size_t small = envelope_size(0, kSmall);
  const std::size_t limit = 2 * small + 3;
  std::size_t big_pad = kSmall;
  while (envelope_size(1, big_pad) <= small + 20)
    ++big_pad;
  ASSERT_LE(envelope_size(1, big_pad) + 2, limit);

  std::mutex mutex;
  std::set<int> failed_once;
  TestServer server([&](const Received& r, std::size_t) {
    const std::vector<int> numbers = numbers_in(r);
    std::lock_guard lock(mutex);
    if (numbers.size() == 1 && numbers[0] != 1 && failed_once.insert(numbers[0]).second) {
      return Reply{.status = 503};
    }
    return Reply{.status = 200};
  });
  WebhookOptions options = options_for(server);
  options.batch = true;
  options.max_body_bytes = limit;
  auto hook = std::make_shared<Webhook>(std::move(options));
  emissions::Emitter emitter(config_with(hook, {.retry = quick_retries(), .max_in_flight = 1}));
  emissions::Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("batched", payload(0, kSmall)).ok());
  ASSERT_TRUE(tx.emit("batched", payload(1, big_pad)).ok());
  ASSERT_TRUE(tx.emit("batched", payload(2, kSmall)).ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 3u);
  EXPECT_EQ(emitter.stats().adapters[0].retried, 2u);

  std::map<int, std::set<std::string>> ids;  // per first event, the webhook-ids seen
  for (const Received& r : server.requests()) {
    const std::vector<int> numbers = numbers_in(r);
    EXPECT_EQ(numbers.size(), 1u) << r.body.substr(0, 200);
    ids[numbers.front()].insert(r.header("webhook-id"));
  }
  EXPECT_EQ(server.request_count(), 5u);  // 3 first attempts, 2 retries
  for (const auto& [n, seen] : ids) {
    EXPECT_EQ(seen.size(), 1u) << n;
    EXPECT_THAT(*seen.begin(), ::testing::EndsWith("-1"));
  }
}

TEST(WebhookBatch, AnEventTooLargeForAnyBatchFailsAloneBeforeAnyRequest) {
  TestServer server([](const Received&, std::size_t) { return Reply{.status = 200}; });
  WebhookOptions options = options_for(server);
  options.batch = true;
  options.max_body_bytes = 2 * envelope_size(0, 10) + 3;
  auto hook = std::make_shared<Webhook>(std::move(options));
  auto dead = std::make_shared<TestAdapter>("dead");
  emissions::Emitter emitter(config_with(hook, {.retry = quick_retries(), .dead_letter = dead}));
  emissions::Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("batched", payload(0, 10)).ok());
  ASSERT_TRUE(tx.emit("batched", payload(1, 5000)).ok());
  ASSERT_TRUE(tx.emit("batched", payload(2, 10)).ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 2u);
  EXPECT_EQ(emitter.stats().adapters[0].failed, 1u);
  ASSERT_TRUE(dead->wait_for([](auto events) { return !events.empty(); }, 5s));
  EXPECT_EQ(dead->events()[0].payload.at("n"), 1);
  for (const Received& r : server.requests()) {
    for (const int n : numbers_in(r))
      EXPECT_NE(n, 1);
  }
}

emissions::Event event_with_id(std::uint64_t low) {
  return emissions::Event{emissions::EventName("e"), nullptr, nlohmann::json::object(),
                          emissions::EventId(1, low), std::chrono::system_clock::now()};
}

TEST(WebhookBatch, BatchMemoryRecallsWholeBatchesAndForgetsTheOldest) {
  emissions::detail::webhooks::BatchMemory memory(2);
  std::vector<emissions::Event> events;
  for (std::uint64_t i = 0; i < 6; ++i)
    events.push_back(event_with_id(i));
  memory.remember({events[0].id, events[1].id});
  memory.remember({events[3].id});
  EXPECT_EQ(memory.recall(std::span(events).subspan(0)), 2u);
  EXPECT_EQ(memory.recall(std::span(events).subspan(0)), 0u);  // recalled once
  EXPECT_EQ(memory.recall(std::span(events).subspan(3)), 1u);
  // Not the same events in the same order: not recalled.
  memory.remember({events[0].id, events[2].id});
  EXPECT_EQ(memory.recall(std::span(events).subspan(0)), 0u);
  // Capacity 2: a third batch makes the first forgotten.
  memory.remember({events[0].id, events[1].id});
  memory.remember({events[2].id, events[3].id});
  memory.remember({events[4].id, events[5].id});
  EXPECT_EQ(memory.recall(std::span(events).subspan(0)), 0u);
  EXPECT_EQ(memory.recall(std::span(events).subspan(2)), 2u);
  EXPECT_EQ(memory.recall(std::span(events).subspan(4)), 2u);
  // A batch remembered again after a recall is kept as new.
  memory.remember({events[0].id});
  EXPECT_EQ(memory.recall(std::span(events).subspan(0)), 1u);
  memory.remember({events[0].id});
  memory.remember({events[1].id});
  EXPECT_EQ(memory.recall(std::span(events).subspan(0)), 1u);
}

}  // namespace
