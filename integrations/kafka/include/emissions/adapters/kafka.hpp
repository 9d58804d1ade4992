/// @file
/// emissions/adapters/kafka.hpp: an adapter that produces each event to Kafka, through
/// librdkafka, and settles it from its delivery report.
///
/// Link `emissions::kafka` (from an installed tree:
/// `find_package(emissions CONFIG REQUIRED COMPONENTS kafka)`; built when librdkafka is
/// found, see EMISSIONS_WITH_KAFKA). librdkafka's headers are not needed to include this one.
///
/// @code
///   #include <emissions/adapters/kafka.hpp>
///
///   emissions::TopicRouter router{{"orders", {"order_created", "order_paid"}}};
///   auto kafka = std::make_shared<emissions::adapters::Kafka>(emissions::adapters::KafkaOptions{
///       .brokers = "kafka-1:9092,kafka-2:9092",
///       .topic_for = [&router](const emissions::Event& e) {
///         auto topic = router.topic_for_event(e.name);
///         return topic ? "shop." + std::string(*topic) : std::string();  // "": fails the event
///       },
///       .key_for = [](const emissions::Event& e) { return e.payload.at("order_id").dump(); }});
///   config.add_adapter(kafka, {.dead_letter = dead_letters, .deliver_on_commit = true});
/// @endcode
///
/// `deliver_on_commit` (AdapterOptions) is how this adapter keeps up with a hand-written
/// produce loop: the committing thread produces what it commits while the adapter's consumer
/// is idle, instead of handing each batch to the consumer thread (which, on a machine with
/// few cores, costs more than producing). deliver() and `topic_for`/`key_for` then run on
/// the committing thread, and a full librdkafka queue (below) makes that commit wait.
///
/// Each event becomes one message: the value is `emissions::serialize(event)` (the JSON
/// envelope JsonLines writes), the key is `key_for(event)` (none, or empty: a null key), and
/// the headers are `event-id`, `event-name`, `emitted-at` (the envelope's RFC 3339 text) and
/// `content-type: application/json`. Messages with the same key go to the same partition,
/// in the order the adapter was handed them.
///
/// Settlement, per event, from its delivery report:
/// - delivered: acknowledged by the broker (with the defaults: by all in-sync replicas);
/// - `unavailable` (retriable: the pipeline tries again, per the adapter's RetryPolicy):
///   timeouts, transport errors, no leader or a leader change, not enough replicas, a
///   message that timed out in librdkafka's queue (`message.timeout.ms`), a fatal producer
///   error (below), an unknown topic or partition, and any error not listed as permanent;
/// - `invalid_argument` (permanent: failed for good at once, to the dead letter if there is
///   one): the message is too large, the record or topic name is invalid, authorization or
///   authentication failed, the broker does not support the request, or the event cannot
///   be serialized; also when `topic_for` returns "" (then nothing is produced);
/// - `internal` (permanent): `topic_for` or `key_for` threw.
/// Every message says what happened, with librdkafka's error name, e.g.
/// `"kafka: Broker: Message size too large (MSG_SIZE_TOO_LARGE), topic orders"`.
///
/// Backpressure: when librdkafka's queue is full (`queue.buffering.max.messages` /
/// `.kbytes`), deliver() waits for delivery reports to make room and produces again,
/// never dropping. It waits at most the producer's `message.timeout.ms` in all (by then
/// every queued message has been reported); what is still not produced then fails with
/// `overloaded` (retriable), as it does at once when terminate() has begun. Once
/// terminate() has begun, deliver() produces nothing more, also in the middle of a batch:
/// the events it had not produced fail with `closed` (`overloaded` if they were waiting
/// for room).
///
/// A fatal error of the idempotent producer (librdkafka stops the instance: sequence
/// numbers can no longer be kept) fails the events in flight with `unavailable`, so the
/// pipeline retries them, and the adapter creates a new producer with the same options.
/// Such retries, and any retry of an event whose delivery was uncertain (a timeout), may
/// produce it twice: consumers deduplicate on `event-id`. Without faults that exhaust
/// librdkafka's own retries, idempotence keeps each message exactly once and in order.
///
/// Telemetry (besides the pipeline's `[emissions, adapter, ...]`), metadata always with
/// `adapter` (the name):
/// - `[emissions, kafka, error]` {count: 1} {adapter, code, reason, fatal}: an error
///   librdkafka reported for the whole client (a broker down, all brokers down, a fatal
///   error), on the thread that serves the reports (the adapter's poll thread, or a
///   consumer thread in deliver() while batches keep coming);
/// - `[emissions, kafka, restarted]` {count: 1} {adapter, reason}: a new producer replaced
///   one stopped by a fatal error;
/// - `[emissions, kafka, terminated]` {left, duration} {adapter}: at terminate(), how many
///   messages had no delivery report by its deadline (they are failed and counted dropped).
///
/// Threads: one poll thread per adapter, started by the constructor, serving delivery
/// reports and client errors, and joined by terminate() (or the destructor). After
/// producing each batch, deliver() also serves the reports that are ready, on the
/// pipeline's consumer thread (librdkafka frees each message where its report is served:
/// on the thread that allocated it, that is cheaper). While deliver() calls keep coming,
/// the poll thread leaves the reports to them; it serves them once no deliver() began or
/// ended for about a millisecond (the calls stopped, or one is stuck in a settlement
/// callback or waiting for room in a full queue), and from terminate() on. So events are
/// settled on either thread; the poll thread, once it has served some, lets the next ones
/// gather for 1 ms. The successful reports one poll serves are counted and settled
/// together once librdkafka's poll returns, failed ones as they are served (each event is
/// still settled once, after it stopped counting in outstanding()). librdkafka runs its own
/// threads, ended by terminate(). User code
/// (`topic_for`, `key_for`, the pipeline's settlement and telemetry) never runs while the
/// adapter holds a lock.
///
/// Callbacks on the poll thread (`on_settled` of a commit, telemetry handlers) may shut the
/// Emitter down or drop the last reference to the adapter. terminate() called there
/// cannot wait for the delivery reports that thread serves, nor join it: it stops taking
/// events and returns at once (`timeout` naming the messages without a report, if any);
/// the thread fails those messages and destroys the producer once the callback returns,
/// and is joined by a later terminate() or the destructor on another thread. When the last
/// reference goes on the poll thread, nothing is left to join it: it ends by itself right
/// after the callback (the one thread the adapter does not join). terminate() called in a
/// callback on a consumer thread (while deliver() serves reports) waits as on any other
/// thread, but the reports that thread had begun serving are settled only once the callback
/// returns: it may wait until its deadline (or `flush_timeout`) and count them in its
/// `timeout`. deliver() and terminate() keep the adapter's state alive until they return,
/// so a callback inside them may also drop the last reference.
///
/// Settlement callbacks should not block. One that blocks inside deliver() holds that
/// consumer thread: the batch it produced is in librdkafka's hands, but the next batches
/// wait in the pipeline's queue until it returns (and so does the rest of the batch under
/// way, when it blocked while deliver() waited for room in a full queue), while the poll
/// thread goes on settling. One that blocks on the poll thread stops only that thread:
/// deliver() goes on settling what is ready after each batch, until the pipeline's window
/// of unsettled batches is full. Serving reports on the poll thread alone would keep user
/// code out of deliver(), but a callback that blocks would then stop every settlement at
/// once, and librdkafka would free each message on a thread other than the one that
/// allocated it (docs/BENCHMARKS.md, Kafka).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "emissions/deadline.hpp"
#include "emissions/delivery.hpp"
#include "emissions/event.hpp"
#include "emissions/status.hpp"

