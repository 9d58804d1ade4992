// Internal: the delay before the next attempt of something that failed for now, per a
// RetryPolicy (emissions/config.hpp): drawn uniformly from [d/2, d] with
// d = min(max_backoff, initial_backoff * multiplier^(k-1)) after k failed attempts.
// Pure functions; the caller owns (and guards) the random generator.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <random>

#include "emissions/config.hpp"

namespace emissions::detail {

// d after `failed` failed attempts (1 for the first). Never overflows: capped at
// max_backoff, and at ~30 years whatever max_backoff says.
inline std::chrono::nanoseconds backoff_ceiling(const RetryPolicy& policy,
                                                std::uint32_t failed) noexcept {
  using Ns = std::chrono::duration<double, std::nano>;
  constexpr double kLongest = 1e18;  // ns, ~31 years: far beyond any useful delay
  const double initial = Ns(policy.initial_backoff).count();
  const double cap = std::min(Ns(policy.max_backoff).count(), kLongest);
  const double exponent = failed > 1 ? static_cast<double>(failed - 1) : 0.0;
  // pow() may overflow to +inf for a long run of failures: min() then takes the cap.
  const double grown = initial * std::pow(policy.multiplier, exponent);
  return std::chrono::nanoseconds(static_cast<std::int64_t>(std::min(grown, cap)));
}

// A delay drawn uniformly from [d/2, d] (see above) with `random`.
template <typename Random>
std::chrono::nanoseconds backoff_delay(const RetryPolicy& policy, std::uint32_t failed,
                                       Random& random) {
  const std::int64_t d = backoff_ceiling(policy, failed).count();
  std::uniform_int_distribution<std::int64_t> pick(d - d / 2, d);
  return std::chrono::nanoseconds(pick(random));
}

}  // namespace emissions::detail
