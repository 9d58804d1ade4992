// Internal: the adapter's HTTP client, one I/O thread driving libcurl's multi interface.
//
// submit() queues requests from any thread and wakes the loop; the loop keeps up to
// max_connections of them in flight (keep-alive connections in the multi handle's cache,
// HTTP/2 over TLS when the server offers it), signs again one that waited more than 30 s,
// and hands every finished request, with what it came back with, to the
// completion callback, on the I/O thread. The address policy runs in libcurl's
// open-socket callback: a refused address gets no socket, so no connection.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/parking.hpp"
#include "emissions/deadline.hpp"
#include "emissions/status.hpp"
#include "options.hpp"
#include "outcome.hpp"
#include "requests.hpp"
#include "ring_queue.hpp"
#include "signature.hpp"

namespace emissions::detail::webhooks {

class Client {
 public:
  // Called on the I/O thread once per request, when it finished (or was given up at stop()):
  // must settle the request's events. Must not call stop().
  using OnDone = std::function<void(Request& request, const Response& response)>;

  // Creates the multi handle and starts the I/O thread. Throws std::runtime_error when
  // libcurl cannot be set up. `settings` and `signer` must outlive the client; `signer`
  // signs again a request that waited long for a connection. The I/O thread holds
  // `keep_alive` (the owner of this client, and of what `on_done` uses) until it has run
  // its last callback: an owner released by a callback (on the I/O thread) is destroyed
  // when the loop has ended, not under it.
  Client(const Settings& settings, const Signer& signer, OnDone on_done,
         std::shared_ptr<const void> keep_alive);
  // stop() with a deadline already passed. On the I/O thread itself (its owner's last
  // reference was released by a callback: see the constructor), the loop has ended and the
  // thread is about to return: the connections are closed and the thread, which cannot
  // join itself and has no other owner left, is detached as its last act (it runs no code
  // of this library or of its callbacks afterwards).
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Queues `requests` (moved out of the vector, which the caller clears) and wakes the I/O
  // thread; when the client refuses new requests (refuse()), fails them with the refusal
  // instead, on this thread. Under the same lock, moves up to `want` spare requests into
  // `spares`: finished ones whose texts keep their capacity, for the caller's next plan
  // (requests made and freed on one thread, no allocation per request in the steady state).
  // Thread-safe; never blocks on the network.
  void submit(std::vector<Request>& requests, std::vector<Request>& spares,
              std::size_t want) noexcept;

  // From now on submit() fails requests with `reason` (the first refusal is kept). With
  // `drop_queued`, the queued requests not started yet are failed with it too, on this
  // thread; requests in flight finish either way. Thread-safe.
  void refuse(const Status& reason, bool drop_queued) noexcept;
  // The refusal, if refuse() was called.
  [[nodiscard]] std::optional<Status> refusal() const;
  // Whether refuse() was called: one relaxed load, no lock (a caller that sees false may
  // still be refused by submit()).
  [[nodiscard]] bool refused() const noexcept { return refused_.load(std::memory_order_relaxed); }

  // Requests queued or in flight. One relaxed load.
  [[nodiscard]] std::size_t outstanding() const noexcept {
    return outstanding_.load(std::memory_order_relaxed);
  }

  // Waits until nothing is outstanding or `deadline` passed, then gives up on what is left
  // (each is handed to the callback with a failure: "terminated before the response"),
  // closes the connections and joins the I/O thread. Returns how many requests were left.
  // Call refuse() first, or submissions may keep coming. Later calls return 0. Called from
  // the I/O thread itself (a callback), it cannot wait for that thread: it makes the loop
  // end once the callback returns, failing what is left, and returns how many requests are
  // outstanding; a later call from another thread (the destructor's at the latest) joins
  // the thread.
  std::size_t stop(Deadline deadline) noexcept;

  // Trusts the CA certificates in `path` (PEM) instead of the system's, for the easy handles
  // made from now on: call it before the first request (tests with a certificate of their
  // own).
  void set_ca_file(std::string path);

 private:
  struct Transfer;

  void loop() noexcept;
  // Starts queued requests while fewer than max_connections are in flight.
  void start_queued() noexcept;
  void start(Request request) noexcept;
  // Gives `transfer` an easy handle with the options every request shares.
  void set_up(Transfer& transfer);
  // Takes the finished transfers out of the multi handle (see finish()); how many there were.
  std::size_t collect_finished() noexcept;
  // Retires `transfer` (its easy handle kept for the next one) and keeps its request and
  // `response` for report_finished().
  void finish(Transfer& transfer, const Response& response) noexcept;
  // Hands each finished request to the callback, then keeps what it can as spares.
  void report_finished() noexcept;
  // Fails every request still queued or in flight (at stop); how many there were.
  std::size_t abandon_all() noexcept;
  void done_with(std::size_t count) noexcept;

  const Settings& settings_;
  const Signer& signer_;
  const OnDone on_done_;

  mutable std::mutex mutex_;
  // Filled by submit(), emptied by the I/O thread: one buffer, kept (no block allocated by
  // one thread and freed by the other). Guarded by mutex_.
  RingQueue<Request> queue_;
  std::optional<Status> refusal_;  // guarded by mutex_
  std::string ca_file_;            // guarded by mutex_
  // Finished requests, their delivery released, kept for submit() to hand back (at most
  // the capacity reserved at construction; bodies larger than kSpareBodyBytes are not
  // kept; none with `batch`). Guarded by mutex_.
  std::vector<Request> spares_;
  std::atomic<bool> refused_{false};  // refusal_ is set
  // The I/O thread sleeps (or is about to) with room for more transfers: submit() must wake
  // it. Guarded by mutex_.
  bool wake_on_submit_ = true;

  std::atomic<std::size_t> outstanding_{0};
  WaitChannel settled_;  // notified each time outstanding_ goes down
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stopped_{false};
  std::atomic<std::size_t> abandoned_{0};  // failed by the loop as it ended

  // Whether the calling thread is the I/O thread.
  [[nodiscard]] bool on_io_thread() const noexcept;
  // Removes every easy handle and closes the multi handle (after the loop ended).
  void close_connections() noexcept;

  // The I/O thread's own (touched by no other thread while it runs).
  struct Loop;
  std::unique_ptr<Loop> loop_;
  std::thread thread_;
};

}  // namespace emissions::detail::webhooks
