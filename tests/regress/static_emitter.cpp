// An Emitter at namespace scope whose destructor runs during static destruction, with work
// still pending and telemetry handlers attached. Run by
// tests/unit/static_destruction_test.cpp, which expects exit status 0.
//
// The emitter is defined between two helper objects, so at exit they are destroyed in this
// order: `exit_marker` (opens the adapters' gates), `emitter` (its destructor delivers
// through the "gated" adapter, reporting [emissions, adapter, success], and gives up on
// the "slow" adapter's queue, reporting [emissions, event, dropped]), then `verdict`, which
// exits with status 3 unless both events reached the handler during static destruction,
// and with status 4 unless a default Event (the empty name, null metadata written as the
// empty object) still serializes then.
// Before the library's own process-wide objects (telemetry probes, the empty event name,
// the empty metadata object, registries) were made never-destroyed, the emitter's
// destructor used some of them after their destruction and the program crashed.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>

#include "emissions/emitter.hpp"
#include "emissions/event.hpp"
#include "emissions/telemetry.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Trivially destructible, so usable at any point of static destruction.
std::atomic<bool> g_exiting{false};
std::atomic<int> g_success_at_exit{0};
std::atomic<int> g_dropped_at_exit{0};

// write(2): no iostream, which may already be gone when this runs.
void say(const char* text) noexcept {
  const ssize_t ignored = write(STDERR_FILENO, text, std::strlen(text));
  (void)ignored;
}

// Sleeps in 1 ms steps until static destruction has begun or `limit` has passed.
void wait_for_exit(Clock::duration limit) {
  const auto deadline = Clock::now() + limit;
  while (!g_exiting.load() && Clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
}

// Delivers nothing until static destruction has begun, then everything at once.
class GatedAdapter final : public emissions::Adapter {
 public:
  [[nodiscard]] std::string_view name() const override { return "gated"; }
  emissions::Status handle_events(std::span<const emissions::Event>) override {
    wait_for_exit(10s);
    return {};
  }
};

// Busy until a second after static destruction has begun: longer than the emitter's
// shutdown_timeout (plus its grace), so its queued events are dropped with reason
// "shutdown" by the emitter's destructor.
class SlowAdapter final : public emissions::Adapter {
 public:
  [[nodiscard]] std::string_view name() const override { return "slow"; }
  emissions::Status handle_events(std::span<const emissions::Event>) override {
    wait_for_exit(10s);
    std::this_thread::sleep_for(1s);
    return {};
  }
};

emissions::Config make_config() {
  emissions::Config config;
  config.shutdown_timeout = 100ms;
  config.pipeline.max_demand = 1;
  config.add_adapter(std::make_shared<GatedAdapter>());
  config.add_adapter(std::make_shared<SlowAdapter>());
  return config;
}

// Destroyed last: judges what the emitter's destructor reported.
struct Verdict {
  Verdict() = default;
  Verdict(const Verdict&) = delete;
  Verdict& operator=(const Verdict&) = delete;
  ~Verdict() {
    if (g_success_at_exit.load() == 0) {
      say("static_emitter: no [emissions, adapter, success] during static destruction\n");
      std::_Exit(3);
    }
    if (g_dropped_at_exit.load() == 0) {
      say("static_emitter: no [emissions, event, dropped] during static destruction\n");
      std::_Exit(3);
    }
    std::string text;
    try {
      text = emissions::serialize(emissions::Event{});
    } catch (...) {
      text.clear();
    }
    if (text.find(R"("metadata":{},"name":"","payload":null})") == std::string::npos) {
      say("static_emitter: a default Event does not serialize during static destruction\n");
      std::_Exit(4);
    }
  }
};

Verdict verdict;
emissions::Emitter emitter(make_config());

// Destroyed first: marks the start of static destruction, which opens the adapters' gates.
struct ExitMarker {
  ExitMarker() = default;
  ExitMarker(const ExitMarker&) = delete;
  ExitMarker& operator=(const ExitMarker&) = delete;
  ~ExitMarker() { g_exiting.store(true); }
};
ExitMarker exit_marker;

void on_event(const emissions::telemetry::EventName& event, const nlohmann::json&,
              const nlohmann::json&) {
  if (!g_exiting.load() || event.size() != 3) return;
  if (event[1] == "adapter" && event[2] == "success") g_success_at_exit.fetch_add(1);
  if (event[1] == "event" && event[2] == "dropped") g_dropped_at_exit.fetch_add(1);
}

}  // namespace

int main() {
  const emissions::Status attached = emissions::telemetry::attach_many(
      "static-emitter", {{"emissions", "adapter", "success"}, {"emissions", "event", "dropped"}},
      on_event);
  if (!attached.ok()) {
    say("static_emitter: attach failed\n");
    return 2;
  }
  for (int i = 0; i < 10; ++i) {
    emissions::Transaction tx = emitter.start();
    if (!tx.emit("order_created", {{"order", i}}).ok() || !tx.commit().ok()) {
      say("static_emitter: emit or commit failed\n");
      return 2;
    }
  }
  // Builds the library's function-local statics now, after `verdict`, so that they would be
  // destroyed before it if they were ordinary statics.
  if (emissions::serialize(emissions::Event{}).empty()) return 2;
  // Not drained: the emitter's destructor, during static destruction, delivers and drops.
  return 0;
}
