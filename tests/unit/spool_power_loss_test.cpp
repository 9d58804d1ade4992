// The spool (src/spool/spool.*) across a power loss, on MemoryFiles
// (tests/support/memory_files.hpp: forgets every byte not synced). Lanes are driven as
// their relays drive them (src/pipeline/spool_relay.cpp): each commit read from
// start(lane) is published(), then handed_over(); settlements come back later and out of
// order; checkpoint() now and then. After the power loss the spool is opened again and
// each lane is read from start(lane), as its next relay would.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "memory_files.hpp"
#include "spool/codec.hpp"
#include "spool/positions.hpp"
#include "spool/spool.hpp"

namespace emissions::detail::spool {
namespace {

using testing_support::MemoryFiles;

const std::filesystem::path kDir = "/spool";
const std::vector<std::string> kLanes = {"kafka", "webhooks"};
// Payload bytes per event: about 300 commits a segment, 75 for kLargeWriter's.
constexpr std::size_t kPad = 900;
constexpr std::uint32_t kLargeWriter = 8;
constexpr std::uint64_t kSegmentBytes = 1u << 20;
constexpr std::uint64_t kPage = 4096;
constexpr auto kWait = std::chrono::seconds(60);

// A commit is named by who appended it and its index among that writer's commits; its
// events (2 to 5, each with its own id) follow from both. kLargeWriter's are four times
// larger (fewer commits to decode for the same bytes).
struct CommitKey {
  std::uint32_t writer = 0;
  std::uint32_t index = 0;
  friend auto operator<=>(const CommitKey&, const CommitKey&) = default;
};

std::ostream& operator<<(std::ostream& os, const CommitKey& k) {
  return os << "writer " << k.writer << " commit " << k.index;
}

std::vector<Event> commit_events(CommitKey k) {
  std::vector<Event> events;
  for (std::uint32_t j = 0; j < 2 + k.index % 4; ++j) {
    Event e;
    e.name = j % 2 == 0 ? "order.created" : "order.paid";
    e.payload = nlohmann::json{{"writer", k.writer},
                               {"index", k.index},
                               {"event", j},
                               {"pad", std::string(k.writer == kLargeWriter ? 4 * kPad : kPad,
                                                   static_cast<char>('a' + j))}};
    e.metadata = nlohmann::json::object({{"tenant", "t" + std::to_string(k.writer)}});
    e.id = EventId((std::uint64_t{k.writer} + 1) << 32 | k.index, j + 1);
    e.emitted_at = std::chrono::system_clock::time_point(std::chrono::nanoseconds(
        1'700'000'000'000'000'000LL + std::int64_t{k.writer} * 1'000'000'000LL +
        std::int64_t{k.index} * 1000 + j));
    events.push_back(std::move(e));
  }
  return events;
}

// The commit `events` are, when they are exactly the events of one (whole, unchanged).
std::optional<CommitKey> identify(const std::vector<Event>& events) {
  if (events.empty()) return std::nullopt;
  const std::uint64_t high = events.front().id.high();
  const CommitKey key{static_cast<std::uint32_t>(high >> 32) - 1,
                      static_cast<std::uint32_t>(high & 0xFFFFFFFFu)};
  const std::vector<Event> want = commit_events(key);
  if (events.size() != want.size()) return std::nullopt;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const Event& got = events[i];
    if (got.id != want[i].id || got.name != want[i].name || got.payload != want[i].payload ||
        got.metadata != want[i].metadata || got.emitted_at != want[i].emitted_at) {
      return std::nullopt;
    }
  }
  return key;
}

struct Read {
  std::uint64_t seq = 0;
  CommitKey key;
  friend bool operator==(const Read&, const Read&) = default;
};

std::ostream& operator<<(std::ostream& os, const Read& r) {
  return os << "seq " << r.seq << " (" << r.key << ")";
}

SpoolOptions options(Durability durability, std::uint64_t max_bytes = 1ull << 30) {
  return SpoolOptions{.dir = kDir,
                      .durability = durability,
                      .max_bytes = max_bytes,
                      .segment_bytes = kSegmentBytes};
}

std::unique_ptr<Spool> open_spool(const std::shared_ptr<MemoryFiles>& files,
                                  const SpoolOptions& o) {
  return Spool::open(o, kLanes, files);
}

// One lane driven as its relay drives it. Commits with seq < settle_below are settled in
// windows of kWindow, the last of a window first (an asynchronous adapter acks out of
// order), once `hold` newer ones were read after the window (so the last ones read stay
// unsettled); the others are handed over and never settled (a stalled adapter).
// checkpoint() every `checkpoint_every` commits read (0: never).
class Relay {
 public:
  static constexpr std::size_t kWindow = 5;
  struct Options {
    std::uint64_t settle_below = UINT64_MAX;
    std::size_t hold = 0;
    bool auto_settle = true;  // false: only settle_before() settles
    std::size_t checkpoint_every = 32;
  };

