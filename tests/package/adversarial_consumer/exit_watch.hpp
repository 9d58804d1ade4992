// Shared by the adversarial programs: a clock started when main() returns, and a way to
// fail from inside static destruction (where neither iostream nor gtest can be trusted).
#pragma once

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>

namespace adversarial {

// Trivially destructible: readable at any point of static destruction.
inline std::atomic<std::int64_t> g_main_returned_ns{0};

inline std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline void main_returns() noexcept {
  g_main_returned_ns.store(now_ns());
}

// write(2), then _exit(status): the program's verdict, from a static destructor.
[[noreturn]] inline void fail(const char* text, int status) noexcept {
  const ssize_t ignored = write(STDERR_FILENO, text, std::strlen(text));
  (void)ignored;
  _exit(status);
}

inline double seconds_since_main_returned() noexcept {
  return static_cast<double>(now_ns() - g_main_returned_ns.load()) / 1e9;
}

}  // namespace adversarial
