// The Webhook adapter against a scripted HTTP/1.1 server on 127.0.0.1: what a request looks
// like and how it is signed, and how each outcome class settles events (delivered, retried
// with Retry-After, failed for good to the dead letter, the endpoint disabled).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "emissions/adapters/webhook.hpp"
#include "emissions/emitter.hpp"
#include "emissions/event.hpp"
#include "emissions/telemetry.hpp"
#include "emissions/testing.hpp"
#include "recording_adapter.hpp"
#include "test_server.hpp"
#include "webhook_fixture.hpp"

namespace {

using emissions::Errc;
using emissions::adapters::Webhook;
using emissions::adapters::WebhookOptions;
using emissions::test_support::TelemetryRecorder;
using emissions::testing::TestAdapter;
using emissions::webhooks_test::commit_each;
using emissions::webhooks_test::config_with;
using emissions::webhooks_test::kCanary;
using emissions::webhooks_test::kOtherSecret;
using emissions::webhooks_test::kSecret;
using emissions::webhooks_test::openssl_signature;
using emissions::webhooks_test::options_for;
using emissions::webhooks_test::quick_retries;
using emissions::webhooks_test::Received;
using emissions::webhooks_test::Reply;
using emissions::webhooks_test::TestServer;
using emissions::webhooks_test::verify_request;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

std::string dead_reason(const emissions::Event& copy) {
  return copy.metadata.at("dead_letter").at("reason").get<std::string>();
}

TEST(WebhookDelivery, EachEventIsOnePostOfItsEnvelopeSignedPerTheSpecification) {
  TestServer server([](const Received&, std::size_t) { return Reply{.status = 200}; });
  WebhookOptions options = options_for(server);
  options.secrets = {kOtherSecret, kSecret};  // rotating: both sign
  options.headers = {{"Authorization", "Bearer t0ken"}, {"X-Empty", ""}};
  auto hook = std::make_shared<Webhook>(std::move(options));
  auto copy = std::make_shared<TestAdapter>("copy");
  emissions::Config config = config_with(hook);
  config.add_adapter(copy);
  emissions::Emitter emitter(std::move(config));

  commit_each(emitter, 5);
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 5u);
  EXPECT_EQ(hook->outstanding(), 0u);

  const std::vector<Received> requests = server.requests();
  ASSERT_EQ(requests.size(), 5u);
  std::map<std::string, Received> by_id;
  for (const Received& r : requests)
    by_id[r.header("webhook-id")] = r;
  for (const emissions::Event& event : copy->events()) {
    SCOPED_TRACE(event.id.str());
    ASSERT_TRUE(by_id.contains(event.id.str()));
    const Received& r = by_id.at(event.id.str());
    EXPECT_EQ(r.method, "POST");
    EXPECT_EQ(r.target, "/hook");
    EXPECT_EQ(r.body, emissions::serialize(event));
    EXPECT_EQ(r.header("content-type"), "application/json");
    EXPECT_EQ(r.header("authorization"), "Bearer t0ken");
    EXPECT_TRUE(r.headers.contains("x-empty"));
    EXPECT_FALSE(r.headers.contains("expect"));
    // Unix seconds, now.
    const long long ts = std::stoll(r.header("webhook-timestamp"));
    EXPECT_NEAR(static_cast<double>(ts), static_cast<double>(std::time(nullptr)), 30.0);
    // Two signatures, each checked by our verifier and recomputed by the openssl command.
    EXPECT_TRUE(verify_request(r, {kSecret}).ok());
    EXPECT_TRUE(verify_request(r, {kOtherSecret}).ok());
    EXPECT_EQ(r.header("webhook-signature"),
              openssl_signature(r, kOtherSecret) + " " + openssl_signature(r, kSecret));
  }
  // Keep-alive: five requests in sequence need far fewer than five connections... at most
  // max_connections of them.
  EXPECT_LE(server.connections(), 8u);
}

