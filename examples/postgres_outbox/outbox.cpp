// The transactional outbox with libpq: an order row and its event commit together (or not
// at all), and a Relay publishes what committed to the Emitter's adapters.
//
//   example_postgres_outbox "host=/var/run/postgresql dbname=shop"
//
// It creates the tables it needs (orders, emissions_outbox), stages an order_created event
// in a committed transaction and an order_cancelled one in a rolled-back transaction, and
// prints the events the relay publishes (only order_created) as JSON lines.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include <libpq-fe.h>

#include <emissions/adapters/json_lines.hpp>
#include <emissions/emissions.hpp>
#include <emissions/outbox/postgres.hpp>

namespace {

// Runs one statement; false (with the server's message on stderr) when it fails.
bool run(PGconn* db, const std::string& sql) {
  PGresult* result = PQexec(db, sql.c_str());
  const ExecStatusType status = PQresultStatus(result);
  const bool ok = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
  if (!ok) std::fprintf(stderr, "%s: %s", sql.c_str(), PQresultErrorMessage(result));
  PQclear(result);
  return ok;
}

// One business transaction: the order row and its event, committed or rolled back.
bool place_order(emissions::Emitter& emitter, PGconn* db, int id, bool commit) {
  emissions::Transaction tx = emitter.start();
  if (!tx.emit(commit ? "order_created" : "order_cancelled", {{"id", id}}).ok()) return false;
  if (!run(db, "BEGIN")) return false;
  if (!run(db, "INSERT INTO orders (id) VALUES (" + std::to_string(id) + ")")) {
    run(db, "ROLLBACK");
    return false;
  }
  // The events become rows of this database transaction: published iff it commits.
  if (emissions::Status s = emissions::postgres::stage(tx, db); !s.ok()) {
    std::fprintf(stderr, "stage: %s\n", s.to_string().c_str());
    run(db, "ROLLBACK");  // tx still holds its events: retry the whole thing, or drop them
    return false;
  }
  return run(db, commit ? "COMMIT" : "ROLLBACK");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <libpq conninfo>\n", argv[0]);
    return 2;
  }
  const std::string conninfo = argv[1];
  std::unique_ptr<PGconn, decltype(&PQfinish)> db(PQconnectdb(conninfo.c_str()), &PQfinish);
  if (PQstatus(db.get()) != CONNECTION_OK) {
    std::fprintf(stderr, "cannot connect: %s", PQerrorMessage(db.get()));
    return 1;
  }
  // Once, at deployment (idempotent): the outbox table, and the example's business table.
  if (!run(db.get(), emissions::postgres::schema_sql()) ||
      !run(db.get(), "DROP TABLE IF EXISTS orders; CREATE TABLE orders (id int PRIMARY KEY)")) {
    return 1;
  }

  emissions::Config config;
  config.make_default = false;
  config.add_adapter(std::make_shared<emissions::adapters::JsonLines>("-"));  // stdout
  emissions::Emitter emitter(std::move(config));
  // Any number of relays, in any processes, may run against the same table.
  emissions::postgres::Relay relay(emitter, {.conninfo = conninfo});
  if (!relay.start().ok()) return 1;

  if (!place_order(emitter, db.get(), 1, true) || !place_order(emitter, db.get(), 2, false)) {
    return 1;
  }

  // The relay wakes on the commit's NOTIFY; wait (bounded) until it deleted the one row.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (relay.stats().deleted < 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const emissions::Status stopped = relay.stop(std::chrono::seconds(5));
  const emissions::postgres::RelayStats stats = relay.stats();
  std::fprintf(stderr, "relay: claimed %llu, published %llu, deleted %llu (%s)\n",
               static_cast<unsigned long long>(stats.claimed),
               static_cast<unsigned long long>(stats.published),
               static_cast<unsigned long long>(stats.deleted), stopped.to_string().c_str());
  return stopped.ok() && stats.published == 1 && stats.deleted == 1 ? 0 : 1;
}
