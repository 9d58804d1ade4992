// The Relay against a real PostgreSQL 15, the second review of issue 12: rows a shutdown
// dropped stay in the table; stop() returns while a connection attempt hangs (a host name
// resolution); a batch larger than an adapter's buffer is published in pieces; `deleted`
// stays exact when a DELETE's reply is lost; a malformed row is set aside, not a stall.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "emissions/emitter.hpp"
#include "emissions/outbox/postgres.hpp"
#include "pg_test_support.hpp"
#include "recording_adapter.hpp"
#include "relay_faults.hpp"
#include "relay_support.hpp"

namespace {

using emissions::postgres::OutboxOptions;
using emissions::postgres::Relay;
using emissions::postgres::RelayOptions;
using emissions::postgres::detail::FaultPoint;
using emissions::postgres::test::Db;
using emissions::postgres::test::Delivered;
using emissions::postgres::test::eventually;
using emissions::postgres::test::fresh_outbox;
using emissions::postgres::test::keyed;
using emissions::postgres::test::log_config;
using emissions::postgres::test::LogAdapter;
using emissions::postgres::test::relay_options;
using emissions::postgres::test::rows_in;
using emissions::postgres::test::SharedLog;
using emissions::postgres::test::stage_events;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

class RelaySettlement : public emissions::postgres::test::RelayFixture {};

// Fails every delivery with a retriable code: events wait in their retry backoff.
class Unavailable final : public emissions::Adapter {
 public:
  std::string_view name() const override { return "unavailable"; }
  emissions::Status handle_events(std::span<const emissions::Event>) override {
    return emissions::Status(emissions::Errc::unavailable, "down");
  }
};

TEST_F(RelaySettlement, RowsTheEmittersShutdownDroppedStayInTheTable) {
  emissions::Config config;
  config.make_default = false;
  config.add_adapter(
      std::make_shared<Unavailable>(),
      {.retry = emissions::RetryPolicy{
           .max_attempts = 0, .initial_backoff = 60'000ms, .max_backoff = 60'000ms}});
  emissions::Emitter emitter(std::move(config));
  stage_events(emitter, db, outbox, 0, 5, true);
  const emissions::test_support::TelemetryRecorder recorder("relay_shutdown_drop",
                                                            {{"emissions", "outbox", "error"}});
  Relay relay(emitter, relay_options(outbox, "relay_shutdown_drop"));
  ASSERT_TRUE(relay.start().ok());
  ASSERT_TRUE(eventually([&] { return relay.stats().published == 5; }, 20s));
  // The retries wait a minute: the shutdown runs out of time and drops them.
  (void)emitter.shutdown(200ms);
  auto reported = [&] {
    for (const auto& r : recorder.records({"emissions", "outbox", "error"})) {
      if (r.metadata.at("reason").get<std::string>().find("dropped by the Emitter's shutdown") !=
          std::string::npos) {
        return true;
      }
    }
    return false;
  };
  ASSERT_TRUE(eventually(reported, 20s)) << relay.stats().last_error;
  (void)relay.stop(5s);
  EXPECT_EQ(relay.stats().deleted, 0U);
  EXPECT_EQ(rows_in(db, outbox), 5);  // for the next claim
}

// Holds "other" events at a gate while it is closed; delivers the outbox's events ("e") with
// n below 3 and fails the others with a retriable code.
class Picky final : public emissions::Adapter {
 public:
  explicit Picky(std::shared_ptr<SharedLog> log) : log_(std::move(log)) {}
  std::string_view name() const override { return "picky"; }
  emissions::Status handle_events(std::span<const emissions::Event> batch) override {
    for (const emissions::Event& e : batch) {
      if (e.name.str() == "other") {
        std::unique_lock lock(mutex_);
        entered_ = true;
        changed_.notify_all();
        changed_.wait_for(lock, 30s, [&] { return open_; });
      } else if (e.payload.at("n").get<int>() >= 3) {
        return emissions::Status(emissions::Errc::unavailable, "not these");
      }
    }
    log_->add("picky", batch);
    return {};
  }
  bool wait_entered() {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, 10s, [&] { return entered_; });
  }
  void open() {
    const std::lock_guard lock(mutex_);
    open_ = true;
    changed_.notify_all();
  }

 private:
  std::shared_ptr<SharedLog> log_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool entered_ = false;
  bool open_ = false;
};

