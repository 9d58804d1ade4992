// Internal: the endpoint URL checked and named. Reasons and telemetry name an endpoint by
// scheme, host and port only: a path or a query may hold a token (Slack-style hook paths,
// `?key=`), and user information is a password.
#pragma once

#include <string>
#include <string_view>

namespace emissions::detail::webhooks {

struct ParsedUrl {
  std::string scheme;    // lower case: "http" or "https" when valid
  std::string endpoint;  // "https://hooks.example.com:443"
  std::string error;     // non-empty: why libcurl could not parse it (never quotes the URL)
};

// Parses an absolute URL with libcurl's URL API.
[[nodiscard]] ParsedUrl parse_url(std::string_view url);

// A redirect's Location, for a reason: scheme://host:port only, like the endpoint (a path
// may hold the credential of a Slack-style hook: a receiver that redirects to the same
// path elsewhere would otherwise put it in reasons and telemetry); "(none)" when empty,
// "(unparseable)" when libcurl cannot parse it.
[[nodiscard]] std::string describe_location(std::string_view location);

}  // namespace emissions::detail::webhooks
