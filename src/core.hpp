// Internal: the delivery pipeline behind an Emitter.
//
// How an event travels: Transaction::emit appends to the transaction's vector. commit()
// calls Core::publish, which reserves room in every adapter's queue(s), wraps the whole
// vector in one reference-counted Batch and pushes that one pointer into each queue (one
// hand-off per queue, whatever the number of events). Each queue's consumer thread(s) pop
// batches, cut them into runs of interested events of at most max_demand, and call the
// adapter's handle_events with a span over the shared events. The last queue to finish
// with a Batch frees it.
//
// A Lane is one adapter: one queue and one consumer normally; with concurrency N, N
// consumers share one queue, or (with partition_by) each of N queues receives every batch
// and its consumer handles the events whose key maps to it.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "batch.hpp"
#include "batch_ring.hpp"
#include "emissions/config.hpp"
#include "emissions/emitter.hpp"
#include "emissions/event.hpp"
#include "parking.hpp"

namespace emissions::detail {

class HandlerDispatcher;

// The cascade depth of the batch being delivered on this thread (handlers read it).
int delivering_depth() noexcept;

struct LaneOptions {
  std::size_t max_demand;
  std::size_t buffer_size;
  Overflow overflow;
  std::chrono::milliseconds block_timeout;
  std::chrono::microseconds idle_spin;
  std::size_t concurrency;
  std::function<std::uint64_t(const Event&)> partition_by;
};

// One bounded ring with its reservation counter and the consumers parked on it.
struct Queue {
  Queue(std::size_t capacity_events, std::size_t partition)
      : ring(capacity_events), capacity(capacity_events), index(partition) {}
  BoundedRing<Batch> ring;
  const std::size_t capacity;  // events
  const std::size_t index;     // partition number when the lane is partitioned
  alignas(64) std::atomic<std::size_t> occupancy{0};    // events reserved or queued
  WaitChannel space;                                    // commits blocked on a full queue
  WaitChannel wakeup;                                   // idle consumers
  alignas(64) std::atomic<std::uint64_t> completed{0};  // batches finished or evicted
};

struct Consumer {
  Queue* queue = nullptr;
  std::thread thread;
  std::atomic<std::uint32_t> exited{0};
  std::atomic<std::uint64_t> in_call_events{0};  // events inside a handle_events call now
  bool joined = false;
};

// One adapter: its queues, consumers and counters.
struct Lane {
  Lane(std::shared_ptr<Adapter> a, LaneOptions o);

  // Whether events of `queue` include `event` (always, unless partitioned).
  [[nodiscard]] bool owns(const Queue& queue, const Event& event) const noexcept;
  [[nodiscard]] bool partitioned() const noexcept { return queues.size() > 1; }

  std::shared_ptr<Adapter> adapter;
  const std::string name;
  const LaneOptions options;
  std::vector<std::unique_ptr<Queue>> queues;
  std::vector<std::unique_ptr<Consumer>> consumers;

  alignas(64) std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> filtered{0};
  std::atomic<std::uint64_t> dropped{0};
  bool terminated = false;
};

class Core : public std::enable_shared_from_this<Core> {
 public:
  explicit Core(Config config);  // validates (ConfigError); starts no thread
  ~Core();
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  void start();

  // Hands the batch to every Lane. On success `batch` is taken (null); on overloaded or
  // closed it is left untouched and nothing was delivered anywhere. `cascade_depth` > 0
  // marks events emitted by handlers: they are accepted until the final drain of a
  // shutdown, and never wait for room in the handler dispatcher's own queue (which
  // would deadlock against the pool that is emitting them).
  Status publish(BatchPtr& batch, int cascade_depth = 0);

  // Event storage for a transaction, recycled from delivered batches when possible.
  BatchPtr acquire_batch() { return pool_.acquire(); }
  void recycle(Batch* batch) noexcept { pool_.recycle(batch); }

  Status drain(std::chrono::milliseconds timeout);
  Status shutdown(std::chrono::milliseconds timeout);
  // After shutdown: waits, without limit, for consumers stuck in an adapter call, then
  // terminates their adapters. Used by ~Emitter.
  void finish();