// Requests are remade from finished ones (their texts reused in place): each must carry
// its own event's body, id and signature, whatever the request before it held. Bodies of
// alternating sizes, many more events than connections and spares, commits of one and of
// several events.
TEST(WebhookDelivery, ReusedRequestsCarryOnlyTheirOwnEventsBodyIdAndSignature) {
  TestServer server([](const Received&, std::size_t) { return Reply{.status = 200}; });
  WebhookOptions options = options_for(server);
  options.max_connections = 2;
  auto hook = std::make_shared<Webhook>(std::move(options));
  auto copy = std::make_shared<TestAdapter>("copy");
  emissions::Config config = config_with(hook);
  config.add_adapter(copy);
  emissions::Emitter emitter(std::move(config));

  constexpr int kCommits = 150;
  for (int i = 0; i < kCommits; ++i) {
    emissions::Transaction tx = emitter.start();
    for (int k = 0; k < 1 + i % 3; ++k) {
      nlohmann::json payload = {{"n", i}, {"k", k}, {"canary", kCanary}};
      if ((i + k) % 2 == 0)
        payload["padding"] = std::string(static_cast<std::size_t>(300 + 7 * (i % 11)), 'x');
      ASSERT_TRUE(tx.emit("order_created", payload).ok());
    }
    ASSERT_TRUE(tx.commit().ok());
  }
  ASSERT_TRUE(emitter.drain(30s).ok());
  const std::size_t events = copy->events().size();
  EXPECT_EQ(events, 300u);
  EXPECT_EQ(emitter.stats().adapters[0].delivered, events);

  const std::vector<Received> requests = server.requests();
  ASSERT_EQ(requests.size(), events);
  std::map<std::string, Received> by_id;
  for (const Received& r : requests)
    by_id[r.header("webhook-id")] = r;
  ASSERT_EQ(by_id.size(), events);  // no id sent twice
  for (const emissions::Event& event : copy->events()) {
    SCOPED_TRACE(event.id.str());
    ASSERT_TRUE(by_id.contains(event.id.str()));
    const Received& r = by_id.at(event.id.str());
    EXPECT_EQ(r.body, emissions::serialize(event));
    // One signature (one secret), of this body under this id.
    EXPECT_EQ(r.header("webhook-signature").find(' '), std::string::npos);
    EXPECT_TRUE(verify_request(r, {kSecret}).ok());
  }
}

// The response probe's duration is the request's (libcurl's total time of the transfer):
// at least the server's delay, well under the test's.
TEST(WebhookDelivery, TheResponseProbeReportsHowLongTheRequestTook) {
  TelemetryRecorder recorder("webhook-duration", {{"emissions", "webhook", "response"}});
  TestServer server([](const Received&, std::size_t) {
    std::this_thread::sleep_for(60ms);
    return Reply{.status = 200};
  });
  auto hook = std::make_shared<Webhook>(options_for(server));
  emissions::Emitter emitter(config_with(hook));
  commit_each(emitter, 2);
  ASSERT_TRUE(emitter.drain(10s).ok());
  ASSERT_TRUE(recorder.wait_for({"emissions", "webhook", "response"}, 2, 5s));
  for (const auto& record : recorder.records()) {
    const auto ns = record.measurements.at("duration").get<std::int64_t>();
    EXPECT_GE(ns, std::chrono::nanoseconds(60ms).count());
    EXPECT_LT(ns, std::chrono::nanoseconds(5s).count());
    EXPECT_EQ(record.measurements.at("events"), 1);
    EXPECT_EQ(record.metadata.at("outcome"), "delivered");
  }
}

TEST(WebhookDelivery, AsksForSixteenDeliveriesInFlightPerConnection) {
  TestServer server([](const Received&, std::size_t) { return Reply{.status = 200}; });
  WebhookOptions options = options_for(server);
  EXPECT_EQ(Webhook(options).preferred_max_in_flight(), 16u * 8u);
  options.max_connections = 3;
  EXPECT_EQ(Webhook(options).preferred_max_in_flight(), 16u * 3u);
}

// The payload's "n" of a request body (one event per request).
int n_of(const Received& request) {
  return nlohmann::json::parse(request.body).at("payload").at("n").get<int>();
}

