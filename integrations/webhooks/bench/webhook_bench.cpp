// emissions-webhooks-bench: events per second through the Webhook adapter to a local
// keep-alive HTTP server, beside a raw libcurl multi loop with the same settings, in the same
// run (docs/BENCHMARKS.md, "Webhooks").
//
//   emissions-webhooks-bench [--events N] [--reps R] [--connections C] [--in-flight F]
//                            [--only raw|adapter] [--threads] [--json] [--quick]
//
// The server (in this process, one thread per connection) answers every request with
// `200 OK` and an empty body as soon as its body has arrived. Both sides POST an envelope of
// the same payload over `--connections` keep-alive HTTP/1.1 connections, one event per
// request:
//   raw      a libcurl multi loop with C easy handles, each re-added as soon as it is done,
//            with the adapter's options (timeouts, no proxy, no redirects, the protocols,
//            the user agent, TLS checks, multiplexing, an open-socket callback, the same
//            headers, precomputed): no pipeline, no serialization, no signing.
//   adapter  an Emitter with one Webhook adapter (max_connections C, allow_private_networks,
//            AdapterOptions::max_in_flight F when given, else the adapter's preferred
//            window, Webhook::preferred_max_in_flight()), fed by a producer thread that
//            commits one event per transaction (blocked by the queue when it is full, as a
//            busy service is): emit, commit, the pipeline, serialization, HMAC signing and
//            settlement included.
// Each side's rate is measured between its 10th and 90th percentile of answered requests
// (no start-up, no tail, no drain). Runs alternate (raw, adapter, raw, ...); the medians are
// printed, and the median of the ratios of neighbouring pairs (load from elsewhere on the
// machine changes slowly and weighs on both runs of a pair alike). `--threads` prints, for each
// run, every thread's CPU time per request over the same window, the time it was runnable
// but waiting for a core, and its sleeps (/proc/self/task/*/schedstat and status). Exit status: 0
// when every run delivered every event, 2 otherwise, 64 for bad flags.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "emissions/adapters/webhook.hpp"
#include "emissions/emissions.hpp"

namespace {

using Clock = std::chrono::steady_clock;

// --- per-thread times (--threads) -------------------------------------------------------------

bool g_threads = false;

struct ThreadTimes {
  std::string name;
  std::uint64_t run_ns = 0;   // on a core
  std::uint64_t wait_ns = 0;  // runnable, waiting for a core
  std::uint64_t sleeps = 0;   // voluntary context switches
};
using Snapshot = std::map<int, ThreadTimes>;

// Every thread of this process, when --threads is on (empty otherwise).
Snapshot snapshot() {
  Snapshot threads;
  if (!g_threads) return threads;
  DIR* dir = ::opendir("/proc/self/task");
  if (dir == nullptr) return threads;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    const std::string task = std::string("/proc/self/task/") + entry->d_name;
    ThreadTimes& t = threads[std::atoi(entry->d_name)];
    std::ifstream(task + "/comm") >> t.name;
    std::ifstream(task + "/schedstat") >> t.run_ns >> t.wait_ns;
    std::ifstream status(task + "/status");
    for (std::string line; std::getline(status, line);) {
      if (line.starts_with("voluntary_ctxt_switches:"))
        t.sleeps = std::strtoull(line.c_str() + 24, nullptr, 10);
    }
  }
  ::closedir(dir);
  return threads;
}

