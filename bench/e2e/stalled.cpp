// Peak memory with one adapter stalled for the whole run under drop_oldest.
//
// Runs in a child process (this binary re-executed with --stalled-child), so nothing the
// earlier scenarios allocated counts towards the peak. The child:
//   1. measures the bytes one event costs: RSS growth while 1 M events are held in open
//      transactions of 10 (sizeof(Event), the transaction's vector capacity, the metadata
//      map, malloc overhead), divided by the number of events;
//   2. frees them, returns the memory to the kernel and resets its peak RSS (VmHWM);
//   3. commits N events, 10 per commit, to an emitter whose only adapter blocks on a latch
//      in its first handle_events call (buffer_size B, overflow drop_oldest);
//   4. reads VmHWM, releases the latch, drains, and reports the counts, which must satisfy
//      committed == delivered + dropped exactly.
#include <fcntl.h>
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <latch>
#include <sstream>

#include "bench.hpp"
#include "emissions/ambient.hpp"
#include "emissions/emitter.hpp"

namespace emissions::bench {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

// A field of /proc/self/status in KiB ("VmRSS", "VmHWM"); -1 when absent.
long status_kib(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, field.size() + 1, field + ":") == 0) {
      std::istringstream values(line.substr(field.size() + 1));
      long kib = -1;
      values >> kib;
      return kib;
    }
  }
  return -1;
}

// Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

// Blocks in its first handle_events call until release(); counts every event it is given.
class StalledAdapter final : public Adapter {
 public:
  [[nodiscard]] std::string_view name() const override { return "stalled"; }
  Status handle_events(std::span<const Event> batch) override {
    gate_.wait();
    received_.fetch_add(batch.size(), std::memory_order_relaxed);
    return {};
  }
  void release() { gate_.count_down(); }
  [[nodiscard]] std::uint64_t received() const noexcept {
    return received_.load(std::memory_order_relaxed);
  }

 private:
  std::latch gate_{1};
  std::atomic<std::uint64_t> received_{0};
};

// Holds `events` events in open transactions of 10 and returns the RSS growth per event.
double measure_per_event_bytes(Emitter& emitter, std::uint64_t events) {
  const nlohmann::json payload = make_payload(Payload::integer);
  const EventName name = bench_event_name();
  // Constructed (and its pages touched) before the first reading: not part of an event.
  std::vector<Transaction> open(static_cast<std::size_t>(events / kEventsPerCommit));
  const long before = status_kib("VmRSS");
  for (Transaction& tx : open) {
    tx = emitter.start();
    for (std::size_t i = 0; i < kEventsPerCommit; ++i) {
      if (!tx.emit(name, payload).ok()) throw BenchFailure("stalled: emit failed while measuring");
    }
  }
  const long after = status_kib("VmRSS");
  const double held = static_cast<double>(open.size() * kEventsPerCommit);
  for (Transaction& tx : open)
    tx.terminate();
  open.clear();
  open.shrink_to_fit();
  malloc_trim(0);
  if (before < 0 || after < before || held == 0.0) return 0.0;
  return static_cast<double>(after - before) * 1024.0 / held;
}

std::uint64_t json_u64(const nlohmann::json& j, const char* key) {
  return j.at(key).get<std::uint64_t>();
}

}  // namespace

