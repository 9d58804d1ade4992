// The baselines measured beside the pipeline, with the same producer loop shape (10 events
// per commit, the same per-event work as Transaction::emit) and the same no-op adapters:
//
// * the limit: adapters called synchronously inside "commit" on the producer's thread,
//   no queue and no thread. No fan-out pipeline can beat it on one producer.
// * the fair pipeline: what a careful straightforward implementation does. One shared
//   immutable batch per commit (std::shared_ptr<const std::vector<Event>>), handed to every
//   adapter; per adapter one std::mutex + std::condition_variable + std::deque of batch
//   pointers and one consumer thread, which hands spans of at most max_demand events of
//   each batch to handle_events, as the pipeline does.
// * the naive pipeline: the same per-adapter mutex + condition variable + deque, but of
//   Event copies, locked and notified once per event and adapter.
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "bench.hpp"
#include "emissions/config.hpp"
#include "time/wall_clock.hpp"

namespace emissions::bench {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The per-event work of Transaction::emit without its argument checks: the same fields,
// the same clock, id generation and empty metadata object (one small allocation).
void build_commit(std::vector<Event>& buffer, EventName name, const nlohmann::json& payload) {
  for (std::size_t i = 0; i < kEventsPerCommit; ++i) {
    const auto now = detail::wall_now();
    buffer.emplace_back(name, payload, nlohmann::json(nlohmann::json::value_t::object),
                        EventId::generate(now), now);
  }
}

// Calls through the base class, as the pipeline does, so neither side is devirtualised.
void deliver_sync(const std::vector<std::shared_ptr<Adapter>>& adapters,
                  std::span<const Event> events, std::size_t max_demand) {
  for (const auto& adapter : adapters) {
    for (std::size_t offset = 0; offset < events.size(); offset += max_demand) {
      const std::size_t n = std::min(max_demand, events.size() - offset);
      const Status status = adapter->handle_events(events.subspan(offset, n));
      if (!status.ok()) throw BenchFailure("limit: adapter failed: " + status.to_string());
    }
  }
}

std::vector<std::uint64_t> counts_of(const std::vector<std::shared_ptr<NoOpAdapter>>& adapters) {
  std::vector<std::uint64_t> counts;
  for (const auto& adapter : adapters)
    counts.push_back(adapter->count());
  return counts;
}

void check_delivered(const char* what, const std::vector<std::shared_ptr<NoOpAdapter>>& adapters,
                     const std::vector<std::uint64_t>& before, std::uint64_t expected) {
  for (std::size_t i = 0; i < adapters.size(); ++i) {
    const std::uint64_t got = adapters[i]->count() - before[i];
    if (got != expected) {
      throw BenchFailure(std::string(what) + ": adapter " + std::to_string(i) + " received " +
                         std::to_string(got) + " events, expected " + std::to_string(expected));
    }
  }
}

std::vector<std::shared_ptr<Adapter>> as_base(
    const std::vector<std::shared_ptr<NoOpAdapter>>& adapters) {
  return {adapters.begin(), adapters.end()};
}

// One mutex + one condition variable + one unbounded std::deque per adapter, one consumer
// thread per adapter. commit() does, for each adapter and each event in turn: lock the
// adapter's mutex, push_back a copy of the event (the copy is made under the lock), unlock,
// notify_one. A consumer waits on the condition variable,
// moves up to max_demand events from the front of its deque into a local vector under the lock,
// unlocks, calls handle_events on them, and re-locks to count them as handled.
class NaivePipeline {
 public:
  NaivePipeline(const std::vector<std::shared_ptr<Adapter>>& adapters, std::size_t max_demand)
      : max_demand_(max_demand) {
    for (const auto& adapter : adapters) {
      lanes_.push_back(std::make_unique<Lane>());
      lanes_.back()->adapter = adapter;
    }
    for (auto& lane : lanes_) {
      Lane* l = lane.get();
      l->consumer = std::thread([this, l] { consume(*l); });
    }
  }

