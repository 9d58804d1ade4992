// The pipeline's own scenarios: emit cost, commit-to-delivery throughput (and the scaling
// table, which is the same run with more producers and adapters), and latency under a
// paced load.
#include <stdlib.h>

#include <pthread.h>
#include <time.h>
#include <unistd.h>
#include <filesystem>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <latch>
#include <random>
#include <thread>

#include "bench.hpp"
#include "emissions/ambient.hpp"
#include "emissions/emitter.hpp"

namespace emissions::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kDrainTimeout = std::chrono::seconds(120);

// start(), 10 × emit(), commit() through the ambient API (the per-thread transaction,
// which reuses its emitter reference: no shared reference count per request). Returns
// the number of calls that did not return ok. With `commit_ns`, each commit() call's wall
// time is appended to it.
std::uint64_t produce(std::uint64_t events, const nlohmann::json& payload,
                      std::vector<std::int64_t>* commit_ns = nullptr) {
  const EventName name = bench_event_name();
  std::uint64_t failed = 0;
  for (std::uint64_t done = 0; done < events; done += kEventsPerCommit) {
    if (!emissions::start().ok()) {
      ++failed;
      continue;
    }
    for (std::size_t i = 0; i < kEventsPerCommit; ++i) {
      if (!emissions::emit(name, payload).ok()) ++failed;
    }
    const std::int64_t before = commit_ns != nullptr ? steady_ns() : 0;
    const Status committed = emissions::commit();
    if (commit_ns != nullptr) commit_ns->push_back(steady_ns() - before);
    if (!committed.ok()) {
      ++failed;
      emissions::terminate();
    }
  }
  return failed;
}

void check_pipeline(const char* what, const Emitter& emitter,
                    const std::vector<BenchAdapter>& adapters,
                    const std::vector<std::uint64_t>& before, std::uint64_t expected,
                    std::uint64_t expected_committed) {
  const EmitterStats stats = emitter.stats();
  if (stats.committed != expected_committed) {
    throw BenchFailure(std::string(what) + ": emitter committed " +
                       std::to_string(stats.committed) + " events, expected " +
                       std::to_string(expected_committed));
  }
  for (std::size_t i = 0; i < adapters.size(); ++i) {
    const std::uint64_t got = adapters[i].accepted() - before[i];
    // Every injected failure is one event failed once: retried exactly once.
    const std::uint64_t injected = adapters[i].injected();
    const AdapterStats& s = stats.adapters[i];
    if (got != expected || s.dropped != 0 || s.failed != 0 || s.filtered != 0 ||
        s.delivered != expected_committed || s.retried != injected) {
      throw BenchFailure(
          std::string(what) + ": adapter " + s.name + " accepted " + std::to_string(got) +
          " timed events (expected " + std::to_string(expected) + "); stats delivered " +
          std::to_string(s.delivered) + " (expected " + std::to_string(expected_committed) +
          "), dropped " + std::to_string(s.dropped) + ", failed " + std::to_string(s.failed) +
          ", retried " + std::to_string(s.retried) + " (expected " + std::to_string(injected) +
          ")");
    }
  }
}

