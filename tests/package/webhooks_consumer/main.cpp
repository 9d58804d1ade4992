// A downstream program using the installed webhook adapter and verifier: it builds an Emitter
// with the adapter (nothing is contacted until events flow), shuts down, checks that a bad
// secret is a ConfigError naming the field, and signs and verifies a message. It includes no
// libcurl or OpenSSL header.
#include <emissions/adapters/webhook.hpp>
#include <emissions/emissions.hpp>
#include <emissions/webhooks/verify.hpp>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

int main() {
  using emissions::adapters::Webhook;
  using emissions::adapters::WebhookOptions;
  const std::vector<std::string> secrets = {"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"};
  {
    emissions::Config config;
    config.make_default = false;
    config.add_adapter(std::make_shared<Webhook>(
        WebhookOptions{.url = "https://hooks.example.com/in", .secrets = secrets}));
    emissions::Emitter emitter(std::move(config));
    if (!emitter.shutdown(std::chrono::seconds(5)).ok()) return 1;
  }
  try {
    Webhook bad(WebhookOptions{.url = "https://hooks.example.com/in", .secrets = {"nope"}});
    return 1;
  } catch (const emissions::ConfigError& e) {
    if (std::string(e.what()).find("WebhookOptions.secrets[0]") == std::string::npos) return 1;
  }
  const std::int64_t now = std::time(nullptr);
  const std::string body = R"({"id":1})";
  const std::string signature = emissions::webhooks::sign(secrets, "msg_1", now, body);
  if (!emissions::webhooks::verify(secrets, "msg_1", std::to_string(now), signature, body).ok()) {
    return 1;
  }
  if (emissions::webhooks::verify(secrets, "msg_1", std::to_string(now), signature, body + " ")
          .ok()) {
    return 1;
  }
  std::printf(
      "webhooks consumer: adapter built, shut down, bad secret refused, signed, verified\n");
  return 0;
}
