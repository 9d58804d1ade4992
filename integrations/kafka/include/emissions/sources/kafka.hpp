/// @file
/// emissions/sources/kafka.hpp: a consumer-group member that reads the messages a Kafka
/// adapter wrote and publishes them into an Emitter, committing each partition's offset only
/// up to what every adapter and handler of that Emitter has settled (at least once).
///
/// Link `emissions::kafka` (the same component as the adapter). This is how a service
/// outgrows one machine: request threads commit to Kafka through adapters::Kafka, and handler
/// workers on any number of machines run a KafkaSource in one group.
///
/// @code
///   #include <emissions/sources/kafka.hpp>
///
///   emissions::Config config;
///   config.add_handler(std::make_shared<SendReceipt>());  // the work to spread
///   emissions::Emitter emitter(std::move(config));
///   emissions::sources::KafkaSource source(emitter, {.brokers = "kafka-1:9092",
///                                                    .group_id = "receipts",
///                                                    .topics = {"shop.orders"}});
///   if (emissions::Status s = source.start(); !s.ok()) fail(s);
///   ...
///   (void)source.stop(std::chrono::seconds(10));  // before the emitter goes
/// @endcode
///
/// Each message whose value is an envelope (`emissions::serialize`) becomes the same Event
/// (id, name, payload, emitted_at kept), its metadata kept plus `"kafka": {"topic",
/// "partition", "offset"}`. Up to `max_batch` messages per poll are published as one
/// Emitter::publish. A message that is not an envelope is counted (`malformed`), reported as
/// `[emissions, source, malformed]` {count: 1} {source, topic, partition, offset, reason},
/// and skipped (its offset counts as handled); it never stops the source. An error the
/// consumer reports (a broker down, an unknown topic), and a commit the group coordinator
/// refused (tried again at the next interval), is reported as `[emissions, source, error]`
/// {count: 1} {source, code, reason}; librdkafka keeps trying. A commit refused for some of
/// its partitions is reported once, with the code librdkafka gives it (a refused
/// partition's), and made again whole. Telemetry handlers may run inside stop() (the
/// answers to its last commits): they must not call start() or stop() of the same source.
/// Each change of the partitions it holds is reported, once the change is made, as
/// `[emissions, source, assigned]` or `[emissions, source, revoked]` {count} {source,
/// partitions: [{topic, partition}...]} (on the polling thread). Once stop() returned,
/// nothing is reported any more (also not by a close that goes on after it) and no handler
/// of the user's is called by the source.
///
/// Offsets: a partition's offset is committed every `commit_interval` while running, up to
/// the last message before the first one whose events are not all settled (settled in the
/// Emitter's sense: delivered, failed for good, filtered or dropped, by every adapter and
/// handler). When the group takes partitions away (a rebalance), the source waits for their
/// events (at most `commit_interval` × 10, bounded) and commits them before it lets them
/// go. Where that commit is refused (the group already moved on: a stale generation makes
/// librdkafka drop the assignment as lost; or the coordinator refuses commits while the
/// group rebalances, as librdkafka's mock cluster always does then), a partition that comes
/// back to this source resumes after what it handled, or at the group's commit if that is
/// further, and that offset is committed. stop() stops polling, waits for what is in
/// flight, commits what settled and leaves the group.
///
/// Threads: one polling thread per source, between start() and stop(); librdkafka's own.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "emissions/emitter.hpp"
#include "emissions/status.hpp"

namespace emissions::detail {
struct KafkaAccess;
}  // namespace emissions::detail

