// Internal: the KafkaSource's envelope decoder. An envelope in exactly the shape
// emissions::serialize writes (no whitespace, keys in its order, a microsecond UTC time, a
// name without escapes) is read by a direct scan of its frame, with nlohmann's parser used
// for the payload and a non-empty metadata object only; anything else goes to
// emissions::detail::parse_envelope. The result is the same either way: the scan accepts
// only texts parse_envelope accepts, and gives the same Event.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "emissions/event.hpp"

namespace emissions::detail::kafka {

// parse_envelope(text, error)'s result, faster for envelopes written by serialize(). Never
// throws, except std::bad_alloc.
[[nodiscard]] std::optional<Event> read_envelope(std::string_view text, std::string& error);

// The scan alone: nullopt when `text` is not in serialize()'s exact shape (it may still be
// a valid envelope: read_envelope then asks parse_envelope). For tests.
[[nodiscard]] std::optional<Event> read_serialized_envelope(std::string_view text);

}  // namespace emissions::detail::kafka
