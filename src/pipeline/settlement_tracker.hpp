// Internal: counts one commit's settlements across lanes and calls the commit's
// on_settled callback once every lane has settled every event (Transaction::commit(cb),
// Emitter::publish(events, cb)).
//
// Nothing is tracked without a callback: batches carry a null tracker and every settlement
// point skips it with one branch.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "emissions/settlement.hpp"

namespace emissions::detail {

class SettlementTracker {
 public:
  enum class Outcome { delivered, failed, filtered, dropped };

  // `lanes` names the lanes that settle (configured adapters, then the handler dispatcher);
  // `events` is the commit's size. Starts with one extra hold, released by the committing
  // thread after publish (release_hold), so the callback never runs inside publish.
  // With `only_lane`, only that lane settles (a spool relay's commit to one lane): the
  // Settlement has its one entry, and add() ignores every other lane.
  static constexpr std::size_t kAllLanes = static_cast<std::size_t>(-1);
  SettlementTracker(const std::vector<std::string>& lanes, std::size_t events,
                    std::function<void(const Settlement&)> callback,
                    std::size_t only_lane = kAllLanes);

  // Records `n` events of lane `lane` settled with `outcome`. Lanes past the tracked ones
  // (dead-letter lanes) are ignored. The settlement that completes the commit calls the
  // callback on this thread: call with no internal state held.
  void add(std::size_t lane, Outcome outcome, std::uint64_t n) noexcept;
  // The committing thread's hold (see the constructor).
  void release_hold() noexcept;

 private:
  struct alignas(64) Counts {
    std::atomic<std::uint64_t> delivered{0};
    std::atomic<std::uint64_t> failed{0};
    std::atomic<std::uint64_t> filtered{0};
    std::atomic<std::uint64_t> dropped{0};
  };
  void countdown(std::uint64_t n) noexcept;

  std::vector<std::string> names_;
  std::size_t first_ = 0;  // the lane index of names_[0]
  std::unique_ptr<Counts[]> counts_;
  std::atomic<std::uint64_t> remaining_;
  std::function<void(const Settlement&)> callback_;
};

}  // namespace emissions::detail