namespace emissions::detail {
struct KafkaAccess;
}  // namespace emissions::detail

namespace emissions::adapters {

/// How a Kafka adapter connects and names its messages. A plain struct for designated
/// initializers (every field has a default, so a partial list is warning-free); validated by
/// the Kafka constructor.
///
/// @code
///   KafkaOptions{.brokers = "localhost:9092", .topic = "events",
///                .properties = {{"linger.ms", "20"}, {"compression.type", "zstd"}}}
/// @endcode
struct KafkaOptions {
  /// The bootstrap brokers, `host:port[,host:port...]` (librdkafka's `bootstrap.servers`).
  /// Required, unless `properties` sets `bootstrap.servers` (not both).
  std::string brokers = {};
  /// The topic of every event, when `topic_for` is not set.
  std::string topic = {};
  /// The topic of each event; wins over `topic`. One of them is required. Returning ""
  /// fails that event for good (`invalid_argument`). Called where deliver() runs (the
  /// pipeline's consumer thread, or with deliver_on_commit a committing thread), once per
  /// event per attempt; must be thread-safe when the adapter's concurrency is > 1 or with
  /// deliver_on_commit. An exception fails the event with `internal`.
  std::function<std::string(const Event&)> topic_for = {};
  /// The message key of each event (same key: same partition, in order). Unset, or an
  /// empty result: a null key (librdkafka spreads such messages over the partitions).
  /// Called like `topic_for`.
  std::function<std::string(const Event&)> key_for = {};
  /// librdkafka configuration properties (CONFIGURATION.md of librdkafka), applied after
  /// the adapter's defaults, which they override: `enable.idempotence=true`, `acks=all`,
  /// `linger.ms=5`, `compression.type=lz4`. An unknown, invalid or conflicting property
  /// is a ConfigError naming it.
  std::map<std::string, std::string> properties = {};
  /// The adapter's name in telemetry and statistics. Must not be empty.
  std::string name = "kafka";
  /// The longest terminate() waits for delivery reports (0..24 h); it also stops at its own
  /// deadline, whichever comes first.
  std::chrono::milliseconds flush_timeout{10'000};
};

/// Produces each event to Kafka and settles it from its delivery report. See the file
/// comment for the message format, the error mapping and the threads.
///
/// @code
///   auto kafka = std::make_shared<emissions::adapters::Kafka>(
///       emissions::adapters::KafkaOptions{.brokers = "localhost:9092", .topic = "events"});
///   config.add_adapter(kafka);
/// @endcode
///
/// Thread-safety: every member may be called from any thread; deliver() may run on several
/// consumer threads at once (AdapterOptions::concurrency > 1), but messages are ordered
/// per partition only as one thread produces them. With deliver_on_commit it runs on the
/// consumer thread or on a committing thread, one at a time: the order is kept.
class Kafka final : public AsyncAdapter {
 public:
  /// Validates `options` and creates the producer (librdkafka connects in the background)
  /// and the poll thread. Throws ConfigError for an invalid option, or for a property
  /// librdkafka rejects, naming the property as written in `options.properties` and
  /// librdkafka's message, e.g. `KafkaOptions.properties["acks"] = "1": librdkafka:
  /// ...`.
  explicit Kafka(KafkaOptions options);
  /// terminate() with a deadline already passed, if it has not been called: what is not
  /// reported yet is failed at once.
  ~Kafka() override;
  Kafka(const Kafka&) = delete;
  Kafka& operator=(const Kafka&) = delete;

