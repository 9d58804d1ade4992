// The spool's restart: how soon an Emitter hands a large backlog, left on disk by the one
// before it, back to the adapter, and how long the whole backlog takes.
//
//   1. Emitter A (Durability::process, default segments, max_bytes large enough) whose one
//      adapter, "restart", holds every Delivery without settling it: the producer commits
//      10 events per commit (payload: the event's number) until the spool's segments pass
//      the target size; then A shuts down with a 100 ms timeout, so the backlog stays.
//   2. Emitter B on the same directory, page cache as A left it ("warm"): the time from
//      its constructor's start to the first event reaching the adapter (which holds it
//      again); B shuts down the same way.
//   3. The segment files are synced and dropped from the page cache (fdatasync, then
//      posix_fadvise DONTNEED: this process's files only, no privilege needed).
//   4. Emitter C ("cold"): the time to the first event, then to drain(): every event of
//      the backlog delivered once, in order.
// Bytes per event: the bytes of commit frames in the segments (each segment's bytes up to
// its last non-zero one) / events. Bytes written: /proc/self/io write_bytes over the whole
// scenario (pages this process dirtied, counted once per clean-to-dirty change: what the
// kernel has to write back), against the frames' bytes.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "bench.hpp"
#include "emissions/delivery.hpp"
#include "emissions/emitter.hpp"

