// The server over real sockets on 127.0.0.1: health checks, the bearer token, the bind
// address, bounded connections, malformed requests, start/stop.
#include "emissions/http/server.hpp"

#include <dirent.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "emissions/emissions.hpp"
#include "raw_client.hpp"

namespace emissions::http {
namespace {

using test::Connection;
using test::get;

class Sink final : public Adapter {
 public:
  std::string_view name() const override { return "sink"; }
  Status handle_events(std::span<const Event>) override { return {}; }
};

Config base_config() {
  Config config;
  config.make_default = false;
  config.add_adapter(std::make_shared<Sink>());
  return config;
}

TEST(Server, OneServerPerConfig) {
  Config config = base_config();
  auto a = watch(config);
  auto b = watch(config);
  EXPECT_THROW(Emitter{std::move(config)}, ConfigError);  // two adapters named emissions.http
}

TEST(Server, WatchAddsItsDropOldestAdapterNamedEmissionsHttp) {
  Config config = base_config();
  auto server = watch(config, {.client_queue = 20'000});
  ASSERT_EQ(config.adapters.size(), 2U);
  EXPECT_EQ(config.adapters[1].adapter->name(), "emissions.http");
  EXPECT_EQ(config.adapters[1].options.overflow, Overflow::drop_oldest);
  EXPECT_EQ(config.adapters[1].options.buffer_size, 20'000U);
  EXPECT_EQ(server->port(), 0);
}

TEST(Server, InvalidOptionsAreConfigErrors) {
  Config config;
  EXPECT_THROW((void)watch(config, {.client_queue = 0}), ConfigError);
  EXPECT_THROW((void)watch(config, {.history = 2'000'000}), ConfigError);
  EXPECT_THROW((void)watch(config, {.address = ""}), ConfigError);
  EXPECT_TRUE(config.adapters.empty());
}

TEST(Server, HealthzAlwaysAndReadyzUntilTheEmitterShutsDown) {
  Config config = base_config();
  auto server = watch(config);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(server->start(emitter).ok());
  ASSERT_NE(server->port(), 0);
  EXPECT_EQ(get(server->port(), "/healthz").status, 200);
  EXPECT_EQ(get(server->port(), "/readyz").status, 200);
  ASSERT_TRUE(emitter.shutdown(std::chrono::seconds(5)).ok());
  EXPECT_EQ(get(server->port(), "/readyz").status, 503);
  EXPECT_EQ(get(server->port(), "/healthz").status, 200);
  EXPECT_TRUE(server->stop().ok());
}

TEST(Server, BearerTokenGuardsEveryRouteButHealthz) {
  const std::string token = "s3cr3t/+token";
  Config config = base_config();
  auto server = watch(config, {.bearer_token = token});
  Emitter emitter(std::move(config));
  ASSERT_TRUE(server->start(emitter).ok());
  const auto port = server->port();

  for (const char* route : {"/", "/metrics", "/readyz", "/nowhere"}) {
    const auto r = get(port, route);
    EXPECT_EQ(r.status, 401) << route;
    EXPECT_TRUE(r.has_header("WWW-Authenticate: Bearer")) << route;
    EXPECT_EQ(r.body.find(token), std::string::npos);
  }
  EXPECT_EQ(get(port, "/healthz").status, 200);
  EXPECT_EQ(get(port, "/metrics", "Authorization: Bearer " + token + "\r\n").status, 200);
  EXPECT_EQ(get(port, "/metrics", "Authorization: bearer " + token + "\r\n").status, 200);
  EXPECT_EQ(get(port, "/metrics", "Authorization: Bearer " + token + "x\r\n").status, 401);
  EXPECT_EQ(get(port, "/metrics", "Authorization: Basic " + token + "\r\n").status, 401);
  // The query parameter is percent-decoded ('/' and '+' encoded).
  EXPECT_EQ(get(port, "/?access_token=s3cr3t%2F%2Btoken").status, 200);
  EXPECT_EQ(get(port, "/readyz?x=1&access_token=s3cr3t%2F%2Btoken").status, 200);
  EXPECT_EQ(get(port, "/?access_token=s3cr3t").status, 401);
  EXPECT_EQ(get(port, "/events?access_token=wrong").status, 401);
  EXPECT_TRUE(server->stop().ok());
}

// DNS rebinding: a page from an attacker's domain that resolves to 127.0.0.1 sends its own
// name as Host. Without a token the server answers only addresses and localhost.
TEST(Server, WithoutATokenOnlyAnAddressOrLocalhostIsAnsweredAsHost) {
  Config config = base_config();
  auto server = watch(config);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(server->start(emitter).ok());
  const auto port = server->port();
  const auto with_host = [&](const std::string& host, const std::string& target) {
    Connection c(port);
    c.send("GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n");
    return c.read_reply().status;
  };
  for (const std::string& host :
       std::vector<std::string>{"127.0.0.1", "127.0.0.1:" + std::to_string(port), "localhost",
                                "LOCALHOST:80", "[::1]:8080", "10.1.2.3"}) {
    EXPECT_EQ(with_host(host, "/metrics"), 200) << host;
  }
  for (const std::string& host : std::vector<std::string>{
           "attacker.example", "attacker.example:" + std::to_string(port),
           "127.0.0.1.attacker.example", "localhost.attacker.example", "1.2.3", "[::1]x"}) {
    EXPECT_EQ(with_host(host, "/metrics"), 403) << host;
    EXPECT_EQ(with_host(host, "/"), 403) << host;
  }
  EXPECT_EQ(with_host("attacker.example", "/healthz"), 200);
  EXPECT_TRUE(server->stop().ok());

  // With a token, any name: the token is what guards it.
  Config with_token = base_config();
  auto guarded = watch(with_token, {.bearer_token = "t"});
  Emitter other(std::move(with_token));
  ASSERT_TRUE(guarded->start(other).ok());
  Connection c(guarded->port());
  c.send(
      "GET /metrics?access_token=t HTTP/1.1\r\nHost: emissions.internal\r\n"
      "Connection: close\r\n\r\n");
  EXPECT_EQ(c.read_reply().status, 200);
  EXPECT_TRUE(guarded->stop().ok());
}

// Browsers let any page open a WebSocket to 127.0.0.1: the Origin must be the viewer's own.
TEST(Server, AWebSocketFromAnotherOriginIsRefused) {
  Config config = base_config();
  auto server = watch(config);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(server->start(emitter).ok());
  const auto port = server->port();
  const std::string host = "127.0.0.1:" + std::to_string(port);
  const auto upgrade = [&](const std::string& origin_header) {
    // An accepted upgrade stays open (no length, no end): read its head within 500 ms.
    Connection c(port, std::chrono::milliseconds(500));
    c.send("GET /events HTTP/1.1\r\nHost: " + host +
           "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
           origin_header + "\r\n");
    return c.read_reply().status;
  };
  EXPECT_EQ(upgrade("Origin: http://attacker.example\r\n"), 403);
  EXPECT_EQ(upgrade("Origin: null\r\n"), 403);
  EXPECT_EQ(upgrade("Origin: http://127.0.0.1:" + std::to_string(port + 1) + "\r\n"), 403);
  EXPECT_EQ(upgrade("Origin: http://" + host + "\r\n"), 101);  // the viewer's own page
  EXPECT_EQ(upgrade(""), 101);                                 // not a browser
  EXPECT_TRUE(server->stop().ok());
}

TEST(Server, RoutesAnswerWithTheirStatusAndType) {
  Config config = base_config();
  auto server = watch(config);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(server->start(emitter).ok());
  const auto port = server->port();
  const auto page = get(port, "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_TRUE(page.has_header("Content-Type: text/html; charset=utf-8"));
  EXPECT_NE(page.body.find("<html"), std::string::npos);
  const auto metrics = get(port, "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_TRUE(metrics.has_header("Content-Type: text/plain; version=0.0.4"));
  EXPECT_EQ(get(port, "/nowhere").status, 404);

  Connection post(port);
  post.send(
      "POST /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nConnection: "
      "close\r\n\r\nhi");
  const auto r = post.read_reply();
  EXPECT_EQ(r.status, 405);
  EXPECT_TRUE(r.has_header("Allow: GET"));
  EXPECT_TRUE(server->stop().ok());
}

TEST(Server, KeepAliveServesSeveralRequestsOnOneConnection) {
  Config config = base_config();
  auto server = watch(config);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(server->start(emitter).ok());
  Connection c(server->port());
  for (int i = 0; i < 3; ++i) {
    c.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    const auto r = c.read_reply();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "ok\n");
  }
  EXPECT_TRUE(server->stop().ok());
}

class MalformedRequests : public ::testing::Test {
 protected:
  void SetUp() override {
    Config config = base_config();
    server_ = watch(config, {.request_timeout = std::chrono::milliseconds(300)});
    emitter_ = std::make_unique<Emitter>(std::move(config));
    ASSERT_TRUE(server_->start(*emitter_).ok());
  }
  void TearDown() override {
    // Nothing crashed: the server still answers.
    EXPECT_EQ(get(server_->port(), "/healthz").status, 200);
    EXPECT_TRUE(server_->stop().ok());
  }
  test::Reply send(const std::string& bytes, bool half_close) {
    Connection c(server_->port());
    c.send(bytes);
    if (half_close) c.half_close();
    return c.read_reply();
  }
  std::shared_ptr<Server> server_;
  std::unique_ptr<Emitter> emitter_;
};

TEST_F(MalformedRequests, TruncatedThenClosedIs400) {
  EXPECT_EQ(send("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le", true).status, 400);
}

TEST_F(MalformedRequests, TruncatedBodyIs400) {
  EXPECT_EQ(send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nabc", true).status,
            400);
}

TEST_F(MalformedRequests, TruncatedAndLateIs408) {
  const auto r = send("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n", false);
  EXPECT_EQ(r.status, 408);
  EXPECT_TRUE(r.has_header("Connection: close"));
}

TEST_F(MalformedRequests, HeadersOver64KiBAre431) {
  std::string req =
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + std::string(70 * 1024, 'a') + "\r\n\r\n";
  EXPECT_EQ(send(req, false).status, 431);
}

TEST_F(MalformedRequests, ABodyOver64KiBIs413) {
  const std::string req =
      "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " + std::to_string(1 << 20) +
      "\r\n\r\n";
  EXPECT_EQ(send(req, false).status, 413);
}

TEST_F(MalformedRequests, GarbageIs400) {
  EXPECT_EQ(send("HELLO THERE\r\n\r\n", false).status, 400);
  EXPECT_EQ(send("GET / HTTP/9.9\r\n\r\n", false).status, 400);
  EXPECT_EQ(send(std::string("GET /\0 HTTP/1.1\r\n\r\n", 20), false).status, 400);
}

TEST_F(MalformedRequests, EventsWithoutUpgradeIs426) {
  const auto r =
      send("GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", false);
  EXPECT_EQ(r.status, 426);
  EXPECT_TRUE(r.has_header("Upgrade: websocket"));
}

TEST_F(MalformedRequests, AnUpgradeWithoutAKeyIs400) {
  EXPECT_EQ(send("GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
                 "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
                 false)
                .status,
            400);
}

TEST_F(MalformedRequests, AnUpgradeWithAnUnknownVersionIs426) {
  const auto r = send(
      "GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
      "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 7\r\n\r\n",
      false);
  EXPECT_EQ(r.status, 426);
}

TEST(Server, ConnectionsBeyondTheBoundAreClosed) {
  Config config = base_config();
  auto server = watch(config, {.max_connections = 2});
  Emitter emitter(std::move(config));
  ASSERT_TRUE(server->start(emitter).ok());
  {
    Connection a(server->port());
    Connection b(server->port());
    // Both accepted and served: the server counts them.
    a.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    b.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    EXPECT_EQ(a.read_reply().status, 200);
    EXPECT_EQ(b.read_reply().status, 200);
    Connection c(server->port(), std::chrono::seconds(5));
    EXPECT_TRUE(c.closed_by_peer());
  }
  // Once they are gone, new connections are served again (the server notices the closes).
  bool served = false;
  for (int i = 0; i < 100 && !served; ++i) {
    served = get(server->port(), "/healthz").status == 200;
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(served);
  EXPECT_TRUE(server->stop().ok());
}

// A non-loopback IPv4 address of this machine, or empty.
std::string external_address() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return {};
  std::string found;
  for (ifaddrs* a = list; a != nullptr && found.empty(); a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) continue;
    const auto* in = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
    if ((ntohl(in->sin_addr.s_addr) >> 24) == 127) continue;
    char text[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    found = text;
  }
  freeifaddrs(list);
  return found;
}

TEST(Server, BindsLoopbackOnlyByDefault) {
  const std::string external = external_address();
  if (external.empty()) GTEST_SKIP() << "this machine has no non-loopback IPv4 address";
  Config config = base_config();
  auto server = watch(config);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(server->start(emitter).ok());
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(server->port());
  inet_pton(AF_INET, external.c_str(), &addr.sin_addr);
  EXPECT_NE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << external;
  ::close(fd);
  EXPECT_EQ(get(server->port(), "/healthz").status, 200);
}

TEST(Server, BadAddressAndTakenPortAreErrors) {
  Config config = base_config();
  auto first = watch(config);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(first->start(emitter).ok());

  Config bad_config = base_config();
  auto bad = watch(bad_config, {.address = "not-an-address"});
  EXPECT_EQ(bad->start(emitter).code(), Errc::invalid_argument);

  Config other = base_config();
  auto second = watch(other, {.port = first->port()});
  const Status s = second->start(emitter);
  EXPECT_EQ(s.code(), Errc::unavailable);
  EXPECT_NE(s.message().find(std::to_string(first->port())), std::string::npos);
}

TEST(Server, StartsOnceAndNotAgainAfterStop) {
  Config config = base_config();
  auto server = watch(config);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(server->start(emitter).ok());
  EXPECT_EQ(server->start(emitter).code(), Errc::already_started);
  EXPECT_TRUE(server->stop().ok());
  EXPECT_TRUE(server->stop().ok());  // idempotent
  EXPECT_EQ(server->start(emitter).code(), Errc::closed);
  Connection c(server->port(), std::chrono::seconds(2));
  EXPECT_FALSE(c.connected());
}

TEST(Server, StopReturnsByItsDeadlineWithIdleConnectionsOpen) {
  Config config = base_config();
  auto server = watch(config);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(server->start(emitter).ok());
  Connection idle(server->port());
  Connection half(server->port());
  half.send("GET / HTTP/1.1\r\n");
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(server->stop(std::chrono::seconds(5)).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_TRUE(idle.closed_by_peer());
}

// How many file descriptors this process has open.
int open_descriptors() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d) != nullptr)
      ++n;
    ::closedir(d);
  }
  return n - 3;  // ".", ".." and the directory's own descriptor
}

// In a child process (below): with few descriptors left, clients connect until the last
// connection waits in the backlog and every accept() fails (EMFILE). The server waits
// between tries (10 ms, doubling) rather than retrying at once, and serves again once
// descriptors are released. Exits 0 and prints "recovered" when all went as expected.
[[noreturn]] void exhaust_descriptors_then_recover() {
  Config config = base_config();
  auto server = watch(config);
  Emitter emitter(std::move(config));
  if (!server->start(emitter).ok()) std::_Exit(10);
  const std::uint16_t port = server->port();
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = static_cast<rlim_t>(open_descriptors() + 16);
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) std::_Exit(11);
  std::vector<std::unique_ptr<Connection>> held;
  for (int i = 0; i < 64; ++i) {
    auto c = std::make_unique<Connection>(port, std::chrono::seconds(2));
    if (!c->connected()) break;
    held.push_back(std::move(c));
  }
  if (held.size() < 4) std::_Exit(12);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // accept() keeps failing
  held.clear();
  test::Reply r;
  for (int i = 0; i < 100 && r.status != 200; ++i) {
    r = get(port, "/metrics");
    if (r.status != 200) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (r.status != 200) std::_Exit(13);
  const auto at = r.body.find("\nemissions_http_accept_errors_total ");
  if (at == std::string::npos) std::_Exit(14);
  const long errors = std::strtol(r.body.c_str() + at + 36, nullptr, 10);
  std::fprintf(stderr, "accept errors: %ld\n", errors);
  // At least one failure; at most one per pause (10 + 20 + 40 + 80 + 160 ms...) over the
  // 300 ms and the wait after: retrying at once made thousands.
  if (errors < 1 || errors > 12) std::_Exit(15);
  std::fprintf(stderr, "recovered\n");
  (void)server->stop();
  std::_Exit(0);
}

TEST(ServerDeathTest, OutOfDescriptorsTheAcceptLoopBacksOffAndServesAgain) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // The sanitizer runtimes need descriptors of their own: UBSan checks that memory is
  // readable through a pipe, which fails with EMFILE, and then reports every virtual call
  // as an "invalid vptr". The dev build runs this test.
  GTEST_SKIP() << "the sanitizers need file descriptors this test takes away";
#endif
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(exhaust_descriptors_then_recover(), ::testing::ExitedWithCode(0), "recovered");
}

}  // namespace
}  // namespace emissions::http
