// Adversary: an Emitter with a spool at namespace scope, destroyed during static destruction
// while one of its adapters ("stuck") holds every delivery it was handed and never settles
// one, as a destination that hangs would. The promises (emissions/spool.hpp,
// emissions/emitter.hpp, docs/SPOOL.md):
//   - ~Emitter returns by the shutdown deadline although an adapter never settles;
//   - a commit that returned ok is in the spool: an Emitter made again on the same
//     directory delivers to "stuck" every event of it, exactly once here (it settled none),
//     in commit order, with its id, name and payload;
//   - an adapter that settled everything before the exit ("settled") gets nothing again
//     (shutdown checkpoints its position);
//   - a second Emitter on a directory in use is refused with a ConfigError naming it.
// Usage: spool_static_exit write DIR, then spool_static_exit recover DIR.
// Exit status: 0 ok; 1 a broken promise (a line on stderr says which); 2 bad usage or setup;
// 3 ~Emitter took too long.
#include <emissions/emissions.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "exit_watch.hpp"

namespace {

using namespace std::chrono_literals;

constexpr int kCommits = 200;
constexpr int kEventsPerCommit = 10;

// Keeps every delivery and never settles it.
class StuckAdapter final : public emissions::AsyncAdapter {
 public:
  std::string_view name() const override { return "stuck"; }
  void deliver(emissions::Delivery delivery) override {
    const std::lock_guard lock(mutex_);
    held_ += delivery.events().size();
    deliveries_.push_back(std::move(delivery));
  }
  std::size_t held() {
    const std::lock_guard lock(mutex_);
    return held_;
  }

 private:
  std::mutex mutex_;
  std::size_t held_ = 0;
  std::vector<emissions::Delivery> deliveries_;
};

// Records what it is handed (recover phase: under the name of the adapter it stands for).
class Recorder final : public emissions::Adapter {
 public:
  explicit Recorder(std::string name) : name_(std::move(name)) {}
  std::string_view name() const override { return name_; }
  emissions::Status handle_events(std::span<const emissions::Event> batch) override {
    const std::lock_guard lock(mutex_);
    for (const emissions::Event& e : batch) {
      ids_.push_back(e.id.str());
      names_.emplace_back(e.name.view());
      payloads_.push_back(e.payload);
    }
    return {};
  }
  std::size_t count() {
    const std::lock_guard lock(mutex_);
    return ids_.size();
  }
  std::mutex mutex_;
  std::vector<std::string> ids_;
  std::vector<std::string> names_;
  std::vector<nlohmann::json> payloads_;

