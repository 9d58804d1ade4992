// The HTTP and WebSocket server. The only translation unit of the library that includes
// Boost.Beast (it is slow to compile); everything it serves is built elsewhere (hub.cpp,
// metrics.cpp, page.cpp), without Boost.
//
// One I/O thread runs every connection (the viewer is for a few operators, /metrics for a
// scraper): no locks on the I/O side but two shared with other threads, neither held while
// user code runs: the hub's (with the adapter thread) and the emitter view's (with the
// thread that shuts the Emitter down).
#include "emissions/http/server.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <future>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "drop_counter.hpp"
#include "emitter_view.hpp"
#include "hub.hpp"
#include "metrics.hpp"
#include "page.hpp"
#include "request_target.hpp"

namespace emissions::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace detail {

namespace {

constexpr std::size_t kHeaderLimit = 64 * 1024;  // the bound; larger: 431
constexpr std::size_t kBodyLimit = 64 * 1024;    // no route takes a body; larger: 413
constexpr std::size_t kEventsPerMessage = 500;   // one WebSocket message holds at most this
constexpr std::chrono::milliseconds kStatsPeriod{500};
// After a failed accept (out of file descriptors: the connection stays in the backlog and
// the next accept fails at once), the next is tried after a pause that doubles up to the
// maximum, so that the I/O thread does not spin; a successful accept resets it.
constexpr std::chrono::milliseconds kAcceptBackoffMin{10};
constexpr std::chrono::milliseconds kAcceptBackoffMax{1'000};

// JSON for viewers: a string that is not UTF-8 (an event name, an adapter's name) is shown
// with U+FFFD in place of the bad bytes rather than making dump() throw.
std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

class HttpSession;
class WsSession;

}  // namespace

// Everything the I/O thread owns. Destroyed after that thread was joined.
struct Io {
  std::size_t connections = 0;  // before ioc: sessions destroyed with ioc decrement it
  std::list<std::weak_ptr<HttpSession>> http_sessions;
  std::list<std::weak_ptr<WsSession>> ws_sessions;
  net::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  net::steady_timer stats_timer{ioc};
  net::steady_timer accept_timer{ioc};
  std::chrono::milliseconds accept_backoff{0};
  std::uint64_t accept_errors = 0;
  bool stopping = false;
};

struct ServerState {
  ServerOptions options;
  std::shared_ptr<Hub> hub;
  std::shared_ptr<EmitterView> view;  // shared with the adapter, which may outlive the server
  std::unique_ptr<DropCounter> drops;
  bool with_spool = false;

  std::mutex mu;  // start/stop against each other
  bool started = false;
  bool stopped = false;
  Status stop_result;
  std::atomic<std::uint16_t> port{0};
  std::unique_ptr<Io> io;
  std::thread thread;
  std::promise<void> io_done;

