/// @file
/// emissions/topic_router.hpp: maps event names to logical topics (e.g. Kafka topics).
///
/// Each event belongs to at most one topic. Two routers with the same API:
/// - `TopicRouter`: built at run time (from code or configuration); throws ConfigError.
/// - `StaticTopicRouter`: built at compile time; its mistakes are compile errors, and its
///   lookups work in constant expressions and at run time.
///
/// @code
///   emissions::TopicRouter router{{"orders", {"order_created", "order_updated"}},
///                                 {"users", {"user_created"}}};
///   router.topic_for_event("order_created");  // "orders"
///   router.topic_for_event("nope");           // std::nullopt
///   router.topics();                          // {"orders", "users"}, in declaration order
///
///   constexpr auto kTopics = emissions::make_topic_router(
///       emissions::topic("orders", "order_created", "order_updated"),
///       emissions::topic("users", "user_created"));
///   static_assert(kTopics.topic_for_event("order_created") == "orders");
/// @endcode
///
/// Lookups are O(1) on average (open addressing, load factor <= 1/2), never allocate, never
/// throw, and may run on any number of threads at once (they only read).
#pragma once

#include <array>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "emissions/event_name.hpp"
#include "emissions/status.hpp"

namespace emissions {

namespace detail {

inline constexpr std::uint32_t kNoEntry = 0xffffffffU;

// A slot of an open-addressing table of texts: `key` indexes the router's array of texts,
// `value` is what a lookup returns (a topic index).
struct TextSlot {
  std::uint64_t hash = 0;
  std::uint32_t key = kNoEntry;
  std::uint32_t value = kNoEntry;
};

// Power of two, at least twice the key count, so probes stay short and always end.
constexpr std::size_t table_capacity(std::size_t keys) noexcept {
  std::size_t capacity = 2;
  while (capacity < 2 * keys)
    capacity *= 2;
  return capacity;
}

// Fibonacci hashing: spreads any 64-bit hash (ours, or EventName's) over the table.
constexpr std::size_t first_slot(std::uint64_t hash, std::size_t mask) noexcept {
  return static_cast<std::size_t>((hash * 0x9e3779b97f4a7c15ULL) >> 32) & mask;
}

// The little-endian value of N bytes at `p`: the same at compile time and at run time on
// every platform, so a table built by the compiler works for lookups at run time.
template <std::size_t N>
constexpr std::uint64_t load_le(const char* p) noexcept {
  using Word = std::conditional_t<N == 8, std::uint64_t, std::uint32_t>;
  if constexpr (std::endian::native == std::endian::little) {
    if (!std::is_constant_evaluated()) {
      Word word;  // memcpy: one unaligned load (a shift loop is not merged by every compiler)
      std::memcpy(&word, p, N);
      return word;
    }
  }
  std::uint64_t word = 0;
  for (std::size_t i = 0; i < N; ++i)
    word |= std::uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return word;
}

constexpr std::uint64_t byte_at(const char* p) noexcept {
  return static_cast<unsigned char>(*p);
}

// A fast constexpr hash of a short text, 8 bytes per step.
constexpr std::uint64_t hash_text(std::string_view text) noexcept {
  constexpr std::uint64_t kMul = 0xff51afd7ed558ccdULL;
  const char* p = text.data();
  const std::size_t n = text.size();
  std::uint64_t h = 0x243f6a8885a308d3ULL ^ (n * kMul);
  auto mix = [&](std::uint64_t word) {
    h = (h ^ word) * kMul;
    h ^= h >> 29;
  };
  if (n >= 8) {
    std::size_t i = 0;
    for (; i + 8 < n; i += 8)
      mix(load_le<8>(p + i));
    mix(load_le<8>(p + n - 8));  // overlaps the previous word; the length is in the seed
  } else if (n >= 4) {
    mix(load_le<4>(p) | (load_le<4>(p + n - 4) << 32));
  } else if (n > 0) {
    mix(byte_at(p) | (byte_at(p + n / 2) << 8) | (byte_at(p + n - 1) << 16));
  }
  h ^= h >> 32;
  return h * 0xc4ceb9fe1a85ec53ULL;
}

// The value stored for `key`, or kNoEntry.
constexpr std::uint32_t find(std::span<const TextSlot> slots,
                             std::span<const std::string_view> keys, std::string_view key,
                             std::uint64_t hash) noexcept {
  if (slots.empty()) return kNoEntry;  // default-constructed or moved-from router
  const std::size_t mask = slots.size() - 1;
  for (std::size_t i = first_slot(hash, mask);; i = (i + 1) & mask) {
    const TextSlot& slot = slots[i];
    if (slot.key == kNoEntry) return kNoEntry;
    if (slot.hash == hash && keys[slot.key] == key) return slot.value;
  }
}

// Adds keys[key] -> value. Returns kNoEntry, or the value already stored for an equal key
// (then nothing is added).
constexpr std::uint32_t insert(std::span<TextSlot> slots, std::span<const std::string_view> keys,
                               std::uint32_t key, std::uint32_t value) noexcept {
  const std::uint64_t hash = hash_text(keys[key]);
  const std::size_t mask = slots.size() - 1;
  for (std::size_t i = first_slot(hash, mask);; i = (i + 1) & mask) {
    TextSlot& slot = slots[i];
    if (slot.key == kNoEntry) {
      slot = {hash, key, value};
      return kNoEntry;
    }
    if (slot.hash == hash && keys[slot.key] == keys[key]) return slot.value;
  }
}

// Not constexpr on purpose: reaching one while building a StaticTopicRouter makes the
// compiler stop and print its name.
inline void duplicate_event_name_in_topic_router() {}
inline void duplicate_topic_name_in_topic_router() {}
inline void empty_event_name_in_topic_router() {}
inline void empty_topic_name_in_topic_router() {}

}  // namespace detail

/// One topic and its events, for StaticTopicRouter; made by `topic(...)`.
///
/// @code
///   constexpr auto orders = emissions::topic("orders", "order_created", "order_updated");
/// @endcode
template <std::size_t N>
struct StaticTopicGroup {
  std::string_view topic;                  ///< the topic's name
  std::array<std::string_view, N> events;  ///< its events, in declaration order
};

/// A topic and its events, from string literals (or other constants with static storage).
template <std::convertible_to<std::string_view>... Events>
consteval StaticTopicGroup<sizeof...(Events)> topic(std::string_view name,
                                                    const Events&... events) {
  return {name, {std::string_view(events)...}};
}

/// A router built at compile time from `topic(...)` groups: `Topics` topics, `Events` events.
/// A duplicate event or topic, or an empty name, is a compile error naming the mistake
/// (e.g. "call to non-constexpr function ... duplicate_event_name_in_topic_router()").
///
/// @code
///   constexpr emissions::StaticTopicRouter kTopics{emissions::topic("users", "user_created")};
///   static_assert(kTopics.topics().size() == 1);
///   kTopics.topic_for_event(event.name);  // at run time: O(1), no allocation
/// @endcode
///
/// The texts are views of the literals it was built from. The EventName overload is not
/// constexpr and hashes the text (EventName's own hash is not known at compile time).
template <std::size_t Topics, std::size_t Events>
class StaticTopicRouter {
 public:
  /// Builds the tables from the groups, in the compiler. Prefer make_topic_router() or
  /// class template argument deduction, which count the topics and events.
  template <std::size_t... Ns>
  consteval explicit StaticTopicRouter(const StaticTopicGroup<Ns>&... groups) {
    static_assert(sizeof...(Ns) == Topics && (Ns + ... + std::size_t{0}) == Events,
                  "StaticTopicRouter<Topics, Events>: the groups hold a different number of "
                  "topics or events (let make_topic_router or CTAD count them)");
    std::uint32_t t = 0;
    std::uint32_t e = 0;
    [[maybe_unused]] auto add = [&](const auto& group) {  // [[maybe_unused]]: no groups
      if (group.topic.empty()) detail::empty_topic_name_in_topic_router();  // "" as a topic
      topics_[t] = group.topic;
      topic_begin_[t] = e;
      if (detail::insert(topic_slots_, topics_, t, t) != detail::kNoEntry) {
        detail::duplicate_topic_name_in_topic_router();  // a topic is declared twice
      }
      for (const std::string_view event : group.events) {
        if (event.empty()) detail::empty_event_name_in_topic_router();  // "" as an event
        events_[e] = event;
        if (detail::insert(event_slots_, events_, e, t) != detail::kNoEntry) {
          detail::duplicate_event_name_in_topic_router();  // an event can have only one topic
        }
        ++e;
      }
      ++t;
    };
    (add(groups), ...);
    topic_begin_[Topics] = e;
  }

