#include "client.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <list>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <sys/socket.h>

#include "address_policy.hpp"
#include "common/best_effort.hpp"
#include "common/exceptions.hpp"
#include "common/status_copy.hpp"
#include "common/wait.hpp"
#include "curl_handles.hpp"

namespace emissions::detail::webhooks {
namespace {

// The I/O thread's longest sleep in curl_multi_poll when nothing happens (it is woken by
// submissions and stop(), and libcurl shortens it for its own timers).
constexpr int kPollMilliseconds = 1000;
constexpr const char* kUserAgent = "emissions-webhooks";
// A request whose signature is older than this when it starts is signed again (receivers
// refuse timestamps more than 5 minutes away by default).
constexpr std::chrono::seconds kResignAfter{30};
// Spare requests kept for the consumers (Client::spares_): per connection up to a total (so
// that 1,024 connections do not keep 32,768 spares, up to 128 MiB of bodies), and the
// largest body whose buffer is kept (larger ones are freed, so that spares hold little
// memory: at most kMaxSpares * kSpareBodyBytes, 4 MiB, of bodies).
constexpr std::size_t kSparesPerConnection = 32;
constexpr std::size_t kMaxSpares = 1024;
constexpr std::size_t kSpareBodyBytes = 4096;

// Response bodies are not kept: their content is not used, and it could hold our payload.
std::size_t discard_body(char* /*data*/, std::size_t size, std::size_t count,
                         void* /*user*/) noexcept {
  return size * count;
}

template <typename Value>
void set(CURL* easy, CURLoption option, Value value) {
  const CURLcode code = curl_easy_setopt(easy, option, value);
  if (code != CURLE_OK) {
    throw std::runtime_error(std::string("libcurl refused an option: ") + curl_easy_strerror(code));
  }
}

}  // namespace

// One request in flight, and what libcurl reads while it is: kept for the next request when
// it is done (its easy handle, its header texts and list nodes keep their capacity), so a
// request in the steady state allocates nothing here.
struct Client::Transfer {
  Request request;
  EasyHandle easy;  // null until the first request, or after a failed set-up
  // This attempt's header lines, and the list libcurl reads: nodes of our own pointing at
  // them and at the client's fixed lines (libcurl only reads a header list; it is never
  // given to curl_slist_free_all).
  std::string id_line;
  std::string timestamp_line;
  std::string signature_line;
  std::vector<curl_slist> headers;
  bool check_addresses = true;
  std::string refused;  // the first address the policy refused
  std::array<char, CURL_ERROR_SIZE> error{};

  // libcurl's open-socket callback (CURLOPT_OPENSOCKETFUNCTION), on the I/O thread, for each
  // address it tries: the address policy, then a plain socket.
  static curl_socket_t open_socket(void* self, curlsocktype purpose,
                                   curl_sockaddr* address) noexcept {
    auto& transfer = *static_cast<Transfer*>(self);
    if (purpose == CURLSOCKTYPE_IPCXN && transfer.check_addresses) {
      try {
        std::string why = refused_address(&address->addr, address->addrlen);
        if (!why.empty()) {
          if (transfer.refused.empty()) transfer.refused = std::move(why);
          return CURL_SOCKET_BAD;
        }
      } catch (...) {
        return CURL_SOCKET_BAD;  // out of memory: no connection, a retriable failure
      }
    }
    return ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
  }
};

struct Client::Loop {
  struct Finished {
    Request request;
    Response response;
  };
  MultiHandle multi;
  // In flight, and done ones kept for the next requests. std::list: stable addresses (libcurl
  // holds pointers to a transfer) and splice() moves one between them without allocating.
  std::list<Transfer> active;
  std::list<Transfer> spare;
  std::vector<Finished> finished;  // answered, for the callback (report_finished)
  std::vector<Request> starting;   // taken off the queue by start_queued(), being started
  // The header lines every request carries, which the transfers' lists point at.
  std::vector<std::string> fixed_lines;
};

Client::Client(const Settings& settings, const Signer& signer, OnDone on_done,
               std::shared_ptr<const void> keep_alive)
    : settings_(settings),
      signer_(signer),
      on_done_(std::move(on_done)),
      loop_(std::make_unique<Loop>()) {
  ensure_curl_initialised();
  loop_->multi.reset(curl_multi_init());
  if (!loop_->multi) throw std::runtime_error("libcurl: curl_multi_init failed");
  CURLM* multi = loop_->multi.get();
  const long connections = static_cast<long>(settings_.max_connections);
  if (curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, connections) != CURLM_OK ||
      curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, connections) != CURLM_OK ||
      curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, connections) != CURLM_OK ||
      curl_multi_setopt(multi, CURLMOPT_PIPELINING, long{CURLPIPE_MULTIPLEX}) != CURLM_OK) {
    throw std::runtime_error("libcurl: the multi handle refused an option");
  }
  loop_->starting.reserve(settings_.max_connections);
  if (!settings_.batch) {
    spares_.reserve(std::min(kSparesPerConnection * settings_.max_connections, kMaxSpares));
  }
  loop_->fixed_lines = {"Content-Type: application/json",
                        "Expect:"};  // no 100-continue round trip for large bodies
  loop_->fixed_lines.insert(loop_->fixed_lines.end(), settings_.header_lines.begin(),
                            settings_.header_lines.end());
  thread_ = std::thread([this, keep = std::move(keep_alive)]() mutable {
    loop();
    // Last: this may be the owner's last reference (a callback released the others), which
    // destroys this client here, on this thread (see ~Client). Nothing after it touches
    // `this`.
    keep.reset();
  });
}

