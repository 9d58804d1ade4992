#include "envelope_reader.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <utility>

#include <nlohmann/json.hpp>

#include "events/envelope_parse.hpp"

namespace emissions::detail::kafka {
namespace {

// Reads `count` decimal digits at text[at...] into `value`; advances `at`.
bool digits(std::string_view text, std::size_t& at, std::size_t count, int& value) noexcept {
  if (text.size() - at < count) return false;
  value = 0;
  for (std::size_t i = 0; i < count; ++i, ++at) {
    const char c = text[at];
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  return true;
}

bool expect(std::string_view text, std::size_t& at, char c) noexcept {
  if (at >= text.size() || text[at] != c) return false;
  ++at;
  return true;
}

bool expect(std::string_view text, std::size_t& at, std::string_view literal) noexcept {
  if (at > text.size() || text.substr(at, literal.size()) != literal) return false;
  at += literal.size();
  return true;
}

// The text format_timestamp() writes for a time between 1900 and 2199 (YYYY-MM-DDTHH:MM:SS.
// ffffffZ): other forms parse_envelope accepts (other fraction lengths, other years) are
// left to it. Checked by writing the time back: only a text format_timestamp() writes is
// taken, and parse_envelope reads exactly that time from it.
std::optional<std::chrono::system_clock::time_point> canonical_time(std::string_view text) {
  using namespace std::chrono;
  std::size_t at = 0;
  int y = 0;
  int mo = 0;
  int d = 0;
  int h = 0;
  int mi = 0;
  int s = 0;
  int us = 0;
  if (!digits(text, at, 4, y) || !expect(text, at, '-') || !digits(text, at, 2, mo) ||
      !expect(text, at, '-') || !digits(text, at, 2, d) || !expect(text, at, 'T') ||
      !digits(text, at, 2, h) || !expect(text, at, ':') || !digits(text, at, 2, mi) ||
      !expect(text, at, ':') || !digits(text, at, 2, s) || !expect(text, at, '.') ||
      !digits(text, at, 6, us) || !expect(text, at, 'Z') || at != text.size()) {
    return std::nullopt;
  }
  if (y < 1900 || y > 2199 || h > 23 || mi > 59 || s > 59) return std::nullopt;
  const year_month_day date{year{y}, month{static_cast<unsigned>(mo)},
                            day{static_cast<unsigned>(d)}};
  if (!date.ok()) return std::nullopt;
  const system_clock::time_point t(duration_cast<system_clock::duration>(
      sys_days(date).time_since_epoch() + hours(h) + minutes(mi) + seconds(s) + microseconds(us)));
  std::array<char, kMaxTimestampSize> written{};
  const char* end = format_timestamp_to(t, written.data());
  if (std::string_view(written.data(), static_cast<std::size_t>(end - written.data())) != text) {
    return std::nullopt;
  }
  return t;
}

// The end of the JSON object or array starting at text[at] ('{' or '['), strings and their
// escapes skipped; npos when it does not end. Only delimits: the parser checks the text.
std::size_t value_end(std::string_view text, std::size_t at) noexcept {
  int depth = 0;
  for (; at < text.size(); ++at) {
    const char c = text[at];
    if (c == '"') {
      for (++at; at < text.size() && text[at] != '"'; ++at) {
        if (text[at] == '\\') ++at;
      }
      if (at >= text.size()) return std::string_view::npos;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) return at + 1;
    }
  }
  return std::string_view::npos;
}

}  // namespace

std::optional<Event> read_serialized_envelope(std::string_view text) {
  std::size_t at = 0;
  if (!expect(text, at, R"({"emitted_at":")")) return std::nullopt;
  const std::size_t time_end = text.find('"', at);
  if (time_end == std::string_view::npos) return std::nullopt;
  const std::optional<std::chrono::system_clock::time_point> emitted_at =
      canonical_time(text.substr(at, time_end - at));
  at = time_end;
  if (!emitted_at || !expect(text, at, R"(","id":")")) return std::nullopt;
  const std::optional<EventId> id = EventId::parse(text.substr(at, EventId::kTextSize));
  at += EventId::kTextSize;
  if (!id || !expect(text, at, R"(","metadata":)")) return std::nullopt;

  Event event;
  if (expect(text, at, "{}")) {
    event.metadata = nlohmann::json::object();
  } else {
    if (at >= text.size() || text[at] != '{') return std::nullopt;
    const std::size_t end = value_end(text, at);
    if (end == std::string_view::npos) return std::nullopt;
    // A valid object ends at its matching brace: a text that parses is exactly that object.
    event.metadata = nlohmann::json::parse(text.substr(at, end - at), nullptr,
                                           /*allow_exceptions=*/false);
    if (!event.metadata.is_object()) return std::nullopt;
    at = end;
  }

  // A name without escapes, control or non-ASCII characters: its text is its value.
  if (!expect(text, at, R"(,"name":")")) return std::nullopt;
  const std::size_t name_begin = at;
  for (; at < text.size() && text[at] != '"'; ++at) {
    const auto c = static_cast<unsigned char>(text[at]);
    if (c == '\\' || c < 0x20 || c >= 0x80) return std::nullopt;
  }
  if (at == name_begin || at >= text.size()) return std::nullopt;
  const std::string_view name = text.substr(name_begin, at - name_begin);
  ++at;

  // The payload is the rest up to the closing brace; a text that parses is that value
  // (a duplicate key or trailing text after it would not parse: parse_envelope decides).
  if (!expect(text, at, R"(,"payload":)") || text.size() - at < 2 || text.back() != '}') {
    return std::nullopt;
  }
  // Parsed as an input of its own, the payload would get what only a whole text gets from
  // nlohmann: a byte-order mark skipped at its start, and a NUL taken as its end (anything
  // after it ignored). Both make the whole text invalid: parse_envelope decides.
  if (text.substr(at, 3) == "\xEF\xBB\xBF" || text.find('\0', at) != std::string_view::npos) {
    return std::nullopt;
  }
  event.payload = nlohmann::json::parse(text.substr(at, text.size() - 1 - at), nullptr,
                                        /*allow_exceptions=*/false);
  if (event.payload.is_discarded()) return std::nullopt;
  event.id = *id;
  event.name = EventName(name);
  event.emitted_at = *emitted_at;
  return event;
}

std::optional<Event> read_envelope(std::string_view text, std::string& error) {
  if (std::optional<Event> event = read_serialized_envelope(text)) return event;
  return parse_envelope(text, error);
}

}  // namespace emissions::detail::kafka
