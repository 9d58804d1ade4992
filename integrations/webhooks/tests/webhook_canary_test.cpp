// Secrets and payloads never reach telemetry or error messages.
//
// Every payload the webhook tests send holds kCanary (webhook_fixture.hpp). A global test
// environment listens to every telemetry event of the library for the whole run of this
// binary, whatever the test, and fails the run if any measurement or metadata holds the
// canary, a secret (or its key's base64) or the value of an Authorization header. The test
// below adds one scenario of each failure class with secrets in every place a user puts them
// (the URL's user information and query, headers), and checks the error messages too.
#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "emissions/adapters/webhook.hpp"
#include "emissions/emitter.hpp"
#include "emissions/telemetry.hpp"
#include "emissions/testing.hpp"
#include "emissions/webhooks/verify.hpp"
#include "test_server.hpp"
#include "webhook_access.hpp"
#include "webhook_fixture.hpp"

namespace {

using emissions::adapters::Webhook;
using emissions::adapters::WebhookOptions;
using emissions::testing::TestAdapter;
using emissions::webhooks_test::commit_each;
using emissions::webhooks_test::config_with;
using emissions::webhooks_test::kCanary;
using emissions::webhooks_test::kOtherSecret;
using emissions::webhooks_test::kSecret;
using emissions::webhooks_test::quick_retries;
using emissions::webhooks_test::Received;
using emissions::webhooks_test::Reply;
using emissions::webhooks_test::TestServer;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

const std::string kTokenCanary = "TOKEN-c4n4ry-91";  // in headers, URLs and queries

// The texts that must never show: payload canary, secrets, their keys' base64, tokens.
std::vector<std::string> forbidden() {
  return {kCanary, kSecret, kSecret.substr(6), kOtherSecret, kOtherSecret.substr(6), kTokenCanary};
}

// Every telemetry event the library (and this integration) executes.
std::vector<emissions::telemetry::EventName> every_event() {
  return {{"emissions", "buffer", "started"},    {"emissions", "buffer", "committed"},
          {"emissions", "buffer", "terminated"}, {"emissions", "event", "dropped"},
          {"emissions", "adapter", "success"},   {"emissions", "adapter", "error"},
          {"emissions", "adapter", "retry"},     {"emissions", "event", "dead_lettered"},
          {"emissions", "webhook", "response"},  {"emissions", "webhook", "disabled"},
          {"emissions", "webhook", "warning"},   {"emissions", "webhook", "terminated"},
          {"telemetry", "handler", "failure"}};
}

class CanaryWatch : public ::testing::Environment {
 public:
  void SetUp() override {
    // The handler holds the record, not this environment: a callback on an I/O thread that
    // detached itself (a test released its Webhook there) may still report after the last
    // test returned, while gtest deletes its environments.
    const emissions::Status attached = emissions::telemetry::attach_many(
        "webhook-canary-watch", every_event(),
        [record = record_](const emissions::telemetry::EventName& event,
                           const nlohmann::json& measurements, const nlohmann::json& metadata) {
          const std::string text = measurements.dump() + " " + metadata.dump();
          std::lock_guard lock(record->mutex);
          ++record->seen;
          for (const std::string& secret : forbidden()) {
            if (text.find(secret) != std::string::npos) {
              record->leaks.push_back(event.back() + ": " + text);
            }
          }
        });
    ASSERT_TRUE(attached.ok()) << attached.to_string();
  }
  void TearDown() override {
    (void)emissions::telemetry::detach("webhook-canary-watch");
    EXPECT_THAT(leaks(), ::testing::IsEmpty()) << "telemetry leaked a canary or a secret";
  }

  [[nodiscard]] std::size_t seen() const {
    std::lock_guard lock(record_->mutex);
    return record_->seen;
  }
  [[nodiscard]] std::vector<std::string> leaks() const {
    std::lock_guard lock(record_->mutex);
    return record_->leaks;
  }

