// Internal: the state behind a Delivery handle: one run of events handed to an
// AsyncAdapter, settled event by event from any thread.
//
// It keeps what settling needs alive on its own (the batch's storage through
// PipelineShared, the lane's counters, the consumer's window), so a settlement after the
// Emitter is gone touches no freed memory.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <span>
#include <string_view>
#include <vector>

#include "emissions/delivery.hpp"
#include "pipeline/core.hpp"

namespace emissions::detail {

// Memory for one consumer's delivery states (each with its shared_ptr control block),
// recycled. A state is made on the consumer thread and usually freed on an adapter's
// callback thread: from malloc that is a cross-thread free per delivery (glibc hands the
// block back to the consumer's arena under that arena's lock, and grows arenas meanwhile).
// Blocks come back through a lock-free stack (any thread pushes; only the consumer thread
// takes, the whole stack at once, so no ABA). It holds at most as many blocks as states
// were alive at once (the window, plus handles kept after settlement), and lives until its
// owner let go (release()) and every block is back.
class DeliveryBlocks {
 public:
  static constexpr std::size_t kBlockBytes = 512;
  DeliveryBlocks() = default;
  DeliveryBlocks(const DeliveryBlocks&) = delete;
  DeliveryBlocks& operator=(const DeliveryBlocks&) = delete;

  // A block of kBlockBytes (max_align_t aligned). One thread at a time (the consumer's).
  // Throws std::bad_alloc.
  void* take() {
    if (spare_ == nullptr) spare_ = returned_.exchange(nullptr, std::memory_order_acquire);
    void* block = nullptr;
    if (spare_ != nullptr) {
      block = spare_;
      spare_ = spare_->next;
    } else {
      block = ::operator new(kBlockBytes);
    }
    refs_.fetch_add(1, std::memory_order_relaxed);
    return block;
  }
  // Any thread; `block` came from take().
  void give_back(void* block) noexcept {
    auto* node = static_cast<Node*>(block);
    node->next = returned_.load(std::memory_order_relaxed);
    while (!returned_.compare_exchange_weak(node->next, node, std::memory_order_release,
                                            std::memory_order_relaxed)) {
    }
    release();
  }
  // The owner's reference (or a block's, from give_back).
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

 private:
  struct Node {
    Node* next;
  };
  ~DeliveryBlocks() {
    free_list(spare_);
    free_list(returned_.load(std::memory_order_acquire));
  }
  static void free_list(Node* node) noexcept {
    while (node != nullptr) {
      Node* next = node->next;
      ::operator delete(node);
      node = next;
    }
  }
  std::atomic<std::size_t> refs_{1};  // the owner, plus one per block taken and not back
  std::atomic<Node*> returned_{nullptr};
  Node* spare_ = nullptr;  // taking thread only
};

// std::allocate_shared's allocator for delivery states: one block from DeliveryBlocks.
template <typename T>
struct DeliveryAllocator {
  using value_type = T;
  explicit DeliveryAllocator(DeliveryBlocks* b) noexcept : blocks(b) {}
  template <typename U>
  DeliveryAllocator(const DeliveryAllocator<U>& other) noexcept  // NOLINT: implicit rebinding
      : blocks(other.blocks) {}
  T* allocate(std::size_t n) {
    static_assert(sizeof(T) <= DeliveryBlocks::kBlockBytes &&
                  alignof(T) <= alignof(std::max_align_t));
    if (n != 1) return static_cast<T*>(::operator new(n * sizeof(T)));
    return static_cast<T*>(blocks->take());
  }
  void deallocate(T* p, std::size_t n) noexcept {
    if (n != 1) {
      ::operator delete(p);
    } else {
      blocks->give_back(p);
    }
  }
  template <typename U>
  bool operator==(const DeliveryAllocator<U>& other) const noexcept {
    return blocks == other.blocks;
  }
  DeliveryBlocks* blocks;
};

// What every delivery of one consumer needs to settle, kept alive together: one reference
// per delivery instead of one per part (each a contended atomic on the settling thread).
struct DeliveryHome {
  DeliveryHome() = default;
  DeliveryHome(const DeliveryHome&) = delete;
  DeliveryHome& operator=(const DeliveryHome&) = delete;
  ~DeliveryHome() {
    if (blocks != nullptr) blocks->release();
  }
  std::shared_ptr<PipelineShared> shared;
  std::shared_ptr<LaneCounters> counters;
  std::shared_ptr<Window> window;
  std::shared_ptr<RetryBox> retries;  // null unless the lane decides failures
  // The consumer's recycled state memory (null for a detached delivery); owned.
  DeliveryBlocks* blocks = nullptr;
};

struct DeliveryState {
  DeliveryState(std::shared_ptr<const DeliveryHome> delivery_home, Batch* batch_ref,
                std::span<const Event> run, std::size_t position);
  ~DeliveryState();

  // Settles events()[index] (or every unsettled one when index is kAll). Returns how many
  // it settled. The settlement that leaves none unsettled completes the delivery.
  enum class Outcome { delivered, failed, dropped };
  std::size_t settle(std::size_t index, Outcome outcome, Status* error,
                     const char* reason) noexcept;
  static constexpr std::size_t kAll = static_cast<std::size_t>(-1);
  // Whether events()[index] is settled (index < events.size()).
  [[nodiscard]] bool is_settled(std::size_t index) const noexcept {
    return (settled_words[index / 64].load(std::memory_order_acquire) >> (index % 64) & 1U) != 0;
  }

