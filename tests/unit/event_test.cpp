// Event envelope and serializer, timestamps and EventName interning.
#include "emissions/event.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <ctime>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <gtest/gtest.h>

namespace emissions {
namespace {

using std::chrono::system_clock;
using namespace std::chrono_literals;

// 2026-11-21T01:37:33.123456789Z
system_clock::time_point sample_time() {
  return system_clock::time_point(std::chrono::duration_cast<system_clock::duration>(
      std::chrono::nanoseconds(1'795'225'053'123'456'789LL)));
}

Event make_event(EventName name, nlohmann::json payload, nlohmann::json metadata) {
  Event e;
  e.name = name;
  e.payload = std::move(payload);
  e.metadata = std::move(metadata);
  e.id = EventId::generate(sample_time());
  e.emitted_at = sample_time();
  return e;
}

// --- envelope ---------------------------------------------------------------------------

TEST(Envelope, HasTheDocumentedFields) {
  const Event e = make_event("order_created", {{"id", 1}, {"total", 9.5}}, {{"source", "api"}});
  const nlohmann::json env = envelope(e);
  ASSERT_TRUE(env.is_object());
  EXPECT_EQ(env.size(), 5u);
  EXPECT_EQ(env["id"], e.id.str());
  EXPECT_EQ(env["name"], "order_created");
  EXPECT_EQ(env["payload"], (nlohmann::json{{"id", 1}, {"total", 9.5}}));
  EXPECT_EQ(env["metadata"], (nlohmann::json{{"source", "api"}}));
  EXPECT_EQ(env["emitted_at"], "2026-11-21T01:37:33.123456Z");
}

TEST(Envelope, NullMetadataBecomesAnEmptyObject) {
  const Event e = make_event("x", nullptr, nullptr);
  EXPECT_EQ(envelope(e)["metadata"], nlohmann::json::object());
  EXPECT_EQ(envelope(e)["payload"], nullptr);
  EXPECT_NE(serialize(e).find(R"("metadata":{})"), std::string::npos);
}

// --- serialize: byte-for-byte equal to envelope(e).dump() -------------------------------

TEST(Serialize, MatchesEnvelopeDumpByteForByte) {
  const std::vector<EventName> names = {
      "order_created",
      "with \"quotes\" and \\backslash\\",
      "tab\tnewline\ncr\rbackspace\bformfeed\f",
      std::string_view("nul\0and\x01\x1f", 9),
      "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x80",  // café € rocket
      "slash/ and del\x7f",
  };
  const std::vector<nlohmann::json> payloads = {
      nullptr,
      true,
      42,
      -7,
      std::numeric_limits<std::uint64_t>::max(),
      std::numeric_limits<std::int64_t>::min(),
      0.1,
      -0.0,
      1e300,
      3.0,
      "text with \"quotes\", \xc3\xa9 and \n",
      nlohmann::json::array({1, "two", nullptr, nlohmann::json::object()}),
      {{"z", 1}, {"a", {{"nested", {1.5, 2.5}}}}, {"m", "x"}},
      nlohmann::json::object(),
  };
  const std::vector<nlohmann::json> metadatas = {
      nlohmann::json::object(),
      {{"source", "api"}, {"trace", {{"id", "abc"}}}},
      nullptr,
  };
  for (const auto& name : names) {
    for (const auto& payload : payloads) {
      for (const auto& metadata : metadatas) {
        const Event e = make_event(name, payload, metadata);
        ASSERT_EQ(serialize(e), envelope(e).dump()) << "name " << name << " payload " << payload;
      }
    }
  }
}

TEST(Serialize, KeysAreInSortedOrder) {
  const std::string text = serialize(make_event("a", 1, {{"k", "v"}}));
  const auto pos = [&](const char* key) { return text.find(key); };
  EXPECT_EQ(pos(R"({"emitted_at":)"), 0u);
  EXPECT_LT(pos(R"("emitted_at":)"), pos(R"("id":)"));
  EXPECT_LT(pos(R"("id":)"), pos(R"("metadata":)"));
  EXPECT_LT(pos(R"("metadata":)"), pos(R"("name":)"));
  EXPECT_LT(pos(R"("name":)"), pos(R"("payload":)"));
}

TEST(Serialize, RoundTripsThroughAParser) {
  const Event e = make_event("say \"hi\"\n", {{"greeting", "h\xc3\xa9llo"}}, {{"n", 1}});
  const nlohmann::json parsed = nlohmann::json::parse(serialize(e));
  EXPECT_EQ(parsed["name"], "say \"hi\"\n");
  EXPECT_EQ(parsed["payload"]["greeting"], "h\xc3\xa9llo");
  EXPECT_EQ(EventId::parse(parsed["id"].get<std::string>()), e.id);
}

TEST(SerializeTo, AppendsWithoutANewlineAndKeepsEarlierContent) {
  const Event a = make_event("a", 1, nullptr);
  const Event b = make_event("b", 2, nullptr);
  std::string out = "prefix|";
  serialize_to(a, out);
  out.push_back('\n');
  serialize_to(b, out);
  EXPECT_EQ(out, "prefix|" + serialize(a) + "\n" + serialize(b));
}

TEST(SerializeTo, InvalidUtf8ThrowsLikeDumpAndLeavesTheOutputUnchanged) {
  const Event bad_payload = make_event("ok", "bad \xff byte", nullptr);
  EXPECT_THROW((void)envelope(bad_payload).dump(), nlohmann::json::type_error);
  std::string out = "kept";
  EXPECT_THROW(serialize_to(bad_payload, out), nlohmann::json::type_error);
  EXPECT_EQ(out, "kept");

  const Event bad_name = make_event("bad \xc3 name", 1, nullptr);
  EXPECT_THROW((void)envelope(bad_name).dump(), nlohmann::json::type_error);
  EXPECT_THROW(serialize_to(bad_name, out), nlohmann::json::type_error);
  EXPECT_EQ(out, "kept");

  // The thread's reusable serializer still works after an exception.
  const Event good = make_event("ok", {{"x", 1}}, nullptr);
  EXPECT_EQ(serialize(good), envelope(good).dump());
}

TEST(Serialize, ConcurrentThreadsProduceTheSameText) {
  const Event e = make_event("order_created", {{"items", {1, 2, 3}}, {"note", "\xc3\xa9"}},
                             {{"source", "api"}});
  const std::string expected = envelope(e).dump();
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      std::string out;
      for (int i = 0; i < 2000; ++i) {
        out.clear();
        serialize_to(e, out);
        if (out != expected) mismatches.fetch_add(1);
      }
    });
  }
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// serialize(e) equals envelope(e).dump(), or both throw nlohmann's type_error.
::testing::AssertionResult serializes_like_dump(const Event& e) {
  std::string expected;
  bool dump_threw = false;
  try {
    expected = envelope(e).dump();
  } catch (const nlohmann::json::type_error&) {
    dump_threw = true;
  }
  std::string out = "kept";
  try {
    serialize_to(e, out);
  } catch (const nlohmann::json::type_error&) {
    if (dump_threw && out == "kept") return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "serialize_to threw, dump() did not";
  }
  if (dump_threw)
    return ::testing::AssertionFailure() << "dump() threw, serialize_to wrote " << out;
  if (out != "kept" + expected) {
    return ::testing::AssertionFailure()
           << "serialize_to wrote " << out << "\ndump() wrote " << expected;
  }
  return ::testing::AssertionSuccess();
}

