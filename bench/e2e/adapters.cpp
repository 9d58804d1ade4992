// The counting adapters of the pipeline runs (the no-op one is in bench.hpp): asynchronous
// ones that ack inline or from a thread of their own, and a synchronous one that fails a
// tenth of its batches once. Each counts what it accepted, so every run checks that every
// event arrived exactly once.
#include <condition_variable>
#include <deque>
#include <mutex>
#include <stop_token>
#include <thread>
#include <unordered_set>

#include "bench.hpp"
#include "emissions/delivery.hpp"

namespace emissions::bench {
namespace {

// Acks every Delivery inside deliver(): the cost of the asynchronous path itself (a
// Delivery handle, per-event settlement flags, the window) against NoOpAdapter.
class InlineAckAdapter final : public AsyncAdapter {
 public:
  explicit InlineAckAdapter(std::string name) : name_(std::move(name)) {}
  [[nodiscard]] std::string_view name() const override { return name_; }
  void deliver(Delivery delivery) override {
    // Counted before the ack: once acked, a drain may return and read the count.
    accepted_.fetch_add(delivery.events().size(), std::memory_order_relaxed);
    delivery.ack();
  }
  [[nodiscard]] std::uint64_t accepted() const noexcept {
    return accepted_.load(std::memory_order_relaxed);
  }

 private:
  std::string name_;
  alignas(64) std::atomic<std::uint64_t> accepted_{0};
};

// Delivery-report style: deliver() queues the handle and returns; one thread the adapter
// owns takes every queued handle at once and acks them outside the lock (as a client
// library's callback thread would once its broker confirmed them). The thread is a
// std::jthread: it is asked to stop and joined when the adapter is destroyed (after the
// Emitter, which drained first); it acks what is still queued before it exits.
class ThreadAckAdapter final : public AsyncAdapter {
 public:
  explicit ThreadAckAdapter(std::string name)
      : name_(std::move(name)), acker_([this](std::stop_token stop) { ack_loop(stop); }) {}
  [[nodiscard]] std::string_view name() const override { return name_; }
  void deliver(Delivery delivery) override {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(delivery));
    }
    ready_.notify_one();
  }
  [[nodiscard]] std::uint64_t accepted() const noexcept {
    return accepted_.load(std::memory_order_relaxed);
  }

 private:
  void ack_loop(const std::stop_token& stop) {
    std::deque<Delivery> taken;
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        // Woken by deliver() or by the destructor's stop request.
        ready_.wait(lock, stop, [&] { return !queue_.empty(); });
        if (queue_.empty()) return;  // stop requested and nothing left to ack
        taken.swap(queue_);
      }
      for (Delivery& delivery : taken) {
        // Counted before the ack: once acked, a drain may return and read the count.
        accepted_.fetch_add(delivery.events().size(), std::memory_order_relaxed);
        delivery.ack();
      }
      taken.clear();
    }
  }

  std::string name_;
  std::mutex mutex_;
  std::condition_variable_any ready_;
  std::deque<Delivery> queue_;
  alignas(64) std::atomic<std::uint64_t> accepted_{0};
  std::jthread acker_;  // last: stopped and joined before the members above go away
};

// Fails every 10th batch it sees for the first time with `unavailable`, once: a retried
// batch (recognised by its first event's id, which head-of-line redelivery keeps first)
// is accepted. Called by one consumer thread at a time (concurrency 1); the counters are
// atomics so that the producer's thread reads them after a drain.
class FlakyAdapter final : public Adapter {
 public:
  static constexpr std::uint64_t kFailEvery = 10;

  explicit FlakyAdapter(std::string name) : name_(std::move(name)) {}
  [[nodiscard]] std::string_view name() const override { return name_; }
  Status handle_events(std::span<const Event> batch) override {
    if (batch.empty()) return {};
    const EventId& first = batch.front().id;
    if (const auto it = failed_.find(first); it != failed_.end()) {
      failed_.erase(it);  // the retry of a batch failed before: accept it
    } else if (++fresh_ % kFailEvery == 0) {
      failed_.insert(first);
      injected_.fetch_add(batch.size(), std::memory_order_relaxed);
      return Status(Errc::unavailable, "injected failure (emissions-bench)");
    }
    accepted_.fetch_add(batch.size(), std::memory_order_relaxed);
    return {};
  }
  [[nodiscard]] std::uint64_t accepted() const noexcept {
    return accepted_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t injected() const noexcept {
    return injected_.load(std::memory_order_relaxed);
  }

 private:
  std::string name_;
  std::unordered_set<EventId> failed_;  // first ids of the batches failed and not yet retried
  std::uint64_t fresh_ = 0;             // batches seen for the first time
  alignas(64) std::atomic<std::uint64_t> accepted_{0};
  std::atomic<std::uint64_t> injected_{0};
};

template <typename A>
BenchAdapter counted(std::shared_ptr<A> adapter) {
  BenchAdapter out;
  out.accepted = [adapter] { return adapter->accepted(); };
  out.injected = [] { return std::uint64_t{0}; };
  out.adapter = std::move(adapter);
  return out;
}

}  // namespace

const char* describe(AdapterKind kind) {
  switch (kind) {
    case AdapterKind::sync:
      return "sync";
    case AdapterKind::async_inline:
      return "async-inline";
    case AdapterKind::async_thread:
      return "async-thread";
    case AdapterKind::sync_flaky:
      return "flaky";
  }
  return "unknown";
}

std::vector<BenchAdapter> make_bench_adapters(AdapterKind kind, std::size_t count) {
  std::vector<BenchAdapter> out;
  out.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    std::string name = std::string(describe(kind)) + "-" + std::to_string(i);
    switch (kind) {
      case AdapterKind::sync: {
        auto adapter = std::make_shared<NoOpAdapter>(std::move(name));
        BenchAdapter b;
        b.accepted = [adapter] { return adapter->count(); };
        b.injected = [] { return std::uint64_t{0}; };
        b.adapter = std::move(adapter);
        out.push_back(std::move(b));
        break;
      }
      case AdapterKind::async_inline:
        out.push_back(counted(std::make_shared<InlineAckAdapter>(std::move(name))));
        break;
      case AdapterKind::async_thread:
        out.push_back(counted(std::make_shared<ThreadAckAdapter>(std::move(name))));
        break;
      case AdapterKind::sync_flaky: {
        auto adapter = std::make_shared<FlakyAdapter>(std::move(name));
        BenchAdapter b = counted(adapter);
        b.injected = [adapter] { return adapter->injected(); };
        out.push_back(std::move(b));
        break;
      }
    }
  }
  return out;
}

FastClock::FastClock(double speedup)
    : origin_(std::chrono::steady_clock::now()), speedup_(speedup) {}

Clock::time_point FastClock::now() const noexcept {
  const auto real = std::chrono::steady_clock::now() - origin_;
  return origin_ +
         duration(static_cast<duration::rep>(static_cast<double>(real.count()) * speedup_));
}

Clock::time_point FastClock::wake_time(time_point deadline) const noexcept {
  if (deadline == time_point::max()) return deadline;
  const auto ahead = deadline - origin_;
  return origin_ +
         duration(static_cast<duration::rep>(static_cast<double>(ahead.count()) / speedup_));
}

}  // namespace emissions::bench
