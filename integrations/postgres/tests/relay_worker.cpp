// A relay process for the multi-process test (relay_processes_test.cpp): a Relay feeding an
// Emitter whose one adapter inserts each delivered event into a table of deliveries, one
// autocommitted statement per batch, so that a SIGKILL loses nothing that was delivered.
// SIGTERM stops it cleanly (relay stop, then the Emitter's shutdown).
//
//   emissions_postgres_relay_worker <conninfo> <outbox table> <deliveries table> <incarnation>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

#include <pthread.h>

#include "emissions/emitter.hpp"
#include "emissions/outbox/postgres.hpp"
#include "pq_handles.hpp"

namespace {

using emissions::postgres::detail::ConnHandle;
using emissions::postgres::detail::ResultHandle;

class InsertDeliveries final : public emissions::Adapter {
 public:
  InsertDeliveries(const std::string& conninfo, std::string table, std::string incarnation)
      : conn_(PQconnectdb(conninfo.c_str())),
        sql_("INSERT INTO \"" + table +
             "\" (incarnation, n, key) SELECT $1, (d->>'n')::bigint, d->>'key' FROM "
             "jsonb_array_elements($2::jsonb) AS d"),
        incarnation_(std::move(incarnation)) {}

  [[nodiscard]] bool ok() const { return PQstatus(conn_.get()) == CONNECTION_OK; }
  std::string_view name() const override { return "insert_deliveries"; }
  emissions::Status handle_events(std::span<const emissions::Event> batch) override {
    nlohmann::json rows = nlohmann::json::array();
    for (const emissions::Event& e : batch)
      rows.push_back(e.payload);
    const std::string text = rows.dump();
    const char* values[2] = {incarnation_.c_str(), text.c_str()};
    const ResultHandle r(
        PQexecParams(conn_.get(), sql_.c_str(), 2, nullptr, values, nullptr, nullptr, 0));
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
      return emissions::Status(emissions::Errc::unavailable, PQresultErrorMessage(r.get()));
    }
    return {};
  }

 private:
  ConnHandle conn_;
  std::string sql_;
  std::string incarnation_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s <conninfo> <outbox table> <deliveries table> <incarnation>\n",
                 argv[0]);
    return 2;
  }
  // SIGTERM is taken by sigwait below, in this thread only: block it before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto adapter = std::make_shared<InsertDeliveries>(argv[1], argv[3], argv[4]);
  if (!adapter->ok()) {
    std::fprintf(stderr, "worker: cannot connect\n");
    return 1;
  }
  emissions::Config config;
  config.make_default = false;
  config.add_adapter(adapter);
  emissions::Emitter emitter(std::move(config));
  emissions::postgres::Relay relay(emitter, {.conninfo = argv[1],
                                             .outbox = {.table = argv[2], .channel = argv[2]},
                                             .batch = 50,
                                             .poll_interval = std::chrono::milliseconds(200),
                                             .lease = std::chrono::milliseconds(1'000),
                                             .name = argv[4]});
  if (!relay.start().ok()) return 1;
  int signal = 0;
  sigwait(&signals, &signal);
  const emissions::Status stopped = relay.stop(std::chrono::seconds(10));
  if (!stopped.ok()) std::fprintf(stderr, "worker: %s\n", stopped.to_string().c_str());
  return emitter.shutdown(std::chrono::seconds(10)).ok() && stopped.ok() ? 0 : 1;
}