  /// The topic of `event`, or nullopt for an event no group lists.
  /// @{
  [[nodiscard]] constexpr std::optional<std::string_view> topic_for_event(
      std::string_view event) const noexcept {
    const std::uint32_t t = detail::find(event_slots_, events_, event, detail::hash_text(event));
    if (t == detail::kNoEntry) return std::nullopt;
    return topics_[t];
  }
  [[nodiscard]] constexpr std::optional<std::string_view> topic_for_event(
      const char* event) const noexcept {
    return topic_for_event(std::string_view(event));
  }
  [[nodiscard]] constexpr std::optional<std::string_view> topic_for_event(
      const std::string& event) const noexcept {
    return topic_for_event(std::string_view(event));
  }
  [[nodiscard]] std::optional<std::string_view> topic_for_event(EventName event) const noexcept {
    return topic_for_event(event.view());
  }
  /// @}

  /// Every topic, in declaration order.
  [[nodiscard]] constexpr std::span<const std::string_view> topics() const noexcept {
    return topics_;
  }
  /// The events of `topic` in declaration order; empty for an unknown topic.
  [[nodiscard]] constexpr std::span<const std::string_view> events_for_topic(
      std::string_view topic) const noexcept {
    const std::uint32_t t = detail::find(topic_slots_, topics_, topic, detail::hash_text(topic));
    if (t == detail::kNoEntry) return {};
    return std::span<const std::string_view>(events_).subspan(
        topic_begin_[t], topic_begin_[t + 1] - topic_begin_[t]);
  }

