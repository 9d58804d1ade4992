/// @file
/// emissions/event_id.hpp: 128-bit UUIDv7 event identifiers (RFC 9562).
///
/// Unique, and sortable by emit time: the top 48 bits are Unix milliseconds, the next 12
/// bits a sub-millisecond fraction, then 62 bits that keep ids of the same instant apart
/// (a per-thread tag and a counter with a random start and random increments). Ids made by
/// one thread are strictly increasing at any rate; an id carries the millisecond it was
/// stamped with (or its thread's previous id's, when that is later). Making one costs a few
/// nanoseconds and never locks.
///
/// @code
///   emissions::EventId id = emissions::EventId::generate();
///   id.str();  // "018f3c5e-7a1b-7c3d-9e2f-0123456789ab"
///   emissions::EventId::parse(id.str()) == id;  // true
///
///   char text[emissions::EventId::kTextSize];  // the same text, without allocating
///   std::string_view view(text, id.write_to(text) - text);
/// @endcode
#pragma once

#include <chrono>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>

namespace emissions {

/// A UUIDv7: 128 bits, unique, ordered by the time it was made.
class EventId {
 public:
  /// The length of the canonical text (str(), write_to()): 36 characters.
  static constexpr std::size_t kTextSize = 36;

  /// The nil UUID (all zero bits).
  constexpr EventId() noexcept = default;
  /// The id with these halves; see high() and low().
  constexpr EventId(std::uint64_t high, std::uint64_t low) noexcept : high_(high), low_(low) {}

  /// A new id stamped with `at` (default: now). Thread-safe, lock-free.
  /// @{
  [[nodiscard]] static EventId generate() noexcept;
  [[nodiscard]] static EventId generate(std::chrono::system_clock::time_point at) noexcept;
  /// @}
  /// Parses the canonical 36-character form (either case); nullopt when malformed.
  [[nodiscard]] static std::optional<EventId> parse(std::string_view text) noexcept;

  /// Canonical lower-case text, 8-4-4-4-12 hex digits.
  [[nodiscard]] std::string str() const;
  /// Writes str()'s text to `out`, which must have room for kTextSize characters (no
  /// terminator is written), and returns `out + kTextSize`. Never allocates; thread-safe.
  ///
  /// @code
  ///   std::array<char, emissions::EventId::kTextSize> text{};
  ///   id.write_to(text.data());
  ///   send_header("event-id", std::string_view(text.data(), text.size()));
  /// @endcode
  char* write_to(char* out) const noexcept;
  /// The millisecond timestamp carried in the id.
  [[nodiscard]] std::chrono::system_clock::time_point timestamp() const noexcept;
  /// Whether every bit is zero (a default-constructed id).
  [[nodiscard]] constexpr bool is_nil() const noexcept { return high_ == 0 && low_ == 0; }
  /// The UUID's first 8 bytes as a number (byte 0 most significant); Unix ms on top.
  [[nodiscard]] constexpr std::uint64_t high() const noexcept { return high_; }
  /// The UUID's last 8 bytes as a number (byte 8 most significant).
  [[nodiscard]] constexpr std::uint64_t low() const noexcept { return low_; }

  /// Ordered as the canonical text is: by time first.
  friend constexpr auto operator<=>(const EventId&, const EventId&) noexcept = default;

 private:
  std::uint64_t high_ = 0;
  std::uint64_t low_ = 0;
};

/// Writes `id.str()`.
std::ostream& operator<<(std::ostream& os, const EventId& id);

}  // namespace emissions

/// Hashing for unordered containers.
template <>
struct std::hash<emissions::EventId> {
  /// Mixes both halves; cheap, and good enough for ids that differ in their random bits.
  std::size_t operator()(const emissions::EventId& id) const noexcept {
    return static_cast<std::size_t>(id.high() ^ (id.low() * 0x9e3779b97f4a7c15ULL));
  }
};
