// The KafkaSource's envelope decoder: its scan of serialize()'s shape gives exactly what
// parse_envelope gives, takes nothing parse_envelope refuses, and leaves every other shape
// to it.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "emissions/event.hpp"
#include "envelope_reader.hpp"
#include "events/envelope_parse.hpp"

namespace {

using emissions::Event;
using emissions::detail::parse_envelope;
using emissions::detail::kafka::read_envelope;
using emissions::detail::kafka::read_serialized_envelope;
using nlohmann::json;

Event make_event(std::string name, json payload, json metadata,
                 std::chrono::system_clock::time_point at = std::chrono::system_clock::now()) {
  Event event;
  event.name = emissions::EventName(name);
  event.payload = std::move(payload);
  event.metadata = std::move(metadata);
  event.emitted_at = at;
  event.id = emissions::EventId::generate(at);
  return event;
}

void expect_same(const Event& a, const Event& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.emitted_at, b.emitted_at);
  EXPECT_EQ(a.payload, b.payload);
  EXPECT_EQ(a.payload.type(), b.payload.type());
  EXPECT_EQ(a.metadata, b.metadata);
}

// parse_envelope's result, with what it throws (a number out of range) as a refusal.
std::optional<Event> parse_or_refuse(const std::string& text, std::string& error) {
  try {
    return parse_envelope(text, error);
  } catch (const nlohmann::json::exception& e) {
    error = std::string("not valid JSON: ") + e.what();
    return std::nullopt;
  }
}

// What the source decodes for `text`: the same as parse_envelope, accepted or refused.
void expect_as_parse_envelope(const std::string& text) {
  std::string parse_error;
  const std::optional<Event> expected = parse_or_refuse(text, parse_error);
  std::string error;
  const std::optional<Event> got = read_envelope(text, error);
  ASSERT_EQ(got.has_value(), expected.has_value()) << text;
  if (expected) {
    expect_same(*got, *expected);
  } else {
    EXPECT_EQ(error, parse_error) << text;
    EXPECT_FALSE(read_serialized_envelope(text))
        << "the scan took what parse_envelope refuses: " << text;
  }
}

