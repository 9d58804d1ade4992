// emissions-http-bench: does watching slow the pipeline? The claim: with the
// server running and a WebSocket client that never reads while events flow, the
// pipeline's throughput stays at least 0.9x of the same pipeline without the server.
//
// Both configurations run in the same process, alternating, `--reps` times each; each run
// commits `--events` events (10 per commit, one producer thread, one no-op adapter) and
// is timed until drain() returns. Prints the medians and their ratio, of the throughput and
// of the process's CPU time per event (all threads: less noisy on a shared machine), and
// what the slow client was told it missed (read once the run is timed) (one JSON object
// with --json). Exits 2 if a run lost events (the no-op adapter did not see every one).
//
//   ./build/release/integrations/http/emissions-http-bench [--events N] [--reps N] [--json]
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "emissions/emissions.hpp"
#include "emissions/http/server.hpp"

namespace {

namespace net = boost::asio;
namespace websocket = boost::beast::websocket;
using tcp = net::ip::tcp;

class Noop final : public emissions::Adapter {
 public:
  std::string_view name() const override { return "noop"; }
  emissions::Status handle_events(std::span<const emissions::Event> batch) override {
    seen.fetch_add(batch.size(), std::memory_order_relaxed);
    return {};
  }
  std::atomic<std::uint64_t> seen{0};
};

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct Run {
  double events_per_second = 0;
  double cpu_ns_per_event = 0;
  std::uint64_t client_received = 0;    // events the slow client got (at most its queue, about)
  std::uint64_t client_missed = 0;      // what it was told it missed
  std::uint64_t missed_or_dropped = 0;  // what the viewer did not show (with the server)
  bool complete = false;
};

Run run(std::uint64_t events, bool with_server) {
  auto noop = std::make_shared<Noop>();
  emissions::Config config;
  config.make_default = false;
  config.add_adapter(noop);
  std::shared_ptr<emissions::http::Server> server;
  if (with_server) server = emissions::http::watch(config, {.client_queue = 10'000});
  emissions::Emitter emitter(std::move(config));

  // A client that completes the WebSocket handshake and then never reads, with a small
  // receive buffer: its queue fills at once and stays full.
  net::io_context ioc;
  std::unique_ptr<websocket::stream<tcp::socket>> client;
  if (server) {
    if (!server->start(emitter).ok()) return {};
    client = std::make_unique<websocket::stream<tcp::socket>>(ioc);
    auto& sock = client->next_layer();
    sock.open(tcp::v4());
    sock.set_option(net::socket_base::receive_buffer_size(4096));
    sock.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), server->port()));
    client->handshake("127.0.0.1", "/events");
  }

  const double cpu_start = cpu_seconds();
  const auto start = std::chrono::steady_clock::now();
  for (std::uint64_t i = 0; i < events; i += 10) {
    emissions::Transaction tx = emitter.start();
    for (int k = 0; k < 10; ++k)
      (void)tx.emit("order_created", {{"order", i + static_cast<std::uint64_t>(k)}});
    if (!tx.commit().ok()) return {};
  }
  if (!emitter.drain(std::chrono::seconds(120)).ok()) return {};
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Run r;
  r.cpu_ns_per_event = (cpu_seconds() - cpu_start) * 1e9 / static_cast<double>(events);
  r.events_per_second = static_cast<double>(events) / seconds;
  r.complete = noop->seen.load() == events;
  if (server) {
    std::uint64_t watched = 0;
    for (const auto& a : emitter.stats().adapters) {
      if (a.name != "emissions.http") continue;
      r.missed_or_dropped = a.dropped;
      watched = a.delivered;
    }
    // Untimed: the client reads at last, until every event the server saw is accounted for.
    boost::beast::error_code ec;
    while (r.client_received + r.client_missed < watched) {
      boost::beast::flat_buffer buffer;
      client->read(buffer, ec);
      if (ec) break;
      const auto m = nlohmann::json::parse(boost::beast::buffers_to_string(buffer.data()));
      if (m.at("type") == "missed") r.client_missed += m.at("count").get<std::uint64_t>();
      if (m.at("type") == "events") r.client_received += m.at("events").size();
    }
    (void)server->stop(std::chrono::seconds(2));
  }
  return r;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t events = 1'000'000;
  int reps = 3;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--events" && i + 1 < argc) {
      events = std::strtoull(argv[++i], nullptr, 10) / 10 * 10;
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--json") {
      json = true;
    } else {
      std::cerr << "usage: emissions-http-bench [--events N] [--reps N] [--json]\n";
      return 64;
    }
  }
  std::vector<double> without;
  std::vector<double> with;
  std::vector<double> cpu_without;
  std::vector<double> cpu_with;
  Run last;
  for (int r = 0; r < reps; ++r) {
    const Run a = run(events, false);
    const Run b = run(events, true);
    if (!a.complete || !b.complete) {
      std::cerr << "emissions-http-bench: a run lost events\n";
      return 2;
    }
    without.push_back(a.events_per_second);
    with.push_back(b.events_per_second);
    cpu_without.push_back(a.cpu_ns_per_event);
    cpu_with.push_back(b.cpu_ns_per_event);
    last = b;
    std::cerr << "rep " << r + 1 << ": without " << a.events_per_second << " ev/s "
              << a.cpu_ns_per_event << " cpu ns/ev, with " << b.events_per_second << " ev/s "
              << b.cpu_ns_per_event << " cpu ns/ev; client got " << b.client_received << ", missed "
              << b.client_missed << "\n";
  }
  const double m_without = median(without);
  const double m_with = median(with);
  const double ratio = m_with / m_without;
  const double c_without = median(cpu_without);
  const double c_with = median(cpu_with);
  const std::uint64_t viewer_dropped = last.missed_or_dropped;
  if (json) {
    std::cout << "{\"events\":" << events << ",\"reps\":" << reps
              << ",\"without_server_eps\":" << m_without
              << ",\"with_server_slow_client_eps\":" << m_with << ",\"ratio\":" << ratio
              << ",\"cpu_ns_per_event_without\":" << c_without
              << ",\"cpu_ns_per_event_with\":" << c_with << ",\"cpu_ratio\":" << c_with / c_without
              << ",\"viewer_dropped_last_rep\":" << viewer_dropped
              << ",\"client_received_last_rep\":" << last.client_received
              << ",\"client_missed_last_rep\":" << last.client_missed << "}\n";
  } else {
    std::cout << "events per run          " << events << " (10 per commit, 1 no-op adapter)\n"
              << "without the server      " << m_without << " events/s (median of " << reps << ")\n"
              << "with server, slow client " << m_with << " events/s\n"
              << "ratio                   " << ratio << " (target >= 0.9)\n"
              << "CPU ns/event            " << c_without << " without, " << c_with
              << " with (ratio " << c_with / c_without << ")\n"
              << "viewer dropped (last)   " << viewer_dropped << " events (drop_oldest)\n"
              << "slow client (last)      " << last.client_received << " received, "
              << last.client_missed << " told missed\n";
  }
  return 0;
}
