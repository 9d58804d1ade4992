// Test support: the PostgreSQL the suite runs against (started by pg_cluster.sh, through the
// CTest fixture), a blocking connection for tests, and a fresh outbox table per test.
#pragma once

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include "emissions/outbox/postgres.hpp"
#include "pq_handles.hpp"

namespace emissions::postgres::test {

// The cluster's conninfo: EMISSIONS_PG_CONNINFO, or the file EMISSIONS_PG_CONNINFO_FILE
// (what the CTest fixture sets). Throws when neither is there: run the tests through ctest.
inline std::string conninfo() {
  if (const char* direct = std::getenv("EMISSIONS_PG_CONNINFO"); direct != nullptr && *direct) {
    return direct;
  }
  const char* file = std::getenv("EMISSIONS_PG_CONNINFO_FILE");
  if (file == nullptr) {
    throw std::runtime_error(
        "no PostgreSQL: run through ctest (its fixture starts one), or set "
        "EMISSIONS_PG_CONNINFO");
  }
  std::ifstream in(file);
  std::string line;
  if (!std::getline(in, line) || line.empty()) {
    throw std::runtime_error(std::string("cannot read the conninfo from ") + file);
  }
  return line;
}

// A blocking connection for the test's own statements.
class Db {
 public:
  explicit Db(const std::string& info = conninfo()) : conn_(PQconnectdb(info.c_str())) {
    if (PQstatus(conn_.get()) != CONNECTION_OK) {
      throw std::runtime_error("cannot connect: " + std::string(PQerrorMessage(conn_.get())));
    }
  }
  PGconn* get() const { return conn_.get(); }

  // Runs `sql`; fails the test (and returns null) when it does not succeed.
  detail::ResultHandle exec(const std::string& sql) const {
    detail::ResultHandle r(PQexec(conn_.get(), sql.c_str()));
    const ExecStatusType s = PQresultStatus(r.get());
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
      ADD_FAILURE() << sql << ": " << PQresultErrorMessage(r.get());
    }
    return r;
  }
  // The first column of the first row, as text ("" when there is none).
  std::string scalar(const std::string& sql) const {
    const detail::ResultHandle r = exec(sql);
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK || PQntuples(r.get()) == 0) return "";
    return PQgetvalue(r.get(), 0, 0);
  }
  long long count(const std::string& sql) const { return std::stoll(scalar(sql)); }
  std::vector<std::string> column(const std::string& sql) const {
    const detail::ResultHandle r = exec(sql);
    std::vector<std::string> out;
    for (int i = 0; i < PQntuples(r.get()); ++i)
      out.emplace_back(PQgetvalue(r.get(), i, 0));
    return out;
  }

 private:
  detail::ConnHandle conn_;
};

// A table and channel of the current test's own (tests run in parallel on one server),
// created fresh with schema_sql().
inline OutboxOptions fresh_outbox(const Db& db, const std::string& suffix = "") {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string("t_") + info->test_suite_name() + "_" + info->name() + suffix;
  for (char& c : name) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) c = '_';
  }
  if (name.size() > 50) name = name.substr(0, 50);
  OutboxOptions options{.table = name, .channel = name};
  db.exec("DROP TABLE IF EXISTS \"" + name + "\"");
  db.exec(schema_sql(options));
  return options;
}

inline long long rows_in(const Db& db, const OutboxOptions& options) {
  return db.count("SELECT count(*) FROM \"" + options.table + "\"");
}

// A relay of the tests: polls every 200 ms, leases for 5 s, named (in the server's
// application_name too, so a test can find its session).
inline RelayOptions relay_options(const OutboxOptions& outbox, std::string name) {
  using namespace std::chrono_literals;
  return RelayOptions{.conninfo = conninfo() + " application_name=" + name,
                      .outbox = outbox,
                      .poll_interval = 200ms,
                      .lease = 5'000ms,
                      .name = std::move(name)};
}

}  // namespace emissions::postgres::test