TEST(KafkaEnvelopeReader, SerializedEventsAreReadByTheScanAsParseEnvelopeReadsThem) {
  const auto at = std::chrono::sys_days(std::chrono::year{2026} / 11 / 21) + std::chrono::hours(1) +
                  std::chrono::microseconds(123'456);
  const std::vector<Event> events = {
      make_event("order_created", {{"order_id", 7}, {"sku", "SKU-12345"}, {"amount", 4200}},
                 json::object()),
      make_event("e", nullptr, json::object()),
      make_event("e", 1.5, {{"trace", "abc"}}),
      make_event("e", json::array({1, "two", nullptr, true, -3, 18446744073709551615ULL}),
                 {{"nested", {{"a", {1, 2, {{"b", "}"}}}}, {"q", "\"{[\\"}}}, {"empty", {}}}),
      make_event("with space and ~!@#$%^&*()", "a string payload", json::object()),
      make_event("e", {{"unicode", "h\u00e9llo \u2603 \U0001F600"}, {"escapes", "a\nb\t\"c\"\\"}},
                 {{"kafka", {{"topic", "old"}}}}),
      make_event("e", json::object(), json::object(), at),
      make_event("e", json::object(), json::object(),
                 std::chrono::sys_days(std::chrono::year{1900} / 1 / 1)),
      make_event("e", json::object(), json::object(),
                 std::chrono::sys_days(std::chrono::year{2199} / 12 / 31) + std::chrono::hours(23) +
                     std::chrono::minutes(59) + std::chrono::seconds(59) +
                     std::chrono::microseconds(999'999)),
  };
  for (const Event& event : events) {
    const std::string text = emissions::serialize(event);
    const std::optional<Event> scanned = read_serialized_envelope(text);
    ASSERT_TRUE(scanned) << text;
    std::string error;
    const std::optional<Event> parsed = parse_envelope(text, error);
    ASSERT_TRUE(parsed) << error;
    expect_same(*scanned, *parsed);
    expect_as_parse_envelope(text);
  }
}

TEST(KafkaEnvelopeReader, OtherValidShapesAreLeftToParseEnvelope) {
  const std::string id = emissions::EventId::generate().str();
  const std::vector<std::string> texts = {
      // whitespace
      R"({ "emitted_at":"2026-11-21T01:37:33.123456Z","id":")" + id +
          R"(","metadata":{},"name":"e","payload":1})",
      R"({"emitted_at":"2026-11-21T01:37:33.123456Z","id":")" + id +
          R"(","metadata":{},"name":"e","payload":1} )",
      // another key order
      R"({"id":")" + id +
          R"(","emitted_at":"2026-11-21T01:37:33.123456Z","metadata":{},"name":"e","payload":1})",
      // other fraction lengths, none, a five-digit year (out of range)
      R"({"emitted_at":"2026-11-21T01:37:33.123456789Z","id":")" + id +
          R"(","metadata":{},"name":"e","payload":1})",
      R"({"emitted_at":"2026-11-21T01:37:33.1Z","id":")" + id +
          R"(","metadata":{},"name":"e","payload":1})",
      R"({"emitted_at":"2026-11-21T01:37:33Z","id":")" + id +
          R"(","metadata":{},"name":"e","payload":1})",
      R"({"emitted_at":"12026-11-21T01:37:33.123456Z","id":")" + id +
          R"(","metadata":{},"name":"e","payload":1})",
      // a name with an escape, or with non-ASCII text
      R"({"emitted_at":"2026-11-21T01:37:33.123456Z","id":")" + id +
          R"(","metadata":{},"name":"a\"b","payload":1})",
      R"({"emitted_at":"2026-11-21T01:37:33.123456Z","id":")" + id +
          R"(","metadata":{},"name":"\u00e9t\u00e9","payload":1})",
      "{\"emitted_at\":\"2026-11-21T01:37:33.123456Z\",\"id\":\"" + id +
          "\",\"metadata\":{},\"name\":\"\xc3\xa9t\xc3\xa9\",\"payload\":1}",
      // an escaped id
      R"({"emitted_at":"2026-11-21T01:37:33.123456Z","id":"\u0030)" + id.substr(1) +
          R"(","metadata":{},"name":"e","payload":1})",
      // duplicate keys
      R"({"emitted_at":"2026-11-21T01:37:33.123456Z","id":")" + id +
          R"(","metadata":{},"name":"e","payload":1,"payload":2})",
      R"({"emitted_at":"2026-11-21T01:37:33.123456Z","id":")" + id +
          R"(","metadata":{"a":1,"a":2},"name":"e","payload":{"b":1,"b":[]}})",
  };
  for (const std::string& text : texts) {
    expect_as_parse_envelope(text);
  }
}

TEST(KafkaEnvelopeReader, WhatParseEnvelopeRefusesTheScanRefuses) {
  const std::string id = emissions::EventId::generate().str();
  const std::string head = R"({"emitted_at":"2026-11-21T01:37:33.123456Z","id":")" + id + R"(",)";
  const std::vector<std::string> texts = {
      "",
      "{}",
      "[]",
      "null",
      head + R"("metadata":{},"name":"e","payload":1}x)",
      head + R"("metadata":{},"name":"e","payload":1}})",
      head + R"("metadata":{},"name":"e","payload":})",
      head + R"("metadata":{},"name":"e","payload":{"a":1})",
      head + R"("metadata":{},"name":"e","payload":[1,})",
      head + R"("metadata":{},"name":"e","payload":1,"extra":2})",
      head + R"("metadata":{},"name":"","payload":1})",
      head + R"("metadata":{},"name":7,"payload":1})",
      head + R"("metadata":[],"name":"e","payload":1})",
      head + R"("metadata":null,"name":"e","payload":1})",
      head + R"("metadata":{"a":},"name":"e","payload":1})",
      head + R"("metadata":{"a":"}"},"name":"e","payload":1)",
      head + R"("metadata":{"a":"\"},"name":"e","payload":1})",
      head + "\"metadata\":{},\"name\":\"a\x01\",\"payload\":1}",
      head + "\"metadata\":{},\"name\":\"e\",\"payload\":\"\xff\"}",
      head + R"("metadata":{},"name":"e","payload":1e999})",
      head + R"("metadata":{},"name":"e","payload":01})",
      head + R"("metadata":{},"name":"e"})",
      head + R"("metadata":{},"name":"e","payload":1)",
      head.substr(0, head.size() - 5),
      R"({"emitted_at":"2026-02-30T01:37:33.123456Z","id":")" + id +
          R"(","metadata":{},"name":"e","payload":1})",
      R"({"emitted_at":"2026-11-21T24:00:00.000000Z","id":")" + id +
          R"(","metadata":{},"name":"e","payload":1})",
      R"({"emitted_at":"2026-11-21T01:60:00.000000Z","id":")" + id +
          R"(","metadata":{},"name":"e","payload":1})",
      R"({"emitted_at":"2026-11-21T01:37:33.123456","id":")" + id +
          R"(","metadata":{},"name":"e","payload":1})",
      R"({"emitted_at":"2026-11-21T01:37:33.123456Z","id":"not-a-uuid-not-a-uuid-not-a-uuid-xx","metadata":{},"name":"e","payload":1})",
      R"({"emitted_at":"2026-11-21T01:37:33.123456Z","id":")" + id.substr(0, 35) +
          R"(","metadata":{},"name":"e","payload":1})",
  };
  for (const std::string& text : texts) {
    std::string error;
    EXPECT_FALSE(parse_or_refuse(text, error)) << text;
    expect_as_parse_envelope(text);
  }
}

