// Internal: the one holder for process-wide objects that are never destroyed.
//
// A static object is destroyed at exit, in reverse order of construction, possibly before
// other static objects that still use it: an Emitter at namespace scope in the user's
// program drains, delivers and reports telemetry from its destructor, after the library's
// own statics in other files may already be gone. Every process-wide object the library
// may touch during static destruction (telemetry probes and registries, the interned
// empty name, the empty metadata object) therefore lives in a NoDestroy<T>: constructed in
// place, its destructor never run, its memory reclaimed by the operating system.
//
//   Registry& registry() {
//     static NoDestroy<Registry> holder;  // function-local: built on first use
//     return *holder;
//   }
//
// Put a NoDestroy<T> at namespace scope in a header only as an `inline` variable (one
// instance in the whole program, however many files include it), never `static` or in an
// unnamed namespace (one instance per file). Constructing T is the only cost: access is a
// plain reference. Thread-safety is T's own.
#pragma once

#include <concepts>
#include <utility>

namespace emissions::detail {

template <typename T>
class NoDestroy {
 public:
  // Constructs T from `args` in place.
  template <typename... Args>
  requires std::constructible_from<T, Args...>
  constexpr explicit NoDestroy(Args&&... args) : value_(std::forward<Args>(args)...) {}

  // Deliberately leaves value_ alone.
  constexpr ~NoDestroy() {}

  NoDestroy(const NoDestroy&) = delete;
  NoDestroy& operator=(const NoDestroy&) = delete;

  [[nodiscard]] constexpr T& get() noexcept { return value_; }
  [[nodiscard]] constexpr const T& get() const noexcept { return value_; }
  [[nodiscard]] constexpr T& operator*() noexcept { return value_; }
  [[nodiscard]] constexpr const T& operator*() const noexcept { return value_; }
  [[nodiscard]] constexpr T* operator->() noexcept { return &value_; }
  [[nodiscard]] constexpr const T* operator->() const noexcept { return &value_; }

 private:
  // A union member is not destroyed with its enclosing object unless the destructor says
  // so, and ours does not.
  union {
    T value_;
  };
};

}  // namespace emissions::detail
