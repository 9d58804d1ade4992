// libFuzzer target for the spool's decoders (src/spool/codec.hpp): whatever the bytes,
// check_frame, decode_body and decode_segment_header return a result, never crash, hang or
// allocate without bound; and a body that decodes encodes back to the very same bytes.
//
//   bash scripts/fuzz.sh 60        # builds build/fuzz with clang and runs for 60 s
//
// Each input is tried three ways: as a frame (check_frame, then decode_body on an ok
// frame's body), as a body whose record count is the first byte, and as a segment header.
// The seed corpus, tests/fuzz/corpus/spool_decode/, is written by spool_corpus.cpp.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "spool/codec.hpp"

namespace {

using namespace emissions::detail::spool;

// A body that decoded must encode to the same bytes (the encoding is canonical).
void check_canonical(std::span<const std::uint8_t> body, const std::vector<emissions::Event>& out) {
  std::vector<std::uint8_t> again;
  if (!encode_body(out, again).ok()) std::abort();
  if (again.size() != body.size() || !std::equal(again.begin(), again.end(), body.begin())) {
    std::abort();
  }
}

void try_body(std::span<const std::uint8_t> body, std::uint32_t count) {
  std::vector<emissions::Event> out;
  if (decode_body(body, count, out).ok()) {
    if (out.size() != count) std::abort();
    check_canonical(body, out);
  } else if (!out.empty()) {
    std::abort();  // an error leaves `out` as it was
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);

  FrameHeader header;
  const FrameCheck check = check_frame(bytes, header);
  if (check == FrameCheck::ok) {
    if (frame_size(header.body_len) > size) std::abort();
    try_body(bytes.subspan(kFrameHeaderSize, header.body_len), header.event_count);
  }

  if (!bytes.empty()) try_body(bytes.subspan(1), bytes[0]);

  SegmentHeader segment;
  (void)decode_segment_header(bytes, segment).ok();
  return 0;
}
