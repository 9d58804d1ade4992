// The Relay: one thread that owns a connection, claims committed outbox rows, publishes them
// into the Emitter, renews the leases of what is in flight and deletes what was settled.
#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "connection.hpp"
#include "emissions/outbox/postgres_relay.hpp"
#include "emissions/telemetry.hpp"
#include "relay_options.hpp"
#include "sql.hpp"

namespace emissions::postgres {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Claims in flight at once (each up to `batch` rows): enough to keep the Emitter busy while
// a claim settles, few enough that a stop has little to wait for.
constexpr std::size_t kMaxClaimsInFlight = 4;
constexpr milliseconds kFirstReconnect{100};
constexpr milliseconds kLongestReconnect{5'000};
constexpr milliseconds kConnectTimeout{10'000};
// After a publish the Emitter refused (overloaded, closed), the next try waits this long
// (or poll_interval, when shorter).
constexpr milliseconds kRepublishDelay{100};

milliseconds reconnect_delay(std::uint32_t failures) {
  milliseconds d = kFirstReconnect;
  for (std::uint32_t i = 1; i < failures && d < kLongestReconnect; ++i)
    d *= 2;
  return std::min(d, kLongestReconnect);
}

bool parse_i64(const char* text, std::int64_t& out) {
  const std::string_view s(text);
  const auto [end, error] = std::from_chars(s.data(), s.data() + s.size(), out);
  return error == std::errc() && end == s.data() + s.size();
}

// The relay whose thread this is (null on other threads): stop() and ~Relay() called from
// a telemetry handler on the relay thread must not join that thread.
thread_local const void* t_relay_state = nullptr;

struct Claim {
  std::string id;
  std::size_t rows = 0;
};

}  // namespace

struct Relay::State : std::enable_shared_from_this<Relay::State> {
  State(Emitter& e, RelayOptions o) : emitter(e), options(std::move(o)) {}

  Emitter& emitter;
  const RelayOptions options;
  detail::WakeFd wake;
  detail::StopSignal stop;

  std::mutex mutex;                  // guards settled and last_error
  std::vector<std::string> settled;  // claims every adapter settled, to delete
  std::string last_error;

  std::atomic<std::uint64_t> claimed{0};
  std::atomic<std::uint64_t> published{0};
  std::atomic<std::uint64_t> deleted{0};
  std::atomic<std::uint64_t> reconnects{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<bool> connected{false};
  std::size_t left_in_flight = 0;  // written by the thread before it ends, read after join

  std::mutex lifecycle;  // serializes start() and stop()
  enum class Phase { idle, running, stopped } phase = Phase::idle;
  std::thread thread;

  // Counts the error, keeps it for stats() and reports it as [emissions, outbox, error]
  // (outside the lock: telemetry handlers are user code).
  void record_error(std::string what) {
    errors.fetch_add(1, std::memory_order_relaxed);
    if (telemetry::enabled()) {
      telemetry::execute({"emissions", "outbox", "error"}, {{"count", 1}},
                         {{"relay", options.name}, {"reason", what}});
    }
    const std::lock_guard lock(mutex);
    last_error = std::move(what);
  }
  // [emissions, outbox, connected|disconnected] {count: 1} {relay}.
  void report_connection(bool up) {
    connected.store(up, std::memory_order_relaxed);
    if (telemetry::enabled()) {
      telemetry::execute({"emissions", "outbox", up ? "connected" : "disconnected"}, {{"count", 1}},
                         {{"relay", options.name}});
    }
  }

  void run();
};

void Relay::State::run() {
  t_relay_state = this;
  detail::ConnHandle conn;
  std::vector<Claim> live;
  std::vector<std::string> to_delete;
  std::vector<detail::ResultHandle> results;
  std::string error;
  bool sql_failed = false;
  std::uint32_t failures = 0;
  bool ever_connected = false;
  bool want_claim = true;
  Clock::time_point next_connect = Clock::now();
  Clock::time_point next_poll = Clock::now();
  Clock::time_point next_renew = Clock::time_point::max();
  Clock::time_point paused_until = Clock::time_point::min();
  const auto renew_every = options.lease / 3;
  // One statement may take at most a lease: beyond that our claims are lost anyway.
  const auto statement_timeout = options.lease;
  const std::string& table = options.outbox.table;

  auto io = [&](Clock::duration timeout) {
    return detail::Io{&wake, Clock::now() + timeout, &stop};
  };
  auto drop_connection = [&](const std::string& why) {
    record_error("connection lost: " + why);
    conn.reset();
    report_connection(false);
    ++failures;
    next_connect = Clock::now() + reconnect_delay(failures);
  };
  // A statement failed: on a lost connection reconnect; on an SQL error (a dropped table,
  // say) pause until the next poll instead of trying again at once.
  auto failed = [&](const std::string& what) {
    if (!sql_failed) {
      drop_connection(what + ": " + error);
      return;
    }
    record_error(what + ": " + error);
    paused_until = Clock::now() + options.poll_interval;
  };
  auto exec = [&](const std::string& sql) {
    return detail::run(conn.get(), sql, io(statement_timeout), results, error, sql_failed);
  };

  while (true) {
    {
      const std::lock_guard lock(mutex);
      for (std::string& claim : settled)
        to_delete.push_back(std::move(claim));
      settled.clear();
    }
    stop.nothing_live.store(live.empty(), std::memory_order_release);
    const bool stopping = stop.requested.load(std::memory_order_acquire);
    if (stopping && (live.empty() || Clock::now() >= stop.when())) break;
    const Clock::time_point now = Clock::now();

    if (!conn) {
      if (now < next_connect) {
        (void)detail::wait_socket(-1, false, wake,
                                  stopping ? std::min(next_connect, stop.when()) : next_connect);
        continue;
      }
      conn = detail::connect(options.conninfo, io(kConnectTimeout), error);
      if (!conn) {
        record_error(error);
        ++failures;
        next_connect = Clock::now() + reconnect_delay(failures);
        continue;
      }
      if (!exec(detail::listen_statement(options.outbox.channel))) {
        drop_connection("LISTEN: " + error);
        continue;
      }
      if (ever_connected) reconnects.fetch_add(1, std::memory_order_relaxed);
      ever_connected = true;
      failures = 0;
      report_connection(true);
      want_claim = true;  // what was committed while we were away
      paused_until = Clock::time_point::min();
      if (!live.empty()) next_renew = now;  // our leases ran on while we were away
      // Connecting may have consumed a wake-up (a settlement, stop): look at the state again.
      continue;
    }

    // Leases are renewed whatever else happens: during a pause too, or the rows still being
    // delivered would be claimed again by another relay once their lease ran out.
    if (!live.empty() && now >= next_renew) {
      std::vector<std::string> ids;
      ids.reserve(live.size());
      for (const Claim& c : live)
        ids.push_back(c.id);
      if (!exec(detail::renew_statement(table, ids, options.lease))) {
        // Retried at the next renewal (or at once after a reconnect), not before: a failing
        // renewal must not spin.
        next_renew = Clock::now() + renew_every;
        failed("renewing leases");
        continue;
      }
      next_renew = Clock::now() + renew_every;
      // The renewal may have consumed a wake-up (a settlement, stop): look at the state again.
      continue;
    }

    if (now < paused_until) {
      // A pause ends early for the next renewal (above).
      Clock::time_point until = paused_until;
      if (!live.empty()) until = std::min(until, next_renew);
      if (stopping) until = std::min(until, stop.when());
      (void)detail::wait_socket(-1, false, wake, until);
      continue;
    }

    if (!to_delete.empty()) {
      if (!exec(detail::delete_statement(table, to_delete))) {
        failed("deleting settled rows");
        continue;
      }
      std::int64_t rows = 0;
      if (parse_i64(PQcmdTuples(results.back().get()), rows)) {
        deleted.fetch_add(static_cast<std::uint64_t>(rows), std::memory_order_relaxed);
      }
      std::erase_if(live, [&](const Claim& c) {
        return std::find(to_delete.begin(), to_delete.end(), c.id) != to_delete.end();
      });
      to_delete.clear();
      if (live.empty()) next_renew = Clock::time_point::max();
      continue;
    }

    if (detail::take_notifications(conn.get()) > 0) want_claim = true;
    if (now >= next_poll) want_claim = true;

    if (!stopping && want_claim && live.size() < kMaxClaimsInFlight) {
      const std::string claim_id = EventId::generate().str();
      if (!exec(detail::claim_statement(table, options.name, claim_id, options.lease,
                                        options.batch))) {
        failed("claiming rows");
        continue;
      }
      PGresult* rows = results.back().get();
      const int n = PQntuples(rows);
      if (n == 0) {
        want_claim = false;
        next_poll = Clock::now() + options.poll_interval;
        continue;
      }
      claimed.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
      std::vector<std::pair<std::int64_t, Event>> decoded;
      decoded.reserve(static_cast<std::size_t>(n));
      std::string bad;
      for (int r = 0; r < n && bad.empty(); ++r) {
        std::int64_t seq = 0;
        std::int64_t micros = 0;
        const std::optional<EventId> id = EventId::parse(PQgetvalue(rows, r, 1));
        if (!parse_i64(PQgetvalue(rows, r, 0), seq) || !id ||
            !parse_i64(PQgetvalue(rows, r, 5), micros)) {
          bad = std::string("row with seq ") + PQgetvalue(rows, r, 0) + " is malformed";
          break;
        }
        Event e;
        e.id = *id;
        e.name = EventName(std::string_view(PQgetvalue(rows, r, 2)));
        e.payload = nlohmann::json::parse(PQgetvalue(rows, r, 3), nullptr, false);
        e.metadata = nlohmann::json::parse(PQgetvalue(rows, r, 4), nullptr, false);
        if (e.payload.is_discarded() || e.metadata.is_discarded()) {
          bad = std::string("row with seq ") + PQgetvalue(rows, r, 0) + " holds invalid JSON";
          break;
        }
        e.emitted_at = std::chrono::system_clock::time_point(
            std::chrono::duration_cast<std::chrono::system_clock::duration>(
                std::chrono::microseconds(micros)));
        decoded.emplace_back(seq, std::move(e));
      }
      Status published_status;
      if (bad.empty()) {
        // One relay publishes in insertion order (RETURNING promises no order).
        std::sort(decoded.begin(), decoded.end(),
                  [](const auto& a, const auto& b) { return a.first < b.first; });
        std::vector<Event> events;
        events.reserve(decoded.size());
        for (auto& [seq, e] : decoded)
          events.push_back(std::move(e));
        live.push_back(Claim{claim_id, events.size()});
        stop.nothing_live.store(false, std::memory_order_release);
        auto on_settled = [weak = weak_from_this(), claim_id](const Settlement&) {
          if (const auto self = weak.lock()) {
            {
              const std::lock_guard lock(self->mutex);
              self->settled.push_back(claim_id);
            }
            self->wake.wake();
          }
        };
        published_status = emitter.publish(std::move(events), std::move(on_settled));
        if (published_status.ok()) {
          published.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
          if (next_renew == Clock::time_point::max()) next_renew = Clock::now() + renew_every;
          want_claim = static_cast<std::size_t>(n) == options.batch;  // more may be waiting
          if (!want_claim) next_poll = Clock::now() + options.poll_interval;
          continue;
        }
        live.pop_back();
        bad = "the emitter refused the claim: " + published_status.to_string();
      }
      // Nothing of this claim was published: hand its rows back at once. A closed Emitter
      // will not take them sooner than the next poll; an overloaded one may soon.
      // A stop() meanwhile waits for the release (up to its deadline): otherwise the rows
      // would wait for their lease.
      want_claim = false;
      next_poll = Clock::now() + (published_status == Errc::closed
                                      ? options.poll_interval
                                      : std::min(options.poll_interval, kRepublishDelay));
      stop.nothing_live.store(false, std::memory_order_release);
      const bool released = exec(detail::release_statement(table, claim_id));
      record_error(bad);
      if (!released) failed("releasing a claim");
      continue;
    }

    // Nothing to do until a notification, a settlement, a renewal, the next poll or stop.
    // Every statement above may have consumed a wake-up: a settlement that arrived meanwhile
    // is looked for here, before the wait, or it would wait for the next renewal.
    {
      const std::lock_guard lock(mutex);
      if (!settled.empty()) continue;
    }
    if (!stopping && stop.requested.load(std::memory_order_acquire)) continue;
    Clock::time_point until = Clock::time_point::max();
    if (!stopping && !want_claim) until = next_poll;
    if (!live.empty()) until = std::min(until, next_renew);
    if (stopping) until = std::min(until, stop.when());
    if (detail::wait_socket(PQsocket(conn.get()), false, wake, until) == detail::Ready::io) {
      const int notified = detail::consume_notifications(conn.get());
      if (notified < 0) {
        drop_connection(PQerrorMessage(conn.get()));
        continue;
      }
      if (notified > 0) want_claim = true;
    }
  }
  std::size_t rows = 0;
  for (const Claim& c : live)
    rows += c.rows;
  left_in_flight = rows;
  conn.reset();
  connected.store(false, std::memory_order_relaxed);
  t_relay_state = nullptr;
}

Relay::Relay(Emitter& emitter, RelayOptions options) {
  detail::validate(options);
  state_ = std::make_shared<State>(emitter, std::move(options));
}

Relay::~Relay() {
  if (t_relay_state == state_.get()) {
    // Destroyed by a telemetry handler on its own thread: the thread cannot be joined here.
    // It stops at its next look at the stop signal and ends by itself (its lambda keeps the
    // state alive); rows in flight stay claimed until their lease expires.
    (void)stop(milliseconds(0));
    if (state_->thread.joinable()) state_->thread.detach();
    return;
  }
  (void)stop(milliseconds(0));
}

Status Relay::start() {
  const std::lock_guard lock(state_->lifecycle);
  if (state_->phase == State::Phase::running) {
    return Status(Errc::already_started, "the relay '" + state_->options.name + "' is running");
  }
  if (state_->phase == State::Phase::stopped) {
    return Status(Errc::closed, "the relay '" + state_->options.name + "' was stopped");
  }
  state_->thread = std::thread([state = state_] { state->run(); });
  state_->phase = State::Phase::running;
  return {};
}

Status Relay::stop(milliseconds timeout) {
  if (t_relay_state == state_.get()) {
    // Called on the relay thread (a telemetry handler): it cannot wait for itself. The stop
    // is requested, with its deadline, and the thread ends once back in its loop; a later
    // stop() from another thread joins it and reports what was left in flight. No lifecycle
    // lock here: another thread's stop() may hold it while it joins this thread.
    if (!state_->stop.requested.load(std::memory_order_acquire)) {
      const Deadline deadline = deadline_after(std::max(timeout, milliseconds(0)));
      state_->stop.deadline.store(deadline.time_since_epoch().count(), std::memory_order_release);
      state_->stop.requested.store(true, std::memory_order_release);
    }
    return {};
  }
  const std::lock_guard lock(state_->lifecycle);
  if (state_->phase != State::Phase::running) {
    state_->phase = State::Phase::stopped;
    return {};
  }
  const Deadline deadline = deadline_after(std::max(timeout, milliseconds(0)));
  state_->stop.deadline.store(deadline.time_since_epoch().count(), std::memory_order_release);
  state_->stop.requested.store(true, std::memory_order_release);
  state_->wake.wake();
  state_->thread.join();
  state_->phase = State::Phase::stopped;
  if (state_->left_in_flight > 0) {
    return Status(Errc::timeout,
                  "the relay '" + state_->options.name + "' stopped with " +
                      std::to_string(state_->left_in_flight) +
                      " rows still in flight; they stay in the table and are claimed again "
                      "once their lease expires");
  }
  return {};
}

RelayStats Relay::stats() const {
  RelayStats s;
  s.claimed = state_->claimed.load(std::memory_order_relaxed);
  s.published = state_->published.load(std::memory_order_relaxed);
  s.deleted = state_->deleted.load(std::memory_order_relaxed);
  s.reconnects = state_->reconnects.load(std::memory_order_relaxed);
  s.connected = state_->connected.load(std::memory_order_relaxed);
  s.errors = state_->errors.load(std::memory_order_relaxed);
  const std::lock_guard lock(state_->mutex);
  s.last_error = state_->last_error;
  return s;
}

}  // namespace emissions::postgres
