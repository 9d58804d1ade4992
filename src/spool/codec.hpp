// Internal: the spool's on-disk encoding (docs/SPOOL.md is its reference). Pure functions
// over bytes: no I/O, no locks, no user code. Every decoder is total: any input gives a
// result or a Status, never a crash, a hang or an unbounded allocation (fuzzed by
// tests/fuzz/spool_decode_fuzz.cpp).
//
// A segment file is a 64-byte header followed by commit frames, each starting at a multiple
// of 8. A frame is a 32-byte header and a body:
//
//   frame header (little-endian):
//     u32 magic 0x46434D45 ("EMCF")   u32 body_len      u64 seq
//     u32 event_count                 u32 body_crc      u32 flags       u32 header_crc
//   body: event_count records, each varint(record_len) then
//     16 bytes id (high, low; big-endian, as the UUID's text), zigzag varint emitted_at
//     (ns since the Unix epoch), varint name length + name bytes, payload, metadata
//   then zero padding up to the next multiple of 8.
//
// header_crc covers the header's first 28 bytes; body_crc the body (without padding). A
// frame is one commit: recovery keeps it whole or skips it whole. record_len counts the
// bytes after its own varint; the name is never empty; metadata is always an object.
//
// Varints are LEB128 (7 bits a byte, least significant group first, high bit = more),
// at most 10 bytes and canonical: no value has two encodings (a varint longer than it needs
// to be is invalid). Zigzag maps a signed n to (n << 1) ^ (n >> 63).
//
// A JSON value (payload, metadata) is one tag byte, then its data:
//   0x01 null        -
//   0x02 false       -
//   0x03 true        -
//   0x04 integer     zigzag varint            (nlohmann number_integer, int64)
//   0x05 unsigned    varint                   (number_unsigned, uint64)
//   0x06 double      8 bytes, IEEE 754 LE     (number_float; -0.0, inf and NaN kept bit for bit)
//   0x07 string      varint length + bytes    (stored as they are, UTF-8 not checked)
//   0x08 array       varint count + count values
//   0x09 object      varint count + count (varint key length + key bytes + value), keys in
//                    strictly increasing byte order (nlohmann's std::map order: unique, sorted)
//   0x0A binary      varint length + bytes + u8 has_subtype (0 or 1) + u64 LE subtype if 1
// A value nests `kMaxJsonDepth` arrays/objects at most (a scalar at the top is depth 0, the
// array `[[1]]` is depth 2). Tag 0x00 is never used, so zeroed bytes never decode as a value.
// With these rules the encoding is canonical: encode_body(decode_body(b)) == b for every
// body b that decodes (the fuzz target checks it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "emissions/event.hpp"
#include "emissions/status.hpp"

namespace emissions::detail::spool {

inline constexpr std::size_t kSegmentHeaderSize = 64;
inline constexpr std::size_t kFrameHeaderSize = 32;
inline constexpr std::uint32_t kFormatVersion = 1;
inline constexpr std::uint32_t kFrameMagic = 0x46434D45;  // "EMCF" little-endian
// Bodies larger than this are refused by the encoder and treated as corrupt by the decoder:
// a length read from a damaged header must not make recovery allocate gigabytes.
inline constexpr std::uint32_t kMaxBodySize = 256u << 20;
// JSON nesting (arrays and objects inside one another) deeper than this is refused by the
// encoder and the decoder (both recurse).
inline constexpr std::size_t kMaxJsonDepth = 256;

// ---- segment header ----------------------------------------------------------------
// magic "EMSSPOOL" (8 bytes), u32 version, u32 header size (64), u64 base_seq (the seq of
// the segment's first frame), i64 created_at (ns since the epoch), 28 zero bytes, u32 crc
// of the first 60 bytes.
struct SegmentHeader {
  std::uint64_t base_seq = 0;
  std::int64_t created_at_ns = 0;
};
void encode_segment_header(const SegmentHeader& header, std::uint8_t (&out)[kSegmentHeaderSize]);
// invalid_argument naming what is wrong (size, magic, checksum, version, header size,
// reserved bytes); `out` is only written on success. Reads the first 64 bytes of `bytes`.
Status decode_segment_header(std::span<const std::uint8_t> bytes, SegmentHeader& out);

// ---- frames --------------------------------------------------------------------------
struct FrameHeader {
  std::uint32_t body_len = 0;
  std::uint64_t seq = 0;
  std::uint32_t event_count = 0;
  std::uint32_t body_crc = 0;
  std::uint32_t flags = 0;
};

// The bytes a frame with this body occupies: header + body + padding to a multiple of 8.
[[nodiscard]] constexpr std::size_t frame_size(std::size_t body_len) noexcept {
  return (kFrameHeaderSize + body_len + 7) & ~static_cast<std::size_t>(7);
}

// Appends the records of `events` to `body` (not cleared first). invalid_argument when the
// body (all of it, with what it held before) would exceed kMaxBodySize, when an event's name
// is empty, when its metadata is not an object, when a JSON value nests deeper than
// kMaxJsonDepth or is a `discarded` value (the event's index is named); `body` then has its
// old size again. Allocation: only `body`'s growth. Never throws but std::bad_alloc.
Status encode_body(std::span<const Event> events, std::vector<std::uint8_t>& body);

// Writes a frame header for `seq` over `body` (computing body_crc) into `out`; `flags` is
// the caller's, stored as given.
void encode_frame_header(std::uint64_t seq, std::span<const std::uint8_t> body,
                         std::uint32_t event_count, std::uint32_t flags,
                         std::uint8_t (&out)[kFrameHeaderSize]);

enum class FrameCheck {
  ok,       // a whole valid frame: header and body checksums match
  end,      // the bytes start with a zero magic: nothing was ever written here
  torn,     // the header is valid but the frame (body, padding) runs past the bytes given
  corrupt,  // a bad magic, header checksum, length, body checksum or padding
};

// Checks the frame starting at bytes[0]; `bytes` runs to the end of what is readable. On
// ok, torn or a corrupt body, `header` is filled (its body_len can be trusted only on ok or
// torn); otherwise it is left as it was. Fewer than kFrameHeaderSize bytes: end when they
// are all zero, else torn. A header is corrupt when its magic (non-zero), header_crc or
// body_len (> kMaxBodySize) is wrong (any flags value is valid: the header checksum covers
// it); the body is corrupt when its checksum is wrong or a padding byte is not zero. ok
// means all frame_size(body_len) bytes are there: the next frame starts right after.
[[nodiscard]] FrameCheck check_frame(std::span<const std::uint8_t> bytes,
                                     FrameHeader& header) noexcept;

// Decodes a checked body of `event_count` records, appending to `out`. invalid_argument
// naming the record and what is wrong when the structure is bad (a body whose checksum
// matched can still come from a newer version or a bug): a bad tag, a non-canonical or
// truncated varint, a length or count past the end of the bytes, nesting deeper than
// kMaxJsonDepth, object keys out of order, an empty name, metadata that is not an object,
// a record_len that differs from what the record holds, fewer records than event_count or
// bytes after the last one; `out` then keeps exactly what it had. Allocation is
// proportional to body.size() (the JSON values it holds, up to ~30 times its size for
// arrays of nulls): no count or length is trusted before the bytes it announces are there.
// Names are interned (EventName, kept for the life of the process) only once the whole
// body decoded. Never throws but std::bad_alloc.
Status decode_body(std::span<const std::uint8_t> body, std::uint32_t event_count,
                   std::vector<Event>& out);

}  // namespace emissions::detail::spool
