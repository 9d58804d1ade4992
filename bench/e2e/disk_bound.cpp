// The disk's own limit for Durability::machine, measured in the same run as the spool: how
// many fdatasync calls per second this machine's disk completes when nothing else is
// written, and how long each takes. With P producers, each waiting for its own commit to be
// synced, one sync covers at most P commits, so P x events per commit x syncs per second is
// the most any group commit can deliver here; the spool's figure is reported against it.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench.hpp"

namespace emissions::bench {
namespace {

// A file of `size` bytes, allocated and mapped shared, in a fresh temporary directory; all
// removed.
class MappedScratch {
 public:
  explicit MappedScratch(std::size_t size) : size_(size) {
    const std::string file = (dir_.path / "probe").string();
    fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd_ < 0) throw BenchFailure("open " + file + ": " + std::strerror(errno));
    // Allocated as the spool allocates a segment.
    if (const int err = ::posix_fallocate(fd_, 0, static_cast<off_t>(size)); err != 0) {
      throw BenchFailure("posix_fallocate " + file + ": " + std::strerror(err));
    }
    void* map = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (map == MAP_FAILED) throw BenchFailure("mmap " + file + ": " + std::strerror(errno));
    map_ = static_cast<unsigned char*>(map);
  }
  ~MappedScratch() {
    if (map_ != nullptr) ::munmap(map_, size_);
    if (fd_ >= 0) ::close(fd_);
  }
  MappedScratch(const MappedScratch&) = delete;
  MappedScratch& operator=(const MappedScratch&) = delete;

  [[nodiscard]] unsigned char* data() const { return map_; }
  [[nodiscard]] std::size_t size() const { return size_; }
  [[nodiscard]] int fd() const { return fd_; }

 private:
  TempDir dir_{"disk"};  // first: removed last, after the file is closed
  std::size_t size_ = 0;
  int fd_ = -1;
  unsigned char* map_ = nullptr;
};

// Threads that keep the other cores busy (a plain loop, no system call) until destroyed.
// Joined by the destructor.
class BusyCores {
 public:
  explicit BusyCores(unsigned threads) {
    for (unsigned i = 0; i < threads; ++i) {
      threads_.emplace_back([this] {
        std::uint64_t spins = 0;
        while (!stop_.load(std::memory_order_relaxed))
          ++spins;
        sink_.fetch_add(spins, std::memory_order_relaxed);
      });
    }
  }
  ~BusyCores() {
    stop_.store(true, std::memory_order_relaxed);
    for (std::thread& t : threads_)
      t.join();
  }
  BusyCores(const BusyCores&) = delete;
  BusyCores& operator=(const BusyCores&) = delete;

 private:
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> sink_{0};
  std::vector<std::thread> threads_;
};

}  // namespace

DiskSyncResult probe_disk_sync(std::chrono::milliseconds duration, std::size_t bytes_per_sync,
                               bool busy_cores) {
  // As the spool's segments: written through a shared mapping, synced with fdatasync.
  MappedScratch scratch(64u << 20);
  std::optional<BusyCores> busy;
  if (busy_cores) busy.emplace(std::max(1u, std::thread::hardware_concurrency()) - 1);
  std::vector<std::int64_t> latencies_ns;
  std::size_t offset = 0;
  const std::int64_t start = steady_ns();
  const std::int64_t end = start + std::chrono::nanoseconds(duration).count();
  std::int64_t now = start;
  unsigned char fill = 1;
  while (now < end) {
    if (offset + bytes_per_sync > scratch.size()) offset = 0;
    std::memset(scratch.data() + offset, fill++, bytes_per_sync);
    offset += bytes_per_sync;
    const std::int64_t before = steady_ns();
    if (::fdatasync(scratch.fd()) != 0) {
      throw BenchFailure(std::string("fdatasync: ") + std::strerror(errno));
    }
    now = steady_ns();
    latencies_ns.push_back(now - before);
  }
  std::sort(latencies_ns.begin(), latencies_ns.end());
  DiskSyncResult result;
  result.syncs = latencies_ns.size();
  result.syncs_per_second =
      static_cast<double>(result.syncs) / (static_cast<double>(now - start) / 1e9);
  // Nearest rank, as the commit percentiles.
  result.p50_us = percentile(latencies_ns, 0.50) / 1e3;
  result.p99_us = percentile(latencies_ns, 0.99) / 1e3;
  return result;
}

}  // namespace emissions::bench
