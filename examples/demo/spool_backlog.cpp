#include "spool_backlog.hpp"

#include <cstddef>

namespace demo {
namespace {

// a - b, or 0. The stats are relaxed reads of counters that move while they are read: a
// relay can hand an event to an adapter, and the adapter handle it, before the committing
// thread has counted it committed. Such a reading is momentarily short, never negative.
std::uint64_t minus(std::uint64_t a, std::uint64_t b) noexcept {
  return a > b ? a - b : 0;
}

}  // namespace

std::uint64_t handled(const emissions::AdapterStats& adapter) noexcept {
  return adapter.delivered + adapter.failed + adapter.filtered + adapter.dropped;
}

std::vector<AdapterCount> handled_per_adapter(const emissions::EmitterStats& stats) {
  std::vector<AdapterCount> out;
  out.reserve(stats.adapters.size());
  for (const emissions::AdapterStats& a : stats.adapters)
    out.push_back({a.name, handled(a)});
  return out;
}

SpoolBacklog::SpoolBacklog(const emissions::EmitterStats& after_recovery)
    : recovered_(handled_per_adapter(after_recovery)) {}

std::vector<AdapterCount> SpoolBacklog::behind(const emissions::EmitterStats& now) const {
  std::vector<AdapterCount> out;
  out.reserve(now.adapters.size());
  for (std::size_t i = 0; i < now.adapters.size(); ++i) {
    const emissions::AdapterStats& a = now.adapters[i];
    const std::uint64_t before = i < recovered_.size() ? recovered_[i].events : 0;
    out.push_back({a.name, minus(now.committed, minus(handled(a), before))});
  }
  return out;
}

std::vector<AdapterCount> SpoolBacklog::unsettled(const emissions::EmitterStats& final) const {
  std::vector<AdapterCount> out;
  out.reserve(final.adapters.size());
  for (std::size_t i = 0; i < final.adapters.size(); ++i) {
    const emissions::AdapterStats& a = final.adapters[i];
    const std::uint64_t before = i < recovered_.size() ? recovered_[i].events : 0;
    out.push_back({a.name, minus(final.committed + before, a.delivered + a.failed + a.filtered)});
  }
  return out;
}

}  // namespace demo
