// The Relay: one thread that owns a connection, claims committed outbox rows, publishes them
// into the Emitter, renews the leases of what is in flight and deletes what was settled.
#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdint>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "connection.hpp"
#include "emissions/outbox/postgres_relay.hpp"
#include "emissions/telemetry.hpp"
#include "relay_faults.hpp"
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

// A claim from its UPDATE until its rows are deleted (or handed back).
struct Claim {
  std::string id;
  std::vector<std::int64_t> seqs;       // its rows handed to the Emitter, in seq order
  std::size_t pieces_out = 0;           // pieces handed to the Emitter and not settled yet
  std::vector<std::size_t> piece_ends;  // where each piece handed over ends in `seqs`
  // A piece was dropped while the Emitter was shutting down: its rows stay in the table.
  bool keep = false;
  std::size_t first_dropped = SIZE_MAX;  // the lowest such piece
  // A DELETE of these rows lost its reply with the connection: it may have committed.
  bool delete_uncertain = false;
  // Until when the lease surely holds, by this clock: from the sending of the last claim or
  // renewal that succeeded. Once passed (lapsed), another relay may have taken the rows.
  Clock::time_point lease_until = Clock::time_point::max();
  bool lease_lapsed = false;
  [[nodiscard]] bool settled() const { return pieces_out == 0; }
};

struct SettledPiece {
  std::string claim_id;
  std::size_t piece = 0;
  bool shutdown_drop = false;
};

std::mutex g_fault_mutex;
detail::FaultHook g_fault_hook;
std::atomic<bool> g_fault_set{false};

}  // namespace

namespace detail {

void set_fault_hook(FaultHook hook) {
  const std::lock_guard lock(g_fault_mutex);
  g_fault_set.store(static_cast<bool>(hook), std::memory_order_release);
  g_fault_hook = std::move(hook);
}

bool fault(FaultPoint point, PGconn* conn) {
  if (!g_fault_set.load(std::memory_order_acquire)) return false;
  FaultHook hook;
  {
    const std::lock_guard lock(g_fault_mutex);
    hook = g_fault_hook;
  }
  return hook ? hook(point, conn) : false;
}

}  // namespace detail

struct Relay::State : std::enable_shared_from_this<Relay::State> {
  State(Emitter& e, RelayOptions o) : emitter(e), options(std::move(o)) {}
  // The connecting thread was joined by then: by ~Relay, or by an orphaned relay thread at its
  // end. The last owner of the State may be an Emitter thread (an on_settled callback), which
  // must never wait for a connection attempt; this join is only a safety net.
  ~State() {
    if (connector.joinable()) {
      connector_wake.wake();
      connector.join();
    }
  }
  State(const State&) = delete;
  State& operator=(const State&) = delete;

  Emitter& emitter;
  const RelayOptions options;
  detail::WakeFd wake;            // wakes the relay thread
  detail::WakeFd connector_wake;  // wakes the connecting thread (stop): a wake-up of its own,
                                  // or either thread could consume the other's
  detail::StopSignal stop;

  std::mutex mutex;                   // guards settled, last_error and the connector's result
  std::vector<SettledPiece> settled;  // pieces every adapter settled, to account for
  std::string last_error;

  // Connection attempts run on their own thread: libpq resolves host names with a blocking
  // getaddrinfo() that no deadline interrupts, and stop() must return by its own.
  std::thread connector;
  bool connect_done = false;  // guarded by mutex, with the two below
  detail::ConnHandle connect_result;
  std::string connect_error;