// Each thread's share of `requests` between two snapshots, busiest first.
void print_threads(const char* side, const Snapshot& before, const Snapshot& after,
                   std::uint64_t requests) {
  if (!g_threads || requests == 0) return;
  std::vector<std::pair<int, ThreadTimes>> rows;
  ThreadTimes total;
  for (const auto& [tid, t] : after) {
    const auto found = before.find(tid);
    if (found == before.end()) continue;
    ThreadTimes d{t.name, t.run_ns - found->second.run_ns, t.wait_ns - found->second.wait_ns,
                  t.sleeps - found->second.sleeps};
    total.run_ns += d.run_ns;
    total.wait_ns += d.wait_ns;
    total.sleeps += d.sleeps;
    rows.emplace_back(tid, d);
  }
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second.run_ns > b.second.run_ns; });
  const auto per = [&](std::uint64_t v) {
    return static_cast<double>(v) / static_cast<double>(requests);
  };
  std::fprintf(stderr, "  %s, per request (%llu requests): CPU us, runnable-waiting us, sleeps\n",
               side, static_cast<unsigned long long>(requests));
  for (const auto& [tid, d] : rows) {
    if (per(d.run_ns) < 50) continue;  // idle threads
    std::fprintf(stderr, "    %-16s %7d %7.2f %7.2f %6.3f\n", d.name.c_str(), tid,
                 per(d.run_ns) / 1000, per(d.wait_ns) / 1000, per(d.sleeps));
  }
  std::fprintf(stderr, "    %-24s %7.2f %7.2f %6.3f\n", "process", per(total.run_ns) / 1000,
               per(total.wait_ns) / 1000, per(total.sleeps));
}

// --- the server ----------------------------------------------------------------------------