std::string hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (const char c : bytes) {
    const auto byte = static_cast<unsigned char>(c);
    out += {'\\', 'x', kDigits[byte >> 4], kDigits[byte & 0xf]};
  }
  return out;
}

// Every byte, and every byte after each non-ASCII one, in payload strings (and a sample in
// object keys, written by the same code): the escapes, and which UTF-8 sequences are
// accepted (kept as is) or rejected (type_error), must be dump()'s.
TEST(Serialize, EscapesAndValidatesUtf8LikeDump) {
  std::vector<std::string> texts;
  std::vector<std::string> keys;
  for (int a = 0; a < 256; ++a) {
    keys.push_back(std::string(1, static_cast<char>(a)));
    if (a < 0x80) continue;  // after an ASCII byte, the next one is a single byte again
    for (int b = 0; b < 256; ++b) {
      const std::string two = {static_cast<char>(a), static_cast<char>(b)};
      texts.push_back(two);
      // Three- and four-byte leads, with a second byte around the edges of its ranges:
      // complete the sequence, or break it.
      if (a >= 0xe0 && b >= 0x7f && b <= 0xc0) {
        texts.push_back(two + "\x80");
        texts.push_back(two + "\x80\x80");
        texts.push_back(two + "\xbf\xbf");
        texts.push_back(two + "\x80x");
      }
    }
  }
  // The last overlong and first valid forms, surrogates, U+10FFFF and beyond.
  for (const char* edge : {"\xe0\x9f\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf", "\xed\xa0\x80",
                           "\xef\xbf\xbf", "\xf0\x8f\xbf\xbf", "\xf0\x90\x80\x80",
                           "\xf4\x8f\xbf\xbf", "\xf4\x90\x80\x80", "\xc1\xbf", "\xc2\x80"}) {
    keys.push_back(std::string("a") + edge + "z");
  }
  texts.insert(texts.end(), keys.begin(), keys.end());
  for (const std::string& text : texts) {
    ASSERT_TRUE(serializes_like_dump(make_event("e", text, nullptr))) << "payload " << hex(text);
  }
  for (const std::string& key : keys) {
    ASSERT_TRUE(serializes_like_dump(make_event("e", {{key, 1}}, nullptr))) << "key " << hex(key);
  }
  // Event names go through the same writer.
  for (const char* name : {"ok", "caf\xc3\xa9", "bad \xc3", "\xed\xa0\x80", "\x7f\x1f"}) {
    ASSERT_TRUE(serializes_like_dump(make_event(name, 1, nullptr))) << "name " << hex(name);
  }
}

