// stage(): the events of a Transaction as rows of the caller's database transaction.
#include <charconv>
#include <cstdint>
#include <exception>
#include <string>
#include <string_view>
#include <system_error>

#include "emissions/outbox/postgres_outbox.hpp"
#include "pq_handles.hpp"
#include "relay_faults.hpp"
#include "sql.hpp"
#include "transaction/transaction_access.hpp"

namespace emissions::postgres {

namespace {

// SQL state classes after which the same statement may succeed later: connection
// exceptions (08), transaction rollbacks such as serialization failures (40), insufficient
// resources (53), operator intervention such as a server shutting down (57).
bool retriable_class(std::string_view sqlstate) {
  const std::string_view cls = sqlstate.substr(0, 2);
  return cls == "08" || cls == "40" || cls == "53" || cls == "57";
}

// Data, syntax or constraint problems of what we sent (22, 23, 42) and an invalid
// transaction state (25: e.g. 25P02, a statement in an aborted transaction).
bool rejected_class(std::string_view sqlstate) {
  const std::string_view cls = sqlstate.substr(0, 2);
  return cls == "22" || cls == "23" || cls == "25" || cls == "42";
}

void append_event(std::string& out, const Event& e, const OutboxOptions& options) {
  out += R"({"id":")";
  out += e.id.str();
  out += R"(","name":)";
  out += nlohmann::json(e.name.str()).dump();
  out += R"(,"payload":)";
  out += e.payload.dump();
  out += R"(,"metadata":)";
  out += e.metadata.is_null() ? std::string("{}") : e.metadata.dump();
  out += R"(,"emitted_at":")";
  out += format_timestamp(e.emitted_at);
  out += R"(","key":)";
  std::string key;
  if (options.ordering_key) key = options.ordering_key(e);
  out += key.empty() ? std::string("null") : nlohmann::json(key).dump();
  out += '}';
}

// The server's message and its detail, on one line (not the statement, its position, the
// hint or the PL/pgSQL context that PQresultErrorMessage adds, which quote the events; nor a
// detail that quotes the rejected row, see detail::detail_quotes_row); libpq's own message
// when the error did not come from the server.
std::string server_message(const PGresult* result) {
  const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
  if (primary == nullptr) return PQresultErrorMessage(result);
  std::string out = primary;
  const char* sqlstate = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  if (const char* detail = PQresultErrorField(result, PG_DIAG_MESSAGE_DETAIL);
      detail != nullptr && !detail::detail_quotes_row(sqlstate == nullptr ? "" : sqlstate)) {
    out += " (";
    out += detail;
    out += ')';
  }
  return out;
}

// Whether the server's message of a failed function lookup (SQL state 42883) is about the
// staging function itself: it names the function as "name(jsonb, text)", unquoted, whatever
// the language of the server's messages. The name must stand on its own: not the end of a
// longer name, nor the same name in another schema ("other.name(jsonb, text)", "x_name(...").
// Bytes past ASCII may come before it (some translations put no space before the name).
bool names_stage_function(std::string_view message, const OutboxOptions& options) {
  std::vector<std::string> signatures;
  try {
    signatures = detail::stage_function_signatures(options.table);
  } catch (const ConfigError&) {
    return false;
  }
  const auto part_of_a_name = [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || c == '_' ||
           c == '$' || c == '.' || c == '"';
  };
  for (const std::string& signature : signatures) {
    for (std::size_t at = message.find(signature); at != std::string_view::npos;
         at = message.find(signature, at + 1)) {
      if (at == 0 || !part_of_a_name(message[at - 1])) return true;
    }
  }
  return false;
}

}  // namespace

std::string schema_sql(const OutboxOptions& options) {
  return detail::schema_statements(options.table);
}