Client::~Client() {
  if (on_io_thread()) {
    // Only from the end of the thread's own function (the constructor's lambda), after
    // loop() returned: every request was settled and no callback runs any more.
    close_connections();
    thread_.detach();
    return;
  }
  (void)stop(deadline_after(std::chrono::nanoseconds::zero()));
}

bool Client::on_io_thread() const noexcept {
  return std::this_thread::get_id() == thread_.get_id();
}

void Client::set_ca_file(std::string path) {
  std::lock_guard lock(mutex_);
  ca_file_ = std::move(path);
}

// --- any thread ------------------------------------------------------------------------

void Client::submit(std::vector<Request>& requests, std::vector<Request>& spares,
                    std::size_t want) noexcept {
  if (requests.empty()) return;
  std::optional<Status> refused;
  try {
    std::lock_guard lock(mutex_);
    if (refusal_) {
      refused = detail::copy_or_bare(*refusal_);
    } else {
      for (Request& request : requests) {
        queue_.push_back(std::move(request));  // leaves `request` without a delivery
        outstanding_.fetch_add(1, std::memory_order_relaxed);
      }
      // Under the lock: stop() releases the multi handle under it too.
      if (wake_on_submit_ && loop_->multi) {
        wake_on_submit_ = false;
        (void)curl_multi_wakeup(loop_->multi.get());
      }
      // Last: out of memory growing `spares` leaves fewer of them, nothing else.
      try {
        while (want > 0 && !spares_.empty()) {
          spares.push_back(std::move(spares_.back()));
          spares_.pop_back();
          --want;
        }
      } catch (...) {  // NOLINT(bugprone-empty-catch): fewer spares
      }
      return;
    }
  } catch (...) {
    // Out of memory queueing them: retriable. The message only if memory allows (this
    // function must not throw).
    refused = detail::status_or_bare(Errc::unavailable,
                                     [] { return "webhook: out of memory queueing requests"; });
  }
  // What was not queued (refused, or left when memory ran out) fails here, without the lock.
  for (Request& request : requests) {
    if (request.has_delivery()) request.fail(*refused);
  }
}

void Client::refuse(const Status& reason, bool drop_queued) noexcept {
  RingQueue<Request> dropped;
  Status why;  // the first refusal, which the dropped requests fail with
  {
    std::lock_guard lock(mutex_);
    try {
      if (!refusal_) refusal_ = reason;
    } catch (...) {
      if (!refusal_) refusal_ = Status(Errc::closed, {});
    }
    refused_.store(true, std::memory_order_relaxed);
    if (drop_queued) {
      dropped.swap(queue_);
      why = copy_or_bare(*refusal_);  // noexcept: out of memory keeps the code
    }
  }
  done_with(dropped.size());
  while (!dropped.empty())
    dropped.take_front().fail(why);
}

std::optional<Status> Client::refusal() const {
  std::lock_guard lock(mutex_);
  return refusal_;
}

void Client::done_with(std::size_t count) noexcept {
  if (count == 0) return;
  outstanding_.fetch_sub(count, std::memory_order_acq_rel);
  settled_.notify();
}

