#include "base64.hpp"

#include <array>
#include <cstdint>

namespace emissions::detail::webhooks {
namespace {

constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// 0..63 for a character of the alphabet, -1 for any other.
constexpr std::array<std::int8_t, 256> make_values() {
  std::array<std::int8_t, 256> values{};
  values.fill(-1);
  for (std::size_t i = 0; i < kAlphabet.size(); ++i)
    values[static_cast<unsigned char>(kAlphabet[i])] = static_cast<std::int8_t>(i);
  return values;
}
constexpr std::array<std::int8_t, 256> kValues = make_values();

}  // namespace

void base64_encode_to(std::span<const unsigned char> bytes, std::string& out) {
  const std::size_t start = out.size();
  out.resize(start + (bytes.size() + 2) / 3 * 4);
  char* to = out.data() + start;
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t v = (std::uint32_t{bytes[i]} << 16) | (std::uint32_t{bytes[i + 1]} << 8) |
                            std::uint32_t{bytes[i + 2]};
    *to++ = kAlphabet[(v >> 18) & 63];
    *to++ = kAlphabet[(v >> 12) & 63];
    *to++ = kAlphabet[(v >> 6) & 63];
    *to++ = kAlphabet[v & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest != 0) {
    std::uint32_t v = std::uint32_t{bytes[i]} << 16;
    if (rest == 2) v |= std::uint32_t{bytes[i + 1]} << 8;
    *to++ = kAlphabet[(v >> 18) & 63];
    *to++ = kAlphabet[(v >> 12) & 63];
    *to++ = rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    *to = '=';
  }
}

std::string base64_encode(std::span<const unsigned char> bytes) {
  std::string out;
  base64_encode_to(bytes, out);
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  // Padding: up to two `=` at the end, and then the length must be a multiple of 4.
  std::size_t padding = 0;
  while (padding < 2 && padding < text.size() && text[text.size() - 1 - padding] == '=')
    ++padding;
  if (padding != 0 && text.size() % 4 != 0) return std::nullopt;
  const std::string_view digits = text.substr(0, text.size() - padding);
  if (digits.size() % 4 == 1) return std::nullopt;  // 6 bits cannot end a byte

  std::string out;
  out.reserve(digits.size() * 3 / 4);
  std::uint32_t bits = 0;
  int count = 0;
  for (const char c : digits) {
    const std::int8_t v = kValues[static_cast<unsigned char>(c)];
    if (v < 0) return std::nullopt;
    bits = (bits << 6) | static_cast<std::uint32_t>(v);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out += static_cast<char>((bits >> count) & 0xFF);
    }
  }
  // What is left must be zero bits (a canonical encoding).
  if ((bits & ((1U << count) - 1)) != 0) return std::nullopt;
  return out;
}

}  // namespace emissions::detail::webhooks
