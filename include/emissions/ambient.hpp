// emissions/ambient.hpp: the per-thread transaction (the seed's process dictionary).
//
// Each thread has at most one ambient transaction, on the default Emitter (the last one
// constructed with make_default = true that is still alive). Buffers of different threads
// never interfere; a thread that exits with an active buffer discards it.
//
//   emissions::start();
//   emissions::emit("order_created", order);  // any type with to_json, or a JSON literal
//   if (ok) emissions::commit(); else emissions::terminate();
//
// Inside a handler invocation the ambient transaction is the invocation's own buffer.
#pragma once

#include <nlohmann/json.hpp>

#include "emissions/event_name.hpp"
#include "emissions/status.hpp"

namespace emissions {

class Transaction;

// Opens this thread's buffer. already_started when one is active; unavailable when there
// is no default emitter; closed when it has been shut down.
Status start();
// Appends to this thread's buffer; see Transaction::emit.
Status emit(EventName name, nlohmann::json payload = nullptr, nlohmann::json metadata = nullptr);
// Delivers what is buffered and keeps the buffer open; see Transaction::flush.
Status flush();
// Delivers what is buffered and ends the buffer; see Transaction::commit.
Status commit();
// Discards the buffer; a safe no-op when none is active.
void terminate() noexcept;
// Whether this thread has an active buffer.
[[nodiscard]] bool active() noexcept;
// This thread's ambient transaction (inactive when none was started). For frameworks that
// hand a request from thread to thread: move it out, and move it back in on the next
// thread with `current() = std::move(tx)`.
[[nodiscard]] Transaction& current() noexcept;

}  // namespace emissions