  void do_accept();
  void on_accept_error(const boost::system::error_code& ec);
  void schedule_stats();
  void broadcast_stats();
  void pump_all();
  void shutdown_all(std::chrono::milliseconds grace);
  [[nodiscard]] std::string stats_message() const;
};

namespace {

using Request = bhttp::request<bhttp::string_body>;
using Response = bhttp::response<bhttp::string_body>;

Response make_response(const Request& req, bhttp::status status, std::string body,
                       std::string_view content_type) {
  Response res{status, req.version()};
  res.set(bhttp::field::server, "emissions");
  res.set(bhttp::field::content_type, beast::string_view(content_type.data(), content_type.size()));
  res.set(bhttp::field::cache_control, "no-store");
  res.set("X-Content-Type-Options", "nosniff");
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

Response plain(const Request& req, bhttp::status status, std::string body) {
  return make_response(req, status, std::move(body), "text/plain; charset=utf-8");
}

// An answer to a request that could not be read: the connection is closed after it.
Response error_response(bhttp::status status, std::string body) {
  Response res{status, 11};
  res.set(bhttp::field::server, "emissions");
  res.set(bhttp::field::content_type, "text/plain; charset=utf-8");
  res.keep_alive(false);
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

// One WebSocket client of /events.
class WsSession : public std::enable_shared_from_this<WsSession> {
 public:
  WsSession(tcp::socket socket, ServerState& state)
      : ws_(std::move(socket)), state_(state), io_(*state.io), cut_timer_(ws_.get_executor()) {
    ++io_.connections;
  }
  // May run inside ~io_context (a handler still held it): touches only what outlives that.
  ~WsSession() {
    if (client_) state_.hub->unsubscribe(client_);
    --io_.connections;
  }
  WsSession(const WsSession&) = delete;
  WsSession& operator=(const WsSession&) = delete;

  void start(Request req) {
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.read_message_max(kBodyLimit);
    ws_.async_accept(req,
                     [self = shared_from_this()](beast::error_code ec) { self->on_accept(ec); });
  }

  // Queues a stats message (replacing one not sent yet) and sends what is pending.
  void send_stats(std::string message) {
    stats_ = std::move(message);
    pump();
  }

  // Sends what the hub has for this client, one message at a time.
  void pump() {
    if (!open_ || writing_ || stopping_) return;
    if (stats_) {
      write(std::exchange(stats_, std::nullopt).value());
      return;
    }
    std::string message = feed_.next(*state_.hub, *client_, kEventsPerMessage);
    if (!message.empty()) write(std::move(message));
  }

  // The server stops: clients get a close frame and `grace` to answer it. A write in
  // progress finishes first (its handler sends the close frame), unless the client does
  // not read: then the connection is cut once `grace` has passed.
  void shutdown(std::chrono::milliseconds grace) {
    if (stopping_) return;
    stopping_ = true;
    grace_ = grace;
    if (!open_) return cut();
    if (writing_) {
      cut_timer_.expires_after(grace);
      cut_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
        // Expired as the write finished (both handlers queued): the write's handler sent the
        // close frame, whose handshake has its own timeout; cutting now would cut that.
        if (!ec && self->writing_) self->cut();
      });
      return;
    }
    send_close();
  }

 private:
  void on_accept(beast::error_code ec) {
    if (ec || io_.stopping) return;
    open_ = true;
    client_ = state_.hub->subscribe();
    stats_ = state_.stats_message();
    read();
    pump();
  }

  // Reads (and ignores) what the client sends, so that pings and its close frame are
  // answered.
  void read() {
    ws_.async_read(in_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) {
        self->open_ = false;
        return;
      }
      self->in_.consume(self->in_.size());
      self->read();
    });
  }

  void send_close() {
    websocket::stream_base::timeout limits{};
    limits.handshake_timeout = grace_;  // covers the closing handshake
    limits.idle_timeout = websocket::stream_base::none();
    limits.keep_alive_pings = false;
    ws_.set_option(limits);
    ws_.async_close(websocket::close_code::going_away,
                    [self = shared_from_this()](beast::error_code) { self->cut(); });
  }

  void cut() {
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
  }

  void write(std::string message) {
    writing_ = true;
    out_ = std::move(message);
    ws_.text(true);
    ws_.async_write(net::buffer(out_),
                    [self = shared_from_this()](beast::error_code ec, std::size_t) {
                      self->writing_ = false;
                      if (ec) {
                        self->open_ = false;
                        return;
                      }
                      if (self->stopping_) {
                        self->cut_timer_.cancel();
                        self->send_close();
                        return;
                      }
                      self->pump();
                    });
  }

  websocket::stream<beast::tcp_stream> ws_;
  ServerState& state_;
  Io& io_;
  std::shared_ptr<ClientQueue> client_;
  beast::flat_buffer in_;
  std::string out_;
  std::optional<std::string> stats_;
  ClientFeed feed_;
  net::steady_timer cut_timer_;
  std::chrono::milliseconds grace_{0};
  bool open_ = false;
  bool writing_ = false;
  bool stopping_ = false;
};

// One HTTP connection: reads requests (keep-alive), answers them, or hands the connection
// over to a WsSession on an upgrade to /events.
class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(tcp::socket socket, ServerState& state)
      : stream_(std::move(socket)), timer_(stream_.get_executor()), state_(state), io_(*state.io) {
    ++io_.connections;
  }
  ~HttpSession() { --io_.connections; }
  HttpSession(const HttpSession&) = delete;
  HttpSession& operator=(const HttpSession&) = delete;