namespace detail {

Status prepare_stage(Transaction& tx, const OutboxOptions& options, StageStatement& out) {
  if (!tx.active()) {
    return Status(Errc::not_started, "the transaction is not active: nothing to stage");
  }
  // Checked before anything is sent: stage_and_commit() would commit the database
  // transaction, then fail to end `tx`, whose commit() would publish the events too.
  if (TransactionAccess::handing_off(tx)) return emissions::detail::handing_off();
  try {
    out.sql = stage_statement(options.table);
  } catch (const ConfigError& e) {
    return Status(Errc::invalid_argument, e.what());
  }
  const std::span<const Event> events = TransactionAccess::buffered(tx);
  out.count = events.size();
  out.events.clear();
  out.events += '[';
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (i > 0) out.events += ',';
    try {
      append_event(out.events, events[i], options);
    } catch (const std::exception& e) {
      return Status(Errc::invalid_argument,
                    "event " + std::to_string(i) + " ('" + events[i].name.str() +
                        "') cannot be staged: " + e.what() + "; nothing was written");
    }
  }
  out.events += ']';
  return {};
}

std::string inline_stage_statement(const OutboxOptions& options, std::string_view events_literal,
                                   std::string_view channel_literal) {
  return stage_statement(options.table, events_literal, channel_literal);
}

Status finish_stage(Transaction& tx) {
  return TransactionAccess::end_written_elsewhere(tx);
}

Status stage_error(std::string_view sqlstate, std::string_view message, bool connection_lost,
                   const OutboxOptions& options) {
  const std::string what = trimmed(message);
  const std::string state =
      sqlstate.empty() ? std::string() : " (SQL state " + std::string(sqlstate) + ")";
  if (connection_lost || (!sqlstate.empty() && retriable_class(sqlstate))) {
    return Status(Errc::unavailable,
                  "staging failed, try the business transaction again" + state + ": " + what);
  }
  if (sqlstate == "42883" && names_stage_function(message, options)) {
    // The statement calls one function with arguments of exact types, after resolving the
    // table (a missing table is 42P01), and the server's message names that function: the
    // table is there, its function is not. A 42883 raised inside the function (a trigger on
    // the table calling a function that does not exist) names another function and is the
    // server rejecting the write, below.
    std::string function;
    try {
      function = stage_function(options.table);
    } catch (const ConfigError&) {
      function = "(invalid table name)";
    }
    return Status(Errc::not_found,
                  "the outbox's staging function " + function + "(jsonb, text) of table '" +
                      options.table +
                      "' does not exist (SQL state 42883): the table was made by an older "
                      "emissions::postgres::schema_sql(); run the DDL of "
                      "schema_sql() again (idempotent: it adds what is missing and keeps the "
                      "rows): " +
                      what);
  }
  if (sqlstate == "42P01") {
    return Status(Errc::not_found, "the outbox table '" + options.table +
                                       "' does not exist (SQL state 42P01): create it with the "
                                       "DDL of emissions::postgres::schema_sql(): " +
                                       what);
  }
  if (rejected_class(sqlstate)) {
    return Status(Errc::invalid_argument,
                  "the server rejected the staged events" + state + ": " + what);
  }
  return Status(Errc::internal, "staging failed" + state + ": " + what);
}

bool detail_quotes_row(std::string_view sqlstate) {
  // Class 23 (integrity constraints): NOT NULL, CHECK and exclusion violations' details
  // quote the failing row ("Failing row contains (...)"), payload and all, and a foreign key's
  // the key's values. A unique violation's names the key, here the event's id, which is what
  // tells a caller that the event was staged before: kept.
  return sqlstate.starts_with("23") && sqlstate != "23505";
}

std::string server_error_summary(std::string_view text, std::string_view sqlstate) {
  std::string primary;
  std::string detail;
  bool first = true;
  while (!text.empty()) {
    const std::size_t end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    if (first) {
      // "<SEVERITY>:  <message>"
      const std::size_t sep = line.find(":  ");
      primary = std::string(sep == std::string_view::npos ? line : line.substr(sep + 3));
      first = false;
    } else if (line.starts_with("DETAIL:  ") && !detail_quotes_row(sqlstate)) {
      detail = std::string(line.substr(9));
    }
  }
  return detail.empty() ? primary : primary + " (" + detail + ")";
}

