// Test support: C++ allocations that fail on purpose, for the out-of-memory tests. Linking
// failing_allocations.cpp (the CMake target emissions_failing_allocations) replaces the
// global operator new and delete of that executable: only OOM test executables link it.
//
//   emissions::test_support::fail_allocations(io_thread, 3, /*sticky=*/false);
//   ...  // the I/O thread's third operator new from now throws std::bad_alloc
//   emissions::test_support::stop_failing_allocations();
//
// Thread-safety: every function may be called from any thread.
#pragma once

#include <thread>

namespace emissions::test_support {

// From now on, the `n`-th operator new (n >= 1) made on `thread` throws std::bad_alloc, and
// with `sticky` every later one too (memory stays short), until stop_failing_allocations().
void fail_allocations(std::thread::id thread, int n, bool sticky) noexcept;

// No allocation fails from now on.
void stop_failing_allocations() noexcept;

// Whether an allocation was refused since the last fail_allocations().
[[nodiscard]] bool allocation_refused() noexcept;

}  // namespace emissions::test_support
