// The Kafka adapter: deliver() produces and settles the delivery reports that are ready,
// one poll thread settles them while no deliver() makes progress and replaces a producer
// stopped by a fatal error, terminate() waits for the reports and ends both. The producer
// instance and its records are in producer.*, the configuration in producer_config.*, the
// error classes in errors.*.
#include "emissions/adapters/kafka.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/best_effort.hpp"
#include "common/parking.hpp"
#include "common/status_copy.hpp"
#include "common/wait.hpp"
#include "emissions/telemetry.hpp"
#include "errors.hpp"
#include "kafka_access.hpp"
#include "producer.hpp"
#include "producer_config.hpp"

namespace emissions::adapters {

using detail::kafka::InFlight;
using detail::kafka::Producer;
using detail::kafka::Reports;

namespace {

// The idle poll thread's longest wait for a report (librdkafka's queue callback wakes it
// sooner, and so does terminate()).
constexpr std::chrono::milliseconds kPollInterval{100};
// While deliver() calls make progress, they serve the reports (on the thread that produced
// the messages, whose allocations librdkafka frees when it serves their reports: freeing
// them on another thread made each allocation take malloc's slow path, docs/BENCHMARKS.md),
// and the poll thread only looks this often whether one was called since its last look.
// Reports wait at most about twice this long once deliver() calls stop (or one is stuck in
// a settlement callback or on a full queue).
constexpr std::chrono::milliseconds kProducingCheck{1};
// After serving reports, the poll thread lets the next ones gather this long before it
// serves again (terminate() interrupts it): librdkafka wakes a waiting poll for every
// response it queues, and at high rates waking for each of them cost more CPU per event
// than serving them (docs/BENCHMARKS.md, Kafka, "The adapter's cost per event").
// Meanwhile deliver() serves what is ready after each batch it produces.
constexpr std::chrono::milliseconds kReportLinger{1};
// A deliver() that found librdkafka's queue full looks again at least this often.
constexpr std::chrono::milliseconds kQueueFullRecheck{100};
// After a fatal error, how long the retired producer's in-flight requests may take to get
// their real outcome before they are purged (failed retriably).
constexpr std::chrono::milliseconds kRetireGrace{2'000};
// The window the adapter asks the pipeline for (preferred_max_in_flight()).
constexpr std::size_t kPreferredMaxInFlight = 1'024;
// How often the poll thread tries again to create a producer after a failed re-creation.
constexpr std::chrono::milliseconds kRecreateInterval{1'000};

std::string describe_exception() {
  try {
    throw;
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "an exception that is not a std::exception";
  }
}

Deadline earliest(Deadline a, Deadline b) noexcept {
  return std::min(a, b);
}

}  // namespace

struct Kafka::State {
  explicit State(KafkaOptions opts) : options(std::move(opts)) {}

  [[nodiscard]] std::shared_ptr<Producer> current() const {
    std::lock_guard lock(producer_mutex);
    return producer;
  }
  void replace(std::shared_ptr<Producer> next) {
    std::lock_guard lock(producer_mutex);
    producer.swap(next);
  }  // `next` (the previous producer) is released here, without the lock

  std::string what() const { return "kafka '" + options.name + "'"; }

  void deliver(Delivery delivery) noexcept;
  // Produces events()[index] of `record`, waiting while librdkafka's queue is full. The
  // strings are deliver()'s buffers, reused from one event to the next.
  void produce_one(Producer& producer, InFlight& record, std::size_t index, std::string& topic,
                   std::string& key, std::string& value) noexcept;
  // A deliver() between its look at `closing` and the end of its produce() (see
  // `producing`); the last one out wakes a terminate() waiting for it.
  class ProduceSection {
   public:
    explicit ProduceSection(State& state) noexcept : state_(state) {
      state_.producing.fetch_add(1, std::memory_order_seq_cst);
    }
    ~ProduceSection() {
      if (state_.producing.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
          state_.closing.load(std::memory_order_seq_cst)) {
        state_.reports->reported.notify();
      }
    }
    ProduceSection(const ProduceSection&) = delete;
    ProduceSection& operator=(const ProduceSection&) = delete;

   private:
    State& state_;
  };
  void poll_loop() noexcept;
  // The end of the poll thread: fails what has no report and destroys the producers (out
  // of every librdkafka call, so also when terminate() ran inside one of its callbacks).
  void tear_down() noexcept;
  // Joins the poll thread, unless called on it (then it ends by itself after the callback
  // under way). Safe to call from several threads; blocks until the thread ended.
  void join_poll_thread() noexcept;
  [[nodiscard]] bool on_poll_thread() const noexcept {
    return std::this_thread::get_id() == poll_thread_id;
  }
  // A producer with the adapter's options whose fatal errors call on_fatal().
  std::shared_ptr<Producer> make_producer();
  // Replaces `failed` (still polling) by a new producer; the poll loop retires it.
  void on_fatal(Producer& failed) noexcept;
  // Waits (bounded) for what `retired` sent, purges the rest, releases it.
  void retire(std::shared_ptr<Producer> retired) noexcept;
  Status terminate(Deadline deadline) noexcept;

  const KafkaOptions options;
  const std::shared_ptr<Reports> reports = std::make_shared<Reports>();

  mutable std::mutex producer_mutex;
  std::shared_ptr<Producer> producer;  // guarded by producer_mutex; null after terminate()
  // Replaced producers, for the poll loop to retire, oldest first; guarded by
  // producer_mutex. Several can wait: fatal errors are met by whichever thread serves
  // reports (the poll thread, or a consumer thread in deliver()), so a second one can come
  // before the poll loop took the first.
  std::vector<std::shared_ptr<Producer>> retiring;

  std::atomic<bool> closing{false};  // terminate() began: deliver() takes nothing more
  // deliver() calls between their look at `closing` and the end of their produce() (which
  // never blocks): terminate() waits for none to be left before it counts what is
  // outstanding and tears the producer down, so that no message enters a producer nobody
  // polls. Both sides seq_cst: one of them sees the other.
  std::atomic<std::size_t> producing{0};
  std::atomic<bool> stop_polling{false};  // the poll thread must return
  // Bumped as each deliver() begins and ends: while it moves, the poll thread leaves the
  // reports to deliver() (poll_loop).
  std::atomic<std::uint64_t> progress{0};
  // The poll thread's kProducingCheck (in ns; tests set another, KafkaAccess).
  std::atomic<std::int64_t> producing_check_ns{std::chrono::nanoseconds(kProducingCheck).count()};
  std::atomic<std::uint64_t> poll_looks{0};  // the poll thread's turns (tests, KafkaAccess)
  std::atomic<bool> terminated{false};
  std::atomic<std::size_t> restarts{0};
  detail::WaitChannel poll_wake;  // wakes the poll thread when it waits without a producer
  // Messages without a report when the poll thread stopped serving them (written by it
  // before it ends).
  std::atomic<std::size_t> left_at_stop{0};
  // The poll thread has torn down (it only returns after this): a terminate() that found
  // another one under way waits for this, by its own deadline, instead of joining.
  std::atomic<bool> ended{false};
  detail::WaitChannel ended_wake;  // notified once `ended` is set
  std::mutex join_mutex;           // serializes joining (and detaching) poll_thread
  std::thread poll_thread;
  std::thread::id poll_thread_id;  // set once, before anyone but the thread sees the state
};

// --- deliver ------------------------------------------------------------------------------

void Kafka::State::deliver(Delivery delivery) noexcept {
  // Marks its beginning and its end for the poll thread (poll_loop).
  struct Progress {
    std::atomic<std::uint64_t>& count;
    explicit Progress(std::atomic<std::uint64_t>& c) noexcept : count(c) {
      count.fetch_add(1, std::memory_order_relaxed);
    }
    ~Progress() { count.fetch_add(1, std::memory_order_relaxed); }
    Progress(const Progress&) = delete;
    Progress& operator=(const Progress&) = delete;
  };
  const Progress mark(progress);
  try {
    if (closing.load(std::memory_order_acquire)) {
      delivery.fail(Status(Errc::closed, what() + " is terminated"));
      return;
    }
    std::shared_ptr<Producer> active = current();
    if (!active) {
      delivery.fail(Status(Errc::unavailable,
                           what() + " has no producer: creating a new one after a fatal error "
                                    "failed, trying again"));
      return;
    }
    InFlight& record = active->open(delivery);  // takes it once nothing can throw
    std::string topic;
    std::string key;
    std::string value;
    for (std::size_t i = 0; i < record.slots.size(); ++i) {
      produce_one(*active, record, i, topic, key, value);
      progress.fetch_add(1, std::memory_order_relaxed);  // a long batch is progress too
    }
    active->close(record);
    // Serves the reports that are ready (earlier batches' events, settled here): while
    // deliver() calls keep coming, the poll thread leaves them to this thread (poll_loop).
    // librdkafka frees each reported message on the thread that serves its report, and
    // freeing on the thread that allocated it (this one) is cheaper. The poll thread serves
    // whatever comes once no deliver() makes progress.
    // Not after a fatal error: then the poll thread alone serves the failed producer, so
    // that the purged messages' reports come after the new producer is in place.
    if (!active->fatal()) (void)active->poll(std::chrono::milliseconds(0));
  } catch (...) {
    // Out of memory (nothing else throws here) before the record existed: `delivery` fails
    // what it still holds, retriably. The message only if memory allows: this must not throw.
    delivery.fail(detail::status_or_bare(Errc::unavailable,
                                         [&] { return what() + ": " + describe_exception(); }));
  }
}

void Kafka::State::produce_one(Producer& active, InFlight& record, std::size_t index,
                               std::string& topic, std::string& key, std::string& value) noexcept {
  Delivery& delivery = record.delivery;
  const Event& event = delivery.events()[index];
  try {
    // User code first, with no lock of ours held. Without topic_for, the topic is the
    // option's own string (no copy per event).
    const std::string* topic_text = &options.topic;
    try {
      if (options.topic_for) {
        topic = options.topic_for(event);
        topic_text = &topic;
      }
    } catch (...) {
      delivery.fail(index, Status(Errc::internal, what() + ": topic_for threw for event " +
                                                      event.id.str() + " (" + event.name.str() +
                                                      "): " + describe_exception()));
      return;
    }
    if (topic_text->empty()) {
      delivery.fail(index, Status(Errc::invalid_argument,
                                  what() + ": topic_for returned no topic for event " +
                                      event.id.str() + " (" + event.name.str() + ")"));
      return;
    }
    try {
      if (options.key_for) {
        key = options.key_for(event);
      } else {
        key.clear();
      }
    } catch (...) {
      delivery.fail(index, Status(Errc::internal, what() + ": key_for threw for event " +
                                                      event.id.str() + " (" + event.name.str() +
                                                      "): " + describe_exception()));
      return;
    }
    value.clear();
    try {
      serialize_to(event, value);
    } catch (const nlohmann::json::exception& e) {
      delivery.fail(index, Status(Errc::invalid_argument,
                                  what() + ": event " + event.id.str() + " (" + event.name.str() +
                                      ") cannot be serialized: " + e.what()));
      return;
    }

    // Backpressure: a full queue is waited out (woken by each delivery report, looking again
    // at least every kQueueFullRecheck), never dropped; given up only at terminate() or once
    // the queue stayed full for a whole message.timeout.ms.
    std::optional<Deadline> give_up;
    for (;;) {
      // Checked before every attempt: terminate() may have begun meanwhile (on another
      // thread, or in a settlement callback inside the poll() below) and torn the producer
      // down. A message produced now would wait in a producer nobody polls, to be failed
      // (retriably) when it is destroyed.
      const std::size_t before = reports->outstanding.load(std::memory_order_acquire);
      bool closed_now = false;
      rd_kafka_resp_err_t error = RD_KAFKA_RESP_ERR_NO_ERROR;
      {
        const ProduceSection section(*this);
        closed_now = closing.load(std::memory_order_seq_cst);
        if (!closed_now) {
          error = active.produce(record, index, options.topic_for ? topic_text->c_str() : nullptr,
                                 key, value);
        }
      }
      if (closed_now) {  // failed out of the section: fail() may run a callback
        delivery.fail(index, give_up ? Status(Errc::overloaded,
                                              what() + ": librdkafka's queue stayed full until "
                                                       "terminate()")
                                     : Status(Errc::closed, what() + " is terminated"));
        return;
      }
      if (error == RD_KAFKA_RESP_ERR_NO_ERROR) return;
      if (error != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        delivery.fail(index, detail::kafka::event_status(error, *topic_text));
        return;
      }
      // Makes room by serving the reports that are ready, as the poll thread would.
      if (!active.fatal() && active.poll(std::chrono::milliseconds(0)) > 0) continue;
      if (!give_up) give_up = deadline_after(active.message_timeout());
      if (closing.load(std::memory_order_acquire) || expired(*give_up)) {
        delivery.fail(
            index, Status(Errc::overloaded, what() + ": librdkafka's queue stayed full (" +
                                                std::to_string(before) + " messages outstanding)" +
                                                (closing.load() ? " until terminate()" : "")));
        return;
      }
      (void)detail::wait_until(
          reports->reported,
          [&] {
            return reports->outstanding.load(std::memory_order_acquire) < before ||
                   closing.load(std::memory_order_acquire);
          },
          earliest(*give_up, deadline_after(kQueueFullRecheck)));
    }
  } catch (...) {
    // Out of memory (user code and serialization are caught above): retriable, with a
    // message only if memory allows (this must not throw).
    delivery.fail(index, detail::status_or_bare(Errc::unavailable, [&] {
                    return what() + ": " + describe_exception();
                  }));
  }
}

// --- the poll thread ----------------------------------------------------------------------

void Kafka::State::poll_loop() noexcept {
  std::uint64_t seen = progress.load(std::memory_order_acquire);
  while (!stop_polling.load(std::memory_order_acquire)) {
    std::shared_ptr<Producer> active = current();
    if (!active) {
      // A re-creation failed: try again now and then until terminate().
      (void)detail::wait_until(
          poll_wake, [&] { return stop_polling.load(std::memory_order_acquire); },
          deadline_after(kRecreateInterval));
      if (stop_polling.load(std::memory_order_acquire)) break;
      try {
        replace(make_producer());
        restarts.fetch_add(1, std::memory_order_relaxed);
      } catch (...) {
      }
      continue;
    }
    poll_looks.fetch_add(1, std::memory_order_relaxed);
    // Taken on every look, whichever way it goes: the idle wait below ends when `progress`
    // moves past it, so a stale one (a deliver() since, once terminate() began) would make
    // that wait return at once, again and again.
    const std::uint64_t now = progress.load(std::memory_order_acquire);
    const bool moved = now != seen;
    seen = now;
    if (moved && !closing.load(std::memory_order_acquire)) {
      // A deliver() began or ended since the last look: it serves the reports after its
      // batch. Looks again later; serves them here once a look saw no progress since the
      // one before (deliver() calls stopped, or one is stuck in a settlement callback or on
      // a full queue), and from terminate() on.
      active.reset();
      const std::int64_t check = producing_check_ns.load(std::memory_order_acquire);
      (void)detail::wait_until(
          poll_wake,
          [&] {
            return stop_polling.load(std::memory_order_acquire) ||
                   closing.load(std::memory_order_acquire) ||
                   producing_check_ns.load(std::memory_order_acquire) != check;
          },
          deadline_after(std::chrono::nanoseconds(check)));
    } else {
      // Cleared before serving: a report queued after this poll finds the queue empty and
      // sets it again (Producer::on_queue_ready).
      reports->ready.store(false, std::memory_order_seq_cst);
      const int served = active->poll(std::chrono::milliseconds(0));
      active.reset();
      if (served > 0) {
        (void)detail::wait_until(
            poll_wake, [&] { return stop_polling.load(std::memory_order_acquire); },
            deadline_after(kReportLinger));
      } else {
        (void)detail::wait_until(
            reports->ready_wake,
            [&] {
              return reports->ready.load(std::memory_order_seq_cst) ||
                     stop_polling.load(std::memory_order_acquire) ||
                     progress.load(std::memory_order_acquire) != seen;
            },
            deadline_after(kPollInterval));
      }
    }
    std::vector<std::shared_ptr<Producer>> retired;
    {
      std::lock_guard lock(producer_mutex);
      retired.swap(retiring);
    }
    for (std::shared_ptr<Producer>& each : retired)
      retire(std::move(each));
  }
  left_at_stop.store(reports->outstanding.load(std::memory_order_acquire),
                     std::memory_order_release);
  tear_down();
  ended.store(true, std::memory_order_release);
  ended_wake.notify();
}

void Kafka::State::tear_down() noexcept {
  std::shared_ptr<Producer> last;
  std::vector<std::shared_ptr<Producer>> retired;
  {
    std::lock_guard lock(producer_mutex);
    last.swap(producer);
    retired.swap(retiring);
  }
  for (std::shared_ptr<Producer>& each : retired) {
    each->purge(true);
    each->poll(std::chrono::milliseconds(0));
    each.reset();
  }
  if (last) {
    // What has no report yet fails now, retriably (at shutdown: counted dropped).
    last->purge(true);
    last->poll(std::chrono::milliseconds(0));
    last.reset();  // destroys the instance; fails anything librdkafka did not report
  }
}

void Kafka::State::join_poll_thread() noexcept {
  if (on_poll_thread()) return;
  std::lock_guard lock(join_mutex);
  if (poll_thread.joinable()) poll_thread.join();
}

std::shared_ptr<Producer> Kafka::State::make_producer() {
  return std::make_shared<Producer>(options, reports,
                                    [this](Producer& failed) { on_fatal(failed); });
}

void Kafka::State::on_fatal(Producer& failed) noexcept {
  // Inside the failed producer's poll() (on the poll thread, or on a consumer thread
  // serving reports in deliver()), before the reports of the messages librdkafka purges
  // because of the error, in the usual case: their retries find the new producer. (When
  // the two threads serve at once, a purged report may be served on the other thread
  // while this runs; its retry, after the retry policy's backoff, then finds the new one.)
  if (stop_polling.load(std::memory_order_acquire)) return;  // terminate() is under way
  std::shared_ptr<Producer> fresh;
  std::string failure;
  try {
    fresh = make_producer();
  } catch (...) {
    detail::best_effort([&] { failure = describe_exception(); });  // reporting only
  }
  std::shared_ptr<Producer> unqueued;  // out of memory to queue it: released below, unlocked
  {
    std::lock_guard lock(producer_mutex);
    if (producer.get() != &failed) return;  // already replaced
    try {
      retiring.push_back(std::move(producer));  // the poll loop retires it after its poll()
    } catch (...) {
      unqueued = std::move(producer);
    }
    producer = fresh;  // null when creation failed: tried again later
  }
  unqueued.reset();  // not the last reference: the caller of its poll() holds one
  restarts.fetch_add(fresh ? 1 : 0, std::memory_order_relaxed);
  if (telemetry::enabled()) {
    try {
      telemetry::execute({"emissions", "kafka", "restarted"}, {{"count", 1}},
                         {{"adapter", options.name},
                          {"reason", failed.fatal_reason()},
                          {"created", fresh != nullptr},
                          {"error", failure}});
    } catch (...) {
    }
  }
}

void Kafka::State::retire(std::shared_ptr<Producer> retired) noexcept {
  // librdkafka has already failed what the retired producer had not sent (reported as
  // __PURGE_QUEUE: unavailable). What it sent gets its real outcome if it comes soon;
  // the rest is purged and fails retriably too. The new producer is served meanwhile.
  const Deadline grace = deadline_after(kRetireGrace);
  while (retired->unreported() > 0 && !expired(grace) &&
         !stop_polling.load(std::memory_order_acquire)) {
    retired->poll(std::chrono::milliseconds(10));
    if (std::shared_ptr<Producer> active = current()) active->poll(std::chrono::milliseconds(0));
  }
  retired->purge(true);
  retired->poll(std::chrono::milliseconds(0));
  // Released here, or by a deliver() still holding it: ~Producer fails what is left.
}

// --- terminate ----------------------------------------------------------------------------

Status Kafka::State::terminate(Deadline deadline) noexcept {
  // On the poll thread (a settlement callback or a telemetry handler shutting the Emitter
  // down, or dropping the adapter): it serves the delivery reports and cannot wait for
  // them, nor join itself, nor destroy a producer whose poll() it is inside. It stops
  // taking events and polling; once the callback under way returns, it fails what has no
  // report and destroys the producer (tear_down), and a later terminate() or the
  // destructor on another thread joins it.
  const bool self = on_poll_thread();
  if (terminated.exchange(true, std::memory_order_acq_rel)) {
    // Another terminate() is under way or done: waits for the poll thread's end by this
    // call's own deadline (never on the poll thread itself), then joins it (quick: it has
    // ended). join_mutex is never held while the thread may still run a callback.
    if (self) return {};
    if (!detail::wait_until(
            ended_wake, [&] { return ended.load(std::memory_order_acquire); }, deadline)) {
      return Status(Errc::timeout, what() +
                                       ": terminate() under way on another thread had not "
                                       "finished by this call's deadline");
    }
    join_poll_thread();
    return {};
  }
  const auto started = std::chrono::steady_clock::now();
  closing.store(true, std::memory_order_seq_cst);
  reports->reported.notify();  // a deliver() waiting for room gives up
  poll_wake.notify();          // the poll thread serves the reports from now on (poll_loop)
  // A deliver() that looked at `closing` before it was set may be inside produce() (never
  // blocking): its message is counted below once it returns. By this call's deadline.
  (void)detail::wait_until(
      reports->reported, [&] { return producing.load(std::memory_order_seq_cst) == 0; }, deadline);

  if (!self) {
    const Deadline flush_deadline = earliest(deadline, deadline_after(options.flush_timeout));
    (void)detail::wait_until(
        reports->reported,
        [&] { return reports->outstanding.load(std::memory_order_acquire) == 0; }, flush_deadline);
  }

  stop_polling.store(true, std::memory_order_release);
  if (std::shared_ptr<Producer> active = current()) active->wake_poll();
  poll_wake.notify();
  reports->ready_wake.notify();
  // No report is served meanwhile on the poll thread itself: `left` is exact either way.
  std::size_t left = 0;
  if (self) {
    left = reports->outstanding.load(std::memory_order_acquire);
  } else {
    // The thread ends within kPollInterval and its tear-down (purge, destroy the producer);
    // waited for without join_mutex, then joined.
    (void)detail::wait_until(
        ended_wake, [&] { return ended.load(std::memory_order_acquire); }, Deadline::max());
    join_poll_thread();
    left = left_at_stop.load(std::memory_order_acquire);
  }

  const auto duration = std::chrono::steady_clock::now() - started;
  Status status;
  try {
    if (telemetry::enabled()) {
      telemetry::execute(
          {"emissions", "kafka", "terminated"},
          {{"left", left},
           {"duration", std::chrono::duration_cast<std::chrono::nanoseconds>(duration).count()}},
          {{"adapter", options.name}});
    }
    if (left != 0) {
      status =
          Status(Errc::timeout,
                 what() + ": " + std::to_string(left) +
                     (self ? " messages had no delivery report when terminate() was called on the "
                             "adapter's poll thread (which cannot wait for them); they are failed "
                             "once the callback under way returns"
                           : " messages had no delivery report by the deadline (flush_timeout " +
                                 std::to_string(options.flush_timeout.count()) +
                                 " ms); they were failed"));
    }
  } catch (...) {
    if (left != 0) status = Status(Errc::timeout, {});
  }
  return status;
}

// --- Kafka ------------------------------------------------------------------------------

Kafka::Kafka(KafkaOptions options) {
  detail::kafka::check_options(options);
  auto state = std::make_shared<State>(std::move(options));
  state->producer = state->make_producer();
  // The thread keeps the state alive: it may outlive this object (see ~Kafka).
  state->poll_thread = std::thread([keep = state] { keep->poll_loop(); });
  state->poll_thread_id = state->poll_thread.get_id();
  state_ = std::move(state);
}

Kafka::~Kafka() {
  (void)state_->terminate(deadline_after(std::chrono::nanoseconds::zero()));
  if (!state_->on_poll_thread()) {
    // terminate() was called before (maybe on the poll thread, which ends by itself once
    // its callback returns): the thread is joined here.
    state_->join_poll_thread();
  } else {
    // The last reference was dropped on the poll thread, inside a callback: no thread is
    // left to join it, and it cannot join itself. It ends by itself once the callback
    // returns (tear_down, then its reference to the state is the last), touching nothing
    // but the state it keeps alive and the Deliveries it settles (safe after the Emitter is
    // gone). This is the one case where the thread is not joined by its owner.
    std::lock_guard lock(state_->join_mutex);
    if (state_->poll_thread.joinable()) state_->poll_thread.detach();
  }
}

void Kafka::deliver(Delivery delivery) {
  // Pinned: a callback run inside deliver() (a settlement, or telemetry of an error served
  // with the reports) may drop the last reference to this adapter.
  const std::shared_ptr<State> state = state_;
  state->deliver(std::move(delivery));
}

Status Kafka::flush(Deadline deadline) {
  (void)deadline;
  return {};
}

Status Kafka::terminate(Deadline deadline) {
  // Pinned, as in deliver(): its telemetry handler may drop the last reference.
  const std::shared_ptr<State> state = state_;
  return state->terminate(deadline);
}

std::string_view Kafka::name() const {
  return state_->options.name;
}

std::size_t Kafka::preferred_max_in_flight() const noexcept {
  return kPreferredMaxInFlight;
}

std::size_t Kafka::outstanding() const noexcept {
  return state_->reports->outstanding.load(std::memory_order_relaxed);
}

}  // namespace emissions::adapters

namespace emissions::detail {

rd_kafka_resp_err_t KafkaAccess::raise_fatal(adapters::Kafka& kafka, rd_kafka_resp_err_t error,
                                             const char* reason) {
  const std::shared_ptr<kafka::Producer> active = kafka.state_->current();
  if (!active) return RD_KAFKA_RESP_ERR__STATE;
  return rd_kafka_test_fatal_error(active->client(), error, reason);
}

std::uint64_t KafkaAccess::poll_looks(const adapters::Kafka& kafka) noexcept {
  return kafka.state_->poll_looks.load(std::memory_order_relaxed);
}

std::size_t KafkaAccess::restarts(const adapters::Kafka& kafka) noexcept {
  return kafka.state_->restarts.load(std::memory_order_relaxed);
}

void KafkaAccess::set_producing_check(adapters::Kafka& kafka,
                                      std::chrono::nanoseconds interval) noexcept {
  kafka.state_->producing_check_ns.store(interval.count(), std::memory_order_release);
  kafka.state_->poll_wake.notify();
}

}  // namespace emissions::detail
