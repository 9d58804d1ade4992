// CRC32C: the published check value, chaining, and the hardware path agreeing with the
// portable tables on every length and alignment.
#include "spool/crc32c.hpp"

#include <cstdint>
#include <random>
#include <span>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace emissions::detail::spool {
namespace {

std::span<const std::uint8_t> bytes_of(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

std::vector<std::uint8_t> random_bytes(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> out(n);
  for (auto& b : out)
    b = static_cast<std::uint8_t>(rng());
  return out;
}

TEST(Crc32cTest, MatchesThePublishedCheckValue) {
  EXPECT_EQ(crc32c(bytes_of("123456789")), 0xE3069283u);
  EXPECT_EQ(crc32c_portable(bytes_of("123456789")), 0xE3069283u);
}

TEST(Crc32cTest, MatchesKnownVectors) {
  // RFC 3720 (iSCSI), appendix B.4.
  const std::vector<std::uint8_t> zeros(32, 0x00);
  const std::vector<std::uint8_t> ones(32, 0xFF);
  std::vector<std::uint8_t> ascending(32);
  for (std::size_t i = 0; i < ascending.size(); ++i)
    ascending[i] = static_cast<std::uint8_t>(i);
  EXPECT_EQ(crc32c(zeros), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones), 0x62A8AB43u);
  EXPECT_EQ(crc32c(ascending), 0x46DD794Eu);
  EXPECT_EQ(crc32c_portable(zeros), 0x8A9136AAu);
  EXPECT_EQ(crc32c_portable(ones), 0x62A8AB43u);
  EXPECT_EQ(crc32c_portable(ascending), 0x46DD794Eu);
}

TEST(Crc32cTest, EmptyInputLeavesTheCrcUnchanged) {
  EXPECT_EQ(crc32c({}), 0u);
  EXPECT_EQ(crc32c({}, 0x12345678u), 0x12345678u);
  EXPECT_EQ(crc32c_portable({}, 0x12345678u), 0x12345678u);
}

TEST(Crc32cTest, ChainingEqualsOneCallOverTheConcatenation) {
  const std::vector<std::uint8_t> data = random_bytes(300, 1);
  const std::uint32_t whole = crc32c(data);
  const std::span<const std::uint8_t> all(data);
  for (std::size_t split = 0; split <= data.size(); ++split) {
    EXPECT_EQ(crc32c(all.subspan(split), crc32c(all.first(split))), whole) << split;
    EXPECT_EQ(crc32c_portable(all.subspan(split), crc32c_portable(all.first(split))), whole)
        << split;
  }
}

TEST(Crc32cTest, HardwareAndPortablePathsAgreeOnEveryLengthAndAlignment) {
  // crc32c() is the hardware path when the CPU has SSE4.2 (crc32c_uses_hardware()), so
  // comparing it with crc32c_portable() compares the two implementations.
  RecordProperty("hardware", crc32c_uses_hardware() ? "sse4.2" : "none");
  const std::vector<std::uint8_t> data = random_bytes(4096 + 16, 2);
  const std::span<const std::uint8_t> all(data);
  for (std::size_t offset = 0; offset < 16; ++offset) {
    for (std::size_t len = 0; len <= 80; ++len) {
      const auto part = all.subspan(offset, len);
      ASSERT_EQ(crc32c(part), crc32c_portable(part)) << offset << " " << len;
      ASSERT_EQ(crc32c(part, 0xDEADBEEFu), crc32c_portable(part, 0xDEADBEEFu));
    }
    const auto big = all.subspan(offset, 4096);
    ASSERT_EQ(crc32c(big), crc32c_portable(big)) << offset;
  }
}

TEST(Crc32cTest, UsesTheHardwarePathWhenTheCpuHasSse42) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  EXPECT_EQ(crc32c_uses_hardware(), __builtin_cpu_supports("sse4.2") != 0);
#else
  EXPECT_FALSE(crc32c_uses_hardware());
#endif
}

TEST(Crc32cTest, DetectsEverySingleBitFlip) {
  std::vector<std::uint8_t> data = random_bytes(64, 3);
  const std::uint32_t original = crc32c(data);
  for (std::size_t bit = 0; bit < data.size() * 8; ++bit) {
    data[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    EXPECT_NE(crc32c(data), original) << bit;
    data[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
  }
}

}  // namespace
}  // namespace emissions::detail::spool
