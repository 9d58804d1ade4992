// Test support: a Unix-socket proxy in front of the test cluster that loses the server's
// reply to a COMMIT. It forwards one client connection both ways and reads the server's
// messages (a type byte and a 4-byte length); when the server's CommandComplete of COMMIT
// arrives (sent after the commit happened), it closes both sockets without forwarding it nor
// anything after it: the database committed, the client only sees its connection lost.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include "pg_test_support.hpp"

namespace emissions::postgres::test {

// A file descriptor, closed once.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  [[nodiscard]] int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

class CommitReplyCutter {
 public:
  CommitReplyCutter() {
    const Db admin;  // where the cluster listens, and as whom to connect
    server_path_ = std::string(PQhost(admin.get())) + "/.s.PGSQL." + PQport(admin.get());
    client_info_ = std::string("port=") + PQport(admin.get()) + " dbname=" + PQdb(admin.get()) +
                   " user=" + PQuser(admin.get());
    std::array<char, 40> pattern{};
    std::memcpy(pattern.data(), "/tmp/emissions-cut-XXXXXX", 26);
    if (::mkdtemp(pattern.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
      return;
    }
    dir_ = pattern.data();
    listen_path_ = dir_ + "/.s.PGSQL." + PQport(admin.get());
    listener_ = Fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const sockaddr_un address = address_of(listen_path_);
    if (::bind(listener_.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listener_.get(), 1) != 0) {
      ADD_FAILURE() << "cannot listen on " << listen_path_ << ": " << std::strerror(errno);
      return;
    }
    std::array<int, 2> pipe{};
    if (::pipe2(pipe.data(), O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe2: " << std::strerror(errno);
      return;
    }
    wake_read_ = Fd(pipe[0]);
    wake_write_ = Fd(pipe[1]);
    thread_ = std::thread([this] { run(); });
  }
  ~CommitReplyCutter() {
    if (thread_.joinable()) {
      const char byte = 0;
      (void)!::write(wake_write_.get(), &byte, 1);
      thread_.join();
    }
    listener_.reset();
    if (!dir_.empty()) {
      ::unlink(listen_path_.c_str());
      ::rmdir(dir_.c_str());
    }
  }
  CommitReplyCutter(const CommitReplyCutter&) = delete;
  CommitReplyCutter& operator=(const CommitReplyCutter&) = delete;

  // A conninfo that connects through the proxy (one connection).
  [[nodiscard]] std::string conninfo() const { return "host=" + dir_ + " " + client_info_; }
  // Whether it has cut the connection at a COMMIT's reply. Read after the client saw the loss.
  [[nodiscard]] bool cut() const { return cut_; }

 private:
  static sockaddr_un address_of(const std::string& path) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.c_str(),
                std::min(path.size() + 1, sizeof address.sun_path - 1));
    return address;
  }

  static bool write_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::write(fd, bytes.data(), bytes.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // Forwards the complete messages at the front of `from_server` to the client; false once
  // it met the CommandComplete of a COMMIT (not forwarded).
  bool forward_server_messages(int client) {
    std::size_t at = 0;
    while (from_server_.size() - at >= 5) {
      const auto byte = [&](std::size_t i) {
        return static_cast<std::uint32_t>(static_cast<unsigned char>(from_server_[at + i]));
      };
      const std::uint32_t length = (byte(1) << 24) | (byte(2) << 16) | (byte(3) << 8) | byte(4);
      if (from_server_.size() - at < 1 + length) break;
      const std::string_view message(from_server_.data() + at, 1 + length);
      if (message[0] == 'C' && message.substr(5) == std::string_view("COMMIT\0", 7)) {
        // Everything before it goes out first, so that the client reads the staging call's
        // result and loses only COMMIT's.
        (void)write_all(client, std::string_view(from_server_.data(), at));
        return false;
      }
      at += 1 + length;
    }
    (void)write_all(client, std::string_view(from_server_.data(), at));
    from_server_.erase(0, at);
    return true;
  }

  void run() {
    Fd client;
    Fd server;
    std::array<char, 65536> buffer{};
    for (;;) {
      std::array<pollfd, 4> fds{};
      fds[0] = {wake_read_.get(), POLLIN, 0};
      fds[1] = {client.get() >= 0 ? -1 : listener_.get(), POLLIN, 0};
      fds[2] = {client.get(), POLLIN, 0};
      fds[3] = {server.get(), POLLIN, 0};
      if (::poll(fds.data(), fds.size(), -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[0].revents != 0) return;  // the destructor's wake-up
      if (fds[1].revents != 0) {
        client = Fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        server = Fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        const sockaddr_un address = address_of(server_path_);
        if (::connect(server.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) !=
            0) {
          client.reset();
          server.reset();
        }
        continue;
      }
      if (fds[2].revents != 0) {  // client -> server, as it comes
        const ssize_t n = ::read(client.get(), buffer.data(), buffer.size());
        if (n <= 0 || !write_all(server.get(),
                                 std::string_view(buffer.data(), static_cast<std::size_t>(n)))) {
          client.reset();
          server.reset();
          continue;
        }
      }
      if (fds[3].revents != 0) {  // server -> client, message by message
        const ssize_t n = ::read(server.get(), buffer.data(), buffer.size());
        if (n <= 0) {
          client.reset();
          server.reset();
          continue;
        }
        from_server_.append(buffer.data(), static_cast<std::size_t>(n));
        if (!forward_server_messages(client.get())) {
          cut_ = true;
          client.reset();
          server.reset();
          from_server_.clear();
        }
      }
    }
  }

  std::string server_path_;
  std::string client_info_;
  std::string dir_;
  std::string listen_path_;
  Fd listener_;
  Fd wake_read_;
  Fd wake_write_;
  std::string from_server_;
  std::atomic<bool> cut_{false};
  std::thread thread_;
};

}  // namespace emissions::postgres::test
