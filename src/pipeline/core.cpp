// The pipeline's construction, threads and statistics. Publishing, consuming, deliveries
// and the lifecycle (drain, shutdown) have files of their own in this folder.
#include "pipeline/core.hpp"

#include "spool/spool.hpp"

#include <algorithm>
#include <set>

#include "common/config_check.hpp"
#include "handlers/dispatcher.hpp"
#include "pipeline/delivery_state.hpp"
#include "pipeline/relay_window.hpp"
#include "spool/spool.hpp"

namespace emissions::detail {
namespace {

std::atomic<std::uint32_t> g_next_shard{0};

// The handler dispatcher's ring has room for twice its buffer: requests' commits fill at
// most buffer_size, and handlers' cascades (which never wait for this queue, see publish)
// may use the rest before they are refused.
constexpr std::size_t kCascadeHeadroom = 2;

// How many deliveries an asynchronous consumer's retry box has room for from the start
// (16 bytes each): the default window's worth, or the lane's window if smaller.
constexpr std::size_t kReservedUndecided = 1'024;

// The lane options of `adapter`: `options` over the pipeline's. An AsyncAdapter without
// max_in_flight gets the window it prefers (AsyncAdapter::preferred_max_in_flight()), but
// at most a queue's worth of batches (buffer_size / max_demand; never less than the
// default): events in flight are outside the queue's bound, and a preference must not
// multiply the memory a lane may hold.
LaneOptions lane_options_for(const std::string& where, const PipelineOptions& p,
                             const AdapterOptions& options, const Adapter& adapter) {
  const auto* async_adapter = dynamic_cast<const AsyncAdapter*>(&adapter);
  LaneOptions lane = resolve_lane_options(where, p, options, async_adapter != nullptr);
  if (async_adapter != nullptr && !options.max_in_flight) {
    if (const std::size_t preferred = async_adapter->preferred_max_in_flight(); preferred != 0) {
      const std::size_t budget =
          std::max(lane.max_in_flight, std::min(kMaxInFlight, lane.buffer_size / lane.max_demand));
      lane.max_in_flight = std::min(preferred, budget);
    }
  }
  return lane;
}

}  // namespace

Lane::Lane(std::shared_ptr<Adapter> a, LaneOptions o, std::size_t lane_index)
    : adapter(std::move(a)),
      async(dynamic_cast<AsyncAdapter*>(adapter.get())),
      counters(std::make_shared<LaneCounters>(std::string(adapter->name()))),
      name(counters->name),
      options(std::move(o)),
      index(lane_index) {}

bool Queue::handed_over_below(std::size_t target) const noexcept {
  if (ring.head() < target) return false;
  if (evicting.load(std::memory_order_seq_cst) != 0) return false;
  for (const Consumer* consumer : consumers) {
    if (consumer->claim.load(std::memory_order_seq_cst) < target) return false;
  }
  return true;
}

bool Queue::settled_below(std::size_t target) const {
  for (const Consumer* consumer : consumers) {
    if (consumer->retries && consumer->retries->size.load(std::memory_order_seq_cst) != 0 &&
        consumer->retries->holds_below(target)) {
      return false;
    }
    const Window* window = consumer->window.get();
    if (window == nullptr || window->size.load(std::memory_order_seq_cst) == 0) continue;
    std::lock_guard lock(consumer->window->mutex);
    for (const auto& delivery : window->open) {
      if (delivery->ticket < target) return false;
    }
  }
  return true;
}

Core::Core(Config config)
    : shared_(std::make_shared<PipelineShared>()),
      clock_(config.clock ? config.clock : std::make_shared<SteadyClock>()) {
  validate_pipeline(config);
  const PipelineOptions& p = config.pipeline;
  std::set<std::string> names;
  std::set<const Adapter*> instances;
  std::vector<std::pair<std::shared_ptr<Adapter>, LaneOptions>> specs;
  for (std::size_t i = 0; i < config.adapters.size(); ++i) {
    auto& entry = config.adapters[i];
    const std::string where = "adapters[" + std::to_string(i) + "]";
    if (!entry.adapter) config_error(where, "a non-null adapter", "nullptr");
    const std::string name(entry.adapter->name());
    if (name.empty()) config_error(where + ".name()", "non-empty", "\"\"");
    if (!instances.insert(entry.adapter.get()).second) {
      config_error(where, "an adapter object added once", "'" + name + "' again");
    }
    if (!names.insert(name).second) {
      config_error(where + ".name()", "unique among adapters", "'" + name + "'");
    }
    LaneOptions lane =
        lane_options_for(where + " ('" + name + "')", p, entry.options, *entry.adapter);
    if (lane.deliver_on_commit && config.spool) {
      // With a spool the commit appends to the log and its relay hands the batches over:
      // no committing thread is there to deliver them.
      config_error(where + " ('" + name + "').deliver_on_commit",
                   "false with a spool (its relay hands the batches over)", "true");
    }
    specs.emplace_back(std::move(entry.adapter), std::move(lane));
  }
  // Dead-letter adapters: distinct instances, none of them a configured adapter or sharing
  // a name with one; each gets a lane of its own with the pipeline's defaults.
  std::vector<std::pair<std::shared_ptr<Adapter>, LaneOptions>> dead_letters;
  std::vector<std::size_t> dead_letter_of(specs.size(), static_cast<std::size_t>(-1));
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const std::shared_ptr<Adapter>& dl = specs[i].second.dead_letter;
    if (!dl) continue;
    const std::string where = "adapters[" + std::to_string(i) + "].dead_letter";
    const std::string source = "'" + std::string(specs[i].first->name()) + "'";
    if (instances.count(dl.get()) != 0) {
      config_error(where, "an adapter that is not also configured (of adapter " + source + ")",
                   "'" + std::string(dl->name()) + "', a configured adapter");
    }
    std::size_t found = dead_letters.size();
    for (std::size_t d = 0; d < dead_letters.size(); ++d) {
      if (dead_letters[d].first == dl) found = d;
    }
    if (found == dead_letters.size()) {
      const std::string name(dl->name());
      if (name.empty())
        config_error(where + ".name()", "non-empty (of adapter " + source + ")", "\"\"");
      if (names.count(name) != 0 || name == HandlerDispatcher::kName) {
        config_error(where + ".name()", "unique among adapters (of adapter " + source + ")",
                     "'" + name + "'");
      }
      names.insert(name);
      dead_letters.emplace_back(
          dl, lane_options_for(where + " ('" + name + "')", p, AdapterOptions{}, *dl));
      dead_letters.back().second.dead_letter.reset();
    }
    dead_letter_of[i] = found;
  }
  max_cascade_depth_ = config.max_cascade_depth;
  if (!config.handlers.empty()) {
    if (names.count(std::string(HandlerDispatcher::kName)) != 0) {
      config_error("adapters[].name()", "other than the handler dispatcher's reserved name",
                   "'" + std::string(HandlerDispatcher::kName) + "'");
    }
    if (config.handler_options.dead_letter) {
      config_error("handler_options.dead_letter",
                   "unset (a handler's failures are retried per handler_retry)",
                   "'" + std::string(config.handler_options.dead_letter->name()) + "'");
    }
    LaneOptions options = resolve_lane_options("handler_options", p, config.handler_options,
                                               /*async=*/false);
    dispatcher_ = std::make_shared<HandlerDispatcher>(
        config.handlers, config.handler_concurrency,
        std::max(config.handler_concurrency * options.max_demand, std::size_t{64}),
        config.handler_retry, clock_);
    specs.emplace_back(dispatcher_, std::move(options));
    dead_letter_of.push_back(static_cast<std::size_t>(-1));
  }
  routed_lanes_ = specs.size();
  for (auto& spec : dead_letters)
    specs.push_back(std::move(spec));
  for (auto& [adapter, options] : specs) {
    auto lane = std::make_unique<Lane>(std::move(adapter), std::move(options), lanes_.size());
    const bool is_dispatcher = dispatcher_ && lane->adapter == dispatcher_;
    // Partitioned: one queue per consumer, each holding its partition's events, sized so
    // that all of them together hold at most buffer_size events. Otherwise one shared queue.
    const LaneOptions& o = lane->options;
    const std::size_t queue_count = o.partition_by ? o.concurrency : 1;
    const std::size_t per_queue = (o.buffer_size + queue_count - 1) / queue_count;
    const std::size_t slots = is_dispatcher ? per_queue * kCascadeHeadroom : per_queue;
    for (std::size_t i = 0; i < queue_count; ++i) {
      lane->queues.push_back(std::make_unique<Queue>(per_queue, slots, i, all_queues_.size()));
      all_queues_.push_back(lane->queues.back().get());
    }
    for (std::size_t i = 0; i < o.concurrency; ++i) {
      auto consumer = std::make_unique<Consumer>();
      consumer->queue = lane->queues[i % queue_count].get();
      consumer->queue->consumers.push_back(consumer.get());
      consumer->retries = std::make_shared<RetryBox>(shared_);
      if (lane->async) {
        consumer->window = std::make_shared<Window>();
        consumer->window->resume_at = resume_size(o.max_in_flight);
        // Room for every delivery of the window to wait for a decision at once (up to a
        // bound): a failure settled on a thread out of memory still reaches the consumer.
        consumer->retries->undecided.reserve(std::min(o.max_in_flight, kReservedUndecided));
      }
      consumer->retries->wakeup = &consumer->queue->wakeup;
      consumer->random.seed(static_cast<std::minstd_rand::result_type>(
          static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
          reinterpret_cast<std::uintptr_t>(consumer.get())));
      lane->consumers.push_back(std::move(consumer));
    }
    if (lane->options.deliver_on_commit) {
      lane->queues.front()->role_shared = true;  // concurrency 1: one queue, one consumer
      role_sharing_lanes_.push_back(lane.get());
    }
    if (is_dispatcher) dispatcher_lane_ = lane.get();
    lane->is_dead_letter = lanes_.size() >= routed_lanes_;
    lanes_.push_back(std::move(lane));
  }
  for (std::size_t i = 0; i < routed_lanes_; ++i) {
    if (dead_letter_of[i] != static_cast<std::size_t>(-1)) {
      lanes_[i]->dead_letter = lanes_[routed_lanes_ + dead_letter_of[i]].get();
    }
    settled_names_->push_back(lanes_[i]->name);
  }
  // The batch pool keeps as many batches as can be in the pipeline at once (each holds at
  // least one event): the largest lane's queues and its deliveries in flight.
  std::size_t batches = 0;
  for (const auto& lane : lanes_) {
    std::size_t held = lane->options.max_in_flight * lane->consumers.size();
    for (const auto& queue : lane->queues)
      held += queue->capacity;
    batches = std::max(batches, held);
  }
  shared_->pool.reserve(batches);
  if (config.spool) {
    // Last: every other mistake is reported before the directory is locked and opened.
    spool_ = spool::Spool::open(*config.spool, *settled_names_);
    // A full spool applies each lane's overflow policy (spool_overflow.cpp); a commit waits
    // as long as the most patient blocking lane would.
    std::vector<Overflow> policies;
    policies.reserve(routed_lanes_);
    for (std::size_t l = 0; l < routed_lanes_; ++l) {
      const LaneOptions& options = lanes_[l]->options;
      policies.push_back(options.overflow);
      if (options.overflow == Overflow::block) {
        spool_wait_ = std::max(spool_wait_, options.block_timeout);
      }
    }
    spool_->set_overflow(std::move(policies), [this](std::size_t lane, std::uint64_t events) {
      count_spool_overflow(lane, events);
    });
    if (spool_->live_handoff()) {
      // Each lane's window holds up to its buffer size in events, in at most 4096 commits.
      constexpr std::size_t kWindowCommits = 4096;
      windows_.reserve(routed_lanes_);
      windowing_.reserve(routed_lanes_);
      for (std::size_t l = 0; l < routed_lanes_; ++l) {
        std::size_t events = 0;
        for (const auto& queue : lanes_[l]->queues)
          events += queue->capacity;
        windows_.push_back(std::make_unique<RelayWindow>(lanes_[l]->queues.size(),
                                                         std::min(events, kWindowCommits), events));
      }
    }
  }
}

