// The spool's persisted positions (src/spool/positions.*): two alternating checksummed
// slots, so a damaged or torn save falls back to the previous one.
#include "spool/positions.hpp"

#include <gtest/gtest.h>

#include "memory_files.hpp"

namespace emissions::detail::spool {
namespace {

using testing_support::MemoryFiles;

const std::filesystem::path kDir = "/spool";

std::vector<AdapterPosition> positions(std::uint64_t seq) {
  return {{"kafka", {seq, 1, 64 + seq}}, {"webhooks", {seq + 1, seq, 128}}};
}

TEST(PositionsTest, ASavedSetLoadsBackAfterAPowerLoss) {
  auto files = std::make_shared<MemoryFiles>();
  PositionStore store(files, kDir);
  LoadedPositions loaded;
  ASSERT_TRUE(store.load(loaded).ok());
  EXPECT_FALSE(loaded.found);
  ASSERT_TRUE(store.save(positions(5)).ok());
  ASSERT_TRUE(store.save(positions(9)).ok());
  files->power_loss();
  PositionStore reopened(files, kDir);
  ASSERT_TRUE(reopened.load(loaded).ok());
  EXPECT_TRUE(loaded.found);
  EXPECT_EQ(loaded.generation, 2u);
  EXPECT_EQ(loaded.adapters, positions(9));
  EXPECT_EQ(loaded.damaged_slots, 0u);
  // Saving goes on from the generation loaded.
  ASSERT_TRUE(reopened.save(positions(11)).ok());
  ASSERT_TRUE(PositionStore(files, kDir).load(loaded).ok());
  EXPECT_EQ(loaded.adapters, positions(11));
  EXPECT_EQ(loaded.generation, 3u);
}

TEST(PositionsTest, ADamagedSlotFallsBackToTheOlderOne) {
  auto files = std::make_shared<MemoryFiles>();
  PositionStore store(files, kDir);
  ASSERT_TRUE(store.save(positions(5)).ok());  // generation 1: slot 1
  ASSERT_TRUE(store.save(positions(9)).ok());  // generation 2: slot 0
  auto newest = files->node(kDir / PositionStore::slot_name(0));
  for (std::size_t i = 0; i < newest->current.size(); ++i) {
    auto copy = newest->current;
    newest->current[i] ^= 0x01;
    LoadedPositions loaded;
    ASSERT_TRUE(PositionStore(files, kDir).load(loaded).ok());
    EXPECT_EQ(loaded.adapters, positions(5)) << "byte " << i;
    EXPECT_EQ(loaded.damaged_slots, 1u);
    newest->current = copy;
  }
  // A save torn half-way (only a prefix reached the file) is damage too.
  newest->current.resize(newest->current.size() / 2);
  LoadedPositions loaded;
  ASSERT_TRUE(PositionStore(files, kDir).load(loaded).ok());
  EXPECT_EQ(loaded.adapters, positions(5));
}

TEST(PositionsTest, BothSlotsDamagedLoadsNothingAndSaysSo) {
  auto files = std::make_shared<MemoryFiles>();
  PositionStore store(files, kDir);
  ASSERT_TRUE(store.save(positions(5)).ok());
  ASSERT_TRUE(store.save(positions(9)).ok());
  for (int slot = 0; slot < 2; ++slot) {
    files->node(kDir / PositionStore::slot_name(slot))->current.assign(40, 0xFF);
  }
  LoadedPositions loaded;
  ASSERT_TRUE(PositionStore(files, kDir).load(loaded).ok());
  EXPECT_FALSE(loaded.found);
  EXPECT_EQ(loaded.damaged_slots, 2u);
}

TEST(PositionsTest, DecodeRefusesEveryTruncationAndNamesTheProblem) {
  const std::vector<std::uint8_t> bytes = PositionStore::encode(7, positions(3));
  std::uint64_t generation = 0;
  std::vector<AdapterPosition> adapters;
  ASSERT_TRUE(PositionStore::decode(bytes, generation, adapters).ok());
  EXPECT_EQ(generation, 7u);
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    const Status s = PositionStore::decode(std::span(bytes).first(n), generation, adapters);
    EXPECT_EQ(s.code(), Errc::invalid_argument) << n;
    EXPECT_NE(s.message().find("positions slot"), std::string::npos);
  }
  EXPECT_EQ(adapters, positions(3)) << "a refused decode leaves the output alone";
}

TEST(PositionsTest, AnIoErrorOnSaveIsReportedAndTheOlderSlotStays) {
  auto files = std::make_shared<MemoryFiles>();
  PositionStore store(files, kDir);
  ASSERT_TRUE(store.save(positions(5)).ok());
  files->fail("sync", EIO);
  const Status failed = store.save(positions(9));
  EXPECT_EQ(failed.code(), Errc::unavailable);
  EXPECT_NE(failed.message().find("positions."), std::string::npos) << failed.message();
  files->power_loss();
  LoadedPositions loaded;
  ASSERT_TRUE(PositionStore(files, kDir).load(loaded).ok());
  EXPECT_EQ(loaded.adapters, positions(5));
}

}  // namespace
}  // namespace emissions::detail::spool
