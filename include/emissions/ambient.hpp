/// @file
/// emissions/ambient.hpp: the per-thread transaction (kept, by the Elixir Emissions library,
/// in Elixir's process dictionary).
///
/// Each thread has at most one ambient transaction, on the default Emitter: the newest one
/// made default (constructed with make_default = true, or by Emitter::make_default()) that
/// is still alive and not shut down. Buffers of different threads never interfere; a thread
/// that exits with an active buffer discards it.
///
/// @code
///   emissions::Status s = emissions::start();
///   s.update(emissions::emit("order_created", order));  // any type with to_json, or JSON
///   if (ok && s.ok()) s = emissions::commit();
///   if (!ok || !s.ok()) emissions::terminate();  // a failed commit leaves the buffer open
///   if (!s.ok()) log(s.to_string());
/// @endcode
///
/// Inside a handler invocation the ambient transaction is the invocation's own buffer.
///
/// Unlike a Transaction's, an ambient call that returns closed (the emitter has been shut
/// down) also ends the buffer, discarding its events, so that the thread can start() again
/// on another default emitter.
#pragma once

#include <nlohmann/json.hpp>

#include "emissions/event_name.hpp"
#include "emissions/status.hpp"

namespace emissions {

class Transaction;

/// Opens this thread's buffer. already_started when one is active; unavailable when there
/// is no default emitter; closed when it has been shut down.
Status start();
/// Appends to this thread's buffer; see Transaction::emit. not_started whenever no buffer
/// is active.
Status emit(EventName name, nlohmann::json payload = nullptr, nlohmann::json metadata = nullptr);
/// Delivers what is buffered and keeps the buffer open; see Transaction::flush.
Status flush();
/// Delivers what is buffered and ends the buffer; see Transaction::commit.
Status commit();
/// Discards the buffer; a safe no-op when none is active.
void terminate() noexcept;
/// Whether this thread has an active buffer.
[[nodiscard]] bool active() noexcept;
/// This thread's ambient transaction (inactive when none was started). For frameworks that
/// hand a request from thread to thread: move it out, and move it back in on the next
/// thread with `current() = std::move(tx)`.
[[nodiscard]] Transaction& current() noexcept;

}  // namespace emissions