  void start() { read(); }

  void close() {
    beast::error_code ignored;
    timer_.cancel();
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

 private:
  void read() {
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(kBodyLimit);
    timed_out_ = false;
    reading_ = true;
    const std::uint64_t read_number = ++reads_;
    // Our own timer rather than the stream's: the stream's closes the socket, and a
    // request that is late gets a 408 first.
    timer_.expires_after(state_.options.request_timeout);
    timer_.async_wait([self = shared_from_this(), read_number](beast::error_code ec) {
      // cancel() does not stop a wait that expired already (its handler is queued): one
      // that expired as its read completed, or as the session was handed over or closed,
      // finds that read over and does nothing; cancelling the socket now would cut the
      // response being written, or the next request.
      if (ec || !self->reading_ || read_number != self->reads_) return;
      self->timed_out_ = true;
      beast::error_code ignored;
      self->stream_.socket().cancel(ignored);
    });
    bhttp::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    reading_ = false;
    timer_.cancel();
    if (io_.stopping) return close();
    // A request that arrived in full is answered, even when its time ran out meanwhile.
    if (!ec) return handle(parser_->release());
    if (timed_out_) {
      // An idle keep-alive connection is closed quietly; a request that started is told.
      if (parser_->got_some() || buffer_.size() != 0)
        return fail(bhttp::status::request_timeout, "request timed out\n");
      return close();
    }
    if (ec == bhttp::error::end_of_stream) return close();
    if (ec == bhttp::error::header_limit)
      return fail(bhttp::status::request_header_fields_too_large, "headers too large\n");
    if (ec == bhttp::error::body_limit)
      return fail(bhttp::status::payload_too_large, "request body too large\n");
    if (ec == bhttp::error::partial_message)
      return fail(bhttp::status::bad_request, "truncated request\n");
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category())
      return fail(bhttp::status::bad_request, "malformed request\n");
    close();
  }

  void fail(bhttp::status status, std::string body) {
    send(error_response(status, std::move(body)));
  }

  void handle(Request req) {
    const std::string_view target(req.target().data(), req.target().size());
    const std::string_view path = target_path(target);
    if (path == "/healthz") return send(plain(req, bhttp::status::ok, "ok\n"));
    const std::string_view host(req[bhttp::field::host].data(), req[bhttp::field::host].size());
    if (state_.options.bearer_token.empty() && !host_is_local_or_address(host)) {
      return send(plain(req, bhttp::status::forbidden,
                        "without a bearer token this server answers only to an address or "
                        "localhost in the Host header (a DNS-rebinding guard)\n"));
    }
    if (!authorized(state_.options.bearer_token,
                    std::string_view(req[bhttp::field::authorization].data(),
                                     req[bhttp::field::authorization].size()),
                    target)) {
      Response res = plain(req, bhttp::status::unauthorized, "a bearer token is required\n");
      res.set(bhttp::field::www_authenticate, "Bearer");
      return send(std::move(res));
    }
    if (path == "/events") {
      if (!websocket::is_upgrade(req)) {
        Response res = plain(req, bhttp::status::upgrade_required,
                             "/events is a WebSocket: send an Upgrade: websocket request\n");
        res.set(bhttp::field::upgrade, "websocket");
        res.set(bhttp::field::connection, "Upgrade");
        return send(std::move(res));
      }
      const std::string_view origin(req[bhttp::field::origin].data(),
                                    req[bhttp::field::origin].size());
      if (!same_origin(origin, host)) {
        return send(plain(req, bhttp::status::forbidden,
                          "a WebSocket from another origin is refused (the viewer connects "
                          "from its own page)\n"));
      }
      timer_.cancel();
      auto ws = std::make_shared<WsSession>(stream_.release_socket(), state_);
      io_.ws_sessions.push_back(ws);
      ws->start(std::move(req));
      return;
    }
    if (req.method() != bhttp::verb::get) {
      Response res = plain(req, bhttp::status::method_not_allowed, "only GET is served\n");
      res.set(bhttp::field::allow, "GET");
      return send(std::move(res));
    }
    if (path == "/") {
      Response res = make_response(req, bhttp::status::ok, std::string(page_html()),
                                   "text/html; charset=utf-8");
      // The page is self-contained: it may only talk back to this server.
      res.set("Content-Security-Policy",
              "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
              "img-src data:; connect-src 'self' ws: wss:");
      return send(std::move(res));
    }
    if (path == "/metrics") {
      return send(make_response(
          req, bhttp::status::ok,
          render_metrics(state_.view->read().stats, state_.with_spool, state_.drops->counts(),
                         {.accept_errors = io_.accept_errors}),
          "text/plain; version=0.0.4; charset=utf-8"));
    }
    if (path == "/readyz") {
      if (!state_.view->read().ready)
        return send(plain(req, bhttp::status::service_unavailable, "shutting down\n"));
      return send(plain(req, bhttp::status::ok, "ready\n"));
    }
    return send(plain(req, bhttp::status::not_found, "not found\n"));
  }

