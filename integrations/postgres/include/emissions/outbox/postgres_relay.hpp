/// @file
/// emissions/outbox/postgres_relay.hpp: the relay that publishes committed outbox rows into
/// an Emitter and deletes each row once every adapter and handler settled it.
///
/// Include it through emissions/outbox/postgres.hpp and link `emissions::postgres`.
///
/// @code
///   emissions::Emitter emitter(std::move(config));
///   emissions::postgres::Relay relay(emitter, {.conninfo = "host=/run/postgresql dbname=shop"});
///   if (emissions::Status s = relay.start(); !s.ok()) fail(s);
///   ...
///   (void)relay.stop(std::chrono::seconds(10));  // before the emitter goes
/// @endcode
///
/// Claims. A relay claims up to `batch` committed rows at a time with a lease: it writes its
/// name, a fresh claim id and `claimed_until = now() + lease` into them, in a transaction
/// that first takes an advisory lock of the table, so that claims of any number of relays
/// (processes, machines) are serialized and never hand out a row another live lease holds.
/// The relay renews the leases of its claims every lease / 3 while they are in flight; a
/// relay that dies (or stays disconnected for `lease`) leaves its rows to be claimed again
/// once their lease expired. Each claim is published with Emitter::publish (ids and times
/// kept) in `seq` order, in smaller pieces once the Emitter refused one as overloaded (a
/// `batch` larger than an adapter's buffer_size); once every adapter and handler settled it,
/// whatever the outcome, its rows are deleted, except when an adapter dropped events while
/// the Emitter was shutting down: those rows are handed back for the next claim (from the
/// first piece with such a drop on). A row that cannot be decoded into an Event is set aside
/// (it stays in the table, claimed until 'infinity' by "malformed (name)") and the rest of
/// its claim is published, except later rows of its ordering key, which wait behind it. A claim
/// never takes a row whose ordering key has a row under another live lease, so rows with the same
/// key are never in flight in two claims at once: per-key order holds with several relays too.
///
/// Wake-ups: LISTEN on the channel stage() notifies, a poll every `poll_interval` as a
/// fallback, and at once when a claim was full (more rows are waiting). A lost connection is
/// reopened with a backoff (100 ms doubling to 5 s) and the relay listens again.
///
/// Telemetry (on the relay thread): `[emissions, outbox, error]` {count: 1} {relay, reason}
/// for each failed statement or connection attempt (the reason never holds the conninfo),
/// `[emissions, outbox, connected]` and `[emissions, outbox, disconnected]` {count: 1}
/// {relay}, `[emissions, outbox, malformed]` {count: 1} {relay, seq, reason} per row set
/// aside.
///
/// Threads: one relay thread between start() and stop(), which owns the connection, and a
/// connecting thread per connection attempt (libpq's host name resolution blocks), which
/// stop() does not wait for and the destructor joins.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "emissions/emitter.hpp"
#include "emissions/outbox/postgres_outbox.hpp"
#include "emissions/status.hpp"

namespace emissions::postgres {

/// How a Relay connects and claims. A plain struct for designated initializers; validated
/// by the Relay constructor (ConfigError naming the field).
///
/// @code
///   emissions::postgres::RelayOptions{.conninfo = "host=db dbname=shop user=relay",
///                                     .batch = 200, .lease = std::chrono::seconds(10)}
/// @endcode
struct RelayOptions {
  /// libpq connection string or URI (required). Never shown in errors or stats: its
  /// password stays out of them.
  std::string conninfo = {};
  /// The table and channel (the same as stage()'s). `ordering_key` is not used here.
  OutboxOptions outbox = {};
  /// Rows per claim, in [1, 100 000].
  std::size_t batch = 500;
  /// How often the relay looks for rows without a notification, in [1 ms, 1 h].
  std::chrono::milliseconds poll_interval{1'000};
  /// How long a claim holds its rows without a renewal, in [100 ms, 1 h]: how long a dead
  /// relay's rows wait before another relay takes them.
  std::chrono::milliseconds lease{30'000};
  /// This instance in claims (`claimed_by`) and in stats; need not be unique. Not empty.
  std::string name = "postgres_outbox";
};

/// Counters of a Relay (relaxed reads).
struct RelayStats {
  std::uint64_t claimed = 0;    ///< rows claimed (a row claimed again counts again)
  std::uint64_t published = 0;  ///< rows handed to Emitter::publish successfully
  /// Rows of this relay's settled claims confirmed gone from the table: counted from the
  /// server's reply to the DELETE; after a DELETE whose reply was lost with the connection,
  /// the rows the next DELETE no longer finds (that DELETE had committed), unless the
  /// claim's lease ran out meanwhile (another relay may have deleted them: not counted).
  std::uint64_t deleted = 0;
  /// Claimed rows that could not be decoded into an Event (set aside, see the file comment)
  std::uint64_t malformed = 0;
  std::uint64_t reconnects = 0;  ///< connections opened after the first one
  bool connected = false;        ///< whether the relay holds a working connection now
  std::uint64_t errors = 0;      ///< failed statements and connection attempts
  std::string last_error;        ///< the latest of them, for people (no secrets); empty: none
};

/// Publishes committed outbox rows into an Emitter; see the file comment.
/// Thread-safety: start(), stop() and stats() may be called from any thread.
class Relay {
 public:
  /// Validates `options` (ConfigError naming the field). Starts nothing; the Emitter must
  /// outlive the relay (or its stop()).
  Relay(Emitter& emitter, RelayOptions options);
  /// stop(0): rows still in flight stay claimed until their lease expires. Then joins the
  /// connecting thread: an attempt waiting for the server gives up at once, one still inside
  /// libpq's host name resolution when it returns (up to the resolver's own timeout).
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;
  Relay(Relay&&) = delete;
  Relay& operator=(Relay&&) = delete;

  /// Starts the relay thread and returns at once; it connects in the background (see
  /// stats().connected). already_started when running; closed after stop().
  Status start();
  /// Stops claiming, waits until the rows in flight are settled and deleted, closes the
  /// connection and joins the thread, returning by `timeout` (plus the time an
  /// Emitter::publish already under way may block: its block_timeout; never the time of a
  /// host name resolution, see the destructor). timeout when rows
  /// were still in flight: they stay in the table for the next claim (after their lease).
  /// Idempotent: later calls return ok. Called on the relay thread (a telemetry handler),
  /// it only requests the stop and returns ok at once: the thread ends after the handler
  /// returns, and a later stop() from another thread joins it. Destroying the relay in such
  /// a handler does the same with a zero timeout.
  Status stop(std::chrono::milliseconds timeout);
  /// A snapshot of the counters.
  [[nodiscard]] RelayStats stats() const;

  struct State;  ///< internal

 private:
  std::shared_ptr<State> state_;
};

}  // namespace emissions::postgres