  std::atomic<std::uint64_t> claimed{0};
  std::atomic<std::uint64_t> published{0};
  std::atomic<std::uint64_t> deleted{0};
  std::atomic<std::uint64_t> malformed{0};
  std::atomic<std::uint64_t> reconnects{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<bool> connected{false};
  std::size_t left_in_flight = 0;  // written by the thread before it ends, read after join
  // Set by ~Relay on the relay thread (a telemetry handler), which then detaches it: the
  // thread joins the connecting thread itself before it ends. Relay thread only.
  bool orphaned = false;

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
  // [emissions, outbox, malformed] {count: 1} {relay, seq, reason}.
  void report_malformed(std::int64_t seq, const std::string& why) {
    malformed.fetch_add(1, std::memory_order_relaxed);
    if (telemetry::enabled()) {
      telemetry::execute({"emissions", "outbox", "malformed"}, {{"count", 1}},
                         {{"relay", options.name}, {"seq", seq}, {"reason", why}});
    }
  }

  // Starts a connection attempt on the connector thread (the previous one joined).
  void start_connecting() {
    {
      const std::lock_guard lock(mutex);
      connect_done = false;
    }
    connector = std::thread([this] {
      std::string error;
      detail::ConnHandle conn = detail::connect(
          options.conninfo, detail::Io{&connector_wake, Clock::now() + kConnectTimeout, &stop},
          error);
      {
        const std::lock_guard lock(mutex);
        connect_result = std::move(conn);
        connect_error = std::move(error);
        connect_done = true;
      }
      wake.wake();
    });
  }

  void run();
};

namespace {

// The claim's columns past those decode_row() reads: the row's ordering key (null: none).
constexpr int kClaimKey = 6;

// A claimed row decoded: its seq, its row in the claim's result, its event.
struct Decoded {
  std::int64_t seq = 0;
  int row = 0;
  Event event;
};

// Decodes one claimed row; an empty string, or why it cannot be an Event.
std::string decode_row(PGresult* rows, int r, std::int64_t& seq, Event& e) {
  std::int64_t micros = 0;
  if (!parse_i64(PQgetvalue(rows, r, 0), seq)) return "its seq is not a number";
  const std::optional<EventId> id = EventId::parse(PQgetvalue(rows, r, 1));
  if (!id || id->is_nil()) return "its id is not a UUID";
  if (PQgetlength(rows, r, 2) == 0) return "its name is empty";
  if (!parse_i64(PQgetvalue(rows, r, 5), micros)) return "its emitted_at is out of range";
  e.payload = nlohmann::json::parse(PQgetvalue(rows, r, 3), nullptr, false);
  e.metadata = nlohmann::json::parse(PQgetvalue(rows, r, 4), nullptr, false);
  if (e.payload.is_discarded() || e.metadata.is_discarded()) return "it holds invalid JSON";
  if (!e.metadata.is_null() && !e.metadata.is_object()) return "its metadata is not an object";
  e.id = *id;
  e.name = EventName(std::string_view(PQgetvalue(rows, r, 2)));
  e.emitted_at = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::microseconds(micros)));
  return {};
}

}  // namespace

