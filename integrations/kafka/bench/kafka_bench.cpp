// emissions-kafka-bench: the Kafka adapter and KafkaSource beside hand-written librdkafka
// loops doing the same work, in the same run, against librdkafka's mock cluster in a child
// process (forked before any thread starts).
//
//   producer: N order events, each serialized to its JSON envelope and produced with the
//     adapter's key and headers and the adapter's default settings (idempotence, acks=all,
//     linger.ms=5, lz4), until every delivery report is in. raw = a produce loop with a
//     delivery-report callback; adapter = emit + commit (100 events per transaction) through
//     an Emitter with the Kafka adapter added with deliver_on_commit, then drain();
//     adapter_queued = the same with the default options (the adapter's consumer thread
//     produces every event).
//   consumer: the N envelopes the adapter wrote, read by a new group member from the first
//     message to the last one handled. raw = poll, parse the JSON, count, commit every
//     second; source = KafkaSource publishing into an Emitter whose one adapter counts.
//
// `--only raw-consumer` or `--only source` runs one side of the consumer pair alone (after
// the raw producer wrote its envelopes, untimed), for profiling.
//
// Each figure is given in events/s (wall time) and in this process's CPU ns per event (all
// threads; the mock broker is another process), the steadier one on a loaded machine.
// `--only split` (diagnostic) runs the raw loop, the same loop cut in two threads
// (split_producer) and adapter_queued.
//
// Each rep runs both on fresh topics and groups (the producers in an order that turns with
// the rep); the table gives medians (of the per-rep ratios for the ratios). A run whose counts do
// not add up (a failed delivery, a missing event) prints no figures and exits 2.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <sys/wait.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include "emissions/adapter.hpp"
#include "emissions/adapters/kafka.hpp"
#include "emissions/emitter.hpp"
#include "emissions/event.hpp"
#include "emissions/sources/kafka.hpp"
#include "handles.hpp"
#include "producer_config.hpp"
#include "properties.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using emissions::detail::kafka::ClientHandle;
using emissions::detail::kafka::ConfHandle;
using emissions::detail::kafka::ErrorHandle;
using emissions::detail::kafka::HeadersHandle;
using emissions::detail::kafka::MessageHandle;

class Failure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Options {
  std::size_t events = 300'000;
  int reps = 3;
  int partitions = 6;
  bool json = false;
  // "producer", "consumer", "" (both), or one side of a pair alone, for profiling:
  // "raw-producer", "adapter", "raw-consumer" or "source"; or "split" (diagnostic: the raw
  // producer beside split_producer())
  std::string only;
  std::size_t max_in_flight = 0;  // the adapter's AdapterOptions::max_in_flight; 0: default
};

constexpr std::size_t kEventsPerCommit = 100;
constexpr std::size_t kKeys = 1'000;

std::string topic_name(const char* what, int rep) {
  return std::string(what) + "-" + std::to_string(rep);
}

nlohmann::json order_payload(std::size_t i) {
  return {{"order_id", i}, {"sku", "SKU-12345"}, {"amount", 4200}};
}

std::string order_key(std::size_t i) {
  return std::to_string(i % kKeys);
}

// librdkafka's mock cluster in a child process: forked first thing in main(), before any
// thread exists. The child serves until the parent closes the lifetime pipe (or dies).
class MockBroker {
 public:
  MockBroker(const Options& options) {
    std::array<int, 2> address{};
    std::array<int, 2> lifetime{};
    if (::pipe(address.data()) != 0 || ::pipe(lifetime.data()) != 0) throw Failure("pipe failed");
    pid_ = ::fork();
    if (pid_ < 0) throw Failure("fork failed");
    if (pid_ == 0) {
      ::close(address[0]);
      ::close(lifetime[1]);
      serve(options, address[1], lifetime[0]);  // never returns
    }
    ::close(address[1]);
    ::close(lifetime[0]);
    lifetime_ = lifetime[1];
    std::array<char, 256> buffer{};
    std::size_t got = 0;
    while (got < buffer.size() - 1) {
      const ssize_t n = ::read(address[0], buffer.data() + got, buffer.size() - 1 - got);
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
      if (std::memchr(buffer.data(), '\n', got) != nullptr) break;
    }
    ::close(address[0]);
    bootstraps_.assign(buffer.data(), got);
    if (!bootstraps_.empty() && bootstraps_.back() == '\n') bootstraps_.pop_back();
    if (bootstraps_.empty()) throw Failure("the mock broker process did not start");
  }
  ~MockBroker() {
    ::close(lifetime_);
    (void)::waitpid(pid_, nullptr, 0);
  }
  MockBroker(const MockBroker&) = delete;
  MockBroker& operator=(const MockBroker&) = delete;

