// Internal: what a request's response (or its failure) means for its events: delivered,
// tried again (with the server's Retry-After), or failed for good; and whether it disables
// the endpoint (410 Gone). Pure functions, so every outcome class is tested without a
// server; the client fills a Response from libcurl.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "emissions/status.hpp"

namespace emissions::detail::webhooks {

// What one request came back with.
struct Response {
  int curl_code = 0;        // CURLcode: 0 when a response was received
  long status = 0;          // the HTTP status; 0 when there was no response
  std::string retry_after;  // the Retry-After header's value, empty when absent
  std::string location;     // a redirect's target as libcurl resolved it, empty when none
  std::string error;        // libcurl's error text when curl_code != 0
  std::string refused;      // the address policy refused this address ("10.0.0.1 (private)")
  std::chrono::nanoseconds duration{0};
};

enum class Verdict { delivered, retry, failed };

struct Outcome {
  Verdict verdict = Verdict::delivered;
  Status status;  // ok when delivered; otherwise the reason (retriable code when retry)
  std::optional<std::chrono::milliseconds> retry_after;  // when verdict == retry
  bool disable = false;                                  // 410 Gone
};

// The longest Retry-After honoured (Delivery::retry_after is not capped; a server must not be
// able to park the adapter for longer than the pipeline accepts anywhere).
inline constexpr std::chrono::milliseconds kLongestRetryAfter = std::chrono::hours(24);

// A Retry-After value as a delay from `now`: delay-seconds ("120") or an HTTP date (RFC 9110:
// IMF-fixdate, and the obsolete RFC 850 and asctime forms), a date in the past being 0;
// capped at kLongestRetryAfter. Nothing for anything else.
[[nodiscard]] std::optional<std::chrono::milliseconds> parse_retry_after(
    std::string_view value, std::chrono::system_clock::time_point now);

// The outcome of `response`. `what` starts every reason ("webhook 'orders'"), `endpoint`
// names where the request went (scheme://host:port). Reasons never quote a request or a
// response body. `now` is read only for a Retry-After date.
[[nodiscard]] Outcome classify(const Response& response, std::string_view what,
                               std::string_view endpoint,
                               std::chrono::system_clock::time_point now);

}  // namespace emissions::detail::webhooks
