/// @file
/// emissions/status.hpp: errors as values on the hot path, exceptions for configuration.
///
/// Functions that can fail for expected reasons (a full queue, a closed emitter, a bad
/// argument) return `Status` and never throw. Mistakes in configuration throw `ConfigError`
/// once, at construction, naming the field and the value.
///
/// @code
///   emissions::Status s = emissions::emit("order_created", {{"id", 1}});
///   if (!s.ok()) log(s.code(), s.message());
/// @endcode
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace emissions {

/// The shared error codes. Keep the list short: callers switch on it.
enum class Errc {
  ok = 0,            ///< no error
  already_started,   ///< start() while a buffer is active on this thread
  not_started,       ///< emit/commit/flush with no active buffer
  invalid_argument,  ///< the input was rejected; nothing already accepted was lost
  overloaded,        ///< a bounded queue stayed full for its whole block_timeout
  timeout,           ///< a deadline passed before the work finished
  closed,            ///< the emitter (or component) has been shut down
  already_exists,    ///< an id or name is already registered
  not_found,         ///< an id or name is not registered
  unavailable,       ///< a destination could not be reached; trying again may succeed
  internal,          ///< a bug or an unexpected failure inside a component
};

/// The stable lower-case name of a code, e.g. "not_started".
[[nodiscard]] std::string_view to_string(Errc code) noexcept;

/// The result of an operation that can fail for an expected reason.
///
/// Default-constructed is ok. Cheap to return when ok (an enum and an empty string).
///
/// @code
///   Status s(Errc::invalid_argument, "event name is empty");
///   s.ok();        // false
///   s.code();      // Errc::invalid_argument
///   s.message();   // "event name is empty"
///   s.to_string(); // "invalid_argument: event name is empty"
/// @endcode
class [[nodiscard]] Status {
 public:
  /// Ok.
  Status() noexcept = default;
  /// An error (or ok, for `Errc::ok`) with a message for people.
  Status(Errc code, std::string message) : code_(code), message_(std::move(message)) {}

  /// Whether the code is `Errc::ok`.
  [[nodiscard]] bool ok() const noexcept { return code_ == Errc::ok; }
  /// The code callers switch on.
  [[nodiscard]] Errc code() const noexcept { return code_; }
  /// What went wrong, for people; empty when ok.
  [[nodiscard]] const std::string& message() const noexcept { return message_; }
  /// `"ok"`, or `"<code>: <message>"`.
  [[nodiscard]] std::string to_string() const;

  /// ok().
  explicit operator bool() const noexcept { return ok(); }
  /// Whether `a` has code `c`: `if (s == Errc::overloaded) retry();`.
  friend bool operator==(const Status& a, Errc c) noexcept { return a.code_ == c; }

  /// Keeps the first error when combining results: `s.update(other)`.
  void update(const Status& other) {
    if (ok() && !other.ok()) *this = other;
  }

 private:
  Errc code_ = Errc::ok;
  std::string message_;
};

/// Thrown at construction for an invalid configuration; the message names the field and
/// the value, e.g. "pipeline.max_demand must be > 0 (got 0)".
class ConfigError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

}  // namespace emissions
