// The spool's on-disk encoding (src/spool/codec.hpp): events survive encode/decode exactly,
// frames and segment headers detect every damage we can name, and the decoder refuses bad
// structure without touching its output. The hand-made bodies below spell out the format
// as codec.hpp documents it (tags 0x01 null ... 0x0A binary).
#include "spool/codec.hpp"

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "spool/crc32c.hpp"

namespace emissions::detail::spool {
namespace {

using nlohmann::json;
using Bytes = std::vector<std::uint8_t>;

constexpr std::uint8_t kNull = 0x01;
constexpr std::uint8_t kTrue = 0x03;
constexpr std::uint8_t kInteger = 0x04;
constexpr std::uint8_t kString = 0x07;
constexpr std::uint8_t kArray = 0x08;
constexpr std::uint8_t kObject = 0x09;
constexpr std::uint8_t kBinary = 0x0A;

Event make_event(EventName name, json payload, json metadata = json::object(),
                 EventId id = EventId(0x0123456789ABCDEFull, 0xFEDCBA9876543210ull),
                 std::int64_t ns = 1'795'225'053'123'456'789LL) {
  Event e;
  e.name = name;
  e.payload = std::move(payload);
  e.metadata = std::move(metadata);
  e.id = id;
  e.emitted_at = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds(ns)));
  return e;
}

Bytes encode(std::span<const Event> events) {
  Bytes body;
  const Status s = encode_body(events, body);
  EXPECT_TRUE(s.ok()) << s.to_string();
  return body;
}

std::vector<Event> round_trip(std::span<const Event> events) {
  const Bytes body = encode(events);
  std::vector<Event> out;
  const Status s = decode_body(body, static_cast<std::uint32_t>(events.size()), out);
  EXPECT_TRUE(s.ok()) << s.to_string();
  // Canonical: encoding what was decoded gives the same bytes.
  EXPECT_EQ(encode(out), body);
  return out;
}

void expect_same(const Event& got, const Event& want) {
  EXPECT_EQ(got.name, want.name);
  EXPECT_EQ(got.id, want.id);
  EXPECT_EQ(got.emitted_at, want.emitted_at);
  EXPECT_EQ(got.payload, want.payload) << got.payload.dump() << " vs " << want.payload.dump();
  EXPECT_EQ(got.metadata, want.metadata);
}

// A whole frame as the log writes it: header, body, zero padding.
Bytes make_frame(const Bytes& body, std::uint32_t count, std::uint64_t seq = 7,
                 std::uint32_t flags = 0) {
  std::uint8_t header[kFrameHeaderSize];
  encode_frame_header(seq, body, count, flags, header);
  // Sized once, then filled: GCC 12's -O3 warns (falsely) about growing a vector by insert.
  Bytes frame(frame_size(body.size()), 0);
  std::copy(std::begin(header), std::end(header), frame.begin());
  std::copy(body.begin(), body.end(), frame.begin() + kFrameHeaderSize);
  return frame;
}

Bytes small_frame() {
  const Event e = make_event("ab", 1, json::object());  // a 33-byte body: 7 bytes of padding
  return make_frame(encode(std::span(&e, 1)), 1);
}

void put_u32(Bytes& b, std::size_t at, std::uint32_t v) {
  for (std::size_t i = 0; i < 4; ++i)
    b[at + i] = static_cast<std::uint8_t>(v >> (8 * i));
}
void reseal_header(Bytes& frame) {
  put_u32(frame, 28, crc32c(std::span<const std::uint8_t>(frame.data(), 28)));
}

void append_varint(Bytes& b, std::uint64_t v) {
  while (v >= 0x80) {
    b.push_back(static_cast<std::uint8_t>(v | 0x80));
    v >>= 7;
  }
  b.push_back(static_cast<std::uint8_t>(v));
}

// One record with a valid id, emitted_at and name around the given raw payload and
// metadata bytes; record_len is computed unless `record_len` overrides it.
Bytes raw_record(const Bytes& payload, const Bytes& metadata = {kObject, 0},
                 const std::string& name = "ev", std::int64_t record_len_delta = 0) {
  Bytes inner(16, 0xAB);
  inner.push_back(0x02);  // emitted_at = 1 (zigzag)
  append_varint(inner, name.size());
  inner.insert(inner.end(), name.begin(), name.end());
  inner.insert(inner.end(), payload.begin(), payload.end());
  inner.insert(inner.end(), metadata.begin(), metadata.end());
  Bytes record;
  append_varint(record, static_cast<std::uint64_t>(static_cast<std::int64_t>(inner.size()) +
                                                   record_len_delta));
  record.insert(record.end(), inner.begin(), inner.end());
  return record;
}

