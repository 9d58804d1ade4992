// Internal: the spool behind Config::spool (include/emissions/spool.hpp): one log, each
// routed lane's progress through it, and the positions that survive a restart.
//
// The commit path appends (append); one relay thread per routed lane (Core::run_relay,
// src/pipeline/spool_relay.cpp) reads the log from its lane's position and publishes each
// commit to that lane alone, waiting for room in its queue (the backlog stays on disk).
// Each relayed commit's settlement comes back through settled(); a lane's position is the
// first commit it has not settled, saved by checkpoint(). Segments every position has
// passed are deleted.
//
// Thread-safety: every member may be called from any thread. No user code runs inside.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/parking.hpp"
#include "emissions/config.hpp"
#include "emissions/settlement.hpp"
#include "emissions/spool.hpp"
#include "emissions/status.hpp"
#include "spool/files.hpp"
#include "spool/positions.hpp"
#include "spool/segment_log.hpp"

namespace emissions::detail::spool {

class Spool {
 public:
  // Validates `options` (ConfigError naming the field), takes the directory's lock, opens
  // the log and the positions, and records `lanes` (the routed lanes' names, in order) as
  // the spool's adapters before any commit: a lane new to the directory starts at the end
  // of the log; one that disappeared keeps its backlog unless forget_missing_adapters.
  // An I/O error is a ConfigError too (the Emitter cannot start on this directory).
  static std::unique_ptr<Spool> open(const SpoolOptions& options,
                                     const std::vector<std::string>& lanes,
                                     std::shared_ptr<FileLayer> files = posix_files());

  struct Key {
   private:
    friend class Spool;
    Key() = default;
  };
  Spool(Key key, const SpoolOptions& options, std::shared_ptr<FileLayer> files);
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;
  ~Spool();

  // ---- the commit path
  // Told, under the append lock, where a commit went: the commit path hands it to the live
  // lanes there, so each lane gets commits in log order. No user code may run inside.
  class AppendHook {
   public:
    virtual void appended(const LogPosition& at, const LogPosition& next) noexcept = 0;

   protected:
    ~AppendHook() = default;
  };
  // Encodes `events` into `scratch` (reused) and appends them as one commit. With
  // `on_settled`, the callback is called once every lane settled the commit (merge of the
  // lanes' settlements, in lane order). Errors: invalid_argument (an event that cannot be
  // encoded), overloaded (max_bytes, after waiting up to `wait`), unavailable (I/O). On
  // error nothing was written, the callback is dropped and `hook` is not called.
  // `flags` is stored with the commit (the pipeline's cascade depth) and read back by
  // LogReader::last_flags(). `hook` is called only with live_handoff().
  //
  // A full spool first frees what every lane settled, then reclaims the oldest segment
  // when only drop_oldest lanes hold it (set_overflow). If there is still no room and no
  // lane blocks, nothing is written and `*dropped` is set (the caller counts the commit
  // dropped for every lane and still owns `*on_settled`); with `dropped` null, or a lane
  // that blocks, the commit waits up to `wait` for room.
  Status append(std::span<const Event> events, std::uint32_t flags,
                std::vector<std::uint8_t>& scratch, std::chrono::milliseconds wait,
                std::function<void(const Settlement&)>* on_settled = nullptr,
                AppendHook* hook = nullptr, bool* dropped = nullptr);

  // ---- a full spool (max_bytes)
  // Told, with no internal state held, how many events of commits it had not read yet a
  // drop_oldest lane lost when the oldest segment was reclaimed (the caller counts them
  // received and dropped, reason overflow).
  using ReclaimListener = std::function<void(std::size_t lane, std::uint64_t events)>;
  // Before the first commit: each lane's overflow policy, in lane order (block when not
  // set), and who hears of reclaimed events.
  void set_overflow(std::vector<Overflow> policies, ReclaimListener listener);