  void send(Response res) {
    response_ = std::move(res);
    stream_.expires_after(state_.options.request_timeout);  // a client that never reads
    bhttp::async_write(stream_, response_,
                       [self = shared_from_this()](beast::error_code ec, std::size_t) {
                         self->stream_.expires_never();
                         if (ec || !self->response_.keep_alive() || self->io_.stopping)
                           return self->close();
                         self->read();
                       });
  }

  beast::tcp_stream stream_;
  net::steady_timer timer_;
  ServerState& state_;
  Io& io_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  Response response_;
  std::uint64_t reads_ = 0;  // numbers each read(), so that its timer knows it
  bool reading_ = false;     // a read is under way (its timer may cut it)
  bool timed_out_ = false;
};

// A quantile for the page: seconds, or null when nothing was measured or it is beyond the
// last bucket (JSON has no infinity).
nlohmann::json latency_quantile(const DeliveryLatency& latency, double q) {
  const double v = latency.quantile(q);
  if (latency.count == 0 || std::isinf(v)) return nullptr;
  return v;
}

// Whether a failed accept() will fail again at once until something is released: out of
// file descriptors (EMFILE, ENFILE) or kernel memory (ENOBUFS, ENOMEM).
bool out_of_resources(const beast::error_code& ec) {
  if (ec.category() != boost::system::system_category()) return false;
  const int e = ec.value();
  return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

template <typename T>
void prune(std::list<std::weak_ptr<T>>& sessions) {
  sessions.remove_if([](const std::weak_ptr<T>& s) { return s.expired(); });
}

}  // namespace

void ServerState::do_accept() {
  io->acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || io->stopping) return;
    if (ec) return on_accept_error(ec);
    io->accept_backoff = std::chrono::milliseconds(0);
    if (io->connections >= options.max_connections) {
      beast::error_code ignored;
      socket.close(ignored);  // bounded: the client sees the connection closed
    } else {
      prune(io->http_sessions);
      auto session = std::make_shared<HttpSession>(std::move(socket), *this);
      io->http_sessions.push_back(session);
      session->start();
    }
    do_accept();
  });
}

void ServerState::on_accept_error(const beast::error_code& ec) {
  ++io->accept_errors;
  // One connection's failure (reset before it was accepted): the next may be accepted now.
  // Backing off on those would let a client that resets connections slow everyone down.
  if (!out_of_resources(ec)) return do_accept();
  io->accept_backoff = std::clamp(io->accept_backoff * 2, kAcceptBackoffMin, kAcceptBackoffMax);
  io->accept_timer.expires_after(io->accept_backoff);
  io->accept_timer.async_wait([this](beast::error_code wait_ec) {
    if (wait_ec || io->stopping) return;
    do_accept();
  });
}

