// Internal: which Emitter the ambient functions (emissions::start(), ...) use.
//
// Emitters constructed with make_default = true (or made default later) form a stack; the
// default is the newest one that is alive and not shut down. So when the newest of two
// emitters dies or shuts down, the older one is the default again.
#pragma once

#include <memory>

namespace emissions::detail {

class Core;

// Puts `core` on top of the stack (moving it there if it is already in it). Thread-safe.
void set_default_core(const std::shared_ptr<Core>& core);
// Takes `core` off the stack (its Emitter is being destroyed). Thread-safe.
void clear_default_core(const Core* core);
// `core` was shut down: threads re-resolve the default on their next ambient call.
void default_core_changed();

struct DefaultCore {
  const std::shared_ptr<Core>& core;  // null when no emitter on the stack is open
  bool closed;                        // no open one, and the newest on the stack has been shut down
};
// The default for this thread, re-resolved only when the stack changed (no shared
// reference-count traffic per request).
DefaultCore default_core();

}  // namespace emissions::detail
