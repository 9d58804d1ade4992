#include "offset_tracker.hpp"

namespace emissions::detail::kafka {

void OffsetTracker::add(std::int64_t offset) {
  pending_.emplace(offset, false);
}

void OffsetTracker::settle(std::int64_t offset) {
  const auto found = pending_.find(offset);
  if (found == pending_.end()) return;
  found->second = true;
  // The settled prefix leaves the map: it is committable.
  while (!pending_.empty() && pending_.begin()->second) {
    next_ = pending_.begin()->first + 1;
    pending_.erase(pending_.begin());
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