TEST_F(RelaySettlement, ShutdownDropOfALaterPieceHandsBackOnlyFromThatPiece) {
  // A claim of 6 published in two pieces of 3: the first delivered, the second dropped by
  // the Emitter's shutdown. The first piece's rows are deleted; only the second's stay (they
  // used to be handed back all six, and the delivered three published again).
  auto picky = std::make_shared<Picky>(log);
  emissions::Config config;
  config.make_default = false;
  config.add_adapter(
      picky, {.max_demand = 3,
              .buffer_size = 4,
              .block_timeout = 1'000ms,
              .retry = emissions::RetryPolicy{
                  .max_attempts = 0, .initial_backoff = 60'000ms, .max_backoff = 60'000ms}});
  emissions::Emitter emitter(std::move(config));
  const emissions::test_support::TelemetryRecorder recorder("relay_piece_drop",
                                                            {{"emissions", "outbox", "error"}});
  // The queue is not empty (one event held at the gate, one queued), so a claim of 6 (more
  // than buffer_size) is refused, and the relay cuts its pieces to 3.
  for (int i = 0; i < 2; ++i) {
    emissions::Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit("other", nullptr).ok());
    ASSERT_TRUE(tx.commit().ok());
    if (i == 0) {
      ASSERT_TRUE(picky->wait_entered());
    }
  }
  stage_events(emitter, db, outbox, 0, 6, true);
  RelayOptions options = relay_options(outbox, "relay_piece_drop");
  options.batch = 6;
  Relay relay(emitter, options);
  ASSERT_TRUE(relay.start().ok());
  ASSERT_TRUE(eventually(
      [&] { return relay.stats().last_error.find("refused") != std::string::npos; }, 20s));
  picky->open();
  ASSERT_TRUE(eventually([&] { return relay.stats().published == 6; }, 20s))
      << relay.stats().last_error;
  ASSERT_TRUE(log->wait_for_size(5, 10s));  // two "other", the first piece
  (void)emitter.shutdown(200ms);            // the second piece waits a minute to be retried
  auto reported = [&] {
    for (const auto& r : recorder.records({"emissions", "outbox", "error"})) {
      if (r.metadata.at("reason").get<std::string>().find("dropped by the Emitter's shutdown") !=
          std::string::npos) {
        return true;
      }
    }
    return false;
  };
  ASSERT_TRUE(eventually(reported, 20s)) << relay.stats().last_error;
  ASSERT_TRUE(eventually([&] { return relay.stats().deleted == 3; }, 10s)) << relay.stats().deleted;
  (void)relay.stop(5s);
  EXPECT_EQ(relay.stats().deleted, 3U);
  EXPECT_EQ(db.column("SELECT payload->>'n' FROM " + table + " ORDER BY seq"),
            (std::vector<std::string>{"3", "4", "5"}));
}

TEST_F(RelaySettlement, StopReturnsWhileAConnectionAttemptHangs) {
  // The hook stands for libpq's blocking host name resolution: it holds the connecting
  // thread until released (or 30 s).
  std::mutex mutex;
  std::condition_variable changed;
  bool entered = false;
  bool released = false;
  bool returned = false;
  emissions::postgres::detail::set_fault_hook([&](FaultPoint point, PGconn*) {
    if (point != FaultPoint::connecting) return false;
    std::unique_lock lock(mutex);
    entered = true;
    changed.notify_all();
    changed.wait_for(lock, 30s, [&] { return released; });
    returned = true;
    return false;
  });
  emissions::Emitter emitter(log_config("a", log));
  {
    Relay relay(emitter, relay_options(outbox, "relay_resolving"));
    ASSERT_TRUE(relay.start().ok());
    {
      std::unique_lock lock(mutex);
      ASSERT_TRUE(changed.wait_for(lock, 10s, [&] { return entered; }));
    }
    EXPECT_TRUE(relay.stop(100ms).ok());  // nothing was in flight
    bool still_held = false;
    {
      const std::lock_guard lock(mutex);
      still_held = !returned;
      released = true;  // the destructor joins the connecting thread
    }
    changed.notify_all();
    EXPECT_TRUE(still_held) << "stop() waited for the connection attempt";
    EXPECT_FALSE(relay.stats().connected);
  }
  emissions::postgres::detail::set_fault_hook({});
}