 private:
  std::array<std::string_view, Topics> topics_{};
  std::array<std::string_view, Events> events_{};        // grouped by topic, in declaration order
  std::array<std::uint32_t, Topics + 1> topic_begin_{};  // topic t owns [begin[t], begin[t+1])
  std::array<detail::TextSlot, detail::table_capacity(Events)> event_slots_{};
  std::array<detail::TextSlot, detail::table_capacity(Topics)> topic_slots_{};
};

/// Deduces the counts: `constexpr StaticTopicRouter kTopics{topic(...), topic(...)};`.
template <std::size_t... Ns>
StaticTopicRouter(const StaticTopicGroup<Ns>&...)
    -> StaticTopicRouter<sizeof...(Ns), (Ns + ... + std::size_t{0})>;

/// A StaticTopicRouter from `topic(...)` groups, counting them for you:
/// `constexpr auto kTopics = make_topic_router(topic("orders", "order_created"), ...);`
template <std::size_t... Ns>
consteval auto make_topic_router(const StaticTopicGroup<Ns>&... groups) {
  return StaticTopicRouter<sizeof...(Ns), (Ns + ... + std::size_t{0})>(groups...);
}

/// One topic and its events, for TopicRouter: `{"orders", {"order_created", "order_updated"}}`.
struct TopicGroup {
  std::string topic;                ///< the topic's name
  std::vector<std::string> events;  ///< its events, in declaration order
};

/// A router built at run time. Throws ConfigError, naming the value, for an empty topic or
/// event name, a topic declared twice, or an event listed twice (in one topic or two).
/// A topic may list no events.
///
/// @code
///   emissions::TopicRouter router{{"orders", {"order_created"}}, {"users", {"user_created"}}};
///   emissions::TopicRouter from_file(groups);   // std::vector<TopicGroup>
///   emissions::TopicRouter same(kTopics);       // from a StaticTopicRouter
/// @endcode
///
/// The router owns copies of its texts, shared by its copies: returned views stay valid while
/// this router or any copy of it lives, also after a move. A moved-from router finds nothing.
class TopicRouter {
 public:
  /// No topics: every lookup finds nothing.
  TopicRouter() noexcept = default;
  /// The topics and events of `groups`, in their order. Throws ConfigError (see above).
  /// @{
  TopicRouter(std::initializer_list<TopicGroup> groups)
      : TopicRouter(std::span<const TopicGroup>(groups.begin(), groups.size())) {}
  explicit TopicRouter(std::span<const TopicGroup> groups);
  /// @}
  /// The same routes as a StaticTopicRouter, with copies of its texts.
  template <std::size_t Topics, std::size_t Events>
  explicit TopicRouter(const StaticTopicRouter<Topics, Events>& router)
      : TopicRouter(groups_of(router)) {}