 private:
  struct Record {
    std::mutex mutex;
    std::size_t seen = 0;
    std::vector<std::string> leaks;
  };
  const std::shared_ptr<Record> record_ = std::make_shared<Record>();
};

CanaryWatch* const g_watch =
    static_cast<CanaryWatch*>(::testing::AddGlobalTestEnvironment(new CanaryWatch));

void expect_clean(const std::string& text) {
  for (const std::string& secret : forbidden())
    EXPECT_THAT(text, Not(HasSubstr(secret)));
}

TEST(WebhookCanary, NoFailureClassQuotesAPayloadASecretOrAToken) {
  // The server echoes each request (body and signature headers) in its error responses, and
  // puts a token in its redirect's query.
  TestServer server([](const Received& r, std::size_t index) {
    const std::string echo = r.body + r.header("webhook-signature") + r.header("authorization");
    switch (index % 6) {
      case 0:
        return Reply{.status = 400, .headers = {{"X-Echo", kCanary}}, .body = echo};
      case 1:
        return Reply{.status = 503, .headers = {{"Retry-After", "0"}}, .body = echo};
      case 2:
        return Reply{.status = 302,
                     .headers = {{"Location", "https://user:" + kTokenCanary +
                                                  "@elsewhere.example/p?t=" + kTokenCanary}},
                     .body = echo};
      case 3:
        return Reply{.status = 200, .delay = 1s};  // times out
      case 4:
        return Reply{.action = Reply::Action::reset};
      default:
        return Reply{.status = 422, .body = echo};
    }
  });
  WebhookOptions options;
  options.url = "http://user:" + kTokenCanary + "@127.0.0.1:" + std::to_string(server.port()) +
                "/hook?token=" + kTokenCanary;
  options.secrets = {kSecret, kOtherSecret};
  options.headers = {{"Authorization", "Bearer " + kTokenCanary}};
  options.allow_private_networks = true;
  options.timeout = 300ms;
  options.max_body_bytes = 600;
  options.name = "canary";
  auto hook = std::make_shared<Webhook>(std::move(options));

  // A strict adapter refused by the address policy, and one against a TLS failure.
  WebhookOptions strict;
  strict.url = "https://user:" + kTokenCanary + "@10.0.0.1/hook?token=" + kTokenCanary;
  strict.secrets = {kSecret};
  strict.headers = {{"Authorization", kTokenCanary}};
  strict.name = "strict";
  auto refused = std::make_shared<Webhook>(std::move(strict));

  auto dead = std::make_shared<TestAdapter>("dead");
  emissions::Config config = config_with(hook, {.retry = quick_retries(3), .dead_letter = dead});
  config.add_adapter(refused, {.retry = quick_retries(3), .dead_letter = dead});
  emissions::Emitter emitter(std::move(config));
  const std::size_t seen_before = g_watch->seen();

  commit_each(emitter, 12);
  commit_each(emitter, 1, "too_large", {{"blob", std::string(700, 'b')}});
  ASSERT_TRUE(emitter.drain(30s).ok());
  const emissions::EmitterStats stats = emitter.stats();
  EXPECT_GT(stats.adapters[0].failed, 0u);
  EXPECT_GT(stats.adapters[0].retried, 0u);
  EXPECT_EQ(stats.adapters[1].failed, 13u);

  // Every reason the dead letter got (the Status texts of every failure class).
  ASSERT_TRUE(dead->wait_for(
      [&](auto events) { return events.size() >= stats.adapters[0].failed + 13; }, 10s));
  std::set<std::string> kinds;
  for (const emissions::Event& copy : dead->events()) {
    const std::string reason = copy.metadata.at("dead_letter").at("reason").get<std::string>();
    expect_clean(reason);
    if (reason.find("HTTP 400") != std::string::npos) kinds.insert("400");
    if (reason.find("HTTP 422") != std::string::npos) kinds.insert("422");
    if (reason.find("HTTP 302") != std::string::npos) kinds.insert("302");
    if (reason.find("max_body_bytes") != std::string::npos) kinds.insert("too large");
    if (reason.find("allow_private_networks") != std::string::npos) kinds.insert("refused");
    if (reason.find("HTTP 503") != std::string::npos) kinds.insert("503");
    if (reason.find("timed out") != std::string::npos) kinds.insert("timeout");
  }
  EXPECT_THAT(kinds, ::testing::IsSupersetOf({"400", "422", "302", "too large", "refused"}));

  const emissions::Status shut = emitter.shutdown(5s);
  expect_clean(shut.to_string());
  EXPECT_GT(g_watch->seen(), seen_before);  // the watch did see this test's telemetry
  EXPECT_THAT(g_watch->leaks(), ::testing::IsEmpty());

  // verify() on what a receiver might get wrong.
  const std::vector<std::string> secrets = {kSecret};
  const std::string body = R"({"c":")" + kCanary + R"("})";
  for (const std::string& header : std::vector<std::string>{
           "v1," + kSecret.substr(6), "v1,zzz", emissions::webhooks::sign(secrets, "i", 1, body)}) {
    expect_clean(emissions::webhooks::verify(secrets, "i", "1", header, body).message());
    expect_clean(emissions::webhooks::verify(secrets, "i", "x" + kCanary, header, body).message());
  }
}

}  // namespace