TEST(KafkaEnvelopeReader, MutatedEnvelopesAreReadAsParseEnvelopeReadsThem) {
  // Serialized envelopes with one byte changed, removed or added, anywhere: whatever the
  // scan takes, parse_envelope takes too and reads the same way.
  const std::vector<Event> events = {
      make_event("order_created", {{"order_id", 7}, {"sku", "SKU-12345"}, {"amount", 42.5}},
                 json::object()),
      make_event("e", json::array({1, "x"}), {{"trace", "a\"b"}, {"n", {{"m", nullptr}}}}),
  };
  constexpr std::string_view kBytes =
      "{}[]\",:0123456789.-eZT \\\x01\xc3"
      "ax";
  std::mt19937 random(20261202);
  int scanned = 0;
  int left = 0;
  for (const Event& event : events) {
    const std::string text = emissions::serialize(event);
    for (int round = 0; round < 3'000; ++round) {
      std::string mutated = text;
      const std::size_t at = random() % mutated.size();
      const char byte = kBytes[random() % kBytes.size()];
      switch (random() % 3) {
        case 0:
          mutated[at] = byte;
          break;
        case 1:
          mutated.erase(at, 1);
          break;
        default:
          mutated.insert(at, 1, byte);
          break;
      }
      expect_as_parse_envelope(mutated);
      if (::testing::Test::HasFailure()) return;
      ++(read_serialized_envelope(mutated) ? scanned : left);
    }
  }
  EXPECT_GT(scanned, 100) << "mutations the scan took (and parse_envelope read the same)";
  EXPECT_GT(left, 100) << "mutations the scan refused or left to parse_envelope";
}

TEST(KafkaEnvelopeReader, ANumberOutOfRangeIsRefusedAsNotValidJson) {
  // parse_envelope throws nlohmann's out_of_range for it; the source must count the message
  // as malformed, not lose its batch to the exception.
  const std::string text = R"({"emitted_at":"2026-11-21T01:37:33.123456Z","id":")" +
                           emissions::EventId::generate().str() +
                           R"(","metadata":{},"name":"e","payload":1e999})";
  std::string error;
  std::optional<Event> event;
  EXPECT_NO_THROW(event = read_envelope(text, error));
  EXPECT_FALSE(event);
  EXPECT_NE(error.find("not valid JSON"), std::string::npos) << error;
}

}  // namespace

namespace {
const std::string kReviewFrame =
    R"({"emitted_at":"2026-11-21T01:00:00.123456Z","id":"01936b2a-7c00-7000-8000-000000000000",)"
    R"("metadata":{},"name":"e","payload":)";
}  // namespace

