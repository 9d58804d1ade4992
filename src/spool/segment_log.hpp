// Internal: the spool's log. Commits are appended once, whatever the number of adapters, as
// frames (codec.hpp) in segment files `<base seq, 20 digits>.log` in one directory; each
// reader (one per adapter consumer) keeps its own cursor. docs/SPOOL.md describes the
// format and the recovery rules.
//
// Writing: the active segment is preallocated (a full disk fails when a segment is created,
// never through the mapping) and mapped; append() copies a frame into the mapping under one
// mutex, so with Durability::process a commit costs no system call and survives a crash of
// the process (the page cache holds it). With sync_commits (Durability::machine), append()
// returns once an fdatasync covering its frame has returned: the first waiter syncs for all
// the others that wrote before it started (group commit).
//
// Thread-safety: every member may be called from any thread. append() blocks only for a
// sync (sync_commits) or to create a segment. No user code runs here.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "common/parking.hpp"
#include "emissions/event.hpp"
#include "emissions/status.hpp"
#include "spool/codec.hpp"
#include "spool/files.hpp"

namespace emissions::detail::spool {

// Where a commit's frame is: its sequence number (the first commit is 1), the segment that
// holds it (by base seq) and the byte offset of its frame there. As a cursor, the commit to
// read next.
struct LogPosition {
  std::uint64_t seq = 1;
  std::uint64_t segment = 1;
  std::uint64_t offset = kSegmentHeaderSize;
  friend bool operator==(const LogPosition&, const LogPosition&) = default;
};

// What opening a log found.
struct LogRecovery {
  std::uint64_t torn_bytes = 0;       // cut from the end of the last segment
  std::uint64_t corrupt_commits = 0;  // commits skipped in the last segment (its scan)
  std::uint64_t damaged_headers = 0;  // the last segment's header rewritten (frames followed)
};

class SegmentLog {
 public:
  struct Options {
    std::filesystem::path dir;
    bool sync_commits = false;                  // Durability::machine
    std::uint64_t max_bytes = 1ull << 30;       // segments' total size on disk
    std::uint64_t segment_bytes = 64ull << 20;  // a new segment's size
  };

  // Opens (or creates) the log in options.dir, which must exist: finds the segments, scans
  // the last one to its end, truncates a torn tail, and makes a new active segment after
  // it. `unavailable` on an I/O error; the log is then not usable.
  static Status open(std::shared_ptr<FileLayer> files, Options options,
                     std::unique_ptr<SegmentLog>& out, LogRecovery& recovery);

  struct Key {  // only open() makes a SegmentLog
   private:
    friend class SegmentLog;
    Key() = default;
  };
  SegmentLog(Key key, std::shared_ptr<FileLayer> files, Options options);
  SegmentLog(const SegmentLog&) = delete;
  SegmentLog& operator=(const SegmentLog&) = delete;
  ~SegmentLog();

  // Appends one commit whose records `body` holds (codec.hpp's encode_body, done by the
  // caller outside any lock). `at` receives its position. Errors: `overloaded` when the
  // segments would exceed max_bytes (nothing written), `unavailable` on an I/O error (with
  // sync_commits, a failed sync: the frame may survive; see docs/SPOOL.md).
  // `flags` is stored in the frame header (readers get it back: LogReader::last_flags).
  Status append(std::span<const std::uint8_t> body, std::uint32_t event_count, std::uint32_t flags,
                LogPosition& at);

  // What readers may read up to: the position the next commit will get, or with
  // sync_commits the end of what is durable (a commit is visible once synced).
  [[nodiscard]] LogPosition end() const;
  // Its seq alone, without the lock (acquire: the commits before it are readable).
  [[nodiscard]] std::uint64_t end_seq() const noexcept {
    return end_seq_.load(std::memory_order_acquire);
  }

  // Faults in the active segment's pages past the end of the log (SpoolFile::prefault), so
  // that append() finds them mapped instead of taking a page fault per fresh page: up to
  // `ahead` bytes, and no more than 4 times what was appended since the previous call (a
  // slow log does not dirty pages long before it writes them). For an otherwise idle thread
  // calling regularly; best effort; one call at a time (a concurrent one returns at once).
  // Does nothing for a log that syncs commits (every sync would write the pages dirtied
  // ahead).
  void prefault(std::uint64_t ahead) noexcept;

  // Deletes the segments all of whose commits are before `seq` (never the active one).
  // Returns the number of bytes freed through `freed`.
  Status release_before(std::uint64_t seq, std::uint64_t& freed);

  // Bytes of segment files on disk (preallocated sizes).
  [[nodiscard]] std::uint64_t disk_bytes() const;
  [[nodiscard]] const Options& options() const noexcept { return options_; }
  [[nodiscard]] const std::shared_ptr<FileLayer>& files() const noexcept { return files_; }

  // The name of the segment whose first commit is `base_seq`.
  [[nodiscard]] static std::string segment_name(std::uint64_t base_seq);

  // The base seqs of the segments on disk, ascending.
  [[nodiscard]] std::vector<std::uint64_t> segments() const;

