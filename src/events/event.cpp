// The default JSON envelope of an Event, and its fast serializer.
//
// serialize_to() must stay byte-for-byte equal to `envelope(event).dump()`; the unit tests
// compare the two. nlohmann's objects are std::maps, so dump() writes the keys sorted:
// emitted_at, id, metadata, name, payload. We write that fixed frame by hand, and the two
// JSON values inside it with our own writer, which follows dump()'s rules (compact, UTF-8
// kept as is, the same escapes). The two things it does not redo itself go through the
// public dump(): floating-point numbers (nlohmann's own digit generation and exponent
// format, which std::to_chars does not always match) and invalid UTF-8 (so that the same
// type_error is thrown). Only nlohmann's public API is used, so any nlohmann_json >= 3.10
// works.
#include "emissions/event.hpp"

#include <array>
#include <charconv>
#include <cstdint>
#include <string_view>

#include "common/no_destroy.hpp"

#include "events/event_id_text.hpp"

namespace emissions {
namespace detail {
namespace {

using Json = nlohmann::json;

constexpr char kHexDigits[] = "0123456789abcdef";

// Printable ASCII other than '"' and '\\': copied into a JSON string as is.
constexpr bool is_plain_ascii(unsigned char byte) noexcept {
  return byte >= 0x20 && byte < 0x80 && byte != '"' && byte != '\\';
}

// Length of the well-formed UTF-8 sequence that starts at text[at] (a byte >= 0x80), or 0
// when it is not one: a stray continuation byte, an overlong form, a UTF-16 surrogate, a
// code point above U+10FFFF or a sequence cut short (RFC 3629, the bytes dump() accepts).
std::size_t utf8_sequence_length(std::string_view text, std::size_t at) noexcept {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[at + k]); };
  const unsigned char lead = byte(0);
  std::size_t length = 0;
  unsigned char second_min = 0x80;  // range of the second byte; the later ones are 80..BF
  unsigned char second_max = 0xbf;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) second_min = 0xa0;  // overlong below U+0800
    if (lead == 0xed) second_max = 0x9f;  // surrogates U+D800..U+DFFF
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) second_min = 0x90;  // overlong below U+10000
    if (lead == 0xf4) second_max = 0x8f;  // above U+10FFFF
  } else {
    return 0;
  }
  if (text.size() - at < length) return 0;
  if (byte(1) < second_min || byte(1) > second_max) return 0;
  for (std::size_t k = 2; k < length; ++k) {
    if ((byte(k) & 0xc0) != 0x80) return 0;
  }
  return length;
}

// Appends the escape dump() writes for `byte` (an ASCII byte that is not plain).
void append_escape(unsigned char byte, std::string& out) {
  switch (byte) {
    case '"':
      out.append("\\\"");
      break;
    case '\\':
      out.append("\\\\");
      break;
    case '\b':
      out.append("\\b");
      break;
    case '\t':
      out.append("\\t");
      break;
    case '\n':
      out.append("\\n");
      break;
    case '\f':
      out.append("\\f");
      break;
    case '\r':
      out.append("\\r");
      break;
    default: {  // the other control characters
      const char escaped[] = {'\\', 'u', '0', '0', kHexDigits[byte >> 4], kHexDigits[byte & 0xf]};
      out.append(escaped, sizeof escaped);
    }
  }
}

// Appends `text` as a JSON string literal, exactly as nlohmann::json::dump() would: plain
// runs are copied in one append, well-formed UTF-8 is kept as is. Text that is not
// well-formed UTF-8 goes to dump(), which throws its type_error (316) for it.
void append_json_string(std::string_view text, std::string& out) {
  const std::size_t original_size = out.size();
  out.push_back('"');
  std::size_t copied = 0;  // text[copied, at) is plain and not yet appended
  std::size_t at = 0;
  while (at < text.size()) {
    const auto byte = static_cast<unsigned char>(text[at]);
    if (is_plain_ascii(byte)) {
      ++at;
    } else if (byte >= 0x80) {
      const std::size_t length = utf8_sequence_length(text, at);
      if (length == 0) {
        out.resize(original_size);
        out.append(Json(text).dump());  // throws; appends only should nlohmann disagree
        return;
      }
      at += length;
    } else {
      out.append(text.data() + copied, at - copied);
      append_escape(byte, out);
      copied = ++at;
    }
  }
  out.append(text.data() + copied, at - copied);
  out.push_back('"');
}

template <typename Integer>
void append_integer(Integer value, std::string& out) {
  std::array<char, 24> digits{};  // 20 digits and a sign at most
  const auto [end, error] = std::to_chars(digits.data(), digits.data() + digits.size(), value);
  (void)error;  // cannot fail: the buffer fits every 64-bit value
  out.append(digits.data(), static_cast<std::size_t>(end - digits.data()));
}