  [[nodiscard]] bool closed() const noexcept { return closed_.load(std::memory_order_relaxed); }
  // Whether a transaction at `cascade_depth` may still emit and commit: requests until
  // shutdown starts, handlers' cascades until its drain ends.
  [[nodiscard]] bool accepting(int cascade_depth) const noexcept {
    return !(cascade_depth > 0 ? sealed_ : closed_).load(std::memory_order_relaxed);
  }
  [[nodiscard]] int max_cascade_depth() const noexcept { return max_cascade_depth_; }
  [[nodiscard]] EmitterStats stats() const;
  void count_discarded(std::size_t events) noexcept;
  void count_cascade_dropped() noexcept;

 private:
  enum class StopMode : std::uint32_t { running, when_empty, abandon };

  // Per-thread-ish counters, so committing threads do not share a cache line.
  struct alignas(64) Shard {
    std::atomic<std::int64_t> in_flight{0};
    std::atomic<std::uint64_t> events{0};
    std::atomic<std::uint64_t> transactions{0};
    std::atomic<std::uint64_t> discarded{0};
    std::atomic<std::uint64_t> cascade_dropped{0};
  };
  static constexpr std::size_t kShards = 16;
  Shard& my_shard() noexcept;

  bool try_reserve(Queue& queue, std::size_t n) noexcept;
  // Waits up to commit_start + timeout; `commit_start` is read from the clock on first need
  // and shared by the commit's queues.
  bool reserve_blocking(Queue& queue, std::size_t n,
                        std::chrono::steady_clock::time_point& commit_start,
                        std::chrono::milliseconds timeout) noexcept;
  void unreserve(Queue& queue, std::size_t n) noexcept;
  bool evict_oldest(Lane& lane, Queue& queue, const char* reason) noexcept;
  void count_dropped(Lane& lane, const Queue& queue, std::span<const Event> events,
                     const char* reason) noexcept;
  // Drops one queue's reference; the last one recycles the storage.
  void release(Batch* batch) noexcept {
    if (batch->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) pool_.recycle(batch);
  }
  std::uint64_t discard_queued(Lane& lane, const char* reason) noexcept;

  void run_consumer(Lane& lane, Consumer& consumer) noexcept;
  void idle_wait(Queue& queue, std::chrono::microseconds idle_spin) noexcept;
  void deliver(Lane& lane, const Queue& queue, const Batch& batch, bool& need_init) noexcept;
  void deliver_run(Lane& lane, std::span<const Event> run, bool& need_init) noexcept;
  void finish_batch(Queue& queue) noexcept;
  void terminate_adapter(Lane& lane) noexcept;

  std::vector<std::size_t> push_targets() const;
  bool all_done(const std::vector<std::size_t>& targets) const noexcept;
  Status wait_for(const std::vector<std::size_t>& targets,
                  std::chrono::steady_clock::time_point deadline);
  Status drain_until(std::chrono::steady_clock::time_point deadline,
                     std::chrono::milliseconds timeout);

  BatchPool pool_;  // declared first: destroyed last, after every queue has let go
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::vector<Queue*> all_queues_;  // flattened, for drains
  std::shared_ptr<HandlerDispatcher> dispatcher_;
  Lane* dispatcher_lane_ = nullptr;
  int max_cascade_depth_ = 8;
  std::array<Shard, kShards> shards_;
  std::atomic<bool> closed_{false};  // no new requests' commits
  std::atomic<bool> sealed_{false};  // no commits at all (after the shutdown drain)
  std::atomic<std::uint64_t> cascade_commits_{0};
  std::atomic<StopMode> stop_{StopMode::running};
  WaitChannel progress_;  // drain() waiters: notified when a batch finishes
  WaitChannel exits_;     // shutdown() waiters: notified when a consumer exits
  std::mutex shutdown_mutex_;
  bool shut_down_ = false;
  bool started_ = false;
  Status shutdown_result_;
};

}  // namespace emissions::detail