int stalled_child_main(const StalledOptions& options) {
  try {
    auto adapter = std::make_shared<StalledAdapter>();
    Config config;
    config.make_default = true;
    config.add_adapter(adapter,
                       {.buffer_size = options.buffer_size, .overflow = Overflow::drop_oldest});
    Emitter emitter(std::move(config));

    const double per_event = measure_per_event_bytes(emitter, options.measure_events);
    const bool hwm_reset = reset_peak_rss();
    const long rss_before = status_kib("VmRSS");

    const nlohmann::json payload = make_payload(Payload::integer);
    const EventName name = bench_event_name();
    std::uint64_t failed = 0;
    const std::int64_t t0 = steady_ns();
    for (std::uint64_t done = 0; done < options.events; done += kEventsPerCommit) {
      if (!emissions::start().ok()) ++failed;
      for (std::size_t i = 0; i < kEventsPerCommit; ++i) {
        if (!emissions::emit(name, payload).ok()) ++failed;
      }
      if (!emissions::commit().ok()) ++failed;
    }
    const std::int64_t t1 = steady_ns();
    const long peak = status_kib("VmHWM");

    adapter->release();
    const Status drained = emitter.drain(std::chrono::seconds(120));
    const EmitterStats stats = emitter.stats();
    const AdapterStats& lane = stats.adapters.at(0);

    nlohmann::json report{
        {"per_event_bytes", per_event},
        {"peak_rss_kib", peak},
        {"rss_before_run_kib", rss_before},
        {"hwm_reset", hwm_reset},
        {"committed", stats.committed},
        {"delivered", lane.delivered},
        {"dropped", lane.dropped},
        {"failed", lane.failed},
        {"filtered", lane.filtered},
        {"queued", lane.queued},
        {"received", adapter->received()},
        {"call_failures", failed},
        {"drained", drained.ok()},
        {"drain_status", drained.to_string()},
        {"seconds", static_cast<double>(t1 - t0) / 1e9},
    };
    std::cout << report.dump() << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "stalled child: " << e.what() << '\n';
    return 1;
  }
}

StalledResult run_stalled_in_child(const StalledOptions& options) {
  const std::vector<std::string> args = {
      "emissions-bench",   "--stalled-child",
      "--stalled-events",  std::to_string(options.events),
      "--stalled-buffer",  std::to_string(options.buffer_size),
      "--stalled-measure", std::to_string(options.measure_events),
  };
  std::vector<char*> argv;
  for (const std::string& arg : args)
    argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw BenchFailure(std::string("pipe2: ") + std::strerror(errno));
  std::cout.flush();
  std::cerr.flush();
  const pid_t pid = fork();
  if (pid < 0) throw BenchFailure(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    if (dup2(fds[1], STDOUT_FILENO) < 0) _exit(126);
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  close(fds[1]);
  std::string output;
  char chunk[4096];
  for (;;) {
    const ssize_t n = read(fds[0], chunk, sizeof chunk);
    if (n > 0) {
      output.append(chunk, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw BenchFailure("stalled child failed (status " + std::to_string(status) + ")");
  }

  nlohmann::json report;
  try {
    report = nlohmann::json::parse(output);
  } catch (const std::exception& e) {
    throw BenchFailure(std::string("stalled child printed no report: ") + e.what());
  }
  StalledResult r;
  r.per_event_bytes = report.at("per_event_bytes").get<double>();
  r.peak_rss_mib = report.at("peak_rss_kib").get<double>() / 1024.0;
  r.rss_before_run_mib = report.at("rss_before_run_kib").get<double>() / 1024.0;
  r.hwm_reset = report.at("hwm_reset").get<bool>();
  r.committed = json_u64(report, "committed");
  r.delivered = json_u64(report, "delivered");
  r.dropped = json_u64(report, "dropped");
  r.received = json_u64(report, "received");
  r.seconds = report.at("seconds").get<double>();
  r.bound_mib = (static_cast<double>(options.buffer_size) * r.per_event_bytes) / kMiB + 16.0;

  const auto fail = [&](const std::string& why) {
    throw BenchFailure("stalled: " + why + "; child report: " + report.dump());
  };
  if (!report.at("drained").get<bool>()) fail("drain failed");
  if (json_u64(report, "call_failures") != 0) fail("start/emit/commit calls failed");
  if (r.committed != options.events) fail("committed != events requested");
  if (json_u64(report, "failed") != 0 || json_u64(report, "filtered") != 0 ||
      json_u64(report, "queued") != 0) {
    fail("unexpected failed, filtered or queued events");
  }
  if (r.delivered + r.dropped != r.committed) fail("delivered + dropped != committed");
  if (r.received != r.delivered) fail("the adapter's own count != delivered");
  if (r.per_event_bytes <= 0.0) fail("per-event bytes could not be measured");
  return r;
}

}  // namespace emissions::bench