  const std::shared_ptr<const DeliveryHome> home;  // keeps the four below alive
  PipelineShared* const shared;
  LaneCounters* const counters;
  Window* const window;
  Batch* batch;  // one reference (null outside a pipeline), released with the state
  const std::span<const Event> events;
  const std::size_t ticket;  // the batch's ring position (drain watermarks)
  // Its index in window->open while it is there (complete() takes it out without a scan).
  // Guarded by window->mutex.
  std::size_t window_slot = 0;
  std::chrono::steady_clock::time_point handed_at{};  // set when someone listens
  // One bit per event, set by the settlement that wins it. Runs of up to 64 events (the
  // default max_demand is 50) keep theirs inline: no allocation, and ack() of a whole run
  // is one atomic OR. Beside them, in the same storage, two more bitmaps for the failures
  // whose entry in `failures` could not be allocated (out of memory on the settling thread):
  // the failure itself, and whether its error was retriable (take_failures()).
  static constexpr std::size_t kInlineWords = 1;
  std::atomic<std::uint64_t> inline_words[3 * kInlineWords]{};
  std::unique_ptr<std::atomic<std::uint64_t>[]> heap_words;  // runs of over 64 events
  std::atomic<std::uint64_t>* settled_words;
  std::atomic<std::uint64_t>* unrecorded_words;            // failed, not in `failures`
  std::atomic<std::uint64_t>* unrecorded_retriable_words;  // ... with a retriable error
  std::atomic<std::size_t> unsettled;
  std::atomic<std::int64_t> retry_after_ms{0};
  // Per-delivery tallies, for the completion's telemetry.
  std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> failed{0};
  // The first failure's Status, written once by whoever wins `has_error`.
  std::atomic<bool> has_error{false};
  Status first_error;

  // At-least-once: when set (the lane retries or dead-letters), a failure is not counted
  // here but left in `failures` for the consumer to decide (Core::decide_failures); the
  // delivery, once complete, waits in `retries` until then.
  std::size_t lane_index = static_cast<std::size_t>(-1);  // for the commit's tracker
  RetryBox* const retries;                                // home->retries
  std::mutex failures_mutex;
  std::vector<FailedEvent> failures;  // guarded by failures_mutex
  // Some failure went to `failures` or to the unrecorded bits (read without lock).
  std::atomic<bool> deferred{false};
  // Moves every failure waiting for the consumer's decision into `out` (empty on entry): the
  // entries of `failures`, then the unrecorded ones, each with a Status of its code alone
  // (`unavailable` if its error was retriable, else `internal`: the error itself could not be
  // kept). Returns how many unrecorded ones did not fit in `out` (out of memory here too):
  // they are taken all the same, for the caller to count as failed. Any thread.
  std::size_t take_failures(std::vector<FailedEvent>& out) noexcept;
  // Whether a failure waits for a decision (in `failures` or in the unrecorded bits).
  [[nodiscard]] bool has_failures() noexcept;
  // Counts what is still undecided as dropped (shutdown). Returns how many.
  std::size_t drop_failures(const char* reason) noexcept;

  // Detached deliveries only (empty in a pipeline): called by settle() for each event it
  // settles, with the event's index, whether it was delivered, and its failure's Status
  // (null when delivered or dropped), on the settling thread, with no lock of the library
  // held, before the delivery's tallies count it. Set before the handle is given out; must
  // not throw.
  // `retry_after`: the adapter's Delivery::retry_after() so far (0 when none), for a failure.
  using SettledCallback = std::function<void(std::size_t index, bool delivered, const Status* error,
                                             std::chrono::milliseconds retry_after)>;
  SettledCallback on_settled;

 private:
  void complete() noexcept;
};

// How many settlements (DeliveryState::settle) are under way on this thread: a commit made
// from code they run (telemetry, settlement callbacks) delivers nothing itself
// (Core::help_consumers), so an adapter's deliver() never runs inside its own ack().
int settling_depth() noexcept;

// A delivery attached to no pipeline (adapters::Batching driving an asynchronous inner,
// testing::deliver_now): it owns `events`, in a batch of its own.
std::shared_ptr<DeliveryState> make_detached_delivery(std::string_view adapter_name,
                                                      std::vector<Event> events);

// Hands a detached delivery of `events` to `adapter`, its attempt() being `attempt`, and
// returns at once: `on_settled` (see DeliveryState) reports each event as it is settled,
// from whichever thread settles it (inline, for what deliver() settles itself). When the
// delivery cannot be made (out of memory) or deliver() throws, the events not yet settled
// fail with `internal` through `on_settled`, and that Status is returned (a throw means
// init() again); otherwise ok. Events the adapter never settles are never reported. Never
// throws.
Status deliver_detached(AsyncAdapter& adapter, std::vector<Event> events, std::uint32_t attempt,
                        DeliveryState::SettledCallback on_settled) noexcept;

struct DeliveryAccess {
  static Delivery make(std::shared_ptr<DeliveryState> state) noexcept {
    return Delivery(std::move(state));
  }
};

}  // namespace emissions::detail
