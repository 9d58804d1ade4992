// HTTPS: a server with a certificate the test makes (the openssl command). Certificates and
// host names are verified (a wrong host name or an unknown authority gets no request through),
// insecure_skip_verify turns both off (and warns once), and HTTP/2 is used when the server
// offers it.
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "emissions/adapters/webhook.hpp"
#include "emissions/emitter.hpp"
#include "emissions/testing.hpp"
#include "recording_adapter.hpp"
#include "temp_dir.hpp"
#include "test_server.hpp"
#include "webhook_access.hpp"
#include "webhook_fixture.hpp"

namespace {

using emissions::adapters::Webhook;
using emissions::adapters::WebhookOptions;
using emissions::detail::WebhookAccess;
using emissions::test_support::TelemetryRecorder;
using emissions::testing::TestAdapter;
using emissions::webhooks_test::commit_each;
using emissions::webhooks_test::config_with;
using emissions::webhooks_test::kSecret;
using emissions::webhooks_test::make_certificate;
using emissions::webhooks_test::options_for;
using emissions::webhooks_test::quick_retries;
using emissions::webhooks_test::Received;
using emissions::webhooks_test::Reply;
using emissions::webhooks_test::TestServer;
using emissions::webhooks_test::TlsFiles;
using emissions::webhooks_test::verify_request;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

Reply ok(const Received&, std::size_t) {
  return Reply{.status = 200};
}

class WebhookTls : public ::testing::Test {
 protected:
  void SetUp() override {
    // One for 127.0.0.1 (and localhost), one for a name the tests never connect to.
    right_ = make_certificate(dir_.path().string(), "right", "IP:127.0.0.1,DNS:localhost");
    wrong_ = make_certificate(dir_.path().string(), "wrong", "DNS:wrong.example.invalid");
  }

  // A webhook to `server`, trusting `ca` (empty: the system's authorities only).
  static std::shared_ptr<Webhook> hook_for(const TestServer& server, const std::string& ca,
                                           bool insecure = false) {
    WebhookOptions options = options_for(server);
    options.insecure_skip_verify = insecure;
    auto hook = std::make_shared<Webhook>(std::move(options));
    if (!ca.empty()) WebhookAccess::trust_ca_file(*hook, ca);
    return hook;
  }

  // Delivers one event through `hook` with two attempts; the dead letter's reason, or "" when
  // it was delivered.
  static std::string deliver_one(const std::shared_ptr<Webhook>& hook) {
    auto dead = std::make_shared<TestAdapter>("dead");
    emissions::Emitter emitter(config_with(hook, {.retry = quick_retries(2), .dead_letter = dead}));
    commit_each(emitter, 1);
    EXPECT_TRUE(emitter.drain(10s).ok());
    if (emitter.stats().adapters[0].delivered == 1) return "";
    EXPECT_TRUE(dead->wait_for([](auto events) { return !events.empty(); }, 5s));
    return dead->events().at(0).metadata.at("dead_letter").at("reason").get<std::string>();
  }

  emissions::test_support::TempDir dir_;
  TlsFiles right_;
  TlsFiles wrong_;
};

TEST_F(WebhookTls, AVerifiedCertificateDelivers) {
  TestServer server(ok, right_);
  EXPECT_EQ(deliver_one(hook_for(server, right_.certificate)), "");
  ASSERT_EQ(server.request_count(), 1u);
  const Received r = server.requests()[0];
  EXPECT_EQ(r.version, "HTTP/1.1");
  EXPECT_TRUE(verify_request(r, {kSecret}).ok());
}

TEST_F(WebhookTls, AWrongHostNameIsRefused) {
  TestServer server(ok, wrong_);
  const std::string reason = deliver_one(hook_for(server, wrong_.certificate));
  EXPECT_THAT(reason, HasSubstr("unavailable: webhook 'hook': request to https://127.0.0.1:"));
  EXPECT_THAT(reason, HasSubstr("SSL: no alternative certificate subject name matches target "
                                "host name '127.0.0.1'"));
  // It connected, and libcurl hung up at the certificate: no request got through.
  EXPECT_GE(server.connections(), 1u);
  EXPECT_EQ(server.request_count(), 0u);
}

TEST_F(WebhookTls, AnUnknownAuthorityIsRefused) {
  TestServer server(ok, right_);
  const std::string reason = deliver_one(hook_for(server, ""));  // the system's CAs only
  EXPECT_THAT(reason, HasSubstr("SSL certificate problem"));
  EXPECT_EQ(server.request_count(), 0u);
}

TEST_F(WebhookTls, InsecureSkipVerifyTurnsBothChecksOffAndWarnsOnce) {
  TelemetryRecorder recorder("webhook-insecure", {{"emissions", "webhook", "warning"}});
  TestServer server(ok, wrong_);
  EXPECT_EQ(deliver_one(hook_for(server, "", true)), "");  // unknown authority, wrong name
  EXPECT_EQ(server.request_count(), 1u);
  const auto warnings = recorder.records({"emissions", "webhook", "warning"});
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0].metadata.at("reason").get<std::string>(),
              HasSubstr("insecure_skip_verify"));
}

TEST_F(WebhookTls, Http2WhenTheServerOffersIt) {
#ifndef EMISSIONS_WEBHOOKS_TEST_HTTP2
  GTEST_SKIP() << "built without nghttp2 (libnghttp2-dev): no HTTP/2 server to test against";
#else
  TlsFiles h2 = right_;
  h2.http2 = true;
  TestServer server(
      [](const Received&, std::size_t index) {
        return index % 4 == 0 ? Reply{.status = 503} : Reply{.status = 202};
      },
      h2);
  auto hook = hook_for(server, right_.certificate);
  emissions::Emitter emitter(config_with(hook, {.retry = quick_retries()}));
  commit_each(emitter, 40);
  ASSERT_TRUE(emitter.drain(20s).ok());
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 40u);
  EXPECT_GT(emitter.stats().adapters[0].retried, 0u);
  std::set<std::string> ids;
  for (const Received& r : server.requests()) {
    EXPECT_EQ(r.version, "HTTP/2");
    EXPECT_EQ(r.method, "POST");
    EXPECT_EQ(r.header("content-type"), "application/json");
    EXPECT_TRUE(verify_request(r, {kSecret}).ok()) << r.header("webhook-id");
    ids.insert(r.header("webhook-id"));
  }
  EXPECT_EQ(ids.size(), 40u);
  EXPECT_EQ(server.connections(), 1u);  // multiplexed on one connection
#endif
}

}  // namespace