Core::~Core() {
  // Normally ~Emitter already shut down and finished; this covers a Core that never
  // started or whose owner skipped that.
  (void)shutdown(std::chrono::milliseconds(0));
  finish();
}

void Core::start() {
  if (dispatcher_) dispatcher_->bind(weak_from_this());
  started_ = true;
  try {
    for (auto& lane : lanes_) {
      Lane* l = lane.get();
      for (auto& consumer : lane->consumers) {
        Consumer* c = consumer.get();
        c->thread = std::thread([this, l, c] { run_consumer(*l, *c); });
      }
    }
    for (std::size_t l = 0; spool_ && l < routed_lanes_; ++l) {
      relays_.emplace_back([this, l] { run_relay(l); });
    }
  } catch (...) {
    stop_relays();
    // Could not start a thread: stop and join the ones that did start, then report.
    stop_.store(StopMode::abandon, std::memory_order_seq_cst);
    for (Queue* queue : all_queues_)
      queue->wakeup.notify();
    for (auto& lane : lanes_) {
      for (auto& consumer : lane->consumers) {
        if (consumer->thread.joinable()) consumer->thread.join();
        consumer->joined = true;
      }
    }
    throw;
  }
}

Core::Shard& Core::my_shard() noexcept {
  thread_local const std::uint32_t index =
      g_next_shard.fetch_add(1, std::memory_order_relaxed) % kShards;
  return shards_[index];
}