  ~NaivePipeline() {
    for (auto& lane : lanes_) {
      {
        std::lock_guard lock(lane->mutex);
        lane->stop = true;
      }
      lane->ready.notify_one();
    }
    for (auto& lane : lanes_)
      lane->consumer.join();
  }

  NaivePipeline(const NaivePipeline&) = delete;
  NaivePipeline& operator=(const NaivePipeline&) = delete;

  // Copies every event into every adapter's deque, then clears `events`.
  void commit(std::vector<Event>& events) {
    for (auto& lane : lanes_) {
      for (const Event& event : events) {
        {
          std::lock_guard lock(lane->mutex);
          lane->queue.push_back(event);
          ++lane->pushed;
          lane->max_depth = std::max(lane->max_depth, lane->queue.size());
        }
        lane->ready.notify_one();
      }
    }
    events.clear();
  }

  // Waits (no spinning) until every pushed event has been handled.
  void drain() {
    for (auto& lane : lanes_) {
      std::unique_lock lock(lane->mutex);
      lane->idle.wait(lock, [&] { return lane->handled == lane->pushed; });
    }
  }

  [[nodiscard]] std::uint64_t failures() {
    std::uint64_t total = 0;
    for (auto& lane : lanes_) {
      std::lock_guard lock(lane->mutex);
      total += lane->failed;
    }
    return total;
  }

  [[nodiscard]] std::size_t max_depth() {
    std::size_t depth = 0;
    for (auto& lane : lanes_) {
      std::lock_guard lock(lane->mutex);
      depth = std::max(depth, lane->max_depth);
    }
    return depth;
  }

 private:
  struct Lane {
    std::shared_ptr<Adapter> adapter;
    std::mutex mutex;
    std::condition_variable ready;  // the consumer waits here for events or stop
    std::condition_variable idle;   // drain() waits here for handled == pushed
    std::deque<Event> queue;
    std::uint64_t pushed = 0;
    std::uint64_t handled = 0;
    std::uint64_t failed = 0;
    std::size_t max_depth = 0;
    bool stop = false;
    std::thread consumer;
  };

  void consume(Lane& lane) {
    std::vector<Event> local;
    local.reserve(max_demand_);
    std::unique_lock lock(lane.mutex);
    for (;;) {
      lane.ready.wait(lock, [&] { return !lane.queue.empty() || lane.stop; });
      if (lane.queue.empty()) return;  // stopped and nothing left
      while (!lane.queue.empty() && local.size() < max_demand_) {
        local.push_back(std::move(lane.queue.front()));
        lane.queue.pop_front();
      }
      lock.unlock();
      const Status status = lane.adapter->handle_events(local);
      const std::size_t n = local.size();
      local.clear();
      lock.lock();
      if (!status.ok()) lane.failed += n;
      lane.handled += n;
      if (lane.handled == lane.pushed) lane.idle.notify_all();
    }
  }

  std::size_t max_demand_;
  std::vector<std::unique_ptr<Lane>> lanes_;
};

// One shared immutable batch per commit; per adapter one mutex + one condition variable +
// one std::deque of batch pointers, and one consumer thread. commit() locks each adapter's
// mutex once, pushes the batch pointer (a reference count increment), unlocks and calls
// notify_one. A consumer waits on the condition variable, takes every batch pointer queued so
// far under the lock, unlocks, hands each batch to handle_events in spans of at most
// max_demand events (a commit's 10 events are one call, as in the pipeline), drops its
// references (the last one frees the batch), and re-locks to count them as handled.
class FairPipeline {
 public:
  using BatchPtr = std::shared_ptr<const std::vector<Event>>;

