#include "spool/codec.hpp"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <iterator>
#include <string_view>
#include <utility>

#include "spool/crc32c.hpp"

namespace emissions::detail::spool {

namespace {

using nlohmann::json;

// The tag byte in front of every JSON value (codec.hpp lists them). 0 is never a tag.
enum Tag : std::uint8_t {
  kTagNull = 0x01,
  kTagFalse = 0x02,
  kTagTrue = 0x03,
  kTagInteger = 0x04,
  kTagUnsigned = 0x05,
  kTagDouble = 0x06,
  kTagString = 0x07,
  kTagArray = 0x08,
  kTagObject = 0x09,
  kTagBinary = 0x0A,
};

constexpr char kSegmentMagic[8] = {'E', 'M', 'S', 'S', 'P', 'O', 'O', 'L'};
constexpr std::size_t kMaxVarintBytes = 10;
constexpr std::size_t kIdBytes = 16;
// The smallest record: record_len (1), id (16), emitted_at (1), a 1-byte name with its
// length (2), a null payload (1) and an empty metadata object (2).
constexpr std::size_t kMinRecordBytes = 23;
// Arrays grow as their items arrive: a count is never trusted for more than this.
constexpr std::size_t kMaxArrayReserve = 64;
// Encoder errors that get their limit appended to the message.
constexpr const char* kTooLarge = "makes the body exceed kMaxBodySize";
constexpr const char* kTooDeep = "nests deeper than kMaxJsonDepth";

// ---- little helpers over bytes -----------------------------------------------------------

void store_u32(std::uint8_t* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i)
    p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
void store_u64(std::uint8_t* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i)
    p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
void store_u64_be(std::uint8_t* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i)
    p[i] = static_cast<std::uint8_t>(v >> (56 - 8 * i));
}
std::uint32_t load_u32(const std::uint8_t* p) noexcept {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<std::uint32_t>(p[i]) << (8 * i);
  return v;
}
std::uint64_t load_u64(const std::uint8_t* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  return v;
}
std::uint64_t load_u64_be(const std::uint8_t* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v = (v << 8) | static_cast<std::uint64_t>(p[i]);
  return v;
}

std::uint64_t zigzag(std::int64_t v) noexcept {
  return (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63);
}
std::int64_t unzigzag(std::uint64_t v) noexcept {
  return static_cast<std::int64_t>((v >> 1) ^ (~(v & 1) + 1));
}

// Writes `v` at `p` (room for kMaxVarintBytes) and returns the end of what it wrote.
std::uint8_t* write_varint(std::uint8_t* p, std::uint64_t v) noexcept {
  while (v >= 0x80) {
    *p++ = static_cast<std::uint8_t>(v | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<std::uint8_t>(v);
  return p;
}

std::int64_t to_ns(std::chrono::system_clock::time_point t) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
std::chrono::system_clock::time_point from_ns(std::int64_t ns) noexcept {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds(ns)));
}

// ---- encoding ------------------------------------------------------------------------

// Appends to a byte vector through a raw pointer: `room(n)` makes n bytes writable at
// `at()`, `done(p)` keeps what was written up to p. Growth is the vector's own (geometric).
class Sink {
 public:
  explicit Sink(std::vector<std::uint8_t>& out) noexcept : out_(out) {}

  std::uint8_t* room(std::size_t n) {
    const std::size_t used = out_.size();
    out_.resize(used + n);
    return out_.data() + used;
  }
  void done(const std::uint8_t* end) { out_.resize(static_cast<std::size_t>(end - out_.data())); }
  void tag_and_varint(std::uint8_t tag, std::uint64_t v) {
    std::uint8_t* p = room(1 + kMaxVarintBytes);
    *p++ = tag;
    done(write_varint(p, v));
  }
  // Tag, varint length, bytes; false (nothing written) when the body would pass the limit.
  bool tag_and_bytes(std::uint8_t tag, const void* data, std::size_t n) {
    if (n > kMaxBodySize || out_.size() + n > kMaxBodySize) return false;
    std::uint8_t* p = room(1 + kMaxVarintBytes + n);
    *p++ = tag;
    p = write_varint(p, n);
    if (n > 0) std::memcpy(p, data, n);
    done(p + n);
    return true;
  }
  std::size_t size() const noexcept { return out_.size(); }
  std::vector<std::uint8_t>& bytes() noexcept { return out_; }

