// Test support: a plain HTTP/1.1 client on POSIX sockets, so that tests can send exactly
// the bytes they want (truncated, oversized, malformed) to the server on 127.0.0.1.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace emissions::http::test {

struct Reply {
  int status = 0;    // 0: no response (the connection closed or timed out first)
  std::string head;  // status line and headers
  std::string body;
  [[nodiscard]] bool has_header(std::string_view line) const {
    return head.find(line) != std::string::npos;
  }
};

// A connected socket, closed by the destructor.
class Connection {
 public:
  explicit Connection(std::uint16_t port,
                      std::chrono::milliseconds timeout = std::chrono::seconds(10))
      : timeout_(timeout) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    set_receive_timeout(timeout_);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~Connection() {
    if (fd_ >= 0) ::close(fd_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  [[nodiscard]] bool connected() const { return connected_; }
  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  void half_close() { ::shutdown(fd_, SHUT_WR); }

  // Reads one response: the head, then Content-Length bytes of body (or until EOF), within
  // the connection's timeout in all (each receive waits for what is left of it): a body without a
  // length that keeps coming (an accepted WebSocket upgrade's stats, every 500 ms) ends there.
  Reply read_reply() {
    read_deadline_ = std::chrono::steady_clock::now() + timeout_;
    Reply r = read_reply_by_deadline();
    read_deadline_ = std::chrono::steady_clock::time_point::max();
    set_receive_timeout(std::chrono::duration_cast<std::chrono::microseconds>(timeout_));
    return r;
  }

  // Whether the server closed the connection (EOF, or a reset when it was closed still in
  // the listen backlog) within the receive timeout.
  bool closed_by_peer() {
    char c = 0;
    const ssize_t n = ::recv(fd_, &c, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

 private:
  Reply read_reply_by_deadline() {
    Reply r;
    std::size_t end = std::string::npos;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) return r;
    }
    r.head = buffer_.substr(0, end + 2);
    buffer_.erase(0, end + 4);
    if (r.head.size() > 12 && r.head.starts_with("HTTP/1."))
      r.status = std::atoi(r.head.c_str() + 9);
    std::size_t length = std::string::npos;
    if (const auto p = r.head.find("Content-Length: "); p != std::string::npos)
      length = static_cast<std::size_t>(std::strtoull(r.head.c_str() + p + 16, nullptr, 10));
    if (length != std::string::npos) {
      while (buffer_.size() < length && fill()) {
      }
    } else {
      while (fill()) {  // no length: the body ends with the connection
      }
    }
    const std::size_t n =
        length == std::string::npos ? buffer_.size() : std::min(length, buffer_.size());
    r.body = buffer_.substr(0, n);
    buffer_.erase(0, n);
    return r;
  }

  void set_receive_timeout(std::chrono::microseconds timeout) {
    timeval tv{};
    tv.tv_sec = static_cast<long>(timeout.count() / 1'000'000);
    tv.tv_usec = static_cast<long>(timeout.count() % 1'000'000);
    if (tv.tv_sec == 0 && tv.tv_usec == 0) tv.tv_usec = 1;  // 0 would mean "no timeout"
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  bool fill() {
    const auto now = std::chrono::steady_clock::now();
    if (now >= read_deadline_) return false;
    // This receive waits no longer than what is left of the read.
    set_receive_timeout(
        std::chrono::duration_cast<std::chrono::microseconds>(read_deadline_ - now));
    char chunk[16384];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::chrono::milliseconds timeout_;
  std::chrono::steady_clock::time_point read_deadline_ =
      std::chrono::steady_clock::time_point::max();
  std::string buffer_;
};

// One request with Connection: close, and its response.
inline Reply get(std::uint16_t port, std::string_view target, std::string_view extra_headers = {}) {
  Connection c(port);
  std::string req = "GET " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
                    std::string(extra_headers) + "Connection: close\r\n\r\n";
  c.send(req);
  return c.read_reply();
}

}  // namespace emissions::http::test
