// Helpers shared by the emissions-bench scenarios.
#include <stdlib.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "bench.hpp"

namespace emissions::bench {

nlohmann::json make_payload(Payload payload) {
  switch (payload) {
    case Payload::integer:
      return nlohmann::json(std::int64_t{123'456'789});
    case Payload::object:
      return nlohmann::json{{"id", 123'456'789}, {"total", 99.5}};
  }
  return nullptr;
}

const char* describe(Payload payload) {
  switch (payload) {
    case Payload::integer:
      return "pre-built JSON integer, copied per emit (no allocation)";
    case Payload::object:
      return R"(pre-built JSON object {"id":…,"total":…}, copied per emit (allocates))";
  }
  return "?";
}

EventName bench_event_name() {
  static const EventName kName("order_created");
  return kName;
}

std::int64_t steady_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double process_cpu_seconds() noexcept {
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0.0;
  const auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

std::vector<std::shared_ptr<NoOpAdapter>> make_adapters(std::size_t count) {
  std::vector<std::shared_ptr<NoOpAdapter>> adapters;
  adapters.reserve(count);
  for (std::size_t i = 0; i < count; ++i)
    adapters.push_back(std::make_shared<NoOpAdapter>("noop-" + std::to_string(i)));
  return adapters;
}

std::uint64_t events_per_producer(const Workload& w) {
  const std::uint64_t producers = std::max<std::uint64_t>(w.producers, 1);
  return w.events / producers / kEventsPerCommit * kEventsPerCommit;
}

double percentile(const std::vector<std::int64_t>& sorted, double q) {
  if (sorted.empty()) return 0.0;
  const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  const std::size_t index = std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1);
  return static_cast<double>(sorted[index]);
}

TempDir::TempDir(std::string_view prefix) {
  std::string pattern = (std::filesystem::temp_directory_path() /
                         ("emissions-bench-" + std::string(prefix) + "-XXXXXX"))
                            .string();
  if (::mkdtemp(pattern.data()) == nullptr) throw BenchFailure("mkdtemp failed");
  path = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path, ignored);
}

double median(std::vector<double> values) {
  if (values.empty()) return 0.0;
  const auto mid = values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2);
  std::nth_element(values.begin(), mid, values.end());
  if (values.size() % 2 == 1) return *mid;
  const double upper = *mid;
  const double lower = *std::max_element(values.begin(), mid);
  return (lower + upper) / 2.0;
}

}  // namespace emissions::bench
