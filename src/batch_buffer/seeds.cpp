// BatchBuffer's seeds for jitter and its process-wide buffer ids.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>

#include "emissions/detail/batch_buffer.hpp"

namespace emissions::detail {

std::uint64_t random_seed() noexcept {
  // random_device may throw where no entropy source exists; time and a counter suffice
  // for jitter.
  static std::atomic<std::uint64_t> counter{0};
  std::uint64_t seed =
      static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
      (counter.fetch_add(1, std::memory_order_relaxed) * 0x9e3779b97f4a7c15ULL);
  try {
    std::random_device rd;
    seed ^= (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  } catch (...) {
  }
  return seed;
}

std::uint64_t next_batch_buffer_id() noexcept {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace emissions::detail
