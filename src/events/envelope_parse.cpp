// The envelope (emissions::serialize) read back into an Event: read_json_lines() and the
// Kafka source use it.
#include "events/envelope_parse.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

namespace emissions::detail {
namespace {

constexpr std::size_t kQuoteMax = 60;  // characters of a bad value shown in a message

// `value` as JSON text, shortened for a message.
std::string shown(const nlohmann::json& value) {
  std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (text.size() > kQuoteMax) text = text.substr(0, kQuoteMax) + "...";
  return text;
}

// Reads `count` decimal digits at text[at...]; advances `at`. nullopt when they are not all
// digits.
std::optional<std::int64_t> digits(std::string_view text, std::size_t& at, std::size_t count) {
  if (text.size() - at < count) return std::nullopt;
  std::int64_t value = 0;
  for (std::size_t i = 0; i < count; ++i, ++at) {
    const char c = text[at];
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  return value;
}

bool expect(std::string_view text, std::size_t& at, char c) {
  if (at >= text.size() || text[at] != c) return false;
  ++at;
  return true;
}

// The form format_timestamp() writes: [-]YYYY[Y]-MM-DDTHH:MM:SS[.f{1,9}]Z. nullopt when the
// text is not of that form, not a real date or time, or outside the system clock's range.
std::optional<std::chrono::system_clock::time_point> parse_timestamp(std::string_view text) {
  using namespace std::chrono;
  std::size_t at = 0;
  const bool negative = expect(text, at, '-');
  std::size_t year_digits = 0;
  while (at + year_digits < text.size() && text[at + year_digits] != '-')
    ++year_digits;
  if (year_digits != 4 && year_digits != 5) return std::nullopt;
  const auto y = digits(text, at, year_digits);
  if (!y || !expect(text, at, '-')) return std::nullopt;
  const auto mo = digits(text, at, 2);
  if (!mo || !expect(text, at, '-')) return std::nullopt;
  const auto d = digits(text, at, 2);
  if (!d || !expect(text, at, 'T')) return std::nullopt;
  const auto h = digits(text, at, 2);
  if (!h || !expect(text, at, ':')) return std::nullopt;
  const auto mi = digits(text, at, 2);
  if (!mi || !expect(text, at, ':')) return std::nullopt;
  const auto s = digits(text, at, 2);
  if (!s) return std::nullopt;
  std::int64_t fraction_ns = 0;
  if (expect(text, at, '.')) {
    std::size_t count = 0;
    while (at + count < text.size() && text[at + count] >= '0' && text[at + count] <= '9')
      ++count;
    if (count == 0 || count > 9) return std::nullopt;
    fraction_ns = *digits(text, at, count);
    for (std::size_t i = count; i < 9; ++i)
      fraction_ns *= 10;
  }
  if (!expect(text, at, 'Z') || at != text.size()) return std::nullopt;
  if (*h > 23 || *mi > 59 || *s > 59) return std::nullopt;

  const year_month_day date{year{static_cast<int>(negative ? -*y : *y)},
                            month{static_cast<unsigned>(*mo)}, day{static_cast<unsigned>(*d)}};
  if (!date.ok()) return std::nullopt;
  // In seconds first: every year of the form fits, while nanoseconds hold only ±292 years.
  const std::int64_t seconds_since_epoch =
      duration_cast<seconds>(sys_days(date).time_since_epoch()).count() + *h * 3600 + *mi * 60 + *s;
  using Duration = system_clock::duration;
  constexpr std::int64_t kTicksPerSecond = Duration::period::den / Duration::period::num;
  constexpr std::int64_t kLimit = std::numeric_limits<Duration::rep>::max() / kTicksPerSecond - 1;
  if (seconds_since_epoch > kLimit || seconds_since_epoch < -kLimit) return std::nullopt;
  return system_clock::time_point(duration_cast<Duration>(seconds(seconds_since_epoch)) +
                                  duration_cast<Duration>(nanoseconds(fraction_ns)));
}

}  // namespace

std::optional<Event> parse_envelope(std::string_view text, std::string& error) {
  // nlohmann ends its input at a NUL byte, and would take what comes before it; a NUL is
  // never valid in JSON text (outside strings, or raw inside one).
  if (text.find('\0') != std::string_view::npos) {
    error = "not valid JSON: a NUL byte at offset " + std::to_string(text.find('\0'));
    return std::nullopt;
  }
  nlohmann::json envelope;
  try {
    envelope = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    // parse_error, and out_of_range for a number too large for a double ("1e999").
    error = std::string("not valid JSON: ") + e.what();
    return std::nullopt;
  }
  if (!envelope.is_object()) {
    error = "not a JSON object (got " + shown(envelope) + ")";
    return std::nullopt;
  }
  static constexpr std::string_view kKeys[] = {"emitted_at", "id", "metadata", "name", "payload"};
  for (std::string_view key : kKeys) {
    if (!envelope.contains(key)) {
      error = "missing key \"" + std::string(key) + "\"";
      return std::nullopt;
    }
  }
  for (const auto& [key, value] : envelope.items()) {
    if (std::find(std::begin(kKeys), std::end(kKeys), key) == std::end(kKeys)) {
      error = "unexpected key " + shown(nlohmann::json(key));
      return std::nullopt;
    }
  }
  Event event;
  const nlohmann::json& emitted_at = envelope["emitted_at"];
  std::optional<std::chrono::system_clock::time_point> at;
  if (emitted_at.is_string()) at = parse_timestamp(emitted_at.get_ref<const std::string&>());
  if (!at) {
    error = "emitted_at is not a UTC time like \"2026-11-21T01:37:33.123456Z\" (got " +
            shown(emitted_at) + ")";
    return std::nullopt;
  }
  event.emitted_at = *at;
  const nlohmann::json& id = envelope["id"];
  std::optional<EventId> parsed_id;
  if (id.is_string()) parsed_id = EventId::parse(id.get_ref<const std::string&>());
  if (!parsed_id) {
    error = "id is not a canonical UUID (got " + shown(id) + ")";
    return std::nullopt;
  }
  event.id = *parsed_id;
  nlohmann::json& metadata = envelope["metadata"];
  if (!metadata.is_object()) {
    error = "metadata is not an object (got " + shown(metadata) + ")";
    return std::nullopt;
  }
  event.metadata = std::move(metadata);
  const nlohmann::json& name = envelope["name"];
  if (!name.is_string() || name.get_ref<const std::string&>().empty()) {
    error = "name is not a non-empty string (got " + shown(name) + ")";
    return std::nullopt;
  }
  event.name = EventName(name.get_ref<const std::string&>());
  event.payload = std::move(envelope["payload"]);
  return event;
}

}  // namespace emissions::detail
