// /events over a real WebSocket (a Boost.Beast client on 127.0.0.1): the message types,
// history for new clients, payloads hidden on demand, the token, a slow client's bounded
// queue and its `missed` messages, and close frames when the server stops.
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "emissions/emissions.hpp"
#include "emissions/http/server.hpp"
#include "raw_client.hpp"

namespace emissions::http {
namespace {

namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

// A blocking WebSocket client. Reads give up after `timeout` (SO_RCVTIMEO).
class Client {
 public:
  Client(std::uint16_t port, const std::string& target = "/events", int receive_buffer = 0,
         std::chrono::milliseconds timeout = std::chrono::seconds(10))
      : ws_(ioc_) {
    auto& sock = beast::get_lowest_layer(ws_);
    sock.open(tcp::v4());
    if (receive_buffer > 0) sock.set_option(net::socket_base::receive_buffer_size(receive_buffer));
    timeval tv{};
    tv.tv_sec = static_cast<long>(timeout.count() / 1000);
    tv.tv_usec = static_cast<long>((timeout.count() % 1000) * 1000);
    ::setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sock.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    ws_.handshake(response_, "127.0.0.1", target, handshake_error_);
  }
  [[nodiscard]] const beast::error_code& handshake_error() const { return handshake_error_; }
  [[nodiscard]] unsigned status() const { return response_.result_int(); }

  // The next message, or nullopt on close/error/timeout (error() says which).
  std::optional<nlohmann::json> next() {
    beast::flat_buffer buffer;
    ws_.read(buffer, error_);
    if (error_) return std::nullopt;
    return nlohmann::json::parse(beast::buffers_to_string(buffer.data()));
  }
  [[nodiscard]] const beast::error_code& error() const { return error_; }
  [[nodiscard]] websocket::close_reason reason() const { return ws_.reason(); }

 private:
  net::io_context ioc_;
  websocket::stream<tcp::socket> ws_;
  websocket::response_type response_;
  beast::error_code handshake_error_;
  beast::error_code error_;
};

class Sink final : public Adapter {
 public:
  std::string_view name() const override { return "sink"; }
  Status handle_events(std::span<const Event>) override { return {}; }
};

struct Fixture {
  explicit Fixture(ServerOptions options = {}) {
    Config config;
    config.make_default = false;
    config.add_adapter(std::make_shared<Sink>());
    server = watch(config, std::move(options));
    emitter = std::make_unique<Emitter>(std::move(config));
    EXPECT_TRUE(server->start(*emitter).ok());
  }
  void emit(int n, const std::string& name = "order_created", std::size_t pad = 0) {
    for (int i = 0; i < n; ++i) {
      Transaction tx = emitter->start();
      ASSERT_TRUE(tx.emit(name, {{"i", i}, {"pad", std::string(pad, 'x')}}).ok());
      ASSERT_TRUE(tx.commit().ok());
    }
  }
  std::uint64_t watched() const {
    for (const auto& a : emitter->stats().adapters)
      if (a.name == "emissions.http") return a.delivered;
    return 0;
  }
  std::unique_ptr<Emitter> emitter;
  std::shared_ptr<Server> server;
};

// Reads until `want` events were received (or missed), collecting them.
struct Received {
  std::vector<nlohmann::json> events;
  std::uint64_t missed = 0;
  std::size_t stats = 0;
};
Received read_until(Client& c, std::uint64_t want) {
  Received r;
  while (r.events.size() + r.missed < want) {
    auto m = c.next();
    if (!m) break;
    const std::string type = m->at("type");
    if (type == "events") {
      for (auto& e : m->at("events"))
        r.events.push_back(std::move(e));
    } else if (type == "missed") {
      EXPECT_GT(m->at("count").get<std::uint64_t>(), 0U);
      r.missed += m->at("count").get<std::uint64_t>();
    } else {
      EXPECT_EQ(type, "stats");
      ++r.stats;
    }
  }
  return r;
}

TEST(Events, AClientFirstGetsStatsThenTheEventsAsEnvelopes) {
  Fixture f;
  Client c(f.server->port());
  ASSERT_FALSE(c.handshake_error()) << c.handshake_error().message();
  auto first = c.next();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->at("type"), "stats");
  ASSERT_TRUE(first->at("adapters").is_array());
  EXPECT_EQ(first->at("adapters")[0].at("name"), "sink");
  for (const char* key :
       {"delivered", "failed", "filtered", "dropped", "retried", "dead_lettered", "queued"})
    EXPECT_TRUE(first->at("adapters")[0].contains(key)) << key;

