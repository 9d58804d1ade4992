#include "failing_allocations.hpp"

#include <atomic>
#include <cstdlib>
#include <limits>
#include <new>

namespace emissions::test_support {
namespace {

std::atomic<bool> g_armed{false};
std::atomic<bool> g_sticky{false};
std::atomic<std::thread::id> g_failing{};
std::atomic<int> g_countdown{0};
std::atomic<bool> g_refused{false};

}  // namespace

void fail_allocations(std::thread::id thread, int n, bool sticky) noexcept {
  g_armed.store(false, std::memory_order_release);
  g_refused.store(false, std::memory_order_release);
  g_sticky.store(sticky, std::memory_order_release);
  g_failing.store(thread, std::memory_order_release);
  g_countdown.store(n, std::memory_order_release);
  g_armed.store(true, std::memory_order_release);
}

void stop_failing_allocations() noexcept {
  g_armed.store(false, std::memory_order_release);
}

bool allocation_refused() noexcept {
  return g_refused.load(std::memory_order_acquire);
}

namespace {

// Throws when the calling thread's allocation is to fail.
void refuse_if_due() {
  if (g_armed.load(std::memory_order_acquire) &&
      std::this_thread::get_id() == g_failing.load(std::memory_order_acquire) &&
      g_countdown.fetch_sub(1, std::memory_order_acq_rel) <= 1) {
    if (!g_sticky.load(std::memory_order_acquire)) g_armed.store(false, std::memory_order_release);
    g_refused.store(true, std::memory_order_release);
    throw std::bad_alloc();
  }
}

void* allocate(std::size_t size) {
  refuse_if_due();
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}

void* allocate_aligned(std::size_t size, std::align_val_t alignment) {
  refuse_if_due();
  const auto align = static_cast<std::size_t>(alignment);
  // aligned_alloc wants a size that is a non-zero multiple of the alignment.
  if (size > std::numeric_limits<std::size_t>::max() - align) throw std::bad_alloc();
  const std::size_t rounded = size == 0 ? align : (size + align - 1) / align * align;
  if (void* p = std::aligned_alloc(align, rounded)) return p;
  throw std::bad_alloc();
}

}  // namespace
}  // namespace emissions::test_support

// The replacements: every form of operator new (plain, array, nothrow, aligned) goes through
// the same check and malloc, every form of delete to free, so that no pair mixes our
// allocator with the library's (ASan reports a mismatch). Defined in a file of their own and
// not inlined: GCC, seeing free() inlined where a new-expression allocated, reports
// -Wmismatched-new-delete (the TSan build failed on it when they were in a test's file).
[[gnu::noinline]] void* operator new(std::size_t size) {
  return emissions::test_support::allocate(size);
}
[[gnu::noinline]] void* operator new[](std::size_t size) {
  return emissions::test_support::allocate(size);
}
[[gnu::noinline]] void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return emissions::test_support::allocate(size);
  } catch (...) {
    return nullptr;
  }
}
[[gnu::noinline]] void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return emissions::test_support::allocate(size);
  } catch (...) {
    return nullptr;
  }
}
[[gnu::noinline]] void* operator new(std::size_t size, std::align_val_t alignment) {
  return emissions::test_support::allocate_aligned(size, alignment);
}
[[gnu::noinline]] void* operator new[](std::size_t size, std::align_val_t alignment) {
  return emissions::test_support::allocate_aligned(size, alignment);
}
[[gnu::noinline]] void* operator new(std::size_t size, std::align_val_t alignment,
                                     const std::nothrow_t&) noexcept {
  try {
    return emissions::test_support::allocate_aligned(size, alignment);
  } catch (...) {
    return nullptr;
  }
}
[[gnu::noinline]] void* operator new[](std::size_t size, std::align_val_t alignment,
                                       const std::nothrow_t&) noexcept {
  try {
    return emissions::test_support::allocate_aligned(size, alignment);
  } catch (...) {
    return nullptr;
  }
}
[[gnu::noinline]] void operator delete(void* p) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::align_val_t) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p, std::align_val_t) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p, std::align_val_t,
                                         const std::nothrow_t&) noexcept {
  std::free(p);
}
