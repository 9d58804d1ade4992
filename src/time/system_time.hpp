// Internal: the system clock's time as a number, for telemetry events and seeds.
//
//   nlohmann::json{{"system_time", detail::system_time_ns()}};
//
// For event timestamps use wall_now() (time/wall_clock.hpp), which is cheaper and never
// goes backwards on one thread.
#pragma once

#include <chrono>
#include <cstdint>

namespace emissions::detail {

// std::chrono::system_clock::now() in nanoseconds since the Unix epoch. Thread-safe; may go
// backwards when the system clock is stepped.
[[nodiscard]] inline std::int64_t system_time_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace emissions::detail