Status check_staged_count(const char* inserted, std::size_t expected) {
  std::uint64_t rows = 0;
  const std::string_view text = inserted == nullptr ? std::string_view() : inserted;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), rows);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
    return Status(Errc::internal, "the staging function returned '" + std::string(text) +
                                      "', not a row count (was it replaced?); roll the "
                                      "database transaction back");
  }
  if (rows != expected) {
    return Status(Errc::internal, "staging inserted " + std::to_string(rows) + " rows for " +
                                      std::to_string(expected) +
                                      " events (a trigger or rule on the outbox table?); roll "
                                      "the database transaction back");
  }
  return {};
}

}  // namespace detail

namespace {

// stage()'s and stage_and_commit()'s preconditions on `conn` (`who` begins the messages):
// open, inside an open database transaction, not busy. Ok, or the error; nothing is sent.
Status connection_precondition(PGconn* conn, const std::string& who) {
  if (conn == nullptr) return Status(Errc::invalid_argument, who + ": the connection is null");
  if (PQstatus(conn) != CONNECTION_OK) {
    return Status(Errc::unavailable,
                  who + ": the connection is not open: " + std::string(PQerrorMessage(conn)));
  }
  switch (PQtransactionStatus(conn)) {
    case PQTRANS_INTRANS:
      return {};
    case PQTRANS_IDLE:
      return Status(Errc::invalid_argument,
                    who +
                        ": the connection is not inside a transaction (send BEGIN first): "
                        "staged rows would commit on their own, whatever became of the business "
                        "transaction");
    case PQTRANS_INERROR:
      return Status(Errc::invalid_argument,
                    who +
                        ": the connection's transaction is aborted (an earlier statement "
                        "failed): roll it back");
    case PQTRANS_ACTIVE:
      return Status(Errc::invalid_argument, who + ": the connection is busy with another command");
    case PQTRANS_UNKNOWN:
    default:
      return Status(Errc::unavailable,
                    who + ": the connection is bad: " + std::string(PQerrorMessage(conn)));
  }
}

}  // namespace

Status stage(Transaction& tx, PGconn* conn, const OutboxOptions& options) {
  if (Status s = connection_precondition(conn, "stage()"); !s.ok()) return s;
  detail::StageStatement statement;
  if (Status s = detail::prepare_stage(tx, options, statement); !s.ok()) return s;
  if (statement.count == 0) return detail::finish_stage(tx);
  const char* values[2] = {statement.events.c_str(), options.channel.c_str()};
  // The parameters' types, so that the server has nothing to infer: jsonb and text (the
  // built-in types' OIDs, fixed in pg_type.dat).
  constexpr Oid kJsonb = 3802;
  constexpr Oid kText = 25;
  const Oid types[2] = {kJsonb, kText};
  const detail::ResultHandle result(
      PQexecParams(conn, statement.sql.c_str(), 2, types, values, nullptr, nullptr, 0));
  const bool lost = PQstatus(conn) != CONNECTION_OK;
  if (!result) return detail::stage_error("", PQerrorMessage(conn), true, options);
  if (PQresultStatus(result.get()) != PGRES_TUPLES_OK) {
    const char* sqlstate = PQresultErrorField(result.get(), PG_DIAG_SQLSTATE);
    return detail::stage_error(sqlstate == nullptr ? "" : sqlstate, server_message(result.get()),
                               lost, options);
  }
  const char* inserted = PQntuples(result.get()) == 1 && PQnfields(result.get()) == 1
                             ? PQgetvalue(result.get(), 0, 0)
                             : nullptr;
  if (Status s = detail::check_staged_count(inserted, statement.count); !s.ok()) return s;
  return detail::finish_stage(tx);
}

}  // namespace emissions::postgres

