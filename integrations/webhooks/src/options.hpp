// Internal: WebhookOptions checked once, at construction, and turned into what the adapter
// uses (decoded keys, the endpoint's name, the header lines). Every mistake is a
// ConfigError naming the field; none quotes a secret or a header value.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "emissions/adapters/webhook.hpp"

namespace emissions::detail::webhooks {

inline constexpr std::chrono::milliseconds kMaxTimeout = std::chrono::hours(24);
inline constexpr std::size_t kMaxConnections = 1024;
inline constexpr std::size_t kMaxBodyBytes = std::size_t{1} << 30;

struct Settings {
  std::string url;                        // as given (validated)
  std::string endpoint;                   // scheme://host:port, for reasons and telemetry
  std::vector<std::string> keys;          // the secrets' decoded keys, in order
  std::vector<std::string> header_lines;  // "Name: value" ("Name;" for an empty value)
  std::chrono::milliseconds timeout{10'000};
  std::size_t max_connections = 8;
  std::size_t max_body_bytes = std::size_t{1} << 20;
  bool batch = false;
  bool allow_private_networks = false;
  bool insecure_skip_verify = false;
  std::string name;
};

// Throws ConfigError for an invalid option (see WebhookOptions).
[[nodiscard]] Settings check_options(const adapters::WebhookOptions& options);

}  // namespace emissions::detail::webhooks
