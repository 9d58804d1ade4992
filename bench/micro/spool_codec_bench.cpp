// Micro-benchmarks for the spool's encoding (src/spool/codec.hpp) of one commit of 10
// events, the shape the spool's throughput target is set for (issue 9: >= 5 M events/s
// committed, 10 events per commit): integer payloads, empty metadata, a 13-byte name.
// Beside it, in the same run: serialize_to() of the same events (the JSON-lines text an
// adapter writes), the checksum of the body (the frame header's body_crc), and decoding.
//
//   build/release/bench/emissions_micro_bench --benchmark_filter='Spool|Crc32c'
//
// Counters: ns_per_event (CPU time / 10) and bytes_per_event (encoded body / 10). The body
// vector is cleared, not freed, between iterations, as Spool::append's scratch buffer is.
//
// Release preset, 2-vCPU KVM guest (AMD EPYC, SSE4.2) shared with another build (load
// average 1.6), medians of 5 repetitions, min_time 0.2 s:
//                                  ns/event   bytes/event
//   SpoolEncodeBody                   17.9        45
//   SpoolEncodeFrame (+ both CRCs)    23.8        45
//   SpoolBaselineSerializeTo          80.0       141   (JSON-lines text)
//   SpoolDecodeBody                   60.9        45
//   Crc32c over the 450-byte body: 22.8 ns with sse4.2, 234 ns with the tables.
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "emissions/event.hpp"
#include "spool/codec.hpp"
#include "spool/crc32c.hpp"

namespace {

using emissions::Event;
using namespace emissions::detail::spool;

constexpr std::size_t kEventsPerCommit = 10;
constexpr auto kEventsPerIteration = static_cast<benchmark::IterationCount>(kEventsPerCommit);

std::vector<Event> commit_of_integers() {
  std::vector<Event> events(kEventsPerCommit);
  for (std::size_t i = 0; i < events.size(); ++i) {
    Event& e = events[i];
    e.name = emissions::EventName("order_created");
    e.payload = static_cast<std::int64_t>(1'000 + i);
    e.metadata = nlohmann::json(nlohmann::json::value_t::object);
    e.emitted_at = std::chrono::system_clock::now();
    e.id = emissions::EventId::generate(e.emitted_at);
  }
  return events;
}

void per_event_counters(benchmark::State& state, std::size_t body_bytes) {
  state.SetItemsProcessed(state.iterations() * kEventsPerIteration);
  state.counters["ns_per_event"] =
      benchmark::Counter(static_cast<double>(state.iterations() * kEventsPerIteration) * 1e-9,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["bytes_per_event"] =
      static_cast<double>(body_bytes) / static_cast<double>(kEventsPerCommit);
}

void BM_SpoolEncodeBody(benchmark::State& state) {
  const std::vector<Event> events = commit_of_integers();
  std::vector<std::uint8_t> body;
  for (auto _ : state) {
    body.clear();
    if (!encode_body(events, body).ok()) state.SkipWithError("encode_body failed");
    benchmark::DoNotOptimize(body.data());
    benchmark::ClobberMemory();
  }
  per_event_counters(state, body.size());
}
BENCHMARK(BM_SpoolEncodeBody);

// What a commit costs the codec: the body and the frame header with both checksums.
void BM_SpoolEncodeFrame(benchmark::State& state) {
  const std::vector<Event> events = commit_of_integers();
  std::vector<std::uint8_t> body;
  std::uint8_t header[kFrameHeaderSize];
  std::uint64_t seq = 0;
  for (auto _ : state) {
    body.clear();
    if (!encode_body(events, body).ok()) state.SkipWithError("encode_body failed");
    encode_frame_header(++seq, body, kEventsPerCommit, 0, header);
    benchmark::DoNotOptimize(header);
    benchmark::ClobberMemory();
  }
  per_event_counters(state, body.size());
}
BENCHMARK(BM_SpoolEncodeFrame);

// Baseline: the same events as JSON-lines text (the envelope serializer).
void BM_SpoolBaselineSerializeTo(benchmark::State& state) {
  const std::vector<Event> events = commit_of_integers();
  std::string text;
  for (auto _ : state) {
    text.clear();
    for (const Event& e : events) {
      emissions::serialize_to(e, text);
      text.push_back('\n');
    }
    benchmark::DoNotOptimize(text.data());
    benchmark::ClobberMemory();
  }
  per_event_counters(state, text.size());
}
BENCHMARK(BM_SpoolBaselineSerializeTo);

void BM_SpoolDecodeBody(benchmark::State& state) {
  const std::vector<Event> events = commit_of_integers();
  std::vector<std::uint8_t> body;
  if (!encode_body(events, body).ok()) state.SkipWithError("encode_body failed");
  std::vector<Event> out;
  for (auto _ : state) {
    out.clear();
    if (!decode_body(body, kEventsPerCommit, out).ok()) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(out.data());
  }
  per_event_counters(state, body.size());
}
BENCHMARK(BM_SpoolDecodeBody);

// The checksum over one such body (~450 bytes): the path crc32c() picked, then the tables.
void BM_Crc32c(benchmark::State& state) {
  std::vector<std::uint8_t> body;
  if (!encode_body(commit_of_integers(), body).ok()) state.SkipWithError("encode_body failed");
  const bool portable = state.range(0) == 1;
  state.SetLabel(portable ? "portable" : (crc32c_uses_hardware() ? "sse4.2" : "portable"));
  for (auto _ : state) {
    const std::uint32_t crc = portable ? crc32c_portable(body) : crc32c(body);
    benchmark::DoNotOptimize(crc);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(body.size()));
}
BENCHMARK(BM_Crc32c)->ArgName("portable")->Arg(0)->Arg(1);

}  // namespace