// decode_body fails, mentions `fragment`, and leaves `out` as it was.
void expect_rejected(const Bytes& body, std::uint32_t count, const std::string& fragment) {
  std::vector<Event> out;
  out.push_back(make_event("kept", 42));
  const Status s = decode_body(body, count, out);
  EXPECT_EQ(s.code(), Errc::invalid_argument) << s.to_string();
  EXPECT_NE(s.message().find(fragment), std::string::npos) << s.message();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].name, EventName("kept"));
  EXPECT_EQ(out[0].payload, 42);
}

json nested_arrays(std::size_t depth) {
  json value = 1;
  for (std::size_t i = 0; i < depth; ++i)
    value = json::array({std::move(value)});
  return value;
}

// ---- round trips -------------------------------------------------------------------------

TEST(SpoolCodecTest, RoundTripsEveryJsonTypeNested) {
  json payload = {
      {"null", nullptr},
      {"yes", true},
      {"no", false},
      {"int", -42},
      {"unsigned", 42u},
      {"double", 3.25},
      {"string", "plain"},
      {"empty_string", ""},
      {"unicode", "Gr\xc3\xbc\xc3\x9f\x65 \xe2\x82\xac \xf0\x9f\x98\x80 \xe6\x97\xa5\xe6\x9c\xac"},
      {"nul_inside", std::string("a\0b", 3)},
      {"array", {1, "two", 3.0, nullptr, json::array(), json::object()}},
      {"object", {{"inner", {{"deeper", {1, 2, {{"k", "v"}}}}}}}},
      {"binary", json::binary({1, 2, 3})},
      {"binary_subtype", json::binary({0xFF, 0x00}, 42)},
      {"\xc3\xa9t\xc3\xa9", "unicode key"},
  };
  const std::vector<Event> events = {make_event("all_types", payload, {{"source", "api"}})};
  const std::vector<Event> got = round_trip(events);
  ASSERT_EQ(got.size(), 1u);
  expect_same(got[0], events[0]);
  EXPECT_TRUE(got[0].payload["int"].is_number_integer());
  EXPECT_TRUE(got[0].payload["unsigned"].is_number_unsigned());
  EXPECT_TRUE(got[0].payload["double"].is_number_float());
  EXPECT_EQ(got[0].payload["nul_inside"].get_ref<const std::string&>().size(), 3u);
}

TEST(SpoolCodecTest, RoundTripsScalarPayloadsAtTheTop) {
  const std::vector<Event> events = {
      make_event("n", nullptr), make_event("t", true),          make_event("f", false),
      make_event("s", "text"),  make_event("a", json::array()), make_event("o", json::object())};
  const std::vector<Event> got = round_trip(events);
  ASSERT_EQ(got.size(), events.size());
  for (std::size_t i = 0; i < events.size(); ++i)
    expect_same(got[i], events[i]);
}

