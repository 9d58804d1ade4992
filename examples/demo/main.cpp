// emissions-demo: an order service that emits domain events inside transactions, and the
// pipeline that fans them out, end to end.
//
//   $ emissions-demo                      # 4 request threads, 500,000 events, a few seconds
//   $ emissions-demo --threads 8 --adapters 6 --slow --out /tmp/orders.jsonl
//   $ emissions-demo --events 20000 --verify   # a quick smoke test: every line is parsed
//   $ emissions-demo --slow --spool /tmp/spool   # the slow adapter's backlog waits on disk
//
// The events go to emissions-demo.jsonl in the temporary directory unless --out says
// otherwise (scripts/demo.sh puts them in build/release/).
//
// Request threads (simulation.cpp) place orders with the ambient API; a share fail and
// terminate their transaction. Committed events go to a JSON-lines file, a summary and N
// no-op replicas (demo_adapters.hpp), optionally a slow archive with a drop_oldest queue.
// A progress bar runs on stderr (progress.cpp); the table and the consistency checks that
// make the demo a smoke test are in report.cpp. With --spool DIR, commits go to a durable
// spool in DIR: what an earlier run left there is delivered before the first order, and a
// second progress line shows the spool (spool_backlog.hpp says how its figures are
// derived). Ctrl-C stops the orders early and still prints the summary (interrupt.cpp).
// Exit status: 0, 1 when a check fails or the run cannot start (a bad --out or --spool),
// 2 for a bad command line, 128 + the signal's number (130 for SIGINT) when stopped by a
// signal.
#include <atomic>
#include <chrono>
#include <exception>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "demo_adapters.hpp"
#include "emissions/adapters/json_lines.hpp"
#include "emissions/config.hpp"
#include "emissions/emitter.hpp"
#include "emissions/spool.hpp"
#include "emissions/status.hpp"
#include "emissions/telemetry.hpp"
#ifdef EMISSIONS_DEMO_HTTP
#include <condition_variable>
#include <mutex>

#include "emissions/http/server.hpp"
#endif
#include "interrupt.hpp"
#include "latency.hpp"
#include "options.hpp"
#include "output_file.hpp"
#include "progress.hpp"
#include "report.hpp"
#include "simulation.hpp"
#include "spool_backlog.hpp"

namespace {

using Clock = std::chrono::steady_clock;

// The slow archive: each event costs it this long (it keeps up with at most 20,000 events/s),
// and its queue holds only this many events.
constexpr std::chrono::microseconds kSlowEventTime{50};
constexpr std::size_t kSlowQueueEvents = 1'000;

// How long the start of the run (an earlier run's backlog in the spool) and its end wait
// for adapters before calling it a failure.
constexpr std::chrono::seconds kDrainTimeout{60};
constexpr std::chrono::seconds kShutdownTimeout{10};

// Counts what the library reports through telemetry while it is attached. Handlers run on
// committing threads (drops) and consumer threads (errors), hence the atomics.
class TelemetryTap {
 public:
  TelemetryTap() {
    const emissions::Status s = emissions::telemetry::attach_many(
        kId, {{"emissions", "event", "dropped"}, {"emissions", "adapter", "error"}},
        [this](const emissions::telemetry::EventName& event, const nlohmann::json& measurements,
               const nlohmann::json& metadata) { on_event(event, measurements, metadata); });
    if (!s.ok()) throw std::runtime_error("cannot attach telemetry: " + s.to_string());
  }
  // Detach only once nothing can report any more: declare the tap before the Emitter.
  ~TelemetryTap() { (void)emissions::telemetry::detach(kId); }
  TelemetryTap(const TelemetryTap&) = delete;
  TelemetryTap& operator=(const TelemetryTap&) = delete;

