#include "offset_tracker.hpp"

#include <algorithm>

namespace emissions::detail::kafka {

namespace {
constexpr auto kByOffset = [](const auto& entry, std::int64_t offset) {
  return entry.offset < offset;
};
}  // namespace

void OffsetTracker::add(std::int64_t offset) {
  if (pending_.empty() || offset > pending_.back().offset) {
    pending_.push_back(Entry{offset, false});
    return;
  }
  // Read again (e.g. after the consumer's position was reset): kept in order, once.
  const auto at = std::lower_bound(pending_.begin(), pending_.end(), offset, kByOffset);
  if (at == pending_.end() || at->offset != offset) pending_.insert(at, Entry{offset, false});
}

void OffsetTracker::settle(std::int64_t offset) {
  const auto found = std::lower_bound(pending_.begin(), pending_.end(), offset, kByOffset);
  if (found == pending_.end() || found->offset != offset) return;
  found->settled = true;
  // The settled prefix leaves the queue: it is committable.
  while (!pending_.empty() && pending_.front().settled) {
    next_ = pending_.front().offset + 1;
    pending_.pop_front();
  }
}

std::optional<std::int64_t> OffsetTracker::committable() const noexcept {
  if (next_ < 0 || next_ <= committed_) return std::nullopt;
  return next_;
}

void OffsetTracker::committed(std::int64_t offset) noexcept {
  if (offset > committed_) committed_ = offset;
}

void OffsetTracker::resume_at(std::int64_t offset, bool stored) noexcept {
  next_ = offset;
  if (stored && offset > committed_) committed_ = offset;
}

std::optional<std::int64_t> OffsetTracker::handled_through() const noexcept {
  if (next_ < 0) return std::nullopt;
  return next_;
}

}  // namespace emissions::detail::kafka
