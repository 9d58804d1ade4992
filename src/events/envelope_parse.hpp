// Internal: an envelope (the JSON text emissions::serialize writes) back into an Event, for
// read_json_lines() and the Kafka source.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "emissions/event.hpp"

namespace emissions::detail {

// The event whose envelope is `text`: exactly the five keys of serialize(), `emitted_at` as
// `YYYY-MM-DDTHH:MM:SS[.f...]Z` (UTC, 0 to 9 fraction digits), `id` a canonical UUID,
// `metadata` an object, `name` a non-empty string, `payload` any value. nullopt when it is
// not, with `error` saying what is wrong ("missing key \"id\"", "not valid JSON: ...").
// Never throws, except std::bad_alloc.
[[nodiscard]] std::optional<Event> parse_envelope(std::string_view text, std::string& error);

}  // namespace emissions::detail