  std::atomic<std::uint64_t> dropped{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> error_events{0};

 private:
  static constexpr const char* kId = "emissions-demo";

  void on_event(const emissions::telemetry::EventName& event, const nlohmann::json& measurements,
                const nlohmann::json& metadata) {
    if (event.size() == 3 && event[1] == "event") {
      dropped.fetch_add(measurements.value("count", std::uint64_t{1}), std::memory_order_relaxed);
    } else {
      errors.fetch_add(1, std::memory_order_relaxed);
      error_events.fetch_add(metadata.value("event_count", std::uint64_t{0}),
                             std::memory_order_relaxed);
    }
  }
};

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

int run(const demo::Options& options) {
  // First, so that every thread started below inherits its signal mask (and last to go).
  demo::InterruptWatcher interrupt;
  TelemetryTap telemetry;

  const demo::SimulationOptions sim_options{.events = options.events,
                                            .threads = options.threads,
                                            .seed = options.seed,
                                            .fail_rate = options.fail_rate};
  auto commits = std::make_shared<demo::CommitLog>(demo::Simulation::slots_needed(sim_options));

  // The adapters, each wrapped so that its commit-to-delivery latency is measured.
  // JsonLines opens (and creates) the file now: a bad --out fails here, before any work.
  auto file = std::make_shared<emissions::adapters::JsonLines>(options.out);
  if (const std::string error = demo::truncate_output(options.out); !error.empty()) {
    std::cerr << "emissions-demo: " << error << '\n';
    return 1;
  }
  auto summary = std::make_shared<demo::Summary>();
  std::vector<std::shared_ptr<demo::Measured>> measured{
      std::make_shared<demo::Measured>(file, commits),
      std::make_shared<demo::Measured>(summary, commits)};
  for (std::size_t i = 1; i <= options.replicas; ++i) {
    measured.push_back(std::make_shared<demo::Measured>(
        std::make_shared<demo::Replica>(static_cast<int>(i)), commits));
  }

  emissions::Config config;  // make_default: the ambient emissions::start() uses this emitter
  for (const auto& adapter : measured)
    config.add_adapter(adapter);  // the pipeline defaults: block when a queue is full
  if (options.slow) {
    measured.push_back(std::make_shared<demo::Measured>(
        std::make_shared<demo::SlowArchive>(kSlowEventTime), commits));
    config.add_adapter(measured.back(), {.buffer_size = kSlowQueueEvents,
                                         .overflow = emissions::Overflow::drop_oldest});
  }
  if (!options.spool.empty()) {
    config.spool = emissions::SpoolOptions{.dir = options.spool, .durability = options.durability};
  }
#ifdef EMISSIONS_DEMO_HTTP
  // --serve: the viewer's adapter must be in the Config before the Emitter exists.
  std::shared_ptr<emissions::http::Server> server;
  if (options.serve) server = emissions::http::watch(config, {.port = *options.serve});
#else
  if (options.serve) {
    std::cerr << "emissions-demo: --serve needs emissions::http, which this build lacks\n";
    return 2;
  }
#endif
  const std::optional<emissions::SpoolOptions> spool_options = config.spool;
  const std::size_t adapter_count = config.adapters.size();
  // With a spool, a bad DIR or one another run holds is a ConfigError here (main prints it).
  emissions::Emitter emitter(std::move(config));
#ifdef EMISSIONS_DEMO_HTTP
  // Stops the server before the emitter goes, on every way out (it reads the emitter).
  struct StopServer {
    std::shared_ptr<emissions::http::Server>& server;
    ~StopServer() {
      if (server) (void)server->stop();
    }
  } stop_server{server};
  if (server) {
    if (const emissions::Status s = server->start(emitter); !s.ok()) {
      std::cerr << "emissions-demo: cannot serve the viewer: " << s.to_string() << '\n';
      return 1;
    }
    std::cout << "live viewer: http://127.0.0.1:" << server->port() << "/  (metrics: /metrics)\n";
  }
#endif

  const std::string out_path = std::filesystem::absolute(options.out).string();
  std::cout << "emissions-demo: " << options.threads << " request threads, "
            << demo::with_commas(options.events) << " events, seed " << options.seed << ", "
            << options.fail_rate * 100 << "% of orders failing, " << adapter_count << " adapters\n"
            << "events go to " << out_path << '\n';
  std::string spool_dir;
  if (spool_options) {
    spool_dir = std::filesystem::absolute(spool_options->dir).string();
    std::cout << "spool in " << spool_dir << " (durability "
              << (spool_options->durability == emissions::Durability::machine ? "machine"
                                                                              : "process")
              << ")\n";
  }
  std::cout << '\n' << std::flush;

  demo::Simulation simulation(sim_options, commits);
  std::vector<std::string> problems;
  std::atomic<demo::Phase> phase{spool_options ? demo::Phase::recovering : demo::Phase::emitting};
  // Set once an earlier run's backlog is delivered, before `phase` leaves recovering
  // (release); the progress bar reads it only after seeing that (acquire).
  std::optional<demo::SpoolBacklog> backlog;

  Clock::time_point started;
  Clock::time_point emitted_at;
  Clock::time_point drained_at;
  {
    demo::ProgressBar bar([&] {
      const emissions::EmitterStats stats = emitter.stats();
      const demo::Phase now = phase.load(std::memory_order_acquire);
      demo::ProgressSample sample{.emitted = simulation.emitted(),
                                  .target = options.events,
                                  .phase = now,
                                  .interrupted = interrupt.signal() != 0};
      for (const emissions::AdapterStats& a : stats.adapters)
        sample.queued += a.queued;
      if (spool_options) {
        sample.spool = demo::SpoolSample{.bytes = stats.spool_bytes,
                                         .max_bytes = spool_options->max_bytes,
                                         .adapters = now == demo::Phase::recovering
                                                         ? demo::handled_per_adapter(stats)
                                                         : backlog->behind(stats)};
      }
      return sample;
    });
    // What an earlier run left in the spool is delivered first, on its own, so that each
    // adapter's backlog can be told from the stats afterwards (spool_backlog.hpp). A first
    // Ctrl-C lets it finish (it was committed) and then places no orders.
    bool may_place_orders = true;
    if (spool_options) {
      if (const emissions::Status s = emitter.drain(kDrainTimeout); s.ok()) {
        backlog.emplace(emitter.stats());
      } else {
        problems.push_back("delivering what an earlier run left in the spool: " + s.to_string());
        may_place_orders = false;  // the phase stays `recovering`: that is what goes on
      }
    }
    started = Clock::now();
    emitted_at = started;
    drained_at = started;
    if (may_place_orders) {
      phase.store(demo::Phase::emitting, std::memory_order_release);
      simulation.run(interrupt.stop_token());
      emitted_at = Clock::now();
      phase.store(demo::Phase::draining, std::memory_order_release);
      if (const emissions::Status s = emitter.drain(kDrainTimeout); !s.ok()) {
        problems.push_back("drain: " + s.to_string());
      }
      drained_at = Clock::now();
    }
    bar.stop();
  }
  // A signal from here on ends the serving below, not the run.
  const int interrupted_by = interrupt.signal();
#ifdef EMISSIONS_DEMO_HTTP
  if (server) {
    std::cout << "the run is over; the viewer still serves http://127.0.0.1:" << server->port()
              << "/ until Ctrl-C\n"
              << std::flush;
    std::mutex mutex;
    std::condition_variable_any stopped;
    std::unique_lock lock(mutex);
    (void)stopped.wait(lock, interrupt.stop_token(), [] { return false; });
  }
#endif
  // Terminates the adapters (JsonLines closes its file) and joins their threads: from here
  // on the adapters' own counters and histograms can be read.
  const emissions::Status shut_down = emitter.shutdown(kShutdownTimeout);
  if (!shut_down.ok()) problems.push_back("shutdown: " + shut_down.to_string());

  demo::RunReport report;
  report.options = options;
  report.interrupted_by = interrupted_by;
  report.orders = simulation.totals();
  report.stats = emitter.stats();
  // An adapter still stuck in a call after a failed shutdown may be writing these: skip them.
  if (shut_down.ok()) {
    for (const auto& adapter : measured)
      report.latency.push_back(&adapter->latency());
    report.summary_counts = summary->counts();
    report.summary_revenue_cents = summary->revenue_cents();
  }
  report.telemetry_dropped = telemetry.dropped.load();
  report.telemetry_errors = telemetry.errors.load();
  report.telemetry_error_events = telemetry.error_events.load();
  report.emit_seconds = seconds_between(started, emitted_at);
  report.total_seconds = seconds_between(started, drained_at);
  report.out_path = out_path;
  report.output = demo::inspect_output(options.out, options.verify);
  report.problems = std::move(problems);
  if (spool_options) {
    demo::SpoolReport spool{.dir = spool_dir, .options = *spool_options};
    if (backlog) {
      spool.recovery_complete = true;
      spool.recovered = backlog->recovered();
      spool.unsettled = backlog->unsettled(report.stats);
    } else {
      // No order was placed: every event the adapters settled was the earlier run's.
      for (const emissions::AdapterStats& a : report.stats.adapters)
        spool.recovered.push_back({a.name, a.delivered + a.failed + a.filtered});
    }
    report.spool = std::move(spool);
  }

  const std::vector<std::string> failures = demo::check_run(report);
  demo::print_report(std::cout, report, failures);
  std::cout.flush();
  // Also on stderr, for a run whose stdout goes to a file.
  if (!failures.empty()) std::cerr << "emissions-demo: " << failures.size() << " check(s) failed\n";
  if (report.interrupted_by != 0) return 128 + report.interrupted_by;
  return failures.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const demo::ParseResult parsed = demo::parse_options(
      std::span<const char* const>(argv + 1, static_cast<std::size_t>(argc > 0 ? argc - 1 : 0)),
      std::cout, std::cerr);
  if (!parsed.options) return parsed.exit_code;
  try {
    return run(*parsed.options);
  } catch (const std::exception& e) {
    // ConfigError from the Emitter (a bad --spool DIR, or one another run holds) or
    // JsonLines (a bad --out), or running out of memory.
    std::cerr << "emissions-demo: " << e.what() << '\n';
    return 1;
  }
}