std::size_t Client::stop(Deadline deadline) noexcept {
  if (on_io_thread()) {
    // Called back on the I/O thread (a telemetry handler shutting the Emitter down): it
    // cannot wait for itself. The loop ends after the callback under way and fails what is
    // left; a later stop() (at the latest the destructor's) joins it.
    stopping_.store(true, std::memory_order_release);
    return outstanding_.load(std::memory_order_acquire);
  }
  if (stopped_.exchange(true, std::memory_order_acq_rel)) return 0;
  (void)wait_until(
      settled_, [&] { return outstanding_.load(std::memory_order_acquire) == 0; }, deadline);
  stopping_.store(true, std::memory_order_release);
  {
    std::lock_guard lock(mutex_);
    if (loop_->multi) (void)curl_multi_wakeup(loop_->multi.get());
  }
  if (thread_.joinable()) thread_.join();
  // What the loop failed as it ended, and anything queued since.
  const std::size_t left = abandoned_.load(std::memory_order_acquire) + abandon_all();
  close_connections();
  return left;
}

void Client::close_connections() noexcept {
  // Every easy handle out of the multi handle first, then the multi handle (under the lock:
  // a late submit() must not wake a freed handle).
  loop_->spare.clear();
  std::lock_guard lock(mutex_);
  loop_->multi.reset();
}

// --- the I/O thread ---------------------------------------------------------------------

void Client::loop() noexcept {
  CURLM* multi = loop_->multi.get();
  while (!stopping_.load(std::memory_order_acquire)) {
    // One turn: new requests into the multi handle, one curl_multi_perform (which looks at
    // every transfer, so it is called once per wake-up, as a plain libcurl loop does), the
    // finished ones out (their connections get queued requests at once; libcurl sends them
    // after the poll below, which returns at once for a new transfer), then the callbacks.
    start_queued();
    int running = 0;
    (void)curl_multi_perform(multi, &running);
    if (collect_finished() != 0) start_queued();
    report_finished();
    {
      std::lock_guard lock(mutex_);
      const bool room = loop_->active.size() < settings_.max_connections;
      if (room && !queue_.empty()) continue;  // submitted during the callbacks: start them
      // With room, a submission wakes the sleep; without, a finishing transfer will, and
      // submissions need not (one write and one extra turn of this loop saved per delivery).
      wake_on_submit_ = room;
    }
    (void)curl_multi_poll(multi, nullptr, 0, kPollMilliseconds, nullptr);
  }
  // Stopped: what is still in flight or queued is failed here, on this thread.
  report_finished();
  abandoned_.store(abandon_all(), std::memory_order_release);
}

void Client::start_queued() noexcept {
  const std::size_t busy = loop_->active.size();
  if (busy >= settings_.max_connections) return;
  // Everything that fits, taken under one lock (the consumers' submit() contends for it),
  // into a vector whose capacity (max_connections) was reserved: no allocation here.
  std::vector<Request>& starting = loop_->starting;
  {
    std::lock_guard lock(mutex_);
    const std::size_t n = std::min(settings_.max_connections - busy, queue_.size());
    for (std::size_t i = 0; i < n; ++i)
      starting.push_back(queue_.take_front());
  }
  for (Request& request : starting)
    start(std::move(request));
  starting.clear();
}

