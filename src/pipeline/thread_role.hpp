// Internal: which pipeline (if any) owns the current thread, so that a call that would wait
// for the calling thread itself (drain() from inside a delivery or a handler) is refused
// instead of running into its deadline.
#pragma once

namespace emissions::detail {

class Core;

// The Core whose consumer or handler thread this is; null on other threads.
const Core* current_thread_owner() noexcept;

// Marks the current thread as `owner`'s for the scope.
class ThreadRole {
 public:
  explicit ThreadRole(const Core* owner) noexcept;
  ~ThreadRole();
  ThreadRole(const ThreadRole&) = delete;
  ThreadRole& operator=(const ThreadRole&) = delete;

 private:
  const Core* previous_;
};

// Whether the current thread is running a settlement callback (Transaction::on_settled) the
// pipeline invoked: it may be an adapter's own thread (its acknowledgements), which a commit
// made from the callback must not make wait for the adapter's queue.
bool in_settlement_callback() noexcept;

// Marks the current thread as running a settlement callback for the scope (nests).
class SettlementCallbackScope {
 public:
  SettlementCallbackScope() noexcept;
  ~SettlementCallbackScope();
  SettlementCallbackScope(const SettlementCallbackScope&) = delete;
  SettlementCallbackScope& operator=(const SettlementCallbackScope&) = delete;
};

}  // namespace emissions::detail
