// emissions/detail/cpu_relax.hpp: the CPU's spin-wait hint, for the few short spins the
// library does before it parks a thread. Not part of the API.
#pragma once

namespace emissions::detail {

// Tells the CPU that this thread is spinning (x86 `pause`, ARM `yield`): the sibling
// hyper-thread gets the core, and leaving the loop costs no pipeline flush. A no-op
// elsewhere. Never blocks.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

}  // namespace emissions::detail