TEST(WebhookDelivery, AReceiverFailingFor2sGetsEveryEventOnceItRecoversWithTheSameId) {
  const auto started = std::chrono::steady_clock::now();
  std::mutex mutex;
  std::set<std::string> lost;  // ids whose 2xx was lost: processed, then the connection reset
  std::map<std::string, std::size_t> processed;  // per id: requests the receiver took
  TestServer server([&](const Received& r, std::size_t index) {
    if (std::chrono::steady_clock::now() - started < 2s) return Reply{.status = 503};
    std::lock_guard lock(mutex);
    const std::string id = r.header("webhook-id");
    ++processed[id];
    if (index % 7 == 0 && !lost.contains(id)) {
      lost.insert(id);
      return Reply{.action = Reply::Action::reset};  // processed, but the response is lost
    }
    return Reply{.status = 200};
  });
  auto hook = std::make_shared<Webhook>(options_for(server));
  emissions::Emitter emitter(
      config_with(hook, {.retry = emissions::RetryPolicy{
                             .max_attempts = 0, .initial_backoff = 20ms, .max_backoff = 200ms}}));

  constexpr int kEvents = 30;
  std::mutex settled_mutex;
  std::map<int, std::chrono::steady_clock::time_point> settled_at;
  for (int i = 0; i < kEvents; ++i) {
    emissions::Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit("order_created", {{"n", i}, {"canary", kCanary}}).ok());
    ASSERT_TRUE(tx.commit([&, i](const emissions::Settlement& s) {
                    EXPECT_EQ(s.adapters.at(0).delivered, 1u);
                    std::lock_guard lock(settled_mutex);
                    settled_at[i] = std::chrono::steady_clock::now();
                  }).ok());
  }
  ASSERT_TRUE(emitter.drain(30s).ok());
  const emissions::AdapterStats stats = emitter.stats().adapters[0];
  EXPECT_EQ(stats.delivered, static_cast<std::uint64_t>(kEvents));
  EXPECT_EQ(stats.failed, 0u);
  EXPECT_GT(stats.retried, 0u);

  // Every attempt of an event carried the same webhook-id and body; a new timestamp and
  // signature each time, valid each time.
  std::map<int, std::vector<Received>> attempts;
  for (const Received& r : server.requests()) {
    EXPECT_TRUE(verify_request(r, {kSecret}).ok()) << r.header("webhook-id");
    attempts[n_of(r)].push_back(r);
  }
  ASSERT_EQ(attempts.size(), static_cast<std::size_t>(kEvents));
  std::size_t duplicates = 0;
  for (const auto& [n, tries] : attempts) {
    SCOPED_TRACE(n);
    const std::string id = tries.front().header("webhook-id");
    for (const Received& r : tries) {
      EXPECT_EQ(r.header("webhook-id"), id);
      EXPECT_EQ(r.body, tries.front().body);
    }
    // A duplicate only where a 2xx was lost.
    std::lock_guard lock(mutex);
    EXPECT_EQ(processed[id], lost.contains(id) ? 2u : 1u);
    duplicates += processed[id] - 1;
    // Acknowledged only after its 2xx was written.
    const auto answered = server.first_2xx(id);
    ASSERT_TRUE(answered.has_value());
    std::lock_guard settled_lock(settled_mutex);
    ASSERT_TRUE(settled_at.contains(n));
    EXPECT_GE(settled_at.at(n), *answered);
  }
  EXPECT_EQ(duplicates, lost.size());
  EXPECT_GT(lost.size(), 0u);
}

TEST(WebhookDelivery, A400GoesToTheDeadLetterAtOnceWithoutRetries) {
  TestServer server(
      [](const Received&, std::size_t) { return Reply{.status = 400, .body = "bad request"}; });
  auto hook = std::make_shared<Webhook>(options_for(server, "orders"));
  auto dead = std::make_shared<TestAdapter>("dead");
  emissions::Emitter emitter(config_with(hook, {.retry = quick_retries(), .dead_letter = dead}));
  commit_each(emitter, 3);
  ASSERT_TRUE(emitter.drain(10s).ok());
  const emissions::AdapterStats stats = emitter.stats().adapters[0];
  EXPECT_EQ(stats.failed, 3u);
  EXPECT_EQ(stats.retried, 0u);
  EXPECT_EQ(server.request_count(), 3u);
  ASSERT_TRUE(dead->wait_for([](auto events) { return events.size() >= 3; }, 5s));
  for (const emissions::Event& copy : dead->events()) {
    EXPECT_THAT(dead_reason(copy), HasSubstr("invalid_argument: webhook 'orders': HTTP 400 from "
                                             "http://127.0.0.1:" +
                                             std::to_string(server.port())));
    EXPECT_EQ(copy.metadata.at("dead_letter").at("attempts").get<int>(), 1);
  }
}

