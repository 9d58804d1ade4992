// Internal: a cheap wall clock for event timestamps.
//
// system_clock::now() costs ~25 ns on the virtual machines we run on, more than the whole
// budget of an emit. Where the CPU has an invariant TSC, each thread extrapolates the
// system clock from the TSC (~10 ns) and re-anchors on the real clock every ~20 ms, which
// keeps the error within a few microseconds. The TSC's rate is measured once per process,
// from a reading taken when the library loads; during the first 10 ms of the process, and
// on other CPUs, it is system_clock::now().
#pragma once

#include <chrono>

namespace emissions::detail {

std::chrono::system_clock::time_point wall_now() noexcept;

}  // namespace emissions::detail
