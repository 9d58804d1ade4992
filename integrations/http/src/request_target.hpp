// Internal: the parts of a request the server reads without Beast: the path, query
// parameters and the bearer token check.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace emissions::http::detail {

// The path of a request target ("/metrics?x=1" -> "/metrics").
[[nodiscard]] std::string_view target_path(std::string_view target) noexcept;
// The percent-decoded value of query parameter `name`; nullopt when absent or when its
// encoding is invalid.
[[nodiscard]] std::optional<std::string> query_param(std::string_view target,
                                                     std::string_view name);
// Whether a request carries `token`: as "Authorization: Bearer <token>" or as the
// access_token query parameter. Compares in time independent of where they differ.
[[nodiscard]] bool authorized(std::string_view token, std::string_view authorization,
                              std::string_view target);

// Whether a Host header names this machine by address (an IPv4 literal, or an IPv6 one in
// brackets) or as localhost, with or without a port; an empty Host (not a browser) counts.
// Without a bearer token the server answers nothing else: another name may be an
// attacker's domain rebound to 127.0.0.1 (DNS rebinding), whose page could then read it.
[[nodiscard]] bool host_is_local_or_address(std::string_view host) noexcept;
// Whether a WebSocket upgrade's Origin is the server's own page: absent (not a browser), or
// scheme://authority with the authority equal to the request's Host (case-insensitively).
// Browsers let any page open a WebSocket anywhere; only the Origin tells them apart.
[[nodiscard]] bool same_origin(std::string_view origin, std::string_view host) noexcept;

}  // namespace emissions::http::detail
