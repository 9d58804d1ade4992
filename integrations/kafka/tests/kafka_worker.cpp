// A worker process for the scale-out test (kafka_scale_out_test.cpp): a KafkaSource in a
// group feeding an Emitter whose one adapter appends "<key> <seq> <event id>" per event to a
// file, one write(2) per batch on a descriptor opened with O_APPEND, so that a SIGKILL loses
// nothing that was handled, and keeps "<output>.partitions" up to date with how many
// partitions it holds. SIGTERM stops it cleanly (stop, then shutdown).
//
//   emissions_kafka_worker <bootstraps> <group> <topic> <output file>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include "emissions/emitter.hpp"
#include "emissions/sources/kafka.hpp"
#include "emissions/telemetry.hpp"

namespace {

class AppendLines final : public emissions::Adapter {
 public:
  explicit AppendLines(const char* path)
      : fd_(::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) {}
  ~AppendLines() override {
    if (fd_ >= 0) ::close(fd_);
  }
  AppendLines(const AppendLines&) = delete;
  AppendLines& operator=(const AppendLines&) = delete;

  [[nodiscard]] bool ok() const { return fd_ >= 0; }
  std::string_view name() const override { return "append_lines"; }
  emissions::Status handle_events(std::span<const emissions::Event> batch) override {
    std::string lines;
    for (const emissions::Event& e : batch) {
      lines += e.payload.at("key").get<std::string>() + " " +
               std::to_string(e.payload.at("seq").get<long long>()) + " " + e.id.str() + "\n";
    }
    std::size_t written = 0;
    while (written < lines.size()) {
      const ssize_t n = ::write(fd_, lines.data() + written, lines.size() - written);
      if (n < 0) return emissions::Status(emissions::Errc::unavailable, "write failed");
      written += static_cast<std::size_t>(n);
    }
    return {};
  }

 private:
  int fd_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s <bootstraps> <group> <topic> <output file>\n", argv[0]);
    return 2;
  }
  // Every thread started from here on inherits the blocked signals; main waits for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  // <output>.partitions holds how many partitions it has now, rewritten at every change.
  const std::string status = std::string(argv[4]) + ".partitions";
  std::atomic<long> held{0};
  (void)emissions::telemetry::attach_many(
      "worker-partitions",
      {{"emissions", "source", "assigned"}, {"emissions", "source", "revoked"}},
      [&](const auto& event, const nlohmann::json& measurements, const auto&) {
        const long change = measurements.at("count").get<long>();
        const long now = held.fetch_add(event.back() == "assigned" ? change : -change) +
                         (event.back() == "assigned" ? change : -change);
        const std::string tmp = status + ".tmp";
        if (std::FILE* f = std::fopen(tmp.c_str(), "w")) {
          std::fprintf(f, "%ld\n", now);
          std::fclose(f);
          std::rename(tmp.c_str(), status.c_str());
        }
      });
  // Errors (a refused commit) go to standard error, for whoever reads the test's log.
  (void)emissions::telemetry::attach("worker-errors", {"emissions", "source", "error"},
                                     [&](const auto&, const auto&, const nlohmann::json& metadata) {
                                       std::fprintf(
                                           stderr, "worker %s: %s %s\n", argv[4],
                                           metadata.value("code", std::string()).c_str(),
                                           metadata.value("reason", std::string()).c_str());
                                     });
  auto output = std::make_shared<AppendLines>(argv[4]);
  if (!output->ok()) return 3;
  emissions::Config config;
  config.make_default = false;
  config.add_adapter(output);
  emissions::Emitter emitter(std::move(config));
  emissions::sources::KafkaSource source(
      emitter, {.brokers = argv[1],
                .group_id = argv[2],
                .topics = {argv[3]},
                // librdkafka 2.0.2's mock group holds the next join for about the session
                // timeout after a member dies: keep it short.
                .properties = {{"log_level", "2"},
                               {"session.timeout.ms", "6000"},
                               {"heartbeat.interval.ms", "500"},
                               // Only the dead member's partitions move.
                               {"partition.assignment.strategy", "cooperative-sticky"}},
                .commit_interval = std::chrono::milliseconds(200)});
  if (!source.start().ok()) return 4;
  int signal = 0;
  sigwait(&stop_signals, &signal);
  const emissions::Status stopped = source.stop(std::chrono::seconds(10));
  (void)emitter.shutdown(std::chrono::seconds(10));
  return stopped.ok() ? 0 : 5;
}
