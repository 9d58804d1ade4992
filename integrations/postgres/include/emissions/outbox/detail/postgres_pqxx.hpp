// Internal: stage() for libpqxx users, compiled in their translation unit (header-only), so
// that the library never links libpqxx. Included by emissions/outbox/postgres_outbox.hpp
// when <pqxx/pqxx> (or <pqxx/transaction_base>) came first.
#pragma once

#include <cstddef>
#include <exception>
#include <string>

#include <pqxx/except>
#include <pqxx/nontransaction>
#include <pqxx/transaction_base>

#include "emissions/outbox/detail/postgres_stage.hpp"
#include "emissions/status.hpp"
#include "emissions/transaction.hpp"

namespace emissions::postgres {

/// stage() through a libpqxx transaction: the same statement, guarantee and errors as
/// stage(Transaction&, PGconn*, const OutboxOptions&). A `pqxx::nontransaction` is refused
/// (invalid_argument): it is not a database transaction. libpqxx exceptions never escape:
/// each becomes the Status stage() documents.
///
/// @code
///   #include <pqxx/pqxx>                        // first
///   #include <emissions/outbox/postgres.hpp>
///
///   pqxx::work work(db);
///   work.exec0("UPDATE accounts SET ...");
///   if (emissions::postgres::stage(tx, work).ok()) work.commit();
/// @endcode
inline Status stage(Transaction& tx, pqxx::transaction_base& work,
                    const OutboxOptions& options = {}) {
  if (dynamic_cast<pqxx::nontransaction*>(&work) != nullptr) {
    return Status(Errc::invalid_argument,
                  "stage() needs a database transaction, and a pqxx::nontransaction is none "
                  "(each statement would commit on its own): use pqxx::work");
  }
  detail::StageStatement statement;
  if (Status s = detail::prepare_stage(tx, options, statement); !s.ok()) return s;
  if (statement.count == 0) return detail::finish_stage(tx);
  try {
    // exec(), not exec_params(): libpqxx 6.4's exec_params runs even on a transaction that
    // an earlier error closed, on the bare connection, where the rows would commit on their
    // own. exec() refuses a closed transaction (usage_error).
    const pqxx::result result = work.exec(detail::inline_stage_statement(
        options, work.quote(statement.events), work.quote(options.channel)));
    const char* inserted =
        result.size() == 1 && result.columns() == 1 ? result[0][0].c_str() : nullptr;
    if (Status s = detail::check_staged_count(inserted, statement.count); !s.ok()) return s;
  } catch (const pqxx::broken_connection& e) {
    return detail::stage_error("", e.what(), true, options);
  } catch (const pqxx::sql_error& e) {
    return detail::stage_error(e.sqlstate(), detail::server_error_summary(e.what(), e.sqlstate()),
                               false, options);
  } catch (const pqxx::usage_error& e) {
    // A transaction already committed, aborted or closed.
    return Status(Errc::invalid_argument,
                  std::string("the libpqxx transaction cannot run statements: ") + e.what());
  } catch (const std::exception& e) {
    return Status(Errc::internal, std::string("staging through libpqxx failed: ") + e.what());
  }
  return detail::finish_stage(tx);
}

}  // namespace emissions::postgres
