// Internal: what stage() is made of, shared by the libpq implementation and the header-only
// libpqxx glue (emissions/outbox/detail/postgres_pqxx.hpp). Not for users.
#pragma once

#include <string>
#include <string_view>

#include "emissions/status.hpp"
#include "emissions/transaction.hpp"

namespace emissions::postgres {
struct OutboxOptions;
}

namespace emissions::postgres::detail {

// The statement stage() runs: a call of the outbox's staging function (made by
// schema_sql()) with $1 the events as a JSON array (jsonb), $2 the channel (text). One row,
// one column: the number of rows inserted.
struct StageStatement {
  std::string sql;
  std::string events;  // $1
  std::size_t count = 0;
};

// The statement with its two parameters written in as SQL literals (quoted by the caller's
// client library, e.g. pqxx::transaction_base::quote).
std::string inline_stage_statement(const OutboxOptions& options, std::string_view events_literal,
                                   std::string_view channel_literal);
// Fills `out` from `tx`'s events. invalid_argument for an event that cannot be written
// (invalid UTF-8, a throwing ordering_key), not_started/closed for an inactive `tx`;
// nothing is changed then.
Status prepare_stage(Transaction& tx, const OutboxOptions& options, StageStatement& out);
// Ends `tx` once the statement succeeded (the events are the database's now).
Status finish_stage(Transaction& tx);
// The Status for a failed staging statement: `sqlstate` (may be empty), the server's
// message, whether the connection is gone.
Status stage_error(std::string_view sqlstate, std::string_view message, bool connection_lost,
                   const OutboxOptions& options);
// A client library's text of a server error (libpq's PQresultErrorMessage layout, as in
// pqxx::sql_error::what()) on one line: the primary message without its severity, and
// " (<detail>)" when there is a DETAIL line that does not quote the rejected row (see
// detail_quotes_row; `sqlstate` is the error's); the statement around the error's position,
// the hint and the context (which quote the events) are left out.
std::string server_error_summary(std::string_view text, std::string_view sqlstate = {});
// Whether the server's DETAIL for an error of `sqlstate` quotes the rejected row's values
// (a NOT NULL or CHECK violation's "Failing row contains (...)"): left out of Status messages,
// which must not carry the events' payloads into logs.
bool detail_quotes_row(std::string_view sqlstate);
// Checks the function's result, the rows inserted as text (null: no such value): internal
// when it is not `expected` (a trigger that skipped rows, say); the caller's transaction
// then holds a partial write: roll it back.
Status check_staged_count(const char* inserted, std::size_t expected);

}  // namespace emissions::postgres::detail
