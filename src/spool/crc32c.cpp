#include "spool/crc32c.hpp"

#include <array>
#include <bit>
#include <cstddef>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define EMISSIONS_CRC32C_SSE42 1
#else
#define EMISSIONS_CRC32C_SSE42 0
#endif

namespace emissions::detail::spool {

namespace {

constexpr std::uint32_t kPoly = 0x82F63B78;  // reflected Castagnoli polynomial

// tables[0] is the classic byte-at-a-time table; tables[k][b] is the CRC of byte b followed
// by k zero bytes, so that 8 bytes can be folded with 8 independent look-ups.
using Tables = std::array<std::array<std::uint32_t, 256>, 8>;

constexpr Tables make_tables() {
  Tables t{};
  for (std::uint32_t b = 0; b < 256; ++b) {
    std::uint32_t crc = b;
    for (int bit = 0; bit < 8; ++bit)
      crc = (crc >> 1) ^ ((crc & 1u) != 0 ? kPoly : 0u);
    t[0][b] = crc;
  }
  for (std::size_t k = 1; k < 8; ++k) {
    for (std::size_t b = 0; b < 256; ++b) {
      const std::uint32_t prev = t[k - 1][b];
      t[k][b] = (prev >> 8) ^ t[0][prev & 0xFFu];
    }
  }
  return t;
}

constexpr Tables kTables = make_tables();
static_assert(kTables[0][1] == 0xF26B8303u);  // spot check against the published table

// `crc` here is the running register (already inverted).
std::uint32_t update_bytes(const std::uint8_t* p, std::size_t n, std::uint32_t crc) noexcept {
  for (std::size_t i = 0; i < n; ++i)
    crc = (crc >> 8) ^ kTables[0][(crc ^ p[i]) & 0xFFu];
  return crc;
}

std::uint32_t update_portable(const std::uint8_t* p, std::size_t n, std::uint32_t crc) noexcept {
  if constexpr (std::endian::native == std::endian::little) {
    while (n >= 8) {
      std::uint64_t word;
      std::memcpy(&word, p, 8);
      word ^= crc;
      crc = kTables[7][word & 0xFFu] ^ kTables[6][(word >> 8) & 0xFFu] ^
            kTables[5][(word >> 16) & 0xFFu] ^ kTables[4][(word >> 24) & 0xFFu] ^
            kTables[3][(word >> 32) & 0xFFu] ^ kTables[2][(word >> 40) & 0xFFu] ^
            kTables[1][(word >> 48) & 0xFFu] ^ kTables[0][word >> 56];
      p += 8;
      n -= 8;
    }
  }
  return update_bytes(p, n, crc);
}

#if EMISSIONS_CRC32C_SSE42
__attribute__((target("sse4.2"))) std::uint32_t update_sse42(const std::uint8_t* p, std::size_t n,
                                                             std::uint32_t crc) noexcept {
  std::uint64_t wide = crc;
  while (n >= 8) {
    std::uint64_t word;
    std::memcpy(&word, p, 8);
    wide = _mm_crc32_u64(wide, word);
    p += 8;
    n -= 8;
  }
  auto narrow = static_cast<std::uint32_t>(wide);
  while (n > 0) {
    narrow = _mm_crc32_u8(narrow, *p);
    ++p;
    --n;
  }
  return narrow;
}
#endif

using Update = std::uint32_t (*)(const std::uint8_t*, std::size_t, std::uint32_t) noexcept;

Update pick_update() noexcept {
#if EMISSIONS_CRC32C_SSE42
  __builtin_cpu_init();
  if (__builtin_cpu_supports("sse4.2")) return &update_sse42;
#endif
  return &update_portable;
}

Update chosen_update() noexcept {
  static const Update update = pick_update();  // decided once, thread-safe
  return update;
}

}  // namespace

std::uint32_t crc32c(std::span<const std::uint8_t> data, std::uint32_t crc) noexcept {
  return ~chosen_update()(data.data(), data.size(), ~crc);
}

std::uint32_t crc32c_portable(std::span<const std::uint8_t> data, std::uint32_t crc) noexcept {
  return ~update_portable(data.data(), data.size(), ~crc);
}

bool crc32c_uses_hardware() noexcept {
  return chosen_update() != &update_portable;
}

}  // namespace emissions::detail::spool