class Server {
 public:
  Server() {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int yes = 1;
    (void)::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listener_, 256) != 0) {
      std::perror("bench server");
      std::exit(1);
    }
    socklen_t length = sizeof address;
    (void)::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    acceptor_ = std::thread([this] {
      (void)pthread_setname_np(pthread_self(), "bench-acceptor");
      accept_loop();
    });
  }
  ~Server() {
    stopping_.store(true);
    ::shutdown(listener_, SHUT_RDWR);
    acceptor_.join();
    ::close(listener_);
    {
      std::lock_guard lock(mutex_);
      for (const int fd : fds_)
        ::shutdown(fd, SHUT_RDWR);
    }
    for (std::thread& t : threads_)
      t.join();
  }
  [[nodiscard]] std::string url() const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/hook";
  }
  [[nodiscard]] std::uint64_t requests() const { return requests_.load(); }

 private:
  void accept_loop() {
    while (!stopping_.load()) {
      const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      const int yes = 1;
      (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
      std::lock_guard lock(mutex_);
      fds_.push_back(fd);
      threads_.emplace_back([this, fd] {
        (void)pthread_setname_np(pthread_self(), "bench-server");
        serve(fd);
      });
    }
  }

  void serve(int fd) {
    static constexpr std::string_view kResponse = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    std::string buffer;
    std::array<char, 65536> chunk{};
    for (;;) {
      // Every complete request in the buffer is answered (the client sends one at a time).
      for (;;) {
        const std::size_t head_end = buffer.find("\r\n\r\n");
        if (head_end == std::string::npos) break;
        std::size_t length = 0;
        const std::size_t at = find_header(buffer, head_end, "content-length:");
        if (at != std::string::npos) length = std::strtoul(buffer.c_str() + at, nullptr, 10);
        if (buffer.size() < head_end + 4 + length) break;
        buffer.erase(0, head_end + 4 + length);
        requests_.fetch_add(1, std::memory_order_relaxed);
        if (::send(fd, kResponse.data(), kResponse.size(), MSG_NOSIGNAL) < 0) return;
      }
      const long n = ::recv(fd, chunk.data(), chunk.size(), 0);
      if (n <= 0) {
        ::close(fd);
        return;
      }
      buffer.append(chunk.data(), static_cast<std::size_t>(n));
    }
  }

  // Where the value of `name` (lower case, with its colon) starts in the head, or npos.
  static std::size_t find_header(const std::string& buffer, std::size_t head_end,
                                 std::string_view name) {
    std::size_t line = buffer.find("\r\n");
    while (line != std::string::npos && line < head_end) {
      const std::size_t start = line + 2;
      if (start + name.size() <= head_end &&
          strncasecmp(buffer.c_str() + start, name.data(), name.size()) == 0) {
        return start + name.size();
      }
      line = buffer.find("\r\n", start);
    }
    return std::string::npos;
  }

  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> requests_{0};
  std::mutex mutex_;
  std::vector<int> fds_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

// --- the raw libcurl loop --------------------------------------------------------------------

std::size_t discard(char*, std::size_t size, std::size_t count, void*) {
  return size * count;
}

curl_socket_t open_plain_socket(void*, curlsocktype, curl_sockaddr* address) {
  return ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

// Requests per second for `total` POSTs of `body` over `connections` keep-alive connections.
double raw_loop(const std::string& url, const std::string& body, std::size_t total,
                std::size_t connections, std::uint64_t& done_out) {
  CURLM* multi = curl_multi_init();
  const long c = static_cast<long>(connections);
  curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, c);
  curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, c);
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, c);
  curl_multi_setopt(multi, CURLMOPT_PIPELINING, long{CURLPIPE_MULTIPLEX});
  curl_slist* headers = nullptr;
  for (const char* line : {"Content-Type: application/json",
                           "Expect:", "webhook-id: 0190a2b4-7c1d-7e00-8000-000000000001",
                           "webhook-timestamp: 1796119200",
                           "webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}) {
    headers = curl_slist_append(headers, line);
  }
  std::vector<CURL*> handles;
  for (std::size_t i = 0; i < connections; ++i) {
    CURL* easy = curl_easy_init();
    curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
    curl_easy_setopt(easy, CURLOPT_POST, 1L);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_QUICK_EXIT, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 10'000L);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, 10'000L);
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_PROXY, "");
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, long{CURL_HTTP_VERSION_2TLS});
    curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 0L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "emissions-webhooks");
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &discard);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, &open_plain_socket);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    handles.push_back(easy);
  }
  std::size_t started = 0;
  std::uint64_t done = 0;
  // When 10% and 90% of the requests were answered: the rate is measured between them.
  std::pair<Clock::time_point, std::uint64_t> mark0{{}, 0};
  std::pair<Clock::time_point, std::uint64_t> mark1{{}, 0};
  Snapshot threads0;
  Snapshot threads1;
  for (CURL* easy : handles) {
    if (started < total) {
      curl_multi_add_handle(multi, easy);
      ++started;
    }
  }
  while (done < total) {
    int running = 0;
    curl_multi_perform(multi, &running);
    int left = 0;
    while (CURLMsg* message = curl_multi_info_read(multi, &left)) {
      if (message->msg != CURLMSG_DONE) continue;
      CURL* easy = message->easy_handle;
      long status = 0;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
      curl_multi_remove_handle(multi, easy);
      if (message->data.result == CURLE_OK && status == 200) ++done;
      if (started < total) {
        curl_multi_add_handle(multi, easy);
        ++started;
      } else if (message->data.result != CURLE_OK) {
        done = total;  // a failure: counted short below
      }
    }
    if (done >= total / 10 && mark0.second == 0) {
      mark0 = {Clock::now(), done};
      threads0 = snapshot();
    }
    if (done >= total - total / 10 && mark1.second == 0) {
      mark1 = {Clock::now(), done};
      threads1 = snapshot();
    }
    if (done < total) curl_multi_poll(multi, nullptr, 0, 100, nullptr);
  }
  for (CURL* easy : handles) {
    curl_multi_remove_handle(multi, easy);
    curl_easy_cleanup(easy);
  }
  curl_slist_free_all(headers);
  curl_multi_cleanup(multi);
  done_out = done;
  print_threads("raw", threads0, threads1, mark1.second - mark0.second);
  return static_cast<double>(mark1.second - mark0.second) /
         std::chrono::duration<double>(mark1.first - mark0.first).count();
}

// --- the adapter -------------------------------------------------------------------------------

// AdapterOptions::max_in_flight (--in-flight); unset: the adapter's preference.
std::optional<std::size_t> in_flight;

