// Internal: the Prometheus text exposition (format 0.0.4) of an Emitter's counters.
#pragma once

#include <string>

#include "emissions/emitter.hpp"

namespace emissions::http::detail {

// What /metrics serves. `with_spool`: the emitter was configured with a spool (then
// emissions_spool_backlog_bytes is included).
[[nodiscard]] std::string render_metrics(const EmitterStats& stats, bool with_spool);

// A label value escaped as the text format wants (backslash, double quote, newline).
[[nodiscard]] std::string escape_label(std::string_view value);

}  // namespace emissions::http::detail
