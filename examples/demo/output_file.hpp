// The JSON-lines file after the run: how many lines it has and, on request, whether each
// one is an event envelope. The demo compares both with the adapter's statistics.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace demo {

// Empties `path` if it is a regular file, so that the file holds this run only (the
// JsonLines adapter appends). Returns an error message, empty on success.
[[nodiscard]] std::string truncate_output(const std::string& path);

struct OutputCheck {
  bool inspected = false;  // false when `path` is not a regular file (/dev/null, a pipe)
  std::uint64_t lines = 0;
  // With parse: events per "name" field, and what went wrong with the first bad line.
  std::map<std::string, std::uint64_t> names;
  std::uint64_t bad_lines = 0;
  std::string first_problem;
};

// Counts the lines of `path`; with `parse`, also parses each one and checks that it has
// the envelope's fields.
[[nodiscard]] OutputCheck inspect_output(const std::string& path, bool parse);

}  // namespace demo