TEST_F(RelaySettlement, StopAndDestructionReturnWhileConnectingToAServerThatDoesNotAnswer) {
  // A TCP listener that never accepts: the kernel completes the handshake, libpq sends its
  // startup packet and waits for a reply that never comes (the connect timeout is 10 s).
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), length), 0);
  ASSERT_EQ(::listen(listener, 16), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const std::string conninfo = "host=127.0.0.1 port=" + std::to_string(ntohs(address.sin_port)) +
                               " dbname=nobody user=nobody";
  std::atomic<int> attempts{0};
  emissions::postgres::detail::set_fault_hook([&](FaultPoint point, PGconn*) {
    if (point == FaultPoint::connecting) attempts.fetch_add(1);
    return false;
  });
  emissions::Emitter emitter(log_config("a", log));
  // The stop's wake-up used to be shared by the relay and the connecting thread: when the
  // relay thread took it, the attempt went on for its 10 s and the destructor waited for it.
  // Either thread may be first, so a few rounds.
  for (int round = 0; round < 4; ++round) {
    const auto began = std::chrono::steady_clock::now();
    {
      RelayOptions options = relay_options(outbox, "relay_no_answer");
      options.conninfo = conninfo;
      Relay relay(emitter, options);
      const int before = attempts.load();
      ASSERT_TRUE(relay.start().ok());
      ASSERT_TRUE(eventually([&] { return attempts.load() > before; }, 5s));
      std::this_thread::sleep_for(100ms);  // inside the attempt, waiting for the server
      const auto stopping = std::chrono::steady_clock::now();
      EXPECT_TRUE(relay.stop(100ms).ok());
      EXPECT_LT(std::chrono::steady_clock::now() - stopping, 2s) << "round " << round;
      EXPECT_FALSE(relay.stats().connected);
    }
    EXPECT_LT(std::chrono::steady_clock::now() - began, 4s)
        << "round " << round << ": the destructor waited for the connection attempt";
  }
  ::close(listener);
}

// A slow adapter: 1 ms per call.
class Slow final : public emissions::Adapter {
 public:
  explicit Slow(std::shared_ptr<SharedLog> log) : log_(std::move(log)) {}
  std::string_view name() const override { return "slow"; }
  emissions::Status handle_events(std::span<const emissions::Event> batch) override {
    std::this_thread::sleep_for(1ms);
    log_->add("slow", batch);
    return {};
  }

 private:
  std::shared_ptr<SharedLog> log_;
};

TEST_F(RelaySettlement, BatchLargerThanAnAdaptersBufferIsPublishedInPieces) {
  // The pipeline admits a commit larger than a queue's buffer_size only into an empty
  // queue: with other commits keeping the queue busy, a claim of 25 events into a buffer of
  // 10 would be refused forever.
  emissions::Config config;
  config.make_default = false;
  config.add_adapter(std::make_shared<Slow>(log),
                     {.max_demand = 2, .buffer_size = 10, .block_timeout = 50ms});
  emissions::Emitter emitter(std::move(config));
  for (int t = 0; t < 6; ++t)
    stage_events(emitter, db, outbox, t * 10, 10, true);
  std::atomic<bool> busy{true};
  std::vector<std::thread> traffic;
  for (int i = 0; i < 3; ++i) {
    traffic.emplace_back([&] {
      while (busy.load()) {
        emissions::Transaction tx = emitter.start();
        (void)tx.emit("other", nullptr);
        (void)tx.commit();  // overloaded at times: the queue is meant to stay full
      }
    });
  }
  RelayOptions options = relay_options(outbox, "relay_pieces");
  options.batch = 25;
  Relay relay(emitter, options);
  ASSERT_TRUE(relay.start().ok());
  const bool all = eventually([&] { return relay.stats().deleted == 60; }, 30s);
  busy.store(false);
  for (std::thread& t : traffic)
    t.join();
  ASSERT_TRUE(all) << relay.stats().deleted << "; " << relay.stats().last_error;
  EXPECT_TRUE(relay.stop(5s).ok());
  ASSERT_TRUE(emitter.drain(10s).ok());
  std::vector<int> relayed;
  for (const Delivered& d : log->entries()) {
    if (d.event.name.str() == "e") relayed.push_back(d.event.payload.at("n").get<int>());
  }
  ASSERT_EQ(relayed.size(), 60U);  // each once
  for (std::size_t i = 0; i < relayed.size(); ++i)
    EXPECT_EQ(relayed[i], static_cast<int>(i));  // in seq order
  EXPECT_EQ(rows_in(db, outbox), 0);
}

