// emissions-postgres-bench: the outbox's figures (docs/BENCHMARKS.md), each beside a baseline
// measured in the same run against the same server.
//
//   emissions-postgres-bench [conninfo [parts]]
//
// `parts` picks runs by name, comma-separated (staging,relay,latency; default all; also, not
// in the default, `statements`: the staging statements of earlier versions and now, side by
// side; `pipeline`: stage_and_commit()'s pipeline with cheaper statements, what each part of
// its statement costs the server).
// Without a conninfo it starts a throw-away PostgreSQL 15 of its own with the server's
// default durability (fsync and synchronous_commit on; pg_cluster.sh with
// EMISSIONS_PG_DURABLE=1) and stops it at the end.
//   1. staging: a small business transaction (BEGIN, one INSERT, COMMIT) without staging,
//      with stage() of 3 events before COMMIT, and with stage_and_commit() of 3 events in
//      place of COMMIT, interleaved on one connection; the ratios of the medians.
//   2. relay throughput: a backlog of committed rows drained by one Relay (batch 500) into
//      a no-op adapter, until every row is deleted; events/s.
//   3. commit-to-delivery latency: one event per transaction, the relay woken by LISTEN
//      (poll_interval of an hour); from COMMIT returning to the adapter's call.
// Exits 2 when a run lost or duplicated events (no figures then).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "emissions/emitter.hpp"
#include "emissions/outbox/postgres.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct Conn {
  PGconn* conn = nullptr;
  explicit Conn(const std::string& info) : conn(PQconnectdb(info.c_str())) {}
  ~Conn() { PQfinish(conn); }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  bool exec(const char* sql) const {
    PGresult* r = PQexec(conn, sql);
    const ExecStatusType s = PQresultStatus(r);
    const bool ok = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
    if (!ok) std::fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    return ok;
  }
};

// A throw-away cluster through the tests' script, when no conninfo is given.
class Cluster {
 public:
  Cluster() {
    char pattern[] = "/tmp/emissions-pg-bench-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) return;
    state_ = pattern;
    ok_ = run("start");
  }
  ~Cluster() {
    if (!state_.empty()) {
      (void)run("stop");
      (void)std::system(("rm -rf " + state_).c_str());
    }
  }
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;
  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] std::string conninfo() const {
    std::ifstream in(state_ + "/conninfo");
    std::string line;
    std::getline(in, line);
    return line;
  }

 private:
  bool run(const char* command) const {
    const std::string line = std::string("EMISSIONS_PG_DURABLE=1 bash ") +
                             EMISSIONS_PG_CLUSTER_SCRIPT + " " + command + " " + state_ +
                             " >/dev/null";
    return std::system(line.c_str()) == 0;
  }
  std::string state_;
  bool ok_ = false;
};