  Relay(Spool& spool, std::size_t lane, Options options)
      : spool_(spool), lane_(lane), options_(options), reader_(spool.log(), spool.start(lane)) {}

  // Reads one commit and hands it over; false when there is nothing more yet.
  bool step() {
    LogReader::Next next{};
    std::vector<Event> events;
    LogPosition at;
    const Status s = reader_.next(next, events, at);
    EXPECT_TRUE(s.ok()) << s.to_string();
    if (!s || next == LogReader::Next::end) return false;
    const std::optional<CommitKey> key = identify(events);
    EXPECT_TRUE(key.has_value()) << "lane " << lane_ << " read a commit nobody appended at "
                                 << at.seq;
    read_.push_back(Read{at.seq, key.value_or(CommitKey{})});
    if (!spool_.published(lane_, at)) {  // only a full spool with drop_oldest lanes refuses
      ADD_FAILURE() << "lane " << lane_ << ": commit " << at.seq << " refused";
      return false;
    }
    spool_.handed_over(lane_, reader_.cursor());
    if (at.seq < options_.settle_below) unsettled_.emplace_back(at.seq, events.size());
    while (options_.auto_settle &&
           (unsettled_.size() >= options_.hold + kWindow ||
            (options_.hold == 0 && !unsettled_.empty() && at.seq + 1 >= options_.settle_below))) {
      settle(std::min(kWindow, unsettled_.size()));
    }
    if (options_.checkpoint_every != 0 && read_.size() % options_.checkpoint_every == 0) {
      const Status c = spool_.checkpoint();
      EXPECT_TRUE(c.ok()) << c.to_string();
    }
    return true;
  }

  // Steps until `done` is set and the log has nothing more.
  void run(const std::atomic<bool>& done) {
    for (;;) {
      const bool finished = done.load();
      if (step()) continue;
      if (finished) return;
      std::this_thread::yield();
    }
  }

  // Settles the oldest `n` unsettled commits, the last first.
  void settle(std::size_t n) {
    for (std::size_t i = n; i-- > 0;) {
      AdapterStats stats;
      stats.delivered = unsettled_[i].second;
      spool_.settled(lane_, unsettled_[i].first, stats);
    }
    unsettled_.erase(unsettled_.begin(), unsettled_.begin() + static_cast<std::ptrdiff_t>(n));
  }
  void settle_all() { settle(unsettled_.size()); }
  void settle_before(std::uint64_t seq) {
    std::size_t n = 0;
    while (n < unsettled_.size() && unsettled_[n].first < seq)
      ++n;
    settle(n);
  }

  // The lane's position now: its first commit not settled.
  [[nodiscard]] std::uint64_t position() const {
    if (!unsettled_.empty()) return unsettled_.front().first;
    const std::uint64_t after_read = read_.empty() ? 1 : read_.back().seq + 1;
    return std::min(after_read, options_.settle_below);
  }
  [[nodiscard]] const std::vector<Read>& read() const noexcept { return read_; }

