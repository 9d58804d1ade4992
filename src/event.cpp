// The default JSON envelope of an Event, and its fast serializer.
//
// serialize_to() must stay byte-for-byte equal to `envelope(event).dump()`; the unit tests
// compare the two. nlohmann's objects are std::maps, so dump() writes the keys sorted:
// emitted_at, id, metadata, name, payload. We write that fixed frame by hand and let
// nlohmann's own serializer write the two JSON values, so numbers and strings inside them
// are formatted exactly as dump() would.
#include "emissions/event.hpp"

#include <array>
#include <cstdint>
#include <memory>

#include <nlohmann/detail/output/output_adapters.hpp>
#include <nlohmann/detail/output/serializer.hpp>

#include "event_id_text.hpp"

namespace emissions {
namespace detail {
namespace {

using Json = nlohmann::json;

// nlohmann's serializer writes through a shared_ptr to an output adapter. Building one per
// call costs an allocation; this sink can be pointed at a different string for each call,
// so every thread makes one serializer once and reuses it.
class RetargetableSink final : public nlohmann::detail::output_adapter_protocol<char> {
 public:
  void write_character(char c) override { out_->push_back(c); }
  void write_characters(const char* s, std::size_t length) override { out_->append(s, length); }
  void target(std::string* out) noexcept { out_ = out; }

 private:
  std::string* out_ = nullptr;
};

class JsonWriter {
 public:
  // Appends `value.dump()` to `out`. Throws what dump() throws (invalid UTF-8 in a string).
  void dump(const Json& value, std::string& out) {
    sink_->target(&out);
    struct Untarget {
      RetargetableSink& sink;
      ~Untarget() { sink.target(nullptr); }
    } untarget{*sink_};
    serializer_.dump(value, /*pretty_print=*/false, /*ensure_ascii=*/false, /*indent_step=*/0);
  }

 private:
  std::shared_ptr<RetargetableSink> sink_ = std::make_shared<RetargetableSink>();
  nlohmann::detail::serializer<Json> serializer_{sink_, ' '};
};

JsonWriter& thread_writer() {
  thread_local JsonWriter writer;
  return writer;
}

constexpr char kHexDigits[] = "0123456789abcdef";

// Appends `text` as a JSON string literal, exactly as nlohmann::json::dump() would.
// Event names are almost always short ASCII, escaped here without allocating; anything
// else goes through nlohmann, which also rejects invalid UTF-8 the same way dump() does.
void append_json_string(std::string_view text, std::string& out) {
  for (const char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) {
      thread_writer().dump(Json(text), out);
      return;
    }
  }
  out.push_back('"');
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    switch (c) {
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
      default:
        if (byte < 0x20) {
          const char escaped[] = {
              '\\', 'u', '0', '0', kHexDigits[byte >> 4], kHexDigits[byte & 0xf]};
          out.append(escaped, sizeof escaped);
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
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

// Calendar arithmetic through std::chrono: no locale, no shared static buffer (gmtime),
// and correct for times before 1970 (floor, not truncation toward zero).
void append_timestamp(std::chrono::system_clock::time_point t, std::string& out) {
  using namespace std::chrono;
  const auto us = floor<microseconds>(t);
  const auto day = floor<days>(us);
  const year_month_day date{day};
  const hh_mm_ss<microseconds> time{us - day};

  std::array<char, 40> text{};
  char* p = text.data();
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
  out.append(text.data(), static_cast<std::size_t>(p - text.data()));
}

// Events made by emit() always carry an object; a hand-built Event may hold null. Both the
// envelope and the serializer write `{}` for it, keeping the documented shape.
const Json& metadata_of(const Event& event) {
  static const Json kEmptyObject = Json::object();
  return event.metadata.is_null() ? kEmptyObject : event.metadata;
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
    detail::thread_writer().dump(detail::metadata_of(event), out);
    out.append(R"(,"name":)");
    detail::append_json_string(event.name.view(), out);
    out.append(R"(,"payload":)");
    detail::thread_writer().dump(event.payload, out);
    out.push_back('}');
  } catch (...) {
    // Leave `out` as it was, so a caller batching many events keeps only whole ones.
    out.resize(original_size);
    throw;
  }
}

std::string format_timestamp(std::chrono::system_clock::time_point t) {
  std::string out;
  out.reserve(27);
  detail::append_timestamp(t, out);
  return out;
}

}  // namespace emissions