// Records (delivery time - commit time) per event; the commit time travels as the
// payload. Written only by the consumer thread; read after drain(). It also publishes the
// CPU clock of the thread that calls it (the adapter's consumer), so the producer can read
// that thread's CPU time while it runs.
class LatencyAdapter final : public Adapter {
 public:
  explicit LatencyAdapter(std::size_t capacity) { samples_.reserve(capacity); }
  [[nodiscard]] std::string_view name() const override { return "latency"; }
  Status handle_events(std::span<const Event> batch) override {
    const std::int64_t now = steady_ns();  // the whole batch arrives at this moment
    if (!clock_known_.load(std::memory_order_relaxed)) {
      tid_ = gettid();
      if (pthread_getcpuclockid(pthread_self(), &clock_) == 0) {
        clock_known_.store(true, std::memory_order_release);
      }
    }
    for (const Event& event : batch) {
      if (samples_.size() < samples_.capacity())
        samples_.push_back(now - event.payload.get<std::int64_t>());
    }
    return {};
  }
  [[nodiscard]] const std::vector<std::int64_t>& samples() const noexcept { return samples_; }
  // Whether the consumer thread's CPU clock is known (it has been called at least once).
  [[nodiscard]] bool clock_known() const noexcept {
    return clock_known_.load(std::memory_order_acquire);
  }
  // CPU time (user + system) the consumer thread has used so far, in seconds; the thread
  // must still be running (it is until the Emitter is destroyed) and clock_known().
  [[nodiscard]] double consumer_cpu_seconds() const {
    timespec ts{};
    if (clock_gettime(clock_, &ts) != 0) throw BenchFailure("latency: consumer CPU clock failed");
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
  }
  // How many times the consumer thread has blocked so far (parked on its queue, or anything
  // else that sleeps): voluntary_ctxt_switches in /proc/self/task/<tid>/status. -1 when it
  // cannot be read.
  [[nodiscard]] long consumer_sleeps() const {
    std::ifstream in("/proc/self/task/" + std::to_string(tid_) + "/status");
    const std::string key = "voluntary_ctxt_switches:";
    for (std::string line; std::getline(in, line);) {
      if (line.compare(0, key.size(), key) == 0) return std::stol(line.substr(key.size()));
    }
    return -1;
  }

 private:
  std::vector<std::int64_t> samples_;
  pid_t tid_ = 0;
  clockid_t clock_{};
  std::atomic<bool> clock_known_{false};
};

// A spin-wait hint to the CPU (frees the sibling hyper-thread's resources).
inline void pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

// Waits for `deadline` (steady ns): yields while it is more than 2 µs away, so a producer
// sharing a core with the consumer leaves it the CPU, then spins with a pause. Bounded
// by the schedule.
void wait_until(std::int64_t deadline) {
  for (;;) {
    const std::int64_t now = steady_ns();
    if (now >= deadline) return;
    if (deadline - now > 2'000) {
      std::this_thread::yield();
    } else {
      pause();
    }
  }
}

}  // namespace

RunResult run_pipeline(const Workload& w) {
  const auto adapters = make_bench_adapters(w.kind, w.adapters);
  Config config;
  config.make_default = true;  // the producers use the ambient API
  if (w.idle_spin) config.pipeline.idle_spin = *w.idle_spin;
  if (w.retry) config.pipeline.retry = *w.retry;
  config.clock = w.clock;
  for (const auto& adapter : adapters)
    config.add_adapter(adapter.adapter, {.max_in_flight = w.max_in_flight});
  // The spool's directory: made before the Emitter, removed after it (declared first).
  struct SpoolDir {
    std::filesystem::path path;
    ~SpoolDir() {
      std::error_code ignored;
      if (!path.empty()) std::filesystem::remove_all(path, ignored);
    }
  } spool_dir;
  if (w.spool) {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "emissions-bench-spool-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw BenchFailure("mkdtemp failed");
    spool_dir.path = pattern;
    config.spool = SpoolOptions{.dir = spool_dir.path, .durability = *w.spool};
  }
  Emitter emitter(std::move(config));

  const nlohmann::json payload = make_payload(w.payload);
  const std::uint64_t per_producer = events_per_producer(w);
  const std::size_t producers = std::max<std::size_t>(w.producers, 1);
  std::latch warmed(static_cast<std::ptrdiff_t>(producers));
  std::latch go(1);
  std::atomic<std::uint64_t> failures{0};
  // Per producer, its timed commits' wall times (Workload::time_commits), reserved ahead.
  std::vector<std::vector<std::int64_t>> commit_ns(producers);
  std::vector<std::jthread> threads;
  threads.reserve(producers);
  for (std::size_t p = 0; p < producers; ++p) {
    if (w.time_commits) commit_ns[p].reserve(per_producer / kEventsPerCommit);
    threads.emplace_back([&, p] {
      std::uint64_t failed = produce(kWarmupEvents, payload);
      warmed.count_down();
      go.wait();
      failed += produce(per_producer, payload, w.time_commits ? &commit_ns[p] : nullptr);
      failures.fetch_add(failed, std::memory_order_relaxed);
    });
  }
  warmed.wait();
  const Status warm_drained = emitter.drain(kDrainTimeout);
  std::vector<std::uint64_t> before;
  for (const auto& adapter : adapters)
    before.push_back(adapter.accepted());

  const double cpu_start = process_cpu_seconds();
  const auto start = Clock::now();
  go.count_down();
  for (auto& thread : threads)
    thread.join();
  const Status drained = emitter.drain(kDrainTimeout);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const double cpu_seconds = process_cpu_seconds() - cpu_start;

  if (!warm_drained.ok() || !drained.ok()) {
    throw BenchFailure("pipeline: drain failed: " +
                       (warm_drained.ok() ? drained : warm_drained).to_string());
  }
  if (const std::uint64_t failed = failures.load(); failed != 0) {
    throw BenchFailure("pipeline: " + std::to_string(failed) + " start/emit/commit calls failed");
  }
  const std::uint64_t events = per_producer * producers;
  check_pipeline("pipeline", emitter, adapters, before, events, events + kWarmupEvents * producers);
  RunResult result{events, seconds, cpu_seconds};
  if (w.time_commits) {
    std::vector<std::int64_t> all;
    for (const auto& one : commit_ns)
      all.insert(all.end(), one.begin(), one.end());
    std::sort(all.begin(), all.end());
    result.commit_p50_us = percentile(all, 0.50) / 1e3;
    result.commit_p99_us = percentile(all, 0.99) / 1e3;
    result.commit_samples = all.size();
  }
  return result;
}

