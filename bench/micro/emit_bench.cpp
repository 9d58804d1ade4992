// Micro-benchmarks for Transaction::emit and a whole start/emit/commit on the pipeline.
//
//   build/release/bench/emissions_micro_bench --benchmark_filter='Emit|Commit'
//
// The emit benchmarks time 1000 emits into one open transaction per iteration with a
// manual timer, so starting and terminating the transaction (which destroys the events)
// stay outside the measurement; the per-event figure is the `ns_per_event` counter
// (iteration time / 1000). The transaction is the thread's ambient one, whose buffer keeps
// its capacity between iterations: these are the pre-reserved figures. emissions-bench
// reports the fresh-transaction figure beside it.
//
// The event name is interned once; the payload is built once and copied into each emit.
#include <chrono>
#include <memory>

#include <benchmark/benchmark.h>

#include "emissions/ambient.hpp"
#include "emissions/emitter.hpp"
#include "emissions/transaction.hpp"

namespace {

using nlohmann::json;

constexpr std::size_t kEmitsPerIteration = 1000;

class NoOpAdapter final : public emissions::Adapter {
 public:
  std::string_view name() const override { return "noop"; }
  emissions::Status handle_events(std::span<const emissions::Event> batch) override {
    benchmark::DoNotOptimize(batch.data());
    return {};
  }
};

emissions::Config one_adapter_config() {
  emissions::Config config;
  config.make_default = true;
  config.add_adapter(std::make_shared<NoOpAdapter>());
  return config;
}

void emit_into_transaction(benchmark::State& state, const json& payload) {
  emissions::Emitter emitter(one_adapter_config());
  const emissions::EventName name("order_created");
  for (auto _ : state) {
    if (!emissions::start().ok()) {
      state.SkipWithError("start() failed");
      break;
    }
    emissions::Transaction& tx = emissions::current();
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < kEmitsPerIteration; ++i) {
      benchmark::DoNotOptimize(tx.emit(name, payload));
    }
    const auto t1 = std::chrono::steady_clock::now();
    tx.terminate();
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(kEmitsPerIteration));
  state.counters["ns_per_event"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * static_cast<double>(kEmitsPerIteration),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// Payload: a pre-built JSON integer; copying it does not allocate.
void BM_EmitIntoTransaction(benchmark::State& state) {
  emit_into_transaction(state, json(123'456'789));
}
BENCHMARK(BM_EmitIntoTransaction)->UseManualTime();

// Payload: a pre-built {"id", "total"} object, deep-copied (allocated) per emit.
void BM_EmitObjectPayload(benchmark::State& state) {
  emit_into_transaction(state, json{{"id", 123'456'789}, {"total", 99.5}});
}
BENCHMARK(BM_EmitObjectPayload)->UseManualTime();

// start, 10 emits, commit into an emitter with one no-op adapter, through the ambient
// API. The producer's side: the consumer thread runs concurrently, and once the queue is
// full commits wait for it, so a long run converges on the pipeline's throughput.
void BM_CommitTenEventsOneAdapter(benchmark::State& state) {
  emissions::Emitter emitter(one_adapter_config());
  const emissions::EventName name("order_created");
  const json payload(123'456'789);
  for (auto _ : state) {
    (void)emissions::start();
    for (int i = 0; i < 10; ++i)
      benchmark::DoNotOptimize(emissions::emit(name, payload));
    if (!emissions::commit().ok()) {
      state.SkipWithError("commit() failed");
      break;
    }
  }
  // Outside the timed loop: what is still queued is delivered but not timed.
  if (!emitter.drain(std::chrono::seconds(60)).ok()) state.SkipWithError("drain() failed");
  state.SetItemsProcessed(state.iterations() * 10);
}
BENCHMARK(BM_CommitTenEventsOneAdapter)->UseRealTime();

// The same with an explicit Transaction per commit (emitter.start() copies the emitter's
// shared reference each time).
void BM_CommitTenEventsOneAdapterExplicit(benchmark::State& state) {
  emissions::Emitter emitter(one_adapter_config());
  const emissions::EventName name("order_created");
  const json payload(123'456'789);
  for (auto _ : state) {
    emissions::Transaction tx = emitter.start();
    for (int i = 0; i < 10; ++i)
      benchmark::DoNotOptimize(tx.emit(name, payload));
    if (!tx.commit().ok()) {
      state.SkipWithError("commit() failed");
      break;
    }
  }
  // Outside the timed loop: what is still queued is delivered but not timed.
  if (!emitter.drain(std::chrono::seconds(60)).ok()) state.SkipWithError("drain() failed");
  state.SetItemsProcessed(state.iterations() * 10);
}
BENCHMARK(BM_CommitTenEventsOneAdapterExplicit)->UseRealTime();

}  // namespace