  FairPipeline(const std::vector<std::shared_ptr<Adapter>>& adapters, std::size_t max_demand)
      : max_demand_(max_demand) {
    for (const auto& adapter : adapters) {
      lanes_.push_back(std::make_unique<Lane>());
      lanes_.back()->adapter = adapter;
    }
    for (auto& lane : lanes_) {
      Lane* l = lane.get();
      l->consumer = std::thread([this, l] { consume(*l); });
    }
  }

  ~FairPipeline() {
    for (auto& lane : lanes_) {
      {
        std::lock_guard lock(lane->mutex);
        lane->stop = true;
      }
      lane->ready.notify_one();
    }
    for (auto& lane : lanes_)
      lane->consumer.join();
  }

  FairPipeline(const FairPipeline&) = delete;
  FairPipeline& operator=(const FairPipeline&) = delete;

  // Hands `batch` to every adapter's queue.
  void commit(const BatchPtr& batch) {
    for (auto& lane : lanes_) {
      {
        std::lock_guard lock(lane->mutex);
        lane->queue.push_back(batch);
        lane->pushed += batch->size();
        lane->max_depth = std::max(lane->max_depth, lane->queue.size());
      }
      lane->ready.notify_one();
    }
  }

  // Waits (no spinning) until every pushed event has been handled.
  void drain() {
    for (auto& lane : lanes_) {
      std::unique_lock lock(lane->mutex);
      lane->idle.wait(lock, [&] { return lane->handled == lane->pushed; });
    }
  }

  [[nodiscard]] std::uint64_t failures() {
    std::uint64_t total = 0;
    for (auto& lane : lanes_) {
      std::lock_guard lock(lane->mutex);
      total += lane->failed;
    }
    return total;
  }

  // The deepest queue seen, in batches (commits).
  [[nodiscard]] std::size_t max_depth() {
    std::size_t depth = 0;
    for (auto& lane : lanes_) {
      std::lock_guard lock(lane->mutex);
      depth = std::max(depth, lane->max_depth);
    }
    return depth;
  }

 private:
  struct Lane {
    std::shared_ptr<Adapter> adapter;
    std::mutex mutex;
    std::condition_variable ready;  // the consumer waits here for batches or stop
    std::condition_variable idle;   // drain() waits here for handled == pushed
    std::deque<BatchPtr> queue;
    std::uint64_t pushed = 0;  // events
    std::uint64_t handled = 0;
    std::uint64_t failed = 0;
    std::size_t max_depth = 0;
    bool stop = false;
    std::thread consumer;
  };

  void consume(Lane& lane) {
    std::vector<BatchPtr> taken;
    std::unique_lock lock(lane.mutex);
    for (;;) {
      lane.ready.wait(lock, [&] { return !lane.queue.empty() || lane.stop; });
      if (lane.queue.empty()) return;  // stopped and nothing left
      while (!lane.queue.empty()) {
        taken.push_back(std::move(lane.queue.front()));
        lane.queue.pop_front();
      }
      lock.unlock();
      std::uint64_t handled = 0;
      std::uint64_t failed = 0;
      for (const BatchPtr& batch : taken) {
        const std::span<const Event> events(*batch);
        for (std::size_t offset = 0; offset < events.size(); offset += max_demand_) {
          const std::size_t n = std::min(max_demand_, events.size() - offset);
          if (!lane.adapter->handle_events(events.subspan(offset, n)).ok()) failed += n;
          handled += n;
        }
      }
      taken.clear();  // the last reference frees each batch, outside the lock
      lock.lock();
      lane.failed += failed;
      lane.handled += handled;
      if (lane.handled == lane.pushed) lane.idle.notify_all();
    }
  }

  std::size_t max_demand_;
  std::vector<std::unique_ptr<Lane>> lanes_;
};

}  // namespace

