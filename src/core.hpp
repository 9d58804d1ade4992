// Internal: the delivery pipeline behind an Emitter.
//
// How an event travels: Transaction::emit appends to the transaction's vector. commit()
// calls Core::publish, which reserves room in every adapter's queue (its Lane), wraps the
// whole vector in one reference-counted Batch and pushes that one pointer into each Lane's
// ring (one hand-off per adapter, whatever the number of events). Each Lane's consumer
// thread pops batches, cuts them into runs of interested events of at most max_demand, and
// calls the adapter's handle_events with a span over the shared events. The last Lane to
// finish with a Batch frees it.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "batch_ring.hpp"
#include "emissions/config.hpp"
#include "emissions/emitter.hpp"
#include "emissions/event.hpp"
#include "parking.hpp"

namespace emissions::detail {

// The unit of hand-off: one committed transaction's events, shared by every Lane.
struct Batch {
  explicit Batch(std::vector<Event>&& e) : events(std::move(e)) {}
  std::vector<Event> events;
  std::atomic<std::uint32_t> refs{0};
};

// Drops one Lane's reference; the last one frees the events.
inline void release(Batch* batch) noexcept {
  if (batch->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    std::unique_ptr<Batch> owner(batch);
  }
}

struct LaneOptions {
  std::size_t max_demand;
  std::size_t buffer_size;
  Overflow overflow;
  std::chrono::milliseconds block_timeout;
  std::chrono::microseconds idle_spin;
};

// One adapter's queue, consumer and counters.
struct Lane {
  Lane(std::shared_ptr<Adapter> a, LaneOptions o)
      : adapter(std::move(a)), name(adapter->name()), options(o), ring(o.buffer_size) {}

  std::shared_ptr<Adapter> adapter;
  const std::string name;
  const LaneOptions options;
  BoundedRing<Batch> ring;

  alignas(64) std::atomic<std::size_t> occupancy{0};   // events reserved or queued
  WaitChannel space;                                   // commits blocked on a full queue
  alignas(64) std::atomic<std::uint32_t> sleeping{0};  // consumer parked (futex word)

  // Written by the consumer (and by evictions for dropped/completed).
  alignas(64) std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> filtered{0};
  std::atomic<std::uint64_t> dropped{0};
  std::atomic<std::uint64_t> completed{0};       // batches finished (handled or evicted)
  std::atomic<std::uint64_t> in_call_events{0};  // events inside a handle_events call now

  std::thread consumer;
  std::atomic<std::uint32_t> exited{0};  // futex word: 1 once the consumer returned
  bool joined = false;
  bool terminated = false;
};

class Core {
 public:
  explicit Core(Config config);  // validates (ConfigError); starts no thread
  ~Core();
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  void start();

  // Hands `events` to every Lane. On success `events` is left empty; on overloaded or
  // closed it is left untouched and nothing was delivered anywhere.
  Status publish(std::vector<Event>& events);

  Status drain(std::chrono::milliseconds timeout);
  Status shutdown(std::chrono::milliseconds timeout);
  // After shutdown: waits, without limit, for consumers stuck in an adapter call, then
  // terminates their adapters. Used by ~Emitter.
  void finish();

  [[nodiscard]] bool closed() const noexcept { return closed_.load(std::memory_order_relaxed); }
  [[nodiscard]] EmitterStats stats() const;
  void count_discarded(std::size_t events) noexcept;

 private:
  enum class StopMode : std::uint32_t { running, when_empty, abandon };

  // Per-thread-ish counters, so committing threads do not share a cache line.
  struct alignas(64) Shard {
    std::atomic<std::int64_t> in_flight{0};
    std::atomic<std::uint64_t> events{0};
    std::atomic<std::uint64_t> transactions{0};
    std::atomic<std::uint64_t> discarded{0};
  };
  static constexpr std::size_t kShards = 16;
  Shard& my_shard() noexcept;

  bool try_reserve(Lane& lane, std::size_t n) noexcept;
  bool reserve_blocking(Lane& lane, std::size_t n,
                        std::chrono::steady_clock::time_point deadline) noexcept;
  void unreserve(Lane& lane, std::size_t n) noexcept;
  bool evict_oldest(Lane& lane, const char* reason) noexcept;
  void count_dropped(Lane& lane, const std::vector<Event>& events, const char* reason) noexcept;

  void run_consumer(Lane& lane) noexcept;
  void idle_wait(Lane& lane) noexcept;
  void deliver(Lane& lane, const std::vector<Event>& events, bool& need_init) noexcept;
  void deliver_run(Lane& lane, std::span<const Event> run, bool& need_init) noexcept;
  void finish_batch(Lane& lane) noexcept;
  void terminate_adapter(Lane& lane) noexcept;
  bool all_done(const std::vector<std::size_t>& targets) const noexcept;

  std::vector<std::unique_ptr<Lane>> lanes_;
  std::array<Shard, kShards> shards_;
  std::atomic<bool> closed_{false};
  std::atomic<StopMode> stop_{StopMode::running};
  WaitChannel progress_;  // drain() waiters: notified when a batch finishes
  WaitChannel exits_;     // shutdown() waiters: notified when a consumer exits
  std::mutex shutdown_mutex_;
  bool shut_down_ = false;
  Status shutdown_result_;
};

}  // namespace emissions::detail