TEST_F(RelaySettlement, DeletedStaysExactWhenADeletesReplyIsLost) {
  // The first DELETE commits; then the relay's backend is terminated and the relay handles
  // the reply as lost with the connection.
  std::atomic<int> lost{0};
  emissions::postgres::detail::set_fault_hook([&](FaultPoint point, PGconn*) {
    if (point != FaultPoint::delete_replied || lost.load() > 0) return false;
    const Db killer;
    killer.exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
        "'relay_lost_reply'");
    lost.fetch_add(1);
    return true;
  });
  emissions::Emitter emitter(log_config("a", log));
  Relay relay(emitter, relay_options(outbox, "relay_lost_reply"));
  ASSERT_TRUE(relay.start().ok());
  for (int t = 0; t < 4; ++t)
    stage_events(emitter, db, outbox, t * 5, 5, true);
  ASSERT_TRUE(
      eventually([&] { return rows_in(db, outbox) == 0 && relay.stats().reconnects >= 1; }, 30s));
  EXPECT_EQ(lost.load(), 1);
  ASSERT_TRUE(eventually([&] { return relay.stats().deleted == 20; }, 10s))
      << relay.stats().deleted;
  EXPECT_TRUE(relay.stop(5s).ok());
  const auto stats = relay.stats();
  EXPECT_EQ(stats.deleted, 20U);
  EXPECT_EQ(stats.published, 20U);
  ASSERT_TRUE(emitter.drain(5s).ok());
  EXPECT_EQ(log->size(), 20U);
}

