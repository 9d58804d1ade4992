// Internal: which Emitter the ambient functions (emissions::start(), ...) use.
#pragma once

#include <memory>

namespace emissions::detail {

class Core;

// Makes `core` the default. Thread-safe.
void set_default_core(const std::shared_ptr<Core>& core);
// Clears the default if it is `core`. Thread-safe.
void clear_default_core(const Core* core);
// The default for this thread, refreshed only when the default changed (no shared
// reference-count traffic per request). Null when there is none.
const std::shared_ptr<Core>& default_core();

}  // namespace emissions::detail
