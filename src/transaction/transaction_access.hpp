// Internal: what the library (not users) may do to a Transaction.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "emissions/transaction.hpp"

namespace emissions {

namespace detail {
// not_started, reported as [emissions, event, dropped] with reason not_started.
Status not_started(EventName name);
// invalid_argument: a flush() or commit() of this transaction is under way on this thread.
Status handing_off();
}  // namespace detail

struct TransactionAccess {
  static Status begin(Transaction& tx, const std::shared_ptr<detail::Core>& core) {
    tx.begin(core, 0);
    if (!tx.active()) return Status(Errc::closed, "the emitter has been shut down");
    return {};
  }
  static Status emit(Transaction& tx, EventName name, nlohmann::json&& payload,
                     nlohmann::json&& metadata) {
    return tx.append(name, std::move(payload), std::move(metadata));
  }
  // Emitter::publish: commits `events` (already validated) as they are, ids and times kept.
  static Status publish(Transaction& tx, std::vector<Event>& events,
                        std::function<void(const Settlement&)>* on_settled);
  // The cascade depth a new transaction of `core` gets on this thread: inside a handler
  // invocation of `core`, its ambient transaction's depth; otherwise 0.
  static int depth_here(const detail::Core* core) noexcept;
  // The events buffered in `tx` (empty when it is not active): what an outbox writes.
  static std::span<const Event> buffered(const Transaction& tx) noexcept;
  // Ends an active `tx` as a successful commit() would, without handing its events to the
  // pipeline: they were written elsewhere (an outbox table) for a relay to publish. Fires
  // [emissions, buffer, committed]. invalid_argument while a hand-off of `tx` is under way.
  static Status end_written_elsewhere(Transaction& tx);
  // Whether a flush() or commit() of `tx` is under way on this thread (user code it runs
  // is calling): what would write `tx`'s events elsewhere must refuse before writing.
  static bool handing_off(const Transaction& tx) noexcept { return tx.handing_off_; }
  static Transaction make(std::shared_ptr<detail::Core> core, int cascade_depth = 0) {
    return Transaction(std::move(core), cascade_depth);
  }
};

}  // namespace emissions