// Events per second through a Webhook adapter: a producer thread commits `total` events,
// one per transaction (blocked by the queue when it is full, as a service would be), and the
// rate is measured between the 10th and 90th percentile of answered requests (no start-up, no
// tail, no drain).
double adapter_run(const Server& server, const nlohmann::json& payload, std::size_t total,
                   std::size_t connections, std::uint64_t& delivered) {
  const std::string url = server.url();
  emissions::adapters::WebhookOptions options;
  options.url = url;
  options.secrets = {"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"};
  options.max_connections = connections;
  options.allow_private_networks = true;
  auto hook = std::make_shared<emissions::adapters::Webhook>(std::move(options));
  emissions::Config config;
  config.make_default = false;
  emissions::AdapterOptions adapter_options;
  adapter_options.max_in_flight = in_flight;
  config.add_adapter(hook, adapter_options);
  emissions::Emitter emitter(std::move(config));
  const emissions::EventName name("order_created");
  const std::uint64_t answered_before = server.requests();  // the earlier runs' (all answered)
  std::thread producer([&] {
    (void)pthread_setname_np(pthread_self(), "bench-producer");
    for (std::size_t i = 0; i < total; ++i) {
      emissions::Transaction tx = emitter.start();
      if (!tx.emit(name, nlohmann::json(payload)).ok()) return;
      while (tx.commit() == emissions::Errc::overloaded) {
      }
    }
  });
  // With --threads: where the events wait, sampled with the counters between the marks
  // (the Emitter's queue; the adapter's requests queued or in flight).
  double queued_sum = 0;
  double outstanding_sum = 0;
  std::size_t samples = 0;
  bool sampling = false;
  // Requests the server answered in this run: an atomic load (Emitter::stats() copies every
  // adapter's counters and name, ~25 us a call, which this thread's polls would add to the
  // adapter's side only; the raw loop counts inline). Over the window it is the same rate
  // as the events acknowledged, each a response later.
  const auto settled = [&] {
    if (sampling && g_threads) {
      queued_sum += static_cast<double>(emitter.stats().adapters[0].queued);
      outstanding_sum += static_cast<double>(hook->outstanding());
      ++samples;
    }
    return server.requests() - answered_before;
  };
  const auto wait_for = [&](std::uint64_t n) {
    std::uint64_t now = settled();
    while (now < n) {
      // Often enough for the rate (the window lasts ~1 s), seldom enough that this thread's
      // wake-ups do not weigh on the adapter's threads (the raw loop measures inline).
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      now = settled();
    }
    return std::make_pair(Clock::now(), now);
  };
  const auto [t0, d0] = wait_for(total / 10);
  const Snapshot threads0 = snapshot();
  sampling = true;
  const auto [t1, d1] = wait_for(total - total / 10);
  sampling = false;
  const Snapshot threads1 = snapshot();
  print_threads("adapter", threads0, threads1, d1 - d0);
  if (g_threads && samples != 0) {
    const auto n = static_cast<double>(samples);
    std::fprintf(stderr,
                 "    mean: %.0f events in the Emitter's queue, %.0f requests outstanding\n",
                 queued_sum / n, outstanding_sum / n);
  }
  producer.join();
  if (!emitter.drain(std::chrono::minutes(5)).ok()) std::fprintf(stderr, "drain timed out\n");
  delivered = emitter.stats().adapters[0].delivered;
  (void)emitter.shutdown(std::chrono::seconds(10));
  return static_cast<double>(d1 - d0) / std::chrono::duration<double>(t1 - t0).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t events = 30'000;
  std::size_t reps = 7;
  std::size_t connections = 8;
  bool json = false;
  std::string only;  // "raw" or "adapter": one side only (for profiling)
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::size_t {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", arg.c_str());
        std::exit(64);
      }
      return std::strtoul(argv[++i], nullptr, 10);
    };
    if (arg == "--events") {
      events = value();
    } else if (arg == "--reps") {
      reps = value();
    } else if (arg == "--connections") {
      connections = value();
    } else if (arg == "--only") {
      if (i + 1 >= argc) return 64;
      only = argv[++i];
    } else if (arg == "--in-flight") {
      in_flight = value();
    } else if (arg == "--threads") {
      g_threads = true;
    } else if (arg == "--json") {
      json = true;
    } else if (arg == "--quick") {
      events = 5'000;
      reps = 1;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--events N] [--reps R] [--connections C] [--in-flight F]\n"
                   "          [--only raw|adapter] [--threads] [--json] [--quick]\n",
                   argv[0]);
      return 64;
    }
  }
  if (events == 0 || reps == 0 || connections == 0) return 64;
  curl_global_init(CURL_GLOBAL_DEFAULT);

  Server server;
  const nlohmann::json payload = {{"order_id", 123456}, {"total", 99.5}, {"currency", "EUR"}};
  // The raw loop posts a body the size of the adapter's (an envelope of the same payload).
  const std::string body = emissions::serialize(
      emissions::Event{emissions::EventName("order_created"), payload, nlohmann::json::object(),
                       emissions::EventId::generate(), std::chrono::system_clock::now()});

  std::vector<double> raw;
  std::vector<double> adapter;
  bool complete = true;
  // A warm-up of each, not counted.
  std::uint64_t done = 0;
  if (only != "adapter") {
    (void)raw_loop(server.url(), body, std::min<std::size_t>(events, 2'000), connections, done);
  }
  if (only != "raw") {
    (void)adapter_run(server, payload, std::min<std::size_t>(events, 2'000), connections, done);
  }
  for (std::size_t r = 0; r < reps; ++r) {
    std::fprintf(stderr, "rep %zu/%zu:", r + 1, reps);
    if (only != "adapter") {
      raw.push_back(raw_loop(server.url(), body, events, connections, done));
      complete = complete && done == events;
      std::fprintf(stderr, " raw %.0f req/s;", raw.back());
    }
    if (only != "raw") {
      adapter.push_back(adapter_run(server, payload, events, connections, done));
      complete = complete && done == events;
      std::fprintf(stderr, " adapter %.0f events/s", adapter.back());
    }
    std::fprintf(stderr, "\n");
  }
  if (raw.empty()) raw.push_back(1);
  if (adapter.empty()) adapter.push_back(1);
  const double raw_median = median(raw);
  const double adapter_median = median(adapter);
  // The ratio of each pair of neighbouring runs, then their median: load from elsewhere on
  // the machine changes slowly, and affects both runs of a pair alike.
  std::vector<double> ratios;
  for (std::size_t r = 0; r < std::min(raw.size(), adapter.size()); ++r)
    ratios.push_back(adapter[r] / raw[r]);
  const double ratio = median(ratios);
  if (json) {
    std::printf(
        "{\"events\":%zu,\"reps\":%zu,\"connections\":%zu,\"body_bytes\":%zu,"
        "\"raw_curl_multi_rps\":%.0f,\"webhook_adapter_eps\":%.0f,\"ratio_median_of_pairs\":%.3f,"
        "\"target_ratio\":0.8,\"met\":%s,\"complete\":%s}\n",
        events, reps, connections, body.size(), raw_median, adapter_median, ratio,
        ratio >= 0.8 ? "true" : "false", complete ? "true" : "false");
  } else {
    std::printf("webhooks: %zu events per run, %zu runs each, %zu connections, %zu-byte bodies\n",
                events, reps, connections, body.size());
    std::printf("  %-34s %12.0f req/s\n", "raw libcurl multi loop (median)", raw_median);
    std::printf("  %-34s %12.0f events/s\n", "Webhook adapter (median)", adapter_median);
    std::printf("  %-34s %12.2f (target >= 0.80: %s)\n", "adapter / raw (median of pairs)", ratio,
                ratio >= 0.8 ? "met" : "NOT met");
  }
  if (!complete) {
    std::fprintf(stderr, "a run did not deliver every event\n");
    return 2;
  }
  return 0;
}