  [[nodiscard]] const std::string& bootstraps() const { return bootstraps_; }

 private:
  [[noreturn]] static void serve(const Options& options, int address, int lifetime) {
    std::array<char, 512> error{};
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    (void)rd_kafka_conf_set(conf, "log_level", "2", error.data(), error.size());
    rd_kafka_t* owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error.data(), error.size());
    rd_kafka_mock_cluster_t* cluster = owner ? rd_kafka_mock_cluster_new(owner, 1) : nullptr;
    if (cluster == nullptr) ::_exit(1);
    for (int rep = 0; rep <= options.reps; ++rep) {  // rep 0 warms up
      for (const char* what : {"raw", "adapter", "queued", "split"}) {
        (void)rd_kafka_mock_topic_create(cluster, topic_name(what, rep).c_str(), options.partitions,
                                         1);
      }
    }
    const std::string line = std::string(rd_kafka_mock_cluster_bootstraps(cluster)) + "\n";
    (void)::write(address, line.data(), line.size());
    ::close(address);
    char byte = 0;
    while (::read(lifetime, &byte, 1) > 0) {
    }
    rd_kafka_mock_cluster_destroy(cluster);
    rd_kafka_destroy(owner);
    ::_exit(0);
  }

  pid_t pid_ = -1;
  int lifetime_ = -1;
  std::string bootstraps_;
};

ConfHandle make_conf(const std::map<std::string, std::string>& properties) {
  ConfHandle conf(rd_kafka_conf_new());
  for (const auto& [key, value] : properties)
    emissions::detail::kafka::set_property(conf.get(), key, value, key);
  return conf;
}

// CPU time of this process (every thread: ours and librdkafka's; not the mock broker's, which
// is another process), in nanoseconds. Robust to other processes loading the machine, unlike
// wall time.
double cpu_ns() {
  timespec now{};
  (void)::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) * 1e9 + static_cast<double>(now.tv_nsec);
}

// Process CPU nanoseconds per event of the last producer or consumer run (set by each).
double g_cpu_ns_per_event = 0;

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// --- producer ---------------------------------------------------------------------------

struct Reports {
  std::atomic<std::size_t> delivered{0};
  std::atomic<std::size_t> failed{0};
};

