// The server goes away for 5 s under a running relay (on a cluster of this test's own, so
// that the other tests keep theirs): the relay notices, reconnects with backoff once the
// server is back, listens again and carries on; nothing is lost or published twice.
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "emissions/emitter.hpp"
#include "emissions/outbox/postgres.hpp"
#include "pg_test_support.hpp"
#include "relay_support.hpp"
#include "temp_dir.hpp"

namespace {

using emissions::postgres::OutboxOptions;
using emissions::postgres::Relay;
using emissions::postgres::test::Db;
using emissions::postgres::test::Delivered;
using emissions::postgres::test::eventually;
using emissions::postgres::test::log_config;
using emissions::postgres::test::SharedLog;
using emissions::postgres::test::stage_events;
using namespace std::chrono_literals;

// A cluster of this test's own, through the same script as the suite's fixture.
class OwnCluster {
 public:
  OwnCluster() { ok_ = script("start"); }
  ~OwnCluster() { (void)script("stop"); }
  OwnCluster(const OwnCluster&) = delete;
  OwnCluster& operator=(const OwnCluster&) = delete;

  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] bool pause() const { return script("pause"); }
  [[nodiscard]] bool resume() const { return script("resume"); }
  [[nodiscard]] std::string conninfo() const {
    std::ifstream in(state_.path().string() + "/conninfo");
    std::string line;
    std::getline(in, line);
    return line;
  }

 private:
  bool script(const char* command) const {
    const std::string line = std::string("bash ") + EMISSIONS_PG_CLUSTER_SCRIPT + " " + command +
                             " " + state_.path().string() + " >/dev/null";
    return std::system(line.c_str()) == 0;
  }
  emissions::test_support::TempDir state_;
  bool ok_ = false;
};

TEST(RelayOutage, ServerStoppedForFiveSecondsThenTheRelayCarriesOn) {
  OwnCluster cluster;
  ASSERT_TRUE(cluster.ok());
  auto log = std::make_shared<SharedLog>();
  emissions::Emitter emitter(log_config("a", log));
  OutboxOptions outbox;
  {
    const Db db(cluster.conninfo());
    db.exec(emissions::postgres::schema_sql(outbox));
  }
  Relay relay(emitter, {.conninfo = cluster.conninfo(),
                        .outbox = outbox,
                        .poll_interval = 200ms,
                        .lease = 2'000ms,
                        .name = "outage"});
  ASSERT_TRUE(relay.start().ok());
  {
    const Db db(cluster.conninfo());
    for (int t = 0; t < 10; ++t)
      stage_events(emitter, db, outbox, t * 5, 5, true);
  }
  ASSERT_TRUE(eventually([&] { return relay.stats().deleted == 50; }, 20s));

  ASSERT_TRUE(cluster.pause());
  ASSERT_TRUE(eventually([&] { return !relay.stats().connected; }, 10s));
  std::this_thread::sleep_for(5s);
  EXPECT_FALSE(relay.stats().connected);
  ASSERT_TRUE(cluster.resume());

  ASSERT_TRUE(eventually([&] { return relay.stats().connected; }, 20s));
  {
    const Db db(cluster.conninfo());
    for (int t = 10; t < 20; ++t)
      stage_events(emitter, db, outbox, t * 5, 5, true);
  }
  ASSERT_TRUE(eventually([&] { return relay.stats().deleted == 100; }, 20s))
      << relay.stats().claimed << " claimed, " << relay.stats().published << " published, "
      << relay.stats().deleted << " deleted, " << relay.stats().errors
      << " errors; last: " << relay.stats().last_error;
  EXPECT_GE(relay.stats().reconnects, 1U);
  EXPECT_TRUE(relay.stop(5s).ok());
  ASSERT_TRUE(emitter.drain(5s).ok());
  std::set<int> seen;
  for (const Delivered& d : log->entries()) {
    EXPECT_TRUE(seen.insert(d.event.payload.at("n").get<int>()).second);
  }
  EXPECT_EQ(seen.size(), 100U);
}

}  // namespace
