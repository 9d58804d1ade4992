// emissions-bench: shared pieces of the end-to-end benchmark.
//
// Every figure the binary prints is measured in the same run; nothing here holds a
// number. The scenarios live in scenarios.cpp (emit, pipeline throughput and scaling,
// latency), baselines.cpp (the synchronous limit, the fair and the naive mutex pipelines),
// adapters.cpp (the counting adapters: synchronous, asynchronous acking inline or from a
// thread of their own, failing on purpose), stalled.cpp (peak RSS with a stalled adapter,
// run in a child process) and restart.cpp (a spool's backlog handed back by a new
// Emitter); main.cpp parses the flags and prints the table or the JSON object.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "emissions/adapter.hpp"
#include "emissions/clock.hpp"
#include "emissions/config.hpp"
#include "emissions/event.hpp"
#include "emissions/event_name.hpp"
#include "emissions/status.hpp"

namespace emissions::bench {

// Every producer loop commits this many events per transaction.
inline constexpr std::size_t kEventsPerCommit = 10;

// Raised when a run's counts do not add up (events lost, duplicated, or refused). The
// binary reports it and exits non-zero: a benchmark that lost events has no figure.
class BenchFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What each event carries. `integer` is the headline: copying a JSON number does not
// allocate, so the figures measure the pipeline rather than malloc. `object` is
// {"id":…, "total":…}, copied (two map nodes and a map) per emit.
enum class Payload { integer, object };

[[nodiscard]] nlohmann::json make_payload(Payload payload);
[[nodiscard]] const char* describe(Payload payload);

// The event name every scenario emits, interned once.
[[nodiscard]] EventName bench_event_name();

// CPU time (user + system) used so far by every thread of this process, in seconds.
[[nodiscard]] double process_cpu_seconds() noexcept;

// std::chrono::steady_clock in nanoseconds.
[[nodiscard]] std::int64_t steady_ns() noexcept;

// The adapter of every throughput run: counts what it is handed and does nothing else.
// One relaxed add per call, on its own cache line. Thread-safe.
class NoOpAdapter final : public Adapter {
 public:
  explicit NoOpAdapter(std::string name) : name_(std::move(name)) {}
  [[nodiscard]] std::string_view name() const override { return name_; }
  Status handle_events(std::span<const Event> batch) override {
    count_.fetch_add(batch.size(), std::memory_order_relaxed);
    return {};
  }
  [[nodiscard]] std::uint64_t count() const noexcept {
    return count_.load(std::memory_order_relaxed);
  }

 private:
  std::string name_;
  alignas(64) std::atomic<std::uint64_t> count_{0};
};

// `count` no-op adapters named noop-0, noop-1, ...
[[nodiscard]] std::vector<std::shared_ptr<NoOpAdapter>> make_adapters(std::size_t count);

// ---- adapters.cpp ----------------------------------------------------------------------

// What the adapters of a pipeline run are. Each counts the events it accepted.
enum class AdapterKind {
  sync,          // NoOpAdapter
  async_inline,  // an AsyncAdapter that acks the whole Delivery inside deliver()
  // An AsyncAdapter in the style of a client library's delivery reports: deliver() pushes
  // the Delivery into a queue (mutex + condition variable + deque) that one thread the
  // adapter owns drains, acking each.
  async_thread,
  // Synchronous; fails every 10th batch it has not failed before with `unavailable`,
  // accepts everything else (a retried batch is recognised by its first event's id).
  sync_flaky,
};

[[nodiscard]] const char* describe(AdapterKind kind);

// One adapter of a run and its counters (all thread-safe; read them after a drain).
struct BenchAdapter {
  std::shared_ptr<Adapter> adapter;
  std::function<std::uint64_t()> accepted;  // events acked or returned ok
  std::function<std::uint64_t()> injected;  // events failed on purpose (sync_flaky only)
};

// `count` adapters of `kind` named <kind>-0, <kind>-1, ...
[[nodiscard]] std::vector<BenchAdapter> make_bench_adapters(AdapterKind kind, std::size_t count);

// A Clock that runs `speedup` times faster than the steady clock (wake_time scales back),
// so that retry delays, which a RetryPolicy bounds below by 1 ms, take `speedup` times
// less real time.
class FastClock final : public Clock {
 public:
  explicit FastClock(double speedup);
  [[nodiscard]] time_point now() const noexcept override;
  [[nodiscard]] time_point wake_time(time_point deadline) const noexcept override;

