// Micro-benchmarks for event timestamps and ids: the clocks emit could read, the library's
// wall_now(), and EventId::generate.
//
//   build/release/bench/emissions_micro_bench --benchmark_filter='Clock|Rdtsc|WallNow|EventId'
//
// The candidates are the baselines of BM_WallNow: what one emit's timestamp would cost with
// each of them on this machine. The figures and the choice made from them are at the top of
// src/time/wall_clock.cpp.
#include <time.h>

#include <chrono>
#include <cstdint>

#include <benchmark/benchmark.h>

#include "emissions/event_id.hpp"
#include "time/wall_clock.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

namespace {

void BM_SystemClockNow(benchmark::State& state) {
  for (auto _ : state)
    benchmark::DoNotOptimize(std::chrono::system_clock::now());
}
BENCHMARK(BM_SystemClockNow);

void clock_gettime_loop(benchmark::State& state, clockid_t id) {
  for (auto _ : state) {
    timespec ts{};
    benchmark::DoNotOptimize(clock_gettime(id, &ts));
    benchmark::DoNotOptimize(ts);
  }
}

void BM_ClockGettimeRealtime(benchmark::State& state) {
  clock_gettime_loop(state, CLOCK_REALTIME);
}
BENCHMARK(BM_ClockGettimeRealtime);

void BM_ClockGettimeMonotonic(benchmark::State& state) {
  clock_gettime_loop(state, CLOCK_MONOTONIC);
}
BENCHMARK(BM_ClockGettimeMonotonic);

#ifdef CLOCK_REALTIME_COARSE
void BM_ClockGettimeRealtimeCoarse(benchmark::State& state) {
  clock_gettime_loop(state, CLOCK_REALTIME_COARSE);
}
BENCHMARK(BM_ClockGettimeRealtimeCoarse);
#endif

#ifdef CLOCK_MONOTONIC_RAW
void BM_ClockGettimeMonotonicRaw(benchmark::State& state) {
  clock_gettime_loop(state, CLOCK_MONOTONIC_RAW);
}
BENCHMARK(BM_ClockGettimeMonotonicRaw);
#endif

#if defined(__x86_64__) || defined(__i386__)
// The floor of any clock extrapolated from the TSC: the instruction alone.
void BM_Rdtsc(benchmark::State& state) {
  for (auto _ : state)
    benchmark::DoNotOptimize(__rdtsc());
}
BENCHMARK(BM_Rdtsc);
#endif

void BM_WallNow(benchmark::State& state) {
  for (auto _ : state)
    benchmark::DoNotOptimize(emissions::detail::wall_now());
}
BENCHMARK(BM_WallNow);

// What emit does per event: a timestamp and an id stamped with it.
void BM_WallNowAndEventId(benchmark::State& state) {
  for (auto _ : state) {
    const auto now = emissions::detail::wall_now();
    benchmark::DoNotOptimize(emissions::EventId::generate(now));
  }
}
BENCHMARK(BM_WallNowAndEventId);

}  // namespace
