// /metrics: the Prometheus text format, checked by promtool (Debian's prometheus package),
// and every value equal to stats() once drained.
#include "metrics.hpp"

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "emissions/emissions.hpp"
#include "emissions/http/server.hpp"
#include "emissions/testing/faulty_adapter.hpp"
#include "raw_client.hpp"
#include "temp_dir.hpp"

namespace emissions::http {
namespace {

// Series (name and labels, as written) -> value.
std::map<std::string, double> parse_samples(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

// Runs `promtool check metrics` on `text`; returns its exit status and output.
std::pair<int, std::string> promtool(const std::string& text) {
  const auto dir = std::filesystem::temp_directory_path();
  const auto in = dir / ("emissions_metrics_" + std::to_string(::getpid()) + ".txt");
  const auto out = dir / ("emissions_promtool_" + std::to_string(::getpid()) + ".txt");
  std::ofstream(in) << text;
  const std::string cmd =
      "promtool check metrics < '" + in.string() + "' > '" + out.string() + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream o(out);
  std::string output((std::istreambuf_iterator<char>(o)), std::istreambuf_iterator<char>());
  std::filesystem::remove(in);
  std::filesystem::remove(out);
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, output};
}

std::string label(const std::string& adapter) {
  return "adapter=\"" + detail::escape_label(adapter) + "\"";
}

// emissions_dropped_events_total of `adapter`, by reason.
std::map<std::string, std::uint64_t> drops_by_reason(const std::map<std::string, double>& samples,
                                                     const std::string& adapter) {
  std::map<std::string, std::uint64_t> out;
  const std::string prefix = "emissions_dropped_events_total{" + label(adapter) + ",reason=\"";
  for (auto it = samples.lower_bound(prefix);
       it != samples.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    const std::string reason =
        it->first.substr(prefix.size(), it->first.size() - prefix.size() - 2);
    out[reason] = static_cast<std::uint64_t>(it->second);
  }
  return out;
}

std::uint64_t sum(const std::map<std::string, std::uint64_t>& by_reason) {
  std::uint64_t n = 0;
  for (const auto& [reason, count] : by_reason)
    n += count;
  return n;
}

void expect_matches(const std::map<std::string, double>& samples, const EmitterStats& s) {
  // Counters are integers in the text: read back exactly.
  auto m = [&](const std::string& series) {
    return static_cast<std::uint64_t>(samples.at(series));
  };
  EXPECT_EQ(m("emissions_committed_events_total"), s.committed);
  EXPECT_EQ(m("emissions_transactions_total"), s.transactions);
  EXPECT_EQ(m("emissions_discarded_events_total"), s.discarded);
  for (const AdapterStats& a : s.adapters) {
    const std::string l = label(a.name);
    const std::string ev = "emissions_adapter_events_total{" + l;
    EXPECT_EQ(m(ev + ",outcome=\"delivered\"}"), a.delivered) << a.name;
    EXPECT_EQ(m(ev + ",outcome=\"failed\"}"), a.failed) << a.name;
    EXPECT_EQ(m(ev + ",outcome=\"filtered\"}"), a.filtered) << a.name;
    EXPECT_EQ(m(ev + ",outcome=\"dropped\"}"), a.dropped) << a.name;
    EXPECT_EQ(m("emissions_adapter_queued{" + l + "}"), a.queued) << a.name;
    EXPECT_EQ(m("emissions_adapter_received_total{" + l + "}"), a.received) << a.name;
    EXPECT_EQ(m("emissions_adapter_retries_total{" + l + "}"), a.retried) << a.name;
    EXPECT_EQ(m("emissions_adapter_dead_lettered_total{" + l + "}"), a.dead_lettered) << a.name;
    // The latency histogram: cumulative buckets, +Inf and _count equal to the events
    // measured, _sum in seconds.
    const std::string h = "emissions_delivery_latency_seconds";
    EXPECT_EQ(m(h + "_count{" + l + "}"), a.latency.count) << a.name;
    EXPECT_EQ(m(h + "_bucket{" + l + ",le=\"+Inf\"}"), a.latency.count) << a.name;
    EXPECT_EQ(m(h + "_bucket{" + l + ",le=\"0.00025\"}"),
              a.latency.buckets[0] + a.latency.buckets[1])
        << a.name;
    EXPECT_EQ(m(h + "_bucket{" + l + ",le=\"5\"}"),
              a.latency.count - a.latency.buckets[DeliveryLatency::kBounds.size()])
        << a.name;
    EXPECT_NEAR(samples.at(h + "_sum{" + l + "}"), static_cast<double>(a.latency.sum_ns) * 1e-9,
                1e-9)
        << a.name;
    // Every adapter has its drops by reason, overflow and shutdown at least, summing to its
    // dropped count.
    const auto drops = drops_by_reason(samples, a.name);
    EXPECT_TRUE(drops.contains("overflow")) << a.name;
    EXPECT_TRUE(drops.contains("shutdown")) << a.name;
    EXPECT_EQ(sum(drops), a.dropped) << a.name;
  }
}

class Picky final : public Adapter {
 public:
  std::string_view name() const override { return "picky \"quoted\"\\name"; }
  bool interested(const Event& e) const override { return e.name.view() == "kept"; }
  Status handle_events(std::span<const Event>) override { return {}; }
};

TEST(Metrics, LabelValuesAreEscaped) {
  EXPECT_EQ(detail::escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

TEST(Metrics, PassPromtoolAndEqualStatsAfterDrain) {
  Config config;
  config.make_default = false;
  auto faulty = std::make_shared<emissions::testing::FaultyAdapter>("faulty");
  // Every 3rd batch fails retriably (then succeeds on retry), events named "doomed" fail
  // for good and are dead-lettered.
  faulty->fail_every(3, {Errc::unavailable, "flaky"})
      .fail_events([](const Event& e) { return e.name.view() == "doomed"; },
                   {Errc::invalid_argument, "bad event"});
  auto dead = std::make_shared<emissions::testing::FaultyAdapter>("dead");
  config.add_adapter(faulty, {.max_demand = 4,
                              .retry = RetryPolicy{.max_attempts = 3,
                                                   .initial_backoff = std::chrono::milliseconds(1),
                                                   .max_backoff = std::chrono::milliseconds(2)},
                              .dead_letter = dead});
  config.add_adapter(std::make_shared<Picky>());
  auto server = watch(config);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(server->start(emitter).ok());

  for (int i = 0; i < 60; ++i) {
    Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit(i % 5 == 0 ? "doomed" : (i % 2 ? "kept" : "other"), {{"i", i}}).ok());
    if (i % 7 == 0) {
      tx.terminate();  // discarded
      continue;
    }
    ASSERT_TRUE(tx.commit().ok());
  }
  ASSERT_TRUE(emitter.drain(std::chrono::seconds(10)).ok());

  const test::Reply r = test::get(server->port(), "/metrics");
  ASSERT_EQ(r.status, 200);
  const EmitterStats s = emitter.stats();
  // The numbers must mean something: retries, failures, dead letters and filters happened.
  ASSERT_GT(s.adapters[0].retried, 0U);
  ASSERT_GT(s.adapters[0].failed, 0U);
  ASSERT_GT(s.adapters[0].dead_lettered, 0U);
  ASSERT_GT(s.adapters[1].filtered, 0U);
  ASSERT_GT(s.discarded, 0U);
  ASSERT_EQ(s.adapters[0].latency.count, s.adapters[0].delivered);
  ASSERT_GT(s.adapters[0].latency.count, 0U);
  expect_matches(parse_samples(r.body), s);
  EXPECT_EQ(r.body.find("emissions_spool_backlog_bytes"), std::string::npos);

  const auto [rc, output] = promtool(r.body);
  EXPECT_EQ(rc, 0) << output << "\n" << r.body;
  EXPECT_TRUE(server->stop().ok());
}

TEST(Metrics, SpoolBacklogIsExposedWithASpool) {
  emissions::test_support::TempDir dir;
  Config config;
  config.make_default = false;
  config.spool =
      SpoolOptions{.dir = dir.path() / "spool", .max_bytes = 8 << 20, .segment_bytes = 1 << 20};
  auto server = watch(config);
  Emitter emitter(std::move(config));
  ASSERT_TRUE(server->start(emitter).ok());
  Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("spooled", {{"x", 1}}).ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(emitter.drain(std::chrono::seconds(10)).ok());
  const test::Reply r = test::get(server->port(), "/metrics");
  ASSERT_EQ(r.status, 200);
  const auto samples = parse_samples(r.body);
  EXPECT_EQ(samples.at("emissions_spool_backlog_bytes"), emitter.stats().spool_bytes);
  EXPECT_GT(samples.at("emissions_spool_backlog_bytes"), 0U);
  const auto [rc, output] = promtool(r.body);
  EXPECT_EQ(rc, 0) << output;
}

// Drops by (adapter, reason) come from telemetry, stats() has them per adapter: after a
// drain (overflow drops: drop_oldest and drop_newest) and after a shutdown that gave up
// (shutdown drops: queued and unsettled events), each adapter's reasons sum to its dropped
// count exactly.
TEST(Metrics, DroppedEventsByReasonSumToStatsDropped) {
  Config config;
  config.make_default = false;
  auto oldest = std::make_shared<emissions::testing::FaultyAdapter>("stalled \"oldest\"");
  auto newest = std::make_shared<emissions::testing::FaultyAdapter>("stalled newest");
  // One delivery in flight at a time, and room for 5 events: the rest overflow.
  config.add_adapter(
      oldest,
      {.max_demand = 1, .buffer_size = 5, .overflow = Overflow::drop_oldest, .max_in_flight = 1});
  config.add_adapter(
      newest,
      {.max_demand = 1, .buffer_size = 5, .overflow = Overflow::drop_newest, .max_in_flight = 1});
  auto server = watch(config);
  auto emitter = std::make_unique<Emitter>(std::move(config));
  ASSERT_TRUE(server->start(*emitter).ok());

  auto emit = [&](int n) {
    for (int i = 0; i < n; ++i) {
      Transaction tx = emitter->start();
      ASSERT_TRUE(tx.emit("e", {{"i", i}}).ok());
      ASSERT_TRUE(tx.commit().ok());
    }
  };
  auto check = [&](const EmitterStats& s, const std::string& body) {
    const auto samples = parse_samples(body);
    for (const AdapterStats& a : s.adapters) {
      const auto drops = drops_by_reason(samples, a.name);
      EXPECT_EQ(sum(drops), a.dropped) << a.name << "\n" << body;
    }
    const auto [rc, output] = promtool(body);
    EXPECT_EQ(rc, 0) << output << "\n" << body;
  };

  // 1. Overflow, then drained.
  oldest->stall();
  newest->stall();
  emit(50);
  oldest->release();
  newest->release();
  ASSERT_TRUE(emitter->drain(std::chrono::seconds(10)).ok());
  {
    const test::Reply r = test::get(server->port(), "/metrics");
    ASSERT_EQ(r.status, 200);
    const EmitterStats s = emitter->stats();
    ASSERT_GT(s.adapters[0].dropped, 0U);
    ASSERT_GT(s.adapters[1].dropped, 0U);
    check(s, r.body);
    expect_matches(parse_samples(r.body), s);  // the server reads the same stats()
    const auto drops = drops_by_reason(parse_samples(r.body), "stalled \"oldest\"");
    EXPECT_EQ(drops.at("overflow"), s.adapters[0].dropped);
    EXPECT_EQ(drops.at("shutdown"), 0U);
  }

  // 2. Overflow, then a shutdown that gives up on what is queued and unsettled.
  oldest->stall();
  newest->stall();
  emit(50);
  EXPECT_EQ(emitter->shutdown(std::chrono::milliseconds(100)).code(), Errc::timeout);
  {
    const test::Reply r = test::get(server->port(), "/metrics");
    ASSERT_EQ(r.status, 200);
    const EmitterStats s = emitter->stats();
    check(s, r.body);
    const auto drops = drops_by_reason(parse_samples(r.body), "stalled newest");
    EXPECT_GT(drops.at("overflow"), 0U);
    EXPECT_GT(drops.at("shutdown"), 0U);
  }
  emitter.reset();
  EXPECT_TRUE(server->stop().ok());
}

}  // namespace
}  // namespace emissions::http