void Core::count_discarded(std::size_t events) noexcept {
  my_shard().discarded.fetch_add(events, std::memory_order_relaxed);
}

void Core::count_cascade_dropped() noexcept {
  my_shard().cascade_dropped.fetch_add(1, std::memory_order_relaxed);
}

EmitterStats Core::stats() const {
  EmitterStats out;
  for (const auto& shard : shards_) {
    out.committed += shard.events.load(std::memory_order_relaxed);
    out.transactions += shard.transactions.load(std::memory_order_relaxed);
    out.discarded += shard.discarded.load(std::memory_order_relaxed);
    out.cascade_dropped += shard.cascade_dropped.load(std::memory_order_relaxed);
  }
  if (spool_) {
    out.spool_orphaned_events = spool_->orphaned_events();
    out.spool_corrupt_records = spool_->corrupt_records();
    out.spool_bytes = spool_->disk_bytes();
    out.spool_commits_read_back = relayed_from_log_.load(std::memory_order_relaxed);
    out.spool_commits_from_window = relayed_from_window_.load(std::memory_order_relaxed);
  }
  out.adapters.reserve(lanes_.size());
  for (const auto& lane : lanes_) {
    const LaneCounters& c = *lane->counters;
    AdapterStats s;
    s.name = c.name;
    s.delivered = c.delivered.load(std::memory_order_relaxed);
    s.failed = c.failed.load(std::memory_order_relaxed);
    s.filtered = c.filtered.load(std::memory_order_relaxed);
    s.dropped = c.dropped.load(std::memory_order_relaxed);
    // With a spool a routed lane counts what its relay handed it (recovered backlogs too).
    s.received =
        lane->is_dead_letter || spool_ ? c.received.load(std::memory_order_relaxed) : out.committed;
    s.retried = c.retried.load(std::memory_order_relaxed);
    s.dead_lettered = c.dead_lettered.load(std::memory_order_relaxed);
    for (std::size_t b = 0; b < s.latency.buckets.size(); ++b) {
      s.latency.buckets[b] = c.latency_buckets[b].load(std::memory_order_relaxed);
      s.latency.count += s.latency.buckets[b];
    }
    s.latency.sum_ns = c.latency_sum_ns.load(std::memory_order_relaxed);
    for (const auto& queue : lane->queues)
      s.queued += queue->occupancy.load(std::memory_order_relaxed);
    out.adapters.push_back(std::move(s));
  }
  return out;
}

Settlement Core::empty_settlement() const {
  Settlement out;
  for (const std::string& name : *settled_names_) {
    AdapterStats s;
    s.name = name;
    out.adapters.push_back(std::move(s));
  }
  return out;
}

}  // namespace emissions::detail