  f.emit(25);
  const Received r = read_until(c, 25);
  ASSERT_EQ(r.events.size(), 25U);
  EXPECT_EQ(r.missed, 0U);
  for (std::size_t i = 0; i < r.events.size(); ++i) {
    EXPECT_EQ(r.events[i].at("name"), "order_created");
    EXPECT_EQ(r.events[i].at("payload").at("i"), i);
    EXPECT_TRUE(r.events[i].contains("id"));
    EXPECT_TRUE(r.events[i].contains("emitted_at"));
  }
}

TEST(Events, ANewClientGetsTheRecentHistory) {
  Fixture f({.history = 3});
  f.emit(5);
  ASSERT_TRUE(f.emitter->drain(std::chrono::seconds(5)).ok());
  Client c(f.server->port());
  const Received r = read_until(c, 3);
  ASSERT_EQ(r.events.size(), 3U);
  EXPECT_EQ(r.events[0].at("payload").at("i"), 2);
  EXPECT_EQ(r.events[2].at("payload").at("i"), 4);
}

TEST(Events, WithoutPayloadsOnlyNamesIdsAndTimesAreSent) {
  Fixture f({.show_payloads = false});
  Client c(f.server->port());
  f.emit(2, "secret_thing");
  const Received r = read_until(c, 2);
  ASSERT_EQ(r.events.size(), 2U);
  for (const auto& e : r.events) {
    EXPECT_EQ(e.at("name"), "secret_thing");
    EXPECT_TRUE(e.contains("id"));
    EXPECT_FALSE(e.contains("payload"));
    EXPECT_FALSE(e.contains("metadata"));
  }
}

TEST(Events, TheTokenIsNeededForTheWebSocketToo) {
  Fixture f({.bearer_token = "tok"});
  Client refused(f.server->port());
  EXPECT_EQ(refused.handshake_error(), websocket::error::upgrade_declined);
  Client accepted(f.server->port(), "/events?access_token=tok");
  EXPECT_FALSE(accepted.handshake_error()) << accepted.handshake_error().message();
  f.emit(1);
  EXPECT_EQ(read_until(accepted, 1).events.size(), 1U);
}

// A client that does not read while many events flow: the pipeline is not held up, the
// server keeps at most client_queue events for it, and it is told exactly how many it
// missed: received + missed == what the server's adapter saw.
TEST(Events, ASlowClientSkipsEventsAndIsToldHowMany) {
  constexpr std::size_t kQueue = 100;
  constexpr int kEvents = 4000;
  Fixture f({.client_queue = kQueue});
  Client slow(f.server->port(), "/events", 4096);
  ASSERT_FALSE(slow.handshake_error());
  f.emit(kEvents, "big", 4096);  // 16 MB: more than the socket buffers hold
  ASSERT_TRUE(f.emitter->drain(std::chrono::seconds(20)).ok());
  const std::uint64_t seen = f.watched();
  // The watcher may itself have dropped some (drop_oldest): never the pipeline's problem.
  EXPECT_EQ(seen + f.emitter->stats().adapters[1].dropped, static_cast<std::uint64_t>(kEvents));
  const Received r = read_until(slow, seen);
  EXPECT_EQ(r.events.size() + r.missed, seen);
  EXPECT_GT(r.missed, 0U);
  // What it got is what fit in its queue, plus what was in flight when it filled.
  EXPECT_LT(r.events.size(), seen);
  EXPECT_EQ(f.emitter->stats().adapters[0].delivered, static_cast<std::uint64_t>(kEvents));
}

TEST(Events, StopSendsClientsACloseFrame) {
  Fixture f;
  Client c(f.server->port());
  ASSERT_TRUE(c.next());  // the first stats message: the session is set up
  // The client keeps reading, as a browser does, and so answers the close frame.
  std::thread stopper([&] { EXPECT_TRUE(f.server->stop(std::chrono::seconds(5)).ok()); });
  // Bounded: the stats every 500 ms would keep an open session reading for ever.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (c.next() && std::chrono::steady_clock::now() < give_up) {
  }
  stopper.join();
  EXPECT_EQ(c.error(), websocket::error::closed) << c.error().message();
  EXPECT_EQ(c.reason().code, websocket::close_code::going_away);
}