namespace emissions::postgres {

namespace {

// What the count check casts to an integer when the count is wrong: the server's 22P02
// message quotes it, in any language the server speaks.
constexpr std::string_view kCountMismatchMarker = "emissions: staged row count mismatch";

// stage()'s statement with the row count checked by the server, $3 (bigint) being the
// number of events: `SELECT (CASE WHEN <call> = $3 THEN '1' ELSE '<marker>' END)::int ...`.
// stage() checks the count on the client, before its caller commits; stage_and_commit() has
// sent COMMIT behind the statement already, so a wrong count (a trigger or rule on the table,
// a replaced function) must fail the statement itself, which makes the server skip the
// COMMIT. Plain SQL has no RAISE: the cast of the marker does (SQL state 22P02, the marker in
// its message). The cast applies to the CASE's result, which is not constant, so the planner
// never evaluates it ahead. (A division by zero, measured cheapest, was told apart from one
// raised inside the function by the error's context, which log_parameter_max_length_on_error
// also fills: found in review.)
std::string checked_stage_statement(const OutboxOptions& options) {
  return detail::stage_statement(
      options.table, "$1", "$2", "(CASE WHEN ",
      " = ($3)::bigint THEN '1' ELSE '" + std::string(kCountMismatchMarker) + "' END)::int");
}

// Whether `result` is the checked statement's own refusal of a wrong count.
bool count_mismatch(const PGresult* result) {
  const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  const char* message = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
  return state != nullptr && std::string_view(state) == "22P02" && message != nullptr &&
         std::string_view(message).find(kCountMismatchMarker) != std::string_view::npos;
}

std::string sqlstate_of(const PGresult* result) {
  const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  return state == nullptr ? std::string() : std::string(state);
}

// A server error that ends only the statement (severity ERROR), not the session (FATAL,
// PANIC), after which the server may have done more than the error says.
bool statement_error(const PGresult* result) {
  const char* severity = PQresultErrorField(result, PG_DIAG_SEVERITY_NONLOCALIZED);
  return severity != nullptr && std::string_view(severity) == "ERROR";
}

// `why`: what happened once COMMIT was queued.
Status commit_outcome_unknown(PGconn* conn, std::string_view why =
                                                "the connection was lost after COMMIT was "
                                                "sent") {
  const std::string what = detail::trimmed(PQerrorMessage(conn));
  return Status(
      Errc::unavailable,
      "stage_and_commit(): " + std::string(why) +
          ": the commit's outcome is unknown (if it committed, the events are published); tx "
          "keeps its events: staged again in a retry they fail with a unique violation "
          "of their ids (SQL state 23505) if they were committed, so none is published "
          "twice: " +
          what);
}

}  // namespace

Status stage_and_commit(Transaction& tx, PGconn* conn, const OutboxOptions& options) {
  const std::string who = "stage_and_commit()";
  if (conn != nullptr && PQstatus(conn) == CONNECTION_OK &&
      PQpipelineStatus(conn) != PQ_PIPELINE_OFF) {
    return Status(Errc::invalid_argument,
                  who +
                      ": the connection is in pipeline mode (PQenterPipelineMode): leave it "
                      "first; stage_and_commit() enters and leaves pipeline mode itself");
  }
  if (Status s = connection_precondition(conn, who); !s.ok()) return s;
  detail::StageStatement statement;
  if (Status s = detail::prepare_stage(tx, options, statement); !s.ok()) return s;
  const bool staging = statement.count > 0;

  std::string sql;
  try {
    if (staging) sql = checked_stage_statement(options);
  } catch (const ConfigError& e) {  // not expected: prepare_stage() made it from the same name
    return Status(Errc::invalid_argument, e.what());
  }
  // One round trip: the staging call (when there are events), COMMIT and a sync, sent
  // together. After an error the server skips what follows up to the sync, so a failed
  // staging call never commits.
  if (PQenterPipelineMode(conn) != 1) {
    return Status(Errc::internal,
                  who + ": cannot enter pipeline mode: " + std::string(PQerrorMessage(conn)));
  }
  const std::string count = std::to_string(statement.count);
  bool staging_queued = false;
  if (staging) {
    const char* values[3] = {statement.events.c_str(), options.channel.c_str(), count.c_str()};
    // jsonb, text, bigint: the built-in types' OIDs (pg_type.dat).
    const Oid types[3] = {3802, 25, 20};
    staging_queued =
        PQsendQueryParams(conn, sql.c_str(), 3, types, values, nullptr, nullptr, 0) == 1;
  }
  // COMMIT's bytes may leave once queued (libpq flushes a full buffer), in part or whole.
  bool commit_queued = false;
  if (!staging || staging_queued) {
    commit_queued =
        !detail::fault(detail::FaultPoint::commit_queueing, conn) &&
        PQsendQueryParams(conn, "COMMIT", 0, nullptr, nullptr, nullptr, nullptr, 0) == 1;
  }
  // Whatever was queued is followed by a sync, also when COMMIT could not be queued with the
  // connection still up (libpq out of memory): without it nothing can be read back, and the
  // connection could not leave pipeline mode. A failed attempt is tried once more.
  bool sync_queued = false;
  for (int attempt = 0; attempt < 2 && !sync_queued && (staging_queued || commit_queued) &&
                        PQstatus(conn) == CONNECTION_OK;
       ++attempt) {
    sync_queued =
        !detail::fault(detail::FaultPoint::sync_queueing, conn) && PQpipelineSync(conn) == 1;
  }

  // Every result, blocking as stage()'s PQexecParams does: the staging call's (slot 0), then
  // COMMIT's (slot 1), each followed by a null, then the sync's. A lost connection gives one
  // error result, then null.
  detail::ResultHandle staged;
  detail::ResultHandle committed;
  bool synced = false;
  if (sync_queued) {
    int slot = staging ? 0 : 1;
    for (int reads = 0; reads < 8 && !synced; ++reads) {
      detail::ResultHandle r(PQgetResult(conn));
      if (!r) {
        if (PQstatus(conn) != CONNECTION_OK) break;
        ++slot;
        continue;
      }
      if (PQresultStatus(r.get()) == PGRES_PIPELINE_SYNC) {
        synced = true;
      } else if (slot == 0 && !staged) {
        staged = std::move(r);
      } else if (slot == 1 && !committed) {
        committed = std::move(r);
      }
    }
  }
  // Nothing is left to read after the sync: this cannot fail then. On a lost connection it
  // may (results never came); the connection is unusable anyway (PQreset or PQfinish it).
  // Without a sync (it could not be queued twice) the queued statements' results can never be
  // read: the connection stays in pipeline mode, unusable.
  (void)PQexitPipelineMode(conn);
  const bool lost = PQstatus(conn) != CONNECTION_OK;

  if (!staging_queued && !commit_queued) {
    if (lost) return detail::stage_error("", PQerrorMessage(conn), true, options);
    // Nothing was queued with the connection up (libpq out of memory): the database
    // transaction is still open, with the business writes and without the events. Retrying
    // "the business transaction" on this connection would commit both attempts' writes.
    return Status(Errc::internal,
                  who +
                      ": neither the staging call nor COMMIT could be queued (libpq out of "
                      "memory?), so nothing was sent: the database transaction is still open: "
                      "roll it back (committing it would commit the business writes without "
                      "the events); tx keeps its events: " +
                      detail::trimmed(PQerrorMessage(conn)));
  }
  if (!sync_queued) {
    const std::string stuck =
        lost ? std::string()
             : " (the pipeline's sync could not be queued: the connection is left in pipeline "
               "mode, unusable: PQfinish or PQreset it)";
    if (commit_queued) {
      // Closing the connection flushes what libpq queued: COMMIT may still reach the server.
      if (lost) return commit_outcome_unknown(conn);
      return commit_outcome_unknown(conn,
                                    "COMMIT was queued but the pipeline's sync could not be "
                                    "(libpq out of memory?): the connection is left in pipeline "
                                    "mode, unusable (PQfinish or PQreset it), and closing it "
                                    "sends what libpq queued, COMMIT included");
    }
    if (lost) return detail::stage_error("", PQerrorMessage(conn), true, options);
    return Status(Errc::internal, who +
                                      ": COMMIT was not sent; nothing was committed, tx keeps "
                                      "its events" +
                                      stuck + ": " + detail::trimmed(PQerrorMessage(conn)));
  }
  if (staging) {
    if (!staged)
      return lost ? commit_outcome_unknown(conn)
                  : Status(Errc::internal, who + ": no result for the staging call: " +
                                               std::string(PQerrorMessage(conn)));
    if (PQresultStatus(staged.get()) != PGRES_TUPLES_OK) {
      const std::string state = sqlstate_of(staged.get());
      // No SQL state: libpq's own error, the connection lost before the staging call's
      // result came; the server may have run both statements.
      if (state.empty() && lost) return commit_outcome_unknown(conn);
      // A server error: the statement failed, so the server skipped COMMIT (a FATAL one
      // ends the session, which rolls back). tx keeps its events.
      const std::string message = server_message(staged.get());
      if (count_mismatch(staged.get())) {
        return Status(Errc::internal,
                      who +
                          ": the staging function did not insert one row per event (a "
                          "trigger or rule on the outbox table?), so the server refused it "
                          "and did not execute COMMIT: roll the database transaction back: " +
                          message);
      }
      return detail::stage_error(state, message, lost, options);
    }
  }
  if (!commit_queued) {
    // The staging call ran (or there was none); COMMIT was never sent.
    if (lost) return detail::stage_error("", PQerrorMessage(conn), true, options);
    return Status(Errc::internal,
                  who +
                      ": COMMIT could not be queued (libpq out of memory?), so it was not sent: "
                      "the database transaction is still open, with the staged rows: roll it "
                      "back (do not commit it: tx keeps its events, whose commit() would publish "
                      "them a second time): " +
                      detail::trimmed(PQerrorMessage(conn)));
  }
  if (!committed)
    return lost ? commit_outcome_unknown(conn)
                : Status(Errc::internal,
                         who + ": no result for COMMIT: " + std::string(PQerrorMessage(conn)));
  if (PQresultStatus(committed.get()) == PGRES_COMMAND_OK &&
      std::string_view(PQcmdStatus(committed.get())) == "COMMIT") {
    return detail::finish_stage(tx);
  }
  if (PQresultStatus(committed.get()) == PGRES_COMMAND_OK) {
    // "ROLLBACK": the transaction was aborted when COMMIT ran.
    return Status(Errc::internal, who +
                                      ": the server rolled the database transaction back "
                                      "instead of committing it: nothing was written, tx "
                                      "keeps its events");
  }
  // An error of the statement alone (severity ERROR): COMMIT failed and the server rolled
  // the transaction back, whatever became of the connection since. Otherwise (FATAL, or
  // libpq's own error of a lost connection) the server may have committed.
  if (!statement_error(committed.get())) {
    if (lost) return commit_outcome_unknown(conn);
    return Status(Errc::internal, who + ": COMMIT failed: " + server_message(committed.get()));
  }
  const std::string state = sqlstate_of(committed.get());
  const std::string what = who +
                           ": COMMIT failed and the server rolled the database transaction "
                           "back: nothing was written, tx keeps its events (SQL state " +
                           state + "): " + server_message(committed.get());
  if (retriable_class(state)) {
    return Status(Errc::unavailable, what + "; try the business transaction again");
  }
  if (rejected_class(state)) return Status(Errc::invalid_argument, what);
  return Status(Errc::internal, what);
}

}  // namespace emissions::postgres