// A librdkafka producer with the adapter's default settings, producing events as the adapter
// does (the envelope, the key, the four headers), counting its delivery reports.
class RawProducer {
 public:
  RawProducer(const char* who, const std::string& bootstraps) : who_(who) {
    std::map<std::string, std::string> properties;  // the adapter's defaults, then ours
    for (const auto& [key, value] : emissions::detail::kafka::default_properties())
      properties[key] = value;
    properties["bootstrap.servers"] = bootstraps;
    properties["log_level"] = "2";
    ConfHandle conf = make_conf(properties);
    rd_kafka_conf_set_opaque(conf.get(), &reports_);
    rd_kafka_conf_set_dr_msg_cb(
        conf.get(), [](rd_kafka_t*, const rd_kafka_message_t* message, void* opaque) {
          auto& r = *static_cast<Reports*>(opaque);
          (message->err == RD_KAFKA_RESP_ERR_NO_ERROR ? r.delivered : r.failed).fetch_add(1);
        });
    std::array<char, 512> error{};
    producer_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), error.data(), error.size()));
    if (!producer_) throw Failure(who_ + ": " + error.data());
    (void)conf.release();
  }

  // Serializes `event` and produces it to `topic` with `key`, serving reports while
  // librdkafka's queue is full.
  void produce(const std::string& topic, const emissions::Event& event, const std::string& key) {
    const std::string value = emissions::serialize(event);
    const std::string id = event.id.str();
    const std::string at = emissions::format_timestamp(event.emitted_at);
    const std::string& name = event.name.str();
    for (;;) {
      HeadersHandle headers(rd_kafka_headers_new(4));
      (void)rd_kafka_header_add(headers.get(), "event-id", -1, id.data(),
                                static_cast<ssize_t>(id.size()));
      (void)rd_kafka_header_add(headers.get(), "event-name", -1, name.data(),
                                static_cast<ssize_t>(name.size()));
      (void)rd_kafka_header_add(headers.get(), "emitted-at", -1, at.data(),
                                static_cast<ssize_t>(at.size()));
      (void)rd_kafka_header_add(headers.get(), "content-type", -1, "application/json", -1);
      std::array<rd_kafka_vu_t, 5> vus{};
      vus[0].vtype = RD_KAFKA_VTYPE_TOPIC;
      vus[0].u.cstr = topic.c_str();
      vus[1].vtype = RD_KAFKA_VTYPE_KEY;
      vus[1].u.mem.ptr = const_cast<char*>(key.data());  // copied (RD_KAFKA_MSG_F_COPY)
      vus[1].u.mem.size = key.size();
      vus[2].vtype = RD_KAFKA_VTYPE_VALUE;
      vus[2].u.mem.ptr = const_cast<char*>(value.data());
      vus[2].u.mem.size = value.size();
      vus[3].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
      vus[3].u.i = RD_KAFKA_MSG_F_COPY;
      vus[4].vtype = RD_KAFKA_VTYPE_HEADERS;
      vus[4].u.headers = headers.get();
      const ErrorHandle produced(rd_kafka_produceva(producer_.get(), vus.data(), vus.size()));
      const rd_kafka_resp_err_t err =
          produced ? rd_kafka_error_code(produced.get()) : RD_KAFKA_RESP_ERR_NO_ERROR;
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        (void)headers.release();  // the message owns them
        return;
      }
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) throw Failure(rd_kafka_err2str(err));
      (void)rd_kafka_poll(producer_.get(), 1);  // backpressure: serve reports, try again
    }
  }
  void poll() { (void)rd_kafka_poll(producer_.get(), 0); }

  // Not timed: the first message waits for the connection, the topic's metadata and the
  // idempotent producer's id (about a second against the mock); the adapter's run skips
  // the same.
  void warm_up(const std::string& topic, std::size_t i) {
    produce(topic, order_event(i), order_key(i));
    if (rd_kafka_flush(producer_.get(), 30'000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw Failure(who_ + ": the warm-up message was not delivered");
    }
    reports_.delivered = 0;
  }
  // Flushes, then checks that each of `events` was delivered.
  void finish(std::size_t events) {
    if (rd_kafka_flush(producer_.get(), 120'000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw Failure(who_ + ": flush timed out");
    }
    if (reports_.delivered != events || reports_.failed != 0) {
      throw Failure(who_ + ": " + std::to_string(reports_.delivered.load()) + " delivered, " +
                    std::to_string(reports_.failed.load()) + " failed of " +
                    std::to_string(events));
    }
  }

  static emissions::Event order_event(std::size_t i) {
    static const emissions::EventName name("order_created");
    emissions::Event event;
    event.name = name;
    event.id = emissions::EventId::generate();
    event.emitted_at = std::chrono::system_clock::now();
    event.payload = order_payload(i);
    event.metadata = nlohmann::json::object();
    return event;
  }

 private:
  std::string who_;
  Reports reports_;
  ClientHandle producer_;
};

double raw_producer(const Options& options, const std::string& bootstraps,
                    const std::string& topic) {
  RawProducer producer("raw producer", bootstraps);
  producer.warm_up(topic, options.events);
  const auto started = Clock::now();
  const double cpu_started = cpu_ns();
  for (std::size_t i = 0; i < options.events; ++i) {
    producer.produce(topic, RawProducer::order_event(i), order_key(i));
    if (i % 1'000 == 0) producer.poll();
  }
  producer.finish(options.events);
  const double elapsed = seconds_between(started, Clock::now());
  g_cpu_ns_per_event = (cpu_ns() - cpu_started) / static_cast<double>(options.events);
  return static_cast<double>(options.events) / elapsed;
}

// Diagnostic (`--only split`): the raw loop cut in two as the Emitter cuts the work, with no
// library code: this thread builds the events, 100 at a time, and hands each batch through
// a bounded queue (10,000 events, the pipeline's default buffer) to a producing thread that
// reads the key from the payload (as the adapter's key_for does), serializes, produces, and
// serves the reports after each batch. What the cut alone costs on this machine.
double split_producer(const Options& options, const std::string& bootstraps,
                      const std::string& topic) {
  RawProducer producer("split producer", bootstraps);
  producer.warm_up(topic, options.events);
  constexpr std::size_t kMaxBatches = 10'000 / kEventsPerCommit;
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::vector<emissions::Event>> queue;  // guarded by mutex
  bool done = false;                                 // guarded by mutex
  std::exception_ptr failure;                        // guarded by mutex
  const auto started = Clock::now();
  const double cpu_started = cpu_ns();
  std::thread producing([&] {
    try {
      std::vector<std::vector<emissions::Event>> taken;
      for (;;) {
        {
          std::unique_lock lock(mutex);
          changed.wait(lock, [&] { return !queue.empty() || done; });
          if (queue.empty()) return;
          taken.swap(queue);
        }
        changed.notify_all();
        for (const std::vector<emissions::Event>& batch : taken) {
          for (const emissions::Event& event : batch)
            producer.produce(topic, event,
                             order_key(event.payload.at("order_id").get<std::size_t>()));
          producer.poll();
        }
        taken.clear();
      }
    } catch (...) {
      std::lock_guard lock(mutex);
      failure = std::current_exception();
    }
    changed.notify_all();
  });
  for (std::size_t i = 0; i < options.events;) {
    std::vector<emissions::Event> batch;
    batch.reserve(kEventsPerCommit);
    for (std::size_t end = std::min(options.events, i + kEventsPerCommit); i < end; ++i)
      batch.push_back(RawProducer::order_event(i));
    std::unique_lock lock(mutex);
    changed.wait(lock, [&] { return queue.size() < kMaxBatches || failure; });
    if (failure) break;
    queue.push_back(std::move(batch));
    lock.unlock();
    changed.notify_all();
  }
  {
    std::lock_guard lock(mutex);
    done = true;
  }
  changed.notify_all();
  producing.join();
  if (failure) std::rethrow_exception(failure);
  producer.finish(options.events);
  const double elapsed = seconds_between(started, Clock::now());
  g_cpu_ns_per_event = (cpu_ns() - cpu_started) / static_cast<double>(options.events);
  return static_cast<double>(options.events) / elapsed;
}

// `on_commit`: the adapter added with AdapterOptions::deliver_on_commit (the committing
// thread produces when the consumer is idle); otherwise with the default options (the
// adapter's consumer thread produces everything).
double adapter_producer(const Options& options, const std::string& bootstraps,
                        const std::string& topic, bool on_commit) {
  auto kafka = std::make_shared<emissions::adapters::Kafka>(emissions::adapters::KafkaOptions{
      .brokers = bootstraps,
      .topic = topic,
      .key_for =
          [](const emissions::Event& e) {
            return order_key(e.payload.at("order_id").get<std::size_t>());
          },
      .properties = {{"log_level", "2"}}});
  emissions::Config config;
  config.make_default = false;
  emissions::AdapterOptions adapter_options;
  if (options.max_in_flight != 0) adapter_options.max_in_flight = options.max_in_flight;
  adapter_options.deliver_on_commit = on_commit;
  config.add_adapter(kafka, adapter_options);
  emissions::Emitter emitter(std::move(config));
  {  // Not timed, as in the raw run: the first event waits for the producer to be ready.
    emissions::Transaction tx = emitter.start();
    (void)tx.emit("order_created", order_payload(options.events));
    if (!tx.commit().ok() || !emitter.drain(std::chrono::seconds(30)).ok()) {
      throw Failure("adapter: the warm-up event was not delivered");
    }
  }
  const auto started = Clock::now();
  const double cpu_started = cpu_ns();
  for (std::size_t i = 0; i < options.events;) {
    emissions::Transaction tx = emitter.start();
    for (std::size_t end = std::min(options.events, i + kEventsPerCommit); i < end; ++i) {
      if (!tx.emit("order_created", order_payload(i)).ok()) throw Failure("emit refused");
    }
    if (const emissions::Status status = tx.commit(); !status.ok()) {
      throw Failure("adapter: commit refused: " + status.message());
    }
  }
  if (!emitter.drain(std::chrono::seconds(120)).ok()) throw Failure("adapter: drain timed out");
  const double elapsed = seconds_between(started, Clock::now());
  g_cpu_ns_per_event = (cpu_ns() - cpu_started) / static_cast<double>(options.events);
  const emissions::AdapterStats stats = emitter.stats().adapters.at(0);
  if (stats.delivered != options.events + 1 || stats.failed != 0 || stats.dropped != 0) {
    throw Failure("adapter: " + std::to_string(stats.delivered) + " delivered, " +
                  std::to_string(stats.failed) + " failed, " + std::to_string(stats.dropped) +
                  " dropped of " + std::to_string(options.events));
  }
  return static_cast<double>(options.events) / elapsed;
}

// --- consumer ---------------------------------------------------------------------------

double raw_consumer(const Options& options, const std::string& bootstraps, const std::string& topic,
                    const std::string& group) {
  const double cpu_started = cpu_ns();  // from joining the group, as for the source
  ConfHandle conf = make_conf({{"bootstrap.servers", bootstraps},
                               {"group.id", group},
                               {"auto.offset.reset", "earliest"},
                               {"enable.auto.commit", "false"},
                               {"log_level", "2"}});
  std::array<char, 512> error{};
  ClientHandle consumer(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), error.data(), error.size()));
  if (!consumer) throw Failure(std::string("raw consumer: ") + error.data());
  (void)conf.release();
  (void)rd_kafka_poll_set_consumer(consumer.get());
  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  (void)rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
  const rd_kafka_resp_err_t subscribed = rd_kafka_subscribe(consumer.get(), topics);
  rd_kafka_topic_partition_list_destroy(topics);
  if (subscribed != RD_KAFKA_RESP_ERR_NO_ERROR) throw Failure(rd_kafka_err2str(subscribed));

  const std::size_t in_topic = options.events + 1;  // and the producer's warm-up message
  std::size_t handled = 0;
  std::size_t malformed = 0;
  Clock::time_point first{};
  auto last_commit = Clock::now();
  const auto give_up = Clock::now() + std::chrono::seconds(120);
  while (handled < in_topic && Clock::now() < give_up) {
    MessageHandle message(rd_kafka_consumer_poll(consumer.get(), 100));
    if (!message || message->err != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    if (handled == 0) first = Clock::now();
    const nlohmann::json envelope = nlohmann::json::parse(
        std::string_view(static_cast<const char*>(message->payload), message->len), nullptr,
        /*allow_exceptions=*/false);
    if (envelope.is_discarded() || !envelope.contains("id")) ++malformed;
    ++handled;
    if (Clock::now() - last_commit >= std::chrono::seconds(1)) {
      (void)rd_kafka_commit(consumer.get(), nullptr, /*async=*/1);
      last_commit = Clock::now();
    }
  }
  const double elapsed = seconds_between(first, Clock::now());
  g_cpu_ns_per_event = (cpu_ns() - cpu_started) / static_cast<double>(in_topic);
  (void)rd_kafka_commit(consumer.get(), nullptr, 0);
  (void)rd_kafka_consumer_close(consumer.get());
  if (handled != in_topic || malformed != 0) {
    throw Failure("raw consumer: " + std::to_string(handled) + " read (" +
                  std::to_string(malformed) + " malformed) of " + std::to_string(in_topic));
  }
  return static_cast<double>(in_topic) / elapsed;
}

// Counts what the source hands to the Emitter; marks the first and the last.
class CountingAdapter final : public emissions::Adapter {
 public:
  explicit CountingAdapter(std::size_t expected) : expected_(expected) {}
  emissions::Status handle_events(std::span<const emissions::Event> batch) override {
    std::lock_guard lock(mutex_);
    if (count_ == 0) first_ = Clock::now();
    count_ += batch.size();
    if (count_ >= expected_) {
      last_ = Clock::now();
      done_.notify_all();
    }
    return {};
  }
  [[nodiscard]] std::string_view name() const override { return "counting"; }
  // Seconds from the first batch to the one that completed `expected`, or a negative
  // number if that did not happen by `timeout`.
  double wait(std::chrono::seconds timeout) {
    std::unique_lock lock(mutex_);
    if (!done_.wait_for(lock, timeout, [&] { return count_ >= expected_; })) return -1;
    return seconds_between(first_, last_);
  }
  std::size_t count() {
    std::lock_guard lock(mutex_);
    return count_;
  }

 private:
  const std::size_t expected_;
  std::mutex mutex_;
  std::condition_variable done_;
  std::size_t count_ = 0;
  Clock::time_point first_{};
  Clock::time_point last_{};
};

double source_consumer(const Options& options, const std::string& bootstraps,
                       const std::string& topic, const std::string& group) {
  const double cpu_started = cpu_ns();              // from joining the group, as for the raw loop
  const std::size_t in_topic = options.events + 1;  // and the producer's warm-up message
  auto counting = std::make_shared<CountingAdapter>(in_topic);
  emissions::Config config;
  config.make_default = false;
  config.add_adapter(counting);
  emissions::Emitter emitter(std::move(config));
  emissions::sources::KafkaSource source(emitter, {.brokers = bootstraps,
                                                   .group_id = group,
                                                   .topics = {topic},
                                                   .properties = {{"log_level", "2"}}});
  if (!source.start().ok()) throw Failure("source: start failed");
  const double elapsed = counting->wait(std::chrono::seconds(120));
  g_cpu_ns_per_event = (cpu_ns() - cpu_started) / static_cast<double>(in_topic);
  (void)source.stop(std::chrono::seconds(10));
  if (elapsed < 0 || counting->count() != in_topic) {
    throw Failure("source: " + std::to_string(counting->count()) + " handled of " +
                  std::to_string(in_topic));
  }
  return static_cast<double>(in_topic) / elapsed;
}

// --- main -------------------------------------------------------------------------------

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

int usage(const char* why) {
  std::fprintf(stderr,
               "%s\nusage: emissions-kafka-bench [--events N] [--reps R] [--partitions P] "
               "[--max-in-flight N] [--only producer|consumer|raw-producer|adapter|adapter-queued|"
               "raw-consumer|source|split] "
               "[--quick] "
               "[--json]\n",
               why);
  return 64;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const auto number = [&](auto& out) {
      if (i + 1 >= argc) return false;
      char* end = nullptr;
      const long long value = std::strtoll(argv[++i], &end, 10);
      if (*end != '\0' || value <= 0) return false;
      out = static_cast<std::remove_reference_t<decltype(out)>>(value);
      return true;
    };
    if (arg == "--events") {
      if (!number(options.events)) return usage("--events takes a positive number");
    } else if (arg == "--reps") {
      if (!number(options.reps)) return usage("--reps takes a positive number");
    } else if (arg == "--partitions") {
      if (!number(options.partitions)) return usage("--partitions takes a positive number");
    } else if (arg == "--max-in-flight") {
      if (!number(options.max_in_flight)) return usage("--max-in-flight takes a positive number");
    } else if (arg == "--only") {
      constexpr const char* kOnly =
          "--only takes producer, consumer, raw-producer, adapter, adapter-queued, raw-consumer, "
          "source or split";
      if (i + 1 >= argc) return usage(kOnly);
      options.only = argv[++i];
      if (options.only != "producer" && options.only != "consumer" &&
          options.only != "raw-producer" && options.only != "adapter" &&
          options.only != "adapter-queued" && options.only != "raw-consumer" &&
          options.only != "source" && options.only != "split") {
        return usage(kOnly);
      }
    } else if (arg == "--quick") {
      options.events = 20'000;
      options.reps = 1;
    } else if (arg == "--json") {
      options.json = true;
    } else {
      return usage(("unknown flag: " + std::string(arg)).c_str());
    }
  }
  try {
    const MockBroker broker(options);  // first: forks before any thread exists
    std::map<std::string, std::vector<double>> runs;
    for (int rep = 0; rep <= options.reps; ++rep) {
      std::fprintf(stderr, "%s %d/%d\n", rep == 0 ? "warm-up" : "rep", rep, options.reps);
      const std::string raw = topic_name("raw", rep);
      const std::string written = topic_name("adapter", rep);
      const std::string queued = topic_name("queued", rep);
      const bool one_producer = options.only == "raw-producer" || options.only == "adapter" ||
                                options.only == "adapter-queued" || options.only == "split";
      const bool one_consumer = options.only == "raw-consumer" || options.only == "source";
      const bool producers = options.only != "consumer" && !one_consumer;
      const bool consumers = options.only != "producer" && !one_producer;
      std::map<std::string, double> figures;
      const auto run_raw = [&] {
        figures["raw_producer_eps"] = raw_producer(options, broker.bootstraps(), raw);
        figures["raw_producer_cpu_ns"] = g_cpu_ns_per_event;
      };
      const auto run_adapter = [&] {
        figures["adapter_eps"] = adapter_producer(options, broker.bootstraps(), written, true);
        figures["adapter_cpu_ns"] = g_cpu_ns_per_event;
      };
      const auto run_queued = [&] {
        figures["adapter_queued_eps"] =
            adapter_producer(options, broker.bootstraps(), queued, false);
        figures["adapter_queued_cpu_ns"] = g_cpu_ns_per_event;
      };
      const auto run_split = [&] {
        figures["split_producer_eps"] =
            split_producer(options, broker.bootstraps(), topic_name("split", rep));
        figures["split_producer_cpu_ns"] = g_cpu_ns_per_event;
      };
      // a / b, in events/s and (inverted) in CPU per event.
      const auto ratio = [&](const std::string& a, const std::string& b, const std::string& name) {
        figures[name] = figures[a + "_eps"] / figures[b + "_eps"];
        figures[name + "_cpu"] = figures[b + "_cpu_ns"] / figures[a + "_cpu_ns"];
      };
      // Three runs in an order that turns with the rep, so that none always runs first on
      // the broker (or on a machine warmed, or loaded, by the others).
      const auto in_turn = [&](const std::array<std::function<void()>, 3>& three) {
        for (int turn = 0; turn < 3; ++turn)
          three[static_cast<std::size_t>((turn + rep) % 3)]();
      };
      if (options.only == "raw-producer") {
        run_raw();
      } else if (options.only == "adapter") {
        run_adapter();
      } else if (options.only == "adapter-queued") {
        run_queued();
      } else if (options.only == "split") {
        in_turn({run_raw, run_split, run_queued});
        ratio("split_producer", "raw_producer", "split_vs_raw_producer");
        ratio("adapter_queued", "split_producer", "adapter_queued_vs_split_producer");
      } else if (producers) {
        in_turn({run_raw, run_adapter, run_queued});
        ratio("adapter", "raw_producer", "adapter_vs_raw_producer");
        ratio("adapter_queued", "raw_producer", "adapter_queued_vs_raw_producer");
      } else {
        (void)raw_producer(options, broker.bootstraps(), written);  // the same envelopes
      }
      if (options.only == "raw-consumer") {
        figures["raw_consumer_eps"] =
            raw_consumer(options, broker.bootstraps(), written, "raw-" + std::to_string(rep));
        figures["raw_consumer_cpu_ns"] = g_cpu_ns_per_event;
      } else if (options.only == "source") {
        figures["source_eps"] =
            source_consumer(options, broker.bootstraps(), written, "source-" + std::to_string(rep));
        figures["source_cpu_ns"] = g_cpu_ns_per_event;
      } else if (consumers) {
        figures["raw_consumer_eps"] =
            raw_consumer(options, broker.bootstraps(), written, "raw-" + std::to_string(rep));
        figures["raw_consumer_cpu_ns"] = g_cpu_ns_per_event;
        figures["source_eps"] =
            source_consumer(options, broker.bootstraps(), written, "source-" + std::to_string(rep));
        figures["source_cpu_ns"] = g_cpu_ns_per_event;
        figures["source_vs_raw_consumer"] = figures["source_eps"] / figures["raw_consumer_eps"];
        figures["source_vs_raw_consumer_cpu"] =
            figures["raw_consumer_cpu_ns"] / figures["source_cpu_ns"];
      }
      // Each rep's figures on stderr, to see how much they spread within a run.
      for (const auto& [key, value] : figures)
        std::fprintf(stderr, "  %s %.3f\n", key.c_str(), value);
      if (rep == 0) continue;
      for (const auto& [key, value] : figures)
        runs[key].push_back(value);
    }
    nlohmann::json result = {
        {"events", options.events}, {"reps", options.reps}, {"partitions", options.partitions}};
    for (const auto& [key, values] : runs)
      result[key] = median(values);
    if (options.json) {
      std::printf("%s\n", result.dump().c_str());
    } else {
      std::printf("%-28s %14s\n", "figure (median)", "value");
      for (const char* key : {"raw_producer_eps",
                              "adapter_eps",
                              "adapter_vs_raw_producer",
                              "raw_producer_cpu_ns",
                              "adapter_cpu_ns",
                              "adapter_vs_raw_producer_cpu",
                              "raw_consumer_eps",
                              "source_eps",
                              "source_vs_raw_consumer",
                              "raw_consumer_cpu_ns",
                              "source_cpu_ns",
                              "source_vs_raw_consumer_cpu",
                              "adapter_queued_eps",
                              "adapter_queued_vs_raw_producer",
                              "adapter_queued_cpu_ns",
                              "adapter_queued_vs_raw_producer_cpu",
                              "split_producer_eps",
                              "split_vs_raw_producer",
                              "split_producer_cpu_ns",
                              "split_vs_raw_producer_cpu",
                              "adapter_queued_vs_split_producer",
                              "adapter_queued_vs_split_producer_cpu"}) {
        if (result.contains(key)) std::printf("%-28s %14.3f\n", key, result[key].get<double>());
      }
      std::printf("(%zu events per run, %d reps after a warm-up, %d partitions)\n", options.events,
                  options.reps, options.partitions);
    }
    return 0;
  } catch (const Failure& failure) {
    std::fprintf(stderr, "emissions-kafka-bench: %s\n", failure.what());
    return 2;
  } catch (const emissions::ConfigError& error) {  // a property librdkafka refused
    std::fprintf(stderr, "emissions-kafka-bench: %s\n", error.what());
    return 2;
  }
}