 private:
  struct Segment;
  Status scan_last(std::uint64_t base, LogRecovery& recovery);
  Status start_segment(std::uint64_t base_seq, std::uint64_t size);  // with mutex_ held
  Status wait_durable(std::uint64_t logical_end);
  // Syncs `file` below `written_below`, unless an earlier sync failed (then returns that
  // error without syncing); a failure is recorded (the first one is kept) before it returns.
  // Every sync of the active log goes through here, one at a time: a sync that succeeds
  // after one that failed would otherwise vouch for pages the kernel may have dropped.
  Status sync_file(SpoolFile& file, std::uint64_t written_below);
  Status sticky_sync_error();

  std::shared_ptr<FileLayer> files_;
  Options options_;

  mutable std::mutex mutex_;  // guards everything below except the sync state
  std::shared_ptr<Segment> active_;
  std::uint8_t* map_ = nullptr;  // active_'s mapping
  std::uint64_t write_offset_ = 0;
  std::uint64_t next_seq_ = 1;
  // What readers may read: next_seq_ (process), or the durable end (sync_commits), whose
  // seq is also end_seq_, readable without the lock.
  LogPosition durable_end_;
  std::atomic<std::uint64_t> end_seq_{1};
  std::map<std::uint64_t, std::uint64_t> sizes_;  // base seq -> bytes on disk, every segment
  std::uint64_t disk_bytes_ = 0;
  std::uint64_t logical_written_ = 0;      // bytes of frames ever appended (group commit's clock)
  std::atomic<std::uint64_t> appends_{0};  // commits appended, read without the lock

  // prefault(): how far it got, guarded by prefault_mutex_ (taken before mutex_).
  std::mutex prefault_mutex_;
  std::uint64_t prefaulted_base_ = 0;   // the segment (its base seq) ...
  std::uint64_t prefaulted_upto_ = 0;   // ... and the offset below which it is faulted in
  std::uint64_t prefault_logical_ = 0;  // logical_written_ at the last call (under mutex_)

  // Group commit. The hot path takes no lock: a committer returns as soon as
  // logical_durable_ covers its frame; one of them at a time (syncing_) syncs for all, and
  // the others park on synced_ until it is done (one wake-up each, no mutex to re-take).
  std::atomic<bool> syncing_{false};
  std::atomic<std::uint64_t> logical_durable_{0};  // written with mutex_ held (monotonic)
  WaitChannel synced_;                             // notified after every sync, and on failure
  std::uint64_t last_sync_seq_ = 0;      // next_seq_ when the last sync began (syncing_ holder's)
  std::uint64_t last_sync_commits_ = 0;  // commits that sync covered (syncing_ holder's)
  std::mutex file_sync_mutex_;       // one file sync at a time; order: mutex_, this, sync_mutex_
  std::mutex sync_mutex_;            // guards sync_error_
  Status sync_error_;                // the first failed sync: sticky (see wait_durable)
  std::atomic<bool> failed_{false};  // sync_error_ is set
};

// Reads commits from a log, in order, from a cursor. One reader per consumer; not
// thread-safe. Reads through its own file handles (pread, in chunks), so it may run
// while the log appends: it never reads at or past the log's end().
class LogReader {
 public:
  LogReader(const SegmentLog& log, LogPosition from);

  enum class Next {
    commit,  // `events` holds the commit at `at`; the cursor moved past it
    end,     // nothing more has been appended yet
  };
  // Reads the next commit. A corrupt frame is skipped whole (its commits counted in
  // `corrupt_commits`) and the next valid one is returned. `unavailable` on an I/O error
  // (the cursor stays: call again).
  Status next(Next& result, std::vector<Event>& events, LogPosition& at) {
    std::uint32_t count = 0;
    return advance(result, &events, count, at);
  }
  // As next(), without decoding: `events` gets the commit's event count.
  Status skip(Next& result, std::uint32_t& events, LogPosition& at) {
    return advance(result, nullptr, events, at);
  }

  [[nodiscard]] const LogPosition& cursor() const noexcept { return cursor_; }
  [[nodiscard]] std::uint64_t corrupt_commits() const noexcept { return corrupt_commits_; }
  // The flags of the commit the last next() or skip() returned.
  [[nodiscard]] std::uint32_t last_flags() const noexcept { return last_flags_; }

 private:
  Status advance(Next& result, std::vector<Event>* events, std::uint32_t& count, LogPosition& at);
  Status open_segment(std::uint64_t base);
  Status fill(std::uint64_t offset, std::size_t want, std::uint64_t limit);
  Status locate(std::uint64_t seq);

  const SegmentLog& log_;
  LogPosition cursor_;
  std::unique_ptr<SpoolFile> file_;
  std::uint64_t file_base_ = 0;
  std::vector<std::uint8_t> buffer_;
  std::uint64_t buffer_offset_ = 0;  // file offset of buffer_[0]
  std::uint64_t corrupt_commits_ = 0;
  std::uint32_t last_flags_ = 0;
  LogPosition end_;  // the log's end() when last read: refreshed once the cursor reaches it
};

}  // namespace emissions::detail::spool
