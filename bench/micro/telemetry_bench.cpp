// Micro-benchmarks for emissions/telemetry.hpp.
//
//   build/release/bench/emissions_micro_bench --benchmark_filter=Telemetry
//
// BM_TelemetryBaselineLoop is the empty loop measured in the same run: the guarded
// "nothing attached" case should cost about one load more than it.
#include <optional>

#include <benchmark/benchmark.h>

#include "emissions/telemetry.hpp"

namespace {

namespace telemetry = emissions::telemetry;
using nlohmann::json;

const telemetry::EventName kEvent{"emissions", "bench", "event"};

void no_op(const telemetry::EventName&, const json&, const json&) {}

// Attaches a no-op handler for the lifetime of one benchmark run.
class ScopedNoOpHandler {
 public:
  explicit ScopedNoOpHandler(benchmark::State& state) : state_(state) {
    const emissions::Status s = telemetry::attach(kId, kEvent, no_op);
    if (!s.ok()) state_.SkipWithError(s.to_string().c_str());
  }
  ScopedNoOpHandler(const ScopedNoOpHandler&) = delete;
  ScopedNoOpHandler& operator=(const ScopedNoOpHandler&) = delete;
  ~ScopedNoOpHandler() { static_cast<void>(telemetry::detach(kId)); }

 private:
  static constexpr const char* kId = "bench-no-op";
  benchmark::State& state_;
};

void BM_TelemetryBaselineLoop(benchmark::State& state) {
  bool flag = false;
  for (auto _ : state) {
    benchmark::DoNotOptimize(flag);
  }
}
BENCHMARK(BM_TelemetryBaselineLoop);

// The library's guard: with nothing attached, no JSON is built and no clock is read.
void BM_TelemetryExecuteNothingAttached(benchmark::State& state) {
  if (telemetry::enabled()) {
    state.SkipWithError("a handler is attached; this measures the idle path");
    return;
  }
  for (auto _ : state) {
    if (telemetry::enabled()) telemetry::execute(kEvent, {{"count", 1}}, json::object());
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_TelemetryExecuteNothingAttached);

// One no-op handler on the event; measurements and metadata are prebuilt, so this is the
// registry's own cost (snapshot, lookup, call).
void BM_TelemetryExecuteOneHandler(benchmark::State& state) {
  const ScopedNoOpHandler handler(state);
  const json measurements{{"count", 1}};
  const json metadata{{"adapter", "bench"}};
  for (auto _ : state) {
    telemetry::execute(kEvent, measurements, metadata);
  }
}
BENCHMARK(BM_TelemetryExecuteOneHandler);

// The same from several threads at once: they share the snapshot's reference count and
// the mutex that guards it. Only thread 0 attaches; the loop's start and stop barriers
// keep the others inside its lifetime.
void BM_TelemetryExecuteOneHandlerContended(benchmark::State& state) {
  std::optional<ScopedNoOpHandler> handler;
  if (state.thread_index() == 0) handler.emplace(state);
  const json measurements{{"count", 1}};
  const json metadata{{"adapter", "bench"}};
  for (auto _ : state) {
    telemetry::execute(kEvent, measurements, metadata);
  }
}
BENCHMARK(BM_TelemetryExecuteOneHandlerContended)->Threads(1)->Threads(2)->Threads(4);

// As above, plus building the measurements and metadata each time, as instrumented code
// does once `enabled()` is true.
void BM_TelemetryExecuteOneHandlerBuildingJson(benchmark::State& state) {
  const ScopedNoOpHandler handler(state);
  for (auto _ : state) {
    if (telemetry::enabled()) {
      telemetry::execute(kEvent, {{"count", 1}}, {{"adapter", "bench"}, {"event_count", 1}});
    }
  }
}
BENCHMARK(BM_TelemetryExecuteOneHandlerBuildingJson);

// An event nobody listens to while something else is attached: snapshot and a miss.
void BM_TelemetryExecuteOtherEventAttached(benchmark::State& state) {
  const ScopedNoOpHandler handler(state);
  const telemetry::EventName other{"emissions", "bench", "other"};
  const json empty = json::object();
  for (auto _ : state) {
    telemetry::execute(other, empty, empty);
  }
}
BENCHMARK(BM_TelemetryExecuteOtherEventAttached);

}  // namespace
