// Internal: CRC32C (Castagnoli), the checksum of every file the spool writes.
//
//   std::uint32_t crc = crc32c(first_part);
//   crc = crc32c(second_part, crc);  // == crc32c(first_part + second_part)
#pragma once

#include <cstdint>
#include <span>

namespace emissions::detail::spool {

// The CRC32C of `data`, continuing from `crc` (the result of an earlier call over the bytes
// before it; 0 to start). crc32c("123456789") == 0xE3069283. Uses the CPU's crc32
// instruction when it has SSE4.2 (decided on the first call), else crc32c_portable.
// Thread-safe, no allocation.
[[nodiscard]] std::uint32_t crc32c(std::span<const std::uint8_t> data,
                                   std::uint32_t crc = 0) noexcept;

// The same function computed with tables only (slicing by 8), whatever the CPU: what
// crc32c() falls back to. Exposed so that tests can check both paths agree; use crc32c().
[[nodiscard]] std::uint32_t crc32c_portable(std::span<const std::uint8_t> data,
                                            std::uint32_t crc = 0) noexcept;

// Whether crc32c() uses the CPU's crc32 instruction on this machine (for tests and
// benchmarks to say which path they measured).
[[nodiscard]] bool crc32c_uses_hardware() noexcept;

}  // namespace emissions::detail::spool
