#include "connection.hpp"

#include "relay_faults.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <system_error>

namespace emissions::postgres::detail {

WakeFd::WakeFd() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
}

WakeFd::~WakeFd() {
  ::close(fd_);
}

void WakeFd::wake() const noexcept {
  const std::uint64_t one = 1;
  // EAGAIN (the counter is full) still leaves it readable: the wake-up is not lost.
  [[maybe_unused]] const ssize_t n = ::write(fd_, &one, sizeof one);
}

void WakeFd::clear() const noexcept {
  std::uint64_t count = 0;
  [[maybe_unused]] const ssize_t n = ::read(fd_, &count, sizeof count);
}

Ready wait_socket(int socket, bool write, const WakeFd& wake, Deadline deadline) {
  while (true) {
    int timeout_ms = -1;
    if (deadline != Deadline::max()) {
      const auto left = deadline - std::chrono::steady_clock::now();
      if (left <= Deadline::duration::zero()) return Ready::deadline;
      // Rounded up: waking a little late beats spinning on a zero timeout.
      const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
      timeout_ms = ms > 60'000 ? 60'000 : static_cast<int>(ms);
    }
    pollfd fds[2] = {{wake.fd(), POLLIN, 0},
                     {socket, static_cast<short>(write ? POLLOUT : POLLIN), 0}};
    const int n = ::poll(fds, socket >= 0 ? 2 : 1, timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      // poll itself failed (no memory): report it as a timeout, so that callers give the
      // connection up and back off rather than call poll again at once.
      return Ready::deadline;
    }
    if (n == 0) continue;  // the loop head decides whether the deadline passed
    if (fds[0].revents != 0) {
      wake.clear();
      return Ready::woken;
    }
    return Ready::io;
  }
}

namespace {

bool abandoned(const Io& io) {
  return io.stop != nullptr && io.stop->abandon();
}

Deadline limit(const Io& io) {
  return io.stop != nullptr && io.stop->requested.load(std::memory_order_acquire)
             ? std::min(io.deadline, io.stop->when())
             : io.deadline;
}

// Waits for `socket` within `io`; false (with `error`) when abandoned or past the deadline.
// A wake-up consumed here is not lost: the relay loop looks at its shared state again
// before it waits next.
bool wait_for(int socket, bool write, const Io& io, std::string& error) {
  while (true) {
    if (abandoned(io)) {
      error = "abandoned (stopping)";
      return false;
    }
    const Ready ready = wait_socket(socket, write, *io.wake, limit(io));
    if (ready == Ready::io) return true;
    if (ready == Ready::deadline && !abandoned(io)) {
      error = "no answer from the server in time";
      return false;
    }
  }
}

}  // namespace

ConnHandle connect(const std::string& conninfo, const Io& io, std::string& error) {
  (void)fault(FaultPoint::connecting, nullptr);
  ConnHandle conn(PQconnectStart(conninfo.c_str()));
  if (!conn) {
    error = "out of memory opening a connection";
    return nullptr;
  }
  PostgresPollingStatusType state = PGRES_POLLING_WRITING;
  while (true) {
    if (PQstatus(conn.get()) == CONNECTION_BAD || state == PGRES_POLLING_FAILED) {
      error = "cannot connect to " + describe_conninfo(conninfo) + ": " +
              trimmed(PQerrorMessage(conn.get()));
      return nullptr;
    }
    if (state == PGRES_POLLING_OK) break;
    std::string why;
    if (!wait_for(PQsocket(conn.get()), state == PGRES_POLLING_WRITING, io, why)) {
      error = "cannot connect to " + describe_conninfo(conninfo) + ": " + why;
      return nullptr;
    }
    state = PQconnectPoll(conn.get());
  }
  if (PQsetnonblocking(conn.get(), 1) != 0) {
    error = "cannot make the connection non-blocking: " + trimmed(PQerrorMessage(conn.get()));
    return nullptr;
  }
  return conn;
}

bool run(PGconn* conn, const std::string& sql, const Io& io, std::vector<ResultHandle>& results,
         std::string& error, bool& sql_failed) {
  results.clear();
  sql_failed = false;
  if (PQsendQuery(conn, sql.c_str()) == 0) {
    error = trimmed(PQerrorMessage(conn));
    return false;
  }
  // Send everything (a long statement may not fit the socket buffer at once).
  while (true) {
    const int flushed = PQflush(conn);
    if (flushed == 0) break;
    if (flushed < 0) {
      error = trimmed(PQerrorMessage(conn));
      return false;
    }
    if (!wait_for(PQsocket(conn), true, io, error)) return false;
    if (PQconsumeInput(conn) == 0) {
      error = trimmed(PQerrorMessage(conn));
      return false;
    }
  }
  std::string first_error;
  while (true) {
    while (PQisBusy(conn) != 0) {
      if (!wait_for(PQsocket(conn), false, io, error)) return false;
      if (PQconsumeInput(conn) == 0) {
        error = trimmed(PQerrorMessage(conn));
        return false;
      }
    }
    ResultHandle result(PQgetResult(conn));
    if (!result) break;
    const ExecStatusType status = PQresultStatus(result.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && first_error.empty()) {
      const char* state = PQresultErrorField(result.get(), PG_DIAG_SQLSTATE);
      first_error = trimmed(PQresultErrorMessage(result.get()));
      if (state != nullptr) first_error += std::string(" (SQL state ") + state + ")";
    }
    results.push_back(std::move(result));
  }
  if (PQstatus(conn) != CONNECTION_OK) {
    error = first_error.empty() ? trimmed(PQerrorMessage(conn)) : first_error;
    return false;
  }
  if (!first_error.empty()) {
    error = first_error;
    sql_failed = true;
    return false;
  }
  return true;
}

int consume_notifications(PGconn* conn) {
  if (PQconsumeInput(conn) == 0) return -1;
  return take_notifications(conn);
}

int take_notifications(PGconn* conn) {
  int count = 0;
  while (const NotifyHandle notify{PQnotifies(conn)})
    ++count;
  return count;
}

std::string describe_conninfo(const std::string& conninfo) {
  char* message = nullptr;
  const ConninfoHandle options(PQconninfoParse(conninfo.c_str(), &message));
  if (message != nullptr) PQfreemem(message);
  if (!options) return "(unparseable conninfo)";
  std::string out;
  for (const PQconninfoOption* o = options.get(); o->keyword != nullptr; ++o) {
    const std::string_view key = o->keyword;
    if (o->val == nullptr ||
        (key != "host" && key != "hostaddr" && key != "port" && key != "dbname" && key != "user")) {
      continue;
    }
    if (!out.empty()) out += ' ';
    out += key;
    out += '=';
    out += o->val;
  }
  return out.empty() ? std::string("(default connection)") : out;
}

}  // namespace emissions::postgres::detail
