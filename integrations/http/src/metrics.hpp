// Internal: the Prometheus text exposition (format 0.0.4) of an Emitter's counters.
#pragma once

#include <cstdint>
#include <string>

#include "drop_counter.hpp"
#include "emissions/emitter.hpp"

namespace emissions::http::detail {

// What the server itself counts, beside the Emitter's counters.
struct ServerCounters {
  std::uint64_t accept_errors = 0;  // accept() calls that failed (EMFILE, ENFILE, ...)
};

// What /metrics serves. `with_spool`: the emitter was configured with a spool (then
// emissions_spool_backlog_bytes is included). `drops`: drops by (adapter, reason); only the
// adapters of `stats` are shown, each with the reasons overflow and shutdown (0 until one
// happens) and any other reason counted for it.
[[nodiscard]] std::string render_metrics(const EmitterStats& stats, bool with_spool,
                                         const DropCounter::Counts& drops,
                                         const ServerCounters& server);

// A label value escaped as the text format wants (backslash, double quote, newline).
[[nodiscard]] std::string escape_label(std::string_view value);

}  // namespace emissions::http::detail
