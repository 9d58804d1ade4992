#include "request_target.hpp"

#include <algorithm>

#include <cstddef>

namespace emissions::http::detail {

namespace {

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      const int hi = hex_value(text[i + 1]);
      const int lo = hex_value(text[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

// Same length and bytes, without an early exit (the token's length is not secret).
bool equal_constant_time(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

std::string_view target_path(std::string_view target) noexcept {
  const std::size_t q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

std::optional<std::string> query_param(std::string_view target, std::string_view name) {
  const std::size_t q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view rest = target.substr(q + 1);
  if (const std::size_t hash = rest.find('#'); hash != std::string_view::npos)
    rest = rest.substr(0, hash);
  while (!rest.empty()) {
    const std::size_t amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
    const std::size_t eq = pair.find('=');
    const std::string_view key = pair.substr(0, eq);
    if (key != name) continue;
    return percent_decode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
  }
  return std::nullopt;
}

bool authorized(std::string_view token, std::string_view authorization, std::string_view target) {
  if (token.empty()) return true;
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.size() > kBearer.size()) {
    bool scheme = true;  // the scheme is case-insensitive (RFC 9110)
    for (std::size_t i = 0; i < kBearer.size(); ++i) {
      const char c = authorization[i];
      const char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
      const char want = kBearer[i] >= 'A' && kBearer[i] <= 'Z'
                            ? static_cast<char>(kBearer[i] - 'A' + 'a')
                            : kBearer[i];
      scheme = scheme && lower == want;
    }
    if (scheme && equal_constant_time(authorization.substr(kBearer.size()), token)) return true;
  }
  const std::optional<std::string> param = query_param(target, "access_token");
  return param && equal_constant_time(*param, token);
}

namespace {

bool equal_ignoring_case(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto lower = [](char c) {
      return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
    };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

bool all_digits(std::string_view text) noexcept {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool ipv4_literal(std::string_view text) noexcept {
  int parts = 0;
  while (true) {
    const std::size_t dot = text.find('.');
    const std::string_view part = text.substr(0, dot);
    if (!all_digits(part) || part.size() > 3) return false;
    ++parts;
    if (dot == std::string_view::npos) break;
    text.remove_prefix(dot + 1);
  }
  return parts == 4;
}

}  // namespace

bool host_is_local_or_address(std::string_view host) noexcept {
  if (host.empty()) return true;
  if (host.front() == '[') {  // an IPv6 literal, maybe with a port
    const std::size_t close = host.find(']');
    if (close == std::string_view::npos) return false;
    const std::string_view rest = host.substr(close + 1);
    const std::string_view inside = host.substr(1, close - 1);
    const bool hex_colons =
        !inside.empty() && std::all_of(inside.begin(), inside.end(), [](char c) {
          return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                 c == ':' || c == '.';
        });
    return hex_colons && (rest.empty() || (rest.front() == ':' && all_digits(rest.substr(1))));
  }
  std::string_view name = host;
  if (const std::size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    if (!all_digits(host.substr(colon + 1))) return false;
    name = host.substr(0, colon);
  }
  return equal_ignoring_case(name, "localhost") || ipv4_literal(name);
}

bool same_origin(std::string_view origin, std::string_view host) noexcept {
  if (origin.empty()) return true;
  const std::size_t scheme_end = origin.find("://");
  if (scheme_end == std::string_view::npos) return false;  // "null" and the like
  std::string_view authority = origin.substr(scheme_end + 3);
  if (const std::size_t slash = authority.find('/'); slash != std::string_view::npos) {
    authority = authority.substr(0, slash);
  }
  return !host.empty() && equal_ignoring_case(authority, host);
}

}  // namespace emissions::http::detail
