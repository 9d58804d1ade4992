#include "producer.hpp"

#include <algorithm>
#include <array>
#include <functional>
#include <utility>

#include "common/status_copy.hpp"
#include "emissions/telemetry.hpp"
#include "errors.hpp"
#include "producer_config.hpp"

namespace emissions::detail::kafka {
namespace {

int to_poll_ms(std::chrono::milliseconds timeout) noexcept {
  if (timeout.count() <= 0) return 0;
  if (timeout.count() > 60'000) return 60'000;
  return static_cast<int>(timeout.count());
}

}  // namespace

// The successful delivery reports one poll() served on this thread, settled together once
// librdkafka's poll returns (Producer::poll()). One per poll() under way on the thread (a
// settlement may run code that polls again: the inner one has its own).
struct Producer::Collector {
  Producer* owner = nullptr;
  Collector* outer = nullptr;
  std::vector<InFlight::Slot*> slots;  // reports served and not yet settled
};

namespace {
thread_local Producer::Collector* t_collector = nullptr;
// Reused by the outermost poll() of each thread: no allocation per poll in steady state.
thread_local std::vector<InFlight::Slot*> t_spare;
}  // namespace

InFlight::InFlight(Producer& owner, std::size_t events) : producer(owner) {
  slots.resize(events);
  for (std::size_t i = 0; i < slots.size(); ++i)
    slots[i] = Slot{this, i};
}

Producer::Producer(const adapters::KafkaOptions& options, std::shared_ptr<Reports> reports,
                   FatalHook on_fatal)
    : name_(options.name), reports_(std::move(reports)), on_fatal_(std::move(on_fatal)) {
  CreatedProducer created = create_producer(
      options, ProducerCallbacks{&Producer::on_delivery_report, &Producer::on_error, this});
  message_timeout_ = created.message_timeout;
  client_ = std::move(created.client);
  main_queue_.reset(rd_kafka_queue_get_main(client_.get()));
  // The poll thread waits on our own channel, not inside librdkafka (kafka.cpp, poll_loop).
  rd_kafka_queue_cb_event_enable(main_queue_.get(), &Producer::on_queue_ready, reports_.get());
  if (!options.topic_for) {
    topic_name_ = options.topic;
    // The topic's settings are the instance's defaults, as for a message produced by name.
    topic_.reset(rd_kafka_topic_new(client_.get(), topic_name_.c_str(), nullptr));
  }
}

Producer::~Producer() {
  topic_.reset();
  rd_kafka_queue_cb_event_enable(main_queue_.get(), nullptr, nullptr);
  main_queue_.reset();
  client_.reset();  // no callback runs after this: every callback is served by poll()
  std::list<InFlight> left;
  {
    std::lock_guard lock(records_mutex_);
    left.swap(in_flight_);
  }
  const std::size_t lost = unreported_.exchange(0, std::memory_order_acq_rel);
  if (!left.empty()) {
    // A destructor must not throw: the message is built once, if memory allows, and each
    // record gets a copy of it or, when memory runs out, the code alone.
    const Status gone = status_or_bare(Errc::unavailable, [&] {
      return "kafka '" + name_ +
             "': the producer was destroyed before the message's delivery report";
    });
    for (InFlight& record : left)
      record.delivery.fail(copy_or_bare(gone));
  }
  if (lost != 0) {
    reports_->outstanding.fetch_sub(lost, std::memory_order_acq_rel);
    reports_->reported.notify();
  }
}

InFlight& Producer::open(Delivery& delivery) {
  // Allocates outside the lock, and before `delivery` is taken: out of memory here leaves
  // it to the caller, which fails it retriably (destroyed with the node, it would be failed
  // as abandoned: internal, for good).
  std::list<InFlight> node;
  node.emplace_back(*this, delivery.events().size());
  node.back().delivery = std::move(delivery);
  std::lock_guard lock(records_mutex_);
  in_flight_.splice(in_flight_.end(), node);
  InFlight& record = in_flight_.back();
  record.self = std::prev(in_flight_.end());
  return record;
}

rd_kafka_resp_err_t Producer::produce(InFlight& record, std::size_t index, const char* topic,
                                      std::string_view key, std::string_view value) {
  const Event& event = record.delivery.events()[index];
  // The header texts on the stack: rd_kafka_header_add() copies them.
  std::array<char, EventId::kTextSize> id{};
  (void)event.id.write_to(id.data());
  std::array<char, kMaxTimestampSize> emitted_at{};
  const char* emitted_at_end = format_timestamp_to(event.emitted_at, emitted_at.data());
  HeadersHandle headers(rd_kafka_headers_new(4));
  constexpr std::string_view kContentType = "application/json";
  const std::string_view name = event.name.view();
  (void)rd_kafka_header_add(headers.get(), "event-id", -1, id.data(),
                            static_cast<ssize_t>(id.size()));
  (void)rd_kafka_header_add(headers.get(), "event-name", -1, name.data(),
                            static_cast<ssize_t>(name.size()));
  (void)rd_kafka_header_add(headers.get(), "emitted-at", -1, emitted_at.data(),
                            static_cast<ssize_t>(emitted_at_end - emitted_at.data()));
  (void)rd_kafka_header_add(headers.get(), "content-type", -1, kContentType.data(),
                            static_cast<ssize_t>(kContentType.size()));

  std::array<rd_kafka_vu_t, 6> vus{};
  std::size_t n = 0;
  if (topic == nullptr && topic_) {
    vus[n].vtype = RD_KAFKA_VTYPE_RKT;
    vus[n++].u.rkt = topic_.get();
  } else {
    vus[n].vtype = RD_KAFKA_VTYPE_TOPIC;
    vus[n++].u.cstr = topic != nullptr ? topic : topic_name_.c_str();
  }
  if (!key.empty()) {
    vus[n].vtype = RD_KAFKA_VTYPE_KEY;
    vus[n].u.mem.ptr = const_cast<char*>(key.data());  // copied (RD_KAFKA_MSG_F_COPY)
    vus[n++].u.mem.size = key.size();
  }
  vus[n].vtype = RD_KAFKA_VTYPE_VALUE;
  vus[n].u.mem.ptr = const_cast<char*>(value.data());  // copied (RD_KAFKA_MSG_F_COPY)
  vus[n++].u.mem.size = value.size();
  vus[n].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
  vus[n++].u.i = RD_KAFKA_MSG_F_COPY;
  vus[n].vtype = RD_KAFKA_VTYPE_HEADERS;
  vus[n++].u.headers = headers.get();
  vus[n].vtype = RD_KAFKA_VTYPE_OPAQUE;
  vus[n++].u.ptr = &record.slots[index];

  // Counted before the call: the report may be served on the poll thread before it returns.
  record.unreported.fetch_add(1, std::memory_order_relaxed);
  unreported_.fetch_add(1, std::memory_order_relaxed);
  reports_->outstanding.fetch_add(1, std::memory_order_relaxed);
  const ErrorHandle error(rd_kafka_produceva(client_.get(), vus.data(), n));
  if (!error) {
    (void)headers.release();  // the message owns them now
    return RD_KAFKA_RESP_ERR_NO_ERROR;
  }
  record.unreported.fetch_sub(1, std::memory_order_relaxed);
  unreported_.fetch_sub(1, std::memory_order_relaxed);
  reports_->outstanding.fetch_sub(1, std::memory_order_relaxed);
  return rd_kafka_error_code(error.get());
}

void Producer::close(InFlight& record) noexcept {
  reported(record);
}

void Producer::reported(InFlight& record, std::size_t count) noexcept {
  if (record.unreported.fetch_sub(count, std::memory_order_acq_rel) != count) return;
  std::list<InFlight> done;
  {
    std::lock_guard lock(records_mutex_);
    done.splice(done.end(), in_flight_, record.self);
  }
  // `done` is destroyed here, without the lock: every event of its delivery is settled.
}

int Producer::poll(std::chrono::milliseconds timeout) noexcept {
  Collector collector;
  collector.owner = this;
  collector.outer = t_collector;
  if (collector.outer == nullptr) collector.slots.swap(t_spare);
  t_collector = &collector;
  const int served = rd_kafka_poll(client_.get(), to_poll_ms(timeout));
  t_collector = collector.outer;
  settle_collected(collector.slots);
  collector.slots.clear();
  if (collector.outer == nullptr) collector.slots.swap(t_spare);
  return served;
}

void Producer::settle_collected(std::vector<InFlight::Slot*>& slots) noexcept {
  if (slots.empty()) return;
  // Counted first, as for a report settled alone (on_delivery_report()).
  unreported_.fetch_sub(slots.size(), std::memory_order_acq_rel);
  reports_->outstanding.fetch_sub(slots.size(), std::memory_order_acq_rel);
  reports_->reported.notify();
  // A record's slots are contiguous and in index order: sorted by address, each record's
  // reports come together, in order.
  std::sort(slots.begin(), slots.end(), std::less<>());
  for (std::size_t first = 0; first < slots.size();) {
    InFlight& record = *slots[first]->record;
    std::size_t last = first + 1;
    while (last < slots.size() && slots[last]->record == &record)
      ++last;
    const std::size_t count = last - first;
    // Nothing else of the record unreported, and deliver()'s hold dropped: its unsettled
    // events are exactly these (the rest were settled by earlier reports, or failed before
    // they were produced), all delivered, settled in one call. Only these reports may
    // lower the count from here: it cannot change under this look.
    if (record.unreported.load(std::memory_order_acquire) == count) {
      record.delivery.ack();
    } else {
      for (std::size_t i = first; i < last; ++i)
        record.delivery.ack(slots[i]->index);
    }
    reported(record, count);
    first = last;
  }
}

void Producer::wake_poll() noexcept {
  rd_kafka_queue_yield(main_queue_.get());
}

void Producer::purge(bool in_flight) noexcept {
  int flags = RD_KAFKA_PURGE_F_QUEUE;
  if (in_flight) flags |= RD_KAFKA_PURGE_F_INFLIGHT;
  (void)rd_kafka_purge(client_.get(), flags);
}

std::size_t Producer::unreported() const noexcept {
  return unreported_.load(std::memory_order_acquire);
}

std::string Producer::fatal_reason() const {
  std::lock_guard lock(fatal_mutex_);
  return fatal_reason_;
}

void Producer::on_delivery_report(rd_kafka_t* /*client*/, const rd_kafka_message_t* message,
                                  void* opaque) noexcept {
  auto& self = *static_cast<Producer*>(opaque);
  auto* slot = static_cast<InFlight::Slot*>(message->_private);
  if (slot == nullptr) return;  // not ours (never happens: every message has its slot)
  if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR && t_collector != nullptr &&
      t_collector->owner == &self) {
    try {
      t_collector->slots.push_back(slot);  // settled when librdkafka's poll returns
      return;
    } catch (...) {  // out of memory: settled here, alone
    }
  }
  InFlight& record = *slot->record;
  // Counted first: once the event is settled a drain may return, and outstanding() must
  // not lag behind it.
  self.unreported_.fetch_sub(1, std::memory_order_acq_rel);
  self.reports_->outstanding.fetch_sub(1, std::memory_order_acq_rel);
  self.reports_->reported.notify();
  if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    record.delivery.ack(slot->index);
  } else {
    try {
      const char* topic = message->rkt != nullptr ? rd_kafka_topic_name(message->rkt) : "";
      record.delivery.fail(slot->index, event_status(message->err, topic));
    } catch (...) {  // out of memory for the message: the event fails with its error's
                     // class (retriable or not) and no message, which allocates nothing
      record.delivery.fail(
          slot->index,
          Status(permanent(message->err) ? Errc::invalid_argument : Errc::unavailable, {}));
    }
  }
  self.reported(record);
}