TEST(WebhookDelivery, A410DisablesTheEndpointAndLaterEventsFailAtOnce) {
  TestServer server([](const Received&, std::size_t) { return Reply{.status = 410}; });
  auto hook = std::make_shared<Webhook>(options_for(server));
  auto dead = std::make_shared<TestAdapter>("dead");
  TelemetryRecorder recorder("webhook-410", {{"emissions", "webhook", "disabled"}});
  emissions::Emitter emitter(config_with(hook, {.retry = quick_retries(), .dead_letter = dead}));
  commit_each(emitter, 1);
  ASSERT_TRUE(emitter.drain(10s).ok());
  commit_each(emitter, 5);
  ASSERT_TRUE(emitter.drain(10s).ok());

  EXPECT_EQ(server.request_count(), 1u);  // the later events were never sent
  const emissions::AdapterStats stats = emitter.stats().adapters[0];
  EXPECT_EQ(stats.failed, 6u);
  EXPECT_EQ(stats.retried, 0u);
  ASSERT_TRUE(dead->wait_for([](auto events) { return events.size() >= 6; }, 5s));
  const std::vector<emissions::Event> copies = dead->events();
  EXPECT_THAT(dead_reason(copies[0]), HasSubstr("HTTP 410 Gone"));
  for (std::size_t i = 1; i < copies.size(); ++i) {
    EXPECT_THAT(dead_reason(copies[i]), HasSubstr("is disabled"));
    EXPECT_THAT(dead_reason(copies[i]), HasSubstr("410"));
  }
  ASSERT_EQ(recorder.records({"emissions", "webhook", "disabled"}).size(), 1u);
  const auto record = recorder.records({"emissions", "webhook", "disabled"})[0];
  EXPECT_EQ(record.metadata.at("status"), 410);
  EXPECT_EQ(record.metadata.at("adapter"), "hook");
}

TEST(WebhookDelivery, RedirectsAreNotFollowedAndFailNamingTheLocation) {
  TestServer server([](const Received&, std::size_t) {
    return Reply{.status = 301, .headers = {{"Location", "/moved/here?token=s3cr3t"}}};
  });
  auto hook = std::make_shared<Webhook>(options_for(server));
  auto dead = std::make_shared<TestAdapter>("dead");
  emissions::Emitter emitter(config_with(hook, {.retry = quick_retries(), .dead_letter = dead}));
  commit_each(emitter, 1);
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(server.request_count(), 1u);  // nothing went to /moved/here
  EXPECT_EQ(emitter.stats().adapters[0].retried, 0u);
  ASSERT_TRUE(dead->wait_for([](auto events) { return !events.empty(); }, 5s));
  const std::string reason = dead_reason(dead->events()[0]);
  EXPECT_THAT(reason, HasSubstr("HTTP 301"));
  EXPECT_THAT(reason,
              HasSubstr("redirects to http://127.0.0.1:" + std::to_string(server.port()) + ": "));
  EXPECT_THAT(reason, Not(HasSubstr("/moved/here")));  // a path may be a credential
  EXPECT_THAT(reason, HasSubstr("not followed"));
  EXPECT_THAT(reason, Not(HasSubstr("s3cr3t")));  // the query is not quoted
}

// The gap between a request's first and second arrival, for the event with payload n = 0.
std::chrono::steady_clock::duration gap_between_attempts(const TestServer& server) {
  const std::vector<Received> requests = server.requests();
  EXPECT_GE(requests.size(), 2u);
  if (requests.size() < 2) return {};
  EXPECT_EQ(requests[0].header("webhook-id"), requests[1].header("webhook-id"));
  return requests[1].arrived - requests[0].arrived;
}

// Sends one event to `server` (which refuses it once), checks it was delivered, and returns
// the gap between its two attempts.
std::chrono::steady_clock::duration gap_of_one_retried_event(const TestServer& server) {
  auto hook = std::make_shared<Webhook>(options_for(server));
  emissions::Emitter emitter(config_with(hook, {.retry = quick_retries()}));
  commit_each(emitter, 1);
  EXPECT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 1u);
  return gap_between_attempts(server);
}

TEST(WebhookDelivery, A429WithRetryAfterInSecondsWaitsThatLong) {
  TestServer server([](const Received&, std::size_t index) {
    return index == 0 ? Reply{.status = 429, .headers = {{"Retry-After", "2"}}}
                      : Reply{.status = 200};
  });
  EXPECT_GE(gap_of_one_retried_event(server), 2s);
}

