// Internal: a first-in, first-out queue in one buffer that keeps its capacity. The client's
// queue of requests is filled by the consumers' threads and emptied by the I/O thread: a
// std::deque there allocated a block on the filling thread for every few requests and freed
// it on the emptying one. This queue allocates only to grow (on the thread that pushes),
// and taking an element leaves its slot empty (moved from), so the emptying thread frees
// nothing.
//
//   RingQueue<std::string> queue;
//   queue.push_back("a");
//   std::string a = queue.take_front();  // "a"; the slot is kept for a later push_back
//
// Not thread-safe (the client guards it with its mutex).
#pragma once

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <utility>
#include <vector>

namespace emissions::detail::webhooks {

template <typename T>
class RingQueue {
  static_assert(std::is_nothrow_move_assignable_v<T> && std::is_nothrow_move_constructible_v<T>,
                "elements move between slots without throwing");

 public:
  RingQueue() = default;
  // A moved-from queue is empty (the implicit moves would leave its count without slots).
  RingQueue(RingQueue&& other) noexcept { swap(other); }
  RingQueue& operator=(RingQueue&& other) noexcept {
    RingQueue(std::move(other)).swap(*this);
    return *this;
  }
  RingQueue(const RingQueue&) = delete;
  RingQueue& operator=(const RingQueue&) = delete;
  ~RingQueue() = default;

  [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  // Slots in the buffer (0 or a power of two); push_back() allocates only beyond it.
  [[nodiscard]] std::size_t capacity() const noexcept { return slots_.size(); }

  // Appends `value`. Throws std::bad_alloc when the buffer cannot grow, before `value` is
  // moved from (the queue is then unchanged).
  void push_back(T&& value) {
    if (count_ == slots_.size()) grow();
    slots_[(head_ + count_) & (slots_.size() - 1)] = std::move(value);
    ++count_;
  }

  // Removes the first element and returns it. The queue must not be empty.
  [[nodiscard]] T take_front() noexcept {
    T value = std::move(slots_[head_]);
    head_ = (head_ + 1) & (slots_.size() - 1);
    --count_;
    return value;
  }

  void swap(RingQueue& other) noexcept {
    slots_.swap(other.slots_);
    std::swap(head_, other.head_);
    std::swap(count_, other.count_);
  }

 private:
  // Twice the slots (16 at first), the elements moved to the front in order.
  void grow() {
    std::vector<T> bigger(std::max<std::size_t>(16, slots_.size() * 2));
    for (std::size_t i = 0; i < count_; ++i)
      bigger[i] = std::move(slots_[(head_ + i) & (slots_.size() - 1)]);
    slots_.swap(bigger);
    head_ = 0;
  }

  std::vector<T> slots_;  // empty, or a power of two of them
  std::size_t head_ = 0;  // the first element's slot
  std::size_t count_ = 0;
};

}  // namespace emissions::detail::webhooks
