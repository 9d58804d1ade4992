// Invalid WebhookOptions are a ConfigError from the constructor, naming the field and never
// quoting a secret, a header value or the URL's credentials.
#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "emissions/adapters/webhook.hpp"
#include "recording_adapter.hpp"
#include "webhook_fixture.hpp"

namespace {

using emissions::adapters::Webhook;
using emissions::adapters::WebhookOptions;
using emissions::webhooks_test::kSecret;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

WebhookOptions valid() {
  WebhookOptions options;
  options.url = "https://hooks.example.com/in";
  options.secrets = {kSecret};
  return options;
}

// The ConfigError's text, or "" when the constructor accepted the options.
std::string refusal(const WebhookOptions& options) {
  try {
    Webhook hook(options);
    return "";
  } catch (const emissions::ConfigError& e) {
    return e.what();
  }
}

TEST(WebhookOptions, TheDefaultsWithAUrlAndASecretAreValid) {
  EXPECT_EQ(refusal(valid()), "");
  WebhookOptions options = valid();
  EXPECT_EQ(options.timeout, 10s);
  EXPECT_EQ(options.max_connections, 8u);
  EXPECT_EQ(options.max_body_bytes, std::size_t{1} << 20);
  EXPECT_FALSE(options.batch);
  EXPECT_FALSE(options.allow_private_networks);
  EXPECT_FALSE(options.insecure_skip_verify);
  EXPECT_EQ(options.name, "webhook");
  // Designated initializers, as the README shows.
  Webhook hook(WebhookOptions{.url = "http://hooks.example.com/in",
                              .secrets = {kSecret},
                              .headers = {{"Authorization", "Bearer x"}},
                              .timeout = 2s,
                              .batch = true,
                              .name = "orders"});
  EXPECT_EQ(hook.name(), "orders");
}

TEST(WebhookOptions, EachInvalidFieldIsNamed) {
  struct Case {
    std::string field;
    std::function<void(WebhookOptions&)> change;
  };
  const std::vector<Case> cases = {
      {"WebhookOptions.url must be set", [](WebhookOptions& o) { o.url = ""; }},
      {"WebhookOptions.url must be an http:// or https:// URL (got a URL with scheme 'ftp')",
       [](WebhookOptions& o) { o.url = "ftp://files.example.com/in"; }},
      {"WebhookOptions.url must be an absolute", [](WebhookOptions& o) { o.url = "hooks/in"; }},
      {"WebhookOptions.url must be an absolute",
       [](WebhookOptions& o) { o.url = "https://exa mple.com/"; }},
      {"WebhookOptions.secrets must be at least one secret",
       [](WebhookOptions& o) { o.secrets.clear(); }},
      {"WebhookOptions.secrets[1] must be whsec_ followed by the base64 of 24 to 64 bytes (got a "
       "secret that has no whsec_ prefix)",
       [](WebhookOptions& o) { o.secrets.push_back("C2FVsBQIhrscChlQIMV+b5sSYspob7oD"); }},
      {"WebhookOptions.secrets[0] must be whsec_ followed by the base64 of 24 to 64 bytes (got a "
       "secret that is not valid base64 after whsec_)",
       [](WebhookOptions& o) { o.secrets = {"whsec_C2FVsBQIhrscChlQ*MV+b5sSYspob7oD"}; }},
      {"(got a secret that decodes to 12 bytes)",
       [](WebhookOptions& o) { o.secrets = {"whsec_QUJDREVGR0hJSktM"}; }},
      {"(got a secret that decodes to 66 bytes)",
       [](WebhookOptions& o) { o.secrets = {"whsec_" + std::string(88, 'A')}; }},
      {"WebhookOptions.headers[\"Content-Type\"] is written by the adapter",
       [](WebhookOptions& o) { o.headers["Content-Type"] = "text/plain"; }},
      {"WebhookOptions.headers[\"webhook-id\"] is written by the adapter",
       [](WebhookOptions& o) { o.headers["webhook-id"] = "mine"; }},
      {"WebhookOptions.headers[\"Webhook-Signature\"] is written by the adapter",
       [](WebhookOptions& o) { o.headers["Webhook-Signature"] = "v1,x"; }},
      {"WebhookOptions.headers[\"HOST\"] is written by the adapter",
       [](WebhookOptions& o) { o.headers["HOST"] = "elsewhere"; }},
      {"WebhookOptions.headers[\"Content-Length\"] is written by the adapter",
       [](WebhookOptions& o) { o.headers["Content-Length"] = "1"; }},
      {"WebhookOptions.headers: the name of a header must be an HTTP token",
       [](WebhookOptions& o) { o.headers["Bad Name"] = "x"; }},
      {"WebhookOptions.headers: the name of a header must be an HTTP token (got an empty name)",
       [](WebhookOptions& o) { o.headers[""] = "x"; }},
      {"WebhookOptions.headers[\"X-Token\"] must not hold CR, LF or NUL",
       [](WebhookOptions& o) { o.headers["X-Token"] = "abc\r\nX-Injected: 1"; }},
      {"WebhookOptions.timeout must be in [1 ms, 86400000 ms] (got 0 ms)",
       [](WebhookOptions& o) { o.timeout = 0ms; }},
      {"WebhookOptions.timeout must be in [1 ms, 86400000 ms] (got -5 ms)",
       [](WebhookOptions& o) { o.timeout = -5ms; }},
      {"WebhookOptions.timeout must be in", [](WebhookOptions& o) { o.timeout = 25h; }},
      {"WebhookOptions.max_connections must be in [1, 1024] (got 0)",
       [](WebhookOptions& o) { o.max_connections = 0; }},
      {"WebhookOptions.max_connections must be in [1, 1024] (got 1025)",
       [](WebhookOptions& o) { o.max_connections = 1025; }},
      {"WebhookOptions.max_body_bytes must be in [1, 1073741824] (got 0)",
       [](WebhookOptions& o) { o.max_body_bytes = 0; }},
      {"WebhookOptions.name must be non-empty", [](WebhookOptions& o) { o.name = ""; }},
  };
  for (const Case& c : cases) {
    WebhookOptions options = valid();
    c.change(options);
    EXPECT_THAT(refusal(options), HasSubstr(c.field));
  }
}

TEST(WebhookOptions, HeaderNamesThatDifferOnlyInCaseAreRefusedNamingTheField) {
  WebhookOptions options = valid();
  options.headers = {{"X-Trace", "a"}, {"x-trace", "b"}};
  const std::string reason = refusal(options);
  // std::map orders "X-Trace" before "x-trace": the second one is named.
  EXPECT_THAT(reason, HasSubstr("WebhookOptions.headers[\"x-trace\"] is given twice"));
  EXPECT_THAT(reason, HasSubstr("differs from it only in case"));
  EXPECT_THAT(reason, Not(HasSubstr("\"a\""))) << "a header value is never quoted";

  options.headers = {{"Authorization", "x"}, {"AUTHORIZATION", "y"}, {"authorization", "z"}};
  EXPECT_THAT(refusal(options),
              HasSubstr("WebhookOptions.headers[\"Authorization\"] is given twice"));

  // The reserved names whatever their case.
  for (const std::string name : {"CONTENT-TYPE", "content-type", "Content-type", "WEBHOOK-ID",
                                 "webhook-timestamp", "WebHook-Anything"}) {
    options.headers = {{name, "x"}};
    EXPECT_THAT(refusal(options),
                HasSubstr("WebhookOptions.headers[\"" + name + "\"] is written by the adapter"))
        << name;
  }
  // One spelling of a name is fine.
  options.headers = {{"X-Trace", "a"}, {"X-Other", "b"}};
  EXPECT_EQ(refusal(options), "");
}

TEST(WebhookOptions, InsecureSkipVerifyWarnsOncePerAdapterOnStderrAndInTelemetry) {
  emissions::test_support::TelemetryRecorder recorder("webhook-insecure-options",
                                                      {{"emissions", "webhook", "warning"}});
  const auto count_lines = [](const std::string& text) {
    std::size_t lines = 0;
    for (std::size_t at = text.find("insecure_skip_verify"); at != std::string::npos;
         at = text.find("insecure_skip_verify", at + 1))
      ++lines;
    return lines;
  };
  WebhookOptions insecure = valid();
  insecure.url = "https://user:pass@hooks.example.com/in?token=t0k3n";
  insecure.insecure_skip_verify = true;
  insecure.name = "unsafe";

  ::testing::internal::CaptureStderr();
  {
    Webhook first(insecure);
    Webhook second(insecure);
    Webhook safe(valid());  // verifies: no warning
    for (int i = 0; i < 3; ++i)
      (void)first.flush(emissions::deadline_after(0ms));
  }
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(count_lines(err), 2u) << err;  // one line per insecure adapter
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 2) << err;
  EXPECT_THAT(err,
              HasSubstr("emissions: warning: webhook 'unsafe' (https://hooks.example.com:443)"));
  EXPECT_THAT(err, Not(HasSubstr("pass")));
  EXPECT_THAT(err, Not(HasSubstr("t0k3n")));
  EXPECT_THAT(err, Not(HasSubstr(kSecret.substr(6))));