 private:
  std::vector<std::uint8_t>& out_;
};

// Writes `value` (at `depth` arrays/objects inside the top); nullptr, or what is wrong.
const char* put_json(Sink& sink, const json& value, std::size_t depth) {
  switch (value.type()) {
    case json::value_t::null:
      *sink.room(1) = kTagNull;
      return nullptr;
    case json::value_t::boolean:
      *sink.room(1) = value.get_ref<const json::boolean_t&>() ? kTagTrue : kTagFalse;
      return nullptr;
    case json::value_t::number_integer:
      sink.tag_and_varint(kTagInteger, zigzag(value.get_ref<const json::number_integer_t&>()));
      return nullptr;
    case json::value_t::number_unsigned:
      sink.tag_and_varint(kTagUnsigned, value.get_ref<const json::number_unsigned_t&>());
      return nullptr;
    case json::value_t::number_float: {
      std::uint8_t* p = sink.room(9);
      p[0] = kTagDouble;
      store_u64(p + 1, std::bit_cast<std::uint64_t>(
                           static_cast<double>(value.get_ref<const json::number_float_t&>())));
      return nullptr;
    }
    case json::value_t::string: {
      const auto& text = value.get_ref<const json::string_t&>();
      if (!sink.tag_and_bytes(kTagString, text.data(), text.size())) return kTooLarge;
      return nullptr;
    }
    case json::value_t::array: {
      if (depth >= kMaxJsonDepth) return kTooDeep;
      const auto& items = value.get_ref<const json::array_t&>();
      sink.tag_and_varint(kTagArray, items.size());
      for (const json& item : items) {
        if (const char* error = put_json(sink, item, depth + 1)) return error;
      }
      return nullptr;
    }
    case json::value_t::object: {
      if (depth >= kMaxJsonDepth) return kTooDeep;
      const auto& members = value.get_ref<const json::object_t&>();
      sink.tag_and_varint(kTagObject, members.size());
      for (const auto& [key, item] : members) {
        if (key.size() > kMaxBodySize || sink.size() + key.size() > kMaxBodySize) {
          return kTooLarge;
        }
        std::uint8_t* p = sink.room(kMaxVarintBytes + key.size());
        p = write_varint(p, key.size());
        if (!key.empty()) std::memcpy(p, key.data(), key.size());
        sink.done(p + key.size());
        if (const char* error = put_json(sink, item, depth + 1)) return error;
      }
      return nullptr;
    }
    case json::value_t::binary: {
      const json::binary_t& binary = value.get_binary();
      if (!sink.tag_and_bytes(kTagBinary, binary.data(), binary.size())) return kTooLarge;
      if (binary.has_subtype()) {
        std::uint8_t* p = sink.room(9);
        p[0] = 1;
        store_u64(p + 1, static_cast<std::uint64_t>(binary.subtype()));
      } else {
        *sink.room(1) = 0;
      }
      return nullptr;
    }
    case json::value_t::discarded:
      break;
  }
  return "holds a discarded value";
}

// Writes the record for `event`, its record_len included; nullptr, or what is wrong.
const char* put_record(Sink& sink, const Event& event, std::string_view& field) {
  const std::string_view name = event.name.view();
  field = "name";
  if (name.empty()) return "is empty";
  // The smallest record with this name does not fit: refuse before growing the body.
  if (name.size() > kMaxBodySize ||
      sink.size() + name.size() - 1 + kMinRecordBytes > kMaxBodySize) {
    field = "";
    return kTooLarge;
  }
  // record_len is written after the record, in one byte reserved here: records shorter
  // than 128 bytes (the usual) need no move.
  const std::size_t len_at = sink.size();
  std::uint8_t* p = sink.room(1 + kIdBytes + 2 * kMaxVarintBytes + name.size());
  ++p;
  store_u64_be(p, event.id.high());
  store_u64_be(p + 8, event.id.low());
  p = write_varint(p + kIdBytes, zigzag(to_ns(event.emitted_at)));
  p = write_varint(p, name.size());
  std::memcpy(p, name.data(), name.size());
  sink.done(p + name.size());

  field = "payload";
  if (const char* error = put_json(sink, event.payload, 0)) return error;
  field = "metadata";
  if (event.metadata.is_null()) {  // Event's "none given", which the pipeline makes {}
    std::uint8_t* m = sink.room(2);
    m[0] = kTagObject;
    m[1] = 0;
  } else if (!event.metadata.is_object()) {
    return "is not an object";
  } else if (const char* error = put_json(sink, event.metadata, 0)) {
    return error;
  }

  const std::size_t record_len = sink.size() - len_at - 1;
  std::uint8_t len[kMaxVarintBytes];
  const auto len_bytes = static_cast<std::size_t>(write_varint(len, record_len) - len);
  std::vector<std::uint8_t>& bytes = sink.bytes();
  bytes[len_at] = len[0];
  if (len_bytes > 1) {
    bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(len_at + 1), len + 1, len + len_bytes);
  }
  field = "";
  if (sink.size() > kMaxBodySize) return kTooLarge;
  return nullptr;
}

