// A spooled Emitter whose only adapter stalls while 10 M events are committed: the backlog
// waits on disk, memory stays within what the adapter's queue holds, nothing is dropped,
// and once the adapter moves again it gets every event in order while the segments behind
// it are deleted.
//
// The scenario runs in a child process (this binary re-executed with the test's filter
// and EMISSIONS_SPOOL_STALLED_REPORT set), so nothing the test runner allocated counts
// towards its peak RSS. The child:
//   1. measures the bytes one held event costs: RSS growth while 1 M events sit in open
//      transactions of 10 (the Event, its batch slot, malloc overhead) / 1 M; frees them,
//      returns the memory to the kernel, reads its RSS (the baseline) and resets its peak
//      (VmHWM);
//   2. commits N events, 10 per commit, payload = the event's number, with the default
//      SpoolOptions; the adapter (buffer_size 10 000) blocks in its first handle_events
//      call until every commit returned (a condition with a deadline);
//   3. reads VmHWM, lets the adapter go, drains, reads VmHWM again, and writes a report.
// The bound: baseline + buffer_size x bytes per held event + segment_bytes, the last
// because the active segment is memory-mapped and the pages written into it stay resident
// (file-backed) until it is full. RssAnon, sampled every 10 ms, is held to the bound
// without the mapping. The parent checks the report. Under a sanitizer RSS measures the
// sanitizer: skipped.
#include <gtest/gtest.h>
#include <malloc.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "emissions/emitter.hpp"
#include "temp_dir.hpp"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define EMISSIONS_UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define EMISSIONS_UNDER_SANITIZER 1
#endif
#endif

