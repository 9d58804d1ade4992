// Internal: one librdkafka producer instance and the deliveries it has in flight.
//
// The adapter has one current Producer; a fatal error makes it create another and retire
// this one (kafka.cpp). Each batch handed to the adapter becomes an InFlight record of the
// Producer that produced it; each message's opaque points at its slot in the record, and
// its delivery report settles that event. A record lives until the last of its messages
// is reported (or, for messages librdkafka never reports, until the Producer is destroyed,
// which fails them).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/parking.hpp"
#include "emissions/adapters/kafka.hpp"
#include "emissions/delivery.hpp"
#include "handles.hpp"

namespace emissions::detail::kafka {

// What every Producer of one adapter shares with the adapter: the count of messages
// produced and not yet reported, and the channel notified each time it goes down (terminate
// and a full queue wait on it); and whether something came to be served (set by librdkafka's
// thread when a producer's report queue stops being empty, cleared by the poll thread
// before it serves), with the channel notified then (the idle poll thread waits on it).
struct Reports {
  std::atomic<std::size_t> outstanding{0};
  WaitChannel reported;
  std::atomic<bool> ready{false};
  WaitChannel ready_wake;
};

class Producer;

// One batch handed to deliver(), produced through one Producer.
struct InFlight {
  // The opaque of one message: which event of which record.
  struct Slot {
    InFlight* record = nullptr;
    std::size_t index = 0;
  };

  // Room for `events` slots; the delivery is moved in after (nothing allocates then).
  InFlight(Producer& owner, std::size_t events);

  Producer& producer;
  Delivery delivery;
  std::vector<Slot> slots;  // one per event; their addresses are the messages' opaques
  // Messages produced and not reported, + 1 while deliver() still produces (its hold).
  std::atomic<std::size_t> unreported{1};
  std::list<InFlight>::iterator self;  // its place in producer.in_flight_
};

// Owns one rd_kafka_t (a producer) and its in-flight records.
//
// Thread-safety: produce() and poll() may run on any number of threads; delivery reports are
// settled on the thread whose poll() serves them (the adapter's poll thread, or a consumer
// thread in deliver()). Settling (which runs the pipeline's telemetry)
// never happens under the record list's lock. The destructor must not run on a librdkafka
// thread.
class Producer {
 public:
  // Called on a polling thread, inside poll(), when librdkafka raises a fatal error (after
  // fatal() became true and, unless another thread serves reports at the same time, before
  // any delivery report librdkafka queues after the error, such as the reports of the
  // messages it purges because of it). Must not destroy the Producer. May be empty.
  using FatalHook = std::function<void(Producer&)>;

  // Creates the instance (ConfigError as create_producer()).
  Producer(const adapters::KafkaOptions& options, std::shared_ptr<Reports> reports,
           FatalHook on_fatal);
  // Destroys the instance (blocks until librdkafka's threads end), then fails every event
  // still unreported with `unavailable`.
  ~Producer();
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;

  // A new record for `delivery`, holding it open (unreported = 1) until close(). Allocates:
  // when that throws (out of memory), `delivery` is left as it was, for the caller to fail.
  InFlight& open(Delivery& delivery);
  // Produces events()[index] of `record`: to `topic` (non-empty, NUL-terminated; null: the
  // options' topic, through a handle kept for it), `key` (empty: null key), `value`, with
  // the headers (their texts written on the stack; librdkafka copies the key, the value and
  // the headers). NO_ERROR once librdkafka has it (its report settles it later); any other
  // code: not produced, nothing settled (the caller settles). Never blocks.
  rd_kafka_resp_err_t produce(InFlight& record, std::size_t index, const char* topic,
                              std::string_view key, std::string_view value);
  // Drops deliver()'s hold on `record`; destroys it if every message was reported.
  void close(InFlight& record) noexcept;

  // Serves delivery reports and client errors for up to `timeout` (0: what is there);
  // returns how many it served. Successful reports are counted and settled together once
  // librdkafka's poll returns (a record whose every report is among them with one
  // settlement call); failed ones, and client errors, as they are served. Any thread, also
  // two at once (librdkafka's queue hands each report to one of them): the poll thread, and
  // deliver() serving what is ready.
  int poll(std::chrono::milliseconds timeout) noexcept;
  // Makes a poll() under way return soon (any thread).
  void wake_poll() noexcept;
  // Fails the messages not yet sent and, with `in_flight`, those sent and not answered:
  // their reports (retriable `unavailable`) come with the next poll().
  void purge(bool in_flight) noexcept;

  // Messages produced through this instance and not reported.
  [[nodiscard]] std::size_t unreported() const noexcept;
  // librdkafka raised a fatal error: this instance produces nothing more.
  [[nodiscard]] bool fatal() const noexcept { return fatal_.load(std::memory_order_acquire); }
  // The fatal error, for people.
  [[nodiscard]] std::string fatal_reason() const;
  // The producer's message.timeout.ms.
  [[nodiscard]] std::chrono::milliseconds message_timeout() const noexcept {
    return message_timeout_;
  }
  // The underlying instance, for tests (detail::KafkaAccess) only.
  [[nodiscard]] rd_kafka_t* client() const noexcept { return client_.get(); }

 private:
  static void on_delivery_report(rd_kafka_t* client, const rd_kafka_message_t* message,
                                 void* opaque) noexcept;
  static void on_error(rd_kafka_t* client, int error, const char* reason, void* opaque) noexcept;
  // On a librdkafka thread, the report queue having been empty: sets reports_->ready and
  // wakes a poll thread waiting for it. Touches nothing else (no librdkafka call).
  static void on_queue_ready(rd_kafka_t* client, void* opaque) noexcept;
  // `count` messages of `record` were reported: counts them, destroys the record after
  // the last.
  void reported(InFlight& record, std::size_t count = 1) noexcept;
  // Settles the successful reports poll() collected (their messages not counted yet).
  void settle_collected(std::vector<InFlight::Slot*>& slots) noexcept;

 public:
  struct Collector;  // producer.cpp

 private:
  std::string name_;
  std::shared_ptr<Reports> reports_;
  FatalHook on_fatal_;
  std::atomic<std::size_t> unreported_{0};
  std::atomic<bool> fatal_{false};
  mutable std::mutex fatal_mutex_;
  std::string fatal_reason_;  // guarded by fatal_mutex_

  std::mutex records_mutex_;
  std::list<InFlight> in_flight_;  // guarded by records_mutex_

  std::chrono::milliseconds message_timeout_{300'000};
  std::string topic_name_;  // the options' topic ("" with topic_for)
  ClientHandle client_;     // declared before main_queue_ and topic_: destroyed after them
  QueueHandle main_queue_;  // rd_kafka_poll()'s queue, to interrupt a poll
  // The options' topic (null with topic_for, or if librdkafka refused it: then produced by
  // name). Produced through it, a message skips the lookup of its topic by name, which
  // takes the instance's lock for writing.
  TopicHandle topic_;
};

}  // namespace emissions::detail::kafka
