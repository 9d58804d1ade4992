#include "spool/segment_log.hpp"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

namespace emissions::detail::spool {

namespace {

constexpr std::size_t kReadChunk = 1u << 20;  // a reader's pread size

// "00000000000000000042.log" -> 42; anything else -> 0 (seqs start at 1).
std::uint64_t parse_segment_name(const std::string& name) {
  if (name.size() != 24 || name.compare(20, 4, ".log") != 0) return 0;
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < 20; ++i) {
    const char c = name[i];
    if (c < '0' || c > '9') return 0;
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return 0;
    value = value * 10 + digit;
  }
  return value;
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Looks for the first whole frame at or after `from` (8-byte steps) in bytes[0, limit)
// whose seq is at least `min_seq`. Returns its offset, or `limit` when there is none.
std::uint64_t resync(std::span<const std::uint8_t> bytes, std::uint64_t from,
                     std::uint64_t min_seq) {
  const std::uint64_t limit = bytes.size();
  for (std::uint64_t at = (from + 7) & ~std::uint64_t{7}; at + kFrameHeaderSize <= limit; at += 8) {
    FrameHeader header;
    if (check_frame(bytes.subspan(at), header) == FrameCheck::ok && header.seq >= min_seq) {
      return at;
    }
  }
  return limit;
}

}  // namespace

struct SegmentLog::Segment {
  std::uint64_t base = 0;
  std::uint64_t size = 0;
  std::unique_ptr<SpoolFile> file;
};

std::string SegmentLog::segment_name(std::uint64_t base_seq) {
  char name[32];
  std::snprintf(name, sizeof name, "%020llu.log", static_cast<unsigned long long>(base_seq));
  return name;
}

SegmentLog::SegmentLog(Key /*unused*/, std::shared_ptr<FileLayer> files, Options options)
    : files_(std::move(files)), options_(std::move(options)) {}

SegmentLog::~SegmentLog() = default;

Status SegmentLog::open(std::shared_ptr<FileLayer> files, Options options,
                        std::unique_ptr<SegmentLog>& out, LogRecovery& recovery) {
  recovery = {};
  auto log = std::make_unique<SegmentLog>(Key{}, std::move(files), std::move(options));
  std::vector<std::string> names;
  if (Status s = log->files_->list(log->options_.dir, names); !s) return s;
  std::vector<std::uint64_t> bases;
  for (const std::string& name : names) {
    if (const std::uint64_t base = parse_segment_name(name); base != 0) bases.push_back(base);
  }
  std::sort(bases.begin(), bases.end());
  for (const std::uint64_t base : bases) {
    std::unique_ptr<SpoolFile> file;
    if (Status s = log->files_->open(log->options_.dir / segment_name(base), false, file); !s) {
      return s;
    }
    std::uint64_t size = 0;
    if (Status s = file->size(size); !s) return s;
    log->sizes_[base] = size;
    log->disk_bytes_ += size;
  }
  std::lock_guard lock(log->mutex_);
  if (bases.empty()) {
    if (Status s = log->start_segment(1, log->options_.segment_bytes); !s) return s;
  } else {
    if (Status s = log->scan_last(bases.back(), recovery); !s) return s;
  }
  out = std::move(log);
  return {};
}

// Makes the last segment the active one again: maps it, walks its frames to the last
// valid one (skipping corrupt commits that valid ones follow) and cuts what is after it.
// A segment whose header is damaged (created just before a power loss) has no commit that
// was acknowledged: it is removed and the one before it is scanned instead.
Status SegmentLog::scan_last(std::uint64_t base, LogRecovery& recovery) {
  for (;;) {
    auto segment = std::make_shared<Segment>();
    segment->base = base;
    if (Status s = files_->open(options_.dir / segment_name(base), false, segment->file); !s) {
      return s;
    }
    if (Status s = segment->file->size(segment->size); !s) return s;
    SegmentHeader header;
    std::uint8_t head[kSegmentHeaderSize] = {};
    std::size_t got = 0;
    if (Status s = segment->file->read_at(0, head, got); !s) return s;
    if (got < kSegmentHeaderSize || !decode_segment_header(head, header) ||
        header.base_seq != base) {
      // Damaged: when a valid frame follows, the header alone was hit (a bad sector, a bit
      // flip): rewrite it from the name and keep the commits. Otherwise the segment was
      // being created when the power went, and holds no acknowledged commit.
      bool holds_commits = false;
      if (segment->size >= kSegmentHeaderSize + kFrameHeaderSize) {
        std::vector<std::uint8_t> bytes(static_cast<std::size_t>(segment->size));
        std::size_t read = 0;
        if (Status s = segment->file->read_at(0, bytes, read); !s) return s;
        bytes.resize(read);
        holds_commits = resync(bytes, kSegmentHeaderSize, base) < bytes.size();
      }
      if (holds_commits) {
        encode_segment_header(SegmentHeader{base, now_ns()}, head);
        if (Status s = segment->file->write_at(0, head); !s) return s;
        ++recovery.damaged_headers;
      }
    }
    if (got < kSegmentHeaderSize || !decode_segment_header(head, header) ||
        header.base_seq != base) {
      segment.reset();
      if (Status s = files_->remove(options_.dir / segment_name(base)); !s) return s;
      if (Status s = files_->sync_dir(options_.dir); !s) return s;
      disk_bytes_ -= sizes_[base];
      sizes_.erase(base);
      recovery.torn_bytes += got;
      if (sizes_.empty()) return start_segment(1, options_.segment_bytes);
      base = sizes_.rbegin()->first;
      continue;
    }
    std::uint8_t* map = nullptr;
    if (Status s = segment->file->map(segment->size, map); !s) return s;
    const std::span<const std::uint8_t> bytes(map, segment->size);
    std::uint64_t offset = kSegmentHeaderSize;
    std::uint64_t next_seq = base;
    for (;;) {
      FrameHeader frame;
      const FrameCheck check = offset + kFrameHeaderSize <= bytes.size()
                                   ? check_frame(bytes.subspan(offset), frame)
                                   : FrameCheck::end;
      if (check == FrameCheck::ok && frame.seq >= next_seq) {
        recovery.corrupt_commits += frame.seq - next_seq;
        next_seq = frame.seq + 1;
        offset += frame_size(frame.body_len);
        continue;
      }
      if (check == FrameCheck::end) break;
      // Corrupt, torn, or a frame out of order: a valid frame further on means the damage
      // is in the middle (skip it); none means a torn tail (cut it).
      const std::uint64_t found = resync(bytes, offset + 8, next_seq);
      if (found < bytes.size()) {
        offset = found;
        continue;
      }
      break;
    }
    // Whatever is not zero after the last valid frame is a torn tail: cut it and reallocate
    // (the new blocks read as zeros).
    std::uint64_t dirty_end = bytes.size();
    while (dirty_end > offset && bytes[dirty_end - 1] == 0)
      --dirty_end;
    if (dirty_end > offset) {
      recovery.torn_bytes += dirty_end - offset;
      const std::uint64_t size = segment->size;
      segment->file.reset();  // unmaps
      if (Status s = files_->open(options_.dir / segment_name(base), false, segment->file); !s) {
        return s;
      }
      if (Status s = segment->file->truncate(offset); !s) return s;
      if (Status s = segment->file->allocate(size); !s) return s;
      if (Status s = segment->file->sync(); !s) return s;
      if (Status s = segment->file->map(size, map); !s) return s;
    }
    active_ = std::move(segment);
    map_ = map;
    write_offset_ = offset;
    next_seq_ = next_seq;
    end_seq_.store(next_seq_, std::memory_order_release);
    durable_end_ = LogPosition{next_seq_, base, offset};  // what is on disk is durable now
    return {};
  }
}

Status SegmentLog::start_segment(std::uint64_t base_seq, std::uint64_t size) {
  const std::filesystem::path path = options_.dir / segment_name(base_seq);
  auto segment = std::make_shared<Segment>();
  segment->base = base_seq;
  segment->size = size;
  auto undo = [&](Status error) {
    segment.reset();
    (void)files_->remove(path);  // best effort: a half-made segment holds no commit
    return error;
  };
  if (Status s = files_->open(path, true, segment->file); !s) return s;
  if (Status s = segment->file->allocate(size); !s) return undo(std::move(s));
  std::uint8_t* map = nullptr;
  if (Status s = segment->file->map(size, map); !s) return undo(std::move(s));
  std::uint8_t head[kSegmentHeaderSize];
  encode_segment_header(SegmentHeader{base_seq, now_ns()}, head);
  std::memcpy(map, head, sizeof head);
  if (Status s = files_->sync_dir(options_.dir); !s) return undo(std::move(s));
  if (auto it = sizes_.find(base_seq); it != sizes_.end()) disk_bytes_ -= it->second;
  sizes_[base_seq] = size;
  disk_bytes_ += size;
  active_ = std::move(segment);
  map_ = map;
  write_offset_ = kSegmentHeaderSize;
  return {};
}

void SegmentLog::prefault(std::uint64_t ahead) noexcept {
  constexpr std::uint64_t kPrefaultCalls = 4;
  if (options_.sync_commits) return;
  const std::unique_lock busy(prefault_mutex_, std::try_to_lock);
  if (!busy.owns_lock()) return;
  std::shared_ptr<Segment> segment;  // keeps the mapping while it is faulted in
  std::uint64_t written = 0;
  std::uint64_t appended = 0;
  {
    std::lock_guard lock(mutex_);
    if (active_ == nullptr) return;
    segment = active_;
    written = write_offset_;
    appended = logical_written_ - prefault_logical_;
    prefault_logical_ = logical_written_;
  }
  // As far ahead as the log grows in a few calls, so that a slow log does not dirty pages
  // long before it writes them (they would be written back as zeros first).
  ahead = std::min(ahead, kPrefaultCalls * appended);
  if (segment->base != prefaulted_base_) {
    prefaulted_base_ = segment->base;
    prefaulted_upto_ = 0;
  }
  const std::uint64_t from = std::max(prefaulted_upto_, written);
  const std::uint64_t to = std::min(segment->size, written + ahead);
  if (from >= to) return;
  segment->file->prefault(from, to - from);
  prefaulted_upto_ = to;
}

Status SegmentLog::append(std::span<const std::uint8_t> body, std::uint32_t event_count,
                          std::uint32_t flags, LogPosition& at) {
  if (body.size() > kMaxBodySize) {
    return Status(Errc::invalid_argument, "a commit of " + std::to_string(body.size()) +
                                              " bytes is larger than the spool's frame limit");
  }
  const std::uint64_t frame = frame_size(body.size());
  // The segment being written is never deleted, so a new segment gets at most max_bytes -
  // segment_bytes: a commit needing more could never be written. Refused at once, before any
  // reclaim could drop a backlog to make room that would not be enough anyway.
  if (options_.segment_bytes + kSegmentHeaderSize + frame > options_.max_bytes) {
    return Status(Errc::invalid_argument,
                  "a commit of " + std::to_string(frame) + " bytes on disk can never fit in the " +
                      "spool in " + options_.dir.string() + " (max_bytes " +
                      std::to_string(options_.max_bytes) + " minus segment_bytes " +
                      std::to_string(options_.segment_bytes) + " for the segment being written)");
  }
  std::uint64_t logical_end = 0;
  if (failed_.load(std::memory_order_acquire)) {
    return Status(Errc::unavailable, sticky_sync_error().message() +
                                         " (an earlier sync failed: the spool takes no more "
                                         "commits until it is opened again)");
  }
  {
    std::lock_guard lock(mutex_);
    if (active_ == nullptr || write_offset_ + frame > active_->size) {
      const std::uint64_t size =
          std::max<std::uint64_t>(options_.segment_bytes, kSegmentHeaderSize + frame);
      if (disk_bytes_ + size > options_.max_bytes) {
        return Status(Errc::overloaded, "the spool in " + options_.dir.string() + " is full (" +
                                            std::to_string(disk_bytes_) + " of max_bytes " +
                                            std::to_string(options_.max_bytes) + " bytes)");
      }
      if (active_ != nullptr && options_.sync_commits) {
        // Everything before the new segment must be durable before anything in it is.
        Status synced = sync_file(*active_->file, UINT64_MAX);
        if (synced) {
          if (logical_written_ > logical_durable_.load(std::memory_order_relaxed)) {
            logical_durable_.store(logical_written_, std::memory_order_seq_cst);
          }
          durable_end_ = LogPosition{next_seq_, active_->base, write_offset_};
          end_seq_.store(next_seq_, std::memory_order_release);
        }
        synced_.notify();
        if (!synced) return synced;
      }
      if (Status s = start_segment(next_seq_, size); !s) return s;
    }
    std::uint8_t header[kFrameHeaderSize];
    encode_frame_header(next_seq_, body, event_count, flags, header);
    std::uint8_t* dst = map_ + write_offset_;
    std::memcpy(dst, header, kFrameHeaderSize);
    if (!body.empty()) std::memcpy(dst + kFrameHeaderSize, body.data(), body.size());
    std::memset(dst + kFrameHeaderSize + body.size(), 0, frame - kFrameHeaderSize - body.size());
    at = LogPosition{next_seq_, active_->base, write_offset_};
    write_offset_ += frame;
    ++next_seq_;
    // With synced commits, readers see a frame only once it is durable (wait_durable).
    if (!options_.sync_commits) end_seq_.store(next_seq_, std::memory_order_release);
    logical_written_ += frame;
    appends_.store(next_seq_, std::memory_order_relaxed);
    logical_end = logical_written_;
  }
  if (!options_.sync_commits) return {};
  return wait_durable(logical_end);
}

Status SegmentLog::sticky_sync_error() {
  std::lock_guard sync_lock(sync_mutex_);
  return sync_error_;
}

Status SegmentLog::sync_file(SpoolFile& file, std::uint64_t written_below) {
  std::lock_guard file_lock(file_sync_mutex_);
  // A failed sync fails every commit not known durable, now and later: the kernel may have
  // dropped the pages, and a later sync of the same file can report success.
  if (failed_.load(std::memory_order_seq_cst)) return sticky_sync_error();
  Status status = file.sync(written_below);
  if (!status) {
    {
      std::lock_guard sync_lock(sync_mutex_);
      if (sync_error_.ok()) sync_error_ = status;  // the first failure is the one reported
    }
    failed_.store(true, std::memory_order_seq_cst);
  }
  return status;
}

// Gathering (see wait_durable): at most this many yields, for at most this long.
constexpr int kGatherYields = 8;
constexpr std::chrono::microseconds kGatherFor{50};

// Group commit: whoever finds no sync running syncs the active segment for everyone who
// wrote before it read the write clock; the others park until that sync is done, then return
// if it covered them or compete to run the next one.
Status SegmentLog::wait_durable(std::uint64_t logical_end) {
  for (;;) {
    if (logical_durable_.load(std::memory_order_seq_cst) >= logical_end) return {};
    if (failed_.load(std::memory_order_seq_cst)) return sticky_sync_error();
    bool idle = false;
    if (!syncing_.compare_exchange_strong(idle, true, std::memory_order_seq_cst)) {
      // A sync is running: park until it ends (it notifies after clearing syncing_).
      const std::uint32_t token = synced_.prepare();
      if (syncing_.load(std::memory_order_seq_cst) &&
          logical_durable_.load(std::memory_order_seq_cst) < logical_end &&
          !failed_.load(std::memory_order_seq_cst)) {
        synced_.wait(token, std::chrono::nanoseconds(-1));
      }
      synced_.done();
      continue;
    }
    // This committer runs the sync. Whatever happens (an exception included), it gives the
    // turn back and wakes the parked ones.
    struct EndOfTurn {
      SegmentLog& log;
      ~EndOfTurn() {
        log.syncing_.store(false, std::memory_order_seq_cst);
        log.synced_.notify();
      }
    } end_of_turn{*this};
    // When the last sync covered several commits, the committers it woke may be about to
    // append, waiting for a core: yield to them while they keep coming (at most
    // kGatherYields times and kGatherFor) so that this sync covers them too rather than
    // leave them the next one. A lone committer does not yield.
    if (last_sync_commits_ > 1) {
      const auto until = std::chrono::steady_clock::now() + kGatherFor;
      std::uint64_t seen = appends_.load(std::memory_order_relaxed);
      for (int i = 0; i < kGatherYields && std::chrono::steady_clock::now() < until; ++i) {
        sched_yield();
        const std::uint64_t now = appends_.load(std::memory_order_relaxed);
        if (now == seen) break;
        seen = now;
      }
    }
    std::shared_ptr<Segment> segment;
    std::uint64_t target = 0;
    LogPosition written;
    {
      std::lock_guard log_lock(mutex_);
      segment = active_;
      target = logical_written_;
      written =
          LogPosition{next_seq_, active_ != nullptr ? active_->base : next_seq_, write_offset_};
    }
    last_sync_commits_ = written.seq - std::min(written.seq, last_sync_seq_);
    last_sync_seq_ = written.seq;
    // Covered meanwhile (by a segment switch's sync): nothing to do.
    Status status;
    if (logical_durable_.load(std::memory_order_seq_cst) < target && segment != nullptr) {
      // Only the frames below `written` are known whole: later ones may be being copied in.
      status = sync_file(*segment->file, written.offset);
    }
    if (status) {
      std::lock_guard log_lock(mutex_);
      if (target > logical_durable_.load(std::memory_order_relaxed)) {
        logical_durable_.store(target, std::memory_order_seq_cst);
      }
      if (written.seq > durable_end_.seq) {
        durable_end_ = written;
        end_seq_.store(written.seq, std::memory_order_release);
      }
    }
  }
}

LogPosition SegmentLog::end() const {
  std::lock_guard lock(mutex_);
  if (options_.sync_commits) return durable_end_;
  return LogPosition{next_seq_, active_ != nullptr ? active_->base : next_seq_,
                     active_ != nullptr ? write_offset_ : kSegmentHeaderSize};
}

Status SegmentLog::release_before(std::uint64_t seq, std::uint64_t& freed) {
  freed = 0;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> doomed;  // base, size
  {
    std::lock_guard lock(mutex_);
    for (auto it = sizes_.begin(); it != sizes_.end(); ++it) {
      const auto next = std::next(it);
      if (next == sizes_.end() || next->first > seq) break;  // holds a commit >= seq
      if (active_ != nullptr && it->first == active_->base) break;
      doomed.emplace_back(it->first, it->second);
    }
  }
  Status status;
  for (const auto& [base, size] : doomed) {
    Status s = files_->remove(options_.dir / segment_name(base));
    if (!s && s.code() != Errc::not_found) {
      status.update(s);
      break;
    }
    std::lock_guard lock(mutex_);
    sizes_.erase(base);
    disk_bytes_ -= size;
    freed += size;
  }
  if (freed != 0) status.update(files_->sync_dir(options_.dir));
  return status;
}

std::uint64_t SegmentLog::disk_bytes() const {
  std::lock_guard lock(mutex_);
  return disk_bytes_;
}

std::vector<std::uint64_t> SegmentLog::segments() const {
  std::lock_guard lock(mutex_);
  std::vector<std::uint64_t> bases;
  bases.reserve(sizes_.size());
  for (const auto& entry : sizes_)
    bases.push_back(entry.first);
  return bases;
}

// ---- LogReader ------------------------------------------------------------------------

LogReader::LogReader(const SegmentLog& log, LogPosition from) : log_(log), cursor_(from) {}

Status LogReader::open_segment(std::uint64_t base) {
  file_.reset();
  buffer_.clear();
  buffer_offset_ = 0;
  if (Status s =
          log_.files()->open(log_.options().dir / SegmentLog::segment_name(base), false, file_);
      !s) {
    return s;
  }
  file_base_ = base;
  return {};
}

// Makes buffer_ hold [offset, offset + want) or as much of it as exists below `limit`.
Status LogReader::fill(std::uint64_t offset, std::size_t want, std::uint64_t limit) {
  if (offset >= buffer_offset_ && offset + want <= buffer_offset_ + buffer_.size()) return {};
  const std::uint64_t end = std::min<std::uint64_t>(limit, offset + std::max(want, kReadChunk));
  buffer_.resize(end > offset ? end - offset : 0);
  buffer_offset_ = offset;
  std::size_t got = 0;
  Status s = file_->read_at(offset, buffer_, got);
  buffer_.resize(got);
  if (!s) buffer_.clear();
  return s;
}

// Points the cursor at the start of the segment that holds `seq` (frames before it are
// then skipped), or at the first segment after it when it was deleted or lost.
Status LogReader::locate(std::uint64_t seq) {
  const std::vector<std::uint64_t> bases = log_.segments();
  auto it = std::upper_bound(bases.begin(), bases.end(), seq);
  if (it == bases.begin()) {
    if (bases.empty()) return Status(Errc::internal, "the spool has no segment");
    corrupt_commits_ += *it - seq;  // older than anything on disk: lost
    cursor_ = LogPosition{*it, *it, kSegmentHeaderSize};
    return open_segment(*it);
  }
  --it;
  cursor_.segment = *it;
  cursor_.offset = kSegmentHeaderSize;
  return open_segment(*it);
}

Status LogReader::advance(Next& result, std::vector<Event>* events, std::uint32_t& count,
                          LogPosition& at) {
  // The log's end is read under its lock only when the cursor reached the last one read.
  if (cursor_.seq >= end_.seq) end_ = log_.end();
  const LogPosition end = end_;
  for (;;) {
    if (cursor_.seq >= end.seq) {
      result = Next::end;
      return {};
    }
    if (file_ == nullptr || file_base_ != cursor_.segment) {
      Status s = open_segment(cursor_.segment);
      if (s.code() == Errc::not_found) s = locate(cursor_.seq);
      if (!s) return s;
    }
    const bool active = cursor_.segment == end.segment;
    std::uint64_t limit = end.offset;
    if (!active) {
      if (Status s = file_->size(limit); !s) return s;
    }
    auto next_segment = [&] {
      // The rest of this segment holds nothing more: the next commit starts the next one.
      const std::vector<std::uint64_t> bases = log_.segments();
      const auto it = std::upper_bound(bases.begin(), bases.end(), cursor_.segment);
      const std::uint64_t base = it == bases.end() ? end.seq : *it;
      if (base > cursor_.seq) corrupt_commits_ += base - cursor_.seq;
      cursor_ = LogPosition{std::max(base, cursor_.seq), base, kSegmentHeaderSize};
      file_.reset();
    };
    if (cursor_.offset + kFrameHeaderSize > limit) {
      if (active) {  // cannot be: end.seq > cursor.seq means a frame is there
        cursor_ = end;
        continue;
      }
      next_segment();
      continue;
    }
    if (Status s = fill(cursor_.offset, kFrameHeaderSize, limit); !s) return s;
    FrameHeader header;
    auto view = [&](std::uint64_t offset) {
      return std::span<const std::uint8_t>(buffer_).subspan(
          static_cast<std::size_t>(offset - buffer_offset_));
    };
    FrameCheck check = check_frame(view(cursor_.offset), header);
    if (check == FrameCheck::torn && cursor_.offset + frame_size(header.body_len) <= limit) {
      if (Status s = fill(cursor_.offset, frame_size(header.body_len), limit); !s) return s;
      check = check_frame(view(cursor_.offset), header);
    }
    if (check == FrameCheck::end && !active) {
      next_segment();
      continue;
    }
    if (check == FrameCheck::ok) {
      const std::uint64_t frame_offset = cursor_.offset;
      cursor_.offset += frame_size(header.body_len);
      if (header.seq < cursor_.seq) continue;  // before the commit sought (after locate)
      corrupt_commits_ += header.seq - cursor_.seq;
      at = LogPosition{header.seq, cursor_.segment, frame_offset};
      cursor_.seq = header.seq + 1;
      count = header.event_count;
      last_flags_ = header.flags;
      if (events != nullptr) {
        const std::size_t before = events->size();
        const Status decoded =
            decode_body(view(frame_offset).subspan(kFrameHeaderSize, header.body_len),
                        header.event_count, *events);
        if (!decoded) {
          events->resize(before);
          ++corrupt_commits_;
          continue;
        }
      }
      result = Next::commit;
      return {};
    }
    // Corrupt or torn in the middle: find the next valid frame in this segment (8-byte
    // steps, through the chunked buffer).
    bool found = false;
    for (std::uint64_t candidate = cursor_.offset + 8; candidate + kFrameHeaderSize <= limit;
         candidate += 8) {
      if (Status s = fill(candidate, kFrameHeaderSize, limit); !s) return s;
      FrameHeader probe;
      FrameCheck probed = check_frame(view(candidate), probe);
      if (probed == FrameCheck::torn && candidate + frame_size(probe.body_len) <= limit) {
        if (Status s = fill(candidate, frame_size(probe.body_len), limit); !s) return s;
        probed = check_frame(view(candidate), probe);
      }
      if (probed == FrameCheck::ok && probe.seq >= cursor_.seq) {
        cursor_.offset = candidate;
        found = true;
        break;
      }
    }
    if (found) continue;
    if (active) {
      corrupt_commits_ += end.seq - cursor_.seq;
      cursor_ = end;
      continue;
    }
    next_segment();
  }
}

}  // namespace emissions::detail::spool
