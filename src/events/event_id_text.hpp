// Internal: the canonical text of an EventId, shared by EventId::str() and the serializer.
//
//   const std::array<char, 36> text = detail::event_id_text(id);
//   out.append(text.data(), text.size());  // "018f3c5e-7a1b-7c3d-9e2f-0123456789ab"
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "emissions/event_id.hpp"

namespace emissions::detail {

// Lower-case hex digits in the RFC 9562 layout 8-4-4-4-12, no terminator. Never allocates.
[[nodiscard]] inline std::array<char, 36> event_id_text(const EventId& id) noexcept {
  constexpr char kDigits[] = "0123456789abcdef";
  std::array<char, 36> text{};
  std::size_t pos = 0;
  for (int nibble = 0; nibble < 32; ++nibble) {
    if (pos == 8 || pos == 13 || pos == 18 || pos == 23) text[pos++] = '-';
    const std::uint64_t part = nibble < 16 ? id.high() : id.low();
    const int shift = 60 - 4 * (nibble % 16);
    text[pos++] = kDigits[(part >> shift) & 0xf];
  }
  return text;
}

}  // namespace emissions::detail