// ---- decoding ------------------------------------------------------------------------

// A bounds-checked cursor over bytes. Every read checks what is left first; the first
// failure is kept in `error`.
struct Reader {
  const std::uint8_t* at;
  const std::uint8_t* end;
  std::string error;

  [[nodiscard]] std::size_t left() const noexcept { return static_cast<std::size_t>(end - at); }

  bool fail(std::string what) {
    error = std::move(what);
    return false;
  }
  bool fail_past_end(const char* what, std::uint64_t n) {
    return fail(std::string(what) + " " + std::to_string(n) + " runs past the end (" +
                std::to_string(left()) + " bytes left)");
  }

  bool u8(std::uint8_t& v) {
    if (at == end) return fail("no bytes left");
    v = *at++;
    return true;
  }
  bool u64(std::uint64_t& v) {
    if (left() < 8) return fail("8 bytes needed, " + std::to_string(left()) + " left");
    v = load_u64(at);
    at += 8;
    return true;
  }
  bool varint(std::uint64_t& v) {
    std::uint64_t result = 0;
    for (std::size_t i = 0; i < kMaxVarintBytes; ++i) {
      if (at == end) return fail("varint runs past the end");
      const std::uint8_t byte = *at++;
      if (i == kMaxVarintBytes - 1 && byte > 1) return fail("varint overflows 64 bits");
      result |= static_cast<std::uint64_t>(byte & 0x7F) << (7 * i);
      if ((byte & 0x80) == 0) {
        if (byte == 0 && i > 0) return fail("varint is overlong (not canonical)");
        v = result;
        return true;
      }
    }
    return fail("varint longer than 10 bytes");  // unreachable: the 10th byte ends it
  }
  // A varint length whose bytes must follow within what is left.
  bool length(const char* what, std::size_t& n) {
    std::uint64_t v = 0;
    if (!varint(v)) return false;
    if (v > left()) return fail_past_end(what, v);
    n = static_cast<std::size_t>(v);
    return true;
  }
  std::string_view take(std::size_t n) noexcept {  // n <= left(), checked by the caller
    const std::string_view out(reinterpret_cast<const char*>(at), n);
    at += n;
    return out;
  }
};

bool get_json(Reader& in, json& out, std::size_t depth) {
  std::uint8_t tag = 0;
  if (!in.u8(tag)) return in.fail("value missing: no bytes left");
  switch (tag) {
    case kTagNull:
      out = nullptr;
      return true;
    case kTagFalse:
    case kTagTrue:
      out = (tag == kTagTrue);
      return true;
    case kTagInteger: {
      std::uint64_t v = 0;
      if (!in.varint(v)) return false;
      out = static_cast<json::number_integer_t>(unzigzag(v));
      return true;
    }
    case kTagUnsigned: {
      std::uint64_t v = 0;
      if (!in.varint(v)) return false;
      out = static_cast<json::number_unsigned_t>(v);
      return true;
    }
    case kTagDouble: {
      std::uint64_t bits = 0;
      if (!in.u64(bits)) return false;
      out = static_cast<json::number_float_t>(std::bit_cast<double>(bits));
      return true;
    }
    case kTagString: {
      std::size_t n = 0;
      if (!in.length("string length", n)) return false;
      out = json::string_t(in.take(n));
      return true;
    }
    case kTagArray: {
      if (depth >= kMaxJsonDepth) return in.fail(kTooDeep);
      std::size_t count = 0;  // each item takes at least one byte
      if (!in.length("array count", count)) return false;
      out = json(json::value_t::array);
      auto& items = out.get_ref<json::array_t&>();
      items.reserve(std::min(count, kMaxArrayReserve));
      for (std::size_t i = 0; i < count; ++i) {
        items.emplace_back();
        if (!get_json(in, items.back(), depth + 1)) return false;
      }
      return true;
    }
    case kTagObject: {
      if (depth >= kMaxJsonDepth) return in.fail(kTooDeep);
      std::size_t count = 0;  // each member takes at least two bytes
      if (!in.length("object count", count)) return false;
      out = json(json::value_t::object);
      auto& members = out.get_ref<json::object_t&>();
      std::string_view previous;
      for (std::size_t i = 0; i < count; ++i) {
        std::size_t key_len = 0;
        if (!in.length("key length", key_len)) return false;
        const std::string_view key = in.take(key_len);
        if (i > 0 && !(previous < key)) {
          return in.fail("object keys out of order or repeated");
        }
        previous = key;
        json item;
        if (!get_json(in, item, depth + 1)) return false;
        members.emplace_hint(members.end(), std::string(key), std::move(item));
      }
      return true;
    }
    case kTagBinary: {
      std::size_t n = 0;
      if (!in.length("binary length", n)) return false;
      json::binary_t::container_type bytes(in.at, in.at + n);
      in.at += n;
      std::uint8_t has_subtype = 0;
      if (!in.u8(has_subtype)) return in.fail("binary subtype flag missing");
      if (has_subtype > 1) return in.fail("binary subtype flag is neither 0 nor 1");
      if (has_subtype == 0) {
        out = json::binary(std::move(bytes));
        return true;
      }
      std::uint64_t subtype = 0;
      if (!in.u64(subtype)) return false;
      out = json::binary(std::move(bytes), static_cast<json::binary_t::subtype_type>(subtype));
      return true;
    }
    default:
      return in.fail("bad tag " + std::to_string(tag));
  }
}