namespace emissions::sources {

/// How a KafkaSource joins its group. A plain struct for designated initializers; validated
/// by the KafkaSource constructor.
///
/// @code
///   KafkaSourceOptions{.brokers = "localhost:9092", .group_id = "workers",
///                      .topics = {"orders"}, .properties = {{"session.timeout.ms", "6000"}}}
/// @endcode
struct KafkaSourceOptions {
  /// The bootstrap brokers, `host:port[,host:port...]`. Required, unless `properties` sets
  /// `bootstrap.servers` (not both).
  std::string brokers = {};
  /// The consumer group (librdkafka's `group.id`). Required.
  std::string group_id = {};
  /// The topics to subscribe to. At least one, none empty.
  std::vector<std::string> topics = {};
  /// librdkafka consumer properties, applied after the source's defaults
  /// (`auto.offset.reset=earliest`: a new group starts from the beginning), which they
  /// override. `enable.auto.commit` and `enable.auto.offset.store` are the source's own
  /// (false): setting them is a ConfigError, as is any property librdkafka rejects.
  std::map<std::string, std::string> properties = {};
  /// The most messages published as one Emitter::publish (1..1,000,000).
  std::size_t max_batch = 500;
  /// How often settled offsets are committed while running (1 ms..24 h).
  std::chrono::milliseconds commit_interval{1'000};
  /// The source's name in telemetry. Must not be empty.
  std::string name = "kafka_source";
};

/// Counters of a KafkaSource (relaxed reads).
///
/// @code
///   auto s = source.stats();
///   if (s.malformed != 0) alert("foreign messages on the topic");
/// @endcode
struct KafkaSourceStats {
  std::uint64_t consumed = 0;   ///< messages read from Kafka
  std::uint64_t published = 0;  ///< events handed to Emitter::publish
  std::uint64_t malformed = 0;  ///< messages that were not an envelope (skipped)
  std::uint64_t committed = 0;  ///< offset commits that succeeded (one per partition)
};

/// A consumer-group member feeding an Emitter; see the file comment.
///
/// @code
///   emissions::sources::KafkaSource source(emitter, options);
///   (void)source.start();
/// @endcode
///
/// Thread-safety: start(), stop() and stats() may be called from any thread; start and
/// stop are serialized. The Emitter must outlive the source (stop() it first).
class KafkaSource {
 public:
  /// Checks `options` and creates the consumer (no broker is contacted yet). Throws
  /// ConfigError naming a bad option or a property librdkafka rejects.
  KafkaSource(Emitter& emitter, KafkaSourceOptions options);
  /// stop() with no time to wait, if it is running: it does not wait for events in flight
  /// nor for the group to be left (the group reassigns its partitions after
  /// `session.timeout.ms`); call stop() with a timeout first to leave cleanly. Then waits
  /// for the close stop() could not finish (the coordinator unreachable: librdkafka holds
  /// the close until its commits time out, about `session.timeout.ms`), at most until
  /// `session.timeout.ms` + `socket.timeout.ms` + 1 s after stop() began (+ about 100 ms);
  /// a close still under way then is abandoned: the consumer is left undestroyed (its
  /// memory and librdkafka's threads stay until the process ends), since librdkafka 2.0.2
  /// cannot destroy it before that close ends.
  ~KafkaSource();
  KafkaSource(const KafkaSource&) = delete;
  KafkaSource& operator=(const KafkaSource&) = delete;

  /// Subscribes and starts the polling thread. invalid_argument when it is running or was
  /// stopped (a source runs once); unavailable when librdkafka refuses the subscription.
  Status start();
  /// Stops polling, waits up to `timeout` for the events in flight to be settled, commits
  /// the offsets of what settled, leaves the group and joins the thread, all by `timeout`
  /// (plus up to about 100 ms for a librdkafka call under way to return; up to 5 s when
  /// the polling thread is asking the group for its committed offsets, which it does only
  /// for a partition given back after a refused commit). Messages librdkafka fetched that
  /// the source had not polled yet are not handled: the group reads them again. timeout when
  /// events were left unsettled (their messages will be read again by the group), or when
  /// the group could not be left in time (e.g. its coordinator is unreachable: the close
  /// goes on on a thread of the source's own, quietly, which the destructor joins, bounded
  /// as said there); ok otherwise, also when it was not running. No telemetry is reported
  /// once it returned.
  Status stop(std::chrono::milliseconds timeout);
  /// A snapshot of the counters.
  [[nodiscard]] KafkaSourceStats stats() const;

 private:
  friend struct detail::KafkaAccess;
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace emissions::sources