TEST(WebhookDelivery, A503WithRetryAfterAsAnHttpDateWaitsUntilThen) {
  TestServer server([](const Received&, std::size_t index) {
    if (index != 0) return Reply{.status = 200};
    // IMF-fixdate, three seconds on (whole seconds: at least two from now). From
    // system_clock, not time(): glibc's time() reads a coarse clock that can lag the one
    // the adapter compares the date with by a few milliseconds (a 1.995 s gap was seen).
    const std::time_t at =
        std::chrono::system_clock::to_time_t(std::chrono::system_clock::now()) + 3;
    std::tm utc{};
    gmtime_r(&at, &utc);
    char text[64];
    std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &utc);
    return Reply{.status = 503, .headers = {{"Retry-After", text}}};
  });
  EXPECT_GE(gap_of_one_retried_event(server), 2s);
}

TEST(WebhookDelivery, A408AndA5xxAreRetriedWithTheirCodes) {
  TestServer server([](const Received&, std::size_t index) {
    const int statuses[] = {408, 500, 502, 504, 200};
    return Reply{.status = statuses[std::min<std::size_t>(index, 4)]};
  });
  auto hook = std::make_shared<Webhook>(options_for(server));
  TelemetryRecorder recorder("webhook-5xx", {{"emissions", "adapter", "retry"}});
  emissions::Emitter emitter(config_with(hook, {.retry = quick_retries()}));
  commit_each(emitter, 1);
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 1u);
  EXPECT_EQ(emitter.stats().adapters[0].retried, 4u);
  const auto retries = recorder.records({"emissions", "adapter", "retry"});
  ASSERT_EQ(retries.size(), 4u);
  EXPECT_THAT(retries[0].metadata.at("reason").get<std::string>(), HasSubstr("timeout: "));
  EXPECT_THAT(retries[0].metadata.at("reason").get<std::string>(), HasSubstr("HTTP 408"));
  EXPECT_THAT(retries[1].metadata.at("reason").get<std::string>(), HasSubstr("unavailable: "));
  EXPECT_THAT(retries[1].metadata.at("reason").get<std::string>(), HasSubstr("HTTP 500"));
}

TEST(WebhookDelivery, ASlowResponseTimesOutAndIsRetried) {
  TestServer server([](const Received&, std::size_t index) {
    return index == 0 ? Reply{.status = 200, .delay = 3s} : Reply{.status = 200};
  });
  WebhookOptions options = options_for(server);
  options.timeout = 300ms;
  auto hook = std::make_shared<Webhook>(std::move(options));
  TelemetryRecorder recorder("webhook-timeout", {{"emissions", "adapter", "retry"}});
  emissions::Emitter emitter(config_with(hook, {.retry = quick_retries()}));
  const auto started = std::chrono::steady_clock::now();
  commit_each(emitter, 1);
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2500ms);  // did not wait for the 3 s
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 1u);
  const auto retries = recorder.records({"emissions", "adapter", "retry"});
  ASSERT_GE(retries.size(), 1u);
  EXPECT_THAT(retries[0].metadata.at("reason").get<std::string>(), HasSubstr("timeout: "));
}

TEST(WebhookDelivery, ARefusedConnectionIsRetriedThenDeadLettered) {
  const int port = emissions::webhooks_test::unused_port();
  WebhookOptions options;
  options.url = "http://127.0.0.1:" + std::to_string(port) + "/hook";
  options.secrets = {kSecret};
  options.allow_private_networks = true;
  auto hook = std::make_shared<Webhook>(std::move(options));
  auto dead = std::make_shared<TestAdapter>("dead");
  emissions::Emitter emitter(config_with(hook, {.retry = quick_retries(3), .dead_letter = dead}));
  commit_each(emitter, 1);
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(emitter.stats().adapters[0].retried, 2u);
  EXPECT_EQ(emitter.stats().adapters[0].failed, 1u);
  ASSERT_TRUE(dead->wait_for([](auto events) { return !events.empty(); }, 5s));
  const std::string reason = dead_reason(dead->events()[0]);
  EXPECT_THAT(reason, HasSubstr("unavailable: webhook 'webhook': request to http://127.0.0.1:"));
  EXPECT_THAT(reason, HasSubstr("Couldn't connect to server"));
  EXPECT_EQ(dead->events()[0].metadata.at("dead_letter").at("attempts").get<int>(), 3);
}