TEST(SpoolCodecTest, RoundTripsExtremeIntegersKeepingSignedness) {
  const std::vector<Event> events = {
      make_event("min", std::numeric_limits<std::int64_t>::min()),
      make_event("max", std::numeric_limits<std::int64_t>::max()),
      make_event("umax", std::numeric_limits<std::uint64_t>::max()),
      make_event("minus_one", -1),
      make_event("zero", 0),
      make_event("uzero", 0u),
  };
  const std::vector<Event> got = round_trip(events);
  ASSERT_EQ(got.size(), events.size());
  EXPECT_EQ(got[0].payload.get<std::int64_t>(), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(got[1].payload.get<std::int64_t>(), std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(got[2].payload.get<std::uint64_t>(), std::numeric_limits<std::uint64_t>::max());
  EXPECT_TRUE(got[2].payload.is_number_unsigned());
  EXPECT_EQ(got[3].payload.get<std::int64_t>(), -1);
  EXPECT_TRUE(got[4].payload.is_number_integer());
  EXPECT_TRUE(got[5].payload.is_number_unsigned());
}

TEST(SpoolCodecTest, RoundTripsDoublesBitForBitIncludingNegativeZeroInfinityAndNan) {
  const std::vector<double> values = {0.0,
                                      -0.0,
                                      1.5,
                                      -1e308,
                                      std::numeric_limits<double>::infinity(),
                                      -std::numeric_limits<double>::infinity(),
                                      std::numeric_limits<double>::quiet_NaN(),
                                      std::numeric_limits<double>::denorm_min(),
                                      std::numeric_limits<double>::max()};
  std::vector<Event> events;
  for (double v : values)
    events.push_back(make_event("d", v));
  const std::vector<Event> got = round_trip(events);
  ASSERT_EQ(got.size(), values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    ASSERT_TRUE(got[i].payload.is_number_float()) << i;
    const double d = got[i].payload.get<double>();
    EXPECT_EQ(std::bit_cast<std::uint64_t>(d), std::bit_cast<std::uint64_t>(values[i])) << i;
  }
  EXPECT_TRUE(std::signbit(got[1].payload.get<double>()));
  EXPECT_TRUE(std::isnan(got[6].payload.get<double>()));
}

TEST(SpoolCodecTest, RoundTripsBinaryWithAndWithoutSubtype) {
  const std::vector<Event> events = {
      make_event("plain", json::binary(json::binary_t::container_type{})),
      make_event("plain", json::binary({0, 1, 2, 255})),
      make_event("sub0", json::binary({9}, 0)),
      make_event("submax", json::binary({9}, std::numeric_limits<std::uint64_t>::max())),
  };
  const std::vector<Event> got = round_trip(events);
  ASSERT_EQ(got.size(), events.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    const auto& want = events[i].payload.get_binary();
    const auto& have = got[i].payload.get_binary();
    EXPECT_EQ(have, want) << i;  // compares bytes, has_subtype and subtype
    EXPECT_EQ(have.has_subtype(), want.has_subtype()) << i;
  }
  EXPECT_FALSE(got[0].payload.get_binary().has_subtype());
  EXPECT_TRUE(got[2].payload.get_binary().has_subtype());
  EXPECT_EQ(got[3].payload.get_binary().subtype(), std::numeric_limits<std::uint64_t>::max());
}

TEST(SpoolCodecTest, RoundTripsIdsTimestampsNamesAndMetadata) {
  const std::vector<Event> events = {
      make_event("order_created", 1, {{"tenant", "acme"}, {"n", {1, 2}}}, EventId(~0ull, ~0ull),
                 std::numeric_limits<std::int64_t>::max()),
      make_event("\xc3\xa9v\xc3\xa9nement", 2, json::object(), EventId(0, 0),
                 std::numeric_limits<std::int64_t>::min()),
      make_event("before_epoch", 3, {{"k", nullptr}}, EventId(1, 2), -1),
  };
  const std::vector<Event> got = round_trip(events);
  ASSERT_EQ(got.size(), events.size());
  for (std::size_t i = 0; i < events.size(); ++i)
    expect_same(got[i], events[i]);
}

TEST(SpoolCodecTest, RoundTripsManyEventsOfEverySize) {
  std::vector<Event> events;
  for (std::size_t i = 0; i < 2'000; ++i) {
    // Records from ~30 bytes to ~40 KB: 1-, 2- and 3-byte record_len varints.
    const std::size_t text = (i * 37) % (i % 100 == 0 ? 40'000 : 300);
    events.push_back(make_event(i % 2 == 0 ? "even" : "odd",
                                {{"i", i}, {"text", std::string(text, 'x')}},
                                {{"seq", static_cast<std::int64_t>(i) - 1000}}, EventId(i, i * 3),
                                static_cast<std::int64_t>(i) * 1'000'000));
  }
  const std::vector<Event> got = round_trip(events);
  ASSERT_EQ(got.size(), events.size());
  for (std::size_t i = 0; i < events.size(); ++i)
    expect_same(got[i], events[i]);
}

TEST(SpoolCodecTest, EncodeAppendsToTheBodyAndDecodeAppendsToOut) {
  const std::vector<Event> first = {make_event("one", 1)};
  const std::vector<Event> second = {make_event("two", 2), make_event("three", 3)};
  Bytes body;
  ASSERT_TRUE(encode_body(first, body).ok());
  const std::size_t first_size = body.size();
  ASSERT_TRUE(encode_body(second, body).ok());
  std::vector<Event> out = {make_event("already", 0)};
  ASSERT_TRUE(decode_body(body, 3, out).ok());
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].name, EventName("already"));
  expect_same(out[1], first[0]);
  expect_same(out[3], second[1]);
  std::vector<Event> only_first;
  ASSERT_TRUE(decode_body(std::span(body).first(first_size), 1, only_first).ok());
  expect_same(only_first[0], first[0]);
}

TEST(SpoolCodecTest, EncodesNullMetadataAsTheEmptyObject) {
  Event e = make_event("no_metadata", 1);
  e.metadata = nullptr;  // a default-constructed Event's
  Bytes body;
  ASSERT_TRUE(encode_body(std::span(&e, 1), body).ok());
  std::vector<Event> out;
  ASSERT_TRUE(decode_body(body, 1, out).ok());
  EXPECT_EQ(out[0].metadata, json::object());
}

TEST(SpoolCodecTest, EncodesAnEmptyListAsAnEmptyBody) {
  Bytes body;
  ASSERT_TRUE(encode_body({}, body).ok());
  EXPECT_TRUE(body.empty());
  std::vector<Event> out;
  EXPECT_TRUE(decode_body(body, 0, out).ok());
  EXPECT_TRUE(out.empty());
}

TEST(SpoolCodecTest, IntegerEventsTakeAboutFortyFiveBytes) {
  // The benchmark's shape (bench/micro/spool_codec_bench.cpp): id, a current timestamp,
  // a 13-byte name, a small integer payload and empty metadata.
  const Event e = make_event("order_created", 1234);
  const Bytes body = encode(std::span(&e, 1));
  EXPECT_EQ(body.size(), 1u + 16 + 9 + 1 + 13 + 3 + 2);
}

// ---- encoder refusals --------------------------------------------------------------------

TEST(SpoolCodecTest, EncodeAcceptsNestingUpToMaxDepth) {
  const std::vector<Event> events = {
      make_event("deep", nested_arrays(kMaxJsonDepth), {{"m", nested_arrays(kMaxJsonDepth - 1)}})};
  const std::vector<Event> got = round_trip(events);
  ASSERT_EQ(got.size(), 1u);
  expect_same(got[0], events[0]);
}

TEST(SpoolCodecTest, EncodeRefusesNestingDeeperThanMaxDepthNamingTheEvent) {
  const std::vector<Event> events = {make_event("ok", 1), make_event("ok", 2),
                                     make_event("too_deep", nested_arrays(kMaxJsonDepth + 1))};
  Bytes body = {1, 2, 3};
  const Status s = encode_body(events, body);
  EXPECT_EQ(s.code(), Errc::invalid_argument);
  EXPECT_NE(s.message().find("event 2"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("payload"), std::string::npos) << s.message();
  EXPECT_EQ(body, (Bytes{1, 2, 3}));  // what it held before, nothing more

  const std::vector<Event> deep_metadata = {
      make_event("meta", 1, {{"m", nested_arrays(kMaxJsonDepth)}})};
  const Status m = encode_body(deep_metadata, body);
  EXPECT_EQ(m.code(), Errc::invalid_argument);
  EXPECT_NE(m.message().find("event 0"), std::string::npos) << m.message();
  EXPECT_NE(m.message().find("metadata"), std::string::npos) << m.message();
  EXPECT_EQ(body.size(), 3u);
}

TEST(SpoolCodecTest, EncodeRefusesAnEmptyNameAndNonObjectMetadata) {
  Bytes body;
  const std::vector<Event> unnamed = {make_event("x", 1), make_event(EventName(), 1)};
  const Status s = encode_body(unnamed, body);
  EXPECT_EQ(s.code(), Errc::invalid_argument);
  EXPECT_NE(s.message().find("event 1"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("name"), std::string::npos) << s.message();
  EXPECT_TRUE(body.empty());

  const std::vector<Event> array_metadata = {make_event("x", 1, json::array({1}))};
  const Status m = encode_body(array_metadata, body);
  EXPECT_EQ(m.code(), Errc::invalid_argument);
  EXPECT_NE(m.message().find("metadata"), std::string::npos) << m.message();
  EXPECT_TRUE(body.empty());
}

TEST(SpoolCodecTest, EncodeRefusesABodyOverMaxBodySize) {
  Bytes body(kMaxBodySize - 20, 0);  // what the caller already had, near the limit
  const std::vector<Event> events = {make_event("order_created", 1)};
  const Status s = encode_body(events, body);
  EXPECT_EQ(s.code(), Errc::invalid_argument);
  EXPECT_NE(s.message().find("kMaxBodySize"), std::string::npos) << s.message();
  EXPECT_EQ(body.size(), kMaxBodySize - 20);
}

// ---- decoder refusals --------------------------------------------------------------------

TEST(SpoolCodecTest, DecodeAcceptsTheHandMadeRecordTheTestsBuildOn) {
  std::vector<Event> out;
  const Status s = decode_body(raw_record({kInteger, 0x54}), 1, out);  // 42
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(out[0].payload, 42);
  EXPECT_EQ(out[0].name, EventName("ev"));
}

TEST(SpoolCodecTest, DecodeRejectsTrailingBytes) {
  const std::vector<Event> events = {make_event("a", 1), make_event("b", 2)};
  Bytes body = encode(events);
  body.push_back(0);
  expect_rejected(body, 2, "after the last");
}

TEST(SpoolCodecTest, DecodeRejectsAnEventCountThatDiffersFromTheRecords) {
  // Records long enough that a count of 3 passes the cheap size check.
  const std::vector<Event> events = {make_event("a", "a text payload of some length"),
                                     make_event("b", "a text payload of some length")};
  const Bytes body = encode(events);
  expect_rejected(body, 1, "after the last");
  expect_rejected(body, 3, "record 2");
  expect_rejected(body, 0, "after the last");
  expect_rejected(body, std::numeric_limits<std::uint32_t>::max(), "cannot fit");
  expect_rejected({}, 1, "cannot fit");
}

TEST(SpoolCodecTest, DecodeRejectsBadTags) {
  for (int t : {0x00, 0x0B, 0x7F, 0xFF}) {
    const auto tag = static_cast<std::uint8_t>(t);
    expect_rejected(raw_record({tag}), 1, "bad tag " + std::to_string(t));
  }
  expect_rejected(raw_record({kArray, 1, 0x00}), 1, "bad tag 0");
  expect_rejected(raw_record({kNull}, {0x20}), 1, "metadata: bad tag 32");
}

TEST(SpoolCodecTest, DecodeRejectsOverlongAndOverflowingVarints) {
  // Zero in two bytes (not canonical).
  expect_rejected(raw_record({kInteger, 0x80, 0x00}), 1, "overlong");
  // Eleven bytes; and ten whose last carries more than the 64th bit.
  expect_rejected(
      raw_record({kInteger, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x81, 0x00}), 1,
      "overflows");
  expect_rejected(
      raw_record({kInteger, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02}), 1,
      "overflows");
  // The largest value is fine.
  std::vector<Event> out;
  EXPECT_TRUE(
      decode_body(raw_record({0x05, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}), 1,
                  out)
          .ok());
  // A record_len written in two bytes when one would do.
  Bytes record = raw_record({kNull});
  ASSERT_LT(record[0], 0x80);
  record.insert(record.begin() + 1, 0x00);
  record[0] |= 0x80;
  expect_rejected(record, 1, "record_len: varint is overlong");
  // A varint cut by the end of the record.
  expect_rejected(raw_record({kNull}, {kObject, 0x80}), 1, "metadata: varint runs past the end");
}

TEST(SpoolCodecTest, DecodeRejectsLengthsAndCountsPastTheEnd) {
  expect_rejected(raw_record({kString, 0x05, 'a', 'b'}), 1, "string length 5 runs past");
  expect_rejected(raw_record({kBinary, 0x05, 1, 2}), 1, "binary length 5 runs past");
  expect_rejected(raw_record({kArray, 0x7F, kNull}), 1, "array count 127 runs past");
  expect_rejected(raw_record({kObject, 0x7F}), 1, "object count 127 runs past");
  // Counts near 2^64 are refused before anything is reserved.
  expect_rejected(raw_record({kArray, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}),
                  1, "array count");
  // record_len past the body.
  Bytes record = raw_record({kNull});
  record.pop_back();
  expect_rejected(record, 1, "record_len");
  // A name longer than the record.
  Bytes name_past = raw_record({kNull}, {kObject, 0}, "n");
  name_past[1 + 16 + 1] = 0x40;
  expect_rejected(name_past, 1, "name: length 64 runs past");
}

TEST(SpoolCodecTest, DecodeRejectsAnEmptyName) {
  expect_rejected(raw_record({kString, 1, 'x'}, {kObject, 0}, ""), 1, "name: is empty");
}

TEST(SpoolCodecTest, DecodeRejectsMetadataThatIsNotAnObject) {
  expect_rejected(raw_record({kNull}, {kNull}), 1, "metadata: is a null");
  expect_rejected(raw_record({kNull}, {kArray, 0}), 1, "metadata: is a array");
}

TEST(SpoolCodecTest, DecodeRejectsARecordLenThatDiffersFromTheRecord) {
  // One byte too long: the record holds an extra byte after its metadata.
  Bytes longer = raw_record({kNull}, {kObject, 0}, "e", 1);
  longer.push_back(0);
  expect_rejected(longer, 1, "record_len");
  // One byte too short: the metadata runs past the record.
  Bytes shorter = raw_record({kNull}, {kObject, 0}, "e", -1);
  shorter.push_back(0);  // so that the body still holds the bytes
  expect_rejected(shorter, 1, "metadata");
}

// `depth` arrays of one item inside one another around a null: [[...[null]...]].
Bytes raw_nested_arrays(std::size_t depth) {
  Bytes out;
  for (std::size_t i = 0; i < depth; ++i)
    out.insert(out.end(), {kArray, 1});
  out.push_back(kNull);
  return out;
}

TEST(SpoolCodecTest, DecodeRejectsNestingDeeperThanMaxDepth) {
  expect_rejected(raw_record(raw_nested_arrays(kMaxJsonDepth + 1)), 1, "deeper than kMaxJsonDepth");
  std::vector<Event> out;
  EXPECT_TRUE(decode_body(raw_record(raw_nested_arrays(kMaxJsonDepth)), 1, out).ok());
}

TEST(SpoolCodecTest, DecodeRejectsObjectKeysOutOfOrderOrRepeated) {
  const Bytes in_order = {kObject, 2, 1, 'a', kNull, 1, 'b', kTrue};
  std::vector<Event> out;
  ASSERT_TRUE(decode_body(raw_record(in_order), 1, out).ok());
  EXPECT_EQ(out[0].payload, (json{{"a", nullptr}, {"b", true}}));
  expect_rejected(raw_record({kObject, 2, 1, 'b', kNull, 1, 'a', kTrue}), 1, "out of order");
  expect_rejected(raw_record({kObject, 2, 1, 'a', kNull, 1, 'a', kTrue}), 1, "repeated");
}

TEST(SpoolCodecTest, DecodeRejectsABinarySubtypeFlagOtherThanZeroOrOne) {
  expect_rejected(raw_record({kBinary, 1, 7, 2}), 1, "subtype flag");
  expect_rejected(raw_record({kBinary, 1, 7, 1, 0, 0}), 1, "8 bytes needed");
}

TEST(SpoolCodecTest, DecodeRejectsEveryTruncationOfABodyAndKeepsOut) {
  const std::vector<Event> events = {
      make_event("a", {{"k", {1, 2.5, "s", json::binary({1}, 3)}}}, {{"m", true}}),
      make_event("b", "text")};
  const Bytes body = encode(events);
  for (std::size_t len = 0; len < body.size(); ++len) {
    std::vector<Event> out = {make_event("kept", 1)};
    const Status s = decode_body(std::span(body).first(len), 2, out);
    EXPECT_EQ(s.code(), Errc::invalid_argument) << len;
    ASSERT_EQ(out.size(), 1u) << len;
    EXPECT_EQ(out[0].name, EventName("kept"));
  }
}

TEST(SpoolCodecTest, DecodeLeavesOutUnchangedWhenALaterRecordIsBad) {
  const std::vector<Event> good = {make_event("good", 1), make_event("good", 2)};
  Bytes body = encode(good);
  const Bytes bad = raw_record({0x00});
  body.insert(body.end(), bad.begin(), bad.end());
  std::vector<Event> out = {make_event("kept", 1), make_event("kept", 2)};
  const Status s = decode_body(body, 3, out);
  EXPECT_EQ(s.code(), Errc::invalid_argument);
  EXPECT_NE(s.message().find("record 2 of 3: payload: bad tag 0"), std::string::npos)
      << s.message();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].payload, 2);
  EXPECT_EQ(out[1].name, EventName("kept"));
}

// ---- frames ------------------------------------------------------------------------------

TEST(SpoolCodecTest, CheckFrameAcceptsAWholeFrameAndFillsTheHeader) {
  const std::vector<Event> events = {make_event("a", 1), make_event("b", "two")};
  const Bytes body = encode(events);
  Bytes frame = make_frame(body, 2, 99, 5);
  ASSERT_EQ(frame.size() % 8, 0u);
  FrameHeader header;
  EXPECT_EQ(check_frame(frame, header), FrameCheck::ok);
  EXPECT_EQ(header.body_len, body.size());
  EXPECT_EQ(header.seq, 99u);
  EXPECT_EQ(header.event_count, 2u);
  EXPECT_EQ(header.body_crc, crc32c(body));
  EXPECT_EQ(header.flags, 5u);
  // More readable bytes after the frame change nothing.
  frame.resize(frame.size() + 100, 0xEE);
  EXPECT_EQ(check_frame(frame, header), FrameCheck::ok);
  std::vector<Event> out;
  ASSERT_TRUE(
      decode_body(std::span(frame).subspan(kFrameHeaderSize, header.body_len), 2, out).ok());
  expect_same(out[1], events[1]);
}

TEST(SpoolCodecTest, CheckFrameAcceptsAnEmptyBody) {
  const Bytes frame = make_frame({}, 0);
  EXPECT_EQ(frame.size(), kFrameHeaderSize);
  FrameHeader header;
  EXPECT_EQ(check_frame(frame, header), FrameCheck::ok);
  EXPECT_EQ(header.body_len, 0u);
}

TEST(SpoolCodecTest, CheckFrameReportsEndForZeroBytesOfAnyLength) {
  FrameHeader header;
  header.seq = 123;
  for (std::size_t len : {0u, 1u, 4u, 31u, 32u, 4096u}) {
    const Bytes zeros(len, 0);
    EXPECT_EQ(check_frame(zeros, header), FrameCheck::end) << len;
  }
  // A zero magic is the end even when later bytes are not zero (a header torn mid-write).
  Bytes zero_magic = small_frame();
  std::memset(zero_magic.data(), 0, 4);
  EXPECT_EQ(check_frame(zero_magic, header), FrameCheck::end);
  EXPECT_EQ(header.seq, 123u);  // not touched
}

TEST(SpoolCodecTest, CheckFrameReportsTornForAShortNonZeroHeader) {
  FrameHeader header;
  Bytes some(10, 0);
  some[9] = 1;
  EXPECT_EQ(check_frame(some, header), FrameCheck::torn);
}

TEST(SpoolCodecTest, CheckFrameReportsTornWhenTheBodyRunsPastTheBytes) {
  const Bytes frame = small_frame();
  FrameHeader header;
  const auto cut = std::span(frame).first(frame.size() - 1);
  EXPECT_EQ(check_frame(cut, header), FrameCheck::torn);
  EXPECT_EQ(header.seq, 7u);
  EXPECT_EQ(frame_size(header.body_len), frame.size());
}

TEST(SpoolCodecTest, EveryTruncationOfAValidFrameIsTornOrEndNeverOk) {
  const Bytes frame = small_frame();
  for (std::size_t len = 0; len < frame.size(); ++len) {
    FrameHeader header;
    const FrameCheck check = check_frame(std::span(frame).first(len), header);
    EXPECT_TRUE(check == FrameCheck::torn || check == FrameCheck::end) << len;
    EXPECT_EQ(check == FrameCheck::end, len == 0) << len;
  }
}

TEST(SpoolCodecTest, CheckFrameReportsCorruptForEachDamagedHeaderField) {
  const Bytes good = small_frame();
  struct Field {
    const char* name;
    std::size_t offset;
  };
  for (const Field field :
       {Field{"magic", 0}, Field{"body_len", 4}, Field{"seq", 8}, Field{"event_count", 16},
        Field{"body_crc", 20}, Field{"flags", 24}, Field{"header_crc", 28}}) {
    Bytes frame = good;
    frame[field.offset] ^= 0x01;
    FrameHeader header;
    header.seq = 555;
    EXPECT_EQ(check_frame(frame, header), FrameCheck::corrupt) << field.name;
    EXPECT_EQ(header.seq, 555u) << field.name;  // a header that fails its checksum is not read
  }
}

TEST(SpoolCodecTest, CheckFrameReportsCorruptForAWrongMagicEvenWithAValidChecksum) {
  Bytes frame = small_frame();
  put_u32(frame, 0, 0x46434D46);
  reseal_header(frame);
  FrameHeader header;
  EXPECT_EQ(check_frame(frame, header), FrameCheck::corrupt);
}

TEST(SpoolCodecTest, CheckFrameReportsCorruptForABodyLenOverTheLimit) {
  Bytes frame = small_frame();
  put_u32(frame, 4, kMaxBodySize + 1);
  reseal_header(frame);
  FrameHeader header;
  EXPECT_EQ(check_frame(frame, header), FrameCheck::corrupt);
  // At the limit the header is fine: the frame is only torn (a 256 MiB body not given).
  put_u32(frame, 4, kMaxBodySize);
  reseal_header(frame);
  EXPECT_EQ(check_frame(frame, header), FrameCheck::torn);
}

TEST(SpoolCodecTest, CheckFrameReportsCorruptForADamagedBodyAndFillsTheHeader) {
  const Bytes good = small_frame();
  FrameHeader expected;
  ASSERT_EQ(check_frame(good, expected), FrameCheck::ok);
  for (std::size_t at = kFrameHeaderSize; at < kFrameHeaderSize + expected.body_len; ++at) {
    Bytes frame = good;
    frame[at] ^= 0x80;
    FrameHeader header;
    EXPECT_EQ(check_frame(frame, header), FrameCheck::corrupt) << at;
    EXPECT_EQ(header.seq, expected.seq);
    EXPECT_EQ(header.body_len, expected.body_len);
  }
}

TEST(SpoolCodecTest, CheckFrameReportsCorruptForNonZeroPadding) {
  Bytes frame = small_frame();
  FrameHeader header;
  ASSERT_EQ(check_frame(frame, header), FrameCheck::ok);
  ASSERT_LT(kFrameHeaderSize + header.body_len, frame.size()) << "the test needs padding";
  frame.back() = 1;
  EXPECT_EQ(check_frame(frame, header), FrameCheck::corrupt);
}

TEST(SpoolCodecTest, AFlippedBitAnywhereInAFrameIsNeverOk) {
  const Bytes good = small_frame();
  for (std::size_t bit = 0; bit < good.size() * 8; ++bit) {
    Bytes frame = good;
    frame[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    FrameHeader header;
    EXPECT_NE(check_frame(frame, header), FrameCheck::ok) << "bit " << bit;
  }
}

// ---- segment header ------------------------------------------------------------------------

TEST(SpoolCodecTest, SegmentHeaderRoundTrips) {
  for (const SegmentHeader in : {SegmentHeader{0, 0}, SegmentHeader{42, 1'795'225'053'123'456'789},
                                 SegmentHeader{~0ull, std::numeric_limits<std::int64_t>::min()}}) {
    std::uint8_t bytes[kSegmentHeaderSize];
    encode_segment_header(in, bytes);
    EXPECT_EQ(std::memcmp(bytes, "EMSSPOOL", 8), 0);
    SegmentHeader out;
    const Status s = decode_segment_header(bytes, out);
    ASSERT_TRUE(s.ok()) << s.to_string();
    EXPECT_EQ(out.base_seq, in.base_seq);
    EXPECT_EQ(out.created_at_ns, in.created_at_ns);
  }
}

// decode_segment_header fails naming `fragment` and leaves `out` alone.
void expect_segment_rejected(std::span<const std::uint8_t> bytes, const std::string& fragment) {
  SegmentHeader out{11, 22};
  const Status s = decode_segment_header(bytes, out);
  EXPECT_EQ(s.code(), Errc::invalid_argument);
  EXPECT_NE(s.message().find(fragment), std::string::npos) << s.message();
  EXPECT_EQ(out.base_seq, 11u);
  EXPECT_EQ(out.created_at_ns, 22);
}

Bytes resealed_segment(std::size_t at, std::uint32_t value) {
  std::uint8_t raw[kSegmentHeaderSize];
  encode_segment_header(SegmentHeader{5, 6}, raw);
  Bytes bytes(std::begin(raw), std::end(raw));
  put_u32(bytes, at, value);
  put_u32(bytes, 60, crc32c(std::span<const std::uint8_t>(bytes.data(), 60)));
  return bytes;
}

TEST(SpoolCodecTest, SegmentHeaderDetectsEachCorruption) {
  std::uint8_t raw[kSegmentHeaderSize];
  encode_segment_header(SegmentHeader{5, 6}, raw);
  const Bytes good(std::begin(raw), std::end(raw));
  expect_segment_rejected(std::span(good).first(63), "63 bytes");
  expect_segment_rejected({}, "0 bytes");
  Bytes magic = good;
  magic[0] = 'X';
  expect_segment_rejected(magic, "magic");
  Bytes checksum = good;
  checksum[20] ^= 1;
  expect_segment_rejected(checksum, "checksum");
  expect_segment_rejected(resealed_segment(8, 2), "version 2");
  expect_segment_rejected(resealed_segment(12, 128), "header size 128");
  expect_segment_rejected(resealed_segment(40, 1), "reserved");
}

TEST(SpoolCodecTest, SegmentHeaderRejectsEveryFlippedBit) {
  std::uint8_t raw[kSegmentHeaderSize];
  encode_segment_header(SegmentHeader{5, 6}, raw);
  for (std::size_t bit = 0; bit < kSegmentHeaderSize * 8; ++bit) {
    Bytes bytes(std::begin(raw), std::end(raw));
    bytes[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    SegmentHeader out;
    EXPECT_FALSE(decode_segment_header(bytes, out).ok()) << "bit " << bit;
  }
}

}  // namespace
}  // namespace emissions::detail::spool
