// Internal: a bounded multi-producer multi-consumer ring of batch pointers.
//
// A cell-sequence ring (each cell carries the ticket of the next operation allowed on it):
// one CAS per push and per pop, no lock, no allocation after construction. Producers are
// committing threads; consumers are the adapter's consumer thread(s) and, for drop_oldest
// evictions, committing threads too.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <memory>

namespace emissions::detail {

template <typename T>
class BoundedRing {
 public:
  // `min_capacity` must be at most 2^62 (callers bound it far lower: kMaxBufferSize).
  explicit BoundedRing(std::size_t min_capacity)
      : capacity_(std::bit_ceil(min_capacity < 2 ? std::size_t{2} : min_capacity)),
        mask_(capacity_ - 1),
        cells_(std::make_unique<Cell[]>(capacity_)) {
    for (std::size_t i = 0; i < capacity_; ++i)
      cells_[i].seq.store(i, std::memory_order_relaxed);
  }

  // False when the ring is full (callers bound their pushes, so this is transient).
  bool try_push(T* item) noexcept {
    std::size_t pos = tail_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& cell = cells_[pos & mask_];
      const std::size_t seq = cell.seq.load(std::memory_order_acquire);
      const auto diff = static_cast<std::ptrdiff_t>(seq) - static_cast<std::ptrdiff_t>(pos);
      if (diff == 0) {
        if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          cell.item = item;
          // seq_cst, not release: a parking consumer's check (has_item) and the producer's
          // look at its sleep flag form a Dekker pair; no fence needed, and TSan models it.
          cell.seq.store(pos + 1, std::memory_order_seq_cst);
          return true;
        }
      } else if (diff < 0) {
        return false;
      } else {
        pos = tail_.load(std::memory_order_relaxed);
      }
    }
  }

  // nullptr when empty.
  T* try_pop() noexcept {
    std::atomic<std::size_t> unused{0};
    return try_pop(unused);
  }

  // As try_pop(), publishing in `claim` (before taking it) the position it is about to take:
  // the item at `claim` or later may be in this caller's hands, not yet finished. A drain
  // reads head() first, then every claim, and so never counts a taken item as finished
  // too early (see Queue::finished_below).
  //
  // Ordering: the claim is a release store (no fence on x86) and the head advances with a
  // release CAS, so a drain that acquires a head past `pos` sees this claim, and one that
  // reads a later claim sees everything this consumer finished before making it.
  T* try_pop(std::atomic<std::size_t>& claim) noexcept {
    std::size_t pos = head_.load(std::memory_order_relaxed);
    for (;;) {
      claim.store(pos, std::memory_order_release);
      Cell& cell = cells_[pos & mask_];
      const std::size_t seq = cell.seq.load(std::memory_order_acquire);
      const auto diff = static_cast<std::ptrdiff_t>(seq) - static_cast<std::ptrdiff_t>(pos + 1);
      if (diff == 0) {
        if (head_.compare_exchange_weak(pos, pos + 1, std::memory_order_acq_rel,
                                        std::memory_order_relaxed)) {
          T* item = cell.item;
          cell.seq.store(pos + capacity_, std::memory_order_release);
          return item;
        }
      } else if (diff < 0) {
        return nullptr;
      } else {
        pos = head_.load(std::memory_order_relaxed);
      }
    }
  }

  // The item the next pop would take, or null. Meaningful only to the one thread that pops
  // (nobody else may take it meanwhile).
  [[nodiscard]] T* peek() const noexcept {
    const std::size_t pos = head_.load(std::memory_order_acquire);
    const Cell& cell = cells_[pos & mask_];
    return cell.seq.load(std::memory_order_acquire) == pos + 1 ? cell.item : nullptr;
  }

  // Whether the next pop would find an item. Used by parking consumers (seq_cst, so it
  // pairs with the producers' fence before they look for sleepers).
  [[nodiscard]] bool has_item() const noexcept {
    const std::size_t pos = head_.load(std::memory_order_seq_cst);
    return cells_[pos & mask_].seq.load(std::memory_order_seq_cst) == pos + 1;
  }

  // Pushes claimed so far (monotonic). A drain waits until this many items are finished.
  [[nodiscard]] std::size_t pushes() const noexcept {
    return tail_.load(std::memory_order_seq_cst);
  }
  // Pops claimed so far (monotonic): the position of the next item to take.
  [[nodiscard]] std::size_t head() const noexcept { return head_.load(std::memory_order_seq_cst); }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }

 private:
  struct Cell {
    std::atomic<std::size_t> seq{0};
    T* item = nullptr;
  };

  const std::size_t capacity_;
  const std::size_t mask_;
  std::unique_ptr<Cell[]> cells_;
  alignas(64) std::atomic<std::size_t> tail_{0};
  alignas(64) std::atomic<std::size_t> head_{0};
};

}  // namespace emissions::detail