TEST(Serialize, NumbersAndOtherValuesMatchDump) {
  const std::vector<nlohmann::json> values = {
      0,
      -1,
      std::numeric_limits<std::int64_t>::max(),
      std::numeric_limits<std::int64_t>::min(),
      std::numeric_limits<std::uint64_t>::max(),
      0.0,
      -0.0,
      1.0,
      0.1 + 0.2,
      1e-7,
      123456789012345680.0,
      1e21,
      5e-324,
      std::numeric_limits<double>::max(),
      std::numeric_limits<double>::quiet_NaN(),
      std::numeric_limits<double>::infinity(),
      nlohmann::json::binary({1, 2, 255}),
      nlohmann::json::binary({1, 2}, 7),
      nlohmann::json::array({nlohmann::json::array(), nlohmann::json::object(), nullptr, false}),
  };
  for (const nlohmann::json& value : values) {
    EXPECT_TRUE(serializes_like_dump(make_event("n", value, {{"v", value}}))) << value.dump();
  }
}

// --- format_timestamp -------------------------------------------------------------------

TEST(FormatTimestamp, KnownValues) {
  EXPECT_EQ(format_timestamp(system_clock::time_point{}), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(format_timestamp(sample_time()), "2026-11-21T01:37:33.123456Z");
  // Leap day, end of a day.
  EXPECT_EQ(format_timestamp(system_clock::time_point{} + 1'709'251'199s + 999'999us),
            "2024-02-29T23:59:59.999999Z");
  // Sub-microsecond digits are truncated, not rounded.
  EXPECT_EQ(format_timestamp(system_clock::time_point{} +
                             std::chrono::duration_cast<system_clock::duration>(999ns)),
            "1970-01-01T00:00:00.000000Z");
}

TEST(FormatTimestamp, BeforeTheEpochCountsBackward) {
  EXPECT_EQ(format_timestamp(system_clock::time_point{} - 1us), "1969-12-31T23:59:59.999999Z");
  EXPECT_EQ(format_timestamp(system_clock::time_point{} - 86'400s), "1969-12-31T00:00:00.000000Z");
}

TEST(FormatTimestamp, AgreesWithGmtimeR) {
  std::mt19937_64 rng(12345);
  // Seconds from 1900 to 2200.
  std::uniform_int_distribution<std::int64_t> seconds(-2'208'988'800LL, 7'258'118'400LL);
  std::uniform_int_distribution<std::int64_t> micros(0, 999'999);
  for (int i = 0; i < 2000; ++i) {
    const std::int64_t s = seconds(rng);
    const std::int64_t us = micros(rng);
    const auto t =
        system_clock::time_point{} + std::chrono::seconds(s) + std::chrono::microseconds(us);
    const auto tt = static_cast<std::time_t>(s);
    std::tm tm{};
    ASSERT_NE(gmtime_r(&tt, &tm), nullptr);
    char expected[64];
    const int n = std::snprintf(expected, sizeof expected, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
                                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                                tm.tm_sec, static_cast<int>(us));
    ASSERT_GT(n, 0);
    ASSERT_EQ(format_timestamp(t), expected) << "seconds " << s;
  }
}

TEST(FormatTimestamp, ToABufferWritesTheSameTextAndNothingPastIt) {
  const system_clock::time_point samples[] = {
      system_clock::time_point{},       sample_time(),
      system_clock::time_point{} - 1us, system_clock::time_point::min(),
      system_clock::time_point::max(),  system_clock::now()};
  for (const system_clock::time_point t : samples) {
    std::array<char, kMaxTimestampSize + 1> buffer{};
    buffer.fill('#');
    const char* end = format_timestamp_to(t, buffer.data());
    ASSERT_GT(end, buffer.data());
    ASSERT_LE(end, buffer.data() + kMaxTimestampSize);
    const std::string text(buffer.data(), static_cast<std::size_t>(end - buffer.data()));
    EXPECT_EQ(text, format_timestamp(t));
    EXPECT_EQ(text.back(), 'Z');
    EXPECT_EQ(buffer[kMaxTimestampSize], '#');
    if (end < buffer.data() + kMaxTimestampSize) {
      EXPECT_EQ(*end, '#');  // no terminator
    }
  }
}

// --- EventName --------------------------------------------------------------------------

TEST(EventNameTest, EqualTextsShareOneEntry) {
  const EventName a = "order_created";
  const EventName b(std::string("order_") + "created");
  const EventName c(std::string_view("order_created"));
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, c);
  EXPECT_EQ(&a.str(), &b.str());  // interned: one copy of the text
  EXPECT_EQ(a.hash(), b.hash());
  EXPECT_EQ(std::hash<EventName>{}(a), a.hash());
  EXPECT_NE(a, EventName("order_shipped"));
}

TEST(EventNameTest, DefaultIsEmpty) {
  const EventName none;
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(none, EventName(""));
  EXPECT_EQ(none.str(), "");
  EXPECT_FALSE(EventName("x").empty());
}

TEST(EventNameTest, OrdersByText) {
  // Interned in an order different from the alphabetical one.
  std::vector<EventName> names = {"zebra_seen", "apple_picked", "mango_sold", "apple"};
  std::sort(names.begin(), names.end());
  ASSERT_EQ(names.size(), 4u);
  EXPECT_EQ(names[0].str(), "apple");
  EXPECT_EQ(names[1].str(), "apple_picked");
  EXPECT_EQ(names[2].str(), "mango_sold");
  EXPECT_EQ(names[3].str(), "zebra_seen");
  EXPECT_TRUE(EventName("a") < EventName("b"));
  EXPECT_TRUE((EventName("a") <=> EventName("a")) == 0);
}

TEST(EventNameTest, WorksAsAHashKeyAndPrints) {
  std::unordered_set<EventName> set = {"a", "b", "a"};
  EXPECT_EQ(set.size(), 2u);
  EXPECT_EQ(set.count(EventName(std::string("b"))), 1u);
  std::ostringstream os;
  os << EventName("order_created");
  EXPECT_EQ(os.str(), "order_created");
}

TEST(EventNameTest, ConcurrentInterningYieldsOneEntryPerText) {
  constexpr int kThreads = 4;
  constexpr int kNames = 500;
  std::vector<std::vector<const std::string*>> seen(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kNames; ++i) {
        seen[static_cast<std::size_t>(t)].push_back(
            &EventName("concurrent_name_" + std::to_string(i)).str());
      }
    });
  }
  for (auto& th : threads)
    th.join();
  for (int t = 1; t < kThreads; ++t)
    EXPECT_EQ(seen[static_cast<std::size_t>(t)], seen[0]);
}

}  // namespace
}  // namespace emissions
