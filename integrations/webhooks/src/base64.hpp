// Internal: standard base64 (RFC 4648, section 4: `+` and `/`, `=` padding), as the Standard
// Webhooks secrets and signatures use it. Pure functions.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace emissions::detail::webhooks {

// The base64 text of `bytes`, padded with `=` to a multiple of 4 characters.
[[nodiscard]] std::string base64_encode(std::span<const unsigned char> bytes);
// The same text appended to `out` (no allocation when `out` has the room: a signature
// written into a kept string).
void base64_encode_to(std::span<const unsigned char> bytes, std::string& out);

// The bytes `text` encodes, or nothing when it is not base64: a character outside the
// alphabet, a length that is not a whole number of characters (padding may be left out),
// padding anywhere but at the end, or bits left over in the last character. No whitespace.
[[nodiscard]] std::optional<std::string> base64_decode(std::string_view text);

}  // namespace emissions::detail::webhooks
