// Internal: counts one commit's settlements across lanes, and says when they are complete:
// - for Transaction::commit(cb) and Emitter::publish(events, cb), it calls the commit's
//   on_settled callback once every lane has settled every event;
// - with a spool, it tells the spool as soon as each lane that was handed the commit has
//   settled all of it (Spool::settled), so that the lane's position moves on.
//
// Nothing is tracked without either: batches carry a null tracker and every settlement
// point skips it with one branch.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "emissions/settlement.hpp"

namespace emissions::detail {

namespace spool {
class Spool;
}

class SettlementTracker {
 public:
  enum class Outcome { delivered, failed, filtered, dropped };
  using Names = std::shared_ptr<const std::vector<std::string>>;

  // `lanes` names the lanes that settle (configured adapters, then the handler dispatcher);
  // `events` is the commit's size. Starts with one extra hold, released by the committing
  // thread after publish (release_hold), so the callback never runs inside publish.
  SettlementTracker(Names lanes, std::size_t events,
                    std::function<void(const Settlement&)> callback);

  // With a spool: commit `seq` of its log, with `events` events, of which lanes
  // [0, lane_count) may be handed (hand_to) the commit. Each handed lane's settlement goes to
  // `spool` once that lane settled every event (after release_hold).
  SettlementTracker(std::shared_ptr<spool::Spool> spool, std::uint64_t seq, std::size_t events,
                    std::size_t lane_count);
  ~SettlementTracker();
  SettlementTracker(const SettlementTracker&) = delete;
  SettlementTracker& operator=(const SettlementTracker&) = delete;

  // Spool mode, before the commit is handed to any lane: its sequence number, when it was
  // not known at construction.
  void set_seq(std::uint64_t seq) noexcept { seq_ = seq; }
  // Spool mode: `lane` is handed the commit (before any of its events can settle), by the
  // thread that calls release_hold() afterwards.
  void hand_to(std::size_t lane) noexcept;
  // Spool mode: `lane` is handed the commit later, by its relay, from the lane's in-memory
  // window (src/pipeline/relay_window.hpp), before any of its events can settle. No hold:
  // release_hold() (which may run at the same time on the committing thread) leaves it be.
  void hand_to_later(std::size_t lane) noexcept;

  // Records `n` events of lane `lane` settled with `outcome`. Lanes past the tracked ones
  // (dead-letter lanes) are ignored. The settlement that completes the commit (or, with a
  // spool, the lane) reports it on this thread: call with no internal state held.
  void add(std::size_t lane, Outcome outcome, std::uint64_t n) noexcept;
  // The committing thread's hold (see the constructors).
  void release_hold() noexcept;

 private:
  struct alignas(64) Counts {
    std::atomic<std::uint64_t> delivered{0};
    std::atomic<std::uint64_t> failed{0};
    std::atomic<std::uint64_t> filtered{0};
    std::atomic<std::uint64_t> dropped{0};
    std::atomic<std::uint64_t> remaining{0};  // spool mode: events (+ hold), once handed
    bool held = false;  // spool mode: handed by hand_to(), on the releasing thread
  };
  void countdown(std::uint64_t n) noexcept;
  void lane_countdown(std::size_t lane, std::uint64_t n) noexcept;
  [[nodiscard]] AdapterStats stats_of(std::size_t lane) const;

  // Counts of up to kInlineLanes lanes live inside the tracker (one allocation per commit
  // with make_shared, none of them over-aligned), each on a cache line of its own; more
  // lanes take an array of their own.
  static constexpr std::size_t kInlineLanes = 2;
  Counts* make_counts(std::size_t lanes);

  Names names_;
  std::size_t lanes_ = 0;
  std::uint64_t events_ = 0;
  alignas(std::max_align_t) std::byte
      inline_counts_[kInlineLanes * sizeof(Counts) + alignof(Counts)];
  std::unique_ptr<Counts[]> heap_counts_;
  Counts* counts_ = nullptr;  // in inline_counts_ or heap_counts_
  std::atomic<std::uint64_t> remaining_{0};
  std::function<void(const Settlement&)> callback_;
  std::shared_ptr<spool::Spool> spool_;  // spool mode
  std::uint64_t seq_ = 0;
};

}  // namespace emissions::detail
