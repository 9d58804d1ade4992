/// @file
/// emissions/event.hpp: the domain event, and its default JSON envelope.
///
/// An Event is made by `emit`, buffered in a transaction, and handed by const reference to
/// every interested adapter. Its payload is moved from `emit` to the adapters, never copied:
/// all adapters read the same Event object.
///
/// @code
///   void handle(const emissions::Event& e) {
///     if (e.name == emissions::EventName("order_created")) charge(e.payload.at("total"));
///   }
///   emissions::envelope(e);
///   // {"id":"018f...","name":"order_created","payload":{...},"metadata":{},
///   //  "emitted_at":"2026-11-21T01:37:33.123456Z"}
/// @endcode
///
/// The payload and metadata are const for adapters: read them with `.at(key)` (throws
/// for a missing key) or `.value(key, fallback)`; `operator[]` on a const JSON object with
/// a missing key is undefined behaviour.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

#include "emissions/event_id.hpp"
#include "emissions/event_name.hpp"

namespace emissions {

/// One domain event: what happened, its data, and when.
struct Event {
  EventName name;           ///< what happened, e.g. "order_created"
  nlohmann::json payload;   ///< any JSON value; null when emitted without one
  nlohmann::json metadata;  ///< always a JSON object (`{}` when none was given)
  EventId id;               ///< UUIDv7, unique, sortable by emit time
  std::chrono::system_clock::time_point emitted_at;  ///< when `emit` was called
};

/// The default serializer's shape:
/// `{"id", "name", "payload", "metadata", "emitted_at"}`, with `id` in canonical UUID text
/// and `emitted_at` as RFC 3339 UTC with microseconds. Adapters that ship events elsewhere
/// use it.
[[nodiscard]] nlohmann::json envelope(const Event& event);
/// `envelope(event).dump()`, written without the intermediate object for speed.
[[nodiscard]] std::string serialize(const Event& event);
/// Appends `serialize(event)` to `out` (no newline), reusing its capacity.
void serialize_to(const Event& event, std::string& out);

/// RFC 3339 UTC text with microseconds, e.g. "2026-11-21T01:37:33.123456Z".
[[nodiscard]] std::string format_timestamp(std::chrono::system_clock::time_point t);

/// The most characters format_timestamp_to() writes (a five-digit or negative year
/// included; no terminator).
inline constexpr std::size_t kMaxTimestampSize = 32;

/// Writes format_timestamp(t)'s text to `out`, which must have room for kMaxTimestampSize
/// characters (no terminator is written), and returns the end of what it wrote. Never
/// allocates; thread-safe.
///
/// @code
///   std::array<char, emissions::kMaxTimestampSize> text{};
///   const char* end = emissions::format_timestamp_to(event.emitted_at, text.data());
///   std::string_view at(text.data(), static_cast<std::size_t>(end - text.data()));
///   // "2026-11-21T01:37:33.123456Z"
/// @endcode
char* format_timestamp_to(std::chrono::system_clock::time_point t, char* out) noexcept;

}  // namespace emissions
