// Internal: each adapter's persisted position in the log (the first commit it has not
// settled), and the set of adapters the spool knows.
//
// Two slot files, `positions.0` and `positions.1`, written alternately: a save overwrites
// the older slot and (and, the first time, its directory entry), so a save torn by a crash leaves
// the other, older slot intact. Loading takes the valid slot with the higher generation; a damaged
// slot is counted and ignored (an older position means duplicates, never loss).
//
//   magic "EMSPOSN1" (8 bytes), u32 version, u32 count, u64 generation,
//   count x (varint name length, name, u64 seq, u64 segment, u64 offset),
//   u32 crc32c of everything before it.
//
// Not thread-safe: one owner (the spool) serialises saves.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "emissions/status.hpp"
#include "spool/files.hpp"
#include "spool/segment_log.hpp"

namespace emissions::detail::spool {

struct AdapterPosition {
  std::string name;
  LogPosition next;  // the first commit this adapter has not settled
  friend bool operator==(const AdapterPosition&, const AdapterPosition&) = default;
};

struct LoadedPositions {
  bool found = false;               // a valid slot was read
  std::uint64_t generation = 0;     // of the slot read
  std::uint64_t damaged_slots = 0;  // slots present but unreadable
  std::vector<AdapterPosition> adapters;
};

class PositionStore {
 public:
  PositionStore(std::shared_ptr<FileLayer> files, std::filesystem::path dir);

  // Reads both slots. `unavailable` only on an I/O error; damage is counted, not an error.
  Status load(LoadedPositions& out);

  // Writes `adapters` to the older slot; with `sync`, makes it durable (fdatasync, and the
  // directory the first time). Without, a crash of the process still keeps it (the page
  // cache has it); a power loss may take it back to an older one.
  Status save(const std::vector<AdapterPosition>& adapters, bool sync = true);

  // The encoding of one slot (for tests and the fuzz target) and its decoder, which
  // accepts any bytes: invalid_argument when they are not a valid slot.
  [[nodiscard]] static std::vector<std::uint8_t> encode(
      std::uint64_t generation, const std::vector<AdapterPosition>& adapters);
  static Status decode(std::span<const std::uint8_t> bytes, std::uint64_t& generation,
                       std::vector<AdapterPosition>& adapters);

  [[nodiscard]] static std::string slot_name(int slot);

 private:
  std::shared_ptr<FileLayer> files_;
  std::filesystem::path dir_;
  std::uint64_t generation_ = 0;
  bool dir_synced_[2] = {false, false};  // per slot: its directory entry was synced
};

}  // namespace emissions::detail::spool
