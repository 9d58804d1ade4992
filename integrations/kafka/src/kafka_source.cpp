// The Kafka consumer source: one polling thread reads batches, decodes envelopes, publishes
// them into the Emitter and commits what settled; the rebalance callback (on the same
// thread) hands revoked partitions back once their events are settled. Options and the
// consumer's configuration are in source_config.*, the per-partition offsets in
// offset_tracker.*.
#include "emissions/sources/kafka.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/parking.hpp"
#include "common/wait.hpp"
#include "emissions/telemetry.hpp"
#include "envelope_reader.hpp"
#include "handles.hpp"
#include "kafka_access.hpp"
#include "offset_tracker.hpp"
#include "source_config.hpp"

namespace emissions::sources {

using detail::kafka::ClientHandle;
using detail::kafka::ErrorHandle;
using detail::kafka::MessageHandle;
using detail::kafka::OffsetTracker;
using detail::kafka::QueueHandle;

namespace {

// The polling thread's longest wait in librdkafka, and so how soon it sees stop().
constexpr std::chrono::milliseconds kPollInterval{100};
// How long a publish the Emitter refused (overloaded) waits before it is tried again.
constexpr std::chrono::milliseconds kPublishRetry{100};
// A revoked partition's events are waited for at most this many commit intervals.
constexpr int kRevokeIntervals = 10;
// How long an assignment waits for the group's committed offsets of partitions this source
// held before (to resume after what it handled); without them it resumes where it was.
constexpr std::chrono::milliseconds kCommittedTimeout{5'000};
// How long a commit made while running waits for the coordinator's answer before the
// polling thread goes on (the same offsets are committed again at the next interval).
constexpr std::chrono::milliseconds kCommitWait{10'000};
// A close left to the source's own thread by stop() goes on at most session.timeout.ms +
// socket.timeout.ms + this after stop() began (see close_limit()).
constexpr std::chrono::milliseconds kCloseMargin{1'000};

// An integer property of `client`'s configuration; `fallback` when it cannot be read.
std::chrono::milliseconds property_ms(rd_kafka_t* client, const char* name,
                                      std::chrono::milliseconds fallback) noexcept {
  std::array<char, 64> text{};
  std::size_t size = text.size();
  if (rd_kafka_conf_get(rd_kafka_conf(client), name, text.data(), &size) != RD_KAFKA_CONF_OK) {
    return fallback;
  }
  long long ms = 0;
  const char* end = text.data() + std::strlen(text.data());
  if (std::from_chars(text.data(), end, ms).ec != std::errc() || ms < 0) return fallback;
  return std::chrono::milliseconds(ms);
}

// How long librdkafka 2.0.2 may take to close a consumer whose coordinator is gone: its
// commits wait for a coordinator until session.timeout.ms after the close began, and a
// request already sent fails after socket.timeout.ms at most.
std::chrono::milliseconds close_limit(rd_kafka_t* client) noexcept {
  return property_ms(client, "session.timeout.ms", std::chrono::milliseconds(45'000)) +
         property_ms(client, "socket.timeout.ms", std::chrono::milliseconds(60'000)) + kCloseMargin;
}

// How long one wait on a librdkafka queue may block: what is left of `deadline`, at most
// kPollInterval (so the loop around it looks at its condition again); nullopt once it passed.
std::optional<int> poll_slice_ms(Deadline deadline) noexcept {
  const auto left = detail::time_left(deadline);
  if (left.count() == 0) return std::nullopt;
  const auto slice =
      left.count() < 0 ? kPollInterval : std::min<std::chrono::nanoseconds>(left, kPollInterval);
  return static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(slice).count());
}

using PartitionKey = std::pair<std::string, std::int32_t>;  // topic, partition

// A partition while it is assigned. Each assignment is a new generation, so the settlement
// of events read under an earlier one (revoked before they settled, then assigned again)
// never counts for messages read again under this one.
struct Partition {
  std::uint64_t generation = 0;
  OffsetTracker offsets;
};

// The messages of one polled batch that were tracked, for settling them together: each
// message names its partition by an index into `partitions` (the batch's few partitions,
// each with the generation it was read under).
struct Reads {
  struct Read {
    std::uint32_t partition;
    std::int64_t offset;
  };
  std::vector<std::pair<PartitionKey, std::uint64_t>> partitions;  // key, generation
  std::vector<Read> messages;
};

// Owns an rd_kafka_topic_partition_list_t.
struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* list) const noexcept {
    rd_kafka_topic_partition_list_destroy(list);
  }
};
using PartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter>;

// Owns a consumer destroyed without leaving its group (RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE).
struct UnclosedClientDeleter {
  void operator()(rd_kafka_t* client) const noexcept {
    rd_kafka_destroy_flags(client, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  }
};
using UnclosedClient = std::unique_ptr<rd_kafka_t, UnclosedClientDeleter>;

}  // namespace

struct KafkaSource::State {
  State(Emitter& target, KafkaSourceOptions opts) : emitter(target), options(std::move(opts)) {}

  void run() noexcept;
  // Decodes and publishes one polled batch; returns once the Emitter took it (or stop).
  void handle(std::vector<MessageHandle>& batch);
  // Starts tracking the offsets of `batch`'s messages (one lock for the batch). Returns, per
  // message, its index in reads.partitions, or kUntracked for a message not to be handled
  // (an error, or its partition not assigned to this source now).
  std::vector<std::uint32_t> track_batch(const std::vector<MessageHandle>& batch, Reads& reads);
  static constexpr std::uint32_t kUntracked = std::numeric_limits<std::uint32_t>::max();
  // Publishes `events`, decoded from `messages` (indices into batch), retrying while the
  // Emitter is overloaded (decoding them again: a refused publish consumed them); `reads`
  // are settled once the Emitter settled the events.
  void publish(std::vector<MessageHandle>& batch, const std::vector<std::size_t>& messages,
               std::vector<Event> events, std::shared_ptr<const Reads> reads);
  std::optional<Event> decode(const rd_kafka_message_t& message, std::string& error) const;
  // The messages of `reads` are handled (under one lock; one notification).
  void settle(const Reads& reads);
  // Commits what is committable, for every partition or those in `only`, and waits for the
  // coordinator's answer until `deadline` (and, once stop() began, its deadline). Returns
  // whether the answer came (or there was nothing to commit).
  bool commit(Deadline deadline, const rd_kafka_topic_partition_list_t* only = nullptr) noexcept;
  // One commit() waiting for its answer (the opaque of rd_kafka_commit_queue). The answer
  // is served only by polling the commit's own queue, inside commit(): once commit() gave
  // up and destroyed that queue, the answer is dropped unserved, so this never dangles.
  struct CommitCall {
    State* state = nullptr;
    bool answered = false;
  };
  // The coordinator's answer to a commit(): records what was committed.
  void committed_result(rd_kafka_resp_err_t error,
                        const rd_kafka_topic_partition_list_t* offsets) noexcept;
  // Leaves the group (serving the revoke callback on this thread) until `deadline`.
  // Returns whether the consumer is closed.
  bool close(Deadline deadline) noexcept;
  // `own`, or stop()'s deadline if that is earlier and stop() began.
  [[nodiscard]] Deadline bounded(Deadline own) const noexcept {
    return stopping.load(std::memory_order_acquire) ? std::min(own, stop_deadline) : own;
  }
  // Waits (bounded) for the events of `partitions`, commits them and forgets them.
  void release(const rd_kafka_topic_partition_list_t* partitions) noexcept;
  // Starts tracking the newly assigned `partitions`; those this source held before get
  // their start offset set in the list (see resume_points).
  void track(rd_kafka_t* consumer, rd_kafka_topic_partition_list_t* partitions) noexcept;
  [[nodiscard]] bool idle(const rd_kafka_topic_partition_list_t* only) const;
  [[nodiscard]] std::size_t unsettled() const;
  // [emissions, source, assigned|revoked] for `changed`.
  void report_partitions(const char* what,
                         const rd_kafka_topic_partition_list_t* changed) const noexcept;
  static void on_rebalance(rd_kafka_t* consumer, rd_kafka_resp_err_t error,
                           rd_kafka_topic_partition_list_t* partitions, void* opaque) noexcept;

  Emitter& emitter;
  const KafkaSourceOptions options;
  ClientHandle consumer;  // destroyed by stop()
  std::weak_ptr<State> self;

  std::mutex lifecycle_mutex;  // serializes start() and stop()
  enum class Phase { created, running, stopped } phase = Phase::created;  // lifecycle_mutex
  std::thread thread;
  // Destroys a consumer that could not leave its group by stop()'s deadline (lifecycle_mutex;
  // joined by the destructor).
  std::thread closer;
  // The queue a close started on (see close()); destroyed before the consumer.
  QueueHandle close_queue;
  // When a close left to `closer` (or to the destructor) is given up (lifecycle_mutex).
  Deadline close_ceiling = Deadline::max();
  // Set by stop() before it returns (and before `closer` starts): from then on nothing
  // reaches the user (no telemetry), also from the close going on on `closer`.
  std::atomic<bool> quiet{false};
  [[nodiscard]] bool reporting() const noexcept {
    return !quiet.load(std::memory_order_acquire) && telemetry::enabled();
  }
  // Serves a close stop() could not finish until it ends or close_ceiling passed, then
  // destroys the consumer; past the ceiling the consumer is abandoned (see the .cpp).
  void finish_close() noexcept;
  std::atomic<bool> stopping{false};
  Deadline stop_deadline = Deadline::max();  // written before `stopping`

  mutable std::mutex offsets_mutex;
  std::map<PartitionKey, Partition> partitions;  // guarded by offsets_mutex
  std::uint64_t generations = 0;                 // guarded by offsets_mutex
  // Where each partition this source let go of can resume without handling anything twice
  // (one past its settled prefix), until it is assigned again. Commits are refused while
  // the group rebalances, and a consumer whose generation went stale loses its partitions
  // and reads them again from the last commit: when the same partition comes back, reading
  // resumes here instead (or at the group's commit, if that is further). Guarded by
  // offsets_mutex.
  std::map<PartitionKey, std::int64_t> resume_points;
  detail::WaitChannel settled;  // notified after each settlement

  // The polling thread's, per batch: the partitions revoked while the batch was read (the
  // rebalance callback runs inside the polls that fill it), and for each message how many
  // revocations had happened when it was read. A message whose partition was revoked after
  // it was read belongs to the old assignment: it is dropped, and whoever holds the
  // partition now reads it from the group's commit (tracking it under the new assignment
  // could commit past it, or handle it twice).
  std::vector<PartitionKey> revoked_in_batch;
  std::vector<std::size_t> revocations_before;

  std::atomic<std::uint64_t> consumed{0};
  std::atomic<std::uint64_t> published{0};
  std::atomic<std::uint64_t> malformed{0};
  std::atomic<std::uint64_t> committed{0};
};

// --- polling ------------------------------------------------------------------------------

void KafkaSource::State::run() noexcept {
  auto last_commit = std::chrono::steady_clock::now();
  std::vector<MessageHandle> batch;
  while (!stopping.load(std::memory_order_acquire)) {
    batch.clear();
    revoked_in_batch.clear();
    revocations_before.clear();
    try {
      MessageHandle first(
          rd_kafka_consumer_poll(consumer.get(), static_cast<int>(kPollInterval.count())));
      if (first) {
        revocations_before.push_back(revoked_in_batch.size());
        batch.push_back(std::move(first));
        while (batch.size() < options.max_batch) {
          MessageHandle next(rd_kafka_consumer_poll(consumer.get(), 0));
          if (!next) break;
          revocations_before.push_back(revoked_in_batch.size());
          batch.push_back(std::move(next));
        }
        handle(batch);
      }
    } catch (...) {
      // Out of memory: the messages not published stay unsettled and are read again by
      // the group after a restart; keep polling.
    }
    if (std::chrono::steady_clock::now() - last_commit >= options.commit_interval) {
      (void)commit(deadline_after(kCommitWait));
      last_commit = std::chrono::steady_clock::now();
    }
  }
}

std::vector<std::uint32_t> KafkaSource::State::track_batch(const std::vector<MessageHandle>& batch,
                                                           Reads& reads) {
  std::vector<std::uint32_t> slot_of(batch.size(), kUntracked);
  // The last message's partition: a batch holds runs of messages of one partition.
  const rd_kafka_topic_t* last_topic = nullptr;
  std::int32_t last_partition = -1;
  std::uint32_t last_slot = kUntracked;
  std::vector<OffsetTracker*> trackers;  // per reads.partitions
  std::size_t tracked = 0;
  std::lock_guard lock(offsets_mutex);
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const rd_kafka_message_t& message = *batch[i];
    if (message.err != RD_KAFKA_RESP_ERR_NO_ERROR) continue;  // an error or event
    if (message.rkt != last_topic || message.partition != last_partition) {
      last_topic = message.rkt;
      last_partition = message.partition;
      PartitionKey key{rd_kafka_topic_name(message.rkt), message.partition};
      last_slot = kUntracked;
      for (std::size_t p = 0; p < reads.partitions.size(); ++p) {
        if (reads.partitions[p].first == key) last_slot = static_cast<std::uint32_t>(p);
      }
      if (last_slot == kUntracked) {
        const auto found = partitions.find(key);
        // Not assigned (its tracking could not be set up): not handled, so never committed
        // past; read again after the next rebalance.
        if (found == partitions.end()) continue;
        last_slot = static_cast<std::uint32_t>(reads.partitions.size());
        reads.partitions.emplace_back(std::move(key), found->second.generation);
        trackers.push_back(&found->second.offsets);
      }
    }
    if (last_slot == kUntracked) continue;
    const PartitionKey& key = reads.partitions[last_slot].first;
    if (revocations_before[i] != revoked_in_batch.size() &&
        std::find(revoked_in_batch.begin() + static_cast<std::ptrdiff_t>(revocations_before[i]),
                  revoked_in_batch.end(), key) != revoked_in_batch.end()) {
      continue;  // read under an assignment that has ended since (see revoked_in_batch)
    }
    trackers[last_slot]->add(message.offset);
    slot_of[i] = last_slot;
    ++tracked;
  }
  consumed.fetch_add(tracked, std::memory_order_relaxed);
  return slot_of;
}

void KafkaSource::State::handle(std::vector<MessageHandle>& batch) {
  auto reads = std::make_shared<Reads>();
  const std::vector<std::uint32_t> slot_of = track_batch(batch, *reads);
  std::vector<std::size_t> good;
  std::vector<Event> events;
  Reads skipped;  // malformed: handled as far as offsets go
  good.reserve(batch.size());
  events.reserve(batch.size());
  reads->messages.reserve(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const rd_kafka_message_t& message = *batch[i];
    if (message.err != RD_KAFKA_RESP_ERR_NO_ERROR) {  // an error or event, not a message
      if (message.err != RD_KAFKA_RESP_ERR__PARTITION_EOF && reporting()) {
        telemetry::execute({"emissions", "source", "error"}, {{"count", 1}},
                           {{"source", options.name},
                            {"code", rd_kafka_err2name(message.err)},
                            {"reason", rd_kafka_message_errstr(&message)}});
      }
      continue;
    }
    if (slot_of[i] == kUntracked) continue;
    std::string error;
    if (std::optional<Event> event = decode(message, error)) {
      good.push_back(i);
      events.push_back(*std::move(event));
      reads->messages.push_back({slot_of[i], message.offset});
      continue;
    }
    malformed.fetch_add(1, std::memory_order_relaxed);
    if (reporting()) {
      telemetry::execute({"emissions", "source", "malformed"}, {{"count", 1}},
                         {{"source", options.name},
                          {"topic", reads->partitions[slot_of[i]].first.first},
                          {"partition", message.partition},
                          {"offset", message.offset},
                          {"reason", error}});
    }
    if (skipped.partitions.empty()) skipped.partitions = reads->partitions;
    skipped.messages.push_back({slot_of[i], message.offset});
  }
  if (!skipped.messages.empty()) settle(skipped);
  if (!good.empty()) publish(batch, good, std::move(events), std::move(reads));
}

std::optional<Event> KafkaSource::State::decode(const rd_kafka_message_t& message,
                                                std::string& error) const {
  if (message.payload == nullptr) {
    error = "no value (a tombstone)";
    return std::nullopt;
  }
  std::optional<Event> event = detail::kafka::read_envelope(
      std::string_view(static_cast<const char*>(message.payload), message.len), error);
  if (!event) return std::nullopt;
  // {"offset", "partition", "topic"} built in place (an initializer list would build each
  // pair as an array first); metadata is an object (read_envelope checked).
  nlohmann::json kafka(nlohmann::json::value_t::object);
  auto& fields = kafka.get_ref<nlohmann::json::object_t&>();
  fields.emplace_hint(fields.end(), "offset", message.offset);
  fields.emplace_hint(fields.end(), "partition", message.partition);
  fields.emplace_hint(fields.end(), "topic", rd_kafka_topic_name(message.rkt));
  event->metadata.get_ref<nlohmann::json::object_t&>()["kafka"] = std::move(kafka);
  return event;
}

void KafkaSource::State::publish(std::vector<MessageHandle>& batch,
                                 const std::vector<std::size_t>& messages,
                                 std::vector<Event> events, std::shared_ptr<const Reads> reads) {
  for (;;) {
    if (events.empty()) {  // a retry
      std::string error;
      for (std::size_t i : messages) {
        if (std::optional<Event> event = decode(*batch[i], error)) {
          events.push_back(*std::move(event));
        }
      }
    }
    const std::size_t count = events.size();
    // Settles the batch's messages once every adapter and handler settled their events.
    auto on_settled = [weak = self, reads](const Settlement&) {
      if (const std::shared_ptr<State> state = weak.lock()) state->settle(*reads);
    };
    const Status status = emitter.publish(std::exchange(events, {}), std::move(on_settled));
    if (status.ok()) {
      published.fetch_add(count, std::memory_order_relaxed);
      return;
    }
    if (status.code() != Errc::overloaded) {
      // closed: the Emitter is shutting down; the messages stay unsettled (uncommitted) and
      // the group reads them again. invalid_argument cannot come from decoded envelopes.
      return;
    }
    (void)detail::wait_until(
        settled, [&] { return stopping.load(std::memory_order_acquire); },
        deadline_after(kPublishRetry));
    if (stopping.load(std::memory_order_acquire)) return;
  }
}

void KafkaSource::State::settle(const Reads& reads) {
  {
    std::lock_guard lock(offsets_mutex);
    // Each partition looked up once; one whose generation ended (revoked, perhaps assigned
    // again since) is not settled: its messages belong to the old assignment.
    std::vector<OffsetTracker*> trackers(reads.partitions.size(), nullptr);
    for (std::size_t p = 0; p < reads.partitions.size(); ++p) {
      const auto found = partitions.find(reads.partitions[p].first);
      if (found != partitions.end() && found->second.generation == reads.partitions[p].second) {
        trackers[p] = &found->second.offsets;
      }
    }
    for (const Reads::Read& read : reads.messages) {
      if (OffsetTracker* tracker = trackers[read.partition]) tracker->settle(read.offset);
    }
  }
  settled.notify();
}

// --- offsets ------------------------------------------------------------------------------

bool KafkaSource::State::commit(Deadline deadline,
                                const rd_kafka_topic_partition_list_t* only) noexcept {
  try {
    PartitionList list(rd_kafka_topic_partition_list_new(4));
    {
      std::lock_guard lock(offsets_mutex);
      for (const auto& [key, partition] : partitions) {
        if (only != nullptr &&
            rd_kafka_topic_partition_list_find(only, key.first.c_str(), key.second) == nullptr) {
          continue;
        }
        if (const std::optional<std::int64_t> offset = partition.offsets.committable()) {
          rd_kafka_topic_partition_list_add(list.get(), key.first.c_str(), key.second)->offset =
              *offset;
        }
      }
    }
    if (list->cnt == 0) return true;
    // rd_kafka_commit() would block until the coordinator answers, for as long as it is
    // unreachable: the answer comes on a queue of our own instead, polled to the deadline.
    const QueueHandle queue(rd_kafka_queue_new(consumer.get()));
    CommitCall call{.state = this};
    const rd_kafka_resp_err_t error = rd_kafka_commit_queue(
        consumer.get(), list.get(), queue.get(),
        [](rd_kafka_t*, rd_kafka_resp_err_t result, rd_kafka_topic_partition_list_t* offsets,
           void* opaque) {
          auto& answer = *static_cast<CommitCall*>(opaque);
          answer.answered = true;
          answer.state->committed_result(result, offsets);
        },
        &call);
    if (error != RD_KAFKA_RESP_ERR_NO_ERROR) {
      committed_result(error, nullptr);
      return true;
    }
    while (!call.answered) {
      const std::optional<int> slice = poll_slice_ms(bounded(deadline));
      if (!slice) return false;  // tried again at the next interval, or not at all
      (void)rd_kafka_queue_poll_callback(queue.get(), *slice);
    }
    return true;
  } catch (...) {
    return false;  // Out of memory: committed next time.
  }
}

void KafkaSource::State::committed_result(rd_kafka_resp_err_t error,
                                          const rd_kafka_topic_partition_list_t* offsets) noexcept {
  if (error != RD_KAFKA_RESP_ERR_NO_ERROR) {
    // Not committed: tried again at the next interval (a refused commit makes the group
    // read these messages again only if the partition moves before then).
    if (reporting()) {
      try {
        telemetry::execute({"emissions", "source", "error"}, {{"count", 1}},
                           {{"source", options.name},
                            {"code", rd_kafka_err2name(error)},
                            {"reason", std::string("commit failed: ") + rd_kafka_err2str(error)}});
      } catch (...) {
      }
    }
    return;
  }
  if (offsets == nullptr) return;
  std::lock_guard lock(offsets_mutex);
  for (int i = 0; i < offsets->cnt; ++i) {
    const rd_kafka_topic_partition_t& entry = offsets->elems[i];
    if (entry.err != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    const auto found = partitions.find(PartitionKey{entry.topic, entry.partition});
    if (found != partitions.end()) found->second.offsets.committed(entry.offset);
    committed.fetch_add(1, std::memory_order_relaxed);
  }
}

bool KafkaSource::State::close(Deadline deadline) noexcept {
  try {
    if (!close_queue) {
      QueueHandle queue(rd_kafka_queue_new(consumer.get()));
      if (const ErrorHandle error(rd_kafka_consumer_close_queue(consumer.get(), queue.get()));
          error) {
        return rd_kafka_consumer_closed(consumer.get()) != 0;
      }
      // Kept until the close finished: librdkafka's close goes on through this queue, and a
      // close whose queue nobody serves never ends (destroy then loops forever).
      close_queue = std::move(queue);
    }
    // The revoke callback runs here, inside the consume calls, and commits (bounded by
    // `deadline`, stop()'s). The close forwards the consumer's queue to this one, so
    // messages fetched before the close (and consumer errors) arrive here too: they come
    // back from rd_kafka_consume_queue() and are dropped (never handled, so never committed:
    // the group reads them again). rd_kafka_queue_poll_callback() must not serve this queue:
    // librdkafka aborts the process on an op that only a consume call may return.
    while (rd_kafka_consumer_closed(consumer.get()) == 0) {
      const std::optional<int> slice = poll_slice_ms(deadline);
      if (!slice) return false;
      const MessageHandle dropped(rd_kafka_consume_queue(close_queue.get(), *slice));
    }
    close_queue.reset();
    return true;
  } catch (...) {
    return false;
  }
}

bool KafkaSource::State::idle(const rd_kafka_topic_partition_list_t* only) const {
  std::lock_guard lock(offsets_mutex);
  for (const auto& [key, partition] : partitions) {
    if (only != nullptr &&
        rd_kafka_topic_partition_list_find(only, key.first.c_str(), key.second) == nullptr) {
      continue;
    }
    if (!partition.offsets.idle()) return false;
  }
  return true;
}

std::size_t KafkaSource::State::unsettled() const {
  std::lock_guard lock(offsets_mutex);
  return static_cast<std::size_t>(
      std::count_if(partitions.begin(), partitions.end(),
                    [](const auto& entry) { return !entry.second.offsets.idle(); }));
}

void KafkaSource::State::release(const rd_kafka_topic_partition_list_t* revoked) noexcept {
  try {
    const Deadline deadline = stopping.load(std::memory_order_acquire)
                                  ? stop_deadline
                                  : deadline_after(options.commit_interval * kRevokeIntervals);
    // What is settled already is committed at once: the group coordinator may refuse
    // commits once the other members have rejoined (REBALANCE_IN_PROGRESS until the new
    // generation), so waiting first could lose it; then the rest, as it settles.
    (void)commit(deadline, revoked);
    // In slices: stop() may begin meanwhile, with an earlier deadline.
    while (!idle(revoked) && !expired(bounded(deadline))) {
      (void)detail::wait_until(
          settled, [&] { return idle(revoked); },
          std::min(bounded(deadline), deadline_after(kPollInterval)));
    }
    (void)commit(deadline, revoked);
    std::lock_guard lock(offsets_mutex);
    for (int i = 0; i < revoked->cnt; ++i) {
      PartitionKey key{revoked->elems[i].topic, revoked->elems[i].partition};
      const auto found = partitions.find(key);
      if (found != partitions.end()) {
        // Remembered only where the group does not have it (the last commit was refused).
        if (const std::optional<std::int64_t> through = found->second.offsets.handled_through();
            through && found->second.offsets.committable()) {
          resume_points[found->first] = *through;
        }
        partitions.erase(found);
      }
      revoked_in_batch.push_back(std::move(key));
    }
  } catch (...) {
  }
}

void KafkaSource::State::track(rd_kafka_t* client,
                               rd_kafka_topic_partition_list_t* assigned) noexcept {
  try {
    // The partitions held before, with the group's committed offsets (a blocking request,
    // bounded; made without the lock).
    PartitionList held(rd_kafka_topic_partition_list_new(assigned->cnt));
    {
      std::lock_guard lock(offsets_mutex);
      for (int i = 0; i < assigned->cnt; ++i) {
        if (resume_points.contains(
                PartitionKey{assigned->elems[i].topic, assigned->elems[i].partition})) {
          (void)rd_kafka_topic_partition_list_add(held.get(), assigned->elems[i].topic,
                                                  assigned->elems[i].partition);
        }
      }
    }
    const bool fetched =
        held->cnt > 0 &&
        rd_kafka_committed(client, held.get(), static_cast<int>(kCommittedTimeout.count())) ==
            RD_KAFKA_RESP_ERR_NO_ERROR;
    std::lock_guard lock(offsets_mutex);
    for (int i = 0; i < assigned->cnt; ++i) {
      rd_kafka_topic_partition_t& entry = assigned->elems[i];
      const PartitionKey key{entry.topic, entry.partition};
      Partition fresh{++generations, OffsetTracker{}};
      const auto point = resume_points.find(key);
      const rd_kafka_topic_partition_t* group =
          fetched && point != resume_points.end()
              ? rd_kafka_topic_partition_list_find(held.get(), entry.topic, entry.partition)
              : nullptr;
      // Only with the group's offset in hand: without it, the group's commit decides (as
      // if nothing were remembered), so a stale point can never move the group backwards.
      if (group != nullptr && group->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const bool stored = group->offset >= point->second;  // the group went further
        const std::int64_t start = stored ? group->offset : point->second;
        entry.offset = start;
        fresh.offsets.resume_at(start, stored);
      }
      partitions[key] = std::move(fresh);
    }
    // A point outlives one assignment at most: it is for a partition lost and given back
    // at once (a refused commit, a stale generation), not for one that moved elsewhere.
    resume_points.clear();
  } catch (...) {
    // Out of memory: the partitions are read from the group's commits.
  }
}

void KafkaSource::State::on_rebalance(rd_kafka_t* consumer, rd_kafka_resp_err_t error,
                                      rd_kafka_topic_partition_list_t* changed,
                                      void* opaque) noexcept {
  auto& self = *static_cast<State*>(opaque);
  const bool cooperative = std::strcmp(rd_kafka_rebalance_protocol(consumer), "COOPERATIVE") == 0;
  if (error == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    self.track(consumer, changed);
    if (cooperative) {
      const ErrorHandle ignored(rd_kafka_incremental_assign(consumer, changed));
    } else {
      (void)rd_kafka_assign(consumer, changed);
    }
    self.report_partitions("assigned", changed);
    return;
  }
  // Revoked (or an error): what was read from these partitions is settled and committed
  // before they go, so the next owner starts after it.
  self.release(changed);
  if (cooperative) {
    const ErrorHandle ignored(rd_kafka_incremental_unassign(consumer, changed));
  } else {
    (void)rd_kafka_assign(consumer, nullptr);
  }
  self.report_partitions("revoked", changed);
}

void KafkaSource::State::report_partitions(
    const char* what, const rd_kafka_topic_partition_list_t* changed) const noexcept {
  if (!reporting()) return;
  try {
    nlohmann::json list = nlohmann::json::array();
    for (int i = 0; i < changed->cnt; ++i) {
      list.push_back(
          {{"topic", changed->elems[i].topic}, {"partition", changed->elems[i].partition}});
    }
    telemetry::execute({"emissions", "source", what}, {{"count", changed->cnt}},
                       {{"source", options.name}, {"partitions", std::move(list)}});
  } catch (...) {
  }
}

// --- KafkaSource --------------------------------------------------------------------------

KafkaSource::KafkaSource(Emitter& emitter, KafkaSourceOptions options) {
  detail::kafka::check_options(options);
  auto state = std::make_shared<State>(emitter, std::move(options));
  state->self = state;
  state->consumer =
      detail::kafka::create_consumer(state->options, &State::on_rebalance, state.get());
  state_ = std::move(state);
}

KafkaSource::~KafkaSource() {
  (void)stop(std::chrono::milliseconds(0));
  std::lock_guard lock(state_->lifecycle_mutex);
  if (state_->closer.joinable()) {
    state_->closer.join();  // it ends by close_ceiling
  } else if (state_->consumer) {
    state_->finish_close();  // stop() could not make a thread: finished here, as bounded
  }
}

void KafkaSource::State::finish_close() noexcept {
  // Without close_queue, librdkafka refused to start a close (closed already, or a fatal
  // error, which makes destroy skip the close): destroyed at once.
  if (close(close_ceiling) || !close_queue) {
    consumer.reset();
    return;
  }
  // The close did not end by its ceiling (the coordinator stays away, and librdkafka 2.0.2
  // does not always give its close up). Destroying the consumer now would wait for that
  // close all the same (rd_kafka_destroy waits for the group to terminate, also with
  // RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE), so it is abandoned: the close queue is destroyed
  // (what librdkafka still posts to it is dropped: no callback of ours runs again) and the
  // consumer is released without destroying it, its memory and librdkafka's threads left
  // until the process ends. Bounded, at the cost of that leak.
  close_queue.reset();
  (void)consumer.release();
}

Status KafkaSource::start() {
  State& s = *state_;
  std::lock_guard lock(s.lifecycle_mutex);
  if (s.phase != State::Phase::created) {
    return Status(Errc::invalid_argument,
                  "kafka source '" + s.options.name + "' was already started (a source runs once)");
  }
  PartitionList topics(
      rd_kafka_topic_partition_list_new(static_cast<int>(s.options.topics.size())));
  for (const std::string& topic : s.options.topics) {
    (void)rd_kafka_topic_partition_list_add(topics.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  }
  if (const rd_kafka_resp_err_t error = rd_kafka_subscribe(s.consumer.get(), topics.get());
      error != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Status(Errc::unavailable, "kafka source '" + s.options.name +
                                         "': subscribing failed: " + rd_kafka_err2str(error));
  }
  s.phase = State::Phase::running;
  s.thread = std::thread([raw = &s] { raw->run(); });
  return {};
}

Status KafkaSource::stop(std::chrono::milliseconds timeout) {
  State& s = *state_;
  std::lock_guard lock(s.lifecycle_mutex);
  if (s.phase == State::Phase::stopped) return {};
  const bool was_running = s.phase == State::Phase::running;
  s.phase = State::Phase::stopped;
  s.stop_deadline = deadline_after(timeout);
  if (s.consumer) s.close_ceiling = deadline_after(close_limit(s.consumer.get()));
  s.stopping.store(true, std::memory_order_release);
  s.settled.notify();
  if (s.thread.joinable()) s.thread.join();
  std::size_t left = 0;
  bool closed = true;
  if (was_running) {
    (void)detail::wait_until(
        s.settled, [&] { return s.idle(nullptr); }, s.stop_deadline);
    left = s.unsettled();
    (void)s.commit(s.stop_deadline);
    // Leaves the group; the revoke callback runs here and commits again (bounded by the
    // same deadline).
    closed = s.close(s.stop_deadline);
  }
  if (closed && was_running) {
    s.consumer.reset();
  } else if (!was_running) {
    // Never subscribed: nothing to leave or commit, destroyed without a close (quick).
    UnclosedClient client(s.consumer.release());
  }
  // Nothing reaches the user once stop() returned, from the close going on below either.
  s.quiet.store(true, std::memory_order_release);
  if (!closed && was_running) {
    // The group could not be left in time (its coordinator unreachable). The close goes on
    // on a thread of the source's own, joined by the destructor, so that stop() returns by
    // its deadline; it ends when librdkafka reaches the coordinator again or gives up
    // (about session.timeout.ms), and is abandoned at close_ceiling (finish_close). A close
    // started through a queue must be served: destroying the consumer halfway makes
    // librdkafka's destroy loop forever.
    try {
      s.closer = std::thread([raw = &s] { raw->finish_close(); });
    } catch (...) {
      // No thread to be had: the destructor finishes it (as bounded); stop() returns now.
    }
  }
  if (left != 0) {
    return Status(Errc::timeout, "kafka source '" + s.options.name + "': " + std::to_string(left) +
                                     " partitions had unsettled events at the deadline; the "
                                     "group reads them again");
  }
  if (!closed) {
    return Status(Errc::timeout, "kafka source '" + s.options.name +
                                     "': the consumer did not leave its group by the deadline "
                                     "(its coordinator unreachable); the group reassigns its "
                                     "partitions after session.timeout.ms");
  }
  return {};
}

KafkaSourceStats KafkaSource::stats() const {
  const State& s = *state_;
  return KafkaSourceStats{.consumed = s.consumed.load(std::memory_order_relaxed),
                          .published = s.published.load(std::memory_order_relaxed),
                          .malformed = s.malformed.load(std::memory_order_relaxed),
                          .committed = s.committed.load(std::memory_order_relaxed)};
}

}  // namespace emissions::sources

namespace emissions::detail {

void KafkaAccess::commit_answered(sources::KafkaSource& source, rd_kafka_resp_err_t error,
                                  const rd_kafka_topic_partition_list_t* offsets) noexcept {
  source.state_->committed_result(error, offsets);
}

}  // namespace emissions::detail