EmitResult measure_emit(Payload payload_kind, bool reserved, std::size_t samples,
                        std::size_t per_sample) {
  Config config;
  config.make_default = reserved;  // the reserved variant uses the ambient transaction
  config.add_adapter(std::make_shared<NoOpAdapter>("noop-0"));
  Emitter emitter(std::move(config));
  const nlohmann::json payload = make_payload(payload_kind);
  const EventName name = bench_event_name();
  constexpr std::size_t kWarmupSamples = 50;

  std::vector<double> per_event;
  per_event.reserve(samples);
  std::uint64_t failed = 0;
  for (std::size_t s = 0; s < samples + kWarmupSamples; ++s) {
    Transaction fresh;
    if (reserved) {
      if (!emissions::start().ok()) ++failed;
    } else {
      fresh = emitter.start();
    }
    Transaction& tx = reserved ? emissions::current() : fresh;
    const std::int64_t t0 = steady_ns();
    for (std::size_t i = 0; i < per_sample; ++i) {
      if (!tx.emit(name, payload).ok()) ++failed;
    }
    const std::int64_t t1 = steady_ns();
    if (tx.size() != per_sample) ++failed;
    tx.terminate();  // outside the timed region: destroying the events is not emit's cost
    if (s >= kWarmupSamples) {
      per_event.push_back(static_cast<double>(t1 - t0) / static_cast<double>(per_sample));
    }
  }
  if (failed != 0) throw BenchFailure("emit: " + std::to_string(failed) + " emits failed");
  std::sort(per_event.begin(), per_event.end());
  const auto at = [&](double q) {
    return per_event[std::min(per_event.size() - 1,
                              static_cast<std::size_t>(q * static_cast<double>(per_event.size())))];
  };
  return EmitResult{median(per_event), at(0.10), at(0.90), per_event.size(), per_sample};
}

