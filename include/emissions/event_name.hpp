/// @file
/// emissions/event_name.hpp: interned event names that compare in O(1).
///
/// Every distinct text is stored once for the life of the process; an EventName is a
/// pointer to that copy, so equality and hashing never look at the characters.
///
/// @code
///   emissions::EventName created = "order_created";   // implicit from a literal
///   created == emissions::EventName("order_created");  // true, one pointer compare
///   created.str();                                     // "order_created"
/// @endcode
///
/// Names are meant to be a bounded vocabulary (like Elixir atoms): do not build them from
/// unbounded user input, every distinct text stays allocated until the process exits.
#pragma once

#include <compare>
#include <cstddef>
#include <functional>
#include <iosfwd>
#include <string>
#include <string_view>

namespace emissions {

namespace detail {
struct InternedName {
  std::string text;
  std::size_t hash;
};
// Returns the unique entry for `text`. Thread-safe; lock-free for names this thread has
// seen recently, otherwise a short shared lock.
const InternedName* intern(std::string_view text);
const InternedName* empty_name() noexcept;
}  // namespace detail

/// An interned event name: a pointer-sized handle to the one stored copy of its text.
/// Cheap to copy and to pass by value. Thread-safe: construction may run on any thread.
class EventName {
 public:
  /// The empty name; `emit` rejects it with invalid_argument.
  EventName() noexcept : entry_(detail::empty_name()) {}
  /// The name with this text, stored on first use. Implicit, so that a literal is a name.
  /// Thread-safe; lock-free for names this thread has seen recently.
  /// @{
  EventName(std::string_view text) : entry_(detail::intern(text)) {}         // NOLINT: implicit
  EventName(const char* text) : EventName(std::string_view(text)) {}         // NOLINT: implicit
  EventName(const std::string& text) : EventName(std::string_view(text)) {}  // NOLINT
  /// @}

  /// The text. Valid for the life of the process.
  /// @{
  [[nodiscard]] const std::string& str() const noexcept { return entry_->text; }
  [[nodiscard]] std::string_view view() const noexcept { return entry_->text; }
  /// @}
  /// Whether this is the empty name.
  [[nodiscard]] bool empty() const noexcept { return entry_->text.empty(); }
  /// The text's hash, computed once when the text was first stored.
  [[nodiscard]] std::size_t hash() const noexcept { return entry_->hash; }

  /// Same text: one pointer compare.
  friend bool operator==(EventName a, EventName b) noexcept { return a.entry_ == b.entry_; }
  /// Ordering is by text, so sorted containers list names alphabetically.
  friend std::strong_ordering operator<=>(EventName a, EventName b) noexcept {
    if (a.entry_ == b.entry_) return std::strong_ordering::equal;
    return a.entry_->text.compare(b.entry_->text) < 0 ? std::strong_ordering::less
                                                      : std::strong_ordering::greater;
  }

 private:
  const detail::InternedName* entry_;
};

/// Writes the text.
std::ostream& operator<<(std::ostream& os, EventName name);

}  // namespace emissions

/// Hashing for unordered containers.
template <>
struct std::hash<emissions::EventName> {
  /// `n.hash()`: no work at all.
  std::size_t operator()(emissions::EventName n) const noexcept { return n.hash(); }
};
