// The private-network refusal: which addresses are refused (a table), and that with
// allow_private_networks = false a request to one is refused for good when libcurl opens the
// socket, after resolution, without a connection: a server listening on 127.0.0.1 sees none.
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "address_policy.hpp"
#include "emissions/adapters/webhook.hpp"
#include "emissions/emitter.hpp"
#include "emissions/testing.hpp"
#include "test_server.hpp"
#include "webhook_fixture.hpp"

namespace {

using emissions::adapters::Webhook;
using emissions::adapters::WebhookOptions;
using emissions::testing::TestAdapter;
using emissions::webhooks_test::commit_each;
using emissions::webhooks_test::config_with;
using emissions::webhooks_test::kSecret;
using emissions::webhooks_test::quick_retries;
using emissions::webhooks_test::Received;
using emissions::webhooks_test::Reply;
using emissions::webhooks_test::TestServer;
using ::testing::HasSubstr;
using namespace std::chrono_literals;
namespace detail = emissions::detail::webhooks;

// What the policy says of an address literal ("" when allowed).
std::string refusal_of(const std::string& literal) {
  if (literal.find(':') != std::string::npos) {
    sockaddr_in6 address{};
    address.sin6_family = AF_INET6;
    EXPECT_EQ(inet_pton(AF_INET6, literal.c_str(), &address.sin6_addr), 1) << literal;
    return detail::refused_address(reinterpret_cast<const sockaddr*>(&address), sizeof address);
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  EXPECT_EQ(inet_pton(AF_INET, literal.c_str(), &address.sin_addr), 1) << literal;
  return detail::refused_address(reinterpret_cast<const sockaddr*>(&address), sizeof address);
}

TEST(WebhookAddressPolicy, RefusesLoopbackPrivateLinkLocalAndMetadataAddresses) {
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"127.0.0.1", "loopback"},
      {"127.255.3.4", "loopback"},
      {"10.0.0.1", "private"},
      {"10.255.255.255", "private"},
      {"172.16.0.1", "private"},
      {"172.31.255.254", "private"},
      {"192.168.1.1", "private"},
      {"169.254.169.254", "cloud metadata"},
      {"169.254.1.1", "link-local"},
      {"0.0.0.0", "unspecified"},
      {"100.64.0.1", "shared"},
      {"100.100.100.200", "shared"},  // another cloud's metadata address
      {"224.0.0.1", "multicast"},
      {"255.255.255.255", "broadcast"},
      {"240.0.0.1", "reserved"},
      {"::1", "loopback"},
      {"::", "unspecified"},
      {"::ffff:127.0.0.1", "IPv4-mapped loopback"},
      {"::ffff:10.1.2.3", "IPv4-mapped private"},
      {"::ffff:169.254.169.254", "IPv4-mapped link-local (cloud metadata)"},
      {"::127.0.0.1", "IPv4-compatible loopback"},
      {"64:ff9b::10.0.0.1", "NAT64 private"},
      {"2002:a00:1::1", "6to4 private"},  // 2002:0a00:0001:: carries 10.0.0.1
      {"fc00::1", "unique local"},
      {"fd00:ec2::254", "unique local"},  // AWS's IPv6 metadata address
      {"fe80::1", "link-local"},
      {"febf::1", "link-local"},
      {"fec0::1", "site-local"},
      {"ff02::1", "multicast"},
  };
  for (const auto& [literal, what] : refused) {
    const std::string reason = refusal_of(literal);
    EXPECT_THAT(reason, HasSubstr(what)) << literal;
    EXPECT_FALSE(reason.empty()) << literal;
  }
  const std::vector<std::string> allowed = {"1.1.1.1",
                                            "8.8.8.8",
                                            "172.15.255.255",
                                            "172.32.0.0",
                                            "192.169.0.1",
                                            "100.63.255.255",
                                            "100.128.0.0",
                                            "169.253.255.255",
                                            "11.0.0.1",
                                            "2606:4700::1111",
                                            "::ffff:8.8.8.8",
                                            "64:ff9b::8.8.8.8",
                                            "2002:808:808::1" /* 6to4 of 8.8.8.8 */,
                                            "2a00:1450:4001::200e",
                                            "fbff::1"};
  for (const std::string& literal : allowed) {
    EXPECT_EQ(refusal_of(literal), "") << literal;
  }
}

// A webhook to `url`, with the default allow_private_networks = false.
std::shared_ptr<Webhook> strict_hook(const std::string& url, std::string name = "webhook") {
  WebhookOptions options;
  options.url = url;
  options.secrets = {kSecret};
  options.timeout = 5s;  // far longer than a refusal takes
  options.name = std::move(name);
  return std::make_shared<Webhook>(std::move(options));
}

