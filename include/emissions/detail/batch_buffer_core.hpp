// emissions/detail/batch_buffer_core.hpp: the state and the algorithms behind BatchBuffer<T>;
// not part of the API.
//
// BatchBuffer<T> (emissions/batch_buffer.hpp) documents the contract and forwards every
// call here, inline. The member definitions are in batch_buffer_lifecycle.hpp (threads,
// shutdown), batch_buffer_insert.hpp (the insert paths) and batch_buffer_flush.hpp
// (hand-offs, flush requests, the flusher loop). What does not depend on T is compiled in
// src/batch_buffer/: option checks, statuses, telemetry, and the timer (batch_timer.hpp).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "emissions/clock.hpp"
#include "emissions/deadline.hpp"
#include "emissions/detail/batch_buffer.hpp"
#include "emissions/detail/batch_timer.hpp"
#include "emissions/detail/partition_mutex.hpp"
#include "emissions/status.hpp"

namespace emissions {
struct FlushContext;
struct BatchBufferPartitionInfo;
template <typename T>
struct BatchBufferOptions;
}  // namespace emissions

namespace emissions::detail {

template <typename T>
class BatchBufferCore {
 public:
  using Flush = std::function<Status(std::vector<T>&& items, const FlushContext& ctx)>;

  BatchBufferCore(BatchBufferOptions<T> options, Flush on_flush);
  ~BatchBufferCore();  // shutdown(Deadline::max())
  BatchBufferCore(const BatchBufferCore&) = delete;
  BatchBufferCore& operator=(const BatchBufferCore&) = delete;

  // BatchBuffer<T>'s operations, as documented there.
  template <typename U>
  EMISSIONS_DETAIL_HOT Status insert_one(U&& item);
  Status insert_batch(std::vector<T> items);
  void flush();
  std::vector<Status> sync_flush(Deadline deadline);
  std::vector<T> dump();
  [[nodiscard]] std::size_t size() const;
  [[nodiscard]] std::vector<BatchBufferPartitionInfo> info() const;
  [[nodiscard]] const std::string& name() const noexcept { return settings_.name; }
  [[nodiscard]] std::size_t partitions() const noexcept { return n_; }
  Status shutdown(Deadline deadline);

 private:
  using Partition = BatchPartition<T>;
  using Lock = std::unique_lock<PartitionMutex>;
  struct Group {
    std::size_t partition;
    std::vector<T>* items;
  };

  static constexpr std::size_t kAnySize = RoundRobinCursor::kAnySize;
  static constexpr std::chrono::microseconds kSpillGrace{1000};

  // Inserting (batch_buffer_insert.hpp).
  template <typename U>
  EMISSIONS_DETAIL_HOT Status insert_into(RoundRobinCursor* c, std::size_t i, U&& item);
  template <typename U>
  EMISSIONS_DETAIL_HOT Status append_one(RoundRobinCursor* c, std::size_t i, Lock& lock, U&& item);
  template <typename U>
  EMISSIONS_DETAIL_COLD Status insert_contended(RoundRobinCursor* c, std::size_t i, bool inserter,
                                                U&& item);
  template <typename U>
  EMISSIONS_DETAIL_COLD Status insert_traced(RoundRobinCursor* c, std::size_t i, U&& item);
  template <typename U>
  EMISSIONS_DETAIL_COLD Status insert_blocked(std::size_t i, Lock& lock, U&& item);
  template <typename U>
  Status insert_waiting(std::size_t i, Lock& lock, U&& item);
  template <typename Place>
  Status insert_anywhere(std::size_t first, Place&& place);
  Status insert_groups(std::vector<Group>& groups);
  void note_room();
  // This thread's round-robin state for this buffer; continue_run() keeps its inserts on
  // partition i, or moves them to the next one once i has handed off a batch.
  EMISSIONS_DETAIL_HOT RoundRobinCursor& cursor() noexcept;
  EMISSIONS_DETAIL_COLD void reseed(RoundRobinCursor& c) noexcept;
  void continue_run(std::size_t i, bool handed_off) noexcept;

  // These run with the partition locked.
  [[nodiscard]] bool has_room(const Partition& p) const noexcept {
    return p.items.size() < p.limit;
  }
  template <typename U>
  bool push(Partition& p, Lock& lock, U&& item);  // true: it handed off a batch
  bool append_group(Partition& p, std::vector<T>& group);
  void take_batch(Partition& p);
  EMISSIONS_DETAIL_COLD void hand_off(Partition& p, Lock& lock);  // take_batch, unlock, wake
  void resolve_waiters(Partition& p);

  // Flushing (batch_buffer_flush.hpp).
  void request_flush(Partition& p);  // flush what the partition holds now
  void run_flusher(std::size_t i);
  Status run_flush(std::size_t i, std::uint64_t batch, std::vector<T>& items);
  void flush_overdue(std::size_t i, std::uint64_t batch);  // the timer's report

  // Threads (batch_buffer_lifecycle.hpp).
  void wake_all();
  void join_threads();

  BatchBufferSettings settings_;  // before timer_, which keeps a reference
  std::function<std::uint64_t(const T&)> partition_by_;
  Flush flush_;
  Clock* clock_ = nullptr;  // settings_.clock.get()
  std::size_t reserve_ = 0;
  std::uint64_t id_ = 0;
  std::size_t n_ = 0;         // partitions
  bool round_robin_ = false;  // no partition_by and more than one partition
  std::atomic<std::size_t> round_robin_seed_{0};
  std::vector<std::unique_ptr<Partition>> parts_;
  BatchTimer timer_;

  // Lock order: a partition's mu before room_mu_; the timer's lock is never held with either.
  // Round-robin inserts wait here when every partition is full.
  std::mutex room_mu_;
  std::condition_variable room_cv_;
  std::uint64_t room_epoch_ = 0;  // bumped whenever a partition may have made room

  std::mutex shutdown_mu_;
  bool joined_ = false;
  std::vector<std::thread> flushers_;
  Clock::Subscription subscription_;
};

}  // namespace emissions::detail