TEST(WebhookDelivery, AConnectionResetWithoutAResponseIsRetried) {
  TestServer server([](const Received&, std::size_t index) {
    return index < 2 ? Reply{.action = Reply::Action::reset} : Reply{.status = 204};
  });
  auto hook = std::make_shared<Webhook>(options_for(server));
  emissions::Emitter emitter(config_with(hook, {.retry = quick_retries()}));
  commit_each(emitter, 1);
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 1u);
  EXPECT_GE(emitter.stats().adapters[0].retried, 1u);
  EXPECT_EQ(server.request_count(), 3u);
}

TEST(WebhookDelivery, AReplyThatIsNotHttpIsRetried) {
  TestServer server([](const Received&, std::size_t index) {
    const char* replies[] = {"garbage\r\n\r\n", "HTTP/1.1 abc Weird\r\n\r\n",
                             "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"};
    if (index < 3) return Reply{.action = Reply::Action::respond_reset, .raw = replies[index]};
    return Reply{.status = 200};
  });
  auto hook = std::make_shared<Webhook>(options_for(server));
  TelemetryRecorder recorder("webhook-garbage", {{"emissions", "adapter", "retry"}});
  emissions::Emitter emitter(config_with(hook, {.retry = quick_retries()}));
  commit_each(emitter, 1);
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 1u);
  EXPECT_EQ(emitter.stats().adapters[0].retried, 3u);
  for (const auto& retry : recorder.records({"emissions", "adapter", "retry"})) {
    EXPECT_THAT(retry.metadata.at("reason").get<std::string>(), HasSubstr("unavailable: "));
  }
}

TEST(WebhookDelivery, AResponseFollowedByAResetStillAcknowledges) {
  TestServer server([](const Received&, std::size_t) {
    return Reply{.status = 200, .action = Reply::Action::respond_reset};
  });
  auto hook = std::make_shared<Webhook>(options_for(server));
  emissions::Emitter emitter(config_with(hook, {.retry = quick_retries()}));
  commit_each(emitter, 4);
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 4u);
  EXPECT_EQ(emitter.stats().adapters[0].retried, 0u);
  EXPECT_EQ(server.request_count(), 4u);
}

TEST(WebhookDelivery, AnEventOverMaxBodyBytesFailsBeforeAnyRequest) {
  TestServer server([](const Received&, std::size_t) { return Reply{.status = 200}; });
  WebhookOptions options = options_for(server);
  options.max_body_bytes = 300;
  auto hook = std::make_shared<Webhook>(std::move(options));
  auto dead = std::make_shared<TestAdapter>("dead");
  emissions::Emitter emitter(config_with(hook, {.retry = quick_retries(), .dead_letter = dead}));
  emissions::Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("small", {{"n", 1}, {"canary", kCanary}}).ok());
  ASSERT_TRUE(
      tx.emit("large", {{"n", 2}, {"canary", kCanary}, {"blob", std::string(400, 'x')}}).ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 1u);
  EXPECT_EQ(emitter.stats().adapters[0].failed, 1u);
  EXPECT_EQ(server.request_count(), 1u);
  ASSERT_TRUE(dead->wait_for([](auto events) { return !events.empty(); }, 5s));
  EXPECT_EQ(dead->events()[0].name.str(), "large");
  EXPECT_THAT(dead_reason(dead->events()[0]), HasSubstr("over max_body_bytes (300); not sent"));
}

TEST(WebhookDelivery, AnEventThatCannotBeSerializedFailsForGood) {
  TestServer server([](const Received&, std::size_t) { return Reply{.status = 200}; });
  auto hook = std::make_shared<Webhook>(options_for(server));
  auto dead = std::make_shared<TestAdapter>("dead");
  emissions::Emitter emitter(config_with(hook, {.retry = quick_retries(), .dead_letter = dead}));
  emissions::Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("broken", {{"canary", kCanary}, {"text", std::string("\xC3\x28") + kCanary}})
                  .ok());  // not UTF-8
  ASSERT_TRUE(tx.emit("fine", {{"n", 1}, {"canary", kCanary}}).ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 1u);
  EXPECT_EQ(emitter.stats().adapters[0].failed, 1u);
  EXPECT_EQ(server.request_count(), 1u);
}

