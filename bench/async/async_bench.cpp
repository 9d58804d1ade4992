// emissions-async-bench: the pipeline's own per-event cost with an AsyncAdapter, without
// any client library: an Emitter whose one adapter hands each Delivery to a thread of its
// own that acks it (as a Kafka poll thread or a webhook I/O thread does), beside the same
// Emitter with a synchronous no-op adapter, in the same run.
//
// Per mode and events-per-commit it prints events/s (wall), CPU ns per event (the whole
// process) and heap allocations per event (operator new calls, counted by this binary's
// replacement of the global operator new; the library's allocations all go through it),
// plus voluntary context switches per event (sleeps: futex waits). One producer thread
// commits through Transaction (emitter.start(), emit, commit), as the integration
// benchmarks do.
//
//   emissions-async-bench [--events N] [--reps N] [--per-commit 1,100] [--only sync,async]
//                         [--payload integer|object] [--json]
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <new>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "emissions/delivery.hpp"
#include "emissions/emitter.hpp"
#include "emissions/event_name.hpp"
#include "emissions/transaction.hpp"

// ---- allocation counter ------------------------------------------------------------------

namespace {
std::atomic<std::uint64_t> g_allocations{0};

void* counted_alloc(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (size == 0) size = 1;
  if (void* p = std::malloc(size)) return p;
  throw std::bad_alloc();
}

void* counted_alloc_aligned(std::size_t size, std::align_val_t align) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  const auto a = static_cast<std::size_t>(align);
  const std::size_t rounded = (std::max<std::size_t>(size, 1) + a - 1) / a * a;
  if (void* p = std::aligned_alloc(a, rounded)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t size) {
  return counted_alloc(size);
}
void* operator new[](std::size_t size) {
  return counted_alloc(size);
}
void* operator new(std::size_t size, std::align_val_t align) {
  return counted_alloc_aligned(size, align);
}
void* operator new[](std::size_t size, std::align_val_t align) {
  return counted_alloc_aligned(size, align);
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(size);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(size);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}

namespace {

using SteadyClock = std::chrono::steady_clock;

struct Usage {
  double cpu_s = 0;
  long voluntary = 0;
};

Usage usage() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  const auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return {seconds(u.ru_utime) + seconds(u.ru_stime), u.ru_nvcsw};
}

// Counts what it is handed and returns ok.
class SyncNoOp final : public emissions::Adapter {
 public:
  [[nodiscard]] std::string_view name() const override { return "sync-noop"; }
  emissions::Status handle_events(std::span<const emissions::Event> batch) override {
    accepted_.fetch_add(batch.size(), std::memory_order_relaxed);
    return {};
  }
  [[nodiscard]] std::uint64_t accepted() const noexcept { return accepted_.load(); }

 private:
  std::atomic<std::uint64_t> accepted_{0};
};

// deliver() queues the handle; one thread of its own takes everything queued at once and
// acks it outside the lock. Its vectors keep their capacity: no allocation of its own in
// steady state. The thread sleeps on a condition variable only when it found nothing, and
// deliver() notifies only when it sleeps.
class ThreadAck final : public emissions::AsyncAdapter {
 public:
  ThreadAck() : acker_([this] { loop(); }) {}
  ~ThreadAck() override {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    ready_.notify_one();
    acker_.join();
  }
  ThreadAck(const ThreadAck&) = delete;
  ThreadAck& operator=(const ThreadAck&) = delete;
  [[nodiscard]] std::string_view name() const override { return "thread-ack"; }
  void deliver(emissions::Delivery delivery) override {
    bool wake = false;
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(delivery));
      wake = sleeping_;
    }
    if (wake) ready_.notify_one();
  }
  [[nodiscard]] std::uint64_t accepted() const noexcept { return accepted_.load(); }

 private:
  void loop() {
    std::vector<emissions::Delivery> taken;
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        if (queue_.empty() && !stop_) {
          sleeping_ = true;
          ready_.wait(lock, [&] { return !queue_.empty() || stop_; });
          sleeping_ = false;
        }
        if (queue_.empty()) return;  // stopped, nothing left
        taken.swap(queue_);
      }
      for (emissions::Delivery& delivery : taken) {
        accepted_.fetch_add(delivery.events().size(), std::memory_order_relaxed);
        delivery.ack();
      }
      taken.clear();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::vector<emissions::Delivery> queue_;
  bool sleeping_ = false;
  bool stop_ = false;
  std::atomic<std::uint64_t> accepted_{0};
  std::thread acker_;
};

struct Options {
  std::uint64_t events = 1'000'000;
  int reps = 3;
  std::vector<std::size_t> per_commit{1, 100};
  std::vector<std::string> modes{"sync", "async"};
  bool object_payload = false;
  bool json = false;
};

struct Result {
  double eps = 0;
  double cpu_ns = 0;
  double allocs = 0;
  double sleeps = 0;
};

