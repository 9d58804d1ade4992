/// @file
/// emissions/http/server.hpp: a live event viewer, Prometheus metrics and health checks,
/// served over HTTP and WebSocket from inside the process.
///
/// The server watches events through an adapter of its own (named `emissions.http`,
/// overflow `drop_oldest`, so watching never slows the pipeline), which must be in the
/// Config before the Emitter is built: watch() adds it and returns the server, which starts
/// serving once start() has the Emitter.
///
/// @code
///   emissions::Config config;
///   config.add_adapter(kafka);
///   std::shared_ptr<emissions::http::Server> server =
///       emissions::http::watch(config, {.port = 8080});
///   emissions::Emitter emitter(std::move(config));
///   if (auto s = server->start(emitter); !s.ok()) log(s.to_string());
///   std::cout << "http://127.0.0.1:" << server->port() << "/\n";
///   // ...
///   (void)server->stop();
/// @endcode
///
/// Routes: `/` (the viewer page, embedded: it loads nothing from elsewhere), `/events`
/// (WebSocket: JSON messages `{"type":"events","events":[...]}`, `{"type":"missed",
/// "count":n}` and `{"type":"stats","adapters":[...]}`), `/metrics` (Prometheus text
/// format), `/healthz` (200 while serving) and `/readyz` (200 while the emitter accepts
/// commits, 503 once it is shutting down). docs/HTTP.md describes them.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "emissions/config.hpp"
#include "emissions/emitter.hpp"
#include "emissions/status.hpp"

namespace emissions::http {

/// How the server listens and what it shows. Checked by watch() (ConfigError).
///
/// @code
///   emissions::http::ServerOptions options{.port = 9090, .bearer_token = secret};
/// @endcode
struct ServerOptions {
  std::string address = "127.0.0.1";  ///< the IPv4 or IPv6 address to bind
  std::uint16_t port = 0;             ///< 0 = any free port (see Server::port())
  /// When not empty, every route but /healthz needs it, as an `Authorization: Bearer`
  /// header or an `access_token` query parameter; 401 otherwise. Never logged.
  std::string bearer_token = {};
  bool show_payloads = true;          ///< false: the viewer and /events show names and ids only
  std::size_t history = 1'000;        ///< recent events a new viewer is sent first (0..1'000'000)
  std::size_t client_queue = 10'000;  ///< events queued per WebSocket client (1..1'000'000)
  /// Open connections (HTTP and WebSocket) at most; more are closed at once (1..10'000).
  std::size_t max_connections = 256;
  /// How long a request may take to arrive in full before the server answers 408.
  std::chrono::milliseconds request_timeout{10'000};
  /// Events serialized for viewers per second at most (1..10'000'000; bursts up to one
  /// second's worth). Beyond it events are only counted (the rates stay exact) and each
  /// WebSocket client is told it missed them: the page samples, and watching costs little
  /// CPU at any rate.
  std::size_t max_events_per_second = 10'000;
};

namespace detail {
struct ServerState;
}

/// The HTTP server; made by watch(). See the file comment.
///
/// Thread-safety: start(), stop() and port() may be called from any thread. The server
/// runs its own I/O thread (started by start(), joined by stop()). The Emitter passed to
/// start() (the one built from the Config given to watch()) may be destroyed before the
/// server stops: when its shutdown terminates the server's adapter, the server reads it a
/// last time and never again (/readyz answers 503, the panels and /metrics show that last
/// snapshot).
class Server {
 public:
  /// Binds options.address:options.port and serves on a thread of its own. Errors:
  /// invalid_argument for an address that does not parse, unavailable when the address
  /// cannot be bound (in use, not local), closed after stop(), already_started when
  /// started already.
  Status start(Emitter& emitter);
  /// The bound port: 0 before start(), the port actually bound after (also when
  /// options.port was 0).
  [[nodiscard]] std::uint16_t port() const;
  /// Stops accepting, sends WebSocket clients a close frame, closes every connection and
  /// joins the I/O thread, returning by `timeout` (then with timeout: connections that had
  /// not closed were cut). A stopped server does not start again. Idempotent.
  Status stop(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  /// stop().
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Made by watch() only.
  explicit Server(std::shared_ptr<detail::ServerState> state);

 private:
  std::shared_ptr<detail::ServerState> state_;
};

/// Adds the server's adapter (named `emissions.http`, overflow drop_oldest, a queue of
/// max(options.client_queue, 10'000) events) to `config` and returns the server, not yet serving.
/// Throws ConfigError for invalid options (a bounded field out of range).
///
/// @code
///   auto server = emissions::http::watch(config, {.bearer_token = token});
/// @endcode
[[nodiscard]] std::shared_ptr<Server> watch(Config& config, ServerOptions options = {});

}  // namespace emissions::http
