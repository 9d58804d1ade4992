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
///   state; `tx` being flushed or committed on this thread (from user code its commit runs,
///   such as an adapter's interested()): nothing is sent;
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

/// stage() and `COMMIT` in one round trip (libpq's pipeline mode): for a request whose last
/// statement before `COMMIT` is the staging, it saves stage()'s own round trip. `conn` must
/// be inside an open database transaction, as for stage(), and not in pipeline mode; it is
/// left out of pipeline mode, its blocking mode unchanged. The server runs `COMMIT` only if
/// the staging call succeeded (and inserted one row per event: checked by the server, as
/// stage() checks it on the client). An active `tx` with no events just commits.
///
/// @code
///   PQclear(PQexec(db, "BEGIN"));
///   PQclear(PQexec(db, "UPDATE accounts SET ..."));
///   emissions::Status s = emissions::postgres::stage_and_commit(tx, db);
///   if (!s.ok() && PQtransactionStatus(db) == PQTRANS_INERROR) PQclear(PQexec(db, "ROLLBACK"));
/// @endcode
///
/// Outcomes:
/// - ok: the database transaction committed with the events (a Relay publishes them); `tx`
///   ended as after commit(); `conn` is idle.
/// - nothing sent (the preconditions of stage(): `conn` null, idle, inside an aborted
///   transaction or busy, or in pipeline mode: invalid_argument; not open: unavailable; an
///   event that cannot be written; `tx` not active): the database transaction is as it was.
/// - the staging call failed (errors as stage() reports them: not_found, invalid_argument,
///   unavailable...; internal for a wrong row count): `COMMIT` was not executed; the database
///   transaction is aborted and still open (PQTRANS_INERROR): roll it back (unless the
///   connection was lost with it: then the server rolled it back). Nothing was written;
///   `tx` keeps its events.
/// - `COMMIT` failed with a server error (a deferred constraint: invalid_argument; a
///   serialization failure, class 40: unavailable, try again): the server rolled the
///   transaction back, `conn` is idle; nothing was written and `tx` keeps its events, for a
///   retry of the whole business transaction.
/// - the connection was lost once `COMMIT` was sent: unavailable, saying the commit's outcome
///   is unknown. `tx` keeps its events: if the commit did happen, staging them again fails
///   with a unique violation of their ids (SQL state 23505) and writes nothing, so a retry
///   never publishes an event twice; dropping `tx` loses nothing that committed. `conn` is
///   bad (PQreset or PQfinish it).
/// - libpq could not queue `COMMIT` with the connection up (out of memory): internal; the
///   pipeline is synced and read anyway, `conn` is out of pipeline mode and still inside the
///   database transaction, with the staged rows (none if the staging call could not be
///   queued either, or `tx` had no events): roll it back; `tx` keeps its events. If it
///   cannot queue the pipeline's sync (twice): unavailable, the outcome unknown as above,
///   and `conn` is left in pipeline mode, unusable (closing it sends the queued `COMMIT`).
///
/// Thread-safety as stage(); blocks for one round trip to the server, as stage() does (no
/// deadline of its own: libpq's connection options, e.g. `tcp_user_timeout`, bound it).
Status stage_and_commit(Transaction& tx, PGconn* conn, const OutboxOptions& options = {});

}  // namespace emissions::postgres

// The libpqxx overload, when <pqxx/pqxx> (or <pqxx/transaction_base>) was included first:
// header-only glue, so libpq users never depend on libpqxx.
#if defined(PQXX_H_TRANSACTION_BASE)
#include "emissions/outbox/detail/postgres_pqxx.hpp"
#endif
