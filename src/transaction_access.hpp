// Internal: what the library (not users) may do to a Transaction.
#pragma once

#include <memory>

#include "emissions/transaction.hpp"

namespace emissions {

namespace detail {
// not_started, reported as [emissions, event, dropped] with reason not_started.
Status not_started(EventName name);
}  // namespace detail

struct TransactionAccess {
  static Status begin(Transaction& tx, const std::shared_ptr<detail::Core>& core) {
    tx.begin(core);
    if (!tx.active()) return Status(Errc::closed, "the emitter has been shut down");
    return {};
  }
  static Transaction make(std::shared_ptr<detail::Core> core) {
    return Transaction(std::move(core));
  }
  static int cascade_depth(const Transaction& tx) noexcept { return tx.cascade_depth_; }
  static void set_cascade_depth(Transaction& tx, int depth) noexcept { tx.cascade_depth_ = depth; }
};

}  // namespace emissions
