// Internal: running a step that may throw (building telemetry JSON, a message) on a path
// that must not: the step is skipped when it throws. Used for reporting only, never for
// anything a counter or a guarantee depends on.
#pragma once

namespace emissions::detail {

template <typename Step>
void best_effort(Step&& step) noexcept {
  try {
    step();
  } catch (...) {  // NOLINT(bugprone-empty-catch): reporting is best effort by design
  }
}

}  // namespace emissions::detail