  // ---- live handoff
  // With Durability::process a lane whose relay caught up with the log is live: the commit
  // path hands it each new commit directly (AppendHook), with no read back from disk. When
  // its queue has no room the lane falls behind: its relay reads on from that commit, and
  // makes the lane live again once it reaches the end of the log. (With machine durability
  // a commit may not be handed over before it is synced, so relays read every commit.)
  [[nodiscard]] bool live_handoff() const noexcept {
    return options_.durability == Durability::process;
  }
  // Inside AppendHook::appended only (the append lock held):
  [[nodiscard]] bool live(std::size_t lane) const noexcept;
  // `lane` took the commit at `at` (published and handed_over in one).
  void handed_over_live(std::size_t lane, const LogPosition& at, const LogPosition& next);
  // `lane` could not take the commit at `at`: its relay reads from there.
  void fall_behind(std::size_t lane, const LogPosition& at) noexcept;
  // Relays: makes `lane` live if `cursor` is the end of the log (nothing appended since the
  // relay read its last commit). Takes the append lock.
  bool go_live(std::size_t lane, const LogPosition& cursor);
  // Whether `lane` is live (seq_cst, see fall_behind). Once it is not, resume_at() is where its
  // relay reads from; both change only under the append lock.
  [[nodiscard]] bool is_live(std::size_t lane) const noexcept;
  // Whether `lane` was live from the start (no backlog when the spool opened): its relay
  // then reads only from resume_at(), never from start(), even if the lane fell behind
  // before the relay ran.
  [[nodiscard]] bool started_live(std::size_t lane) const noexcept;
  [[nodiscard]] LogPosition resume_at(std::size_t lane) const;
  // A live lane's relay parks here: woken when the lane falls behind, when a checkpoint is
  // wanted (positions moved) and by wake_relays().
  [[nodiscard]] WaitChannel& relay_wake(std::size_t lane) noexcept;
  void wake_relays() noexcept;
  // With live_handoff(): faults in the log's next pages for the commit path
  // (SegmentLog::prefault). For a live lane's relay, while it has nothing else to do.
  void prefault_log() noexcept;

  // ---- relays
  [[nodiscard]] const SegmentLog& log() const noexcept { return *log_; }
  [[nodiscard]] std::size_t lanes() const noexcept { return tracks_.size(); }
  [[nodiscard]] LogPosition start(std::size_t lane) const;
  // The relay of `lane` is about to hand the commit at `at` to the pipeline (its
  // settlement may come back at once). Call in log order. False when a full spool
  // reclaimed the commit for this lane (drop_oldest): skip it and read from fence().
  [[nodiscard]] bool published(std::size_t lane, const LogPosition& at);
  // Where `lane`'s relay must read from when its cursor is before it: the first commit a
  // reclaim left it (nothing when none did, or its cursor is past it).
  [[nodiscard]] std::optional<LogPosition> fence(std::size_t lane, std::uint64_t cursor) const;
  // ... or could not hand it over (nothing of it reached the lane): takes published() back.
  // `events` is the commit's event count. If a full spool reclaimed the commit meanwhile
  // (it was claimed then, so the reclaim left it to the relay), it is dropped for the lane
  // here (counted and settled as the reclaim would have) and true is returned: the relay
  // reads on from fence().
  bool withdraw(std::size_t lane, const LogPosition& at, std::uint32_t events);
  // ... and has handed it over: `next` is its reader's cursor after it.
  void handed_over(std::size_t lane, const LogPosition& next);
  // The relay of `lane` found the commits [from, upto) corrupt and skipped them; `next` is
  // its reader's cursor. Each commit is counted once, whichever lanes find it.
  void skipped(std::size_t lane, std::uint64_t from, std::uint64_t upto, const LogPosition& next);
  // Lane `lane` settled commit `seq`: `settlement` has its one entry. A commit with events
  // dropped by shutdown is not settled: it stays before the position and is delivered
  // again by the next Emitter on this directory.
  void settled(std::size_t lane, std::uint64_t seq, const AdapterStats& settlement);
  // Whether `lane`'s relay has handed over every commit before `seq`.
  [[nodiscard]] bool published_before(std::size_t lane, std::uint64_t seq) const;
  // A drain waits for relays to reach `seq`: handed_over() notifies `progress` only from
  // then on (not once per commit). Waiters re-check now and then as well, since another
  // drain may lower or clear this.
  void wake_relays_waiter_at(std::uint64_t seq) noexcept;
  void clear_relays_waiter(std::uint64_t seq) noexcept;

