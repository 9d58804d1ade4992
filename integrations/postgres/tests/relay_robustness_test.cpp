// The Relay against a real PostgreSQL 15, the review of issue 12: a settlement that arrives
// while a renewal waits is deleted at once; the claim lock is the table's, however it is
// spelled; leases are renewed during a pause after an SQL error; the relay's literals hold
// with standard_conforming_strings off; stop() and ~Relay() from a telemetry handler on the
// relay thread; stop() and ~Relay() while a migration holds the table locked.
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "emissions/emitter.hpp"
#include "emissions/outbox/postgres.hpp"
#include "emissions/telemetry.hpp"
#include "pg_test_support.hpp"
#include "relay_support.hpp"

namespace {

using emissions::postgres::OutboxOptions;
using emissions::postgres::Relay;
using emissions::postgres::RelayOptions;
using emissions::postgres::test::Db;
using emissions::postgres::test::eventually;
using emissions::postgres::test::fresh_outbox;
using emissions::postgres::test::log_config;
using emissions::postgres::test::relay_options;
using emissions::postgres::test::rows_in;
using emissions::postgres::test::SharedLog;
using emissions::postgres::test::stage_events;
using namespace std::chrono_literals;

class RelayRobustness : public emissions::postgres::test::RelayFixture {};

// The relay's backend waits for a lock (the test holds the rows).
bool waits_on_lock(const Db& db, const std::string& application) {
  return db.count("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" + application +
                  "' AND wait_event_type = 'Lock'") == 1;
}

TEST_F(RelayRobustness, SettlementDuringARenewalIsDeletedAtOnce) {
  log->close();  // deliveries wait: the claim stays in flight
  emissions::Emitter emitter(log_config("a", log));
  RelayOptions options = relay_options(outbox, "relay_renew_wake");
  options.poll_interval = 3'600'000ms;  // no poll: only the settlement's wake-up may delete
  options.lease = 9'000ms;              // renewals every 3 s
  stage_events(emitter, db, outbox, 0, 3, true);
  Relay relay(emitter, options);
  ASSERT_TRUE(relay.start().ok());
  ASSERT_TRUE(eventually([&] { return relay.stats().published == 3; }, 20s));
  // Hold the first renewal: lock the claimed rows.
  Db locker;
  locker.exec("BEGIN");
  locker.exec("SELECT 1 FROM " + table + " FOR UPDATE");
  ASSERT_TRUE(eventually([&] { return waits_on_lock(db, "relay_renew_wake"); }, 10s));
  // Settle the claim while the renewal waits: its wake-up is consumed by that wait.
  log->open();
  ASSERT_TRUE(log->wait_for_size(3, 5s));
  std::this_thread::sleep_for(200ms);  // the settlement callback runs after the delivery
  locker.exec("COMMIT");
  // The rows are deleted at once, not after the next renewal (3 s later).
  EXPECT_TRUE(eventually([&] { return relay.stats().deleted == 3; }, 1'500ms))
      << relay.stats().deleted;
  EXPECT_TRUE(relay.stop(5s).ok());
  EXPECT_EQ(rows_in(db, outbox), 0);
}

TEST_F(RelayRobustness, ClaimLockIsTheTablesHoweverItIsSpelled) {
  // The relay names the table schema-qualified; the test takes the claim lock keyed on the
  // table's OID, as a relay naming it without a schema does.
  emissions::Emitter emitter(log_config("a", log));
  OutboxOptions qualified = outbox;
  qualified.table = "public." + outbox.table;
  stage_events(emitter, db, outbox, 0, 2, true);
  Db holder;
  holder.exec("BEGIN");
  holder.exec("SELECT pg_advisory_xact_lock(1701998957, '" + table + "'::regclass::oid::integer)");
  Relay relay(emitter, relay_options(qualified, "relay_spelling"));
  ASSERT_TRUE(relay.start().ok());
  ASSERT_TRUE(eventually([&] { return waits_on_lock(db, "relay_spelling"); }, 10s));
  EXPECT_EQ(relay.stats().claimed, 0U);
  holder.exec("COMMIT");
  EXPECT_TRUE(eventually([&] { return relay.stats().deleted == 2; }, 20s));
  EXPECT_TRUE(relay.stop(5s).ok());
}

TEST_F(RelayRobustness, ClaimNeverTakesARowAConcurrentClaimHolds) {
  // Another claim (one that did not take the same advisory lock) leases the first row and
  // commits while the relay's claim waits for that row: the relay's UPDATE checks the lease
  // again on the row it locks and leaves it alone.
  emissions::Emitter emitter(log_config("a", log));
  stage_events(emitter, db, outbox, 0, 2, true);
  Db other;
  other.exec("BEGIN");
  other.exec("UPDATE " + table +
             " SET claimed_by = 'other', claim_id = gen_random_uuid(), claimed_until = now() + "
             "interval '1 hour', claims = claims + 1 WHERE seq = (SELECT min(seq) FROM " +
             table + ")");
  Relay relay(emitter, relay_options(outbox, "relay_recheck"));
  ASSERT_TRUE(relay.start().ok());
  ASSERT_TRUE(eventually([&] { return waits_on_lock(db, "relay_recheck"); }, 10s));
  other.exec("COMMIT");
  ASSERT_TRUE(eventually([&] { return relay.stats().deleted == 1; }, 10s));
  std::this_thread::sleep_for(300ms);  // polls every 200 ms: the row stays the other's
  EXPECT_EQ(relay.stats().claimed, 1U);
  EXPECT_EQ(db.count("SELECT count(*) FROM " + table + " WHERE claimed_by = 'other'"), 1);
  EXPECT_TRUE(relay.stop(5s).ok());
}

TEST_F(RelayRobustness, LeasesAreRenewedWhileAnSqlErrorPausesTheRelay) {
  // Deleting fails (a trigger refuses it): the relay pauses for its poll interval, far
  // longer than its lease, and must keep renewing the rows it holds.
  const std::string fn = "\"" + outbox.table + "_refuse\"";
  db.exec("CREATE OR REPLACE FUNCTION " + fn +
          "() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no deletes'; END $$");
  db.exec("CREATE TRIGGER refuse BEFORE DELETE ON " + table + " FOR EACH ROW EXECUTE FUNCTION " +
          fn + "()");
  emissions::Emitter emitter(log_config("a", log));
  RelayOptions options = relay_options(outbox, "relay_paused");
  options.poll_interval = 3'600'000ms;
  options.lease = 600ms;
  stage_events(emitter, db, outbox, 0, 3, true);
  Relay relay(emitter, options);
  ASSERT_TRUE(relay.start().ok());
  ASSERT_TRUE(eventually([&] { return relay.stats().errors >= 1; }, 20s));
  EXPECT_NE(relay.stats().last_error.find("no deletes"), std::string::npos)
      << relay.stats().last_error;
  // Three leases later the rows are still under a live lease of this relay.
  std::this_thread::sleep_for(1'800ms);
  EXPECT_EQ(db.count("SELECT count(*) FROM " + table +
                     " WHERE claimed_by = 'relay_paused' AND claimed_until > now()"),
            3);
  (void)relay.stop(0ms);  // the rows stay (deletes are refused)
  db.exec("DROP TABLE " + table);
  db.exec("DROP FUNCTION " + fn + "()");
}

TEST_F(RelayRobustness, LiteralsHoldWithStandardConformingStringsOff) {
  emissions::Emitter emitter(log_config("a", log));
  const std::string name = "relay\\'odd";  // relay\'odd: a backslash before a quote
  RelayOptions options{
      .conninfo = emissions::postgres::test::conninfo() +
                  " options='-c standard_conforming_strings=off -c escape_string_warning=off'",
      .outbox = outbox,
      .poll_interval = 200ms,
      .lease = 5'000ms,
      .name = name};
  log->close();
  stage_events(emitter, db, outbox, 0, 2, true);
  Relay relay(emitter, options);
  ASSERT_TRUE(relay.start().ok());
  ASSERT_TRUE(eventually([&] { return relay.stats().published == 2; }, 10s))
      << relay.stats().last_error;
  EXPECT_EQ(db.scalar("SELECT DISTINCT claimed_by FROM " + table), name);
  log->open();
  EXPECT_TRUE(eventually([&] { return relay.stats().deleted == 2; }, 10s));
  EXPECT_TRUE(relay.stop(5s).ok());
}

class TelemetryHandler {
 public:
  TelemetryHandler(std::string id, emissions::telemetry::EventName event,
                   emissions::telemetry::Handler handler)
      : id_(std::move(id)) {
    EXPECT_TRUE(emissions::telemetry::attach(id_, std::move(event), std::move(handler)).ok());
  }
  ~TelemetryHandler() { (void)emissions::telemetry::detach(id_); }
  TelemetryHandler(const TelemetryHandler&) = delete;
  TelemetryHandler& operator=(const TelemetryHandler&) = delete;

 private:
  std::string id_;
};

TEST_F(RelayRobustness, StopFromATelemetryHandlerOnTheRelayThread) {
  emissions::Emitter emitter(log_config("a", log));
  Relay relay(emitter, relay_options(outbox, "relay_self_stop"));
  std::atomic<bool> handled{false};
  std::atomic<bool> ok{false};
  const TelemetryHandler handler(
      "relay_self_stop", {"emissions", "outbox", "connected"},
      [&](const auto&, const nlohmann::json&, const nlohmann::json& metadata) {
        if (metadata.value("relay", "") != "relay_self_stop") return;
        ok = relay.stop(1s).ok();
        handled = true;
      });
  ASSERT_TRUE(relay.start().ok());
  ASSERT_TRUE(eventually([&] { return handled.load(); }, 10s));
  EXPECT_TRUE(ok.load());
  // The thread ends by itself; this stop joins it.
  EXPECT_TRUE(relay.stop(5s).ok());
  EXPECT_FALSE(relay.stats().connected);
}

TEST_F(RelayRobustness, DestroyedFromATelemetryHandlerOnTheRelayThread) {
  emissions::Emitter emitter(log_config("a", log));
  auto relay = std::make_unique<Relay>(emitter, relay_options(outbox, "relay_self_destroy"));
  std::atomic<bool> started{false};
  std::atomic<bool> handled{false};
  const TelemetryHandler handler(
      "relay_self_destroy", {"emissions", "outbox", "connected"},
      [&](const auto&, const nlohmann::json&, const nlohmann::json& metadata) {
        if (metadata.value("relay", "") != "relay_self_destroy") return;
        // Not before start() returned: the test thread uses `relay` until then.
        if (!eventually([&] { return started.load(); }, 10s)) return;
        relay.reset();
        handled = true;
      });
  ASSERT_TRUE(relay->start().ok());
  started = true;
  ASSERT_TRUE(eventually([&] { return handled.load(); }, 10s));
  // The detached thread closes its connection and ends.
  EXPECT_TRUE(eventually(
      [&] {
        return db.count(
                   "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                   "'relay_self_destroy'") == 0;
      },
      10s));
}

TEST_F(RelayRobustness, StopAndDestructionReturnByTheirDeadlineWhileAMigrationLocksTheTable) {
  // Adversary: a migration holds the outbox in ACCESS EXCLUSIVE mode in an open transaction,
  // so the relay's claim waits on the lock inside the server with no end of its own. stop()
  // must still return by its deadline, and ~Relay() at once after; the rows stay for later.
  emissions::Emitter emitter(log_config("a", log));
  stage_events(emitter, db, outbox, 0, 3, true);
  Db migration;
  migration.exec("BEGIN");
  migration.exec("LOCK TABLE " + table + " IN ACCESS EXCLUSIVE MODE");
  auto relay = std::make_unique<Relay>(emitter, relay_options(outbox, "relay_migration_lock"));
  ASSERT_TRUE(relay->start().ok());
  ASSERT_TRUE(eventually([&] { return waits_on_lock(db, "relay_migration_lock"); }, 20s));
  const auto stopping = std::chrono::steady_clock::now();
  (void)relay->stop(300ms);
  EXPECT_LT(std::chrono::steady_clock::now() - stopping, 300ms + 2s);  // scheduling slack
  const auto destroying = std::chrono::steady_clock::now();
  relay.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - destroying, 2s);
  migration.exec("ROLLBACK");
  EXPECT_EQ(log->size(), 0U);  // nothing was claimed, so nothing was published
  EXPECT_EQ(rows_in(db, outbox), 3);
  // The relay's session does not stay behind waiting for the lock.
  EXPECT_TRUE(eventually(
      [&] {
        return db.count(
                   "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                   "'relay_migration_lock'") == 0;
      },
      10s));
}

}  // namespace
