// The demo's command line: a plain struct with defaults, filled by parse_options.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <span>
#include <string>

#include "emissions/spool.hpp"

namespace demo {

// Where the events go without --out: emissions-demo.jsonl in the temporary directory
// ($TMPDIR, else /tmp), never the current directory (a run writes hundreds of megabytes).
[[nodiscard]] std::string default_output_path();

struct Options {
  std::uint64_t events = 500'000;  // target of emitted events, discarded ones included
  std::size_t threads = 4;         // request threads
  std::size_t replicas = 2;        // extra no-op adapters, to show the fan-out
  std::string out = default_output_path();
  std::uint64_t seed = 42;
  double fail_rate = 0.10;  // share of orders that fail and terminate their transaction
  bool slow = false;        // add a slow adapter with a small drop_oldest queue
  bool verify = false;      // parse every line of --out after the run
  std::string spool;        // --spool DIR: the durable spool's directory; empty: no spool
  emissions::Durability durability = emissions::Durability::process;  // with --spool
  // --serve [PORT]: the live viewer (emissions::http) on 127.0.0.1:PORT (0: any free port);
  // the demo keeps serving after the run until Ctrl-C.
  std::optional<std::uint16_t> serve;
};

// What parse_options decided.
struct ParseResult {
  std::optional<Options> options;  // set when the demo should run
  int exit_code = 0;               // when it should not: 0 after --help, 2 for a bad flag
};

// Parses `args` (without the program name). Writes usage to `out` for --help, and the
// error plus a hint to `err` for a bad flag.
[[nodiscard]] ParseResult parse_options(std::span<const char* const> args, std::ostream& out,
                                        std::ostream& err);

}  // namespace demo