void Client::start(Request request) noexcept {
  Transfer* transfer = nullptr;
  try {
    if (loop_->spare.empty()) {
      loop_->active.emplace_back();
    } else {
      loop_->active.splice(loop_->active.end(), loop_->spare, loop_->spare.begin());
    }
    transfer = &loop_->active.back();
  } catch (...) {
    // Out of memory before a transfer existed: the request fails here.
    Response response;
    response.curl_code = CURLE_OUT_OF_MEMORY;
    done_with(1);
    on_done_(request, response);
    return;
  }
  transfer->request = std::move(request);
  try {
    transfer->check_addresses = !settings_.allow_private_networks;
    transfer->refused.clear();
    if (!transfer->easy) set_up(*transfer);
    CURL* easy = transfer->easy.get();

    // This attempt's headers. deliver() signed it; a request that waited long for a
    // connection is signed again, so that its timestamp is recent when it is sent.
    Request& r = transfer->request;
    const std::int64_t now = unix_seconds();
    if (r.signature.empty() || now - r.signed_at > kResignAfter.count()) sign(r, signer_, now);
    transfer->id_line.assign("webhook-id: ").append(r.id);
    transfer->timestamp_line.assign("webhook-timestamp: ").append(std::to_string(r.signed_at));
    transfer->signature_line.assign("webhook-signature: ").append(r.signature);
    std::vector<curl_slist>& nodes = transfer->headers;
    nodes.clear();
    for (std::string& line : loop_->fixed_lines)
      nodes.push_back(curl_slist{line.data(), nullptr});
    nodes.push_back(curl_slist{transfer->id_line.data(), nullptr});
    nodes.push_back(curl_slist{transfer->timestamp_line.data(), nullptr});
    nodes.push_back(curl_slist{transfer->signature_line.data(), nullptr});
    for (std::size_t i = 0; i + 1 < nodes.size(); ++i)
      nodes[i].next = &nodes[i + 1];

    transfer->error[0] = '\0';
    set(easy, CURLOPT_HTTPHEADER, nodes.data());
    set(easy, CURLOPT_POSTFIELDS, r.body.data());
    set(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
    const CURLMcode added = curl_multi_add_handle(loop_->multi.get(), easy);
    if (added != CURLM_OK) {
      throw std::runtime_error(std::string("libcurl: ") + curl_multi_strerror(added));
    }
  } catch (...) {
    transfer->easy.reset();  // perhaps half set up: not kept for another transfer
    Response response;
    response.curl_code = CURLE_FAILED_INIT;
    // The reason only if memory allows: this function must not throw.
    detail::best_effort([&] {
      response.error = "the request could not be started: " + describe_current_exception();
    });
    finish(*transfer, response);
  }
}

void Client::set_up(Transfer& transfer) {
  transfer.easy.reset(curl_easy_init());
  if (!transfer.easy) throw std::runtime_error("libcurl: curl_easy_init failed");
  CURL* easy = transfer.easy.get();
  // What every request of this endpoint shares (a reused handle keeps it).
  set(easy, CURLOPT_URL, settings_.url.c_str());
  set(easy, CURLOPT_POST, 1L);
  set(easy, CURLOPT_NOSIGNAL, 1L);
  // A transfer removed while its name lookup runs (terminate()'s deadline, a timeout) does
  // not wait for the resolver thread's getaddrinfo, which DNS trouble can hold for tens of
  // seconds: libcurl lets that thread finish on its own (7.87+).
  set(easy, CURLOPT_QUICK_EXIT, 1L);
  set(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(settings_.timeout.count()));
  set(easy, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(settings_.timeout.count()));
  set(easy, CURLOPT_FOLLOWLOCATION, 0L);
  set(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  set(easy, CURLOPT_PROXY, "");  // no proxy, even from http_proxy and the like
  set(easy, CURLOPT_HTTP_VERSION, long{CURL_HTTP_VERSION_2TLS});
  // Over TLS, wait for ALPN before opening more connections (HTTP/2 multiplexes); over plain
  // HTTP/1.1 that wait would last until the first response, however slow.
  set(easy, CURLOPT_PIPEWAIT, settings_.endpoint.starts_with("https:") ? 1L : 0L);
  set(easy, CURLOPT_TCP_KEEPALIVE, 1L);
  set(easy, CURLOPT_USERAGENT, kUserAgent);
  set(easy, CURLOPT_SSL_VERIFYPEER, settings_.insecure_skip_verify ? 0L : 1L);
  set(easy, CURLOPT_SSL_VERIFYHOST, settings_.insecure_skip_verify ? 0L : 2L);
  set(easy, CURLOPT_WRITEFUNCTION, &discard_body);
  set(easy, CURLOPT_OPENSOCKETFUNCTION, &Transfer::open_socket);
  // The transfer's own address: it stays the same while the handle is kept with it.
  set(easy, CURLOPT_OPENSOCKETDATA, static_cast<void*>(&transfer));
  set(easy, CURLOPT_PRIVATE, static_cast<void*>(&transfer));
  set(easy, CURLOPT_ERRORBUFFER, transfer.error.data());
  std::string ca_file;
  {
    std::lock_guard lock(mutex_);
    ca_file = ca_file_;
  }
  if (!ca_file.empty()) set(easy, CURLOPT_CAINFO, ca_file.c_str());
}

std::size_t Client::collect_finished() noexcept {
  std::size_t finished = 0;
  int left = 0;
  while (CURLMsg* message = curl_multi_info_read(loop_->multi.get(), &left)) {
    if (message->msg != CURLMSG_DONE) continue;
    CURL* easy = message->easy_handle;
    const CURLcode code = message->data.result;
    void* raw = nullptr;
    (void)curl_easy_getinfo(easy, CURLINFO_PRIVATE, &raw);
    Transfer& transfer = *static_cast<Transfer*>(raw);
    (void)curl_multi_remove_handle(loop_->multi.get(), easy);

    Response response;
    try {
      response.curl_code = code;
      // libcurl's own measure of the transfer (no clock read of ours per request).
      curl_off_t microseconds = 0;
      if (curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &microseconds) == CURLE_OK) {
        response.duration = std::chrono::microseconds(microseconds);
      }
      (void)curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &response.status);
      const long status = response.status;
      if (code == CURLE_OK && (status == 408 || status == 429 || status >= 500)) {
        curl_header* header = nullptr;
        if (curl_easy_header(easy, "Retry-After", 0, CURLH_HEADER, -1, &header) == CURLHE_OK &&
            header != nullptr && header->value != nullptr) {
          response.retry_after = header->value;
        }
      } else if (code == CURLE_OK && status >= 300 && status <= 399) {
        char* location = nullptr;
        if (curl_easy_getinfo(easy, CURLINFO_REDIRECT_URL, &location) == CURLE_OK &&
            location != nullptr) {
          response.location = location;
        }
      } else if (code != CURLE_OK) {
        response.error = transfer.error.data();
        // Refused by the address policy only when no other address got a connection.
        if (code == CURLE_COULDNT_CONNECT) response.refused = transfer.refused;
      }
    } catch (...) {
      // Out of memory copying texts: the codes alone decide.
    }
    finish(transfer, response);
    ++finished;
  }
  return finished;
}