void Relay::State::run() {
  t_relay_state = this;
  detail::ConnHandle conn;
  std::vector<Claim> live;  // claimed, not yet deleted or handed back
  std::vector<SettledPiece> arrived;
  std::vector<detail::ResultHandle> results;
  std::string error;
  bool sql_failed = false;
  bool connecting = false;
  std::uint32_t failures = 0;
  bool ever_connected = false;
  bool want_claim = true;
  // The most events one publish takes: `batch`, halved each time the Emitter refuses a
  // piece as overloaded (a claim larger than an adapter's buffer_size never fits whole).
  std::size_t piece_limit = options.batch;
  Clock::time_point next_connect = Clock::now();
  Clock::time_point next_poll = Clock::now();
  Clock::time_point next_renew = Clock::time_point::max();
  Clock::time_point next_publish = Clock::time_point::min();
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
  auto find_claim = [&](const std::string& id) {
    return std::find_if(live.begin(), live.end(), [&](const Claim& c) { return c.id == id; });
  };
  // Hands `events` (a claim's, in seq order) to the Emitter a piece at a time, each with its
  // own on_settled. The number handed over; `refusal` tells why the rest was not.
  auto publish_pieces = [&](Claim& claim, std::vector<Event>& events, Status& refusal) {
    std::size_t done = 0;
    while (done < events.size()) {
      const std::size_t n = std::min(piece_limit, events.size() - done);
      std::vector<Event> piece;
      if (done == 0 && n == events.size()) {
        piece = std::move(events);  // the usual case: the claim whole, no copy
      } else {
        const auto first = events.begin() + static_cast<std::ptrdiff_t>(done);
        piece.assign(std::make_move_iterator(first),
                     std::make_move_iterator(first + static_cast<std::ptrdiff_t>(n)));
      }
      auto on_settled = [weak = weak_from_this(), id = claim.id,
                         index = claim.piece_ends.size()](const Settlement& s) {
        const auto self = weak.lock();
        if (!self) return;
        std::uint64_t dropped = 0;
        for (const AdapterStats& a : s.adapters)
          dropped += a.dropped;
        // A drop is a settlement, but one made while the Emitter shuts down (its deadline
        // ran out) is not final for the destination: those rows stay for the next claim.
        // A drop by an overflow policy before the shutdown began is final. An overflow drop
        // during a shutdown counts as a shutdown's: published again rather than lost.
        const bool shutdown_drop = dropped > 0 && self->emitter.closed();
        {
          const std::lock_guard lock(self->mutex);
          self->settled.push_back(SettledPiece{id, index, shutdown_drop});
        }
        self->wake.wake();
      };
      refusal = emitter.publish(std::move(piece), std::move(on_settled));
      if (!refusal.ok()) {
        // Later pieces of a claim that was too large for an adapter's queue get smaller.
        if (refusal == Errc::overloaded && n > 1) piece_limit = std::max<std::size_t>(1, n / 2);
        break;
      }
      ++claim.pieces_out;
      done += n;
      claim.piece_ends.push_back(done);
    }
    return done;
  };

  while (true) {
    {
      const std::lock_guard lock(mutex);
      arrived.swap(settled);
    }
    for (const SettledPiece& piece : arrived) {
      const auto claim = find_claim(piece.claim_id);
      if (claim == live.end()) continue;  // cannot happen: a claim leaves live once settled
      --claim->pieces_out;
      if (piece.shutdown_drop) {
        claim->keep = true;
        claim->first_dropped = std::min(claim->first_dropped, piece.piece);
      }
    }
    arrived.clear();
    stop.nothing_live.store(live.empty(), std::memory_order_release);
    const bool stopping = stop.requested.load(std::memory_order_acquire);
    // A connection attempt stuck in a host name resolution is left to its thread (joined
    // later, by the State): stop() returns by its deadline.
    if (stopping && (live.empty() || Clock::now() >= stop.when())) break;
    const Clock::time_point now = Clock::now();

    if (!conn) {
      if (connecting) {
        bool done = false;
        {
          const std::lock_guard lock(mutex);
          done = connect_done;
          if (done) {
            conn = std::move(connect_result);
            error = std::move(connect_error);
          }
        }
        if (!done) {
          (void)detail::wait_socket(-1, false, wake,
                                    stopping ? stop.when() : Clock::time_point::max());
          continue;
        }
        connector.join();
        connecting = false;
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
        if (!live.empty()) next_renew = Clock::now();  // our leases ran on while we were away
        // Connecting may have consumed a wake-up (a settlement, stop): look at the state again.
        continue;
      }
      if (now < next_connect) {
        (void)detail::wait_socket(-1, false, wake,
                                  stopping ? std::min(next_connect, stop.when()) : next_connect);
        continue;
      }
      connecting = true;
      start_connecting();
      continue;
    }

    // Leases are renewed whatever else happens: during a pause too, or the rows still being
    // delivered would be claimed again by another relay once their lease ran out.
    if (!live.empty() && now >= next_renew) {
      std::vector<std::int64_t> seqs;
      std::vector<std::string> ids;
      ids.reserve(live.size());
      for (const Claim& c : live) {
        ids.push_back(c.id);
        seqs.insert(seqs.end(), c.seqs.begin(), c.seqs.end());
      }
      const Clock::time_point renew_sent = Clock::now();
      if (!exec(detail::renew_statement(table, seqs, ids, options.lease))) {
        // Retried at the next renewal (or at once after a reconnect), not before: a failing
        // renewal must not spin.
        next_renew = Clock::now() + renew_every;
        failed("renewing leases");
        continue;
      }
      next_renew = Clock::now() + renew_every;
      for (Claim& c : live) {
        if (renew_sent < c.lease_until) {
          c.lease_until = renew_sent + options.lease;
        } else {
          c.lease_lapsed = true;
        }
      }
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

    // Claims whose every piece was dropped by a shutdown, in part or whole: handed back,
    // not deleted (they were not delivered; the next claim takes them).
    if (const auto kept = std::find_if(live.begin(), live.end(),
                                       [](const Claim& c) { return c.settled() && c.keep; });
        kept != live.end()) {
      // The pieces before the first dropped one were settled for good: deleted like any
      // settled claim. From that piece on the rows are handed back, later pieces too, even
      // if delivered: a key's rows then come again in seq order, never an older one alone
      // after a newer one.
      const std::size_t from = kept->first_dropped == 0 || kept->first_dropped == SIZE_MAX
                                   ? 0
                                   : kept->piece_ends[kept->first_dropped - 1];
      if (from > 0) {
        Claim rest{kept->id, {}, 0, {}, true, 0, false, kept->lease_until, kept->lease_lapsed};
        rest.seqs.assign(kept->seqs.begin() + static_cast<std::ptrdiff_t>(from), kept->seqs.end());
        kept->seqs.resize(from);
        kept->piece_ends.clear();
        kept->keep = false;
        kept->first_dropped = SIZE_MAX;
        live.push_back(std::move(rest));  // kept is invalid from here on
        continue;
      }
      if (!exec(detail::release_statement(table, kept->seqs, kept->id))) {
        failed("handing back rows a shutdown dropped");
        continue;
      }
      record_error(std::to_string(kept->seqs.size()) +
                   " rows were dropped by the Emitter's shutdown: they stay in the table");
      live.erase(kept);
      if (live.empty()) next_renew = Clock::time_point::max();
      continue;
    }

    // Settled claims: one DELETE for all of them (those whose earlier DELETE lost its reply
    // in a statement of their own, since they are counted differently; apart again those
    // whose lease lapsed meanwhile).
    {
      std::vector<std::int64_t> seqs;
      std::vector<std::string> ids;
      bool uncertain = false;
      bool ambiguous = false;
      const Clock::time_point delete_sent = Clock::now();
      for (const Claim& c : live) {
        if (!c.settled() || c.keep) continue;
        const bool lapsed = c.delete_uncertain && (c.lease_lapsed || delete_sent >= c.lease_until);
        if (ids.empty()) {
          uncertain = c.delete_uncertain;
          ambiguous = lapsed;
        }
        if (c.delete_uncertain != uncertain || lapsed != ambiguous) continue;
        ids.push_back(c.id);
        seqs.insert(seqs.end(), c.seqs.begin(), c.seqs.end());
      }
      if (!ids.empty()) {
        auto in_group = [&](const Claim& c) {
          return std::find(ids.begin(), ids.end(), c.id) != ids.end();
        };
        bool ok = false;
        if (detail::fault(detail::FaultPoint::deleting, conn.get())) {
          sql_failed = false;
          error = "the statement was lost (fault hook)";
        } else {
          ok = exec(detail::delete_statement(table, seqs, ids));
        }
        if (ok && detail::fault(detail::FaultPoint::delete_replied, conn.get())) {
          ok = false;
          sql_failed = false;
          error = "the reply was lost (fault hook)";
        }
        if (!ok) {
          // Lost with the connection, the DELETE may have committed: the next one counts
          // the rows it no longer finds as deleted, as long as the lease held (nobody else
          // deletes rows under a live claim of ours).
          if (!sql_failed) {
            for (Claim& c : live)
              if (in_group(c)) c.delete_uncertain = true;
          }
          failed("deleting settled rows");
          continue;
        }
        std::int64_t gone = 0;
        std::int64_t present = 0;
        PGresult* r = results.back().get();
        if (PQntuples(r) == 1 && parse_i64(PQgetvalue(r, 0, 0), gone) &&
            parse_i64(PQgetvalue(r, 0, 1), present)) {
          std::int64_t confirmed = gone;
          const std::int64_t missing = static_cast<std::int64_t>(seqs.size()) - present;
          if (uncertain && !ambiguous) confirmed += missing;
          deleted.fetch_add(static_cast<std::uint64_t>(confirmed), std::memory_order_relaxed);
          if (uncertain && ambiguous && missing > 0) {
            // Deleted by our lost DELETE, or by another relay after the lease ran out: not
            // knowable here. Not counted, so that no row counts twice across relays.
            record_error(std::to_string(missing) +
                         " rows of claims whose lease ran out while a DELETE's reply was lost "
                         "are gone (deleted by this relay or, after the lease, by another): not "
                         "counted in deleted");
          }
        }
        std::erase_if(live, in_group);
        if (live.empty()) next_renew = Clock::time_point::max();
        continue;
      }
    }

    if (detail::take_notifications(conn.get()) > 0) want_claim = true;
    if (now >= next_poll) want_claim = true;

    if (!stopping && want_claim && live.size() < kMaxClaimsInFlight && now >= next_publish) {
      const std::string claim_id = EventId::generate().str();
      const Clock::time_point claim_sent = Clock::now();
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
      std::vector<Decoded> decoded;
      decoded.reserve(static_cast<std::size_t>(n));
      std::vector<std::int64_t> bad;  // malformed rows, by seq, and why
      std::vector<std::string> bad_why;
      std::map<std::string, std::int64_t> bad_keys;  // a malformed row's key: its lowest seq
      for (int r = 0; r < n; ++r) {
        std::int64_t seq = 0;
        Event e;
        const std::string why = decode_row(rows, r, seq, e);
        if (why.empty()) {
          decoded.push_back(Decoded{seq, r, std::move(e)});
          continue;
        }
        // A row whose seq cannot be read cannot be set aside either: it stays claimed
        // (the whole claim is handed back below) and is reported at each claim.
        if (!parse_i64(PQgetvalue(rows, r, 0), seq)) {
          bad.clear();
          bad_why.clear();
          bad_keys.clear();
          decoded.clear();
          record_error(std::string("a claimed row has no readable seq: ") + why);
          break;
        }
        bad.push_back(seq);
        bad_why.push_back(why);
        if (PQgetisnull(rows, r, kClaimKey) == 0) {
          const auto [at, added] = bad_keys.emplace(PQgetvalue(rows, r, kClaimKey), seq);
          if (!added) at->second = std::min(at->second, seq);
        }
      }
      // One relay publishes in insertion order (RETURNING promises no order).
      std::sort(decoded.begin(), decoded.end(),
                [](const Decoded& a, const Decoded& b) { return a.seq < b.seq; });
      Claim claim{claim_id, {}, 0, {}, false, SIZE_MAX, false, claim_sent + options.lease, false};
      claim.seqs.reserve(decoded.size());
      std::vector<Event> events;
      events.reserve(decoded.size());
      // Rows of a key with a malformed row of a lower seq in this claim wait behind it, as
      // they would behind one set aside earlier: handed back with the set-aside (the
      // set-aside row then holds their key, so no claim takes them until it is fixed).
      std::vector<std::int64_t> held;
      for (Decoded& d : decoded) {
        if (!bad_keys.empty() && PQgetisnull(rows, d.row, kClaimKey) == 0) {
          const auto blocker = bad_keys.find(PQgetvalue(rows, d.row, kClaimKey));
          if (blocker != bad_keys.end() && blocker->second < d.seq) {
            held.push_back(d.seq);
            continue;
          }
        }
        claim.seqs.push_back(d.seq);
        events.push_back(std::move(d.event));
      }
      decoded.clear();
      if (!bad.empty() &&
          !exec(detail::set_aside_statement(table, bad, claim_id, options.name) +
                (held.empty() ? std::string()
                              : ";\n" + detail::release_statement(table, held, claim_id)))) {
        // Not set aside: the claim is not published; its lease brings it back.
        failed("setting malformed rows aside");
        continue;
      }
      // Counted and reported once set aside: a row is never counted twice.
      for (std::size_t i = 0; i < bad.size(); ++i) {
        report_malformed(bad[i], bad_why[i]);
        record_error("row with seq " + std::to_string(bad[i]) + " is malformed (" + bad_why[i] +
                     "): set aside");
      }
      if (!held.empty()) {
        record_error(std::to_string(held.size()) +
                     " claimed rows wait behind a malformed row of their ordering key: handed "
                     "back, claimed once it is fixed");
      }
      if (events.empty() && bad.empty()) {
        // Rows that cannot even be told apart: hand them all back, look again at the next poll.
        want_claim = false;
        next_poll = Clock::now() + options.poll_interval;
        if (!exec(detail::release_statement(table, {}, claim_id))) failed("releasing a claim");
        continue;
      }
      want_claim = static_cast<std::size_t>(n) == options.batch;  // more may be waiting
      if (!want_claim) next_poll = Clock::now() + options.poll_interval;
      if (events.empty()) continue;  // all set aside

      Status refusal;
      const std::size_t taken = publish_pieces(claim, events, refusal);
      std::vector<std::int64_t> rest(claim.seqs.begin() + static_cast<std::ptrdiff_t>(taken),
                                     claim.seqs.end());
      claim.seqs.resize(taken);
      if (taken > 0) {
        published.fetch_add(taken, std::memory_order_relaxed);
        live.push_back(std::move(claim));
        stop.nothing_live.store(false, std::memory_order_release);
        if (next_renew == Clock::time_point::max()) next_renew = Clock::now() + renew_every;
      }
      if (rest.empty()) continue;
      // What the Emitter did not take is handed back at once (the rows taken stay in this
      // claim). A closed Emitter will not take them sooner than the next poll; an
      // overloaded one may soon. A stop() meanwhile waits for the release (up to its
      // deadline): otherwise the rows would wait for their lease.
      want_claim = false;
      next_poll = Clock::now() + (refusal == Errc::closed
                                      ? options.poll_interval
                                      : std::min(options.poll_interval, kRepublishDelay));
      next_publish = next_poll;
      stop.nothing_live.store(false, std::memory_order_release);
      const bool released = exec(detail::release_statement(table, rest, claim_id));
      record_error("the emitter refused " + std::to_string(rest.size()) +
                   " claimed rows: " + refusal.to_string());
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
    if (!stopping && want_claim && now < next_publish) until = next_publish;
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
    rows += c.seqs.size();
  left_in_flight = rows;
  conn.reset();
  connected.store(false, std::memory_order_relaxed);
  // An attempt under way sees the stop at once (a stop requested by a telemetry handler on
  // this thread woke nobody).
  connector_wake.wake();
  // Detached by ~Relay: nobody else joins the connecting thread. This thread stalls nobody.
  if (orphaned && connector.joinable()) connector.join();
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
    // state alive); rows in flight stay claimed until their lease expires. It joins the
    // connecting thread itself before it ends.
    state_->orphaned = true;
    (void)stop(milliseconds(0));
    if (state_->thread.joinable()) state_->thread.detach();
    return;
  }
  (void)stop(milliseconds(0));
  // The relay thread is joined; a connection attempt may still be under way (stop() does not
  // wait for it): woken, it gives up at once, unless a host name resolution holds it. Joined
  // here, on the owner's thread, never by the State's last owner (maybe an Emitter thread).
  const std::lock_guard lock(state_->lifecycle);
  if (state_->connector.joinable()) {
    state_->connector_wake.wake();
    state_->connector.join();
  }
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
  state_->connector_wake.wake();
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
  s.malformed = state_->malformed.load(std::memory_order_relaxed);
  s.reconnects = state_->reconnects.load(std::memory_order_relaxed);
  s.connected = state_->connected.load(std::memory_order_relaxed);
  s.errors = state_->errors.load(std::memory_order_relaxed);
  const std::lock_guard lock(state_->mutex);
  s.last_error = state_->last_error;
  return s;
}

}  // namespace emissions::postgres
