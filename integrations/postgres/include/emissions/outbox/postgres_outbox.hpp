/// @file
/// emissions/outbox/postgres_outbox.hpp: writing a transaction's events into a PostgreSQL
/// outbox table inside the caller's own database transaction (the transactional outbox).
///
/// Include it through emissions/outbox/postgres.hpp and link `emissions::postgres`.
///
/// @code
///   PGconn* db = ...;                                     // the request's connection
///   PQclear(PQexec(db, "BEGIN"));
///   PQclear(PQexec(db, "UPDATE accounts SET ..."));       // the business write
///   emissions::Transaction tx = emitter.start();
///   (void)tx.emit("account_updated", {{"id", 7}});
///   if (emissions::Status s = emissions::postgres::stage(tx, db); !s.ok()) {
///     PQclear(PQexec(db, "ROLLBACK"));                    // tx still holds its events
///   } else {
///     PQclear(PQexec(db, "COMMIT"));  // the events exist iff this commits; a Relay publishes them
///   }
/// @endcode
///
/// The events are rows of the caller's transaction: they are published (by a Relay, see
/// emissions/outbox/postgres_relay.hpp) if and only if that transaction commits.
/// docs/OUTBOX.md describes the table, the guarantee and what a caller must not do.
#pragma once

#include <functional>
#include <string>

#include <libpq-fe.h>

#include "emissions/event.hpp"
#include "emissions/outbox/detail/postgres_stage.hpp"
#include "emissions/status.hpp"
#include "emissions/transaction.hpp"

namespace emissions::postgres {

/// Where events are staged, shared by stage() and the Relay. A plain struct for designated
/// initializers.
///
/// @code
///   emissions::postgres::OutboxOptions options{
///       .table = "billing.outbox",
///       .ordering_key = [](const emissions::Event& e) { return e.payload.value("account", ""); }};
/// @endcode
struct OutboxOptions {
  /// The outbox table, optionally schema-qualified (`schema.table`). Each part is quoted as
  /// an SQL identifier, so it is used exactly as written (case included).
  std::string table = "emissions_outbox";
  /// The channel stage() notifies and relays LISTEN on (any text; quoted by the server).
  std::string channel = "emissions_outbox";
  /// The ordering key of an event: events with the same key are published in staging
  /// order, even by several relays. Empty (no function, or an empty result): no key.
  /// Called by stage() on the caller's thread; it may throw (stage() then fails with
  /// invalid_argument and writes nothing).
  std::function<std::string(const Event&)> ordering_key = {};
};

/// The DDL that creates the outbox table, its indexes and its staging function, idempotent
/// (`CREATE ... IF NOT EXISTS`, `CREATE OR REPLACE FUNCTION`: run it at every deployment; it
/// also upgrades a table made by an earlier version, keeping its rows). One row per event:
/// `seq bigserial` (insertion order), `id uuid` unique, `name`, `payload` and `metadata` as
/// `jsonb`, `emitted_at timestamptz`, the `ordering_key`, and the claim columns relays use
/// (`claimed_by`, `claim_id`, `claimed_until`, `claims`). The staging function, which stage()
/// calls, is a PL/pgSQL function named after the table (`<table>_stage(jsonb, text)`, in the
/// table's schema). Run as one string or statement by statement, also after a run stopped
/// anywhere, it never fails on its own output; an unqualified table is made and checked in
/// `current_schema()`. docs/OUTBOX.md explains each column and the function.
/// Throws ConfigError for an empty table name or part (`"a..b"`).
///
/// @code
///   PGresult* r = PQexec(db, emissions::postgres::schema_sql().c_str());
/// @endcode
[[nodiscard]] std::string schema_sql(const OutboxOptions& options = {});

/// Writes `tx`'s buffered events into the outbox table through `conn`, which must be inside
/// an open database transaction (`BEGIN` sent, no error since), with one statement (a call of
/// the table's staging function, see schema_sql()) that also notifies `options.channel`. On
/// success `tx` ends as after commit() (its events now belong to the database transaction,
/// published when and only when it commits). An active `tx` with no events writes nothing
/// and ends. Nothing is prepared or set in the caller's session (safe behind poolers and
/// after `DISCARD ALL`).
///
/// Errors (then `tx` keeps its events and nothing is written):
/// - invalid_argument: `conn` is null, idle (not inside a transaction: staging would commit
///   on its own and break the guarantee), inside an aborted transaction, or busy; an event
///   that cannot be written as JSON (invalid UTF-8) or whose ordering key function threw;
///   data the server rejects (e.g. `\u0000` in a string, which `jsonb` refuses), with its SQL
///   state;
/// - not_found: the table does not exist (SQL state 42P01): the message names it and
///   points at schema_sql(); or the table exists without its staging function (SQL state
///   42883: the table was made by an earlier version's schema_sql()): the message names the
///   function and the table and points at schema_sql(), which adds it (a 42883 raised inside
///   the function, e.g. by a trigger on the table, is invalid_argument: it names another
///   function);
/// - unavailable: the connection is lost, or the server asks to try again (SQL state class
///   08, 40, 53, 57);
/// - not_started/closed: `tx` is not active; internal: any other server error.
/// After a server-side error the database transaction is aborted, as after any failed
/// statement: roll it back.
///
/// Thread-safety: `tx` and `conn` are used by one thread at a time, as usual; blocks for one
/// round trip to the server.
Status stage(Transaction& tx, PGconn* conn, const OutboxOptions& options = {});

}  // namespace emissions::postgres

// The libpqxx overload, when <pqxx/pqxx> (or <pqxx/transaction_base>) was included first:
// header-only glue, so libpq users never depend on libpqxx.
#if defined(PQXX_H_TRANSACTION_BASE)
#include "emissions/outbox/detail/postgres_pqxx.hpp"
#endif