// Found in review: the scan parses the payload as an input of its own, where nlohmann
// skips a UTF-8 byte-order mark at the start and ends the input at a NUL byte; parse_envelope
// parses the whole text and refuses both. The scan leaves both to it.
TEST(KafkaEnvelopeReader,
     APayloadAfterAByteOrderMarkOrBeforeANulIsRefusedAsParseEnvelopeRefusesIt) {
  for (const std::string& text : {kReviewFrame + "\xEF\xBB\xBF" + "1}",
                                  kReviewFrame + std::string("{\"a\":1}\0,\"x\":2}", 15)}) {
    SCOPED_TRACE(text);
    std::string error;
    EXPECT_FALSE(parse_envelope(text, error).has_value()) << "parse_envelope accepts it";
    EXPECT_FALSE(read_serialized_envelope(text).has_value()) << "the scan accepts it";
    expect_as_parse_envelope(text);
  }
}

// Found in review (core, older than the scan): nlohmann's lexer ends the input at a NUL byte, so
// parse_envelope itself takes an envelope followed by a NUL and any garbage.
TEST(KafkaEnvelopeReader, ParseEnvelopeRefusesTrailingGarbageAfterANul) {
  const std::string text = kReviewFrame + std::string("1}\0garbage", 10);
  std::string error;
  EXPECT_FALSE(parse_envelope(text, error).has_value()) << "parse_envelope accepts it";
}

// Review: a wider mutation search (NUL, a BOM, comments, several edits at once), counting
// what the scan takes that parse_envelope refuses or reads differently.
TEST(KafkaEnvelopeReader, WiderMutationsFindNoOtherDifference) {
  const std::vector<Event> events = {
      make_event("order_created", {{"order_id", 7}, {"sku", "SKU-12345"}, {"amount", 42.5}},
                 json::object()),
      make_event("e", json::array({1, "x"}), {{"trace", "a\"b"}, {"n", {{"m", nullptr}}}}),
      make_event("e", "str", {{"k", 1}}),
      make_event("e", -0.0, json::object()),
  };
  const std::vector<std::string> pieces = {std::string(1, '\0'),
                                           "\xEF\xBB\xBF",
                                           "/",
                                           "*",
                                           "/**/",
                                           " ",
                                           "\t",
                                           "\n",
                                           "\r",
                                           "{",
                                           "}",
                                           "[",
                                           "]",
                                           "\"",
                                           ",",
                                           ":",
                                           "0",
                                           "1",
                                           "-",
                                           ".",
                                           "e",
                                           "E",
                                           "+",
                                           "Z",
                                           "T",
                                           "\\",
                                           "\\u0000",
                                           "\x7f",
                                           "\xc3\xa9",
                                           "\xc3",
                                           "\x80",
                                           "null",
                                           "true",
                                           "1e999",
                                           "-0",
                                           "1E5",
                                           "x"};
  std::mt19937 random(7);
  int differences = 0;
  int shown = 0;
  for (const Event& event : events) {
    const std::string text = emissions::serialize(event);
    for (int round = 0; round < 40'000; ++round) {
      std::string mutated = text;
      const int edits = 1 + static_cast<int>(random() % 2);
      for (int k = 0; k < edits && !mutated.empty(); ++k) {
        const std::size_t at = random() % mutated.size();
        const std::string& piece = pieces[random() % pieces.size()];
        switch (random() % 3) {
          case 0:
            mutated.replace(at, 1, piece);
            break;
          case 1:
            mutated.erase(at, 1);
            break;
          default:
            mutated.insert(at, piece);
            break;
        }
      }
      const std::optional<Event> scanned = read_serialized_envelope(mutated);
      if (!scanned) continue;
      std::string error;
      const std::optional<Event> reference = parse_or_refuse(mutated, error);
      bool same = reference.has_value();
      if (same) {
        same = scanned->id == reference->id && scanned->name == reference->name &&
               scanned->emitted_at == reference->emitted_at &&
               scanned->payload == reference->payload &&
               scanned->payload.type() == reference->payload.type() &&
               scanned->metadata == reference->metadata;
      }
      if (!same) {
        ++differences;
        if (shown++ < 8) {
          std::string printable;
          for (const char c : mutated) {
            if (c == '\0')
              printable += "\\0";
            else
              printable += c;
          }
          ADD_FAILURE() << (reference ? "read differently: "
                                      : "parse_envelope refuses (" + error + "): ")
                        << printable;
        }
      }
    }
  }
  EXPECT_EQ(differences, 0);
}