TEST(WebhookAddressPolicy, LoopbackIsRefusedWithoutAConnectionAttempt) {
  TestServer server([](const Received&, std::size_t) { return Reply{.status = 200}; });
  const std::string port = std::to_string(server.port());
  // The same listening servers, by every name and form of loopback.
  std::vector<std::pair<std::string, std::string>> urls = {
      {"http://127.0.0.1:" + port + "/hook", "127.0.0.1 (loopback)"},
      {"http://localhost:" + port + "/hook", "(loopback)"},
      {"http://127.1:" + port + "/hook", "127.0.0.1 (loopback)"},
      {"http://0.0.0.0:" + port + "/hook", "0.0.0.0 (unspecified"},
      {"http://[::ffff:127.0.0.1]:" + port + "/hook", "IPv4-mapped loopback"},
  };
  std::unique_ptr<TestServer> server6;  // where the machine has IPv6 loopback
  try {
    server6 = std::make_unique<TestServer>(
        [](const Received&, std::size_t) { return Reply{.status = 200}; }, std::nullopt, "::1");
    urls.emplace_back("http://[::1]:" + std::to_string(server6->port()) + "/hook",
                      "::1 (loopback)");
  } catch (const std::exception& e) {
    std::printf("no IPv6 loopback here (%s): [::1] not tried\n", e.what());
  }
  for (const auto& [url, what] : urls) {
    SCOPED_TRACE(url);
    auto hook = strict_hook(url);
    auto dead = std::make_shared<TestAdapter>("dead");
    emissions::Emitter emitter(config_with(hook, {.retry = quick_retries(), .dead_letter = dead}));
    const auto started = std::chrono::steady_clock::now();
    commit_each(emitter, 1);
    ASSERT_TRUE(emitter.drain(10s).ok());
    EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
    const emissions::AdapterStats stats = emitter.stats().adapters[0];
    EXPECT_EQ(stats.failed, 1u);
    EXPECT_EQ(stats.retried, 0u);  // for good
    ASSERT_TRUE(dead->wait_for([](auto events) { return !events.empty(); }, 5s));
    const std::string reason =
        dead->events()[0].metadata.at("dead_letter").at("reason").get<std::string>();
    EXPECT_THAT(reason, HasSubstr("invalid_argument: "));
    EXPECT_THAT(reason, HasSubstr(what));
    EXPECT_THAT(reason, HasSubstr("allow_private_networks is false (no connection was made)"));
  }
  EXPECT_EQ(server.connections(), 0u);
  if (server6) {
    EXPECT_EQ(server6->connections(), 0u);
  }
}

TEST(WebhookAddressPolicy, PrivateAndMetadataAddressesAreRefusedAtOnce) {
  // Nothing listens there (or nothing reachable): without the policy these would time out or
  // be refused after a while; with it they fail for good at once.
  const std::vector<std::pair<std::string, std::string>> urls = {
      {"http://10.0.0.1/hook", "10.0.0.1 (private)"},
      {"http://169.254.169.254/latest/meta-data/", "169.254.169.254 (link-local (cloud metadata))"},
      {"http://172.16.5.4:8080/hook", "172.16.5.4 (private)"},
      {"https://192.168.0.10/hook", "192.168.0.10 (private)"},
      {"http://[fd00::1]/hook", "fd00::1 (private (unique local))"},
      {"http://[fe80::1]/hook", "fe80::1 (link-local)"},
  };
  // One adapter per URL (each with a name of its own), one dead letter for all.
  auto dead = std::make_shared<TestAdapter>("dead");
  emissions::Config config;
  config.make_default = false;
  for (std::size_t i = 0; i < urls.size(); ++i) {
    config.add_adapter(strict_hook(urls[i].first, "hook" + std::to_string(i)),
                       {.retry = quick_retries(), .dead_letter = dead});
  }
  emissions::Emitter emitter(std::move(config));
  const auto started = std::chrono::steady_clock::now();
  commit_each(emitter, 1);
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
  ASSERT_TRUE(dead->wait_for([&](auto events) { return events.size() >= urls.size(); }, 5s));
  std::vector<std::string> reasons;
  for (const emissions::Event& copy : dead->events())
    reasons.push_back(copy.metadata.at("dead_letter").at("reason").get<std::string>());
  for (std::size_t i = 0; i < urls.size(); ++i) {
    const emissions::AdapterStats stats = emitter.stats().adapters[i];
    EXPECT_EQ(stats.failed, 1u) << urls[i].first;
    EXPECT_EQ(stats.retried, 0u) << urls[i].first;
    EXPECT_THAT(reasons, ::testing::Contains(HasSubstr(urls[i].second))) << urls[i].first;
  }
}

TEST(WebhookAddressPolicy, AllowPrivateNetworksReachesLoopback) {
  TestServer server([](const Received&, std::size_t) { return Reply{.status = 200}; });
  WebhookOptions options;
  options.url = "http://localhost:" + std::to_string(server.port()) + "/hook";
  options.secrets = {kSecret};
  options.allow_private_networks = true;
  auto hook = std::make_shared<Webhook>(std::move(options));
  emissions::Emitter emitter(config_with(hook, {.retry = quick_retries()}));
  commit_each(emitter, 1);
  ASSERT_TRUE(emitter.drain(10s).ok());
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 1u);
  EXPECT_EQ(server.request_count(), 1u);
}

}  // namespace
