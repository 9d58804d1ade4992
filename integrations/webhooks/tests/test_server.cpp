#include "test_server.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#ifdef EMISSIONS_WEBHOOKS_TEST_HTTP2
#include <nghttp2/nghttp2.h>
#endif

namespace emissions::webhooks_test {
namespace {

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 408:
      return "Request Timeout";
    case 410:
      return "Gone";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

#ifdef EMISSIONS_WEBHOOKS_TEST_HTTP2
int select_h2(SSL* /*ssl*/, const unsigned char** out, unsigned char* out_length,
              const unsigned char* in, unsigned int in_length, void* /*arg*/) {
  if (nghttp2_select_next_protocol(const_cast<unsigned char**>(out), out_length, in, in_length) !=
      1) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  return SSL_TLSEXT_ERR_OK;
}
#endif

}  // namespace

// --- a connection ----------------------------------------------------------------------

struct TestServer::Connection {
  std::mutex fd_mutex;  // the server's shutdown() against this thread's reset()
  int fd = -1;          // guarded by fd_mutex for closing; read freely by this thread
  SSL* ssl = nullptr;
  std::size_t index = 0;
  std::string buffer;  // read and not consumed yet
  bool http2 = false;

  ~Connection() {
    if (ssl != nullptr) SSL_free(ssl);
    if (fd >= 0) ::close(fd);
  }

  // Reads more into `buffer`; false at end of stream or on an error.
  bool read_more() {
    std::array<char, 16384> chunk{};
    long n = 0;
    if (ssl != nullptr) {
      n = SSL_read(ssl, chunk.data(), static_cast<int>(chunk.size()));
    } else {
      n = ::recv(fd, chunk.data(), chunk.size(), 0);
    }
    if (n <= 0) return false;
    buffer.append(chunk.data(), static_cast<std::size_t>(n));
    return true;
  }

