#include "client.hpp"

#include <array>
#include <chrono>
#include <list>
#include <stdexcept>
#include <utility>

#include <sys/socket.h>

#include "address_policy.hpp"
#include "common/exceptions.hpp"
#include "common/wait.hpp"
#include "curl_handles.hpp"

namespace emissions::detail::webhooks {
namespace {

// The I/O thread's longest sleep in curl_multi_poll when nothing happens (it is woken by
// submissions and stop(), and libcurl shortens it for its own timers).
constexpr int kPollMilliseconds = 1000;
constexpr const char* kUserAgent = "emissions-webhooks";

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

void append(SlistHandle& list, const std::string& line) {
  curl_slist* longer = curl_slist_append(list.get(), line.c_str());
  if (longer == nullptr) throw std::bad_alloc();
  (void)list.release();  // the same list, one item longer
  list.reset(longer);
}

std::int64_t unix_seconds() noexcept {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct Client::Transfer {
  Request request;
  EasyHandle easy;
  SlistHandle headers;
  bool check_addresses = true;
  std::string refused;  // the first address the policy refused
  std::chrono::steady_clock::time_point started;
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
  MultiHandle multi;
  std::vector<EasyHandle> idle;  // easy handles kept for the next transfers
  std::list<Transfer> active;    // in flight (stable addresses: libcurl holds pointers)
};

Client::Client(const Settings& settings, Signer signer, OnDone on_done)
    : settings_(settings),
      signer_(std::move(signer)),
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
  thread_ = std::thread([this] { loop(); });
}

Client::~Client() {
  (void)stop(deadline_after(std::chrono::nanoseconds::zero()));
}

void Client::set_ca_file(std::string path) {
  std::lock_guard lock(mutex_);
  ca_file_ = std::move(path);
}

// --- any thread ------------------------------------------------------------------------

void Client::submit(std::vector<Request> requests) noexcept {
  if (requests.empty()) return;
  std::optional<Status> refused;
  try {
    std::lock_guard lock(mutex_);
    if (refusal_) {
      refused = refusal_;
    } else {
      for (Request& request : requests) {
        queue_.push_back(std::move(request));  // leaves `request` without a delivery
        outstanding_.fetch_add(1, std::memory_order_relaxed);
      }
      // Under the lock: stop() releases the multi handle under it too.
      if (loop_->multi) (void)curl_multi_wakeup(loop_->multi.get());
      return;
    }
  } catch (...) {
    refused = Status(Errc::internal, "webhook: out of memory queueing requests");
  }
  // What was not queued (refused, or left when memory ran out) fails here, without the lock.
  for (const Request& request : requests) {
    if (request.delivery) request.fail(*refused);
  }
}

void Client::refuse(const Status& reason, bool drop_queued) noexcept {
  std::deque<Request> dropped;
  {
    std::lock_guard lock(mutex_);
    try {
      if (!refusal_) refusal_ = reason;
    } catch (...) {
      if (!refusal_) refusal_ = Status(Errc::closed, {});
    }
    if (drop_queued) dropped.swap(queue_);
  }
  done_with(dropped.size());
  const std::optional<Status> why = refusal();
  for (const Request& request : dropped)
    request.fail(*why);
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
  if (stopped_.exchange(true, std::memory_order_acq_rel)) return 0;
  (void)wait_until(
      settled_, [&] { return outstanding_.load(std::memory_order_acquire) == 0; }, deadline);
  stopping_.store(true, std::memory_order_release);
  {
    std::lock_guard lock(mutex_);
    if (loop_->multi) (void)curl_multi_wakeup(loop_->multi.get());
  }
  if (thread_.joinable()) thread_.join();
  // The I/O thread is gone: what it left, in flight or queued, is failed here.
  const std::size_t left = abandon_all();
  // Every easy handle out of the multi handle first, then the multi handle (under the lock:
  // a late submit() must not wake a freed handle).
  loop_->idle.clear();
  std::lock_guard lock(mutex_);
  loop_->multi.reset();
  return left;
}

// --- the I/O thread ---------------------------------------------------------------------

void Client::loop() noexcept {
  CURLM* multi = loop_->multi.get();
  while (!stopping_.load(std::memory_order_acquire)) {
    start_queued();
    int running = 0;
    (void)curl_multi_perform(multi, &running);
    const std::size_t finished = collect_finished();
    if (finished != 0) {
      // Room was made: start what waits before sleeping.
      std::lock_guard lock(mutex_);
      if (!queue_.empty()) continue;
    }
    (void)curl_multi_poll(multi, nullptr, 0, kPollMilliseconds, nullptr);
  }
}

void Client::start_queued() noexcept {
  while (loop_->active.size() < settings_.max_connections) {
    Request request;
    {
      std::lock_guard lock(mutex_);
      if (queue_.empty()) return;
      request = std::move(queue_.front());
      queue_.pop_front();
    }
    start(std::move(request));
  }
}

void Client::start(Request request) noexcept {
  Transfer* transfer = nullptr;
  try {
    transfer = &loop_->active.emplace_back();
    transfer->request = std::move(request);
  } catch (...) {
    if (transfer == nullptr) {
      // Out of memory before the transfer existed: the request fails here.
      Response response;
      response.curl_code = CURLE_OUT_OF_MEMORY;
      done_with(1);
      on_done_(request, response);
      return;
    }
  }
  try {
    transfer->started = std::chrono::steady_clock::now();
    transfer->check_addresses = !settings_.allow_private_networks;
    if (!loop_->idle.empty()) {
      transfer->easy = std::move(loop_->idle.back());
      loop_->idle.pop_back();
    } else {
      transfer->easy.reset(curl_easy_init());
      if (!transfer->easy) throw std::runtime_error("libcurl: curl_easy_init failed");
      CURL* easy = transfer->easy.get();
      // What every transfer of this endpoint shares (kept by a reused handle).
      set(easy, CURLOPT_URL, settings_.url.c_str());
      set(easy, CURLOPT_POST, 1L);
      set(easy, CURLOPT_NOSIGNAL, 1L);
      set(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(settings_.timeout.count()));
      set(easy, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(settings_.timeout.count()));
      set(easy, CURLOPT_FOLLOWLOCATION, 0L);
      set(easy, CURLOPT_PROTOCOLS_STR, "http,https");
      set(easy, CURLOPT_PROXY, "");  // no proxy, even from http_proxy and the like
      set(easy, CURLOPT_HTTP_VERSION, long{CURL_HTTP_VERSION_2TLS});
      // Over TLS, wait for ALPN before opening more connections (HTTP/2 multiplexes); over
      // plain HTTP/1.1 that wait would last until the first response, however slow.
      set(easy, CURLOPT_PIPEWAIT, settings_.endpoint.starts_with("https:") ? 1L : 0L);
      set(easy, CURLOPT_TCP_KEEPALIVE, 1L);
      set(easy, CURLOPT_USERAGENT, kUserAgent);
      set(easy, CURLOPT_SSL_VERIFYPEER, settings_.insecure_skip_verify ? 0L : 1L);
      set(easy, CURLOPT_SSL_VERIFYHOST, settings_.insecure_skip_verify ? 0L : 2L);
      set(easy, CURLOPT_WRITEFUNCTION, &discard_body);
      set(easy, CURLOPT_OPENSOCKETFUNCTION, &Transfer::open_socket);
      std::string ca_file;
      {
        std::lock_guard lock(mutex_);
        ca_file = ca_file_;
      }
      if (!ca_file.empty()) set(easy, CURLOPT_CAINFO, ca_file.c_str());
    }
    CURL* easy = transfer->easy.get();
    const Request& r = transfer->request;

    // This attempt's headers: its own timestamp, signed now.
    const std::string timestamp = std::to_string(unix_seconds());
    std::string signature = "webhook-signature: ";
    signer_.sign(r.id, timestamp, r.body, signature);
    append(transfer->headers, "Content-Type: application/json");
    append(transfer->headers, "Expect:");  // no 100-continue round trip for large bodies
    append(transfer->headers, "webhook-id: " + r.id);
    append(transfer->headers, "webhook-timestamp: " + timestamp);
    append(transfer->headers, signature);
    for (const std::string& line : settings_.header_lines)
      append(transfer->headers, line);

    transfer->error[0] = '\0';
    set(easy, CURLOPT_ERRORBUFFER, transfer->error.data());
    set(easy, CURLOPT_HTTPHEADER, transfer->headers.get());
    set(easy, CURLOPT_POSTFIELDS, r.body.data());
    set(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
    set(easy, CURLOPT_OPENSOCKETDATA, static_cast<void*>(transfer));
    set(easy, CURLOPT_PRIVATE, static_cast<void*>(transfer));
    const CURLMcode added = curl_multi_add_handle(loop_->multi.get(), easy);
    if (added != CURLM_OK) {
      throw std::runtime_error(std::string("libcurl: ") + curl_multi_strerror(added));
    }
  } catch (...) {
    transfer->easy.reset();  // perhaps half set up: not kept for another transfer
    Response response;
    response.curl_code = CURLE_FAILED_INIT;
    response.error = "the request could not be started: " + describe_current_exception();
    finish(*transfer, response);
  }
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
      response.duration = std::chrono::steady_clock::now() - transfer.started;
      (void)curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &response.status);
      if (code == CURLE_OK) {
        curl_header* header = nullptr;
        if (curl_easy_header(easy, "Retry-After", 0, CURLH_HEADER, -1, &header) == CURLHE_OK &&
            header != nullptr && header->value != nullptr) {
          response.retry_after = header->value;
        }
        char* location = nullptr;
        if (curl_easy_getinfo(easy, CURLINFO_REDIRECT_URL, &location) == CURLE_OK &&
            location != nullptr) {
          response.location = location;
        }
      } else {
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
  EasyHandle easy = std::move(transfer.easy);
  // The transfer goes first (its headers with it): the callback may take a while.
  for (auto it = loop_->active.begin(); it != loop_->active.end(); ++it) {
    if (&*it == &transfer) {
      loop_->active.erase(it);
      break;
    }
  }
  if (easy) {
    try {
      loop_->idle.push_back(std::move(easy));
    } catch (...) {
      // Out of memory keeping it: released here instead.
    }
  }
  done_with(1);  // answered: no longer outstanding, whatever the callback does
  on_done_(request, response);
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
  std::deque<Request> queued;
  {
    std::lock_guard lock(mutex_);
    queued.swap(queue_);
  }
  for (Request& request : queued) {
    done_with(1);
    on_done_(request, response);
    ++left;
  }
  return left;
}

}  // namespace emissions::detail::webhooks