// Appends `value.dump()` to `out`. Throws what dump() throws (invalid UTF-8 in a string).
void append_json(const Json& value, std::string& out) {
  switch (value.type()) {
    case Json::value_t::null:
      out.append("null");
      return;
    case Json::value_t::boolean:
      out.append(value.get<bool>() ? "true" : "false");
      return;
    case Json::value_t::number_integer:
      append_integer(value.get<Json::number_integer_t>(), out);
      return;
    case Json::value_t::number_unsigned:
      append_integer(value.get<Json::number_unsigned_t>(), out);
      return;
    case Json::value_t::string:
      append_json_string(value.get_ref<const Json::string_t&>(), out);
      return;
    case Json::value_t::array: {
      out.push_back('[');
      bool first = true;
      for (const Json& element : value.get_ref<const Json::array_t&>()) {
        if (!first) out.push_back(',');
        first = false;
        append_json(element, out);
      }
      out.push_back(']');
      return;
    }
    case Json::value_t::object: {
      out.push_back('{');
      bool first = true;
      for (const auto& [key, member] : value.get_ref<const Json::object_t&>()) {
        if (!first) out.push_back(',');
        first = false;
        append_json_string(key, out);
        out.push_back(':');
        append_json(member, out);
      }
      out.push_back('}');
      return;
    }
    case Json::value_t::number_float:  // nlohmann's own digits: see the top of this file
    case Json::value_t::binary:
    case Json::value_t::discarded:
      break;
  }
  out.append(value.dump());
}

// Same text as EventId::str(), without the temporary string.
void append_id(const EventId& id, std::string& out) {
  const std::array<char, 36> text = event_id_text(id);
  out.append(text.data(), text.size());
}

// Writes `value` as exactly `width` decimal digits at `p` (value < 10^width).
char* put_digits(char* p, std::uint64_t value, int width) noexcept {
  for (int i = width - 1; i >= 0; --i) {
    p[i] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
  return p + width;
}

void append_timestamp(std::chrono::system_clock::time_point t, std::string& out) {
  std::array<char, kMaxTimestampSize> text{};
  const char* end = format_timestamp_to(t, text.data());
  out.append(text.data(), static_cast<std::size_t>(end - text.data()));
}

// Events made by emit() always carry an object; a hand-built Event may hold null. Both the
// envelope and the serializer write `{}` for it, keeping the documented shape. Never
// destroyed: adapters may serialize from a static Emitter's destructor.
const Json& metadata_of(const Event& event) {
  static const NoDestroy<Json> kEmptyObject{Json::object()};
  return event.metadata.is_null() ? *kEmptyObject : event.metadata;
}

}  // namespace
}  // namespace detail

nlohmann::json envelope(const Event& event) {
  return nlohmann::json{
      {"id", event.id.str()},
      {"name", event.name.str()},
      {"payload", event.payload},
      {"metadata", detail::metadata_of(event)},
      {"emitted_at", format_timestamp(event.emitted_at)},
  };
}

std::string serialize(const Event& event) {
  std::string out;
  serialize_to(event, out);
  return out;
}

void serialize_to(const Event& event, std::string& out) {
  const std::size_t original_size = out.size();
  try {
    out.append(R"({"emitted_at":")");
    detail::append_timestamp(event.emitted_at, out);
    out.append(R"(","id":")");
    detail::append_id(event.id, out);
    out.append(R"(","metadata":)");
    detail::append_json(detail::metadata_of(event), out);
    out.append(R"(,"name":)");
    detail::append_json_string(event.name.view(), out);
    out.append(R"(,"payload":)");
    detail::append_json(event.payload, out);
    out.push_back('}');
  } catch (...) {
    // Leave `out` as it was, so a caller batching many events keeps only whole ones.
    out.resize(original_size);
    throw;
  }
}

// Calendar arithmetic through std::chrono: no locale, no shared static buffer (gmtime),
// and correct for times before 1970 (floor, not truncation toward zero).
char* format_timestamp_to(std::chrono::system_clock::time_point t, char* out) noexcept {
  using namespace std::chrono;
  using detail::put_digits;
  const auto us = floor<microseconds>(t);
  const auto day = floor<days>(us);
  const year_month_day date{day};
  const hh_mm_ss<microseconds> time{us - day};

  char* p = out;
  int year = static_cast<int>(date.year());
  if (year < 0) {
    *p++ = '-';
    year = -year;
  }
  p = put_digits(p, static_cast<std::uint64_t>(year), year > 9999 ? 5 : 4);
  *p++ = '-';
  p = put_digits(p, static_cast<unsigned>(date.month()), 2);
  *p++ = '-';
  p = put_digits(p, static_cast<unsigned>(date.day()), 2);
  *p++ = 'T';
  p = put_digits(p, static_cast<std::uint64_t>(time.hours().count()), 2);
  *p++ = ':';
  p = put_digits(p, static_cast<std::uint64_t>(time.minutes().count()), 2);
  *p++ = ':';
  p = put_digits(p, static_cast<std::uint64_t>(time.seconds().count()), 2);
  *p++ = '.';
  p = put_digits(p, static_cast<std::uint64_t>(time.subseconds().count()), 6);
  *p++ = 'Z';
  return p;
}

std::string format_timestamp(std::chrono::system_clock::time_point t) {
  std::string out;
  out.reserve(27);
  detail::append_timestamp(t, out);
  return out;
}

}  // namespace emissions