TEST(WebhookDelivery, NoMoreThanMaxConnectionsRequestsAtOnce) {
  std::atomic<int> in_flight{0};
  std::atomic<int> most{0};
  TestServer server([&](const Received&, std::size_t) {
    const int now = ++in_flight;
    int seen = most.load();
    while (now > seen && !most.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(30ms);
    --in_flight;
    return Reply{.status = 200};
  });
  WebhookOptions options = options_for(server);
  options.max_connections = 3;
  auto hook = std::make_shared<Webhook>(std::move(options));
  emissions::Emitter emitter(config_with(hook, {.concurrency = 2}));
  commit_each(emitter, 60);
  ASSERT_TRUE(emitter.drain(30s).ok());
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 60u);
  EXPECT_EQ(server.request_count(), 60u);
  EXPECT_EQ(most.load(), 3);
  EXPECT_LE(server.connections(), 3u);  // kept alive and reused
}

TEST(WebhookDelivery, TerminateGivesUpOnAStuckEndpointByItsDeadline) {
  TestServer server(
      [](const Received&, std::size_t) { return Reply{.status = 200, .delay = 20s}; });
  WebhookOptions options = options_for(server);
  options.timeout = std::chrono::minutes(1);
  auto hook = std::make_shared<Webhook>(std::move(options));
  TelemetryRecorder recorder("webhook-terminated", {{"emissions", "webhook", "terminated"}});
  emissions::Config config = config_with(hook);
  config.shutdown_timeout = 300ms;
  auto emitter = std::make_unique<emissions::Emitter>(std::move(config));
  commit_each(*emitter, 3);
  ASSERT_TRUE(server.wait_for_requests(3, 5s));
  const auto started = std::chrono::steady_clock::now();
  const emissions::Status shut = emitter->shutdown(300ms);
  EXPECT_FALSE(shut.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  EXPECT_EQ(emitter->stats().adapters[0].delivered, 0u);
  // The adapter is terminated by shutdown() when its consumer exited within the grace after
  // the deadline, otherwise by the destructor (zero deadline): on a loaded machine either
  // can happen. Both must give up on the stuck requests at once, exactly once.
  const auto destroying = std::chrono::steady_clock::now();
  emitter.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - destroying, 3s);
  EXPECT_EQ(hook->outstanding(), 0u);
  ASSERT_EQ(recorder.records({"emissions", "webhook", "terminated"}).size(), 1u);
  EXPECT_EQ(recorder.records({"emissions", "webhook", "terminated"})[0].measurements.at("left"), 3);
  // After terminate, a delivery fails at once with `closed`.
  EXPECT_EQ(emissions::testing::deliver_now(*hook, std::vector<emissions::Event>(1)).code(),
            Errc::closed);
}

TEST(WebhookDelivery, ShutdownFromATelemetryHandlerOnTheIoThreadNeitherHangsNorCrashes) {
  TestServer server([](const Received&, std::size_t) { return Reply{.status = 200}; });
  auto hook = std::make_shared<Webhook>(options_for(server));
  auto emitter = std::make_unique<emissions::Emitter>(config_with(hook));
  std::atomic<bool> called{false};
  std::atomic<bool> returned{false};
  emissions::Status inside;
  ASSERT_TRUE(emissions::telemetry::attach("webhook-reentry", {"emissions", "webhook", "response"},
                                           [&](auto&, auto&, auto&) {
                                             if (called.exchange(true)) return;
                                             // On the adapter's I/O thread, waiting for it.
                                             inside = emitter->shutdown(300ms);
                                             returned = true;
                                           })
                  .ok());
  commit_each(*emitter, 3);
  const auto started = std::chrono::steady_clock::now();
  while (!returned && std::chrono::steady_clock::now() - started < 10s)
    std::this_thread::sleep_for(10ms);
  (void)emissions::telemetry::detach("webhook-reentry");
  ASSERT_TRUE(returned.load());
  EXPECT_FALSE(inside.ok());  // it could not drain what its own thread was to settle
  // The loop fails what is left once the callback has returned, a moment after `returned`.
  const auto callback_returned = std::chrono::steady_clock::now();
  while (hook->outstanding() != 0 && std::chrono::steady_clock::now() - callback_returned < 10s)
    std::this_thread::sleep_for(1ms);
  EXPECT_EQ(hook->outstanding(), 0u);
  emitter.reset();  // joins the adapter's I/O thread from here
  hook.reset();
}

}  // namespace
