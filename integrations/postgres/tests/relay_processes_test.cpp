// Two relay processes (relay_worker.cpp) against writer threads that stage and commit or
// roll back at random; one relay is killed with SIGKILL mid-run and started again. Every
// committed event must be delivered at least once, none of a rolled-back transaction, an
// event twice only when the killed relay had delivered it (its claim was never deleted),
// and each key's events in order.
//
// EMISSIONS_PG_STRESS_TRANSACTIONS sets the transactions per writer (default 150; the
// issue's full run is 2000: 8 x 2000).
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "emissions/emitter.hpp"
#include "emissions/outbox/postgres.hpp"
#include "pg_test_support.hpp"
#include "relay_support.hpp"

extern char** environ;

namespace {

using emissions::postgres::OutboxOptions;
using emissions::postgres::test::Db;
using emissions::postgres::test::eventually;
using emissions::postgres::test::fresh_outbox;
using emissions::postgres::test::keyed;
using namespace std::chrono_literals;

constexpr int kWriters = 8;
constexpr int kKeysPerWriter = 4;

int transactions_per_writer() {
  if (const char* v = std::getenv("EMISSIONS_PG_STRESS_TRANSACTIONS"); v != nullptr && *v) {
    return std::atoi(v);
  }
  return 150;
}

// A relay process; SIGKILLed by the destructor if still running.
class Worker {
 public:
  Worker(const std::string& conninfo, const std::string& outbox, const std::string& deliveries,
         const std::string& incarnation) {
    std::vector<std::string> args{EMISSIONS_PG_RELAY_WORKER, conninfo, outbox, deliveries,
                                  incarnation};
    std::vector<char*> argv;
    for (std::string& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) != 0) pid_ = -1;
  }
  ~Worker() { kill(SIGKILL); }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  [[nodiscard]] bool running() const { return pid_ > 0; }
  // Sends `signal` and reaps the process; its exit status (-1 when killed by a signal).
  int kill(int signal) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, signal);
    int status = 0;
    (void)::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  pid_t pid_ = -1;
};

TEST(RelayProcesses, KilledRelayLosesNothingAndDuplicatesOnlyWhatItHadDelivered) {
  Db db;
  const OutboxOptions outbox = keyed(fresh_outbox(db));
  const std::string deliveries = outbox.table + "_delivered";
  db.exec("DROP TABLE IF EXISTS \"" + deliveries + "\"");
  db.exec("CREATE TABLE \"" + deliveries +
          "\" (at bigserial PRIMARY KEY, incarnation text NOT NULL, n bigint NOT NULL, key text)");
  const std::string info = emissions::postgres::test::conninfo();

  Worker healthy(info, outbox.table, deliveries, "healthy");
  auto victim = std::make_unique<Worker>(info, outbox.table, deliveries, "victim-1");
  ASSERT_TRUE(healthy.running());
  ASSERT_TRUE(victim->running());

  // The writers: committed ns are kept; rolled-back ones are never to be delivered.
  emissions::Config config;
  config.make_default = false;
  emissions::Emitter emitter(std::move(config));  // only for its transactions
  const int per_writer = transactions_per_writer();
  std::mutex mutex;
  std::set<long long> committed;
  std::set<long long> rolled_back;
  std::atomic<int> done{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      Db own;
      std::mt19937 random(static_cast<unsigned>(w) + 1);
      for (int t = 0; t < per_writer; ++t) {
        const long long n0 = (static_cast<long long>(w) * 1'000'000 + t) * 4;
        const int events = 1 + static_cast<int>(random() % 3);
        emissions::Transaction tx = emitter.start();
        for (int i = 0; i < events; ++i) {
          (void)tx.emit("e", {{"n", n0 + i},
                              {"key", "w" + std::to_string(w) + "k" +
                                          std::to_string((t + i) % kKeysPerWriter)}});
        }
        own.exec("BEGIN");
        const bool ok = emissions::postgres::stage(tx, own.get(), outbox).ok();
        const bool commit = ok && random() % 5 != 0;
        own.exec(commit ? "COMMIT" : "ROLLBACK");
        const std::lock_guard lock(mutex);
        for (int i = 0; i < events; ++i)
          (commit ? committed : rolled_back).insert(n0 + i);
        done.fetch_add(1);
      }
    });
  }
  // Kill the victim once a third of the work is done, right after it delivered something
  // (most likely with a claim delivered but not yet deleted), and start it again.
  ASSERT_TRUE(eventually([&] { return done.load() >= kWriters * per_writer / 3; }, 120s));
  const std::string victim_deliveries =
      "SELECT count(*) FROM \"" + deliveries + "\" WHERE incarnation = 'victim-1'";
  const long long before = db.count(victim_deliveries);
  ASSERT_TRUE(eventually([&] { return db.count(victim_deliveries) > before; }, 60s))
      << "the victim delivered nothing: it must take part before it is killed";
  EXPECT_EQ(victim->kill(SIGKILL), -1);
  victim = std::make_unique<Worker>(info, outbox.table, deliveries, "victim-2");
  for (std::thread& t : writers)
    t.join();

  // Everything committed is delivered and deleted (the dead victim's leases expire in 1 s).
  ASSERT_TRUE(eventually(
      [&] {
        return db.count("SELECT count(*) FROM \"" + outbox.table + "\"") == 0 &&
               db.count("SELECT count(DISTINCT n) FROM \"" + deliveries + "\"") ==
                   static_cast<long long>(committed.size());
      },
      120s))
      << db.count("SELECT count(*) FROM \"" + outbox.table + "\"") << " rows left";
  EXPECT_EQ(healthy.kill(SIGTERM), 0);
  EXPECT_EQ(victim->kill(SIGTERM), 0);

  const auto r = db.exec("SELECT incarnation, n, key FROM \"" + deliveries + "\" ORDER BY at");
  std::map<long long, std::vector<std::string>> by_n;
  std::map<std::string, long long> last_of_key;            // without the killed incarnation
  std::map<std::string, long long> last_of_key_in_victim;  // the killed incarnation alone
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    const std::string incarnation = PQgetvalue(r.get(), i, 0);
    const long long n = std::stoll(PQgetvalue(r.get(), i, 1));
    const std::string key = PQgetvalue(r.get(), i, 2);
    by_n[n].push_back(incarnation);
    EXPECT_EQ(committed.count(n), 1U) << n << " delivered but never committed";
    auto& last = incarnation == "victim-1" ? last_of_key_in_victim : last_of_key;
    if (const auto it = last.find(key); it != last.end()) {
      EXPECT_GT(n, it->second) << "key " << key << " out of order in " << incarnation;
    }
    last[key] = n;
  }
  std::size_t duplicates = 0;
  for (const long long n : committed) {
    const auto it = by_n.find(n);
    ASSERT_NE(it, by_n.end()) << n << " committed but never delivered";
    if (it->second.size() > 1) {
      ++duplicates;
      EXPECT_EQ(it->second.size(), 2U) << n;
      EXPECT_EQ(std::count(it->second.begin(), it->second.end(), "victim-1"), 1) << n;
    }
  }
  for (const long long n : rolled_back)
    EXPECT_EQ(by_n.count(n), 0U) << n;
  RecordProperty("committed", static_cast<int>(committed.size()));
  RecordProperty("duplicates", static_cast<int>(duplicates));
}

}  // namespace
