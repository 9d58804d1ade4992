#include "spool/positions.hpp"

#include <cstring>
#include <utility>

#include "spool/crc32c.hpp"

namespace emissions::detail::spool {

namespace {

constexpr char kMagic[8] = {'E', 'M', 'S', 'P', 'O', 'S', 'N', '1'};
constexpr std::uint32_t kVersion = 1;
constexpr std::size_t kMaxSlotBytes = 16u << 20;  // far above any real set of adapters
constexpr std::size_t kMaxNameBytes = 4096;

// Little-endian, sizeof(T) bytes.
template <typename T>
void put_fixed(std::vector<std::uint8_t>& out, T v) {
  for (std::size_t i = 0; i < sizeof(T); ++i)
    out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put_varint(std::vector<std::uint8_t>& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<std::uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<std::uint8_t>(v));
}

// A bounds-checked reader over a slot's bytes.
struct Reader {
  std::span<const std::uint8_t> bytes;
  std::size_t at = 0;
  template <typename T>
  bool fixed(T& v) {
    if (bytes.size() - at < sizeof(T)) return false;
    v = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i)
      v |= static_cast<T>(static_cast<T>(bytes[at + i]) << (8 * i));
    at += sizeof(T);
    return true;
  }
  bool varint(std::uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (at >= bytes.size()) return false;
      const std::uint8_t b = bytes[at++];
      v |= static_cast<std::uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }
};

Status invalid(const std::string& what) {
  return Status(Errc::invalid_argument, "positions slot: " + what);
}

}  // namespace

PositionStore::PositionStore(std::shared_ptr<FileLayer> files, std::filesystem::path dir)
    : files_(std::move(files)), dir_(std::move(dir)) {}

std::string PositionStore::slot_name(int slot) {
  return "positions." + std::to_string(slot);
}

std::vector<std::uint8_t> PositionStore::encode(std::uint64_t generation,
                                                const std::vector<AdapterPosition>& adapters) {
  std::vector<std::uint8_t> out(std::begin(kMagic), std::end(kMagic));
  put_fixed<std::uint32_t>(out, kVersion);
  put_fixed<std::uint32_t>(out, static_cast<std::uint32_t>(adapters.size()));
  put_fixed<std::uint64_t>(out, generation);
  for (const AdapterPosition& a : adapters) {
    put_varint(out, a.name.size());
    out.insert(out.end(), a.name.begin(), a.name.end());
    put_fixed<std::uint64_t>(out, a.next.seq);
    put_fixed<std::uint64_t>(out, a.next.segment);
    put_fixed<std::uint64_t>(out, a.next.offset);
  }
  put_fixed<std::uint32_t>(out, crc32c(out));
  return out;
}

Status PositionStore::decode(std::span<const std::uint8_t> bytes, std::uint64_t& generation,
                             std::vector<AdapterPosition>& adapters) {
  if (bytes.size() < sizeof kMagic + 20) return invalid("too short");
  if (std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) return invalid("bad magic");
  const std::size_t body = bytes.size() - 4;
  Reader crc_reader{bytes, body};
  std::uint32_t stored = 0;
  (void)crc_reader.fixed(stored);
  if (crc32c(bytes.first(body)) != stored) return invalid("checksum mismatch");
  Reader r{bytes.first(body), sizeof kMagic};
  std::uint32_t version = 0;
  std::uint32_t count = 0;
  std::uint64_t gen = 0;
  if (!r.fixed(version) || !r.fixed(count) || !r.fixed(gen)) return invalid("truncated header");
  if (version != kVersion) return invalid("unknown version " + std::to_string(version));
  std::vector<AdapterPosition> decoded;
  for (std::uint32_t i = 0; i < count; ++i) {
    std::uint64_t length = 0;
    if (!r.varint(length) || length == 0 || length > kMaxNameBytes ||
        length > r.bytes.size() - r.at) {
      return invalid("bad name length in entry " + std::to_string(i));
    }
    AdapterPosition a;
    a.name.assign(reinterpret_cast<const char*>(r.bytes.data() + r.at),
                  static_cast<std::size_t>(length));
    r.at += static_cast<std::size_t>(length);
    if (!r.fixed(a.next.seq) || !r.fixed(a.next.segment) || !r.fixed(a.next.offset)) {
      return invalid("truncated entry " + std::to_string(i));
    }
    decoded.push_back(std::move(a));
  }
  if (r.at != r.bytes.size()) return invalid("trailing bytes");
  generation = gen;
  adapters = std::move(decoded);
  return {};
}

Status PositionStore::load(LoadedPositions& out) {
  out = {};
  for (int slot = 0; slot < 2; ++slot) {
    std::unique_ptr<SpoolFile> file;
    Status s = files_->open(dir_ / slot_name(slot), false, file);
    if (s.code() == Errc::not_found) continue;
    if (!s) return s;
    std::uint64_t size = 0;
    if (Status z = file->size(size); !z) return z;
    if (size > kMaxSlotBytes) {
      ++out.damaged_slots;
      continue;
    }
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
    std::size_t got = 0;
    if (Status r = file->read_at(0, bytes, got); !r) return r;
    bytes.resize(got);
    std::uint64_t generation = 0;
    std::vector<AdapterPosition> adapters;
    if (!decode(bytes, generation, adapters)) {
      ++out.damaged_slots;
      continue;
    }
    if (!out.found || generation > out.generation) {
      out.found = true;
      out.generation = generation;
      out.adapters = std::move(adapters);
    }
  }
  generation_ = out.generation;
  return {};
}

Status PositionStore::save(const std::vector<AdapterPosition>& adapters, bool sync) {
  const std::uint64_t generation = generation_ + 1;
  const std::vector<std::uint8_t> bytes = encode(generation, adapters);
  const std::filesystem::path path = dir_ / slot_name(static_cast<int>(generation % 2));
  std::unique_ptr<SpoolFile> file;
  if (Status s = files_->open(path, true, file); !s) return s;
  if (Status s = file->write_at(0, bytes); !s) return s;
  if (Status s = file->truncate(bytes.size()); !s) return s;
  const auto slot = static_cast<std::size_t>(generation % 2);
  // A slot file's first save is synced, its directory entry too, whatever the durability:
  // a power loss must not leave a log without positions (every adapter would then start
  // at the end of the log and skip what survived). Later saves sync only when asked.
  if (sync || !dir_synced_[slot]) {
    if (Status s = file->sync(); !s) return s;
  }
  if (!dir_synced_[slot]) {  // the slot file may be new: its entry must be durable
    if (Status s = files_->sync_dir(dir_); !s) return s;
    dir_synced_[slot] = true;
  }
  generation_ = generation;
  return {};
}

}  // namespace emissions::detail::spool
