// Writes the seed corpus of tests/fuzz/spool_decode_fuzz.cpp: a few small valid frames,
// bodies (prefixed with their record count, as the target reads them) and a segment
// header. Deterministic: the same build writes the same bytes.
//
//   build/fuzz/tests/fuzz/emissions_spool_corpus tests/fuzz/corpus/spool_decode
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "spool/codec.hpp"

namespace {

using emissions::Event;
using nlohmann::json;
using namespace emissions::detail::spool;
using Bytes = std::vector<std::uint8_t>;

Event make_event(const char* name, json payload, json metadata, std::uint64_t n) {
  Event e;
  e.name = emissions::EventName(name);
  e.payload = std::move(payload);
  e.metadata = std::move(metadata);
  e.id = emissions::EventId(0x019A'0000'0000'7000ull + n, 0x8000'0000'0000'0000ull + n);
  e.emitted_at = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds(1'795'225'053'123'456'789LL + static_cast<std::int64_t>(n))));
  return e;
}

std::vector<std::pair<std::string, std::vector<Event>>> samples() {
  std::vector<Event> ints;
  for (std::uint64_t i = 0; i < 3; ++i) {
    ints.push_back(
        make_event("order_created", static_cast<std::int64_t>(i) - 1, json::object(), i));
  }
  const json all_types = {
      {"a", {nullptr, true, false, -7, 7u, 2.5, "s", json::array(), json::object()}},
      {"b", json::binary({1, 2}, 9)},
      {"c", json::binary({3})},
      {"d", {{"e", {{"f", "\xc3\xa9"}}}}},
      {"u", std::numeric_limits<std::uint64_t>::max()},
      {"i", std::numeric_limits<std::int64_t>::min()},
  };
  return {
      {"ints", std::move(ints)},
      {"types", {make_event("all_types", all_types, {{"tenant", "acme"}}, 7)}},
      {"strings",
       {make_event("s", std::string(200, 'x'), {{"k", ""}}, 8),  // 2-byte record_len
        make_event("t", nullptr, json::object(), 9)}},
      {"empty", {}},
  };
}

bool write(const std::filesystem::path& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  std::uint64_t seq = 1;
  for (const auto& [name, events] : samples()) {
    Bytes body;
    if (const emissions::Status s = encode_body(events, body); !s.ok()) {
      std::fprintf(stderr, "%s: %s\n", name.c_str(), s.to_string().c_str());
      return 1;
    }
    const auto count = static_cast<std::uint32_t>(events.size());
    std::uint8_t header[kFrameHeaderSize];
    encode_frame_header(seq++, body, count, 0, header);
    Bytes frame(std::begin(header), std::end(header));
    frame.insert(frame.end(), body.begin(), body.end());
    frame.resize(frame_size(body.size()), 0);
    Bytes counted{static_cast<std::uint8_t>(count)};
    counted.insert(counted.end(), body.begin(), body.end());
    if (!write(dir / ("frame_" + name), frame) || !write(dir / ("body_" + name), counted)) {
      std::fprintf(stderr, "cannot write to %s\n", dir.c_str());
      return 1;
    }
  }
  std::uint8_t segment[kSegmentHeaderSize];
  encode_segment_header(SegmentHeader{1, 1'795'225'053'000'000'000LL}, segment);
  if (!write(dir / "segment_header", Bytes(std::begin(segment), std::end(segment)))) return 1;
  return 0;
}