// One record into `event` (all but its name, returned in `name`); the field that failed in
// `field`.
bool get_record(Reader& in, Event& event, std::string_view& name, const char*& field) {
  field = "record_len";
  std::size_t record_len = 0;
  if (!in.length("record_len", record_len)) return false;
  Reader record{in.at, in.at + record_len, {}};
  in.at += record_len;
  const auto failed = [&]() {
    in.error = std::move(record.error);
    return false;
  };

  field = "id";
  if (record.left() < kIdBytes) {
    return in.fail("16 bytes needed, " + std::to_string(record.left()) + " left in the record");
  }
  event.id = EventId(load_u64_be(record.at), load_u64_be(record.at + 8));
  record.at += kIdBytes;

  field = "emitted_at";
  std::uint64_t ns = 0;
  if (!record.varint(ns)) return failed();
  event.emitted_at = from_ns(unzigzag(ns));

  field = "name";
  std::size_t name_len = 0;
  if (!record.length("length", name_len)) return failed();
  if (name_len == 0) return in.fail("is empty");
  name = record.take(name_len);

  field = "payload";
  if (!get_json(record, event.payload, 0)) return failed();
  field = "metadata";
  if (!get_json(record, event.metadata, 0)) return failed();
  if (!event.metadata.is_object()) {
    return in.fail(std::string("is a ") + event.metadata.type_name() + ", not an object");
  }

  field = "record_len";
  if (record.left() != 0) {
    return in.fail(std::to_string(record_len) + " but the record holds " +
                   std::to_string(record_len - record.left()) + " bytes");
  }
  return true;
}

Status invalid(std::string what) {
  return Status(Errc::invalid_argument, std::move(what));
}

}  // namespace

// ---- segment header --------------------------------------------------------------------

void encode_segment_header(const SegmentHeader& header, std::uint8_t (&out)[kSegmentHeaderSize]) {
  std::memcpy(out, kSegmentMagic, sizeof kSegmentMagic);
  store_u32(out + 8, kFormatVersion);
  store_u32(out + 12, static_cast<std::uint32_t>(kSegmentHeaderSize));
  store_u64(out + 16, header.base_seq);
  store_u64(out + 24, static_cast<std::uint64_t>(header.created_at_ns));
  std::memset(out + 32, 0, 28);
  store_u32(out + 60, crc32c(std::span<const std::uint8_t>(out, 60)));
}

Status decode_segment_header(std::span<const std::uint8_t> bytes, SegmentHeader& out) {
  if (bytes.size() < kSegmentHeaderSize) {
    return invalid("segment header: " + std::to_string(bytes.size()) + " bytes, 64 needed");
  }
  const std::uint8_t* p = bytes.data();
  if (std::memcmp(p, kSegmentMagic, sizeof kSegmentMagic) != 0) {
    return invalid("segment header: bad magic (not an emissions spool segment)");
  }
  if (crc32c(bytes.first(60)) != load_u32(p + 60)) {
    return invalid("segment header: checksum mismatch");
  }
  if (const std::uint32_t version = load_u32(p + 8); version != kFormatVersion) {
    return invalid("segment header: version " + std::to_string(version) + ", this build reads " +
                   std::to_string(kFormatVersion));
  }
  if (const std::uint32_t size = load_u32(p + 12); size != kSegmentHeaderSize) {
    return invalid("segment header: header size " + std::to_string(size) + ", expected 64");
  }
  if (std::any_of(p + 32, p + 60, [](std::uint8_t b) { return b != 0; })) {
    return invalid("segment header: reserved bytes are not zero");
  }
  out.base_seq = load_u64(p + 16);
  out.created_at_ns = static_cast<std::int64_t>(load_u64(p + 24));
  return {};
}

