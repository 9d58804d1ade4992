// Internal: which addresses a webhook may not connect to unless allow_private_networks is
// set (loopback, private, link-local, cloud metadata, ...), checked on each address libcurl
// is about to open a socket to, after name resolution (so DNS rebinding does not get round
// it). Pure functions.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include <sys/socket.h>

namespace emissions::detail::webhooks {

// The class of an IPv4 address (in host byte order) that is not publicly routable, e.g.
// "loopback", "private", "link-local (cloud metadata)"; empty for a public address.
[[nodiscard]] std::string_view classify_ipv4(std::uint32_t address) noexcept;

// The same for an IPv6 address; IPv4-mapped, IPv4-compatible, NAT64 (64:ff9b::/96) and
// 6to4 (2002::/16) addresses are classed by the IPv4 address they carry, e.g.
// "IPv4-mapped loopback".
[[nodiscard]] std::string classify_ipv6(const std::array<std::uint8_t, 16>& address);

// Why a connection to `address` is refused, naming it ("127.0.0.1 (loopback)"); empty when
// it is allowed. Any family other than IPv4 and IPv6 is refused.
[[nodiscard]] std::string refused_address(const sockaddr* address, socklen_t length);

}  // namespace emissions::detail::webhooks
