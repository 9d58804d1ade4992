// A scripted HTTP/1.1 server for the webhook tests, on 127.0.0.1 (or ::1), plain or TLS
// (OpenSSL, a certificate the test makes), optionally HTTP/2 over TLS (nghttp2, when the
// tests were built with it). Each request is recorded, then answered as the script says:
// a status with headers after a delay, or a connection reset before or after the
// response. One thread per connection; keep-alive.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace emissions::webhooks_test {

// One request as it arrived.
struct Received {
  std::string method;
  std::string target;
  std::string version;                         // "HTTP/1.1" or "HTTP/2"
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  std::size_t connection = 0;  // which accepted connection (0, 1, ...)
  std::chrono::steady_clock::time_point arrived;

  [[nodiscard]] std::string header(const std::string& lower_name) const {
    const auto found = headers.find(lower_name);
    return found == headers.end() ? std::string() : found->second;
  }
};

// What the server does with a request.
struct Reply {
  enum class Action {
    respond,        // send the response (keep the connection)
    reset,          // reset the connection without a response (the request was seen)
    respond_reset,  // send the response, then reset the connection
  };
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers = {};
  std::string body = {};
  std::chrono::milliseconds delay{0};  // before the response (or the reset)
  Action action = Action::respond;
  std::string raw = {};  // HTTP/1.1: sent as it is instead of a response made of the above
};

// The script: the reply to the request numbered `index` (0, 1, ... in arrival order).
using Script = std::function<Reply(const Received& request, std::size_t index)>;

struct TlsFiles {
  std::string certificate;  // PEM chain
  std::string key;          // PEM private key
  bool http2 = false;       // offer h2 with ALPN (needs EMISSIONS_WEBHOOKS_TEST_HTTP2)
};

class TestServer {
 public:
  // Listens on `host` (an IPv4 or IPv6 literal) on a free port, plain HTTP unless `tls`.
  explicit TestServer(Script script, std::optional<TlsFiles> tls = std::nullopt,
                      std::string host = "127.0.0.1");
  ~TestServer();
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  [[nodiscard]] int port() const noexcept { return port_; }
  // "http://127.0.0.1:<port><path>" (https with TLS; host as given to `authority`).
  [[nodiscard]] std::string url(const std::string& path = "/hook",
                                const std::string& authority = "") const;

  // Every request so far, in arrival order.
  [[nodiscard]] std::vector<Received> requests() const;
  [[nodiscard]] std::size_t request_count() const;
  // Waits until at least `n` requests arrived; whether they did within `timeout`.
  bool wait_for_requests(std::size_t n, std::chrono::milliseconds timeout) const;
  // Connections accepted (TCP), and TLS handshakes that failed.
  [[nodiscard]] std::size_t connections() const noexcept { return accepted_.load(); }
  [[nodiscard]] std::size_t failed_handshakes() const noexcept {
    return handshake_failures_.load();
  }
  // When the server began writing the first 2xx response to a request with this webhook-id.
  [[nodiscard]] std::optional<std::chrono::steady_clock::time_point> first_2xx(
      const std::string& webhook_id) const;

  // Replaces the script (for requests that arrive from now on).
  void set_script(Script script);

 private:
  struct Connection;
  void accept_loop();
  void serve(std::shared_ptr<Connection> connection);
  void serve_http1(Connection& connection);
  void serve_http2(Connection& connection);
  // Records a request and returns its number and the script's reply.
  std::pair<std::size_t, Reply> record(Received request);
  void answered(const Received& request, int status);

  Script script_;
  std::optional<TlsFiles> tls_;
  void* ssl_context_ = nullptr;  // SSL_CTX*
  int listener_ = -1;
  int port_ = 0;
  std::string host_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> accepted_{0};
  std::atomic<std::size_t> handshake_failures_{0};

  mutable std::mutex mutex_;
  mutable std::condition_variable arrived_;
  std::vector<Received> requests_;
  std::map<std::string, std::chrono::steady_clock::time_point> first_2xx_;
  std::vector<std::shared_ptr<Connection>> connections_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

// A self-signed certificate made with the openssl command for the tests: its subject
// alternative names `san` (e.g. "IP:127.0.0.1,DNS:localhost"). Files in `directory`.
TlsFiles make_certificate(const std::string& directory, const std::string& stem,
                          const std::string& san);

// Runs a shell command; its standard output (and whether it exited 0).
std::pair<bool, std::string> run_command(const std::string& command);

// A TCP port on 127.0.0.1 with nothing listening (bound, then closed).
int unused_port();

}  // namespace emissions::webhooks_test
