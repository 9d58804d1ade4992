/// @file
/// emissions/transaction.hpp: the per-request event buffer, as an explicit RAII object.
///
/// Events emitted into a Transaction reach no adapter until `commit()` (or `flush()`).
/// A Transaction destroyed while still active discards its events, like a linked process
/// exiting, and fires `[emissions, buffer, terminated]`.
///
/// @code
///   emissions::Transaction tx = emitter.start();
///   emissions::Status s = tx.emit("order_created", {{"id", 1}, {"total", 9.5}});
///   if (!s.ok()) log(s.to_string());
///   if (saved) {
///     if (auto c = tx.commit(); !c.ok()) log(c.to_string());
///   }  // otherwise (or if the commit failed) the destructor discards the event
/// @endcode
///
/// Thread-safety: a Transaction is used by one thread at a time (move it to hand it over).
///
/// Re-entry: while flush() or commit() hands the events over, user code runs on the
/// committing thread (an adapter's interested(), a worker pool's partition_by). Emitting
/// into, flushing or committing that same transaction from there returns invalid_argument
/// and changes nothing; terminate() from there is ignored.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include <nlohmann/json.hpp>

#include "emissions/event.hpp"
#include "emissions/settlement.hpp"
#include "emissions/status.hpp"

namespace emissions {

namespace detail {
class Core;
struct Batch;
struct BatchDeleter {
  void operator()(Batch* batch) const noexcept;
};
}  // namespace detail

/// A buffer of events committed (or discarded) as a whole; see the file comment. Made by
/// Emitter::start(); the ambient functions (ambient.hpp) use one per thread.
class Transaction {
 public:
  /// An inactive transaction bound to no emitter; emit returns not_started.
  Transaction() noexcept;
  /// Takes over `other`'s emitter and events; `other` is left inactive.
  Transaction(Transaction&& other) noexcept;
  /// Discards this transaction's events if it is active, then takes over `other`.
  Transaction& operator=(Transaction&& other) noexcept;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  /// Discards the events if it is still active (see the file comment).
  ~Transaction();

  /// Appends an event. Errors: not_started (no active buffer; fires [emissions, event,
  /// dropped] with reason not_started), closed (emitter shut down), invalid_argument (empty
  /// name, or metadata neither null nor an object; the buffer is unchanged), overloaded
  /// (inside a handler, the cascade is deeper than max_cascade_depth: the event is dropped
  /// with reason cascade_limit).
  /// Cost: no lock, no allocation beyond the event's own storage.
  Status emit(EventName name, nlohmann::json payload = nullptr, nlohmann::json metadata = nullptr);

  /// Hands the buffered events to the pipeline in one hand-off and keeps the buffer open.
  /// Returns once the events are queued for every adapter (or dropped by an overflow
  /// policy). On error (overloaded, closed) nothing is delivered and the events stay
  /// buffered.
  Status flush();
  /// Like flush(), then ends the buffer. On error the buffer stays active.
  Status commit();
  /// As commit(); moreover, once every adapter has settled every event of this commit
  /// (delivered, failed for good, filtered or dropped; retries included), calls
  /// `on_settled` once, on a pipeline thread (or on the thread whose settlement was the last
  /// one: an AsyncAdapter's callback thread). Never called if this commit returns an error.
  /// A commit of no event calls it at once, on this thread. `on_settled` must not block for
  /// long: it holds up whichever thread settled last, often a consumer thread of this
  /// emitter (a commit from it to an adapter whose queue is full waits its block_timeout
  /// against itself).
  Status commit(std::function<void(const Settlement&)> on_settled);
  /// Discards the buffered events and ends the buffer. A no-op when not active.
  void terminate() noexcept;

  /// How many events are buffered.
  [[nodiscard]] std::size_t size() const noexcept;
  /// Whether the buffer is open: started, and neither committed nor discarded yet.
  [[nodiscard]] bool active() const noexcept { return active_; }

 private:
  friend class Emitter;
  friend struct TransactionAccess;
  Transaction(std::shared_ptr<detail::Core> core, int cascade_depth) noexcept;
  void begin(std::shared_ptr<detail::Core> core, int cascade_depth) noexcept;
  void discard() noexcept;
  void give_back_buffer() noexcept;
  Status hand_off(bool keep_open, std::function<void(const Settlement&)>* on_settled);
  Status append(EventName name, nlohmann::json&& payload, nlohmann::json&& metadata);
  Status cascade_limit(EventName name);

  std::shared_ptr<detail::Core> core_;
  // The buffered events; storage recycled through the emitter once delivered.
  std::unique_ptr<detail::Batch, detail::BatchDeleter> buffer_;
  bool active_ = false;
  bool handing_off_ = false;  // inside flush()/commit(): re-entrant calls are refused
  int cascade_depth_ = 0;     // > 0 for a handler invocation's buffer
};

}  // namespace emissions
