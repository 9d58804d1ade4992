#include "emissions/event_name.hpp"

#include <array>
#include <deque>
#include <mutex>
#include <ostream>
#include <shared_mutex>
#include <unordered_map>

#include "common/no_destroy.hpp"

namespace emissions::detail {
namespace {

// FNV-1a: names are short, and this hash is computed once per distinct text.
std::size_t hash_text(std::string_view text) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return static_cast<std::size_t>(h);
}

struct TextHash {
  std::size_t operator()(std::string_view s) const noexcept { return hash_text(s); }
};

// The process-wide table. Entries live in a deque so their addresses never move, and are
// never freed: an EventName is a pointer into it.
class InternTable {
 public:
  const InternedName* find_or_insert(std::string_view text, std::size_t hash) {
    {
      std::shared_lock lock(mutex_);
      if (auto it = index_.find(text); it != index_.end()) return it->second;
    }
    std::unique_lock lock(mutex_);
    if (auto it = index_.find(text); it != index_.end()) return it->second;
    const InternedName& entry = entries_.emplace_back(InternedName{std::string(text), hash});
    index_.emplace(std::string_view(entry.text), &entry);
    return &entry;
  }

 private:
  std::shared_mutex mutex_;
  std::deque<InternedName> entries_;
  std::unordered_map<std::string_view, const InternedName*, TextHash> index_;
};

// Never destroyed: names may be used by other objects' destructors at exit.
InternTable& table() {
  static NoDestroy<InternTable> holder;
  return *holder;
}

}  // namespace

// Never destroyed, so it outlives every static EventName; built on first use, so it also
// exists before this file's own statics are initialised.
const InternedName* empty_name() noexcept {
  static const NoDestroy<InternedName> kEmpty{InternedName{std::string(), hash_text({})}};
  return &kEmpty.get();
}

const InternedName* intern(std::string_view text) {
  if (text.empty()) return empty_name();
  const std::size_t hash = hash_text(text);
  // A small direct-mapped cache per thread makes repeated names lock-free.
  thread_local std::array<const InternedName*, 256> cache{};
  const InternedName*& slot = cache[hash & (cache.size() - 1)];
  if (slot != nullptr && slot->hash == hash && slot->text == text) return slot;
  slot = table().find_or_insert(text, hash);
  return slot;
}

}  // namespace emissions::detail

namespace emissions {

std::ostream& operator<<(std::ostream& os, EventName name) {
  return os << name.str();
}

}  // namespace emissions
