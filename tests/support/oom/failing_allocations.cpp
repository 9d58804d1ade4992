#include "failing_allocations.hpp"

#include <atomic>
#include <cstdlib>
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

void* allocate(std::size_t size) {
  if (g_armed.load(std::memory_order_acquire) &&
      std::this_thread::get_id() == g_failing.load(std::memory_order_acquire) &&
      g_countdown.fetch_sub(1, std::memory_order_acq_rel) <= 1) {
    if (!g_sticky.load(std::memory_order_acquire)) g_armed.store(false, std::memory_order_release);
    g_refused.store(true, std::memory_order_release);
    throw std::bad_alloc();
  }
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}

}  // namespace
}  // namespace emissions::test_support

// The replacements. Not inlined: GCC would otherwise see std::free() on what a
// new-expression allocated (-Wmismatched-new-delete), not knowing the two belong together.
[[gnu::noinline]] void* operator new(std::size_t size) {
  return emissions::test_support::allocate(size);
}
[[gnu::noinline]] void* operator new[](std::size_t size) {
  return emissions::test_support::allocate(size);
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
