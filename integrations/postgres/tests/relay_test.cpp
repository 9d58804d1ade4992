// The Relay against a real PostgreSQL 15: published iff committed, each event once, ids and
// times kept, rows deleted once settled; LISTEN wake-ups; claims of two relays competing;
// a dead relay's lease expiring; stop() by its deadline; a terminated connection.
#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "emissions/emitter.hpp"
#include "emissions/outbox/postgres.hpp"
#include "pg_test_support.hpp"
#include "recording_adapter.hpp"
#include "relay_support.hpp"

namespace {

using emissions::Errc;
using emissions::postgres::OutboxOptions;
using emissions::postgres::Relay;
using emissions::postgres::RelayOptions;
using emissions::postgres::test::Db;
using emissions::postgres::test::Delivered;
using emissions::postgres::test::eventually;
using emissions::postgres::test::fresh_outbox;
using emissions::postgres::test::keyed;
using emissions::postgres::test::log_config;
using emissions::postgres::test::relay_options;
using emissions::postgres::test::rows_in;
using emissions::postgres::test::SharedLog;
using emissions::postgres::test::stage_events;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

class RelayTest : public emissions::postgres::test::RelayFixture {
 protected:
  RelayTest() { outbox = keyed(outbox); }
};

TEST_F(RelayTest, PublishesCommittedEventsOnceAndNothingOfRolledBackOnes) {
  emissions::Emitter emitter(log_config("a", log));
  Relay relay(emitter, relay_options(outbox, "relay_once"));
  ASSERT_TRUE(relay.start().ok());
  for (int t = 0; t < 20; ++t)
    stage_events(emitter, db, outbox, t * 10, 10, t % 2 == 0);
  // 10 committed transactions of 10 events.
  ASSERT_TRUE(eventually([&] { return relay.stats().deleted == 100; }, 20s))
      << relay.stats().deleted;
  ASSERT_TRUE(relay.stop(5s).ok());
  ASSERT_TRUE(emitter.drain(5s).ok());
  const auto entries = log->entries();
  ASSERT_EQ(entries.size(), 100U);
  std::set<int> seen;
  for (const Delivered& d : entries) {
    const int n = d.event.payload.at("n").get<int>();
    EXPECT_TRUE(seen.insert(n).second) << "published twice: " << n;
    EXPECT_EQ((n / 10) % 2, 0) << "from a rolled-back transaction: " << n;
  }
  const auto stats = relay.stats();
  EXPECT_EQ(stats.claimed, 100U);
  EXPECT_EQ(stats.published, 100U);
  EXPECT_EQ(stats.deleted, 100U);
  EXPECT_EQ(stats.reconnects, 0U);
  EXPECT_EQ(rows_in(db, outbox), 0);
}

TEST_F(RelayTest, CommittedEventsSurviveTheStagingProcessDyingRightAfterCommit) {
  {
    // The request's process: stages, commits, and is gone before anything else happens
    // (its Emitter never sees the events: they exist only in the database).
    auto unused = std::make_shared<SharedLog>();
    emissions::Emitter doomed(log_config("doomed", unused));
    for (int t = 0; t < 5; ++t)
      stage_events(doomed, db, outbox, t * 3, 3, true);
    ASSERT_TRUE(doomed.shutdown(0ms).ok());
    EXPECT_EQ(unused->size(), 0U);
  }
  emissions::Emitter emitter(log_config("a", log));
  Relay relay(emitter, relay_options(outbox, "relay_after_crash"));
  ASSERT_TRUE(relay.start().ok());
  ASSERT_TRUE(eventually([&] { return relay.stats().deleted == 15; }, 20s));
  EXPECT_TRUE(relay.stop(5s).ok());
  ASSERT_TRUE(emitter.drain(5s).ok());
  EXPECT_EQ(log->size(), 15U);
}

TEST_F(RelayTest, KeepsIdsTimesMetadataAndPublishesInSeqOrder) {
  emissions::Emitter emitter(log_config("a", log));
  // Emitted here, read back from the table before the relay runs.
  emissions::Transaction tx = emitter.start();
  for (int i = 0; i < 30; ++i)
    ASSERT_TRUE(tx.emit("e", {{"n", i}}, {{"m", i}}).ok());
  db.exec("BEGIN");
  ASSERT_TRUE(emissions::postgres::stage(tx, db.get(), outbox).ok());
  db.exec("COMMIT");
  const auto ids = db.column("SELECT id::text FROM \"" + outbox.table + "\" ORDER BY seq");
  const auto micros =
      db.column("SELECT (extract(epoch FROM emitted_at) * 1000000)::bigint FROM \"" + outbox.table +
                "\" ORDER BY seq");
  Relay relay(emitter, relay_options(outbox, "relay_keep"));
  ASSERT_TRUE(relay.start().ok());
  ASSERT_TRUE(log->wait_for_size(30, 20s));
  const auto entries = log->entries();
  for (std::size_t i = 0; i < 30; ++i) {
    const emissions::Event& e = entries[i].event;
    EXPECT_EQ(e.payload.at("n").get<std::size_t>(), i);
    EXPECT_EQ(e.metadata.at("m").get<std::size_t>(), i);
    EXPECT_EQ(e.id.str(), ids[i]);
    EXPECT_EQ(std::chrono::duration_cast<std::chrono::microseconds>(e.emitted_at.time_since_epoch())
                  .count(),
              std::stoll(micros[i]));
  }
  EXPECT_TRUE(relay.stop(5s).ok());
}

TEST_F(RelayTest, NotifyWakesTheRelayLongBeforeItsPollInterval) {
  emissions::Emitter emitter(log_config("a", log));
  RelayOptions options = relay_options(outbox, "relay_notify");
  options.poll_interval = 3'600'000ms;  // an hour: only a notification can wake it
  Relay relay(emitter, options);
  ASSERT_TRUE(relay.start().ok());
  ASSERT_TRUE(eventually([&] { return relay.stats().connected; }, 10s));
  // The first claim (at connection) found nothing; it now sleeps for an hour unless notified.
  ASSERT_TRUE(eventually([&] { return relay.stats().claimed == 0; }, 1s));
  for (int round = 0; round < 3; ++round) {
    stage_events(emitter, db, outbox, round, 1, true);
    ASSERT_TRUE(log->wait_for_size(static_cast<std::size_t>(round) + 1, 20s)) << round;
  }
  EXPECT_TRUE(relay.stop(5s).ok());
}

TEST_F(RelayTest, TwoRelaysShareTheRowsWithoutDuplicatesAndKeepPerKeyOrder) {
  emissions::Emitter emitter_a(log_config("a", log));
  emissions::Emitter emitter_b(log_config("b", log));
  RelayOptions a = relay_options(outbox, "relay_a");
  RelayOptions b = relay_options(outbox, "relay_b");
  a.batch = b.batch = 7;  // many claims, so that the two relays interleave
  Relay relay_a(emitter_a, a);
  Relay relay_b(emitter_b, b);
  constexpr int kTransactions = 200;
  constexpr int kPerTransaction = 5;
  const std::string keys[] = {"k0", "k1", "k2", "k3", ""};
  // Half before the relays start (both find a backlog at once), half while they run.
  for (int t = 0; t < kTransactions / 2; ++t) {
    stage_events(emitter_a, db, outbox, t * kPerTransaction, kPerTransaction, true, keys[t % 5]);
  }
  ASSERT_TRUE(relay_a.start().ok());
  ASSERT_TRUE(relay_b.start().ok());
  for (int t = kTransactions / 2; t < kTransactions; ++t) {
    stage_events(emitter_a, db, outbox, t * kPerTransaction, kPerTransaction, true, keys[t % 5]);
  }
  const std::size_t total = kTransactions * kPerTransaction;
  ASSERT_TRUE(
      eventually([&] { return relay_a.stats().deleted + relay_b.stats().deleted == total; }, 30s));
  EXPECT_TRUE(relay_a.stop(5s).ok());
  EXPECT_TRUE(relay_b.stop(5s).ok());
  ASSERT_TRUE(emitter_a.drain(5s).ok());
  ASSERT_TRUE(emitter_b.drain(5s).ok());

  const auto entries = log->entries();
  ASSERT_EQ(entries.size(), total);  // each committed event exactly once
  std::set<int> seen;
  std::map<std::string, int> last_of_key;
  for (const Delivered& d : entries) {
    const int n = d.event.payload.at("n").get<int>();
    EXPECT_TRUE(seen.insert(n).second) << "published twice: " << n;
    const std::string key = d.event.payload.value("key", std::string());
    if (key.empty()) continue;
    // Delivery order over both relays: a key's rows are never in flight in two claims.
    if (const auto it = last_of_key.find(key); it != last_of_key.end()) {
      EXPECT_GT(n, it->second) << "key " << key << " out of order";
    }
    last_of_key[key] = n;
  }
  const auto sa = relay_a.stats();
  const auto sb = relay_b.stats();
  EXPECT_EQ(sa.claimed + sb.claimed, total);
  EXPECT_EQ(sa.published + sb.published, total);
  EXPECT_EQ(sa.deleted + sb.deleted, total);
  EXPECT_EQ(rows_in(db, outbox), 0);
}

TEST_F(RelayTest, DeadRelaysLeaseExpiresAndAnotherRelayTakesOver) {
  // Relay A claims and then "dies": its adapter never finishes and stop(0) abandons the
  // claim, as a crashed process would. Its rows stay leased until the lease expires.
  auto stuck = std::make_shared<SharedLog>();
  stuck->close();
  emissions::Emitter emitter_a(log_config("a", stuck));
  RelayOptions a = relay_options(outbox, "relay_dead");
  a.lease = 1'500ms;
  Relay relay_a(emitter_a, a);
  stage_events(emitter_a, db, outbox, 0, 20, true, "k");
  const auto started_at = std::chrono::steady_clock::now();  // A's claim comes later
  ASSERT_TRUE(relay_a.start().ok());
  ASSERT_TRUE(eventually([&] { return relay_a.stats().published == 20; }, 20s));
  const emissions::Status stopped = relay_a.stop(0ms);
  EXPECT_EQ(stopped.code(), Errc::timeout);
  EXPECT_THAT(stopped.message(), HasSubstr("20 rows"));

  emissions::Emitter emitter_b(log_config("b", log));
  RelayOptions b = relay_options(outbox, "relay_heir");
  b.poll_interval = 100ms;
  Relay relay_b(emitter_b, b);
  ASSERT_TRUE(relay_b.start().ok());
  ASSERT_TRUE(log->wait_for_size(20, 20s));
  // Not before A's lease ran out: it was taken after started_at, for 1.5 s at least.
  EXPECT_GE(std::chrono::steady_clock::now() - started_at, 1'500ms - 50ms);
  ASSERT_TRUE(eventually([&] { return relay_b.stats().deleted == 20; }, 10s));
  const auto entries = log->entries();
  ASSERT_EQ(entries.size(), 20U);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    EXPECT_EQ(entries[i].event.payload.at("n").get<std::size_t>(), i);  // in seq order
  }
  EXPECT_EQ(db.count("SELECT count(*) FROM \"" + outbox.table + "\""), 0);
  EXPECT_TRUE(relay_b.stop(5s).ok());
  stuck->open();  // the dead relay's emitter may now finish (its copies are the duplicates)
}

TEST_F(RelayTest, LiveLeaseHoldsOffAnotherRelayForTheSameKeyOnly) {
  // A holds key "k" (its adapter is stuck; it renews its leases every lease / 3). A listens
  // on another channel and polls hourly, so it claims only once, at connection.
  auto stuck = std::make_shared<SharedLog>();
  stuck->close();
  emissions::Emitter emitter_a(log_config("a", stuck));
  RelayOptions a = relay_options(outbox, "relay_holder");
  a.outbox.channel = outbox.channel + "_deaf";
  a.poll_interval = 3'600'000ms;
  a.lease = 1'200ms;  // renewed every 400 ms while A lives
  Relay relay_a(emitter_a, a);
  stage_events(emitter_a, db, outbox, 0, 5, true, "k");
  ASSERT_TRUE(relay_a.start().ok());
  ASSERT_TRUE(eventually([&] { return relay_a.stats().published == 5; }, 20s));

  stage_events(emitter_a, db, outbox, 5, 5, true, "k");
  stage_events(emitter_a, db, outbox, 10, 5, true, "other");
  emissions::Emitter emitter_b(log_config("b", log));
  RelayOptions b = relay_options(outbox, "relay_b");
  b.poll_interval = 50ms;
  Relay relay_b(emitter_b, b);
  ASSERT_TRUE(relay_b.start().ok());
  ASSERT_TRUE(log->wait_for_size(5, 20s));
  // Two of A's leases long: its renewals must keep B off "k" all that time.
  std::this_thread::sleep_for(2'400ms);
  for (const Delivered& d : log->entries()) {
    EXPECT_EQ(d.event.payload.at("key").get<std::string>(), "other");
  }
  EXPECT_EQ(log->size(), 5U);

  stuck->open();  // A settles and deletes its claim; "k" is free again
  ASSERT_TRUE(eventually([&] { return relay_b.stats().deleted == 10; }, 20s));
  EXPECT_EQ(relay_a.stats().deleted, 5U);
  EXPECT_TRUE(relay_a.stop(5s).ok());
  EXPECT_TRUE(relay_b.stop(5s).ok());
  ASSERT_TRUE(emitter_b.drain(5s).ok());
  std::vector<int> k_rows;
  for (const Delivered& d : log->entries()) {
    if (d.event.payload.at("key") == "k") k_rows.push_back(d.event.payload.at("n").get<int>());
  }
  EXPECT_EQ(k_rows, (std::vector<int>{5, 6, 7, 8, 9}));
  EXPECT_EQ(stuck->size(), 5U);
  EXPECT_EQ(rows_in(db, outbox), 0);
}

TEST_F(RelayTest, StopReturnsByItsDeadlineWithRowsInFlight) {
  auto stuck = std::make_shared<SharedLog>();
  stuck->close();
  emissions::Emitter emitter(log_config("a", stuck));
  Relay relay(emitter, relay_options(outbox, "relay_stop"));
  stage_events(emitter, db, outbox, 0, 3, true);
  ASSERT_TRUE(relay.start().ok());
  ASSERT_TRUE(eventually([&] { return relay.stats().published == 3; }, 20s));
  const auto before = std::chrono::steady_clock::now();
  const emissions::Status s = relay.stop(300ms);
  const auto took = std::chrono::steady_clock::now() - before;
  EXPECT_EQ(s.code(), Errc::timeout);
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 300ms + 2s);        // its deadline, plus scheduling slack on a loaded machine
  EXPECT_EQ(rows_in(db, outbox), 3);  // left for the next claim
  EXPECT_TRUE(relay.stop(1s).ok());   // idempotent
  stuck->open();
}

TEST_F(RelayTest, StopReturnsByItsDeadlineWhileTheServerIsUnreachable) {
  emissions::Emitter emitter(log_config("a", log));
  RelayOptions options = relay_options(outbox, "relay_nowhere");
  options.conninfo = "host=/nonexistent/socket/dir port=5432 dbname=x user=y password=hunter2";
  const emissions::test_support::TelemetryRecorder recorder("relay_nowhere_errors",
                                                            {{"emissions", "outbox", "error"}});
  Relay relay(emitter, options);
  ASSERT_TRUE(relay.start().ok());
  ASSERT_TRUE(eventually([&] { return relay.stats().errors >= 1; }, 10s));
  const auto stats = relay.stats();
  EXPECT_FALSE(stats.connected);
  EXPECT_THAT(stats.last_error, HasSubstr("cannot connect"));
  EXPECT_THAT(stats.last_error, ::testing::Not(HasSubstr("hunter2")));
  ASSERT_TRUE(recorder.wait_for({"emissions", "outbox", "error"}, 1, 10s));
  const auto reported = recorder.records({"emissions", "outbox", "error"}).front();
  EXPECT_EQ(reported.metadata.at("relay"), "relay_nowhere");
  EXPECT_THAT(reported.metadata.at("reason").get<std::string>(),
              ::testing::Not(HasSubstr("hunter2")));
  const auto before = std::chrono::steady_clock::now();
  EXPECT_TRUE(relay.stop(200ms).ok());  // nothing in flight
  EXPECT_LT(std::chrono::steady_clock::now() - before, 2s);
}

TEST_F(RelayTest, TerminatedConnectionIsReopenedAndNothingIsLostOrRepeated) {
  emissions::Emitter emitter(log_config("a", log));
  Relay relay(emitter, relay_options(outbox, "relay_terminated"));
  ASSERT_TRUE(relay.start().ok());
  int staged = 0;
  for (int round = 0; round < 5; ++round) {
    for (int t = 0; t < 10; ++t, staged += 4)
      stage_events(emitter, db, outbox, staged, 4, true);
    ASSERT_TRUE(eventually([&] { return relay.stats().connected; }, 20s));
    db.exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
        "'relay_terminated'");
  }
  ASSERT_TRUE(
      eventually([&] { return relay.stats().deleted == static_cast<std::uint64_t>(staged); }, 30s))
      << relay.stats().deleted << " of " << staged << "; " << relay.stats().last_error;
  EXPECT_GE(relay.stats().reconnects, 1U);
  EXPECT_TRUE(relay.stop(5s).ok());
  ASSERT_TRUE(emitter.drain(5s).ok());
  const auto entries = log->entries();
  EXPECT_EQ(entries.size(), static_cast<std::size_t>(staged));
  std::set<int> seen;
  for (const Delivered& d : entries) {
    EXPECT_TRUE(seen.insert(d.event.payload.at("n").get<int>()).second);
  }
  EXPECT_EQ(rows_in(db, outbox), 0);
}