void Producer::on_queue_ready(rd_kafka_t* /*client*/, void* opaque) noexcept {
  auto& reports = *static_cast<Reports*>(opaque);
  reports.ready.store(true, std::memory_order_seq_cst);
  reports.ready_wake.notify();
}

void Producer::on_error(rd_kafka_t* client, int error, const char* reason, void* opaque) noexcept
    try {
  auto& self = *static_cast<Producer*>(opaque);
  const bool fatal = error == RD_KAFKA_RESP_ERR__FATAL;
  if (fatal) self.fatal_.store(true, std::memory_order_release);  // first: the rest may throw
  auto code = static_cast<rd_kafka_resp_err_t>(error);
  std::string text = reason != nullptr ? reason : "";
  if (fatal) {
    std::array<char, 512> original{};
    code = rd_kafka_fatal_error(client, original.data(), original.size());
    text = original.data();
    {
      std::lock_guard lock(self.fatal_mutex_);
      self.fatal_reason_ = std::string(rd_kafka_err2name(code)) + ": " + text;
    }
  }
  if (telemetry::enabled()) {
    try {
      telemetry::execute({"emissions", "kafka", "error"}, {{"count", 1}},
                         {{"adapter", self.name_},
                          {"code", rd_kafka_err2name(code)},
                          {"reason", text},
                          {"fatal", fatal}});
    } catch (...) {  // out of memory building the report: nothing escapes into librdkafka
    }
  }
  if (fatal && self.on_fatal_) self.on_fatal_(self);
} catch (...) {
}

}  // namespace emissions::detail::kafka