TEST(Events, StopReturnsByItsDeadlineWithAClientThatNeverReads) {
  Fixture f({.client_queue = 50});
  Client slow(f.server->port(), "/events", 4096);
  f.emit(2000, "big", 2048);
  ASSERT_TRUE(f.emitter->drain(std::chrono::seconds(20)).ok());
  const auto t0 = std::chrono::steady_clock::now();
  const Status s = f.server->stop(std::chrono::seconds(2));
  EXPECT_TRUE(s.ok() || s.code() == Errc::timeout) << s.to_string();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
}

// A payload string that is not UTF-8 (JSON built from raw bytes) cannot be written as JSON
// as it is: it is shown with U+FFFD in place of the bad bytes, and the rest of its batch is
// shown too. An event name that is not UTF-8 does not stop the stats messages either.
TEST(Events, TextThatIsNotUtf8IsShownWithReplacementCharacters) {
  Fixture f;
  Client c(f.server->port());
  ASSERT_TRUE(c.next());  // the first stats message: subscribed
  Transaction tx = f.emitter->start();
  ASSERT_TRUE(tx.emit("before", {{"i", 1}}).ok());
  ASSERT_TRUE(tx.emit("bad", {{"text", std::string("caf\xC3 \xFF!")}}).ok());
  ASSERT_TRUE(tx.emit(std::string("name\xFF"), {{"i", 3}}).ok());
  ASSERT_TRUE(tx.emit("after", {{"i", 4}}).ok());
  ASSERT_TRUE(tx.commit().ok());  // one commit: one batch for the server's adapter
  const Received r = read_until(c, 4);
  ASSERT_EQ(r.events.size(), 4U);
  EXPECT_EQ(r.events[0].at("name"), "before");
  EXPECT_EQ(r.events[1].at("name"), "bad");
  EXPECT_EQ(r.events[1].at("payload").at("text"), "caf\uFFFD \uFFFD!");
  EXPECT_EQ(r.events[2].at("name"), "name\uFFFD");
  EXPECT_EQ(r.events[3].at("name"), "after");
  // The stats messages keep coming (every 500 ms), counting the name as shown.
  bool counted = false;
  for (int i = 0; i < 20 && !counted; ++i) {
    auto m = c.next();
    ASSERT_TRUE(m) << c.error().message();
    if (m->at("type") == "stats") counted = m->at("counts").contains("name\uFFFD");
  }
  EXPECT_TRUE(counted);
}

