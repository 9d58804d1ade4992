#include "emissions/ambient.hpp"

#include <atomic>
#include <mutex>

#include <vector>

#include "common/no_destroy.hpp"
#include "emissions/transaction.hpp"
#include "pipeline/core.hpp"
#include "transaction/default_emitter.hpp"
#include "transaction/transaction_access.hpp"

namespace emissions {
namespace detail {
namespace {

struct DefaultRegistry {
  std::mutex mutex;
  std::vector<std::weak_ptr<Core>> stack;  // oldest first
  std::atomic<std::uint64_t> generation{1};
};

// Never destroyed: an Emitter that outlives main() (a static, say) still unregisters
// itself during static destruction.
DefaultRegistry& registry() {
  static NoDestroy<DefaultRegistry> holder;
  return *holder;
}

void remove_locked(DefaultRegistry& r, const Core* core) {
  std::erase_if(r.stack, [core](const std::weak_ptr<Core>& entry) {
    const std::shared_ptr<Core> alive = entry.lock();
    return !alive || alive.get() == core;
  });
}

}  // namespace

void set_default_core(const std::shared_ptr<Core>& core) {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  remove_locked(r, core.get());
  r.stack.push_back(core);
  r.generation.fetch_add(1, std::memory_order_release);
}

void clear_default_core(const Core* core) {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  remove_locked(r, core);
  r.generation.fetch_add(1, std::memory_order_release);
}

void default_core_changed() {
  registry().generation.fetch_add(1, std::memory_order_release);
}

DefaultCore default_core() {
  struct Cached {
    std::uint64_t generation = 0;
    std::shared_ptr<Core> core;
    bool closed = false;
  };
  thread_local Cached cached;
  auto& r = registry();
  const std::uint64_t now = r.generation.load(std::memory_order_acquire);
  if (now != cached.generation) {
    std::lock_guard lock(r.mutex);
    cached.core.reset();
    cached.closed = false;
    bool newest = true;
    for (auto it = r.stack.rbegin(); it != r.stack.rend(); ++it) {
      std::shared_ptr<Core> core = it->lock();
      if (!core) continue;
      if (!core->closed()) {
        cached.core = std::move(core);
        break;
      }
      if (newest) cached.closed = true;
      newest = false;
    }
    if (cached.core) cached.closed = false;
    cached.generation = now;
  }
  return {cached.core, cached.closed};
}

}  // namespace detail

Transaction& current() noexcept {
  thread_local Transaction ambient;
  return ambient;
}

Status start() {
  Transaction& tx = current();
  if (tx.active())
    return Status(Errc::already_started, "a buffer is already active on this thread");
  const detail::DefaultCore found = detail::default_core();
  if (!found.core) {
    if (found.closed) return Status(Errc::closed, "the default emitter has been shut down");
    return Status(Errc::unavailable,
                  "no default emitter: construct an emissions::Emitter with make_default = true");
  }
  return TransactionAccess::begin(tx, found.core);
}

namespace {

// A buffer whose emitter has shut down can never be committed: end it (its events count as
// discarded), so that the thread can start() again on another emitter.
Status end_if_closed(Transaction& tx, Status status) {
  if (status.code() == Errc::closed) tx.terminate();
  return status;
}

}  // namespace

// An inactive ambient transaction may still remember an emitter shut down long ago; for
// the ambient API "no buffer" is always not_started.
Status emit(EventName name, nlohmann::json payload, nlohmann::json metadata) {
  Transaction& tx = current();
  if (!tx.active()) return detail::not_started(name);
  return end_if_closed(tx,
                       TransactionAccess::emit(tx, name, std::move(payload), std::move(metadata)));
}

Status flush() {
  Transaction& tx = current();
  if (!tx.active()) return Status(Errc::not_started, "no active buffer: call start() first");
  return end_if_closed(tx, tx.flush());
}

Status commit() {
  Transaction& tx = current();
  if (!tx.active()) return Status(Errc::not_started, "no active buffer: call start() first");
  return end_if_closed(tx, tx.commit());
}

void terminate() noexcept {
  current().terminate();
}

bool active() noexcept {
  return current().active();
}

}  // namespace emissions
