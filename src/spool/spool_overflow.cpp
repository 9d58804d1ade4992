// A full spool (SpoolOptions::max_bytes) and the adapters' overflow policies.
//
// The log is shared: only the lanes whose position is in the oldest segment keep it on
// disk, so only they can make room. When every one of them is a drop_oldest lane, each
// lets go of that segment: the commits of it the lane had not read yet are dropped for it
// (counted, their settlements reported), and those it holds in flight are still delivered
// but no longer protected by the spool. Then the segment is deleted and the commit written.
// Otherwise there is no room to make, and the commit waits (a lane blocks) or is dropped
// for every lane (none does): see Spool::append.
#include <algorithm>

#include "common/best_effort.hpp"
#include "spool/spool.hpp"
#include "spool/spool_state.hpp"

namespace emissions::detail::spool {

// What one lane let go of: events of commits [first, first + counts.size()) it had not read
// (kCorrupt for a commit that could not be read), and which of them it dropped.
struct Spool::Reclaimed {
  static constexpr std::uint32_t kCorrupt = 0xffffffffU;
  std::size_t lane = 0;
  std::uint64_t first = 0;
  std::vector<std::uint32_t> counts;
  std::uint64_t dropped_from = 0;  // the lane's relay had handed over what is before
  std::uint64_t dropped_upto = 0;
  std::uint64_t events = 0;
};

void Spool::set_overflow(std::vector<Overflow> policies, ReclaimListener listener) {
  policies.resize(tracks_.size(), Overflow::block);
  any_lane_blocks_ = std::any_of(policies.begin(), policies.end(),
                                 [](Overflow o) { return o == Overflow::block; });
  overflow_ = std::move(policies);
  reclaim_listener_ = std::move(listener);
}

Status Spool::reclaim_oldest(bool& reclaimed) {
  reclaimed = false;
  if (overflow_.empty()) return {};
  std::vector<Reclaimed> done;
  {
    std::lock_guard lock(reclaim_mutex_);
    const std::vector<std::uint64_t> segments = log_->segments();
    if (segments.size() < 2) return {};  // the active segment is never deleted
    const LogPosition fence{segments[1], segments[1], kSegmentHeaderSize};
    // An adapter no longer configured keeps its backlog (forget_missing_adapters): it holds
    // the segment as a blocking lane would.
    for (const AdapterPosition& orphan : orphans_) {
      if (orphan.next.seq < fence.seq) return {};
    }
    std::vector<std::size_t> holders;
    for (std::size_t l = 0; l < tracks_.size(); ++l) {
      std::lock_guard track_lock(tracks_[l]->mutex);
      if (tracks_[l]->position().seq >= fence.seq) continue;
      if (overflow_[l] != Overflow::drop_oldest) return {};
      holders.push_back(l);
    }
    if (holders.empty()) {
      // Every position passed it since the last checkpoint: that checkpoint frees it.
      reclaimed = true;
      return {};
    }
    done.reserve(holders.size());
    for (const std::size_t l : holders) {
      done.emplace_back();
      if (Status s = reclaim_lane(l, fence, done.back()); !s) {
        done.pop_back();
        // The lanes already moved stay moved (their drops are reported below); the commit
        // fails with the read error.
        if (done.empty()) return s;
        break;
      }
    }
    reclaimed = true;
  }
  // With no lock held: settlements (user callbacks) and the lanes' counters (telemetry).
  for (const Reclaimed& r : done) {
    std::vector<std::unique_ptr<Pending>> settled;
    {
      std::lock_guard lock(pending_mutex_);
      for (std::uint64_t seq = r.dropped_from; seq < r.dropped_upto && !pending_.empty(); ++seq) {
        const std::uint32_t count = r.counts[seq - r.first];
        AdapterStats stats;
        stats.received = stats.dropped = count == Reclaimed::kCorrupt ? 0 : count;
        if (auto complete = settle_pending_locked(seq, r.lane, stats)) {
          settled.push_back(std::move(complete));
        }
      }
    }
    for (const auto& pending : settled)
      pending->run_callback();
    if (r.events != 0 && reclaim_listener_) {
      best_effort([&] { reclaim_listener_(r.lane, r.events); });
    }
  }
  progress_epoch_.fetch_add(1, std::memory_order_seq_cst);
  moved_.store(true, std::memory_order_relaxed);
  progress.notify();
  return {};
}

Status Spool::reclaim_lane(std::size_t lane, const LogPosition& fence, Reclaimed& out) {
  Track& track = *tracks_[lane];
  out.lane = lane;
  LogPosition from;
  {
    std::lock_guard lock(track.mutex);
    from = track.next;
  }
  // The event counts of the commits the relay may not have handed over yet, read from the
  // frames' headers (no decoding) before anything changes: a read error leaves the lane
  // as it was. The relay only moves forward meanwhile, so what it has not handed over
  // below is a suffix of what is read here.
  out.first = from.seq;
  if (from.seq < fence.seq) {
    out.counts.reserve(fence.seq - from.seq);
    LogReader reader(*log_, from);
    std::uint64_t expect = from.seq;
    for (;;) {
      LogReader::Next next{};
      std::uint32_t events = 0;
      LogPosition at;
      if (Status s = reader.skip(next, events, at); !s) return s;
      const std::uint64_t seq = next == LogReader::Next::commit ? at.seq : reader.cursor().seq;
      // Commits the reader skipped as corrupt: counted as such, not as events.
      for (; expect < std::min(seq, fence.seq); ++expect)
        out.counts.push_back(Reclaimed::kCorrupt);
      if (next == LogReader::Next::end || at.seq >= fence.seq) break;
      out.counts.push_back(events);
      expect = at.seq + 1;
    }
    if (expect < fence.seq) {
      return Status(Errc::unavailable, "the spool could not read the oldest segment of " +
                                           options_.dir.string() + " to the end before " +
                                           "reclaiming it for adapter '" + track.name + "'");
    }
  }
  {
    std::lock_guard lock(track.mutex);
    // What the relay handed over, or is handing over, stays its own to deliver.
    // (claimed_upto, not in_flight: a commit handed over may have settled and left
    // in_flight before the relay moved `next` past it.)
    const std::uint64_t claimed = std::max(track.next.seq, track.claimed_upto);
    out.dropped_from = std::max(claimed, from.seq);
    out.dropped_upto = std::max(out.dropped_from, fence.seq);
    if (track.fence.seq < fence.seq) {
      track.fence = fence;
      track.fence_seq.store(fence.seq, std::memory_order_release);
    }
    // In flight before the fence: delivered as usual, but the position no longer waits.
    while (!track.in_flight.empty() && track.in_flight.front().at.seq < fence.seq)
      track.in_flight.pop_front();
    if (track.next.seq < fence.seq) track.next = fence;
  }
  for (std::uint64_t seq = out.dropped_from; seq < out.dropped_upto; ++seq) {
    const std::uint32_t count = out.counts[seq - out.first];
    if (count == Reclaimed::kCorrupt) {
      count_corrupt(seq, seq + 1);  // rare: one at a time
    } else {
      out.events += count;
    }
  }
  track.wake.notify();  // a parked relay re-seats its reader at the fence
  return {};
}

}  // namespace emissions::detail::spool
