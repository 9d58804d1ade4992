// Internal: the relay's connection, driven with libpq's non-blocking calls so that every wait
// also watches a wake-up descriptor and a deadline: stop() is never stuck behind the network.
#pragma once

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include "emissions/deadline.hpp"
#include "pq_handles.hpp"

namespace emissions::postgres::detail {

// An eventfd: any thread may wake() the relay thread; waits watch it.
class WakeFd {
 public:
  WakeFd();  // throws std::system_error when the kernel refuses
  ~WakeFd();
  WakeFd(const WakeFd&) = delete;
  WakeFd& operator=(const WakeFd&) = delete;
  void wake() const noexcept;
  void clear() const noexcept;  // consumes pending wake-ups
  [[nodiscard]] int fd() const noexcept { return fd_; }

 private:
  int fd_;
};

// What stop() tells the relay thread: written by stop() (then a wake-up), read by every wait.
struct StopSignal {
  std::atomic<bool> requested{false};
  std::atomic<Deadline::rep> deadline{Deadline::max().time_since_epoch().count()};
  std::atomic<bool> nothing_live{true};  // the relay thread: no claim in flight

  [[nodiscard]] Deadline when() const noexcept {
    return Deadline(Deadline::duration(deadline.load(std::memory_order_acquire)));
  }
  // Whether a wait should end now: stopping with nothing in flight, or past stop's deadline.
  [[nodiscard]] bool abandon() const noexcept {
    if (!requested.load(std::memory_order_acquire)) return false;
    return nothing_live.load(std::memory_order_acquire) ||
           std::chrono::steady_clock::now() >= when();
  }
};

// How long the relay thread may wait inside one operation, and when to give up at once.
struct Io {
  const WakeFd* wake = nullptr;
  Deadline deadline = Deadline::max();
  const StopSignal* stop = nullptr;
};

enum class Ready { io, woken, deadline };

// Waits until `socket` is readable (or writable, with `write`), the wake descriptor fires or
// `deadline` passes. socket < 0: waits for the wake descriptor or the deadline only.
Ready wait_socket(int socket, bool write, const WakeFd& wake, Deadline deadline);

// Opens a connection (non-blocking from the first call on). Null with `error` set when it
// fails, is abandoned or times out. `error` never holds the conninfo.
ConnHandle connect(const std::string& conninfo, const Io& io, std::string& error);

// Runs `sql` (the simple query protocol: several statements, one implicit transaction) and
// collects every result. false with `error` set when the connection failed, the operation
// was abandoned or timed out (the caller then drops the connection), or a statement failed
// (`sql_failed` set; the connection is still good).
bool run(PGconn* conn, const std::string& sql, const Io& io, std::vector<ResultHandle>& results,
         std::string& error, bool& sql_failed);

// Reads what the server sent without blocking and takes the notifications libpq holds; their
// number, or -1 when the connection failed.
int consume_notifications(PGconn* conn);
// Takes the notifications libpq already holds (read during a statement); their number.
int take_notifications(PGconn* conn);

// "host=... port=... dbname=... user=..." from `conninfo`, without the password or any
// other option: what errors may show. "(unparseable conninfo)" when libpq cannot parse it.
std::string describe_conninfo(const std::string& conninfo);

}  // namespace emissions::postgres::detail