  // After the relays stopped and the pipeline finished: a last checkpoint, then the
  // callbacks of commits no lane will settle now, then the log, the positions and the lock
  // are let go (the directory is free for another Emitter). Later settlements are no-ops.
  void close() noexcept;

  // Saves the positions when they moved and deletes the segments every position passed.
  // Called by relays when idle, by drain and by shutdown. Serialised internally.
  Status checkpoint();
  // Whether a position moved since the last checkpoint.
  [[nodiscard]] bool moved() const noexcept { return moved_.load(std::memory_order_relaxed); }

  // Woken when a commit is appended (relays wait here for more), when space is freed, and
  // when a lane settles (drains wait here).
  WaitChannel appended;
  WaitChannel progress;

  [[nodiscard]] std::uint64_t corrupt_records() const noexcept {
    return corrupt_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t orphaned_events() const noexcept { return orphaned_events_; }
  [[nodiscard]] std::uint64_t disk_bytes() const;

 private:
  struct Track;
  struct Pending;
  void settle_pending(std::uint64_t seq, std::size_t lane, const AdapterStats& stats);
  // With pending_mutex_ held: records the lane's settlement; the entry once every lane
  // settled (its callback is the caller's to run, with no lock held).
  std::unique_ptr<Pending> settle_pending_locked(std::uint64_t seq, std::size_t lane,
                                                 const AdapterStats& stats);
  // A full spool (spool_overflow.cpp): frees the oldest segment when only drop_oldest
  // lanes hold it; `reclaimed` says whether a lane let go of it.
  struct Reclaimed;
  Status reclaim_oldest(bool& reclaimed);
  Status reclaim_lane(std::size_t lane, const LogPosition& fence, Reclaimed& out);
  void count_corrupt(std::uint64_t from, std::uint64_t upto);
  void abandon_pending() noexcept;
  Status checkpoint_now(bool force);
  Status checkpoint_locked(bool force);  // with checkpoint_mutex_ held

  SpoolOptions options_;
  std::shared_ptr<FileLayer> files_;
  std::unique_ptr<SpoolLock> lock_;
  std::unique_ptr<SegmentLog> log_;
  std::unique_ptr<PositionStore> positions_;
  std::vector<std::unique_ptr<Track>> tracks_;
  std::vector<AdapterPosition> orphans_;  // positions of adapters no longer configured
  std::uint64_t orphaned_events_ = 0;
  std::atomic<std::uint64_t> corrupt_{0};  // corrupt_seqs_.size() + unremembered
  std::mutex corrupt_mutex_;
  std::set<std::uint64_t> corrupt_seqs_;
  std::uint64_t corrupt_unremembered_ = 0;
  std::atomic<bool> moved_{false};                // a position moved since the last checkpoint
  std::atomic<std::uint64_t> progress_epoch_{0};  // bumped when a position moves or space frees
  std::atomic<bool> closed_{false};
  std::uint64_t closed_bytes_ = 0;  // disk_bytes() once closed
  std::atomic<std::uint64_t> wake_at_{std::numeric_limits<std::uint64_t>::max()};

  std::vector<Overflow> overflow_;  // per lane; set before the first commit
  bool any_lane_blocks_ = true;
  ReclaimListener reclaim_listener_;
  std::mutex reclaim_mutex_;  // one reclaim at a time

  mutable std::mutex append_mutex_;  // with live_handoff(): log order = handoff order
  std::mutex checkpoint_mutex_;
  std::vector<AdapterPosition> last_saved_;

  mutable std::mutex pending_mutex_;
  std::unordered_map<std::uint64_t, std::unique_ptr<Pending>> pending_;
  // pending_.size(), written under pending_mutex_: a settlement finds no entry to update
  // without taking the lock when it is 0 (a commit's entry is made before any lane can
  // settle it, and is erased only once every lane did).
  std::atomic<std::size_t> pending_count_{0};
};

}  // namespace emissions::detail::spool
