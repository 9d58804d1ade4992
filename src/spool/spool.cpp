#include "spool/spool.hpp"

#include <algorithm>
#include <limits>
#include <ranges>
#include <utility>

#include "common/best_effort.hpp"
#include "common/config_check.hpp"
#include "common/wait.hpp"
#include "pipeline/thread_role.hpp"
#include "spool/spool_state.hpp"

namespace emissions::detail::spool {

namespace {

constexpr std::uint64_t kMinSegmentBytes = 1ull << 20;
// How far prefault_log() faults in ahead of the end of the log, at most: more than the
// commit path appends between two calls (a live relay calls about every 10 ms while commits
// settle; the commit path appends about 2.5 MB in 10 ms at 5 M events/s).
constexpr std::uint64_t kPrefaultAhead = 8ull << 20;

std::string describe_bytes(std::uint64_t n) {
  return std::to_string(n) + " bytes";
}

}  // namespace

void Spool::Pending::run_callback() noexcept {
  best_effort([&] {
    const detail::SettlementCallbackScope in_callback;
    callback(settlement);
  });
}

Spool::Spool(Key /*unused*/, const SpoolOptions& options, std::shared_ptr<FileLayer> files)
    : options_(options), files_(std::move(files)) {}

Spool::~Spool() {
  abandon_pending();
}

// Commits whose lanes will not settle in this process: their callbacks learn so now (the
// lanes that did not settle count zero; the next Emitter on the directory delivers them).
void Spool::abandon_pending() noexcept {
  std::unordered_map<std::uint64_t, std::unique_ptr<Pending>> left;
  {
    std::lock_guard lock(pending_mutex_);
    left.swap(pending_);
    pending_count_.store(0, std::memory_order_relaxed);
  }
  for (auto& entry : left) {
    Pending& pending = *entry.second;
    pending.run_callback();
  }
}

std::unique_ptr<Spool> Spool::open(const SpoolOptions& options,
                                   const std::vector<std::string>& lanes,
                                   std::shared_ptr<FileLayer> files) {
  if (options.dir.empty()) config_error("spool.dir", "a directory path", "an empty path");
  if (options.segment_bytes < kMinSegmentBytes) {
    config_error("spool.segment_bytes", "at least 1 MiB (" + describe_bytes(kMinSegmentBytes) + ")",
                 describe_bytes(options.segment_bytes));
  }
  if (options.segment_bytes > options.max_bytes) {
    config_error("spool.segment_bytes",
                 "at most spool.max_bytes (" + describe_bytes(options.max_bytes) + ")",
                 describe_bytes(options.segment_bytes));
  }
  if (options.max_bytes / 2 < options.segment_bytes) {
    // The active segment is never deleted: a budget of one segment would fill for good.
    config_error(
        "spool.max_bytes",
        "at least twice spool.segment_bytes (" + describe_bytes(2 * options.segment_bytes) + ")",
        describe_bytes(options.max_bytes));
  }
  if (options.durability != Durability::process && options.durability != Durability::machine) {
    config_error("spool.durability", "process or machine",
                 std::to_string(static_cast<int>(options.durability)));
  }
  auto spool = std::make_unique<Spool>(Key{}, options, std::move(files));
  auto fail = [&](const Status& s) {
    throw ConfigError("spool.dir " + options.dir.string() + " cannot be used: " + s.message());
  };
  if (Status s = spool->files_->make_dirs(options.dir); !s) fail(s);
  if (Status s = spool->files_->lock(options.dir, spool->lock_); !s) {
    throw ConfigError("spool.dir: " + s.message());
  }
  SegmentLog::Options log_options;
  log_options.dir = options.dir;
  log_options.sync_commits = options.durability == Durability::machine;
  log_options.max_bytes = options.max_bytes;
  log_options.segment_bytes = options.segment_bytes;
  LogRecovery recovery;
  if (Status s = SegmentLog::open(spool->files_, log_options, spool->log_, recovery); !s) {
    fail(s);
  }
  spool->positions_ = std::make_unique<PositionStore>(spool->files_, options.dir);
  LoadedPositions loaded;
  if (Status s = spool->positions_->load(loaded); !s) fail(s);

  const LogPosition end = spool->log_->end();
  // Both position slots damaged: nothing says what was delivered, so every adapter starts
  // at the oldest commit on disk (duplicates, never loss).
  const std::vector<std::uint64_t> segments = spool->log_->segments();
  const bool lost_positions = !loaded.found && loaded.damaged_slots > 0 && !segments.empty();
  const LogPosition oldest{segments.empty() ? end.seq : segments.front(),
                           segments.empty() ? end.segment : segments.front(), kSegmentHeaderSize};
  for (const std::string& name : lanes) {
    auto track = std::make_unique<Track>();
    track->name = name;
    // New to this directory: only what is committed from now on.
    track->start = lost_positions ? oldest : end;
    for (const AdapterPosition& saved : loaded.adapters) {
      if (saved.name != name) continue;
      track->start = saved.next.seq <= end.seq ? saved.next : end;
      // An older slot's position may point into segments deleted since (every position had
      // passed them): start at the oldest one on disk, not counting the gap as corrupt.
      if (!segments.empty() && track->start.seq < segments.front()) track->start = oldest;
    }
    track->next = track->start;
    // Nothing to read back: the commit path hands the lane its commits from the first one.
    // (Its relay, started while the first commits come in, would otherwise have to catch up
    // with the producer by reading the log, and may never reach its end.)
    if (spool->live_handoff() && track->start.seq == end.seq) {
      track->resume = end;
      track->started_live = true;
      track->live.store(true, std::memory_order_relaxed);
    }
    spool->tracks_.push_back(std::move(track));
  }
  for (const AdapterPosition& saved : loaded.adapters) {
    const bool configured = std::find(lanes.begin(), lanes.end(), saved.name) != lanes.end();
    if (configured || options.forget_missing_adapters || saved.next.seq >= end.seq) continue;
    spool->orphans_.push_back(saved);
    // What it holds back: counted from the frames' headers, without decoding.
    LogReader reader(*spool->log_, saved.next);
    for (;;) {
      LogReader::Next next{};
      std::uint32_t events = 0;
      LogPosition at;
      if (Status s = reader.skip(next, events, at); !s) fail(s);
      if (next == LogReader::Next::end) break;
      spool->orphaned_events_ += events;
    }
  }
  // The set of adapters is recorded before the first commit.
  if (Status s = spool->checkpoint_now(true); !s) fail(s);
  return spool;
}

Status Spool::append(std::span<const Event> events, std::uint32_t flags,
                     std::vector<std::uint8_t>& scratch, std::chrono::milliseconds wait,
                     std::function<void(const Settlement&)>* on_settled, AppendHook* hook,
                     bool* dropped) {
  if (!live_handoff()) hook = nullptr;
  if (dropped != nullptr) *dropped = false;
  // With live handoff every append takes the append lock, so that go_live() knows the end
  // of the log is not moving.
  scratch.clear();
  if (Status s = encode_body(events, scratch); !s) return s;
  const auto count = static_cast<std::uint32_t>(events.size());
  const Deadline deadline = std::chrono::steady_clock::now() + wait;
  bool checkpointed = false;
  // Read before the checkpoint that precedes a wait: a settlement after it (which the
  // checkpoint may have missed) ends the wait at once instead of being slept through.
  std::uint64_t epoch = 0;
  // The callback's entry is made before anything is written: once the commit is in the
  // log nothing may throw before the hook has handed it to the live lanes (a live lane
  // that missed it would move its position past it).
  using PendingMap = decltype(pending_);
  PendingMap::node_type entry;
  if (on_settled != nullptr) {
    auto pending = std::make_unique<Pending>();
    pending->remaining = tracks_.size();
    pending->settlement.adapters.resize(tracks_.size());
    for (std::size_t l = 0; l < tracks_.size(); ++l) {
      pending->settlement.adapters[l].name = tracks_[l]->name;
    }
    PendingMap one;
    one.emplace(0, std::move(pending));
    entry = one.extract(one.begin());
  }
  for (;;) {
    LogPosition at;
    Status s;
    std::unique_ptr<Pending> at_once;  // no lane to wait for
    std::unique_lock<std::mutex> append_lock;
    if (live_handoff()) append_lock = std::unique_lock(append_mutex_);
    if (on_settled == nullptr) {
      s = log_->append(scratch, count, flags, at);
    } else {
      // Registered under the lock that settle_pending takes, so no lane can settle the
      // commit before its callback is known.
      std::lock_guard lock(pending_mutex_);
      pending_.reserve(pending_.size() + 1);  // may throw: nothing is written yet
      // Counted before the frame is readable: a lane that reads it back from the log (once
      // a sync of another committer published it) may settle it before the entry is
      // inserted below, and must then take pending_mutex_ (settle_pending), not skip it.
      pending_count_.store(pending_.size() + 1, std::memory_order_relaxed);
      s = log_->append(scratch, count, flags, at);
      if (s) {
        // No allocation from here: the node exists and the table has room for it.
        entry.mapped()->callback = std::move(*on_settled);
        if (tracks_.empty()) {
          at_once = std::move(entry.mapped());
        } else {
          entry.key() = at.seq;
          pending_.insert(std::move(entry));
        }
      }
      pending_count_.store(pending_.size(), std::memory_order_relaxed);  // the count as it is
    }
    if (s && hook != nullptr) {
      // The frame follows the commit at once in the same segment; a reader handed this
      // position finds the next commit there (or moves on to the next segment).
      const LogPosition next{at.seq + 1, at.segment, at.offset + frame_size(scratch.size())};
      hook->appended(at, next);
    }
    if (append_lock.owns_lock()) append_lock.unlock();
    if (s) {
      appended.notify();
      if (at_once) at_once->run_callback();
      return s;
    }
    if (s.code() != Errc::overloaded) return s;
    // The disk budget is spent: free what every lane has settled; then reclaim the oldest
    // segment if only drop_oldest lanes hold it; then drop the commit if no lane blocks, or
    // wait for a lane to settle more (each settlement that moves a position notifies
    // `progress`).
    if (!checkpointed) {
      checkpointed = true;
      epoch = progress_epoch_.load(std::memory_order_seq_cst);
      if (Status c = checkpoint_now(false); !c) return c;
      continue;
    }
    bool reclaimed = false;
    if (Status r = reclaim_oldest(reclaimed); !r) return r;
    if (reclaimed) {
      if (Status c = checkpoint_now(false); !c) return c;
      continue;
    }
    if (dropped != nullptr && !any_lane_blocks_) {
      *dropped = true;
      return {};
    }
    checkpointed = false;
    if (!wait_until(
            progress, [&] { return progress_epoch_.load(std::memory_order_seq_cst) != epoch; },
            deadline)) {
      return Status(Errc::overloaded, s.message() + "; waited " + std::to_string(wait.count()) +
                                          " ms for an adapter to settle its backlog");
    }
  }
}

LogPosition Spool::start(std::size_t lane) const {
  std::lock_guard lock(tracks_[lane]->mutex);
  return tracks_[lane]->start;
}

bool Spool::live(std::size_t lane) const noexcept {
  return tracks_[lane]->live.load(std::memory_order_relaxed);
}

bool Spool::started_live(std::size_t lane) const noexcept {
  return tracks_[lane]->started_live;
}

bool Spool::is_live(std::size_t lane) const noexcept {
  return tracks_[lane]->live.load(std::memory_order_seq_cst);
}

LogPosition Spool::resume_at(std::size_t lane) const {
  std::lock_guard lock(append_mutex_);
  return tracks_[lane]->resume;
}

WaitChannel& Spool::relay_wake(std::size_t lane) noexcept {
  return tracks_[lane]->wake;
}

void Spool::wake_relays() noexcept {
  for (const auto& track : tracks_)
    track->wake.notify();
}

void Spool::prefault_log() noexcept {
  if (live_handoff()) log_->prefault(kPrefaultAhead);
}

void Spool::handed_over_live(std::size_t lane, const LogPosition& at, const LogPosition& next) {
  Track& track = *tracks_[lane];
  {
    std::lock_guard lock(track.mutex);
    track.in_flight.push_back(Track::Entry{at, false});
    track.claimed_upto = std::max(track.claimed_upto, at.seq + 1);
    if (next.seq > track.next.seq) track.next = next;
  }
  if (next.seq >= wake_at_.load(std::memory_order_seq_cst)) progress.notify();
}

void Spool::fall_behind(std::size_t lane, const LogPosition& at) noexcept {
  Track& track = *tracks_[lane];
  track.resume = at;
  // seq_cst: with the relay's WaitChannel::prepare then is_live(), either the relay sees
  // the lane not live or this notify sees the relay waiting.
  track.live.store(false, std::memory_order_seq_cst);
  track.wake.notify();
}

bool Spool::go_live(std::size_t lane, const LogPosition& cursor) {
  std::lock_guard lock(append_mutex_);
  if (log_->end_seq() != cursor.seq) return false;
  tracks_[lane]->live.store(true, std::memory_order_seq_cst);
  return true;
}

bool Spool::published(std::size_t lane, const LogPosition& at) {
  Track& track = *tracks_[lane];
  std::lock_guard lock(track.mutex);
  if (at.seq < track.fence.seq) return false;  // reclaimed
  track.in_flight.push_back(Track::Entry{at, false});
  track.claimed_upto = std::max(track.claimed_upto, at.seq + 1);
  return true;
}

std::optional<LogPosition> Spool::fence(std::size_t lane, std::uint64_t cursor) const {
  const Track& track = *tracks_[lane];
  if (track.fence_seq.load(std::memory_order_acquire) <= cursor) return std::nullopt;
  std::lock_guard lock(track.mutex);
  if (track.fence.seq <= cursor) return std::nullopt;
  return track.fence;
}

bool Spool::withdraw(std::size_t lane, const LogPosition& at, std::uint32_t events) {
  Track& track = *tracks_[lane];
  bool reclaimed = false;
  {
    std::lock_guard lock(track.mutex);
    if (!track.in_flight.empty() && track.in_flight.back().at.seq == at.seq) {
      track.in_flight.pop_back();
    }
    // Not handed over: a later reclaim may drop it (the relay's published() then refuses it).
    if (track.claimed_upto == at.seq + 1) track.claimed_upto = at.seq;
    // A reclaim passed it while it was claimed, so did not count it: nobody else will hand
    // it over or settle it, so it is dropped here.
    reclaimed = at.seq < track.fence.seq;
  }
  if (!reclaimed) return false;
  AdapterStats stats;
  stats.received = stats.dropped = events;
  settle_pending(at.seq, lane, stats);
  if (events != 0 && reclaim_listener_) {
    best_effort([&] { reclaim_listener_(lane, events); });
  }
  return true;
}

void Spool::handed_over(std::size_t lane, const LogPosition& next) {
  Track& track = *tracks_[lane];
  {
    std::lock_guard lock(track.mutex);
    if (next.seq > track.next.seq) track.next = next;  // a reclaim may have moved it further
  }
  if (next.seq >= wake_at_.load(std::memory_order_seq_cst)) progress.notify();
}

void Spool::wake_relays_waiter_at(std::uint64_t seq) noexcept {
  std::uint64_t current = wake_at_.load(std::memory_order_seq_cst);
  while (seq < current && !wake_at_.compare_exchange_weak(current, seq)) {
  }
}

void Spool::clear_relays_waiter(std::uint64_t seq) noexcept {
  std::uint64_t expected = seq;
  (void)wake_at_.compare_exchange_strong(expected, std::numeric_limits<std::uint64_t>::max());
}

void Spool::skipped(std::size_t lane, std::uint64_t from, std::uint64_t upto,
                    const LogPosition& next) {
  Track& track = *tracks_[lane];
  {
    std::lock_guard lock(track.mutex);
    // Commits a reclaim took from the lane are gone on purpose (their segment may be
    // deleted under the reader): counted dropped there, not corrupt here.
    from = std::max(from, track.fence.seq);
    if (next.seq > track.next.seq) track.next = next;
  }
  count_corrupt(from, upto);
  moved_.store(true, std::memory_order_relaxed);
  progress.notify();
}

void Spool::count_corrupt(std::uint64_t from, std::uint64_t upto) {
  if (upto <= from) return;
  std::lock_guard lock(corrupt_mutex_);
  // A lost stretch (a segment gone) can be long: past a bound its commits are counted
  // without remembering each (another lane coming across them counts them again).
  constexpr std::uint64_t kRemembered = 1u << 16;
  const std::uint64_t remembered = std::min(upto - from, kRemembered);
  for (std::uint64_t seq = from; seq < from + remembered; ++seq)
    corrupt_seqs_.insert(seq);
  corrupt_unremembered_ += (upto - from) - remembered;
  corrupt_.store(corrupt_seqs_.size() + corrupt_unremembered_, std::memory_order_relaxed);
}

void Spool::settled(std::size_t lane, std::uint64_t seq, const AdapterStats& settlement) {
  Track& track = *tracks_[lane];
  bool moved = false;
  if (settlement.dropped == 0) {
    std::lock_guard lock(track.mutex);
    // The first entry not before `seq` (entries are in log order).
    const auto indexes = std::views::iota(std::size_t{0}, track.in_flight.size());
    const auto first = std::ranges::partition_point(
        indexes, [&](std::size_t i) { return track.in_flight[i].at.seq < seq; });
    const auto lo = static_cast<std::size_t>(first - indexes.begin());
    if (lo < track.in_flight.size() && track.in_flight[lo].at.seq == seq) {
      track.in_flight[lo].settled = true;
    }
    while (!track.in_flight.empty() && track.in_flight.front().settled) {
      track.in_flight.pop_front();
      moved = true;
    }
  }
  if (moved) {
    progress_epoch_.fetch_add(1, std::memory_order_seq_cst);
    // An idle relay sleeps without a deadline until positions move: wake them to save them.
    if (!moved_.exchange(true, std::memory_order_relaxed)) {
      appended.notify();
      wake_relays();
    }
  }
  settle_pending(seq, lane, settlement);
  progress.notify();
}

void Spool::settle_pending(std::uint64_t seq, std::size_t lane, const AdapterStats& stats) {
  // The commit's entry, if it has one, was counted before its frame could be read or handed
  // to any lane (the log's publication, or the handoff, orders it before this settlement),
  // and stays until this lane settled it.
  if (pending_count_.load(std::memory_order_acquire) == 0) return;
  std::unique_ptr<Pending> done;
  {
    std::lock_guard lock(pending_mutex_);
    done = settle_pending_locked(seq, lane, stats);
  }
  if (done) done->run_callback();
}

std::unique_ptr<Spool::Pending> Spool::settle_pending_locked(std::uint64_t seq, std::size_t lane,
                                                             const AdapterStats& stats) {
  const auto it = pending_.find(seq);
  if (it == pending_.end()) return nullptr;
  Pending& pending = *it->second;
  AdapterStats& entry = pending.settlement.adapters[lane];
  entry.delivered = stats.delivered;
  entry.failed = stats.failed;
  entry.filtered = stats.filtered;
  entry.dropped = stats.dropped;
  entry.received = stats.received;
  if (--pending.remaining != 0) return nullptr;
  std::unique_ptr<Pending> done = std::move(it->second);
  pending_.erase(it);
  pending_count_.store(pending_.size(), std::memory_order_relaxed);
  return done;
}

bool Spool::published_before(std::size_t lane, std::uint64_t seq) const {
  const Track& track = *tracks_[lane];
  std::lock_guard lock(track.mutex);
  return track.next.seq >= seq;
}

Status Spool::checkpoint() {
  if (!moved_.load(std::memory_order_relaxed)) return {};
  return checkpoint_now(false);
}

Status Spool::checkpoint_now(bool force) {
  std::lock_guard lock(checkpoint_mutex_);
  if (closed_.load(std::memory_order_acquire)) return {};
  return checkpoint_locked(force);
}

Status Spool::checkpoint_locked(bool force) {
  moved_.store(false, std::memory_order_relaxed);
  std::vector<AdapterPosition> now;
  now.reserve(tracks_.size() + orphans_.size());
  std::uint64_t oldest = std::numeric_limits<std::uint64_t>::max();
  for (const auto& track : tracks_) {
    std::lock_guard lock(track->mutex);
    now.push_back(AdapterPosition{track->name, track->position()});
  }
  for (const AdapterPosition& orphan : orphans_)
    now.push_back(orphan);
  for (const AdapterPosition& p : now)
    oldest = std::min(oldest, p.next.seq);
  if (force || now != last_saved_) {
    if (Status s = positions_->save(now, options_.durability == Durability::machine); !s) {
      moved_.store(true, std::memory_order_relaxed);  // try again next time
      return s;
    }
    last_saved_ = std::move(now);
  }
  if (oldest == std::numeric_limits<std::uint64_t>::max()) oldest = log_->end().seq;
  std::uint64_t freed = 0;
  Status s = log_->release_before(oldest, freed);
  if (freed != 0) {
    progress_epoch_.fetch_add(1, std::memory_order_seq_cst);
    progress.notify();
  }
  return s;
}

}  // namespace emissions::detail::spool

namespace emissions::detail::spool {

std::uint64_t Spool::disk_bytes() const {
  if (closed_.load(std::memory_order_acquire)) return closed_bytes_;
  return log_->disk_bytes();
}

void Spool::close() noexcept {
  std::unique_lock lock(checkpoint_mutex_);
  if (closed_.load(std::memory_order_acquire)) return;
  (void)checkpoint_locked(false);  // best effort: an I/O error leaves older positions
  closed_bytes_ = log_->disk_bytes();
  closed_.store(true, std::memory_order_release);
  lock.unlock();
  abandon_pending();
  lock.lock();
  positions_.reset();
  log_.reset();
  lock_.reset();
}

}  // namespace emissions::detail::spool
