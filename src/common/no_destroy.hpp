// Internal: storage for a process-wide object that is never destroyed, so code running in
// other objects' static destructors (an Emitter alive at exit, say) can still use it.
#pragma once

namespace emissions::detail {

template <typename T>
union NoDestroy {
  T value;
  NoDestroy() : value() {}
  ~NoDestroy() {}
};

}  // namespace emissions::detail