// ---- frames ------------------------------------------------------------------------------

Status encode_body(std::span<const Event> events, std::vector<std::uint8_t>& body) {
  const std::size_t original_size = body.size();
  Sink sink(body);
  std::string_view field;
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (const char* error = put_record(sink, events[i], field)) {
      body.resize(original_size);
      std::string message =
          "spool: event " + std::to_string(i) + " (" + std::string(events[i].name.view()) + ")";
      if (!field.empty()) message += ": " + std::string(field);
      message += std::string(" ") + error;
      if (error == kTooLarge) {
        message += " (" + std::to_string(kMaxBodySize) + " bytes)";
      } else if (error == kTooDeep) {
        message += " (" + std::to_string(kMaxJsonDepth) + " arrays/objects)";
      }
      return invalid(std::move(message));
    }
  }
  return {};
}

void encode_frame_header(std::uint64_t seq, std::span<const std::uint8_t> body,
                         std::uint32_t event_count, std::uint32_t flags,
                         std::uint8_t (&out)[kFrameHeaderSize]) {
  store_u32(out, kFrameMagic);
  store_u32(out + 4, static_cast<std::uint32_t>(body.size()));
  store_u64(out + 8, seq);
  store_u32(out + 16, event_count);
  store_u32(out + 20, crc32c(body));
  store_u32(out + 24, flags);
  store_u32(out + 28, crc32c(std::span<const std::uint8_t>(out, 28)));
}

FrameCheck check_frame(std::span<const std::uint8_t> bytes, FrameHeader& header) noexcept {
  if (bytes.size() < kFrameHeaderSize) {
    const bool all_zero = std::all_of(bytes.begin(), bytes.end(), [](auto b) { return b == 0; });
    return all_zero ? FrameCheck::end : FrameCheck::torn;
  }
  const std::uint8_t* p = bytes.data();
  const std::uint32_t magic = load_u32(p);
  if (magic == 0) return FrameCheck::end;
  if (magic != kFrameMagic) return FrameCheck::corrupt;
  if (crc32c(bytes.first(28)) != load_u32(p + 28)) return FrameCheck::corrupt;
  FrameHeader read;
  read.body_len = load_u32(p + 4);
  read.seq = load_u64(p + 8);
  read.event_count = load_u32(p + 16);
  read.body_crc = load_u32(p + 20);
  read.flags = load_u32(p + 24);
  if (read.body_len > kMaxBodySize) return FrameCheck::corrupt;
  header = read;
  const std::size_t size = frame_size(read.body_len);
  if (bytes.size() < size) return FrameCheck::torn;
  if (crc32c(bytes.subspan(kFrameHeaderSize, read.body_len)) != read.body_crc) {
    return FrameCheck::corrupt;
  }
  for (std::size_t i = kFrameHeaderSize + read.body_len; i < size; ++i) {
    if (p[i] != 0) return FrameCheck::corrupt;
  }
  return FrameCheck::ok;
}

Status decode_body(std::span<const std::uint8_t> body, std::uint32_t event_count,
                   std::vector<Event>& out) {
  if (event_count > body.size() / kMinRecordBytes) {
    return invalid("spool body: " + std::to_string(event_count) + " records cannot fit in " +
                   std::to_string(body.size()) + " bytes");
  }
  std::vector<Event> events(event_count);
  std::vector<std::string_view> names(event_count);
  Reader in{body.data(), body.data() + body.size(), {}};
  for (std::size_t i = 0; i < event_count; ++i) {
    const char* field = "";
    if (!get_record(in, events[i], names[i], field)) {
      return invalid("spool body: record " + std::to_string(i) + " of " +
                     std::to_string(event_count) + ": " + field + ": " + in.error);
    }
  }
  if (in.left() != 0) {
    return invalid("spool body: " + std::to_string(in.left()) + " bytes after the last of " +
                   std::to_string(event_count) + " records");
  }
  for (std::size_t i = 0; i < event_count; ++i)
    events[i].name = EventName(names[i]);
  out.reserve(out.size() + events.size());
  std::move(events.begin(), events.end(), std::back_inserter(out));
  return {};
}

}  // namespace emissions::detail::spool