RunResult run_limit(const Workload& w) {
  if (w.producers != 1) throw BenchFailure("limit: single producer only");
  const auto adapters = make_adapters(w.adapters);
  const auto base = as_base(adapters);
  const std::size_t max_demand = PipelineOptions{}.max_demand;
  const nlohmann::json payload = make_payload(w.payload);
  const EventName name = bench_event_name();
  // Reused across commits: the limit never hands its buffer away.
  std::vector<Event> buffer;
  buffer.reserve(kEventsPerCommit);
  const auto one_commit = [&] {
    build_commit(buffer, name, payload);
    deliver_sync(base, buffer, max_demand);
    buffer.clear();
  };

  for (std::uint64_t done = 0; done < kWarmupEvents; done += kEventsPerCommit)
    one_commit();
  const auto before = counts_of(adapters);
  const std::uint64_t events = events_per_producer(w);
  const double cpu_start = process_cpu_seconds();
  const auto start = Clock::now();
  for (std::uint64_t done = 0; done < events; done += kEventsPerCommit)
    one_commit();
  RunResult result{events, seconds_since(start), process_cpu_seconds() - cpu_start};
  check_delivered("limit", adapters, before, events);
  return result;
}

RunResult run_naive(const Workload& w) {
  if (w.producers != 1) throw BenchFailure("naive: single producer only");
  const auto adapters = make_adapters(w.adapters);
  const nlohmann::json payload = make_payload(w.payload);
  const EventName name = bench_event_name();
  NaivePipeline pipeline(as_base(adapters), PipelineOptions{}.max_demand);
  std::vector<Event> buffer;
  buffer.reserve(kEventsPerCommit);

  for (std::uint64_t done = 0; done < kWarmupEvents; done += kEventsPerCommit) {
    build_commit(buffer, name, payload);
    pipeline.commit(buffer);
  }
  pipeline.drain();
  const auto before = counts_of(adapters);
  const std::uint64_t events = events_per_producer(w);
  const double cpu_start = process_cpu_seconds();
  const auto start = Clock::now();
  for (std::uint64_t done = 0; done < events; done += kEventsPerCommit) {
    build_commit(buffer, name, payload);
    pipeline.commit(buffer);
  }
  pipeline.drain();
  RunResult result{events, seconds_since(start), process_cpu_seconds() - cpu_start,
                   pipeline.max_depth()};
  if (const std::uint64_t failed = pipeline.failures(); failed != 0) {
    throw BenchFailure("naive: " + std::to_string(failed) + " events failed");
  }
  check_delivered("naive", adapters, before, events);
  return result;
}

RunResult run_fair(const Workload& w) {
  if (w.producers != 1) throw BenchFailure("fair: single producer only");
  const auto adapters = make_adapters(w.adapters);
  const nlohmann::json payload = make_payload(w.payload);
  const EventName name = bench_event_name();
  FairPipeline pipeline(as_base(adapters), PipelineOptions{}.max_demand);
  // A fresh vector per commit: the batch is shared with the consumers and immutable, so it
  // cannot be reused by the producer (the pipeline recycles its batches instead).
  const auto one_commit = [&] {
    auto batch = std::make_shared<std::vector<Event>>();
    batch->reserve(kEventsPerCommit);
    build_commit(*batch, name, payload);
    pipeline.commit(std::move(batch));
  };

  for (std::uint64_t done = 0; done < kWarmupEvents; done += kEventsPerCommit)
    one_commit();
  pipeline.drain();
  const auto before = counts_of(adapters);
  const std::uint64_t events = events_per_producer(w);
  const double cpu_start = process_cpu_seconds();
  const auto start = Clock::now();
  for (std::uint64_t done = 0; done < events; done += kEventsPerCommit)
    one_commit();
  pipeline.drain();
  RunResult result{events, seconds_since(start), process_cpu_seconds() - cpu_start,
                   pipeline.max_depth() * kEventsPerCommit};
  if (const std::uint64_t failed = pipeline.failures(); failed != 0) {
    throw BenchFailure("fair: " + std::to_string(failed) + " events failed");
  }
  check_delivered("fair", adapters, before, events);
  return result;
}

}  // namespace emissions::bench