  bool write_all(const std::string& data) {
    std::size_t done = 0;
    while (done < data.size()) {
      long n = 0;
      if (ssl != nullptr) {
        n = SSL_write(ssl, data.data() + done, static_cast<int>(data.size() - done));
      } else {
        n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      }
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }

  // Closes with a TCP reset (the peer sees ECONNRESET).
  void reset() {
    linger hard{1, 0};
    (void)::setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    ::shutdown(fd, SHUT_RD);
    if (ssl != nullptr) {
      SSL_free(ssl);
      ssl = nullptr;
    }
    std::lock_guard lock(fd_mutex);
    ::close(fd);
    fd = -1;
  }

  // Wakes this connection's thread from a blocking read (server shutdown).
  void interrupt() {
    std::lock_guard lock(fd_mutex);
    if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
  }
};

// --- the server --------------------------------------------------------------------------

TestServer::TestServer(Script script, std::optional<TlsFiles> tls, std::string host)
    : script_(std::move(script)), tls_(std::move(tls)), host_(std::move(host)) {
  if (tls_) {
    SSL_CTX* context = SSL_CTX_new(TLS_server_method());
    if (context == nullptr) throw std::runtime_error("TestServer: SSL_CTX_new failed");
    ssl_context_ = context;
    if (SSL_CTX_use_certificate_chain_file(context, tls_->certificate.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(context, tls_->key.c_str(), SSL_FILETYPE_PEM) != 1) {
      throw std::runtime_error("TestServer: cannot load the certificate " + tls_->certificate);
    }
#ifdef EMISSIONS_WEBHOOKS_TEST_HTTP2
    if (tls_->http2) SSL_CTX_set_alpn_select_cb(context, &select_h2, nullptr);
#else
    if (tls_->http2) throw std::runtime_error("TestServer: built without nghttp2");
#endif
  }

  const bool v6 = host_.find(':') != std::string::npos;
  listener_ = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener_ < 0) throw std::runtime_error("TestServer: socket failed");
  const int yes = 1;
  (void)::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  int bound = -1;
  if (v6) {
    sockaddr_in6 address{};
    address.sin6_family = AF_INET6;
    (void)::inet_pton(AF_INET6, host_.c_str(), &address.sin6_addr);
    bound = ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address);
  } else {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    (void)::inet_pton(AF_INET, host_.c_str(), &address.sin_addr);
    bound = ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address);
  }
  if (bound != 0 || ::listen(listener_, 128) != 0) {
    ::close(listener_);
    throw std::runtime_error("TestServer: cannot listen on " + host_ + ": " + std::strerror(errno));
  }
  sockaddr_storage local{};
  socklen_t length = sizeof local;
  (void)::getsockname(listener_, reinterpret_cast<sockaddr*>(&local), &length);
  port_ = v6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&local)->sin6_port)
             : ntohs(reinterpret_cast<sockaddr_in*>(&local)->sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

TestServer::~TestServer() {
  stopping_.store(true);
  ::shutdown(listener_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  ::close(listener_);
  {
    std::lock_guard lock(mutex_);
    for (const auto& connection : connections_)
      connection->interrupt();
  }
  arrived_.notify_all();
  for (std::thread& thread : threads_)
    thread.join();
  connections_.clear();
  if (ssl_context_ != nullptr) SSL_CTX_free(static_cast<SSL_CTX*>(ssl_context_));
}

std::string TestServer::url(const std::string& path, const std::string& authority) const {
  std::string host = authority.empty() ? host_ : authority;
  if (authority.empty() && host.find(':') != std::string::npos) host = "[" + host + "]";
  return std::string(tls_ ? "https" : "http") + "://" + host + ":" + std::to_string(port_) + path;
}

std::vector<Received> TestServer::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

std::size_t TestServer::request_count() const {
  std::lock_guard lock(mutex_);
  return requests_.size();
}

bool TestServer::wait_for_requests(std::size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return arrived_.wait_for(lock, timeout, [&] { return requests_.size() >= n; });
}

std::optional<std::chrono::steady_clock::time_point> TestServer::first_2xx(
    const std::string& webhook_id) const {
  std::lock_guard lock(mutex_);
  const auto found = first_2xx_.find(webhook_id);
  if (found == first_2xx_.end()) return std::nullopt;
  return found->second;
}

void TestServer::set_script(Script script) {
  std::lock_guard lock(mutex_);
  script_ = std::move(script);
}

void TestServer::accept_loop() {
  while (!stopping_.load()) {
    const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_.load()) return;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;
    }
    const int yes = 1;
    (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
    auto connection = std::make_shared<Connection>();
    connection->fd = fd;
    connection->index = accepted_.fetch_add(1);
    std::lock_guard lock(mutex_);
    connections_.push_back(connection);
    threads_.emplace_back([this, connection] { serve(connection); });
  }
}

void TestServer::serve(std::shared_ptr<Connection> connection) {
  // OpenSSL writes with write(): a peer that hung up (a client refusing our certificate)
  // raises SIGPIPE. Blocked in this thread only, so the write fails with EPIPE instead; the
  // adapter's own threads keep the default, so a SIGPIPE of theirs would still end the test.
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
  if (ssl_context_ != nullptr) {
    connection->ssl = SSL_new(static_cast<SSL_CTX*>(ssl_context_));
    SSL_set_fd(connection->ssl, connection->fd);
    if (SSL_accept(connection->ssl) != 1) {
      handshake_failures_.fetch_add(1);
      ERR_clear_error();
      return;
    }
    const unsigned char* protocol = nullptr;
    unsigned int length = 0;
    SSL_get0_alpn_selected(connection->ssl, &protocol, &length);
    connection->http2 = length == 2 && std::memcmp(protocol, "h2", 2) == 0;
  }
  if (connection->http2) {
    serve_http2(*connection);
  } else {
    serve_http1(*connection);
  }
}

std::pair<std::size_t, Reply> TestServer::record(Received request) {
  Script script;
  std::size_t index = 0;
  {
    std::lock_guard lock(mutex_);
    index = requests_.size();
    requests_.push_back(request);
    script = script_;
  }
  arrived_.notify_all();
  return {index, script ? script(request, index) : Reply{}};
}

void TestServer::answered(const Received& request, int status) {
  if (status < 200 || status > 299) return;
  std::lock_guard lock(mutex_);
  first_2xx_.try_emplace(request.header("webhook-id"), std::chrono::steady_clock::now());
}

void TestServer::serve_http1(Connection& connection) {
  while (!stopping_.load()) {
    // The head.
    std::size_t end = std::string::npos;
    while ((end = connection.buffer.find("\r\n\r\n")) == std::string::npos) {
      if (!connection.read_more()) return;
    }
    const std::string head = connection.buffer.substr(0, end);
    connection.buffer.erase(0, end + 4);

    Received request;
    request.connection = connection.index;
    request.arrived = std::chrono::steady_clock::now();
    std::size_t line_end = head.find("\r\n");
    const std::string first_line = head.substr(0, line_end);
    const std::size_t space1 = first_line.find(' ');
    const std::size_t space2 = first_line.rfind(' ');
    request.method = first_line.substr(0, space1);
    request.target = first_line.substr(space1 + 1, space2 - space1 - 1);
    request.version = first_line.substr(space2 + 1);
    while (line_end != std::string::npos) {
      const std::size_t start = line_end + 2;
      line_end = head.find("\r\n", start);
      const std::string line =
          head.substr(start, line_end == std::string::npos ? std::string::npos : line_end - start);
      const std::size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ')
        value.erase(0, 1);
      request.headers[lower(line.substr(0, colon))] = value;
    }
    // The body (Content-Length only: what libcurl sends for a POST of known size).
    const std::size_t length = std::stoul(
        request.header("content-length").empty() ? "0" : request.header("content-length"));
    while (connection.buffer.size() < length) {
      if (!connection.read_more()) return;
    }
    request.body = connection.buffer.substr(0, length);
    connection.buffer.erase(0, length);

    auto [index, reply] = record(request);
    (void)index;
    if (reply.delay.count() > 0) {
      std::unique_lock lock(mutex_);
      arrived_.wait_for(lock, reply.delay, [&] { return stopping_.load(); });
    }
    if (reply.action == Reply::Action::reset) {
      connection.reset();
      return;
    }
    std::string response =
        "HTTP/1.1 " + std::to_string(reply.status) + " " + reason_phrase(reply.status) + "\r\n";
    response += "Content-Length: " + std::to_string(reply.body.size()) + "\r\n";
    for (const auto& [name, value] : reply.headers)
      response += name + ": " + value + "\r\n";
    response += "\r\n" + reply.body;
    if (!reply.raw.empty()) response = reply.raw;
    answered(request, reply.status);  // from the moment it starts being written
    if (!connection.write_all(response)) return;
    if (reply.action == Reply::Action::respond_reset) {
      connection.reset();
      return;
    }
  }
}

#ifdef EMISSIONS_WEBHOOKS_TEST_HTTP2

namespace {

struct Http2Stream {
  Received request;
  std::string response_body;
  std::size_t sent = 0;
};

}  // namespace

void TestServer::serve_http2(Connection& connection) {
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  struct Context {
    TestServer* server;
    Connection* connection;
    std::map<std::int32_t, Http2Stream> streams;
    std::vector<std::int32_t> complete;
  } context{this, &connection, {}, {}};

  nghttp2_session_callbacks_set_send_callback(
      callbacks,
      [](nghttp2_session*, const std::uint8_t* data, std::size_t length, int,
         void* user) -> ssize_t {
        auto& c = *static_cast<Context*>(user);
        if (!c.connection->write_all(std::string(reinterpret_cast<const char*>(data), length))) {
          return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        return static_cast<ssize_t>(length);
      });
  nghttp2_session_callbacks_set_on_begin_headers_callback(
      callbacks, [](nghttp2_session*, const nghttp2_frame* frame, void* user) -> int {
        auto& c = *static_cast<Context*>(user);
        if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
          Http2Stream& stream = c.streams[frame->hd.stream_id];
          stream.request.version = "HTTP/2";
          stream.request.connection = c.connection->index;
          stream.request.arrived = std::chrono::steady_clock::now();
        }
        return 0;
      });
  nghttp2_session_callbacks_set_on_header_callback(
      callbacks,
      [](nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
         std::size_t name_length, const std::uint8_t* value, std::size_t value_length, std::uint8_t,
         void* user) -> int {
        auto& c = *static_cast<Context*>(user);
        Http2Stream& stream = c.streams[frame->hd.stream_id];
        const std::string n(reinterpret_cast<const char*>(name), name_length);
        const std::string v(reinterpret_cast<const char*>(value), value_length);
        if (n == ":method") {
          stream.request.method = v;
        } else if (n == ":path") {
          stream.request.target = v;
        } else if (!n.empty() && n[0] != ':') {
          stream.request.headers[n] = v;
        }
        return 0;
      });
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
      callbacks,
      [](nghttp2_session*, std::uint8_t, std::int32_t stream_id, const std::uint8_t* data,
         std::size_t length, void* user) -> int {
        auto& c = *static_cast<Context*>(user);
        c.streams[stream_id].request.body.append(reinterpret_cast<const char*>(data), length);
        return 0;
      });
  nghttp2_session_callbacks_set_on_frame_recv_callback(
      callbacks, [](nghttp2_session*, const nghttp2_frame* frame, void* user) -> int {
        auto& c = *static_cast<Context*>(user);
        if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
            (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
          c.complete.push_back(frame->hd.stream_id);
        }
        return 0;
      });

  nghttp2_session* session = nullptr;
  nghttp2_session_server_new(&session, callbacks, &context);
  nghttp2_session_callbacks_del(callbacks);
  nghttp2_settings_entry settings{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100};
  nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, &settings, 1);

  bool open = nghttp2_session_send(session) == 0;
  while (open && !stopping_.load()) {
    if (!connection.read_more()) break;
    const ssize_t used = nghttp2_session_mem_recv(
        session, reinterpret_cast<const std::uint8_t*>(connection.buffer.data()),
        connection.buffer.size());
    if (used < 0) break;
    connection.buffer.erase(0, static_cast<std::size_t>(used));
    // Answer the complete requests, in order (delays and resets are HTTP/1.1 only).
    for (const std::int32_t id : context.complete) {
      Http2Stream& stream = context.streams[id];
      auto [index, reply] = record(stream.request);
      (void)index;
      stream.response_body = reply.body;
      const std::string status = std::to_string(reply.status);
      std::vector<nghttp2_nv> headers;
      auto nv = [](const std::string& n, const std::string& v) {
        return nghttp2_nv{reinterpret_cast<std::uint8_t*>(const_cast<char*>(n.data())),
                          reinterpret_cast<std::uint8_t*>(const_cast<char*>(v.data())), n.size(),
                          v.size(), NGHTTP2_NV_FLAG_NONE};
      };
      const std::string status_name = ":status";
      headers.push_back(nv(status_name, status));
      std::vector<std::pair<std::string, std::string>> lowered;
      for (const auto& [n, v] : reply.headers)
        lowered.emplace_back(lower(n), v);
      for (const auto& [n, v] : lowered)
        headers.push_back(nv(n, v));
      nghttp2_data_provider provider{};
      provider.source.ptr = &stream;
      provider.read_callback = [](nghttp2_session*, std::int32_t, std::uint8_t* buffer,
                                  std::size_t length, std::uint32_t* flags,
                                  nghttp2_data_source* source, void*) -> ssize_t {
        auto& s = *static_cast<Http2Stream*>(source->ptr);
        const std::size_t n = std::min(length, s.response_body.size() - s.sent);
        std::memcpy(buffer, s.response_body.data() + s.sent, n);
        s.sent += n;
        if (s.sent == s.response_body.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
        return static_cast<ssize_t>(n);
      };
      answered(stream.request, reply.status);
      nghttp2_submit_response(session, id, headers.data(), headers.size(), &provider);
      if (nghttp2_session_send(session) != 0) open = false;
    }
    context.complete.clear();
    if (nghttp2_session_send(session) != 0) open = false;
    if (nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0) break;
  }
  nghttp2_session_del(session);
}

#else

void TestServer::serve_http2(Connection& /*connection*/) {}

#endif

// --- certificates, commands, ports -------------------------------------------------

std::pair<bool, std::string> run_command(const std::string& command) {
  std::FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return {false, {}};
  std::string out;
  std::array<char, 4096> chunk{};
  std::size_t n = 0;
  while ((n = std::fread(chunk.data(), 1, chunk.size(), pipe)) > 0)
    out.append(chunk.data(), n);
  const int status = ::pclose(pipe);
  return {status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0, out};
}

TlsFiles make_certificate(const std::string& directory, const std::string& stem,
                          const std::string& san) {
  TlsFiles files;
  files.certificate = directory + "/" + stem + ".crt";
  files.key = directory + "/" + stem + ".key";
  const std::string command =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
      "-subj '/CN=emissions webhook test' -addext 'subjectAltName=" +
      san + "' -keyout '" + files.key + "' -out '" + files.certificate + "' 2>&1";
  const auto [ok, output] = run_command(command);
  if (!ok) throw std::runtime_error("openssl req failed: " + output);
  return files;
}

int unused_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  (void)::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof address;
  (void)::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

}  // namespace emissions::webhooks_test
