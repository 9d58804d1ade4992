#include "address_policy.hpp"

#include <cstring>

#include <arpa/inet.h>
#include <netinet/in.h>

namespace emissions::detail::webhooks {
namespace {

struct Range4 {
  std::uint32_t base;
  int bits;
  std::string_view what;
};

constexpr std::uint32_t ip4(std::uint32_t a, std::uint32_t b, std::uint32_t c, std::uint32_t d) {
  return (a << 24) | (b << 16) | (c << 8) | d;
}

// Most specific first: the metadata address before link-local, broadcast before 240/4.
constexpr std::array<Range4, 17> kRanges4{{
    {ip4(169, 254, 169, 254), 32, "link-local (cloud metadata)"},
    {ip4(255, 255, 255, 255), 32, "broadcast"},
    {ip4(0, 0, 0, 0), 8, "unspecified (this network)"},
    {ip4(10, 0, 0, 0), 8, "private"},
    {ip4(100, 64, 0, 0), 10, "shared (carrier-grade NAT)"},
    {ip4(127, 0, 0, 0), 8, "loopback"},
    {ip4(169, 254, 0, 0), 16, "link-local"},
    {ip4(172, 16, 0, 0), 12, "private"},
    {ip4(192, 0, 0, 0), 24, "reserved (IETF protocol assignments)"},
    {ip4(192, 0, 2, 0), 24, "reserved (documentation)"},
    {ip4(192, 88, 99, 0), 24, "reserved (6to4 relay anycast)"},
    {ip4(192, 168, 0, 0), 16, "private"},
    {ip4(198, 18, 0, 0), 15, "reserved (benchmarking)"},
    {ip4(198, 51, 100, 0), 24, "reserved (documentation)"},
    {ip4(203, 0, 113, 0), 24, "reserved (documentation)"},
    {ip4(224, 0, 0, 0), 4, "multicast"},
    {ip4(240, 0, 0, 0), 4, "reserved"},
}};

bool in_range(std::uint32_t address, const Range4& range) noexcept {
  const std::uint32_t mask = range.bits == 0 ? 0 : ~std::uint32_t{0} << (32 - range.bits);
  return (address & mask) == (range.base & mask);
}

std::uint32_t embedded_ipv4(const std::array<std::uint8_t, 16>& a, std::size_t at) noexcept {
  return (std::uint32_t{a[at]} << 24) | (std::uint32_t{a[at + 1]} << 16) |
         (std::uint32_t{a[at + 2]} << 8) | std::uint32_t{a[at + 3]};
}

bool starts_with_zeros(const std::array<std::uint8_t, 16>& a, std::size_t count) noexcept {
  for (std::size_t i = 0; i < count; ++i) {
    if (a[i] != 0) return false;
  }
  return true;
}

// The textual form of an address, for reasons.
std::string text_of(int family, const void* address) {
  std::array<char, INET6_ADDRSTRLEN> text{};
  if (inet_ntop(family, address, text.data(), static_cast<socklen_t>(text.size())) == nullptr) {
    return "an address";
  }
  return text.data();
}

}  // namespace

std::string_view classify_ipv4(std::uint32_t address) noexcept {
  for (const Range4& range : kRanges4) {
    if (in_range(address, range)) return range.what;
  }
  return {};
}

std::string classify_ipv6(const std::array<std::uint8_t, 16>& a) {
  // ::ffff:a.b.c.d, IPv4-mapped.
  if (starts_with_zeros(a, 10) && a[10] == 0xFF && a[11] == 0xFF) {
    const std::string_view v4 = classify_ipv4(embedded_ipv4(a, 12));
    return v4.empty() ? std::string() : "IPv4-mapped " + std::string(v4);
  }
  if (starts_with_zeros(a, 12)) {
    const std::uint32_t low = embedded_ipv4(a, 12);
    if (low == 0) return "unspecified";
    if (low == 1) return "loopback";
    // ::a.b.c.d, IPv4-compatible (deprecated, still routed by some stacks).
    const std::string_view v4 = classify_ipv4(low);
    return v4.empty() ? std::string() : "IPv4-compatible " + std::string(v4);
  }
  // 64:ff9b::a.b.c.d, NAT64 (well-known prefix): a translator reaches the IPv4 address.
  if (a[0] == 0x00 && a[1] == 0x64 && a[2] == 0xFF && a[3] == 0x9B) {
    bool well_known = true;
    for (std::size_t i = 4; i < 12; ++i)
      well_known = well_known && a[i] == 0;
    if (well_known) {
      const std::string_view v4 = classify_ipv4(embedded_ipv4(a, 12));
      return v4.empty() ? std::string() : "NAT64 " + std::string(v4);
    }
    if (a[4] == 0x00 && a[5] == 0x01) return "NAT64 (local use)";  // 64:ff9b:1::/48
  }
  // 2002:AABB:CCDD::/48, 6to4: carries an IPv4 address in bits 16..47.
  if (a[0] == 0x20 && a[1] == 0x02) {
    const std::string_view v4 = classify_ipv4(embedded_ipv4(a, 2));
    return v4.empty() ? std::string() : "6to4 " + std::string(v4);
  }
  if ((a[0] & 0xFE) == 0xFC) return "private (unique local)";      // fc00::/7
  if (a[0] == 0xFE && (a[1] & 0xC0) == 0x80) return "link-local";  // fe80::/10
  if (a[0] == 0xFE && (a[1] & 0xC0) == 0xC0) return "site-local";  // fec0::/10
  if (a[0] == 0xFF) return "multicast";                            // ff00::/8
  if (a[0] == 0x01 && a[1] == 0x00 && a[2] == 0 && a[3] == 0 && a[4] == 0 && a[5] == 0 &&
      a[6] == 0 && a[7] == 0) {
    return "reserved (discard-only)";  // 100::/64
  }
  if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0D && a[3] == 0xB8) {
    return "reserved (documentation)";  // 2001:db8::/32
  }
  return {};
}

std::string refused_address(const sockaddr* address, socklen_t length) {
  if (address == nullptr) return "an address of no family";
  if (address->sa_family == AF_INET && length >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    sockaddr_in in{};
    std::memcpy(&in, address, sizeof in);
    const std::string_view what = classify_ipv4(ntohl(in.sin_addr.s_addr));
    if (what.empty()) return {};
    return text_of(AF_INET, &in.sin_addr) + " (" + std::string(what) + ")";
  }
  if (address->sa_family == AF_INET6 && length >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    sockaddr_in6 in6{};
    std::memcpy(&in6, address, sizeof in6);
    std::array<std::uint8_t, 16> bytes{};
    std::memcpy(bytes.data(), &in6.sin6_addr, bytes.size());
    const std::string what = classify_ipv6(bytes);
    if (what.empty()) return {};
    return text_of(AF_INET6, &in6.sin6_addr) + " (" + what + ")";
  }
  return "an address of family " + std::to_string(address->sa_family) + " (not IPv4 or IPv6)";
}

}  // namespace emissions::detail::webhooks
