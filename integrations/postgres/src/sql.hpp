// Internal: the SQL text of the outbox: the schema, the staging statement and the relay's
// claim, renewal, delete and release statements. Identifiers are quoted here, once.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace emissions::postgres::detail {

// `"a"."b"` for "a.b": each part quoted as an identifier. Throws ConfigError (naming
// `field`) for an empty name or part, or a NUL character.
std::string quote_table(std::string_view table, std::string_view field);
// The last part of a table name, unquoted: the base of its index names.
std::string_view table_base(std::string_view table);
// 'text' as an SQL string literal (standard_conforming_strings, on since PostgreSQL 9.1).
std::string quote_literal(std::string_view text);
// `text` as an escape string constant (E'...', quotes and backslashes doubled): the same
// value whatever the session's standard_conforming_strings.
std::string escape_string_literal(std::string_view text);

// The session's setup: asynchronous commit for the relay's own statements, `LISTEN "channel"`.
std::string listen_statement(std::string_view channel);
// The table, its key index and its staging function (stage_function). The key index is
// "<table>_key", or for a name over 63 bytes the same scheme as the staging function's with
// "_key"; an index an earlier version named with the server's cut of "<table>_key" is
// renamed to it. Idempotent, also run statement by statement and after a run stopped
// anywhere: the key index is recognised by its structure (whatever its storage
// parameters), the function by its comment or its body, and the function and its comment
// are made by one statement. An unqualified table is made and checked in current_schema().
std::string schema_statements(std::string_view table);
// The staging function of `table`, quoted (schema-qualified when the table is): the table's
// last part with "_stage" appended, in the table's schema. A name longer than PostgreSQL's
// 63-byte identifier limit keeps its first 48 bytes (cut at a UTF-8 character boundary),
// then '_', 8 hex digits of a hash of the whole last part and "_stage".
std::string stage_function(std::string_view table);
// The staging function's signature as the server may write it in the message of a failed
// lookup (SQL state 42883): the name unquoted, schema-qualified when the table is, then
// "(jsonb, text)". A schema name that some database encoding holds in more than 63 bytes
// gives more: as written, then each prefix of whole characters that such an encoding could
// cut it to (a UTF-8 database cuts at 63 UTF-8 bytes, a LATIN1 one at 63 characters).
// Throws ConfigError as quote_table does.
std::vector<std::string> stage_function_signatures(std::string_view table);
// `SELECT fn($1, $2)`: $1 the events as a JSON array of {id, name, payload, metadata,
// emitted_at, key} (jsonb), $2 the channel (text). One row, one column: the rows inserted.
std::string stage_statement(std::string_view table);
// The same with the two parameters replaced by the given SQL expressions.
std::string stage_statement(std::string_view table, std::string_view events,
                            std::string_view channel);
// The same with the call written between `before_call` and `after_call` in the target list
// (an expression of its result).
std::string stage_statement(std::string_view table, std::string_view events,
                            std::string_view channel, std::string_view before_call,
                            std::string_view after_call);

// One simple-query string (one implicit transaction): the advisory lock of `table`, then
// the claim of up to `batch` rows for `claim_id`. Its last result returns the rows: seq, id,
// name, payload, metadata, emitted_at (microseconds since the epoch), ordering_key.
std::string claim_statement(std::string_view table, std::string_view name,
                            std::string_view claim_id, std::chrono::milliseconds lease,
                            std::size_t batch);
// The leases of the rows `seqs` still held by one of `claims`.
std::string renew_statement(std::string_view table, const std::vector<std::int64_t>& seqs,
                            const std::vector<std::string>& claims,
                            std::chrono::milliseconds lease);
// Deletes the rows `seqs` still held by one of `claims` (a row another relay claimed since
// has another claim id and stays). One row: rows deleted, rows of `seqs` in the table when
// the statement began (deleted or not).
std::string delete_statement(std::string_view table, const std::vector<std::int64_t>& seqs,
                             const std::vector<std::string>& claims);
// Hands the rows `seqs` of `claim_id` back (empty: all of them; not by index): the next
// claim may take them at once.
std::string release_statement(std::string_view table, const std::vector<std::int64_t>& seqs,
                              std::string_view claim_id);
// Sets rows that cannot be decoded aside: they stay in the table, claimed by
// "malformed (name)" until 'infinity', so that no claim takes them again.
std::string set_aside_statement(std::string_view table, const std::vector<std::int64_t>& seqs,
                                std::string_view claim_id, std::string_view name);

}  // namespace emissions::postgres::detail