  const auto warnings = recorder.records({"emissions", "webhook", "warning"});
  ASSERT_EQ(warnings.size(), 2u);
  for (const auto& warning : warnings) {
    EXPECT_EQ(warning.metadata.at("adapter"), "unsafe");
    EXPECT_EQ(warning.metadata.at("endpoint"), "https://hooks.example.com:443");
    EXPECT_THAT(warning.metadata.at("reason").get<std::string>(),
                HasSubstr("insecure_skip_verify"));
  }
}

TEST(WebhookOptions, ErrorsNeverQuoteSecretsHeaderValuesOrUrlCredentials) {
  const std::string canary = "CANARY5ecret";
  std::vector<WebhookOptions> bad;
  {
    WebhookOptions o = valid();
    o.secrets = {"whsec_" + canary};  // valid base64, too short
    bad.push_back(o);
  }
  {
    WebhookOptions o = valid();
    o.secrets = {canary + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"};  // no prefix
    bad.push_back(o);
  }
  {
    WebhookOptions o = valid();
    o.secrets = {"whsec_" + canary + "!!"};  // bad base64
    bad.push_back(o);
  }
  {
    WebhookOptions o = valid();
    o.headers["Authorization"] = "Bearer " + canary + "\n";
    bad.push_back(o);
  }
  {
    WebhookOptions o = valid();
    o.headers["webhook-secret"] = canary;
    bad.push_back(o);
  }
  {
    WebhookOptions o = valid();
    o.url = "gopher://user:" + canary + "@hooks.example.com/?key=" + canary;
    bad.push_back(o);
  }
  {
    WebhookOptions o = valid();
    o.url = "https://user:" + canary + "@exa mple.com/?key=" + canary;
    bad.push_back(o);
  }
  for (const WebhookOptions& options : bad) {
    const std::string text = refusal(options);
    EXPECT_NE(text, "");
    EXPECT_THAT(text, Not(HasSubstr(canary)));
  }
}

TEST(WebhookOptions, UrlsWithCredentialsPortsAndUpperCaseSchemesAreAccepted) {
  for (const std::string url :
       {"https://user:pass@hooks.example.com:8443/in?x=1", "HTTPS://hooks.example.com/in",
        "http://[2001:db8::1]:8080/in", "http://127.0.0.1/in"}) {
    WebhookOptions options = valid();
    options.url = url;
    EXPECT_EQ(refusal(options), "") << url;
  }
}

}  // namespace