TEST_F(RelayTest, MissingTableIsReportedWithoutSpinning) {
  emissions::Emitter emitter(log_config("a", log));
  OutboxOptions missing = outbox;
  missing.table = "no_such_relay_table";
  RelayOptions options = relay_options(missing, "relay_missing");
  options.poll_interval = 100ms;
  Relay relay(emitter, options);
  ASSERT_TRUE(relay.start().ok());
  ASSERT_TRUE(eventually([&] { return relay.stats().errors >= 1; }, 10s));
  std::this_thread::sleep_for(500ms);
  const auto stats = relay.stats();
  EXPECT_THAT(stats.last_error, HasSubstr("42P01"));
  EXPECT_LE(stats.errors, 20U);  // one per poll at most: ~5 in 500 ms, never a busy loop
  EXPECT_TRUE(stats.connected);
  EXPECT_TRUE(relay.stop(1s).ok());
}

TEST_F(RelayTest, ClaimTheEmitterRefusesIsHandedBackWhole) {
  emissions::Emitter emitter(log_config("a", log));
  stage_events(emitter, db, outbox, 0, 6, true);
  ASSERT_TRUE(emitter.shutdown(5s).ok());  // publish now returns closed
  Relay relay(emitter, relay_options(outbox, "relay_refused"));
  ASSERT_TRUE(relay.start().ok());
  ASSERT_TRUE(eventually([&] { return relay.stats().errors >= 1; }, 10s));
  EXPECT_THAT(relay.stats().last_error, HasSubstr("closed"));
  EXPECT_TRUE(relay.stop(5s).ok());
  const auto stats = relay.stats();
  EXPECT_GE(stats.claimed, 6U);
  EXPECT_EQ(stats.published, 0U);
  EXPECT_EQ(stats.deleted, 0U);
  // Released, not left under a lease: the next relay may take them at once.
  EXPECT_EQ(db.count("SELECT count(*) FROM \"" + outbox.table + "\" WHERE claim_id IS NULL"), 6);
}