 private:
  time_point origin_;
  double speedup_;
};

// The shape of one throughput run.
struct Workload {
  std::uint64_t events = 0;   // timed events, all producers together
  std::size_t adapters = 1;   // counting adapters, each receives every event
  std::size_t producers = 1;  // producer threads, each with its own loop
  Payload payload = Payload::integer;
  // The adapters' idle_spin; unset: the library's default.
  std::optional<std::chrono::microseconds> idle_spin = std::nullopt;
  AdapterKind kind = AdapterKind::sync;
  // PipelineOptions::retry; unset: the library's default.
  std::optional<RetryPolicy> retry = std::nullopt;
  // AdapterOptions::max_in_flight (asynchronous kinds only); unset: the library's default.
  std::optional<std::size_t> max_in_flight = std::nullopt;
  std::shared_ptr<Clock> clock = nullptr;  // Config::clock; null: the steady clock
  // Config::spool with this durability, in a fresh temporary directory (removed after the
  // run); unset: no spool.
  std::optional<Durability> spool = std::nullopt;
  // Each producer times its timed commit() calls (RunResult::commit_*).
  bool time_commits = false;
};

// Events per producer, rounded down to whole commits.
[[nodiscard]] std::uint64_t events_per_producer(const Workload& w);

struct RunResult {
  std::uint64_t events = 0;         // timed events committed (and delivered to every adapter)
  double seconds = 0.0;             // first timed commit until everything was delivered
  double cpu_seconds = 0.0;         // CPU time of the whole process (all threads) in that window
  std::size_t max_queue_depth = 0;  // fair and naive pipelines only: deepest queue, events
  // Workload::time_commits: the wall time of each timed commit() call, over every producer
  // (nearest-rank percentiles, microseconds).
  double commit_p50_us = 0.0;
  double commit_p99_us = 0.0;
  std::size_t commit_samples = 0;
  // CPU time per event: robust to a loaded machine where wall time is not.
  [[nodiscard]] double cpu_ns_per_event() const {
    return events > 0 ? cpu_seconds * 1e9 / static_cast<double>(events) : 0.0;
  }
  [[nodiscard]] double eps() const {
    return seconds > 0.0 ? static_cast<double>(events) / seconds : 0.0;
  }
};

// Warm-up events per producer before each timed run (not counted).
inline constexpr std::uint64_t kWarmupEvents = 20'000;

// ---- scenarios.cpp ---------------------------------------------------------------------

// The real pipeline: an Emitter with `w.adapters` adapters of `w.kind` and default options
// (but for the Workload's overrides), `w.producers` threads each running start(),
// 10 × emit(), commit() through the ambient API. Throws BenchFailure unless every adapter
// accepted exactly every event once, and the emitter counted every event delivered, none
// failed or dropped, and exactly the injected failures retried.
[[nodiscard]] RunResult run_pipeline(const Workload& w);

struct EmitResult {
  double median_ns = 0.0;  // per event
  double p10_ns = 0.0;
  double p90_ns = 0.0;
  std::size_t samples = 0;
  std::size_t per_sample = 0;  // emits timed together in one sample
};

// Median over `samples` samples of (time of `per_sample` emits into one open transaction)
// / per_sample; the transaction is started before and terminated after the timed region.
// reserved = false: a fresh explicit Transaction per sample, so its buffer grows from
// empty inside the timed region. reserved = true: the thread's ambient transaction, whose
// buffer keeps its capacity from the previous sample (no reallocation timed).
[[nodiscard]] EmitResult measure_emit(Payload payload, bool reserved, std::size_t samples,
                                      std::size_t per_sample);

// How commits are spaced in a latency run.
enum class Arrivals {
  periodic,  // one commit every period, on a fixed schedule
  poisson,   // exponential gaps with the same mean (a fixed seed): independent requests
};

[[nodiscard]] const char* describe(Arrivals arrivals);

// One latency run: one producer thread commits `events_per_commit` events at
// `commits_per_s` on a steady-clock schedule to one adapter that records latencies.
struct LatencySetup {
  std::size_t events_per_commit = 10;
  double commits_per_s = 10'000.0;
  Arrivals arrivals = Arrivals::periodic;
  std::size_t commits = 20'000;        // measured commits
  std::size_t warmup_commits = 2'000;  // not measured
  // The adapter's idle_spin; unset: the library's default.
  std::optional<std::chrono::microseconds> idle_spin = std::nullopt;
};

struct LatencyResult {
  std::size_t events_per_commit = 0;
  double period_us = 0.0;    // mean time between commits
  double offered_eps = 0.0;  // measured rate the producer achieved
  std::size_t samples = 0;   // events measured (after the warm-up)
  double p50_us = 0.0;
  double p99_us = 0.0;
  double p999_us = 0.0;
  double max_us = 0.0;
  // CPU time of the adapter's consumer thread over the measured window (from just before the
  // first measured commit until drain() returned) / that window's wall time.
  double consumer_cores = 0.0;
  // Times the consumer thread blocked (parked) over that window, per measured commit; -1
  // when /proc could not be read.
  double consumer_sleeps_per_commit = 0.0;
  // Wall time the producer spends per commit, from just before its emits until commit()
  // returned (what the committing thread pays, wake-ups of parked consumers included).
  double producer_p50_us = 0.0;
  double producer_p99_us = 0.0;
};

// The run described by `setup`: the adapter records (now - commit time) per event and the
// CPU time of the thread that calls it.
[[nodiscard]] LatencyResult measure_latency(const LatencySetup& setup);

// ---- baselines.cpp ---------------------------------------------------------------------

// The limit: the same producer loop with the adapters called synchronously inside
// "commit" on the producer's thread. Single producer only.
[[nodiscard]] RunResult run_limit(const Workload& w);

// The fair pipeline: one shared immutable batch per commit; per adapter a mutex +
// condition variable + std::deque of batch pointers and one consumer thread, which hands
// spans of at most max_demand events to handle_events. Single producer only.
[[nodiscard]] RunResult run_fair(const Workload& w);

// The naive pipeline: per adapter a mutex + condition variable + std::deque of Event copies
// and one consumer thread. The producer locks, pushes a copy and notifies per event and
// adapter. Single producer only.
[[nodiscard]] RunResult run_naive(const Workload& w);

// ---- stalled.cpp -----------------------------------------------------------------------

struct StalledOptions {
  std::uint64_t events = 10'000'000;         // committed during the stall, 10 per commit
  std::size_t buffer_size = 10'000;          // the stalled adapter's queue (drop_oldest)
  std::uint64_t measure_events = 1'000'000;  // held open to measure bytes per event
};

struct StalledResult {
  double per_event_bytes = 0.0;  // measured RSS growth per event held in transactions
  double peak_rss_mib = 0.0;     // VmHWM of the child during the stalled run
  double rss_before_run_mib = 0.0;
  double bound_mib = 0.0;  // buffer_size × per_event_bytes + 16 MiB
  bool hwm_reset = false;  // whether the peak could be reset after the measurement
  std::uint64_t committed = 0;
  std::uint64_t delivered = 0;
  std::uint64_t dropped = 0;
  std::uint64_t received = 0;  // events the stalled adapter itself counted
  double seconds = 0.0;        // the stalled run's commit loop
};

// Re-executes this binary with --stalled-child and reads its one-line JSON report.
// Throws BenchFailure when the child fails or its counts do not add up exactly.
[[nodiscard]] StalledResult run_stalled_in_child(const StalledOptions& options);

// The child's entry point: runs the scenario, prints one JSON line on stdout.
int stalled_child_main(const StalledOptions& options);

// ---- restart.cpp -----------------------------------------------------------------------

struct RestartOptions {
  // The backlog: commits go on until the spool's segment files pass this size.
  std::uint64_t backlog_bytes = 1ull << 30;
};

struct RestartResult {
  std::uint64_t events = 0;        // the backlog, committed 10 per commit
  double fill_seconds = 0.0;       // committing it
  std::uint64_t frame_bytes = 0;   // bytes of the segments up to their last frame
  std::uint64_t file_bytes = 0;    // the segment files' sizes (preallocated)
  std::uint64_t segments = 0;      // segment files
  double first_event_warm_ms = 0;  // constructor start -> first event, page cache as left
  double first_event_cold_ms = 0;  // the same after the segments left the page cache
  double open_ms = 0.0;            // the cold Emitter's constructor
  double redeliver_seconds = 0.0;  // cold constructor start -> drain() returned
  std::uint64_t bytes_after = 0;   // spool_bytes once the backlog was delivered
  std::uint64_t segments_after = 0;
  std::uint64_t written_bytes = 0;  // /proc/self/io write_bytes over the whole scenario
  [[nodiscard]] double bytes_per_event() const {
    return events > 0 ? static_cast<double>(frame_bytes) / static_cast<double>(events) : 0.0;
  }
  [[nodiscard]] double write_amplification() const {
    return frame_bytes > 0 ? static_cast<double>(written_bytes) / static_cast<double>(frame_bytes)
                           : 0.0;
  }
  [[nodiscard]] double redeliver_eps() const {
    return redeliver_seconds > 0.0 ? static_cast<double>(events) / redeliver_seconds : 0.0;
  }
};

// Builds a backlog in a spool (an Emitter whose adapter settles nothing, shut down with a
// 100 ms timeout), then measures how soon new Emitters on the directory hand it back (see
// restart.cpp). Throws BenchFailure unless every event of the backlog is delivered exactly
// once, in order.
[[nodiscard]] RestartResult run_spool_restart(const RestartOptions& options);

// What this machine's disk allows Durability::machine (disk_bound.cpp): a loop that writes
// `bytes_per_sync` into a memory-mapped file in the temporary directory (where the spool
// runs live) and fdatasyncs it, for `duration`. No pipeline: the most syncs per second, and
// their latency, that any group commit on this disk can get. With `busy_cores`, threads
// spin on the other cores meanwhile: on a virtual machine an idle virtual CPU may see the
// disk's completion only at its next timer tick (4 ms here), and in the machine run the
// cores are busy.
struct DiskSyncResult {
  std::uint64_t syncs = 0;
  double syncs_per_second = 0.0;
  double p50_us = 0.0;
  double p99_us = 0.0;
};
[[nodiscard]] DiskSyncResult probe_disk_sync(std::chrono::milliseconds duration,
                                             std::size_t bytes_per_sync, bool busy_cores);

// ---- helpers ---------------------------------------------------------------------------

// The nearest-rank `q` quantile of `sorted` (ascending); 0 for none.
[[nodiscard]] double percentile(const std::vector<std::int64_t>& sorted, double q);

// A fresh temporary directory "emissions-bench-<prefix>-XXXXXX", removed with its files.
struct TempDir {
  explicit TempDir(std::string_view prefix);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::filesystem::path path;
};

// Median of `values` (by copy); 0 for none.
[[nodiscard]] double median(std::vector<double> values);

}  // namespace emissions::bench
