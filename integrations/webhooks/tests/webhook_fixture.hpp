// What the webhook tests share: secrets, options pointing at a TestServer, an Emitter around
// a Webhook, and checking a received request's signature both with our verifier and with
// the openssl command.
#pragma once

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "emissions/adapters/webhook.hpp"
#include "emissions/emitter.hpp"
#include "emissions/webhooks/verify.hpp"
#include "temp_dir.hpp"
#include "test_server.hpp"

namespace emissions::webhooks_test {

// 24 and 32 random bytes.
inline const std::string kSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
inline const std::string kOtherSecret = "whsec_1X5ns+JwydcD0XgUN0Ey3qxcS9pzTbr6YXS0y0SBldM=";

// In every payload the tests send: it must never show up in an error message or in telemetry
// metadata (webhook_canary_test.cpp watches every test of the binary for it).
inline const std::string kCanary = "CANARY-8d2f61c0e4";

// Options for a webhook to `server` (loopback, so allow_private_networks).
inline adapters::WebhookOptions options_for(const TestServer& server, std::string name = "hook") {
  adapters::WebhookOptions options;
  options.url = server.url();
  options.secrets = {kSecret};
  options.allow_private_networks = true;
  options.timeout = std::chrono::seconds(5);
  options.name = std::move(name);
  return options;
}

// Retries that come quickly.
inline RetryPolicy quick_retries(std::uint32_t attempts = 20) {
  return RetryPolicy{.max_attempts = attempts,
                     .initial_backoff = std::chrono::milliseconds(10),
                     .max_backoff = std::chrono::milliseconds(100)};
}

inline Config config_with(const std::shared_ptr<adapters::Webhook>& hook,
                          AdapterOptions options = {}) {
  Config config;
  config.make_default = false;
  config.add_adapter(hook, std::move(options));
  return config;
}

// Commits `n` events named `name` with payload {"n": i, "canary": kCanary} (and `extra`
// merged in), one transaction each.
inline void commit_each(Emitter& emitter, int n, const std::string& name = "order_created",
                        const nlohmann::json& extra = nlohmann::json::object()) {
  for (int i = 0; i < n; ++i) {
    Transaction tx = emitter.start();
    nlohmann::json payload = extra;
    payload["n"] = i;
    payload["canary"] = kCanary;
    ASSERT_TRUE(tx.emit(name, payload).ok());
    ASSERT_TRUE(tx.commit().ok());
  }
}

// Whether `request` carries a valid signature of its body under `secrets`, per our verifier.
inline Status verify_request(const Received& request, const std::vector<std::string>& secrets) {
  return webhooks::verify(secrets, request.header("webhook-id"),
                          request.header("webhook-timestamp"), request.header("webhook-signature"),
                          request.body);
}

// `v1,` + base64(HMAC-SHA256) of `id.timestamp.body` under `secret` (whsec_...), computed by
// the openssl command from a file holding exactly those bytes: nothing of ours is involved,
// not even the secret's base64 decoding.
inline std::string openssl_signature(const std::string& secret, const std::string& id,
                                     const std::string& timestamp, const std::string& body) {
  const test_support::TempDir dir;
  const std::string content = (dir.path() / "content").string();
  std::ofstream(content, std::ios::binary) << id << '.' << timestamp << '.' << body;
  const auto [decoded, key_hex] =
      run_command("printf '%s' '" + secret.substr(6) +
                  "' | openssl base64 -d -A | od -An -v -tx1 | tr -d ' \\n'");
  EXPECT_TRUE(decoded);
  const auto [ok, out] = run_command("openssl dgst -sha256 -mac HMAC -macopt hexkey:" + key_hex +
                                     " -binary '" + content + "' | openssl base64 -A");
  EXPECT_TRUE(ok) << out;
  return "v1," + out;
}

// The same for what `request` carries.
inline std::string openssl_signature(const Received& request, const std::string& secret) {
  return openssl_signature(secret, request.header("webhook-id"),
                           request.header("webhook-timestamp"), request.body);
}

}  // namespace emissions::webhooks_test