// Counts deliveries; for the latency run, also the time of the latest call.
class Counting final : public emissions::Adapter {
 public:
  std::string_view name() const override { return "noop"; }
  emissions::Status handle_events(std::span<const emissions::Event> batch) override {
    const auto now = Clock::now();
    {
      const std::lock_guard lock(mutex_);
      count_ += batch.size();
      last_ = now;
    }
    changed_.notify_all();
    return {};
  }
  // Waits until `n` events arrived (or `timeout`); the time of the call that brought them.
  bool wait_for(std::size_t n, std::chrono::milliseconds timeout, Clock::time_point& at) {
    std::unique_lock lock(mutex_);
    const bool ok = changed_.wait_for(lock, timeout, [&] { return count_ >= n; });
    at = last_;
    return ok;
  }
  std::size_t count() {
    const std::lock_guard lock(mutex_);
    return count_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::size_t count_ = 0;
  Clock::time_point last_;
};

// CPU seconds (user + system) of `pid` from /proc, 0 when it is gone or unreadable.
double process_cpu_s(const std::string& pid) {
  std::ifstream in("/proc/" + pid + "/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  // Fields after the command (which may hold spaces) start after the last ')'.
  std::istringstream fields(line.substr(line.rfind(')') + 2));
  std::string field;
  unsigned long long utime = 0;
  unsigned long long stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// The CPU seconds of every server process (backends and background workers) by pid.
std::map<std::string, double> server_cpu(const Conn& db) {
  std::map<std::string, double> out;
  PGresult* r = PQexec(db.conn, "SELECT pid FROM pg_stat_activity");
  if (PQresultStatus(r) == PGRES_TUPLES_OK) {
    for (int i = 0; i < PQntuples(r); ++i)
      out[PQgetvalue(r, i, 0)] = process_cpu_s(PQgetvalue(r, i, 0));
  }
  PQclear(r);
  return out;
}

// The CPU seconds of one process from /proc/<pid>/schedstat (nanoseconds, unlike the clock
// ticks of /proc/<pid>/stat), 0 when unreadable.
double backend_cpu_s(const std::string& pid) {
  std::ifstream in("/proc/" + pid + "/schedstat");
  unsigned long long ns = 0;
  in >> ns;
  return static_cast<double>(ns) / 1e9;
}

double us(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::micro>(to - from).count();
}

// The calling thread's CPU time (user + system), microseconds.
double thread_cpu_us() {
  rusage u{};
  ::getrusage(RUSAGE_THREAD, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e6 +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double self_cpu_s() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}
double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0;
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

emissions::Config config_with(const std::shared_ptr<Counting>& adapter) {
  emissions::Config config;
  config.make_default = false;
  if (adapter) config.add_adapter(adapter, {.buffer_size = 1 << 16});
  return config;
}

}  // namespace

int main(int argc, char** argv) {
  std::unique_ptr<Cluster> cluster;
  std::string info;
  if (argc > 1) {
    info = argv[1];
  } else {
    cluster = std::make_unique<Cluster>();
    if (!cluster->ok()) {
      std::fprintf(stderr, "cannot start PostgreSQL (pg_cluster.sh)\n");
      return 1;
    }
    info = cluster->conninfo();
  }
  const std::string parts = argc > 2 ? argv[2] : "staging,relay,latency";
  auto wanted = [&](const char* part) { return parts.find(part) != std::string::npos; };
  Conn db(info);
  if (PQstatus(db.conn) != CONNECTION_OK) {
    std::fprintf(stderr, "cannot connect: %s", PQerrorMessage(db.conn));
    return 1;
  }
  const emissions::postgres::OutboxOptions outbox{.table = "bench_outbox", .channel = "bench"};
  if (!db.exec("DROP TABLE IF EXISTS bench_outbox, bench_orders") ||
      !db.exec(emissions::postgres::schema_sql(outbox).c_str()) ||
      !db.exec("CREATE TABLE bench_orders (id bigserial PRIMARY KEY, total int)")) {
    return 1;
  }

  // 1. Staging overhead.
  if (wanted("staging")) {
    emissions::Emitter emitter(config_with(nullptr));
    const std::string backend = std::to_string(PQbackendPID(db.conn));
    std::vector<double> plain;
    std::vector<double> staged;
    std::vector<double> plain_commit;
    std::vector<double> staged_statement;  // emit 3 events + stage()
    std::vector<double> staged_commit;
    double plain_server = 0;
    double staged_server = 0;
    double stage_client = 0;        // the bench thread's CPU in stage(), microseconds
    std::vector<double> pipelined;  // BEGIN, INSERT, stage_and_commit()
    double pipelined_server = 0;
    constexpr int kReps = 2'000;
    constexpr int kWarmUp = 200;
    for (int i = 0; i < kReps + kWarmUp; ++i) {  // the first kWarmUp of each warm up
      const double s0 = backend_cpu_s(backend);
      const auto t0 = Clock::now();
      if (!db.exec("BEGIN") || !db.exec("INSERT INTO bench_orders (total) VALUES (1)")) return 1;
      const auto t1 = Clock::now();
      if (!db.exec("COMMIT")) return 1;
      const auto t2 = Clock::now();
      const double s1 = backend_cpu_s(backend);
      emissions::Transaction tx = emitter.start();
      for (int e = 0; e < 3; ++e)
        (void)tx.emit("order_event", {{"id", i}, {"e", e}});
      if (!db.exec("BEGIN") || !db.exec("INSERT INTO bench_orders (total) VALUES (1)")) return 1;
      const double c3 = thread_cpu_us();
      const auto t3 = Clock::now();
      if (!emissions::postgres::stage(tx, db.conn, outbox).ok()) return 1;
      const auto t4 = Clock::now();
      const double c4 = thread_cpu_us();
      if (!db.exec("COMMIT")) return 1;
      const auto t5 = Clock::now();
      const double s2 = backend_cpu_s(backend);
      const auto t6 = Clock::now();  // emits included, as in `staged`
      emissions::Transaction piped = emitter.start();
      for (int e = 0; e < 3; ++e)
        (void)piped.emit("order_event", {{"id", i}, {"e", e}});
      if (!db.exec("BEGIN") || !db.exec("INSERT INTO bench_orders (total) VALUES (1)")) return 1;
      if (!emissions::postgres::stage_and_commit(piped, db.conn, outbox).ok()) return 1;
      const auto t7 = Clock::now();
      const double s3 = backend_cpu_s(backend);
      if (i >= kWarmUp) {
        pipelined.push_back(us(t6, t7));
        pipelined_server += s3 - s2;
        plain.push_back(us(t0, t2));
        plain_commit.push_back(us(t1, t2));
        staged.push_back(us(t2, t5));
        staged_statement.push_back(us(t3, t4));
        staged_commit.push_back(us(t4, t5));
        plain_server += s1 - s0;
        staged_server += s2 - s1;
        stage_client += c4 - c3;
      }
    }
    if (!db.exec("TRUNCATE bench_outbox")) return 1;
    const double p = median(plain);
    const double s = median(staged);
    std::printf("staging_3_events_tx_us_median  %.1f (without staging: %.1f; ratio %.2f)\n", s, p,
                s / p);
    std::printf(
        "staging_split_us_median        stage() %.1f; COMMIT %.1f with staging, %.1f without; "
        "server CPU %.1f us/tx with staging, %.1f without; client CPU in stage() %.1f us\n",
        median(staged_statement), median(staged_commit), median(plain_commit),
        staged_server * 1e6 / kReps, plain_server * 1e6 / kReps, stage_client / kReps);
    const double q = median(pipelined);
    std::printf(
        "staging_and_commit_3_events_tx_us_median  %.1f (without staging: %.1f; ratio %.2f); "
        "server CPU %.1f us/tx\n",
        q, p, q / p, pipelined_server * 1e6 / kReps);
  }

  // 1b. The staging statement against those before it: a CTE with a count and a SELECT of
  //     pg_notify (first), the INSERT itself (third review), and now the call of the staging
  //     function schema_sql() makes; all unnamed statements through PQexecParams as stage()
  //     sent them, interleaved in one business transaction shape; not part of the default run.
  if (parts.find("statements") != std::string::npos) {
    const std::string backend = std::to_string(PQbackendPID(db.conn));
    const std::string cte =
        "WITH staged AS (INSERT INTO bench_outbox (id, name, payload, metadata, emitted_at, "
        "ordering_key) SELECT (e.doc->>'id')::uuid, e.doc->>'name', e.doc->'payload', "
        "e.doc->'metadata', (e.doc->>'emitted_at')::timestamptz, e.doc->>'key' FROM "
        "jsonb_array_elements(($1)::jsonb) WITH ORDINALITY AS e(doc, n) ORDER BY e.n RETURNING "
        "1) SELECT (SELECT count(*) FROM staged), pg_notify($2, '')";
    const std::string insert =
        "INSERT INTO bench_outbox (id, name, payload, metadata, emitted_at, ordering_key) SELECT "
        "e.id, e.name, coalesce(e.payload, 'null'), e.metadata, e.emitted_at, e.key FROM "
        "jsonb_to_recordset(($1)::jsonb) AS e(id uuid, name text, payload jsonb, metadata jsonb, "
        "emitted_at timestamptz, key text) WHERE pg_notify($2, '') IS NOT NULL";
    // As stage() sends it: the parameters' types given (jsonb, text).
    const std::string function = "SELECT \"bench_outbox_stage\"(($1)::jsonb, ($2)::text)";
    const std::vector<std::pair<const char*, std::string>> variants = {
        {"cte (first)", cte}, {"insert (before)", insert}, {"function (now)", function}};
    const Oid function_types[2] = {3802, 25};
    std::vector<std::vector<double>> statement(variants.size());
    std::vector<std::vector<double>> total(variants.size());
    std::vector<double> server(variants.size(), 0);
    constexpr int kReps = 2'000;
    std::uint64_t id = 0;
    for (int i = 0; i < kReps + 200; ++i) {
      for (std::size_t v = 0; v < variants.size(); ++v) {
        std::string events = "[";
        for (int e = 0; e < 3; ++e) {
          char uuid[40];
          std::snprintf(uuid, sizeof uuid, "00000000-0000-4000-8000-%012llx",
                        static_cast<unsigned long long>(++id));
          events += std::string(e > 0 ? "," : "") + R"({"id":")" + uuid +
                    R"(","name":"order_event","payload":{"id":)" + std::to_string(i) + R"(,"e":)" +
                    std::to_string(e) +
                    R"(},"metadata":{},"emitted_at":"2026-12-01T18:00:00.000001Z","key":null})";
        }
        events += "]";
        const char* values[2] = {events.c_str(), "bench"};
        const double s0 = backend_cpu_s(backend);
        const auto t0 = Clock::now();
        if (!db.exec("BEGIN") || !db.exec("INSERT INTO bench_orders (total) VALUES (1)")) return 1;
        const auto t1 = Clock::now();
        PGresult* r = PQexecParams(db.conn, variants[v].second.c_str(), 2,
                                   v == 2 ? function_types : nullptr, values, nullptr, nullptr, 0);
        const auto t2 = Clock::now();
        const ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
          std::fprintf(stderr, "%s: %s", variants[v].first, PQresultErrorMessage(r));
          PQclear(r);
          return 1;
        }
        PQclear(r);
        if (!db.exec("COMMIT")) return 1;
        const auto t3 = Clock::now();
        if (i >= 200) {
          statement[v].push_back(us(t1, t2));
          total[v].push_back(us(t0, t3));
          server[v] += backend_cpu_s(backend) - s0;
        }
      }
    }
    if (!db.exec("TRUNCATE bench_outbox")) return 1;
    for (std::size_t v = 0; v < variants.size(); ++v) {
      std::printf(
          "staging_statement_%-16s statement %.1f us, tx %.1f us (medians); server CPU "
          "%.1f us/tx\n",
          variants[v].first, median(statement[v]), median(total[v]), server[v] * 1e6 / kReps);
    }
  }

  // 1c. Where stage_and_commit()'s added server CPU goes: its pipeline (a statement, COMMIT,
  //     a sync) after BEGIN and the business INSERT, with the statement replaced by cheaper
  //     ones, each leaving something out; the plain transaction beside them. All interleaved
  //     on one connection, the order rotated every round. Not part of the default run.
  if (parts.find("pipeline") != std::string::npos) {
    const std::string backend = std::to_string(PQbackendPID(db.conn));
    const std::string from = " FROM (SELECT E'\"bench_outbox\"'::regclass) AS outbox";
    const std::string checked_call =
        "SELECT (CASE WHEN \"bench_outbox_stage\"(($1)::jsonb, ($2)::text) = ($3)::bigint THEN "
        "'1' ELSE 'emissions: staged row count mismatch' END)::int";
    if (!db.exec("CREATE OR REPLACE FUNCTION bench_outbox_noop(e jsonb, ch text) RETURNS bigint "
                 "LANGUAGE plpgsql AS $$ BEGIN RETURN 3; END $$")) {
      return 1;
    }
    PGresult* prepared =
        PQprepare(db.conn, "bench_checked_call", (checked_call + from).c_str(), 3, nullptr);
    const bool prepared_ok = PQresultStatus(prepared) == PGRES_COMMAND_OK;
    PQclear(prepared);
    if (!prepared_ok) return 1;
    struct Variant {
      const char* name;
      std::string sql;  // empty: the prepared statement; "-": no statement
      int params;
    };
    const std::vector<Variant> variants = {
        {"plain (no pipeline)", "", 0},
        {"stage_and_commit (now)", checked_call + from, 3},
        {"named prepared", "", 3},
        {"no regclass FROM", checked_call, 3},
        {"no count check", "SELECT \"bench_outbox_stage\"(($1)::jsonb, ($2)::text)" + from, 2},
        {"empty plpgsql fn",
         "SELECT (CASE WHEN bench_outbox_noop(($1)::jsonb, ($2)::text) = ($3)::bigint THEN '1' "
         "ELSE 'x' END)::int" +
             from,
         3},
        {"SELECT of the params", "SELECT ($1)::jsonb IS NULL, ($2)::text, ($3)::bigint", 3},
        {"COMMIT only", "-", 0}};
    const Oid types[3] = {3802, 25, 20};
    const std::size_t n = variants.size();
    std::vector<std::vector<double>> total(n);
    std::vector<double> server(n, 0);
    constexpr int kReps = 800;
    constexpr int kWarmUp = 100;
    std::uint64_t id = 1'000'000'000;
    for (int i = 0; i < kReps + kWarmUp; ++i) {
      for (std::size_t k = 0; k < n; ++k) {
        const std::size_t v = (k + static_cast<std::size_t>(i)) % n;
        std::string events = "[";
        for (int e = 0; e < 3; ++e) {
          char uuid[40];
          std::snprintf(uuid, sizeof uuid, "00000000-0000-4000-8000-%012llx",
                        static_cast<unsigned long long>(++id));
          events += std::string(e > 0 ? "," : "") + R"({"id":")" + uuid +
                    R"(","name":"order_event","payload":{"id":)" + std::to_string(i) + R"(,"e":)" +
                    std::to_string(e) +
                    R"(},"metadata":{},"emitted_at":"2026-12-02T12:00:00.000001Z","key":null})";
        }
        events += "]";
        const char* values[3] = {events.c_str(), "bench", "3"};
        const double s0 = backend_cpu_s(backend);
        const auto t0 = Clock::now();
        if (!db.exec("BEGIN") || !db.exec("INSERT INTO bench_orders (total) VALUES (1)")) return 1;
        if (v == 0) {
          if (!db.exec("COMMIT")) return 1;
        } else {
          if (PQenterPipelineMode(db.conn) != 1) return 1;
          const Variant& variant = variants[v];
          bool sent = true;
          if (variant.sql.empty()) {
            sent = PQsendQueryPrepared(db.conn, "bench_checked_call", 3, values, nullptr, nullptr,
                                       0) == 1;
          } else if (variant.sql != "-") {
            sent = PQsendQueryParams(db.conn, variant.sql.c_str(), variant.params, types, values,
                                     nullptr, nullptr, 0) == 1;
          }
          sent =
              sent &&
              PQsendQueryParams(db.conn, "COMMIT", 0, nullptr, nullptr, nullptr, nullptr, 0) == 1 &&
              PQpipelineSync(db.conn) == 1;
          if (!sent) {
            std::fprintf(stderr, "%s: %s", variant.name, PQerrorMessage(db.conn));
            return 1;
          }
          bool synced = false;
          bool failed = false;
          for (int reads = 0; reads < 8 && !synced; ++reads) {
            PGresult* r = PQgetResult(db.conn);
            if (r == nullptr) continue;
            const ExecStatusType st = PQresultStatus(r);
            if (st == PGRES_PIPELINE_SYNC) {
              synced = true;
            } else if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
              std::fprintf(stderr, "%s: %s", variant.name, PQresultErrorMessage(r));
              failed = true;
            }
            PQclear(r);
          }
          if (PQexitPipelineMode(db.conn) != 1 || failed || !synced) return 1;
        }
        const auto t1 = Clock::now();
        if (i >= kWarmUp) {
          total[v].push_back(us(t0, t1));
          server[v] += backend_cpu_s(backend) - s0;
        }
      }
    }
    if (!db.exec("TRUNCATE bench_outbox") || !db.exec("DROP FUNCTION bench_outbox_noop")) return 1;
    for (std::size_t v = 0; v < n; ++v) {
      std::printf("pipeline_%-24s tx %.1f us (median); server CPU %.1f us/tx, %+.1f over plain\n",
                  variants[v].name, median(total[v]), server[v] * 1e6 / kReps,
                  (server[v] - server[0]) * 1e6 / kReps);
    }
  }

  // 2. Relay throughput: a backlog, drained by one relay with batch 500.
  if (wanted("relay")) {
    constexpr int kEvents = 100'000;
    constexpr int kPerTx = 500;
    {
      emissions::Emitter emitter(config_with(nullptr));
      for (int t = 0; t < kEvents / kPerTx; ++t) {
        emissions::Transaction tx = emitter.start();
        for (int e = 0; e < kPerTx; ++e)
          (void)tx.emit("order_event", t * kPerTx + e);
        if (!db.exec("BEGIN") || !emissions::postgres::stage(tx, db.conn, outbox).ok() ||
            !db.exec("COMMIT")) {
          return 1;
        }
      }
    }
    auto adapter = std::make_shared<Counting>();
    emissions::Emitter emitter(config_with(adapter));
    emissions::postgres::Relay relay(emitter, {.conninfo = info, .outbox = outbox, .batch = 500});
    const std::map<std::string, double> server_before = server_cpu(db);
    const double self_before = self_cpu_s();
    const auto t0 = Clock::now();
    if (!relay.start().ok()) return 1;
    const auto deadline = t0 + 300s;
    while (relay.stats().deleted < kEvents && Clock::now() < deadline) {
      std::this_thread::sleep_for(1ms);
    }
    const auto t1 = Clock::now();
    const double self_used = self_cpu_s() - self_before;
    double server_used = 0;  // read while the relay's backend is still there
    for (const auto& [pid, cpu] : server_cpu(db)) {
      const auto before = server_before.find(pid);
      server_used += cpu - (before == server_before.end() ? 0 : before->second);
    }
    const auto stats = relay.stats();
    if (!relay.stop(10s).ok() || !emitter.drain(10s).ok() || stats.deleted != kEvents ||
        adapter->count() != static_cast<std::size_t>(kEvents)) {
      std::fprintf(stderr, "relay throughput: %llu deleted, %zu delivered of %d\n",
                   static_cast<unsigned long long>(stats.deleted), adapter->count(), kEvents);
      return 2;
    }
    std::printf("relay_throughput_batch500_eps  %.0f (%d events in %.2f s)\n",
                kEvents / std::chrono::duration<double>(t1 - t0).count(), kEvents,
                std::chrono::duration<double>(t1 - t0).count());
    std::printf("relay_cpu_us_per_event         relay process %.2f, server %.2f\n",
                self_used * 1e6 / kEvents, server_used * 1e6 / kEvents);
  }

  // 3. Commit-to-delivery latency with LISTEN.
  if (wanted("latency")) {
    auto adapter = std::make_shared<Counting>();
    emissions::Emitter emitter(config_with(adapter));
    emissions::postgres::Relay relay(
        emitter, {.conninfo = info, .outbox = outbox, .poll_interval = 3'600'000ms});
    if (!relay.start().ok()) return 1;
    const auto connect_deadline = Clock::now() + 30s;
    while (!relay.stats().connected && Clock::now() < connect_deadline) {
      std::this_thread::sleep_for(1ms);
    }
    std::vector<double> latencies;
    constexpr int kRounds = 500;
    for (int i = 0; i < kRounds; ++i) {
      emissions::Transaction tx = emitter.start();
      (void)tx.emit("order_event", i);
      if (!db.exec("BEGIN") || !emissions::postgres::stage(tx, db.conn, outbox).ok() ||
          !db.exec("COMMIT")) {
        return 1;
      }
      const auto committed = Clock::now();
      Clock::time_point delivered;
      if (!adapter->wait_for(static_cast<std::size_t>(i) + 1, 10s, delivered)) {
        std::fprintf(stderr, "latency: event %d not delivered\n", i);
        return 2;
      }
      latencies.push_back(std::chrono::duration<double, std::milli>(delivered - committed).count());
    }
    if (!relay.stop(10s).ok()) return 2;
    std::printf("commit_to_delivery_ms          p50 %.3f p99 %.3f (%d events, LISTEN)\n",
                percentile(latencies, 0.5), percentile(latencies, 0.99), kRounds);
  }
  return 0;
}
