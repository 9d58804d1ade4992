/// @file
/// emissions/outbox/postgres.hpp: the PostgreSQL transactional outbox (`emissions::postgres`,
/// link `emissions::postgres`, package component `postgres`): an event is published if and
/// only if the business transaction that staged it commits.
///
/// @code
///   #include <emissions/outbox/postgres.hpp>
///
///   // once: PQexec(db, emissions::postgres::schema_sql().c_str());
///   // per request, inside the request's database transaction:
///   if (emissions::postgres::stage(tx, db).ok()) PQclear(PQexec(db, "COMMIT"));
///   // somewhere (any number of processes):
///   emissions::postgres::Relay relay(emitter, {.conninfo = "dbname=shop"});
///   (void)relay.start();
/// @endcode
///
/// - emissions/outbox/postgres_outbox.hpp: OutboxOptions, schema_sql(), stage();
/// - emissions/outbox/postgres_relay.hpp: RelayOptions, RelayStats, Relay.
/// For libpqxx, include <pqxx/pqxx> first: stage(Transaction&, pqxx::transaction_base&).
/// docs/OUTBOX.md has the guarantee, the schema and the rules.
#pragma once

#include "emissions/outbox/postgres_outbox.hpp"
#include "emissions/outbox/postgres_relay.hpp"