  /// The topic of `event`, or nullopt for an event no group lists. O(1) average, no
  /// allocation. The EventName overload probes a table keyed by its precomputed hash and
  /// compares interned pointers, so it never reads the text.
  /// @{
  [[nodiscard]] std::optional<std::string_view> topic_for_event(
      std::string_view event) const noexcept {
    const std::uint32_t t = detail::find(event_slots_, events_, event, detail::hash_text(event));
    if (t == detail::kNoEntry) return std::nullopt;
    return topics_[t];
  }
  [[nodiscard]] std::optional<std::string_view> topic_for_event(EventName event) const noexcept {
    if (name_slots_.empty()) return std::nullopt;
    const std::size_t mask = name_slots_.size() - 1;
    for (std::size_t i = detail::first_slot(event.hash(), mask);; i = (i + 1) & mask) {
      const NameSlot& slot = name_slots_[i];
      if (slot.topic == detail::kNoEntry) return std::nullopt;
      if (slot.name == event) return topics_[slot.topic];
    }
  }
  [[nodiscard]] std::optional<std::string_view> topic_for_event(const char* event) const noexcept {
    return topic_for_event(std::string_view(event));
  }
  [[nodiscard]] std::optional<std::string_view> topic_for_event(
      const std::string& event) const noexcept {
    return topic_for_event(std::string_view(event));
  }
  /// @}

  /// Every topic, in declaration order.
  [[nodiscard]] std::span<const std::string_view> topics() const noexcept { return topics_; }
  /// The events of `topic` in declaration order; empty for an unknown topic. O(1) average.
  [[nodiscard]] std::span<const std::string_view> events_for_topic(
      std::string_view topic) const noexcept {
    const std::uint32_t t = detail::find(topic_slots_, topics_, topic, detail::hash_text(topic));
    if (t == detail::kNoEntry) return {};
    return std::span<const std::string_view>(events_).subspan(
        topic_begin_[t], topic_begin_[t + 1] - topic_begin_[t]);
  }

 private:
  struct NameSlot {
    EventName name;
    std::uint32_t topic = detail::kNoEntry;
  };

  template <std::size_t Topics, std::size_t Events>
  static std::vector<TopicGroup> groups_of(const StaticTopicRouter<Topics, Events>& router) {
    std::vector<TopicGroup> groups;
    groups.reserve(Topics);
    for (const std::string_view topic : router.topics()) {
      const auto events = router.events_for_topic(topic);
      groups.push_back(
          {std::string(topic), std::vector<std::string>(events.begin(), events.end())});
    }
    return groups;
  }

  std::shared_ptr<const char[]> text_;  // every topic and event text, back to back
  std::vector<std::string_view> topics_;
  std::vector<std::string_view> events_;    // grouped by topic, in declaration order
  std::vector<std::uint32_t> topic_begin_;  // topic t owns [begin[t], begin[t+1])
  std::vector<detail::TextSlot> event_slots_;
  std::vector<detail::TextSlot> topic_slots_;
  std::vector<NameSlot> name_slots_;
};

}  // namespace emissions