TEST_F(RelaySettlement, DeletedNeverCountsARowTwiceAcrossRelaysWhenALeaseLapsed) {
  // Relay a's DELETE is lost before it reaches the server, and a's reconnection is held
  // past its lease: relay b claims, publishes and deletes the rows. a cannot tell who
  // deleted them: it used to count them too (deleted 5 + 5 for 5 rows).
  std::mutex mutex;
  std::condition_variable changed;
  bool lost = false;
  bool holding = false;
  bool released = false;
  emissions::postgres::detail::set_fault_hook([&](FaultPoint point, PGconn*) {
    std::unique_lock lock(mutex);
    if (point == FaultPoint::deleting && !lost) {
      lost = true;
      return true;
    }
    if (point == FaultPoint::connecting && lost && !holding) {
      holding = true;
      changed.notify_all();
      changed.wait_for(lock, 20s, [&] { return released; });
    }
    return false;
  });
  emissions::Emitter emitter_a(log_config("a", log));
  emissions::Emitter emitter_b(log_config("b", log));
  RelayOptions options_a = relay_options(outbox, "relay_lapsed_a");
  options_a.lease = 1'000ms;
  Relay a(emitter_a, options_a);
  ASSERT_TRUE(a.start().ok());
  stage_events(emitter_a, db, outbox, 0, 5, true);
  {
    std::unique_lock lock(mutex);
    ASSERT_TRUE(changed.wait_for(lock, 20s, [&] { return holding; }));
  }
  std::this_thread::sleep_for(1'500ms);  // a's lease runs out
  Relay b(emitter_b, relay_options(outbox, "relay_lapsed_b"));
  ASSERT_TRUE(b.start().ok());
  const bool b_deleted = eventually([&] { return b.stats().deleted == 5; }, 20s);
  {
    const std::lock_guard lock(mutex);
    released = true;
  }
  changed.notify_all();
  ASSERT_TRUE(b_deleted) << b.stats().last_error;
  // a reconnects and sends its DELETE again; its stop waits for that.
  EXPECT_TRUE(a.stop(10s).ok());
  EXPECT_TRUE(b.stop(5s).ok());
  EXPECT_EQ(a.stats().published, 5U);
  EXPECT_EQ(b.stats().published, 5U);
  EXPECT_EQ(a.stats().deleted + b.stats().deleted, 5U) << a.stats().deleted;
  EXPECT_THAT(a.stats().last_error, HasSubstr("not counted"));
  EXPECT_EQ(rows_in(db, outbox), 0);
}

TEST_F(RelaySettlement, MalformedRowIsSetAsideAndTheRestPublished) {
  const emissions::test_support::TelemetryRecorder recorder("relay_malformed",
                                                            {{"emissions", "outbox", "malformed"}});
  // Written by hand, not by stage(): metadata that is not an object cannot be an Event.
  const std::string bad_seq =
      db.scalar("INSERT INTO " + table +
                " (id, name, payload, metadata, emitted_at) VALUES (gen_random_uuid(), 'e', "
                "'{}', '[1]', now()) RETURNING seq");
  emissions::Emitter emitter(log_config("a", log));
  stage_events(emitter, db, outbox, 0, 3, true);
  Relay relay(emitter, relay_options(outbox, "relay_malformed"));
  ASSERT_TRUE(relay.start().ok());
  ASSERT_TRUE(eventually([&] { return relay.stats().deleted == 3; }, 20s))
      << relay.stats().last_error;
  ASSERT_TRUE(recorder.wait_for({"emissions", "outbox", "malformed"}, 1, 10s));
  // Later claims leave it alone: the relay is not stalled and does not report it again.
  stage_events(emitter, db, outbox, 3, 2, true);
  ASSERT_TRUE(eventually([&] { return relay.stats().deleted == 5; }, 20s));
  EXPECT_TRUE(relay.stop(5s).ok());
  const auto stats = relay.stats();
  EXPECT_EQ(stats.malformed, 1U);
  EXPECT_EQ(stats.published, 5U);
  const auto reports = recorder.records({"emissions", "outbox", "malformed"});
  ASSERT_EQ(reports.size(), 1U);
  EXPECT_EQ(reports.front().metadata.at("seq").get<std::int64_t>(), std::stoll(bad_seq));
  EXPECT_THAT(reports.front().metadata.at("reason").get<std::string>(), HasSubstr("metadata"));
  // Left in the table, out of every claim's way, for someone to look at.
  EXPECT_EQ(db.column("SELECT seq FROM " + table), std::vector<std::string>{bad_seq});
  EXPECT_THAT(db.scalar("SELECT claimed_by FROM " + table), HasSubstr("malformed"));
  EXPECT_EQ(db.scalar("SELECT claimed_until FROM " + table), "infinity");
  ASSERT_TRUE(emitter.drain(5s).ok());
  EXPECT_EQ(log->size(), 5U);
}

TEST_F(RelaySettlement, RowsOfAMalformedRowsKeyWaitBehindItInTheSameClaim) {
  // A malformed row of key K, then two good rows of K and one of L, all in one claim: the
  // rows of K must not overtake the one set aside (published before it, once it is fixed).
  const OutboxOptions by_key = keyed(outbox);
  const std::string bad_seq =
      db.scalar("INSERT INTO " + table +
                " (id, name, payload, metadata, emitted_at, ordering_key) VALUES "
                "(gen_random_uuid(), 'e', '{\"n\": -1}', '[1]', now(), 'K') RETURNING seq");
  emissions::Emitter emitter(log_config("a", log));
  stage_events(emitter, db, by_key, 0, 2, true, "K");
  stage_events(emitter, db, by_key, 2, 1, true, "L");
  Relay relay(emitter, relay_options(by_key, "relay_malformed_key"));
  ASSERT_TRUE(relay.start().ok());
  ASSERT_TRUE(eventually([&] { return relay.stats().deleted >= 1; }, 20s))
      << relay.stats().last_error;
  std::this_thread::sleep_for(600ms);  // a few polls: K's rows stay behind the set-aside row
  EXPECT_EQ(relay.stats().malformed, 1U);
  EXPECT_EQ(relay.stats().published, 1U);
  EXPECT_EQ(rows_in(db, by_key), 3);
  EXPECT_EQ(db.count("SELECT count(*) FROM " + table +
                     " WHERE ordering_key = 'K' AND claimed_by IS NULL AND seq > " + bad_seq),
            2);
  // Fixed and handed back: K's rows follow in seq order.
  db.exec("UPDATE " + table +
          " SET metadata = '{}', claimed_by = NULL, claimed_until = NULL WHERE seq = " + bad_seq);
  ASSERT_TRUE(eventually([&] { return relay.stats().deleted == 4; }, 20s))
      << relay.stats().last_error;
  EXPECT_TRUE(relay.stop(5s).ok());
  ASSERT_TRUE(emitter.drain(5s).ok());
  std::vector<int> order;
  for (const Delivered& d : log->entries())
    order.push_back(d.event.payload.at("n").get<int>());
  EXPECT_EQ(order, (std::vector<int>{2, -1, 0, 1}));
}

}  // namespace