// One run: warm-up, then `events` committed `per_commit` at a time, until drain().
Result run(const std::string& mode, std::size_t per_commit, const Options& o) {
  auto sync = std::make_shared<SyncNoOp>();
  auto async = std::make_shared<ThreadAck>();
  emissions::Config config;
  if (mode == "sync") {
    config.add_adapter(sync);
  } else {
    config.add_adapter(async);
  }
  emissions::Emitter emitter(std::move(config));
  const emissions::EventName name("order_created");
  const nlohmann::json payload =
      o.object_payload ? nlohmann::json{{"id", 12345}, {"total", 9.5}} : nlohmann::json(42);
  auto produce = [&](std::uint64_t events) {
    for (std::uint64_t done = 0; done < events; done += per_commit) {
      emissions::Transaction tx = emitter.start();
      for (std::size_t i = 0; i < per_commit; ++i) {
        if (!tx.emit(name, payload).ok()) std::abort();
      }
      if (!tx.commit().ok()) {
        std::fprintf(stderr, "commit refused\n");
        std::exit(2);
      }
    }
  };
  const std::uint64_t events = o.events / per_commit * per_commit;
  produce(std::min<std::uint64_t>(events / 5 + per_commit, 200'000));
  if (!emitter.drain(std::chrono::seconds(60)).ok()) std::exit(2);
  const std::uint64_t before = mode == "sync" ? sync->accepted() : async->accepted();
  const Usage u0 = usage();
  const std::uint64_t a0 = g_allocations.load();
  const auto t0 = SteadyClock::now();
  produce(events);
  if (!emitter.drain(std::chrono::seconds(60)).ok()) std::exit(2);
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  const std::uint64_t a1 = g_allocations.load();
  const Usage u1 = usage();
  const std::uint64_t got = (mode == "sync" ? sync->accepted() : async->accepted()) - before;
  const auto stats = emitter.stats();
  if (got != events || stats.adapters[0].failed != 0 || stats.adapters[0].dropped != 0 ||
      stats.adapters[0].delivered != stats.committed) {
    std::fprintf(stderr, "%s/%zu: counts do not add up (got %llu of %llu)\n", mode.c_str(),
                 per_commit, static_cast<unsigned long long>(got),
                 static_cast<unsigned long long>(events));
    std::exit(2);
  }
  const auto n = static_cast<double>(events);
  return {n / seconds, (u1.cpu_s - u0.cpu_s) * 1e9 / n, static_cast<double>(a1 - a0) / n,
          static_cast<double>(u1.voluntary - u0.voluntary) / n};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

std::vector<std::string> split(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');)
    out.push_back(item);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--events" && has_value) {
      o.events = std::stoull(argv[++i]);
    } else if (arg == "--reps" && has_value) {
      o.reps = std::max(1, std::stoi(argv[++i]));
    } else if (arg == "--per-commit" && has_value) {
      o.per_commit.clear();
      for (const auto& s : split(argv[++i]))
        o.per_commit.push_back(std::max<std::size_t>(1, std::stoul(s)));
    } else if (arg == "--only" && has_value) {
      o.modes = split(argv[++i]);
    } else if (arg == "--payload" && has_value) {
      o.object_payload = std::string(argv[++i]) == "object";
    } else if (arg == "--json") {
      o.json = true;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--events N] [--reps N] [--per-commit 1,100] [--only sync,async] "
                   "[--payload integer|object] [--json]\n",
                   argv[0]);
      return 64;
    }
  }
  if (o.json) std::printf("{");
  bool first = true;
  for (const std::size_t per_commit : o.per_commit) {
    for (const std::string& mode : o.modes) {
      std::vector<double> eps, cpu, allocs, sleeps;
      for (int r = 0; r < o.reps; ++r) {
        const Result res = run(mode, per_commit, o);
        eps.push_back(res.eps);
        cpu.push_back(res.cpu_ns);
        allocs.push_back(res.allocs);
        sleeps.push_back(res.sleeps);
        std::fprintf(stderr, "%s, %zu per commit, rep %d: %.0f events/s, %.0f CPU ns/event\n",
                     mode.c_str(), per_commit, r + 1, res.eps, res.cpu_ns);
      }
      if (o.json) {
        std::printf("%s\"%s_%zu\":{\"eps\":%.0f,\"cpu_ns\":%.1f,\"allocs\":%.3f,\"sleeps\":%.3f}",
                    first ? "" : ",", mode.c_str(), per_commit, median(eps), median(cpu),
                    median(allocs), median(sleeps));
      } else {
        std::printf(
            "%-6s %3zu/commit: %10.0f events/s  %7.1f CPU ns/event  %6.3f allocs/event  "
            "%6.3f sleeps/event  (median of %d)\n",
            mode.c_str(), per_commit, median(eps), median(cpu), median(allocs), median(sleeps),
            o.reps);
      }
      first = false;
    }
  }
  if (o.json) std::printf("}\n");
  return 0;
}