  /// Produces each event of the batch; returns once they are all in librdkafka's queue
  /// (or failed). Blocks only while that queue is full (see the file comment). Events are
  /// settled later, from their delivery reports, on the poll thread or (the reports ready
  /// after a batch) inside a later deliver(). Never throws.
  void deliver(Delivery delivery) override;

  /// Returns ok at once: librdkafka sends what it holds within `linger.ms` by itself, and
  /// the pipeline waits for the delivery reports.
  Status flush(Deadline deadline) override;

  /// Stops taking events (later deliveries fail with `closed`), waits for the delivery
  /// reports of what was produced until `deadline` or `flush_timeout`, whichever is first,
  /// then fails what is left with `unavailable` (the pipeline counts it dropped at
  /// shutdown), joins the poll thread and destroys the producer. Returns ok when nothing
  /// was left, otherwise `timeout` naming how many messages were left. Idempotent: a later
  /// or concurrent call waits, by its own `deadline`, for the first one to end, then
  /// returns ok (and joins the poll thread if the first call could not), or `timeout` if
  /// the first one was still under way at its deadline. On the poll thread itself (from a
  /// callback): returns at once, see the file comment.
  Status terminate(Deadline deadline) override;

  /// `options.name`.
  [[nodiscard]] std::string_view name() const override;

  /// 1024 batches in flight, cut by the pipeline to a queue's worth (buffer_size /
  /// max_demand: 200 batches, 10,000 events, with the defaults), unless
  /// AdapterOptions::max_in_flight says otherwise: librdkafka batches by itself and needs
  /// many messages queued to fill its requests. With the pipeline's default window of 16,
  /// one `linger.ms` wait per 400 events would bound throughput (docs/BENCHMARKS.md).
  [[nodiscard]] std::size_t preferred_max_in_flight() const noexcept override;

  /// Messages produced and not yet reported (in librdkafka's queue or in flight). Thread-safe;
  /// one relaxed load.
  [[nodiscard]] std::size_t outstanding() const noexcept;

 private:
  friend struct detail::KafkaAccess;
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace emissions::adapters
