// With --spool: each adapter's backlog, derived from EmitterStats alone.
//
// With a spool every commit stays on disk until each adapter has settled it. EmitterStats
// counts what this process committed and, per adapter, what it handled (delivered, failed,
// filtered, dropped); it does not say how many events an earlier run left in the directory
// (an Emitter delivers those first, to each adapter with the same name). So the demo lets
// that backlog be delivered on its own, with a drain before the first order, and takes the
// counts then as the baseline: from there on, an adapter's backlog is what this run
// committed minus what the adapter handled since.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "emissions/emitter.hpp"

namespace demo {

struct AdapterCount {
  std::string name;
  std::uint64_t events = 0;
};

// delivered + failed + filtered + dropped.
[[nodiscard]] std::uint64_t handled(const emissions::AdapterStats& adapter) noexcept;

// Per adapter, in stats.adapters order, the events it has handled.
[[nodiscard]] std::vector<AdapterCount> handled_per_adapter(const emissions::EmitterStats& stats);

class SpoolBacklog {
 public:
  // `after_recovery`: the stats once the earlier run's backlog was delivered (a drain
  // returned ok), before this run committed anything.
  explicit SpoolBacklog(const emissions::EmitterStats& after_recovery);

  // Per adapter, the events an earlier run left in the spool, delivered before this run's
  // first order (they count in `received` and `delivered` but not in `committed`).
  [[nodiscard]] const std::vector<AdapterCount>& recovered() const noexcept { return recovered_; }

  // Per adapter, the events this run committed that it has not handled yet: in its queue,
  // in its hands or only on disk.
  [[nodiscard]] std::vector<AdapterCount> behind(const emissions::EmitterStats& now) const;

  // Per adapter, once the emitter has shut down: the events on disk that it has not settled
  // (delivered, failed for good or filtered), including those a timed-out shutdown counted
  // dropped. The next Emitter on the directory delivers them to an adapter of that name.
  [[nodiscard]] std::vector<AdapterCount> unsettled(const emissions::EmitterStats& final) const;

 private:
  std::vector<AdapterCount> recovered_;
};

}  // namespace demo