namespace emissions::bench {
namespace {

constexpr const char* kAdapterName = "restart";
constexpr auto kShutdownTimeout = std::chrono::milliseconds(100);
constexpr auto kDrainTimeout = std::chrono::minutes(10);
constexpr std::uint64_t kCommitsPerCheck = 1000;  // commits between looks at spool_bytes

// Records the steady time of its first call; then holds every Delivery unsettled (a
// destination that is down), or acks it after checking that events come in order
// (payload = the event's number).
class RestartAdapter final : public AsyncAdapter {
 public:
  explicit RestartAdapter(bool hold) : hold_(hold) {}
  [[nodiscard]] std::string_view name() const override { return kAdapterName; }
  void deliver(Delivery delivery) override {
    std::int64_t none = 0;
    first_ns_.compare_exchange_strong(none, steady_ns(), std::memory_order_relaxed);
    if (hold_) {
      std::lock_guard lock(mutex_);
      held_.push_back(std::move(delivery));
      return;
    }
    // One consumer calls deliver at a time (max_in_flight does not change that).
    for (const Event& e : delivery.events()) {
      if (e.payload.get<std::uint64_t>() != next_) ++out_of_order_;
      next_ = e.payload.get<std::uint64_t>() + 1;
    }
    accepted_.fetch_add(delivery.events().size(), std::memory_order_relaxed);
    delivery.ack();
  }
  [[nodiscard]] std::int64_t first_ns() const noexcept {
    return first_ns_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t accepted() const noexcept {
    return accepted_.load(std::memory_order_relaxed);
  }
  // Read after a drain.
  [[nodiscard]] std::uint64_t out_of_order() const noexcept { return out_of_order_; }
  [[nodiscard]] std::uint64_t next() const noexcept { return next_; }

 private:
  bool hold_;
  std::atomic<std::int64_t> first_ns_{0};
  std::atomic<std::uint64_t> accepted_{0};
  std::uint64_t next_ = 0;
  std::uint64_t out_of_order_ = 0;
  std::mutex mutex_;
  std::vector<Delivery> held_;  // abandoned with the adapter (shutdown counted them dropped)
};

// write_bytes of /proc/self/io: bytes of pages this process dirtied (to be written back).
std::uint64_t io_write_bytes() {
  std::ifstream in("/proc/self/io");
  for (std::string key; in >> key;) {
    std::uint64_t value = 0;
    in >> value;
    if (key == "write_bytes:") return value;
  }
  throw BenchFailure("spool-restart: /proc/self/io has no write_bytes");
}

std::vector<std::filesystem::path> segment_files(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".log") out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A file descriptor, closed when it goes.
struct Fd {
  int fd = -1;
  explicit Fd(const std::filesystem::path& path, int flags) : fd(::open(path.c_str(), flags)) {
    if (fd < 0) {
      throw BenchFailure("spool-restart: open " + path.string() + ": " + std::strerror(errno));
    }
  }
  ~Fd() { ::close(fd); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

// The bytes a segment's frames use: up to its last byte that is not zero (the rest of a
// preallocated segment is zeros), rounded up to the next multiple of 8 (frames are
// padded to 8 bytes; the padding and a record's last bytes may be zero).
std::uint64_t used_bytes(const std::filesystem::path& path) {
  const Fd file(path, O_RDONLY);
  const auto size = static_cast<std::uint64_t>(std::filesystem::file_size(path));
  std::vector<char> chunk(1u << 20);
  for (std::uint64_t end = size; end > 0;) {
    const std::uint64_t begin = end > chunk.size() ? end - chunk.size() : 0;
    const auto want = static_cast<std::size_t>(end - begin);
    if (::pread(file.fd, chunk.data(), want, static_cast<off_t>(begin)) !=
        static_cast<ssize_t>(want)) {
      throw BenchFailure("spool-restart: read " + path.string() + " failed");
    }
    for (std::size_t i = want; i > 0; --i) {
      if (chunk[i - 1] != 0) return std::min(size, (begin + i + 7) / 8 * 8);
    }
    end = begin;
  }
  return 0;
}

// Syncs each segment and drops its pages from the page cache.
void evict_from_page_cache(const std::filesystem::path& dir) {
  for (const std::filesystem::path& path : segment_files(dir)) {
    const Fd file(path, O_RDONLY);
    if (::fdatasync(file.fd) != 0 || ::posix_fadvise(file.fd, 0, 0, POSIX_FADV_DONTNEED) != 0) {
      throw BenchFailure("spool-restart: evicting " + path.string() + " failed");
    }
  }
}

Config restart_config(const std::filesystem::path& dir, std::uint64_t max_bytes,
                      std::shared_ptr<RestartAdapter> adapter) {
  Config config;
  config.make_default = false;
  config.shutdown_timeout = kShutdownTimeout;
  config.spool = SpoolOptions{.dir = dir, .max_bytes = max_bytes};
  config.add_adapter(std::move(adapter));
  return config;
}

// Constructs an Emitter whose adapter holds what it gets, waits for the first event,
// shuts it down: the time from the constructor's start to that event, in ms.
double first_event_ms(const std::filesystem::path& dir, std::uint64_t max_bytes) {
  auto adapter = std::make_shared<RestartAdapter>(true);
  const std::int64_t start = steady_ns();
  Emitter emitter(restart_config(dir, max_bytes, adapter));
  const std::int64_t deadline = start + 60'000'000'000LL;
  while (adapter->first_ns() == 0 && steady_ns() < deadline)
    std::this_thread::yield();
  if (adapter->first_ns() == 0) throw BenchFailure("spool-restart: no event within 60 s");
  (void)emitter.shutdown(kShutdownTimeout);  // times out: the adapter holds the events
  if (emitter.stats().adapters.at(0).delivered != 0) {
    throw BenchFailure("spool-restart: the holding adapter settled events");
  }
  return static_cast<double>(adapter->first_ns() - start) / 1e6;
}

}  // namespace

RestartResult run_spool_restart(const RestartOptions& options) {
  RestartResult r;
  const TempDir dir("restart");
  const std::uint64_t segment = SpoolOptions{}.segment_bytes;
  const std::uint64_t max_bytes = options.backlog_bytes + 4 * segment;
  const std::uint64_t written_before = io_write_bytes();

  // 1. The backlog: nothing is delivered while A lives.
  {
    auto holding = std::make_shared<RestartAdapter>(true);
    Emitter a(restart_config(dir.path, max_bytes, holding));
    const EventName name = bench_event_name();
    const std::int64_t t0 = steady_ns();
    std::uint64_t n = 0;
    while (a.stats().spool_bytes <= options.backlog_bytes) {
      for (std::uint64_t c = 0; c < kCommitsPerCheck; ++c) {
        Transaction tx = a.start();
        for (std::size_t i = 0; i < kEventsPerCommit; ++i, ++n) {
          if (!tx.emit(name, nlohmann::json(n)).ok()) throw BenchFailure("spool-restart: emit");
        }
        if (const Status s = tx.commit(); !s) {
          throw BenchFailure("spool-restart: commit failed: " + s.to_string());
        }
      }
    }
    r.fill_seconds = static_cast<double>(steady_ns() - t0) / 1e9;
    r.events = n;
    (void)a.shutdown(kShutdownTimeout);  // times out: the backlog stays on disk
    const EmitterStats stats = a.stats();
    if (stats.committed != n || stats.adapters.at(0).delivered != 0) {
      throw BenchFailure("spool-restart: the first emitter committed " +
                         std::to_string(stats.committed) + " of " + std::to_string(n) +
                         " events and delivered " + std::to_string(stats.adapters.at(0).delivered));
    }
  }
  for (const std::filesystem::path& path : segment_files(dir.path)) {
    r.frame_bytes += used_bytes(path);
    r.file_bytes += std::filesystem::file_size(path);
    ++r.segments;
  }

  // 2. Warm: the page cache as A left it.
  r.first_event_warm_ms = first_event_ms(dir.path, max_bytes);

  // 3, 4. Cold: the segments read from the disk.
  evict_from_page_cache(dir.path);
  auto adapter = std::make_shared<RestartAdapter>(false);
  const std::int64_t start = steady_ns();
  auto c = std::make_unique<Emitter>(restart_config(dir.path, max_bytes, adapter));
  r.open_ms = static_cast<double>(steady_ns() - start) / 1e6;
  const Status drained = c->drain(kDrainTimeout);
  const std::int64_t done = steady_ns();
  r.first_event_cold_ms = static_cast<double>(adapter->first_ns() - start) / 1e6;
  r.redeliver_seconds = static_cast<double>(done - start) / 1e9;
  const EmitterStats stats = c->stats();
  const AdapterStats& lane = stats.adapters.at(0);
  r.bytes_after = stats.spool_bytes;
  r.segments_after = segment_files(dir.path).size();
  c.reset();
  r.written_bytes = io_write_bytes() - written_before;

  if (!drained.ok()) throw BenchFailure("spool-restart: drain failed: " + drained.to_string());
  if (adapter->accepted() != r.events || lane.delivered != r.events || lane.received != r.events ||
      lane.dropped != 0 || lane.failed != 0 || adapter->out_of_order() != 0 ||
      adapter->next() != r.events) {
    throw BenchFailure(
        "spool-restart: the backlog was " + std::to_string(r.events) +
        " events; the new emitter's adapter accepted " + std::to_string(adapter->accepted()) +
        " (" + std::to_string(adapter->out_of_order()) + " out of order), stats delivered " +
        std::to_string(lane.delivered) + ", received " + std::to_string(lane.received) +
        ", dropped " + std::to_string(lane.dropped) + ", failed " + std::to_string(lane.failed));
  }
  return r;
}

}  // namespace emissions::bench
