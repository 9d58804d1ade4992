#include "output_file.hpp"

#include <filesystem>
#include <fstream>
#include <string_view>
#include <system_error>

#include <nlohmann/json.hpp>

namespace demo {

std::string truncate_output(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return {};
  std::filesystem::resize_file(path, 0, ec);
  if (ec) return "cannot truncate " + path + ": " + ec.message();
  return {};
}

OutputCheck inspect_output(const std::string& path, bool parse) {
  OutputCheck check;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return check;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    check.first_problem = "cannot open " + path;
    return check;
  }
  check.inspected = true;
  std::string line;
  while (std::getline(in, line)) {
    ++check.lines;
    if (!parse) continue;
    const auto bad = [&check](std::string problem) {
      if (check.bad_lines++ == 0) {
        check.first_problem = "line " + std::to_string(check.lines) + ": " + std::move(problem);
      }
    };
    const nlohmann::json envelope =
        nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (envelope.is_discarded()) {
      bad("not valid JSON");
      continue;
    }
    bool complete = envelope.is_object();
    for (const std::string_view field : {"id", "name", "payload", "metadata", "emitted_at"})
      complete = complete && envelope.contains(field);
    if (!complete || !envelope.at("name").is_string()) {
      bad("not an event envelope");
      continue;
    }
    ++check.names[envelope.at("name").get<std::string>()];
  }
  return check;
}

}  // namespace demo
