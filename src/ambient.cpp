#include "emissions/ambient.hpp"

#include <atomic>
#include <mutex>

#include "common/no_destroy.hpp"
#include "core.hpp"
#include "default_emitter.hpp"
#include "emissions/transaction.hpp"
#include "transaction_access.hpp"

namespace emissions {
namespace detail {
namespace {

struct DefaultRegistry {
  std::mutex mutex;
  std::shared_ptr<Core> core;
  std::atomic<std::uint64_t> generation{1};
};

// Never destroyed: an Emitter that outlives main() (a static, say) still unregisters
// itself during static destruction.
DefaultRegistry& registry() {
  static NoDestroy<DefaultRegistry> holder;
  return *holder;
}

}  // namespace

void set_default_core(const std::shared_ptr<Core>& core) {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  r.core = core;
  r.generation.fetch_add(1, std::memory_order_release);
}

void clear_default_core(const Core* core) {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  if (r.core.get() != core) return;
  r.core.reset();
  r.generation.fetch_add(1, std::memory_order_release);
}

const std::shared_ptr<Core>& default_core() {
  struct Cached {
    std::uint64_t generation = 0;
    std::shared_ptr<Core> core;
  };
  thread_local Cached cached;
  auto& r = registry();
  if (r.generation.load(std::memory_order_acquire) != cached.generation) {
    std::lock_guard lock(r.mutex);
    cached.core = r.core;
    cached.generation = r.generation.load(std::memory_order_relaxed);
  }
  return cached.core;
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
  const std::shared_ptr<detail::Core>& core = detail::default_core();
  if (!core) {
    return Status(Errc::unavailable,
                  "no default emitter: construct an emissions::Emitter with make_default = true");
  }
  if (core->closed()) return Status(Errc::closed, "the default emitter has been shut down");
  return TransactionAccess::begin(tx, core);
}

// An inactive ambient transaction may still remember an emitter shut down long ago; for
// the ambient API "no buffer" is always not_started.
Status emit(EventName name, nlohmann::json payload, nlohmann::json metadata) {
  Transaction& tx = current();
  if (!tx.active()) return detail::not_started(name);
  return TransactionAccess::emit(tx, name, std::move(payload), std::move(metadata));
}

Status flush() {
  Transaction& tx = current();
  if (!tx.active()) return Status(Errc::not_started, "no active buffer: call start() first");
  return tx.flush();
}

Status commit() {
  Transaction& tx = current();
  if (!tx.active()) return Status(Errc::not_started, "no active buffer: call start() first");
  return tx.commit();
}

void terminate() noexcept {
  current().terminate();
}

bool active() noexcept {
  return current().active();
}

}  // namespace emissions