TEST(RelayOptionsTest, MistakesAreConfigErrorsNamingTheField) {
  emissions::Emitter emitter(log_config("a", std::make_shared<SharedLog>()));
  auto error_of = [&](RelayOptions o) -> std::string {
    try {
      Relay relay(emitter, std::move(o));
    } catch (const emissions::ConfigError& e) {
      return e.what();
    }
    return "";
  };
  const RelayOptions good{.conninfo = "dbname=x"};
  RelayOptions o = good;
  o.conninfo = "";
  EXPECT_THAT(error_of(o), HasSubstr("RelayOptions::conninfo"));
  o = good;
  o.conninfo = "host=x password secret";  // unparseable; the text may hold a password
  EXPECT_THAT(error_of(o), HasSubstr("RelayOptions::conninfo"));
  EXPECT_THAT(error_of(o), ::testing::Not(HasSubstr("secret")));
  o = good;
  o.batch = 0;
  EXPECT_THAT(error_of(o), HasSubstr("RelayOptions::batch"));
  o = good;
  o.lease = 10ms;
  EXPECT_THAT(error_of(o), HasSubstr("RelayOptions::lease"));
  o = good;
  o.poll_interval = 0ms;
  EXPECT_THAT(error_of(o), HasSubstr("RelayOptions::poll_interval"));
  o = good;
  o.name = "";
  EXPECT_THAT(error_of(o), HasSubstr("RelayOptions::name"));
  o = good;
  o.outbox.table = "a.b.c";
  EXPECT_THAT(error_of(o), HasSubstr("RelayOptions::outbox.table"));
  o = good;
  o.outbox.channel = std::string(64, 'c');
  EXPECT_THAT(error_of(o), HasSubstr("RelayOptions::outbox.channel"));
  EXPECT_EQ(error_of(good), "");
}

TEST(RelayLifecycle, StartTwiceAndAfterStop) {
  emissions::Emitter emitter(log_config("a", std::make_shared<SharedLog>()));
  Relay relay(emitter, {.conninfo = emissions::postgres::test::conninfo()});
  EXPECT_TRUE(relay.stop(1s).ok());  // never started
  EXPECT_EQ(relay.start().code(), Errc::closed);
  Relay other(emitter, {.conninfo = emissions::postgres::test::conninfo()});
  ASSERT_TRUE(other.start().ok());
  EXPECT_EQ(other.start().code(), Errc::already_started);
  EXPECT_TRUE(other.stop(1s).ok());
}

}  // namespace
