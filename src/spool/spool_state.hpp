// Internal to src/spool/: the Spool's per-lane and per-commit state, shared by spool.cpp
// and spool_overflow.cpp.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <mutex>
#include <string>

#include "common/parking.hpp"
#include "emissions/settlement.hpp"
#include "spool/segment_log.hpp"
#include "spool/spool.hpp"

namespace emissions::detail::spool {

// One routed lane's progress: the commits its relay handed over and not yet settled, in
// log order, and the cursor after the last one. Its position is the first unsettled one.
struct Spool::Track {
  struct Entry {
    LogPosition at;
    bool settled = false;
  };
  std::string name;
  LogPosition start;
  mutable std::mutex mutex;
  std::deque<Entry> in_flight;  // guarded by mutex
  LogPosition next;             // guarded by mutex
  // One past the last commit the relay or the commit path claimed for the lane (published()
  // or handed_over_live(), less a withdraw()), guarded by mutex. A claimed commit stays the
  // lane's to settle even once it has settled and left in_flight before `next` caught up
  // with it (the relay calls handed_over() after the lane may already have settled it): a
  // reclaim must not count it dropped too.
  std::uint64_t claimed_upto = 0;
  // Live handoff: written under Spool::append_mutex_; `live` read by the relay without it.
  std::atomic<bool> live{false};
  bool started_live = false;  // set at open, before any thread reads it
  LogPosition resume;
  WaitChannel wake;
  // A full spool reclaimed every commit before `fence` for this lane (drop_oldest): its
  // relay hands none of them over. Guarded by mutex; fence_seq mirrors fence.seq for the
  // relay's check without the lock.
  LogPosition fence{0, 0, 0};
  std::atomic<std::uint64_t> fence_seq{0};

  [[nodiscard]] LogPosition position() const {  // with mutex held
    return in_flight.empty() ? next : in_flight.front().at;
  }
};

struct Spool::Pending {
  std::function<void(const Settlement&)> callback;
  Settlement settlement;
  std::size_t remaining = 0;

  // Runs the callback (user code: no lock may be held), marked as a settlement callback
  // (thread_role.hpp); an exception from it is swallowed.
  void run_callback() noexcept;
};

}  // namespace emissions::detail::spool
