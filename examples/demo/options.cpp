#include "options.hpp"

#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <ostream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace demo {
namespace {

constexpr std::string_view kUsage = R"(usage: emissions-demo [options]

Simulates an order service: request threads each run orders inside a transaction
(emissions::start / emit / commit), a share of them failing and calling terminate().
Committed events fan out to a JSON-lines file, a summary adapter and replica adapters;
at the end a table shows what each adapter received, the throughput and the
commit-to-delivery latency. The run fails (exit 1) if any adapter's counters do not add up.

options:
  --events N      events to emit in total, discarded ones included; each thread stops
                  starting orders once its share is reached (default 500000)
  --threads N     request threads, 1..256 (default 4)
  --adapters N    extra no-op "replica" adapters, 0..64, to show fan-out (default 2)
  --out PATH      JSON-lines output file, truncated at start (default
                  emissions-demo.jsonl in $TMPDIR or /tmp; scripts/demo.sh passes
                  build/release/emissions-demo.jsonl)
  --seed N        seed of the simulation; the same seed gives the same orders (default 42)
  --fail-rate P   share of orders that fail, 0..1 (default 0.1)
  --slow          add a slow adapter with a small drop_oldest queue: memory stays bounded
                  and its drops are counted (with --spool nothing is dropped: its
                  backlog waits on disk and the run ends once it is delivered)
  --verify        after the run, parse every line of --out and check it against the stats
  --spool DIR     keep committed events in a durable spool in DIR (created if missing;
                  one run at a time): a second progress line shows its bytes on disk
                  against max_bytes and each adapter's backlog. A run first delivers what
                  an earlier one left in DIR; the summary says what is left for the next
  --durability D  with --spool: process (survives a crash of the process; the default)
                  or machine (fdatasync before commit returns; survives a power loss)
  --serve [PORT]  serve the live event viewer, /metrics and health checks on
                  127.0.0.1:PORT (default: any free port; the URL is printed), and keep
                  serving after the run until Ctrl-C
  -h, --help      show this help

Ctrl-C (SIGINT) or SIGTERM stops the run early: no new orders start, what was committed
is delivered, and the summary covers what ran. Press Ctrl-C again to quit at once (with
--spool, what was not delivered stays in DIR for the next run).

exit status: 0 ok, 1 a check failed or the run could not start (a bad --out, a --spool
DIR that cannot be used or that another run holds), 2 bad command line,
130 (128 + the signal's number) stopped by SIGINT, 143 by SIGTERM
)";

// "--name=value" or "--name value": the value of a flag that takes one.
class Args {
 public:
  explicit Args(std::span<const char* const> args) : args_(args) {}

  [[nodiscard]] bool done() const { return next_ >= args_.size(); }

  // Splits the next argument into flag and inline value ("--events=5" -> "--events", "5").
  std::string_view take_flag() {
    std::string_view arg = args_[next_++];
    inline_value_.reset();
    if (arg.starts_with("--")) {
      if (const auto eq = arg.find('='); eq != std::string_view::npos) {
        inline_value_ = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
      }
    }
    return arg;
  }

  [[nodiscard]] bool has_inline_value() const { return inline_value_.has_value(); }

  // The next argument, if there is one and it is not a flag (for flags whose value is
  // optional), without taking it.
  [[nodiscard]] std::optional<std::string_view> peek_value() const {
    if (inline_value_) return inline_value_;
    if (done() || std::string_view(args_[next_]).starts_with("-")) return std::nullopt;
    return std::string_view(args_[next_]);
  }

  std::optional<std::string_view> take_value() {
    if (inline_value_) return std::exchange(inline_value_, std::nullopt);
    if (done()) return std::nullopt;
    return std::string_view(args_[next_++]);
  }

 private:
  std::span<const char* const> args_;
  std::size_t next_ = 0;
  std::optional<std::string_view> inline_value_;
};

template <typename Int>
std::optional<Int> parse_int(std::string_view text, Int min, Int max) {
  Int value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  if (value < min || value > max) return std::nullopt;
  return value;
}

std::optional<double> parse_share(std::string_view text) {
  // std::from_chars for double is missing from some standard libraries still in use.
  const std::string copy(text);
  char* end = nullptr;
  const double value = std::strtod(copy.c_str(), &end);
  if (copy.empty() || end != copy.c_str() + copy.size()) return std::nullopt;
  if (!(value >= 0.0 && value <= 1.0)) return std::nullopt;  // also rejects NaN
  return value;
}

}  // namespace