LatencyResult measure_latency(const LatencySetup& setup) {
  const std::size_t per_commit = setup.events_per_commit;
  const std::size_t commits = setup.warmup_commits + setup.commits;
  auto adapter = std::make_shared<LatencyAdapter>(commits * per_commit);
  Config config;
  config.make_default = true;
  if (setup.idle_spin) config.pipeline.idle_spin = *setup.idle_spin;
  config.add_adapter(adapter);
  Emitter emitter(std::move(config));
  const EventName name = bench_event_name();
  const double period_ns = 1e9 / setup.commits_per_s;
  // Poisson arrivals: exponential gaps of the same mean, the same sequence in every run.
  std::mt19937_64 random(20'240'601);
  std::exponential_distribution<double> gap(1.0 / period_ns);
  const auto next_gap = [&]() -> std::int64_t {
    return std::llround(setup.arrivals == Arrivals::poisson ? gap(random) : period_ns);
  };
  std::vector<std::int64_t> producer_ns;  // per measured commit: its emits and commit()
  producer_ns.reserve(setup.commits);

  std::uint64_t failed = 0;
  std::int64_t next = steady_ns() + next_gap();
  std::int64_t measured_from = 0;
  std::int64_t measured_to = 0;
  double cpu_from = 0.0;
  std::int64_t window_from = 0;  // when cpu_from was read
  long sleeps_from = 0;
  for (std::size_t c = 0; c < commits; ++c) {
    if (c == setup.warmup_commits) {
      // The consumer has been called by now (the warm-up's batches were delivered), unless
      // it is far behind: then wait for its first call, off the schedule.
      while (!adapter->clock_known())
        std::this_thread::yield();
      cpu_from = adapter->consumer_cpu_seconds();
      sleeps_from = adapter->consumer_sleeps();
      window_from = steady_ns();
    }
    wait_until(next);
    next += next_gap();
    // Read just before the emits: the figure includes emitting this commit's events.
    const std::int64_t committed_at = steady_ns();
    if (c == setup.warmup_commits) measured_from = committed_at;
    if (!emissions::start().ok()) ++failed;
    for (std::size_t i = 0; i < per_commit; ++i) {
      if (!emissions::emit(name, nlohmann::json(committed_at)).ok()) ++failed;
    }
    if (!emissions::commit().ok()) ++failed;
    // No clock read between the emits and commit(): it would add to the latency measured.
    if (c >= setup.warmup_commits) producer_ns.push_back(steady_ns() - committed_at);
    measured_to = committed_at;
  }
  const Status drained = emitter.drain(kDrainTimeout);
  const std::int64_t drained_at = steady_ns();
  const double cpu_to = adapter->consumer_cpu_seconds();
  const long sleeps_to = adapter->consumer_sleeps();
  if (!drained.ok()) throw BenchFailure("latency: " + drained.to_string());
  if (failed != 0) throw BenchFailure("latency: " + std::to_string(failed) + " calls failed");
  const std::vector<std::int64_t>& all = adapter->samples();
  if (all.size() != commits * per_commit) {
    throw BenchFailure("latency: adapter saw " + std::to_string(all.size()) + " events, expected " +
                       std::to_string(commits * per_commit));
  }

  std::vector<std::int64_t> sorted(
      all.begin() + static_cast<std::ptrdiff_t>(setup.warmup_commits * per_commit), all.end());
  std::sort(sorted.begin(), sorted.end());
  std::sort(producer_ns.begin(), producer_ns.end());
  const double measured_commits = static_cast<double>(setup.commits);
  const double span_s = static_cast<double>(measured_to - measured_from) / 1e9;
  const double window_s = static_cast<double>(drained_at - window_from) / 1e9;
  LatencyResult r;
  r.events_per_commit = per_commit;
  r.period_us = period_ns / 1e3;
  // Commits - 1 intervals between the first and the last measured commit.
  r.offered_eps =
      span_s > 0.0 ? (measured_commits - 1.0) * static_cast<double>(per_commit) / span_s : 0.0;
  r.samples = sorted.size();
  r.p50_us = percentile(sorted, 0.50) / 1e3;
  r.p99_us = percentile(sorted, 0.99) / 1e3;
  r.p999_us = percentile(sorted, 0.999) / 1e3;
  r.max_us = sorted.empty() ? 0.0 : static_cast<double>(sorted.back()) / 1e3;
  r.consumer_cores = window_s > 0.0 ? (cpu_to - cpu_from) / window_s : 0.0;
  r.consumer_sleeps_per_commit =
      sleeps_from >= 0 && sleeps_to >= sleeps_from
          ? static_cast<double>(sleeps_to - sleeps_from) / measured_commits
          : -1.0;
  r.producer_p50_us = percentile(producer_ns, 0.50) / 1e3;
  r.producer_p99_us = percentile(producer_ns, 0.99) / 1e3;
  return r;
}

const char* describe(Arrivals arrivals) {
  switch (arrivals) {
    case Arrivals::periodic:
      return "periodic";
    case Arrivals::poisson:
      return "poisson";
  }
  return "?";
}

}  // namespace emissions::bench
