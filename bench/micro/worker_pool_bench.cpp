// Worker pools (AdapterOptions::concurrency): an adapter that is slow per call (it sleeps
// 1 ms per batch, like an HTTP push) served by N consumers. Throughput should grow ~N x.
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "emissions/emitter.hpp"

namespace {

class SleepingAdapter final : public emissions::Adapter {
 public:
  std::string_view name() const override { return "sleeping"; }
  emissions::Status handle_events(std::span<const emissions::Event> batch) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    handled.fetch_add(batch.size(), std::memory_order_relaxed);
    return {};
  }
  std::atomic<std::uint64_t> handled{0};
};

// 64 commits of 10 events: 64 calls of 1 ms each, shared by `concurrency` consumers.
void BM_WorkerPoolSleepingAdapter(benchmark::State& state) {
  const auto concurrency = static_cast<std::size_t>(state.range(0));
  constexpr int kCommits = 64;
  constexpr int kPerCommit = 10;
  std::uint64_t events = 0;
  for (auto _ : state) {
    auto adapter = std::make_shared<SleepingAdapter>();
    emissions::Config config;
    config.make_default = false;
    config.add_adapter(adapter, {.concurrency = concurrency});
    emissions::Emitter emitter(std::move(config));
    for (int c = 0; c < kCommits; ++c) {
      emissions::Transaction tx = emitter.start();
      for (int i = 0; i < kPerCommit; ++i)
        (void)tx.emit("push", i);
      if (!tx.commit().ok()) state.SkipWithError("commit failed");
    }
    if (!emitter.drain(std::chrono::seconds(60)).ok()) state.SkipWithError("drain failed");
    if (adapter->handled.load() != kCommits * kPerCommit) state.SkipWithError("lost events");
    events += kCommits * kPerCommit;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(events));
}
BENCHMARK(BM_WorkerPoolSleepingAdapter)
    ->Arg(1)
    ->Arg(2)
    ->Arg(4)
    ->Arg(8)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