std::string ServerState::stats_message() const {
  const EmitterView::Snapshot snapshot = view->read();
  const EmitterStats& s = snapshot.stats;
  nlohmann::json adapters = nlohmann::json::array();
  for (const AdapterStats& a : s.adapters) {
    adapters.push_back({{"name", a.name},
                        {"delivered", a.delivered},
                        {"failed", a.failed},
                        {"filtered", a.filtered},
                        {"dropped", a.dropped},
                        {"retried", a.retried},
                        {"dead_lettered", a.dead_lettered},
                        {"queued", a.queued},
                        {"received", a.received},
                        {"latency_count", a.latency.count},
                        {"latency_p50", latency_quantile(a.latency, 0.5)},
                        {"latency_p99", latency_quantile(a.latency, 0.99)}});
  }
  nlohmann::json counts = nlohmann::json::object();
  for (const auto& [name, n] : hub->counts())
    counts[name] = n;
  return dump(nlohmann::json{{"type", "stats"},
                             {"adapters", std::move(adapters)},
                             {"committed", s.committed},
                             {"transactions", s.transactions},
                             {"discarded", s.discarded},
                             {"ready", snapshot.ready},
                             {"show_payloads", options.show_payloads},
                             {"counts", std::move(counts)}});
}

void ServerState::broadcast_stats() {
  prune(io->ws_sessions);
  if (io->ws_sessions.empty()) return;
  const std::string message = stats_message();
  for (const auto& weak : io->ws_sessions)
    if (auto s = weak.lock()) s->send_stats(message);
}

void ServerState::schedule_stats() {
  io->stats_timer.expires_after(kStatsPeriod);
  io->stats_timer.async_wait([this](beast::error_code ec) {
    if (ec || io->stopping) return;
    broadcast_stats();
    schedule_stats();
  });
}

void ServerState::pump_all() {
  hub->rearm();  // before taking: a publish from now on wakes us again
  for (const auto& weak : io->ws_sessions)
    if (auto s = weak.lock()) s->pump();
}

void ServerState::shutdown_all(std::chrono::milliseconds grace) {
  io->stopping = true;
  beast::error_code ignored;
  io->acceptor.close(ignored);
  io->stats_timer.cancel();
  io->accept_timer.cancel();
  for (const auto& weak : io->http_sessions)
    if (auto s = weak.lock()) s->close();
  for (const auto& weak : io->ws_sessions)
    if (auto s = weak.lock()) s->shutdown(grace);
}

}  // namespace detail

Server::Server(std::shared_ptr<detail::ServerState> state) : state_(std::move(state)) {}

Server::~Server() {
  (void)stop();
}

std::uint16_t Server::port() const {
  return state_->port.load(std::memory_order_acquire);
}

Status Server::start(Emitter& emitter) {
  detail::ServerState& st = *state_;
  std::lock_guard lock(st.mu);
  if (st.stopped) return {Errc::closed, "emissions::http::Server: stopped; make a new one"};
  if (st.started) return {Errc::already_started, "emissions::http::Server: already started"};

  beast::error_code ec;
  const net::ip::address address = net::ip::make_address(st.options.address, ec);
  if (ec)
    return {Errc::invalid_argument,
            "emissions::http::Server: address '" + st.options.address + "' does not parse"};
  auto io = std::make_unique<detail::Io>();
  const tcp::endpoint endpoint(address, st.options.port);
  const std::string where = st.options.address + ":" + std::to_string(st.options.port);
  if (io->acceptor.open(endpoint.protocol(), ec); ec)
    return {Errc::unavailable, "emissions::http::Server: cannot open a socket: " + ec.message()};
  io->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (io->acceptor.bind(endpoint, ec); ec)
    return {Errc::unavailable,
            "emissions::http::Server: cannot bind " + where + ": " + ec.message()};
  if (io->acceptor.listen(net::socket_base::max_listen_connections, ec); ec)
    return {Errc::unavailable,
            "emissions::http::Server: cannot listen on " + where + ": " + ec.message()};
  const std::uint16_t bound = io->acceptor.local_endpoint(ec).port();

  st.view->attach(emitter);
  st.io = std::move(io);
  detail::ServerState* raw = &st;
  st.hub->set_wake([raw] { net::post(raw->io->ioc, [raw] { raw->pump_all(); }); });
  st.do_accept();
  st.schedule_stats();
  st.port.store(bound, std::memory_order_release);
  st.started = true;
  st.thread = std::thread([raw] {
    for (;;) {
      try {
        raw->io->ioc.run();
        break;
      } catch (...) {  // a handler threw (allocation failure): keep serving the others
      }
    }
    raw->io_done.set_value();
  });
  return {};
}