 private:
  Spool& spool_;
  std::size_t lane_;
  Options options_;
  LogReader reader_;
  std::vector<Read> read_;
  std::deque<std::pair<std::uint64_t, std::size_t>> unsettled_;  // seq, events
};

struct Appended {
  std::vector<CommitKey> acked;
  std::vector<CommitKey> refused;
};

// Appends commits (writer, first) .. (writer, first + count - 1). `cut` (when given) is
// read after each append returned ok: the commit counts as acknowledged before the power
// loss (goes to `acked_before_cut`) only when it still read false then.
void append_commits(Spool& spool, std::uint32_t writer, std::uint32_t first, std::uint32_t count,
                    Appended& out, const std::atomic<bool>* cut = nullptr,
                    std::vector<CommitKey>* acked_before_cut = nullptr) {
  std::vector<std::uint8_t> scratch;
  for (std::uint32_t i = first; i < first + count; ++i) {
    const CommitKey key{writer, i};
    const Status s = spool.append(commit_events(key), 0, scratch, std::chrono::milliseconds(0));
    if (s) {
      out.acked.push_back(key);
      if (cut != nullptr && !cut->load()) acked_before_cut->push_back(key);
    } else {
      EXPECT_EQ(s.code(), Errc::overloaded) << s.to_string();
      out.refused.push_back(key);
    }
  }
}

// Reads lane `lane` of an opened spool from start(lane) to the end of the log. The commits
// its reader found missing or corrupt go to `corrupt`; without it there must be none.
std::vector<Read> read_lane(const Spool& spool, std::size_t lane,
                            std::uint64_t* corrupt = nullptr) {
  std::vector<Read> out;
  LogReader reader(spool.log(), spool.start(lane));
  for (;;) {
    LogReader::Next next{};
    std::vector<Event> events;
    LogPosition at;
    const Status s = reader.next(next, events, at);
    EXPECT_TRUE(s.ok()) << s.to_string();
    if (!s || next == LogReader::Next::end) break;
    const std::optional<CommitKey> key = identify(events);
    EXPECT_TRUE(key.has_value()) << "a commit that is not whole, or not one appended, at seq "
                                 << at.seq;
    out.push_back(Read{at.seq, key.value_or(CommitKey{})});
  }
  if (corrupt != nullptr) {
    *corrupt = reader.corrupt_commits();
  } else {
    EXPECT_EQ(reader.corrupt_commits(), 0u) << "lane " << lane;
  }
  return out;
}

// The commits of `log` (every commit, in seq order from seq 1) from seq `from` on.
std::vector<Read> from_seq(const std::vector<Read>& log, std::uint64_t from) {
  std::vector<Read> out;
  for (const Read& r : log) {
    if (r.seq >= from) out.push_back(r);
  }
  return out;
}

// ---- Durability::machine -------------------------------------------------------------

TEST(SpoolPowerLossTest, MachineDurabilityKeepsEveryAcknowledgedCommitNotSettledAndCheckpointed) {
  constexpr std::uint32_t kWriters = 4;
  constexpr std::uint32_t kAttempts = 450;  // per writer: more than 4 MiB holds
  constexpr std::uint64_t kStall = 450;     // lane 1 settles only the commits before this
  constexpr std::size_t kHold = 7;          // lane 0 leaves its last 7+ commits unsettled
  auto files = std::make_shared<MemoryFiles>();
  std::vector<Read> log;  // every commit, in seq order: lane 0 reads them all
  std::set<CommitKey> acked;
  std::set<CommitKey> refused;
  std::uint64_t checkpointed[2] = {0, 0};  // each lane's position when last checkpointed
  std::uint64_t end_before = 0;
  {
    auto spool = open_spool(files, options(Durability::machine, 4u << 20));
    Relay lane0(*spool, 0, {.hold = kHold});
    Relay lane1(*spool, 1, {.settle_below = kStall});
    std::atomic<bool> done{false};
    std::vector<Appended> appended(kWriters);
    {
      std::thread relay0([&] { lane0.run(done); });
      std::thread relay1([&] { lane1.run(done); });
      std::vector<std::thread> writers;
      for (std::uint32_t w = 0; w < kWriters; ++w) {
        writers.emplace_back([&, w] { append_commits(*spool, w, 0, kAttempts, appended[w]); });
      }
      for (std::thread& t : writers)
        t.join();
      done = true;
      relay0.join();
      relay1.join();
    }
    for (const Appended& a : appended) {
      acked.insert(a.acked.begin(), a.acked.end());
      refused.insert(a.refused.begin(), a.refused.end());
    }
    // The positions are saved; then lane 0 settles what it held, with no checkpoint after:
    // those commits are settled and not checkpointed.
    ASSERT_TRUE(spool->checkpoint().ok());
    checkpointed[0] = lane0.position();
    checkpointed[1] = lane1.position();
    lane0.settle_all();
    log = lane0.read();
    end_before = spool->log().end().seq;
  }  // the process dies: no close(), no last checkpoint
  files->power_loss();

  // What was appended before: every acknowledged commit, each once, in each writer's order;
  // none that was refused.
  ASSERT_FALSE(refused.empty()) << "max_bytes never refused a commit: the test lost its point";
  ASSERT_EQ(log.size(), acked.size());
  ASSERT_GT(log.size(), kStall + 100);
  std::map<std::uint32_t, std::uint32_t> next_index;
  for (std::size_t i = 0; i < log.size(); ++i) {
    ASSERT_EQ(log[i].seq, i + 1);
    EXPECT_EQ(acked.count(log[i].key), 1u) << log[i];
    EXPECT_EQ(refused.count(log[i].key), 0u) << log[i];
    EXPECT_GE(log[i].key.index, next_index[log[i].key.writer]) << log[i];
    next_index[log[i].key.writer] = log[i].key.index + 1;
  }
  ASSERT_LT(checkpointed[0], end_before) << "lane 0 held nothing back";
  ASSERT_LE(checkpointed[1], kStall);

  auto spool = open_spool(files, options(Durability::machine, 4u << 20));
  EXPECT_EQ(spool->log().end().seq, end_before) << "acknowledged commits lost at the end";
  EXPECT_GT(spool->log().segments().front(), 1u) << "no segment was deleted behind the lanes";
  for (std::size_t lane = 0; lane < kLanes.size(); ++lane) {
    EXPECT_EQ(spool->start(lane).seq, checkpointed[lane]) << "lane " << lane;
    EXPECT_EQ(read_lane(*spool, lane), from_seq(log, checkpointed[lane])) << "lane " << lane;
  }
}

TEST(SpoolPowerLossTest, MachineDurabilityLosesNothingAcknowledgedWhenThePowerGoesMidCommit) {
  constexpr std::uint32_t kWriters = 4;
  constexpr std::uint32_t kAttempts = 300;
  constexpr std::uint64_t kStall = 400;
  auto files = std::make_shared<MemoryFiles>();
  std::shared_ptr<MemoryFiles> at_cut;
  std::vector<Read> log;
  std::vector<std::vector<CommitKey>> before_cut(kWriters);
  std::uint64_t final_position[2] = {0, 0};
  {
    auto spool = open_spool(files, options(Durability::machine));
    Relay lane0(*spool, 0, {});
    Relay lane1(*spool, 1, {.settle_below = kStall});
    std::atomic<bool> done{false};
    std::atomic<bool> cut{false};
    std::vector<Appended> appended(kWriters);
    std::thread relay0([&] { lane0.run(done); });
    std::thread relay1([&] { lane1.run(done); });
    std::vector<std::thread> writers;
    // Each writer waits for the power loss before its last quarter, so it comes while
    // commits are being appended, never after the last.
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    for (std::uint32_t w = 0; w < kWriters; ++w) {
      writers.emplace_back([&, w] {
        constexpr std::uint32_t kFirst = kAttempts * 3 / 4;
        append_commits(*spool, w, 0, kFirst, appended[w], &cut, &before_cut[w]);
        while (!cut.load() && std::chrono::steady_clock::now() < deadline)
          std::this_thread::yield();
        append_commits(*spool, w, kFirst, kAttempts - kFirst, appended[w], &cut, &before_cut[w]);
      });
    }
    // The power goes when half the commits are in: `cut` is set first, so a commit whose
    // append returned before that moment is acknowledged before the power loss.
    while (spool->log().end_seq() < kAttempts * kWriters / 2 &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    cut = true;
    at_cut = files->stable_copy();
    for (std::thread& t : writers)
      t.join();
    done = true;
    relay0.join();
    relay1.join();
    for (const Appended& a : appended)
      ASSERT_TRUE(a.refused.empty());
    log = lane0.read();
    final_position[0] = lane0.position();
    final_position[1] = lane1.position();
    ASSERT_EQ(log.size(), std::size_t{kAttempts} * kWriters);
  }
  at_cut->power_loss();

  std::size_t acknowledged = 0;
  std::map<CommitKey, std::uint64_t> seq_of;
  for (const Read& r : log)
    seq_of[r.key] = r.seq;
  std::uint64_t last_acknowledged = 0;
  for (const auto& keys : before_cut) {
    acknowledged += keys.size();
    for (const CommitKey& key : keys)
      last_acknowledged = std::max(last_acknowledged, seq_of.at(key));
  }
  ASSERT_GT(acknowledged, 0u);
  ASSERT_LT(acknowledged, log.size()) << "the power went after the last commit";

  auto spool = open_spool(at_cut, options(Durability::machine));
  const std::uint64_t end = spool->log().end().seq;
  // The log is the first commits of the one before the power loss, as they were: every
  // acknowledged one, maybe some whose append had not returned yet.
  EXPECT_GT(end, last_acknowledged) << "an acknowledged commit was lost";
  EXPECT_LE(end, log.size() + 1);
  for (std::size_t lane = 0; lane < kLanes.size(); ++lane) {
    const std::uint64_t start = spool->start(lane).seq;
    // A saved position never passes a commit the lane did not settle.
    EXPECT_LE(start, final_position[lane]) << "lane " << lane;
    std::vector<Read> want = from_seq(log, start);
    want.erase(
        std::remove_if(want.begin(), want.end(), [&](const Read& r) { return r.seq >= end; }),
        want.end());
    EXPECT_EQ(read_lane(*spool, lane), want) << "lane " << lane;
  }
}

// ---- Durability::process -------------------------------------------------------------

// A log written with Durability::process by kLargeWriter (commits 0 .. count-1, seq k+1
// for commit k), lane 0 having settled and checkpointed the first `settled`,
// lane 1 nothing; the process then died. Where each frame is, for write-back.
struct ProcessLog {
  std::shared_ptr<MemoryFiles> files;
  struct Frame {
    Read read;
    std::uint64_t begin = 0;  // byte offsets in the log (its segment files end to end)
    std::uint64_t end = 0;    // past the frame's last byte that is not padding
  };
  std::vector<Frame> frames;
  std::vector<std::pair<std::filesystem::path, std::uint64_t>> segments;  // in order, size
  std::uint64_t bytes = 0;
  std::uint64_t lane0_position = 0;
};

ProcessLog write_process_log(std::uint32_t count, std::uint64_t settled) {
  ProcessLog out;
  out.files = std::make_shared<MemoryFiles>();
  auto spool = open_spool(out.files, options(Durability::process));
  Appended appended;
  append_commits(*spool, kLargeWriter, 0, count, appended);
  EXPECT_EQ(appended.acked.size(), count);
  Relay lane0(*spool, 0, {.settle_below = settled + 1});
  Relay lane1(*spool, 1, {.settle_below = 0});
  while (lane0.step() || lane1.step()) {
  }
  EXPECT_TRUE(spool->checkpoint().ok());
  out.lane0_position = lane0.position();
  std::map<std::uint64_t, std::uint64_t> segment_start;  // base seq -> offset in the log
  for (const std::uint64_t base : spool->log().segments()) {
    const std::filesystem::path path = kDir / SegmentLog::segment_name(base);
    const std::uint64_t size = out.files->node(path)->current.size();
    segment_start[base] = out.bytes;
    out.segments.emplace_back(path, size);
    out.bytes += size;
  }
  LogReader reader(spool->log(), LogPosition{});
  for (;;) {
    LogReader::Next next{};
    std::vector<Event> events;
    LogPosition at;
    EXPECT_TRUE(reader.next(next, events, at).ok());
    if (next == LogReader::Next::end) break;
    std::vector<std::uint8_t> body;
    EXPECT_TRUE(encode_body(events, body).ok());
    const std::uint64_t begin = segment_start.at(at.segment) + at.offset;
    out.frames.push_back({Read{at.seq, identify(events).value_or(CommitKey{})}, begin,
                          begin + kFrameHeaderSize + body.size()});
  }
  EXPECT_EQ(out.frames.size(), count);
  return out;
}

// Writes back the log's bytes [from, to) (offsets in the log).
void write_back_log(MemoryFiles& files, const ProcessLog& log, std::uint64_t from,
                    std::uint64_t to) {
  std::uint64_t start = 0;
  for (const auto& [path, size] : log.segments) {
    const std::uint64_t lo = std::max(from, start);
    const std::uint64_t hi = std::min(to, start + size);
    if (lo < hi) files.write_back(path, lo - start, hi - lo);
    start += size;
  }
}

void write_back_positions(MemoryFiles& files) {
  for (int slot = 0; slot < 2; ++slot)
    files.write_back(kDir / PositionStore::slot_name(slot), 0, UINT64_MAX);
}

// After a power loss the log goes on: the next commit takes the next seq and reads back.
void expect_appends_after(Spool& spool, std::uint64_t end) {
  Appended appended;
  append_commits(spool, 9, 0, 1, appended);
  ASSERT_EQ(appended.acked.size(), 1u);
  std::uint64_t corrupt = 0;  // what the power loss took: checked by the caller
  const std::vector<Read> tail = read_lane(spool, 1, &corrupt);
  ASSERT_FALSE(tail.empty());
  EXPECT_EQ(tail.back(), (Read{end, CommitKey{9, 0}}));
}

TEST(SpoolPowerLossTest, ProcessDurabilityKeepsTheWholeCommitsTheKernelWroteBackInOrder) {
  // About one and a half segments; lane 0 settled the first 30 commits.
  const ProcessLog written = write_process_log(120, 30);
  ASSERT_EQ(written.segments.size(), 2u);
  ASSERT_EQ(written.lane0_position, 31u);
  std::vector<Read> log;
  for (const ProcessLog::Frame& f : written.frames)
    log.push_back(f.read);
  // The kernel wrote back the log's first `cut` bytes (its pages in order) and the
  // directory and file sizes; the positions too, or not.
  std::vector<std::uint64_t> cuts;
  for (std::uint64_t cut = 0; cut <= written.bytes; cut += 31 * kPage)
    cuts.push_back(cut);
  cuts.push_back(kSegmentBytes);
  cuts.push_back(kSegmentBytes + kPage);
  cuts.push_back(written.frames.back().end);
  for (const std::uint64_t cut : cuts) {
    for (const bool positions : {true, false}) {
      SCOPED_TRACE("cut " + std::to_string(cut) + (positions ? ", positions written back" : ""));
      auto files = written.files->copy();
      files->write_back_metadata();
      write_back_log(*files, written, 0, cut);
      if (positions) write_back_positions(*files);
      files->power_loss();
      // Exactly the commits that were written back whole: a prefix of the log.
      std::uint64_t kept = 0;
      while (kept < written.frames.size() && written.frames[kept].end <= cut)
        ++kept;
      auto spool = open_spool(files, options(Durability::process));
      EXPECT_EQ(spool->log().end().seq, kept + 1);
      std::vector<Read> want(log.begin(), log.begin() + static_cast<std::ptrdiff_t>(kept));
      // Lane 1 settled nothing. Lane 0 goes on from its position whether or not the
      // kernel wrote the slots back: each slot file's first save is synced (and this
      // position was the first save of its slot).
      EXPECT_EQ(read_lane(*spool, 1), want);
      EXPECT_EQ(read_lane(*spool, 0), from_seq(want, written.lane0_position));
      expect_appends_after(*spool, kept + 1);
    }
  }
}

TEST(SpoolPowerLossTest, ProcessDurabilityKeepsOnlyWholeCommitsWhateverPagesWereWrittenBack) {
  const ProcessLog written = write_process_log(120, 30);
  std::map<std::uint64_t, CommitKey> original;
  for (const ProcessLog::Frame& f : written.frames)
    original[f.read.seq] = f.read.key;
  std::mt19937_64 rng(20261130);
  for (int run = 0; run < 24; ++run) {
    SCOPED_TRACE("run " + std::to_string(run));
    auto files = written.files->copy();
    files->write_back_metadata();
    // Each page (the positions' too) reached the disk or not, in no order.
    const double kept_share = 0.5 + 0.45 * static_cast<double>(run % 10) / 10.0;
    std::bernoulli_distribution written_back(kept_share);
    std::uint64_t prefix = 0;  // the log's bytes written back without a gap
    bool gap = false;
    for (std::uint64_t page = 0; page < written.bytes; page += kPage) {
      if (written_back(rng)) {
        write_back_log(*files, written, page, page + kPage);
        if (!gap) prefix = page + kPage;
      } else {
        gap = true;
      }
    }
    if (written_back(rng)) write_back_positions(*files);
    files->power_loss();
    auto spool = open_spool(files, options(Durability::process));
    for (std::size_t lane = 0; lane < kLanes.size(); ++lane) {
      std::uint64_t corrupt = 0;  // the commits a hole took: counted, not checked
      const std::vector<Read> got = read_lane(*spool, lane, &corrupt);
      // Whole commits as they were committed, each under its seq, in order.
      for (std::size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(original.count(got[i].seq), 1u) << got[i];
        EXPECT_EQ(got[i].key, original[got[i].seq]) << got[i];
        if (i > 0) {
          EXPECT_GT(got[i].seq, got[i - 1].seq);
        }
      }
      // At least every commit written back before the first page that was not.
      const std::uint64_t from = spool->start(lane).seq;
      for (const ProcessLog::Frame& f : written.frames) {
        if (f.end > prefix || f.read.seq < from) continue;
        EXPECT_TRUE(std::find(got.begin(), got.end(), f.read) != got.end())
            << "lane " << lane << " lost " << f.read << ", written back before any gap";
      }
      // A lane starts no later than the commits it had not settled (lane 1: none).
      if (lane == 1) {
        EXPECT_EQ(from, 1u);
      }
    }
    expect_appends_after(*spool, spool->log().end().seq);
  }
}

// ---- damaged positions ------------------------------------------------------------------

// A machine-durable spool whose two position slots hold two checkpoints: `older`, then
// `newer` (each lane's first commit not settled), over `count` commits; the process died.
struct TwoCheckpoints {
  std::shared_ptr<MemoryFiles> files;
  std::vector<Read> log;
  std::uint64_t older[2] = {0, 0};
  std::uint64_t newer[2] = {0, 0};
  int newest_slot = 0;
};

TwoCheckpoints two_checkpoints(std::uint32_t count, const std::uint64_t (&older)[2],
                               const std::uint64_t (&newer)[2]) {
  TwoCheckpoints out;
  out.files = std::make_shared<MemoryFiles>();
  {
    auto spool = open_spool(out.files, options(Durability::machine));
    Appended appended;
    append_commits(*spool, 0, 0, count, appended);
    EXPECT_EQ(appended.acked.size(), count);
    const Relay::Options manual{.auto_settle = false, .checkpoint_every = 0};
    Relay lanes[2] = {Relay(*spool, 0, manual), Relay(*spool, 1, manual)};
    for (Relay& lane : lanes) {
      while (lane.step()) {
      }
    }
    for (std::size_t lane = 0; lane < 2; ++lane)
      lanes[lane].settle_before(older[lane]);
    EXPECT_TRUE(spool->checkpoint().ok());
    for (std::size_t lane = 0; lane < 2; ++lane) {
      out.older[lane] = lanes[lane].position();
      lanes[lane].settle_before(newer[lane]);
    }
    EXPECT_TRUE(spool->checkpoint().ok());
    for (std::size_t lane = 0; lane < 2; ++lane)
      out.newer[lane] = lanes[lane].position();
    out.log = lanes[0].read();
  }
  out.files->power_loss();
  std::uint64_t generation[2] = {0, 0};
  for (int slot = 0; slot < 2; ++slot) {
    std::vector<AdapterPosition> adapters;
    const auto node = out.files->node(kDir / PositionStore::slot_name(slot));
    EXPECT_TRUE(PositionStore::decode(node->current, generation[slot], adapters).ok());
  }
  out.newest_slot = generation[1] > generation[0] ? 1 : 0;
  return out;
}

using Damage = std::function<void(std::vector<std::uint8_t>&)>;

const std::vector<std::pair<std::string, Damage>>& damages() {
  static const std::vector<std::pair<std::string, Damage>> kDamages = {
      {"a flipped bit", [](std::vector<std::uint8_t>& b) { b[b.size() / 2] ^= 0x08; }},
      {"torn in half", [](std::vector<std::uint8_t>& b) { b.resize(b.size() / 2); }},
      {"zeros", [](std::vector<std::uint8_t>& b) { std::fill(b.begin(), b.end(), 0); }},
  };
  return kDamages;
}

// A copy of `state`'s files with the newest slot (or both) damaged on disk.
std::shared_ptr<MemoryFiles> damaged(const TwoCheckpoints& state, const Damage& damage, bool both) {
  auto files = state.files->copy();
  for (int slot = 0; slot < 2; ++slot) {
    if (slot != state.newest_slot && !both) continue;
    auto node = files->node(kDir / PositionStore::slot_name(slot));
    damage(node->current);
    node->durable = node->current;
  }
  return files;
}

TEST(SpoolPowerLossTest, ADamagedPositionsSlotFallsBackToTheOlderPositionsDuplicatesNeverLoss) {
  // 200 commits, one segment: nothing is deleted.
  const TwoCheckpoints state = two_checkpoints(200, {51, 21}, {151, 101});
  ASSERT_EQ(state.older[0], 51u);
  ASSERT_EQ(state.newer[1], 101u);
  for (const auto& [what, damage] : damages()) {
    SCOPED_TRACE(what);
    {
      auto spool = open_spool(damaged(state, damage, false), options(Durability::machine));
      for (std::size_t lane = 0; lane < kLanes.size(); ++lane) {
        // Older, never newer: what the lane settled after it is delivered again.
        EXPECT_EQ(spool->start(lane).seq, state.older[lane]) << "lane " << lane;
        EXPECT_EQ(read_lane(*spool, lane), from_seq(state.log, state.older[lane]))
            << "lane " << lane;
      }
    }
    // Both damaged: nothing says what was delivered; every lane starts at the oldest commit
    // on disk.
    auto spool = open_spool(damaged(state, damage, true), options(Durability::machine));
    for (std::size_t lane = 0; lane < kLanes.size(); ++lane) {
      EXPECT_EQ(spool->start(lane).seq, 1u) << "lane " << lane;
      EXPECT_EQ(read_lane(*spool, lane), state.log) << "lane " << lane;
    }
  }
}

TEST(SpoolPowerLossTest, AnOlderPositionInADeletedSegmentResumesAtTheOldestCommitOnDisk) {
  // About two and a half segments; the newer positions passed the first segment, which the
  // checkpoint that saved them deleted.
  const TwoCheckpoints state = two_checkpoints(700, {51, 21}, {650, 500});
  for (const auto& [what, damage] : damages()) {
    SCOPED_TRACE(what);
    auto spool = open_spool(damaged(state, damage, false), options(Durability::machine));
    const std::uint64_t oldest = spool->log().segments().front();
    ASSERT_GT(oldest, state.older[0]) << "the first segment was not deleted";
    ASSERT_LE(oldest, state.newer[1]);
    for (std::size_t lane = 0; lane < kLanes.size(); ++lane) {
      // The older position is before every segment on disk: the lane starts at the oldest
      // one (those deleted were settled by every lane), and the gap is not corruption.
      EXPECT_EQ(spool->start(lane).seq, oldest) << "lane " << lane;
      // Everything still on disk, so everything after the newer position: duplicates only.
      std::uint64_t skipped = 0;
      EXPECT_EQ(read_lane(*spool, lane, &skipped), from_seq(state.log, oldest)) << "lane " << lane;
      EXPECT_EQ(skipped, 0u) << "lane " << lane;
    }
    EXPECT_EQ(spool->corrupt_records(), 0u);
  }
}

}  // namespace
}  // namespace emissions::detail::spool