std::string default_output_path() {
  std::error_code ec;
  const std::filesystem::path dir = std::filesystem::temp_directory_path(ec);
  return ((ec ? std::filesystem::path("/tmp") : dir) / "emissions-demo.jsonl").string();
}

ParseResult parse_options(std::span<const char* const> args, std::ostream& out, std::ostream& err) {
  Options options;
  bool durability_given = false;
  Args it(args);
  const auto fail = [&err](std::string_view message) {
    err << "emissions-demo: " << message << "\nTry 'emissions-demo --help'.\n";
    return ParseResult{std::nullopt, 2};
  };

  while (!it.done()) {
    const std::string_view flag = it.take_flag();

    if (flag == "-h" || flag == "--help") {
      out << kUsage;
      return ParseResult{std::nullopt, 0};
    }
    if (flag == "--serve") {
      options.serve = 0;
      if (const auto value = it.peek_value()) {
        const auto port = parse_int<std::uint16_t>(*value, 0, 65535);
        if (!port)
          return fail("--serve takes a port from 0 to 65535 (got '" + std::string(*value) + "')");
        (void)it.take_value();
        options.serve = *port;
      }
      continue;
    }
    if (flag == "--slow" || flag == "--verify") {
      if (it.has_inline_value()) return fail(std::string(flag) + " takes no value");
      (flag == "--slow" ? options.slow : options.verify) = true;
      continue;
    }

    const bool known = flag == "--events" || flag == "--threads" || flag == "--adapters" ||
                       flag == "--out" || flag == "--seed" || flag == "--fail-rate" ||
                       flag == "--spool" || flag == "--durability";
    if (!known) return fail("unknown option '" + std::string(flag) + "'");
    const std::optional<std::string_view> value = it.take_value();
    if (!value) return fail(std::string(flag) + " needs a value");
    const std::string got = " (got '" + std::string(*value) + "')";

    if (flag == "--events") {
      const auto n = parse_int<std::uint64_t>(*value, 1, 1'000'000'000);
      if (!n) return fail("--events must be a whole number from 1 to 1000000000" + got);
      options.events = *n;
    } else if (flag == "--threads") {
      const auto n = parse_int<std::size_t>(*value, 1, 256);
      if (!n) return fail("--threads must be a whole number from 1 to 256" + got);
      options.threads = *n;
    } else if (flag == "--adapters") {
      const auto n = parse_int<std::size_t>(*value, 0, 64);
      if (!n) return fail("--adapters must be a whole number from 0 to 64" + got);
      options.replicas = *n;
    } else if (flag == "--out") {
      if (value->empty()) return fail("--out needs a file name");
      // Standard output carries the report; mixing events into it would garble both.
      if (*value == "-") return fail("--out - is not supported: stdout carries the report");
      options.out = std::string(*value);
    } else if (flag == "--spool") {
      if (value->empty()) return fail("--spool needs a directory");
      options.spool = std::string(*value);
    } else if (flag == "--durability") {
      if (*value == "process") {
        options.durability = emissions::Durability::process;
      } else if (*value == "machine") {
        options.durability = emissions::Durability::machine;
      } else {
        return fail("--durability must be process or machine" + got);
      }
      durability_given = true;
    } else if (flag == "--seed") {
      const auto n = parse_int<std::uint64_t>(*value, 0, std::numeric_limits<std::uint64_t>::max());
      if (!n) return fail("--seed must be a whole number" + got);
      options.seed = *n;
    } else {  // --fail-rate
      const auto p = parse_share(*value);
      if (!p) return fail("--fail-rate must be a number from 0 to 1" + got);
      options.fail_rate = *p;
    }
  }
  if (durability_given && options.spool.empty()) return fail("--durability needs --spool DIR");
  return ParseResult{options, 0};
}

}  // namespace demo
