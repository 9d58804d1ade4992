// Commit-to-delivery latency: when each request committed, and a histogram of how long its
// events took to reach an adapter.
//
// Adapters only see emissions::Event, so a request writes its commit time into a CommitLog
// slot and puts the slot number in each event's metadata ("request"); an adapter reads the
// slot back when a batch has been handled. Nothing on this path locks or allocates.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include "emissions/event.hpp"

namespace demo {

// Nanoseconds on the steady clock: what both sides of a latency measurement read.
inline std::int64_t steady_now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// One commit time per request slot, preallocated for the whole run (8 bytes per slot).
// Thread-safety: each slot is written by one request thread before it commits, and read by
// consumer threads after the commit hands the events over, so relaxed atomics suffice.
class CommitLog {
 public:
  explicit CommitLog(std::size_t slots)
      : slots_(slots), times_(std::make_unique<std::atomic<std::int64_t>[]>(slots)) {}

  [[nodiscard]] std::size_t slots() const noexcept { return slots_; }

  void record(std::size_t slot, std::int64_t committed_at_ns) noexcept {
    if (slot < slots_) times_[slot].store(committed_at_ns, std::memory_order_relaxed);
  }

  // The commit time of `slot`, or nothing for an unknown or unrecorded slot.
  [[nodiscard]] std::optional<std::int64_t> committed_at(std::size_t slot) const noexcept {
    if (slot >= slots_) return std::nullopt;
    const std::int64_t t = times_[slot].load(std::memory_order_relaxed);
    if (t == 0) return std::nullopt;
    return t;
  }

  // The slot an event carries in its metadata ("request"), if any.
  [[nodiscard]] static std::optional<std::size_t> slot_of(const emissions::Event& event) {
    const auto it = event.metadata.find("request");
    if (it == event.metadata.end() || !it->is_number_unsigned()) return std::nullopt;
    return it->get<std::size_t>();
  }

 private:
  std::size_t slots_;
  std::unique_ptr<std::atomic<std::int64_t>[]> times_;
};

// A log-linear histogram of non-negative nanosecond values: exact below 16 ns, then 16
// buckets per power of two, so a quantile is within about 6% of the true value. Fixed size
// (under 8 KiB); record() never allocates. Not thread-safe: one writer, read after it is done.
class LatencyHistogram {
 public:
  void record(std::int64_t ns) noexcept {
    const auto v = static_cast<std::uint64_t>(ns < 0 ? 0 : ns);
    ++counts_[index_of(v)];
    ++total_;
  }

  void merge(const LatencyHistogram& other) noexcept {
    for (std::size_t i = 0; i < kBuckets; ++i)
      counts_[i] += other.counts_[i];
    total_ += other.total_;
  }

  [[nodiscard]] std::uint64_t count() const noexcept { return total_; }

  // The value below which a share `q` (0..1) of the recorded values fall: the middle of the
  // bucket holding that rank. 0 when nothing was recorded.
  [[nodiscard]] std::int64_t quantile(double q) const noexcept {
    if (total_ == 0) return 0;
    const double wanted = q * static_cast<double>(total_);
    auto rank = static_cast<std::uint64_t>(wanted);
    if (static_cast<double>(rank) < wanted) ++rank;  // ceil without <cmath>
    if (rank == 0) rank = 1;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) return static_cast<std::int64_t>(lower_bound(i) + width(i) / 2);
    }
    return static_cast<std::int64_t>(lower_bound(kBuckets - 1));
  }

 private:
  static constexpr unsigned kSubBits = 4;  // 16 buckets per power of two
  static constexpr std::uint64_t kSub = std::uint64_t{1} << kSubBits;
  static constexpr std::size_t kBuckets = (64 - kSubBits + 1) * kSub;

  static std::size_t index_of(std::uint64_t v) noexcept {
    if (v < kSub) return static_cast<std::size_t>(v);
    const auto exponent = static_cast<unsigned>(std::bit_width(v) - 1);  // >= kSubBits
    const std::uint64_t sub = (v >> (exponent - kSubBits)) & (kSub - 1);
    return static_cast<std::size_t>((exponent - kSubBits + 1) * kSub + sub);
  }
  static std::uint64_t lower_bound(std::size_t i) noexcept {
    if (i < kSub) return i;
    const auto exponent = static_cast<unsigned>(i / kSub) + kSubBits - 1;
    return (kSub + i % kSub) << (exponent - kSubBits);
  }
  static std::uint64_t width(std::size_t i) noexcept {
    if (i < kSub) return 1;
    const auto exponent = static_cast<unsigned>(i / kSub) + kSubBits - 1;
    return std::uint64_t{1} << (exponent - kSubBits);
  }

  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t total_ = 0;
};

}  // namespace demo
