// Internal: which offsets of one partition may be committed, for the KafkaSource.
//
// Messages are added in offset order as they are read; each is settled later (its events
// handled, or skipped as malformed), in any order. The offset to commit is the first one
// not settled (Kafka commits "the next message to read"), or one past the last added when
// everything is settled.
//
// Not thread-safe: the source guards each tracker with its lock.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>

namespace emissions::detail::kafka {

class OffsetTracker {
 public:
  // A message read at `offset`, usually greater than every offset added before (then
  // constant time); an offset already pending is ignored.
  void add(std::int64_t offset);
  // The message at `offset` is handled. Unknown offsets are ignored.
  void settle(std::int64_t offset);
  // Every added message is settled.
  [[nodiscard]] bool idle() const noexcept { return pending_.empty(); }
  // The offset to commit now, when it is past the last one committed.
  [[nodiscard]] std::optional<std::int64_t> committable() const noexcept;
  // `offset` (a value committable() gave) was committed.
  void committed(std::int64_t offset) noexcept;
  // Before the first add(): reading starts at `offset`, everything before it is handled.
  // `stored` says whether the group already has `offset` committed; if not, committable()
  // offers it, so that the next owner of the partition starts there too.
  void resume_at(std::int64_t offset, bool stored) noexcept;
  // One past the last message of the settled prefix (where reading could resume without
  // handling anything twice), if any message settled or resume_at() was called.
  [[nodiscard]] std::optional<std::int64_t> handled_through() const noexcept;

 private:
  struct Entry {
    std::int64_t offset;
    bool settled;
  };
  // In increasing offset order, from the first unsettled on: a message is added at the back
  // (no allocation per message), settled by a binary search.
  std::deque<Entry> pending_;
  std::int64_t next_ = -1;       // one past the last settled prefix; -1: none yet
  std::int64_t committed_ = -1;  // the last offset committed; -1: none
};

}  // namespace emissions::detail::kafka