void Client::finish(Transfer& transfer, const Response& response) noexcept {
  Request request = std::move(transfer.request);
  // Kept, with its easy handle, for a later request.
  for (auto it = loop_->active.begin(); it != loop_->active.end(); ++it) {
    if (&*it == &transfer) {
      loop_->spare.splice(loop_->spare.end(), loop_->active, it);
      break;
    }
  }
  done_with(1);  // answered: no longer outstanding, whatever the callback does
  try {
    // The request moves in last, by a move that cannot throw: an allocation that fails
    // before leaves it whole for the callback below (moved into a temporary first, it would
    // be destroyed with it, its delivery abandoned, and the callback would settle nothing).
    static_assert(std::is_nothrow_move_constructible_v<Loop::Finished>);  // a regrowth moves
    Loop::Finished& kept = loop_->finished.emplace_back();
    try {
      kept.response = response;
    } catch (...) {
      loop_->finished.pop_back();
      throw;
    }
    static_assert(std::is_nothrow_move_assignable_v<Request>);
    kept.request = std::move(request);
  } catch (...) {
    on_done_(request, response);  // out of memory to keep it: reported at once
  }
}

void Client::report_finished() noexcept {
  if (loop_->finished.empty()) return;
  for (Loop::Finished& done : loop_->finished) {
    on_done_(done.request, done.response);
    // Settled: its handle goes now, on this thread. A spare that kept it would pin its
    // batch (events, the commit's callback) for as long as the adapter stays busy.
    done.request.release_delivery();
  }
  // The requests' texts go back to the consumers (the threads that made them), one lock
  // per pass; what does not fit is freed with `finished` below. Batched requests are not
  // remade from spares (their bodies are cut and joined afresh): none are kept.
  if (!settings_.batch) {
    std::lock_guard lock(mutex_);
    for (Loop::Finished& done : loop_->finished) {
      if (spares_.size() == spares_.capacity()) break;
      if (done.request.body.capacity() > kSpareBodyBytes) continue;
      spares_.push_back(std::move(done.request));  // no allocation: capacity reserved
    }
  }
  loop_->finished.clear();  // keeps its capacity
}

std::size_t Client::abandon_all() noexcept {
  Response response;
  response.curl_code = CURLE_ABORTED_BY_CALLBACK;
  try {
    response.error = "the adapter was terminated before the response";
  } catch (...) {
  }
  std::size_t left = 0;
  while (!loop_->active.empty()) {
    Transfer& transfer = loop_->active.front();
    if (transfer.easy) (void)curl_multi_remove_handle(loop_->multi.get(), transfer.easy.get());
    finish(transfer, response);
    ++left;
  }
  report_finished();
  RingQueue<Request> queued;
  {
    std::lock_guard lock(mutex_);
    queued.swap(queue_);
  }
  while (!queued.empty()) {
    Request request = queued.take_front();
    done_with(1);
    on_done_(request, response);
    ++left;
  }
  return left;
}

}  // namespace emissions::detail::webhooks