 private:
  std::string name_;
};

std::filesystem::path ids_file(const std::filesystem::path& dir) {
  return dir.parent_path() / (dir.filename().string() + ".committed-ids");
}

// Declaration order is destruction order reversed: the emitter goes first, then the
// checker, then the adapters.
std::shared_ptr<StuckAdapter> g_stuck = std::make_shared<StuckAdapter>();
std::shared_ptr<Recorder> g_settled = std::make_shared<Recorder>("settled");
struct Checker {
  bool armed = false;
  ~Checker() {
    if (armed && adversarial::seconds_since_main_returned() > 5.0) {
      adversarial::fail("spool_static_exit: ~Emitter took more than 5 s (deadline 500 ms)\n", 3);
    }
  }
} g_checker;
std::optional<emissions::Emitter> g_emitter;

emissions::Config config_for(const std::filesystem::path& dir,
                             const std::shared_ptr<emissions::Adapter>& stuck,
                             const std::shared_ptr<emissions::Adapter>& settled) {
  emissions::Config config;
  config.make_default = false;
  config.shutdown_timeout = 500ms;
  config.spool = emissions::SpoolOptions{.dir = dir};
  config.add_adapter(stuck).add_adapter(settled);
  return config;
}

int write_phase(const std::filesystem::path& dir) {
  std::filesystem::remove_all(dir);
  g_emitter.emplace(config_for(dir, g_stuck, g_settled));
  // A second Emitter on the same directory is refused, naming it.
  try {
    const emissions::Emitter second(config_for(dir, std::make_shared<Recorder>("stuck"),
                                               std::make_shared<Recorder>("settled")));
    std::fprintf(stderr, "spool_static_exit: a second Emitter on %s was not refused\n",
                 dir.c_str());
    return 1;
  } catch (const emissions::ConfigError& e) {
    if (std::strstr(e.what(), dir.c_str()) == nullptr) {
      std::fprintf(stderr, "spool_static_exit: the refusal does not name the directory: %s\n",
                   e.what());
      return 1;
    }
  }
  for (int c = 0; c < kCommits; ++c) {
    emissions::Transaction tx = g_emitter->start();
    for (int i = 0; i < kEventsPerCommit; ++i) {
      if (!tx.emit("order_created", {{"commit", c}, {"event", i}}).ok()) return 2;
    }
    const emissions::Status status = tx.commit();
    if (!status.ok()) {
      std::fprintf(stderr, "spool_static_exit: commit %d failed: %s\n", c,
                   status.to_string().c_str());
      return 2;
    }
  }
  // Everything settled by "settled" (and checkpointed at shutdown), some of it held by
  // "stuck" and the rest still in the spool.
  const auto until = std::chrono::steady_clock::now() + 20s;
  while ((g_settled->count() < kCommits * kEventsPerCommit || g_stuck->held() == 0) &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(5ms);
  }
  if (g_settled->count() != kCommits * kEventsPerCommit || g_stuck->held() == 0) {
    std::fprintf(stderr, "spool_static_exit: settled %zu of %d, stuck holds %zu\n",
                 g_settled->count(), kCommits * kEventsPerCommit, g_stuck->held());
    return 2;
  }
  {
    // The committed ids in commit order, as the synchronous "settled" adapter received them.
    std::ofstream ids(ids_file(dir), std::ios::trunc);
    const std::lock_guard lock(g_settled->mutex_);
    for (const std::string& id : g_settled->ids_)
      ids << id << '\n';
  }
  std::printf(
      "spool_static_exit: %d events committed, %zu held by the stuck adapter; "
      "returning from main\n",
      kCommits * kEventsPerCommit, g_stuck->held());
  std::fflush(stdout);
  g_checker.armed = true;
  adversarial::main_returns();
  return 0;
}

int recover_phase(const std::filesystem::path& dir) {
  std::vector<std::string> committed;
  {
    std::ifstream in(ids_file(dir));
    for (std::string line; std::getline(in, line);)
      committed.push_back(line);
  }
  if (committed.size() != static_cast<std::size_t>(kCommits * kEventsPerCommit)) {
    std::fprintf(stderr, "spool_static_exit: the write phase recorded %zu ids\n", committed.size());
    return 2;
  }
  auto stuck = std::make_shared<Recorder>("stuck");
  auto settled = std::make_shared<Recorder>("settled");
  int broken = 0;
  {
    emissions::Emitter emitter(config_for(dir, stuck, settled));
    const emissions::Status drained = emitter.drain(30s);
    if (!drained.ok()) {
      std::fprintf(stderr, "spool_static_exit: drain after restart: %s\n",
                   drained.to_string().c_str());
      ++broken;
    }
  }
  if (stuck->ids_ != committed) {
    std::fprintf(stderr,
                 "spool_static_exit: \"stuck\" got %zu events after the restart, not the %zu "
                 "committed ones exactly once in commit order\n",
                 stuck->ids_.size(), committed.size());
    ++broken;
  }
  for (std::size_t k = 0; k < stuck->payloads_.size() && k < committed.size(); ++k) {
    const nlohmann::json expected = {{"commit", static_cast<int>(k) / kEventsPerCommit},
                                     {"event", static_cast<int>(k) % kEventsPerCommit}};
    if (stuck->payloads_[k] != expected || stuck->names_[k] != "order_created") {
      std::fprintf(stderr, "spool_static_exit: event %zu came back as %s %s\n", k,
                   stuck->names_[k].c_str(), stuck->payloads_[k].dump().c_str());
      ++broken;
      break;
    }
  }
  if (settled->count() != 0) {
    std::fprintf(stderr, "spool_static_exit: \"settled\" got %zu events again after a clean exit\n",
                 settled->count());
    ++broken;
  }
  if (broken == 0) {
    std::printf(
        "spool_static_exit: %zu events recovered for the stuck adapter, in order; "
        "none for the one that had settled\n",
        stuck->ids_.size());
  }
  return broken == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: spool_static_exit write|recover DIR\n");
    return 2;
  }
  const std::string_view phase = argv[1];
  const std::filesystem::path dir = argv[2];
  if (phase == "write") return write_phase(dir);
  if (phase == "recover") return recover_phase(dir);
  std::fprintf(stderr, "usage: spool_static_exit write|recover DIR\n");
  return 2;
}