namespace emissions {
namespace {

using test_support::TempDir;

// 10 M events: the Debug build commits and delivers them in about 30 s on 2 cores.
constexpr std::uint64_t kEvents = 10'000'000;
constexpr std::uint64_t kEventsPerCommit = 10;
constexpr std::size_t kBufferSize = 10'000;
constexpr std::uint64_t kMeasureEvents = 1'000'000;
constexpr double kSlackMiB = 32.0;
constexpr auto kStallDeadline = std::chrono::minutes(10);
constexpr auto kChildDeadline = std::chrono::minutes(13);
constexpr const char* kReportVariable = "EMISSIONS_SPOOL_STALLED_REPORT";
constexpr double kMiB = 1024.0 * 1024.0;

// A field of /proc/self/status in KiB ("VmRSS", "VmHWM", "RssAnon"); -1 when absent.
long status_kib(const std::string& field) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
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

// Blocks in its first handle_events call until release() or the deadline; then checks
// that events come in order (payload = the event's number) and counts them.
class StalledAdapter final : public Adapter {
 public:
  [[nodiscard]] std::string_view name() const override { return "stalled"; }
  Status handle_events(std::span<const Event> batch) override {
    {
      std::unique_lock lock(mutex_);
      if (!released_ && !released_cv_.wait_for(lock, kStallDeadline, [&] { return released_; })) {
        timed_out_ = true;
        released_ = true;
      }
    }
    for (const Event& e : batch) {
      if (e.payload.get<std::uint64_t>() != next_) ++out_of_order_;
      next_ = e.payload.get<std::uint64_t>() + 1;
    }
    received_.fetch_add(batch.size(), std::memory_order_release);
    return {};
  }
  void release() {
    std::lock_guard lock(mutex_);
    released_ = true;
    released_cv_.notify_all();
  }
  [[nodiscard]] std::uint64_t received() const noexcept {
    return received_.load(std::memory_order_acquire);
  }
  // Read once drained (drain synchronises with the consumer thread).
  [[nodiscard]] std::uint64_t out_of_order() const noexcept { return out_of_order_; }
  [[nodiscard]] std::uint64_t next() const noexcept { return next_; }
  [[nodiscard]] bool timed_out() const {
    std::lock_guard lock(mutex_);
    return timed_out_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable released_cv_;
  bool released_ = false;
  bool timed_out_ = false;
  std::uint64_t next_ = 0;
  std::uint64_t out_of_order_ = 0;
  std::atomic<std::uint64_t> received_{0};
};

std::uint64_t segment_files(const std::filesystem::path& dir) {
  std::uint64_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    n += entry.path().extension() == ".log" ? 1u : 0u;
  return n;
}

// RSS growth per event while `events` events are held in open transactions of 10.
double measure_bytes_per_held_event(Emitter& emitter, std::uint64_t events) {
  std::vector<Transaction> open(static_cast<std::size_t>(events / kEventsPerCommit));
  const long before = status_kib("VmRSS");
  for (std::size_t t = 0; t < open.size(); ++t) {
    open[t] = emitter.start();
    for (std::uint64_t i = 0; i < kEventsPerCommit; ++i) {
      if (!open[t].emit("stalled.event", t * kEventsPerCommit + i).ok()) return 0.0;
    }
  }
  const long after = status_kib("VmRSS");
  for (Transaction& tx : open)
    tx.terminate();
  open.clear();
  open.shrink_to_fit();
  malloc_trim(0);
  if (before < 0 || after < before) return 0.0;
  return static_cast<double>(after - before) * 1024.0 / static_cast<double>(events);
}

// The scenario; the report is one line of `key value` pairs.
void run_child(const std::string& report_path) {
  TempDir dir;
  auto adapter = std::make_shared<StalledAdapter>();
  Config config;
  config.make_default = false;
  config.spool = SpoolOptions{.dir = dir.path()};
  config.add_adapter(adapter, AdapterOptions{.buffer_size = kBufferSize});
  Emitter emitter(std::move(config));

  const double per_event = measure_bytes_per_held_event(emitter, kMeasureEvents);
  const bool peak_reset = reset_peak_rss();
  const long baseline_kib = status_kib("VmRSS");
  const long baseline_anon_kib = status_kib("RssAnon");
  // VmHWM has no anonymous-only twin: sample RssAnon (and RssFile) every 10 ms instead.
  std::atomic<bool> finished{false};
  long max_anon_kib = baseline_anon_kib;
  long max_file_kib = 0;
  std::thread rss_sampler([&] {
    while (!finished.load()) {
      max_anon_kib = std::max(max_anon_kib, status_kib("RssAnon"));
      max_file_kib = std::max(max_file_kib, status_kib("RssFile"));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });

  std::uint64_t failed_calls = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (std::uint64_t n = 0; n < kEvents; n += kEventsPerCommit) {
    Transaction tx = emitter.start();
    for (std::uint64_t i = 0; i < kEventsPerCommit; ++i) {
      if (!tx.emit("stalled.event", n + i).ok()) ++failed_calls;
    }
    if (!tx.commit().ok()) ++failed_calls;
  }
  const auto t1 = std::chrono::steady_clock::now();
  const long stalled_peak_kib = status_kib("VmHWM");
  const long stalled_anon_kib = status_kib("RssAnon");
  const long stalled_file_kib = status_kib("RssFile");
  const EmitterStats during = emitter.stats();
  const std::uint64_t files_during = segment_files(dir.path());
  const std::uint64_t received_during = adapter->received();

  // Catch-up: sample the spool's size while the adapter drains its backlog.
  std::atomic<bool> drained{false};
  std::vector<std::uint64_t> bytes_samples;
  std::thread sampler([&] {
    while (!drained.load()) {
      bytes_samples.push_back(emitter.stats().spool_bytes);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  adapter->release();
  const Status drain =
      emitter.drain(std::chrono::duration_cast<std::chrono::milliseconds>(kStallDeadline));
  drained = true;
  sampler.join();
  finished = true;
  rss_sampler.join();
  const auto t2 = std::chrono::steady_clock::now();
  const long total_peak_kib = status_kib("VmHWM");
  const EmitterStats after = emitter.stats();
  const AdapterStats& lane = after.adapters.at(0);
  std::uint64_t shrinking = 0;  // samples smaller than the one before: segments deleted
  for (std::size_t i = 1; i < bytes_samples.size(); ++i)
    shrinking += bytes_samples[i] < bytes_samples[i - 1] ? 1u : 0u;

  std::ofstream report(report_path);
  report << "per_event_bytes " << per_event << " peak_reset " << peak_reset << " baseline_kib "
         << baseline_kib << " baseline_anon_kib " << baseline_anon_kib << " max_anon_kib "
         << max_anon_kib << " max_file_kib " << max_file_kib << " stalled_peak_kib "
         << stalled_peak_kib << " stalled_anon_kib " << stalled_anon_kib << " stalled_file_kib "
         << stalled_file_kib << " total_peak_kib " << total_peak_kib << " committed "
         << after.committed << " failed_calls " << failed_calls << " received_during_stall "
         << received_during << " delivered " << lane.delivered << " dropped " << lane.dropped
         << " failed " << lane.failed << " received " << adapter->received() << " out_of_order "
         << adapter->out_of_order() << " next " << adapter->next() << " timed_out "
         << adapter->timed_out() << " drained " << drain.ok() << " spool_bytes_during "
         << during.spool_bytes << " files_during " << files_during << " spool_bytes_after "
         << after.spool_bytes << " files_after " << segment_files(dir.path())
         << " shrinking_samples " << shrinking << " segment_bytes " << SpoolOptions{}.segment_bytes
         << " commit_seconds " << std::chrono::duration<double>(t1 - t0).count()
         << " drain_seconds " << std::chrono::duration<double>(t2 - t1).count() << "\n";
}

// The child's report: `key value` pairs.
struct Report {
  std::map<std::string, std::string> values;
  [[nodiscard]] double number(const std::string& key) const {
    const auto it = values.find(key);
    return it == values.end() ? -1.0 : std::stod(it->second);
  }
  [[nodiscard]] std::uint64_t count(const std::string& key) const {
    const auto it = values.find(key);
    return it == values.end() ? UINT64_MAX : std::stoull(it->second);
  }
};

// Runs this test in a child process with the report path set, and reads its report.
Report run_in_child(const std::filesystem::path& report) {
  const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string filter =
      std::string("--gtest_filter=") + test->test_suite_name() + "." + test->name();
  const std::string variable = std::string(kReportVariable) + "=" + report.string();
  std::vector<char*> argv = {const_cast<char*>("spool_stalled_child"),
                             const_cast<char*>(filter.c_str()), nullptr};
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e)
    envp.push_back(*e);
  envp.push_back(const_cast<char*>(variable.c_str()));
  envp.push_back(nullptr);
  std::cout.flush();
  const pid_t pid = fork();
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << std::strerror(errno);
    return {};
  }
  if (pid == 0) {
    execve("/proc/self/exe", argv.data(), envp.data());
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + kChildDeadline;
  int status = 0;
  for (;;) {
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ADD_FAILURE() << "the child did not finish within its deadline";
      return {};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  Report pairs;
  std::ifstream in(report);
  for (std::string key; in >> key;)
    in >> pairs.values[key];
  return pairs;
}

TEST(SpoolStalledTest, TenMillionEventsWaitOnDiskWithinTheMemoryBoundAndAllArriveInOrder) {
#ifdef EMISSIONS_UNDER_SANITIZER
  GTEST_SKIP() << "under a sanitizer RSS measures the sanitizer's shadow memory, not the spool";
#endif
  if (const char* report = std::getenv(kReportVariable); report != nullptr) {
    run_child(report);
    return;
  }
  TempDir reports;
  const Report r = run_in_child(reports.path() / "report.txt");
  ASSERT_FALSE(r.values.empty()) << "the child wrote no report";
  const double per_event = r.number("per_event_bytes");
  const double queue = static_cast<double>(kBufferSize) * per_event / kMiB;
  const double mapping = static_cast<double>(r.count("segment_bytes")) / kMiB;
  const double baseline = r.number("baseline_kib") / 1024.0;
  const double bound = baseline + queue + mapping;
  const double anon_baseline = r.number("baseline_anon_kib") / 1024.0;
  const double anon_bound = anon_baseline + queue;
  const double stalled_peak = r.number("stalled_peak_kib") / 1024.0;
  const double total_peak = r.number("total_peak_kib") / 1024.0;
  const double anon_peak = r.number("max_anon_kib") / 1024.0;
  std::cout << "spool, stalled adapter, " << kEvents << " events, buffer_size " << kBufferSize
            << ":\n  bytes per held event " << per_event << "; the queue " << queue
            << " MiB; baseline RSS " << baseline << " MiB (anonymous " << anon_baseline
            << " MiB); the active segment's mapping " << mapping << " MiB"
            << "\n  in-memory bound (baseline + queue + mapping) " << bound
            << " MiB: peak RSS while stalled " << stalled_peak << " MiB, including the catch-up "
            << total_peak << " MiB, limit " << bound + kSlackMiB << " MiB"
            << "\n  anonymous bound (baseline + queue) " << anon_bound
            << " MiB: largest RssAnon sampled every 10 ms " << anon_peak << " MiB, limit "
            << anon_bound + kSlackMiB << " MiB; largest RssFile "
            << r.number("max_file_kib") / 1024.0 << " MiB\n  spool while stalled "
            << r.number("spool_bytes_during") / kMiB << " MiB in " << r.count("files_during")
            << " segments; after the drain " << r.number("spool_bytes_after") / kMiB << " MiB in "
            << r.count("files_after") << " (" << r.count("shrinking_samples")
            << " samples saw it shrink while draining)\n  commits " << r.number("commit_seconds")
            << " s, catch-up " << r.number("drain_seconds") << " s" << std::endl;

  ASSERT_EQ(r.count("peak_reset"), 1u) << "the peak could not be reset after the measurement";
  ASSERT_GT(per_event, 0.0);
  EXPECT_EQ(r.count("failed_calls"), 0u);
  EXPECT_EQ(r.count("committed"), kEvents);
  EXPECT_EQ(r.count("timed_out"), 0u) << "the commits outlasted the adapter's stall deadline";
  EXPECT_EQ(r.count("received_during_stall"), 0u);
  EXPECT_LE(stalled_peak, bound + kSlackMiB);
  EXPECT_LE(total_peak, bound + kSlackMiB);
  EXPECT_LE(anon_peak, anon_bound + kSlackMiB);
  // Nothing dropped; every event delivered once, in order, after the stall.
  EXPECT_EQ(r.count("drained"), 1u);
  EXPECT_EQ(r.count("dropped"), 0u);
  EXPECT_EQ(r.count("failed"), 0u);
  EXPECT_EQ(r.count("delivered"), kEvents);
  EXPECT_EQ(r.count("received"), kEvents);
  EXPECT_EQ(r.count("out_of_order"), 0u);
  EXPECT_EQ(r.count("next"), kEvents);
  // The backlog was on disk, and the segments behind the adapter went once it caught up:
  // the active one is left.
  EXPECT_GT(r.count("files_during"), 2u);
  EXPECT_EQ(r.count("files_after"), 1u);
  EXPECT_EQ(r.count("spool_bytes_after"), r.count("segment_bytes"));
}

}  // namespace
}  // namespace emissions