// Regression (commit 80ab326): a client that reads slowly while events keep flowing misses
// some again and again; the events taken with each missed count were held for the next
// message, and a second miss overwrote them: neither sent nor counted. Every event the
// server's adapter saw must reach the client or be in a missed count, in order.
TEST(Events, ASlowReaderIsToldExactlyWhatItMissedWhileEventsKeepFlowing) {
  Fixture f({.history = 0, .client_queue = 10, .max_events_per_second = 10'000'000});
  Client slow(f.server->port(), "/events", 4096);
  ASSERT_FALSE(slow.handshake_error());
  ASSERT_TRUE(slow.next());  // the first stats message: subscribed before anything flows
  std::atomic<std::uint64_t> seen{0};
  std::atomic<bool> done{false};
  std::thread producer([&] {
    // Spread over the reading, so that the queue overflows again while a missed count is
    // being written.
    const std::string pad(4096, 'x');
    for (int i = 0; i < 2000; ++i) {
      Transaction tx = f.emitter->start();
      EXPECT_TRUE(tx.emit("big", {{"i", i}, {"pad", pad}}).ok());
      EXPECT_TRUE(tx.commit().ok());
      if (i % 50 == 49) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_TRUE(f.emitter->drain(std::chrono::seconds(20)).ok());
    seen = f.watched();
    done = true;
  });
  std::uint64_t received = 0;
  std::uint64_t missed = 0;
  std::int64_t last = -1;
  bool ordered = true;
  while (!done || received + missed < seen) {
    std::this_thread::sleep_for(std::chrono::microseconds(500));  // a slow reader
    auto m = slow.next();
    if (!m) break;
    if (m->at("type") == "missed") missed += m->at("count").get<std::uint64_t>();
    if (m->at("type") != "events") continue;
    for (const auto& e : m->at("events")) {
      const std::int64_t i = e.at("payload").at("i");
      ordered = ordered && i > last;
      last = i;
      ++received;
    }
  }
  producer.join();
  EXPECT_EQ(received + missed, seen.load()) << "received " << received << ", missed " << missed;
  EXPECT_GT(missed, 0U);
  EXPECT_TRUE(ordered);
}

// The Emitter may be destroyed before the server stops: its shutdown terminates the
// server's adapter, and from then on the server answers from the last snapshot and never
// reads the Emitter again (before the fix, /metrics, /readyz and the stats messages read
// the destroyed Emitter: a use after free, reported by ASan).
TEST(Events, AnEmitterDestroyedBeforeTheServerStopsIsNotReadAgain) {
  Config config;
  config.make_default = false;
  config.add_adapter(std::make_shared<Sink>());
  auto server = watch(config);
  auto emitter = std::make_unique<Emitter>(std::move(config));
  ASSERT_TRUE(server->start(*emitter).ok());
  const std::uint16_t port = server->port();
  Client before(port);  // connected throughout: stats messages every 500 ms
  ASSERT_TRUE(before.next());
  for (int i = 0; i < 3; ++i) {
    Transaction tx = emitter->start();
    ASSERT_TRUE(tx.emit("order_created", {{"i", i}}).ok());
    ASSERT_TRUE(tx.commit().ok());
  }
  ASSERT_TRUE(emitter->drain(std::chrono::seconds(5)).ok());
  EXPECT_EQ(test::get(port, "/readyz").status, 200);
  emitter.reset();

  EXPECT_EQ(test::get(port, "/readyz").status, 503);
  const test::Reply metrics = test::get(port, "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("\nemissions_committed_events_total 3\n"), std::string::npos)
      << metrics.body;
  EXPECT_NE(metrics.body.find("emissions_adapter_events_total{adapter=\"sink\",outcome="
                              "\"delivered\"} 3\n"),
            std::string::npos);
  // A viewer that connects now, and the one connected before, get stats messages from the
  // snapshot: not ready, the counts as they were.
  Client after(port);
  auto first = after.next();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->at("type"), "stats");
  EXPECT_EQ(first->at("ready"), false);
  EXPECT_EQ(first->at("committed"), 3);
  bool got_stats = false;
  for (int i = 0; i < 20 && !got_stats; ++i) {
    auto m = before.next();
    ASSERT_TRUE(m) << before.error().message();
    got_stats = m->at("type") == "stats" && m->at("ready") == false;
  }
  EXPECT_TRUE(got_stats);
  EXPECT_TRUE(server->stop().ok());
}

}  // namespace
}  // namespace emissions::http