Status Server::stop(std::chrono::milliseconds timeout) {
  detail::ServerState& st = *state_;
  std::lock_guard lock(st.mu);
  if (st.stopped) return st.stop_result;
  st.stopped = true;
  if (!st.started) return {};
  // No wake-up may be posted from here on (the adapter keeps running).
  st.hub->set_wake(nullptr);
  detail::ServerState* raw = &st;
  // Half the time for clients to answer their close frame, the rest as a margin.
  const auto grace = std::max(std::chrono::milliseconds(1), timeout / 2);
  net::post(st.io->ioc, [raw, grace] { raw->shutdown_all(grace); });
  std::future<void> done = st.io_done.get_future();
  if (done.wait_for(timeout) != std::future_status::ready) {
    st.io->ioc.stop();  // cut what did not close in time
    st.stop_result = {Errc::timeout, "emissions::http::Server: connections still open after " +
                                         std::to_string(timeout.count()) + " ms were cut"};
  }
  st.thread.join();
  st.io.reset();  // closes what is left
  return st.stop_result;
}

std::shared_ptr<Server> watch(Config& config, ServerOptions options) {
  auto check = [](const char* field, std::size_t value, std::size_t lo, std::size_t hi) {
    if (value < lo || value > hi)
      throw ConfigError("emissions::http::ServerOptions::" + std::string(field) + " must be in [" +
                        std::to_string(lo) + ", " + std::to_string(hi) + "] (got " +
                        std::to_string(value) + ")");
  };
  check("history", options.history, 0, 1'000'000);
  check("client_queue", options.client_queue, 1, 1'000'000);
  check("max_connections", options.max_connections, 1, 10'000);
  check("max_events_per_second", options.max_events_per_second, 1, 10'000'000);
  if (options.request_timeout <= std::chrono::milliseconds::zero() ||
      options.request_timeout > kMaxTimeout)
    throw ConfigError("emissions::http::ServerOptions::request_timeout must be in (0, 24 h] (got " +
                      std::to_string(options.request_timeout.count()) + " ms)");
  if (options.address.empty())
    throw ConfigError("emissions::http::ServerOptions::address must not be empty");

  auto state = std::make_shared<detail::ServerState>();
  state->hub = std::make_shared<detail::Hub>(options.show_payloads, options.history,
                                             options.client_queue, options.max_events_per_second);
  state->view = std::make_shared<detail::EmitterView>();
  // Attached now: drops before start() are counted too.
  state->drops = std::make_unique<detail::DropCounter>();
  state->with_spool = config.spool.has_value();
  const std::size_t queue = options.client_queue;
  state->options = std::move(options);
  // The adapter's queue holds whole committed batches (shared, not copies); it only needs
  // to absorb bursts while the adapter serializes, and drops the oldest beyond that.
  config.add_adapter(std::make_shared<detail::WatchAdapter>(state->hub, state->view),
                     {.max_demand = 1'000,  // few, large calls: little per-batch overhead
                      .buffer_size = std::max<std::size_t>(queue, 10'000),
                      .overflow = Overflow::drop_oldest});
  return std::make_shared<Server>(std::move(state));
}

}  // namespace emissions::http
