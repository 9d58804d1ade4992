// Internal: the one way configuration mistakes are reported, so every ConfigError reads
// "<field> must be <rule> (got <value>)".
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "emissions/status.hpp"

namespace emissions::detail {

[[noreturn]] inline void config_error(const std::string& field, const std::string& rule,
                                      const std::string& got) {
  throw ConfigError(field + " must be " + rule + " (got " + got + ")");
}

// "250 ms", "15 us": how durations appear in messages.
inline std::string describe(std::chrono::milliseconds d) {
  return std::to_string(d.count()) + " ms";
}
inline std::string describe(std::chrono::microseconds d) {
  return std::to_string(d.count()) + " us";
}

// Checks lo <= value <= hi for a size option.
inline void check_range(const std::string& field, std::size_t value, std::size_t lo,
                        std::size_t hi) {
  if (value < lo || value > hi) {
    config_error(field, "in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]",
                 std::to_string(value));
  }
}

// Checks lo <= value <= hi for a duration option.
template <typename Duration>
void check_range(const std::string& field, Duration value, Duration lo, Duration hi) {
  if (value < lo || value > hi) {
    config_error(field, "in [" + describe(lo) + ", " + describe(hi) + "]", describe(value));
  }
}

}  // namespace emissions::detail
