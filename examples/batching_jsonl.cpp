// Batching in front of JsonLines: the file gets one write per batch of up to 100 events (or
// whatever arrived within 10 ms) instead of one per pipeline batch.
//
//   $ example_batching_jsonl            # writes to a temporary file and reports on it
//   $ example_batching_jsonl -          # the lines go to standard output
//   wrote 250 events to /tmp/batching_jsonl_example.jsonl: 250 delivered, 0 failed
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <utility>

#include "emissions/adapters/batching.hpp"
#include "emissions/adapters/json_lines.hpp"
#include "emissions/config.hpp"
#include "emissions/emitter.hpp"
#include "emissions/transaction.hpp"

int main(int argc, char** argv) {
  using namespace std::chrono_literals;
  const bool to_stdout = argc > 1 && std::string(argv[1]) == "-";
  const std::string path =
      to_stdout
          ? "-"
          : (std::filesystem::temp_directory_path() / "batching_jsonl_example.jsonl").string();
  if (!to_stdout) std::filesystem::remove(path);  // start from an empty file

  auto batching = std::make_shared<emissions::adapters::Batching>(
      std::make_shared<emissions::adapters::JsonLines>(path),
      emissions::adapters::BatchingOptions{.max_size = 100, .linger = 10ms});

  emissions::Config config;
  // Each transaction's events stay unsettled in Batching until their inner batch is
  // written: a window of 64 transactions lets batches of 100 events fill.
  config.add_adapter(batching, {.max_in_flight = 64});
  emissions::Emitter emitter(std::move(config));

  for (int order = 0; order < 50; ++order) {
    emissions::Transaction tx = emitter.start();
    for (int line = 0; line < 5; ++line) {
      if (!tx.emit("order_line_added", {{"order", order}, {"line", line}}).ok()) return 1;
    }
    if (const emissions::Status s = tx.commit(); !s.ok()) {
      std::cerr << "commit failed: " << s.to_string() << '\n';
      return 1;
    }
  }
  // drain() also makes Batching hand over its partial batch, so the file is complete here.
  if (const emissions::Status s = emitter.drain(5s); !s.ok()) {
    std::cerr << "drain failed: " << s.to_string() << '\n';
    return 1;
  }

  if (!to_stdout) {
    std::ifstream in(path);
    std::size_t lines = 0;
    for (std::string line; std::getline(in, line);)
      ++lines;
    std::cout << "wrote " << lines << " events to " << path << ": " << batching->delivered()
              << " delivered, " << batching->failed() << " failed\n";
  }
  return batching->failed() == 0 ? 0 : 1;
}
