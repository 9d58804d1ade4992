// Internal: fault hooks, so that tests can put a relay or stage_and_commit() in states the
// network or the allocator make only by chance (a host name resolution that hangs, a reply
// lost after the server committed, libpq out of memory). Never set outside tests.
#pragma once

#include <functional>

#include <libpq-fe.h>

namespace emissions::postgres::detail {

enum class FaultPoint {
  // Before a connection attempt, on the thread that makes it (conn: null). A hook may block
  // there, as a blocking host name resolution inside libpq does.
  connecting,
  // The reply of a DELETE of settled rows arrived (conn: the relay's connection). A hook
  // that returns true makes the relay handle the reply as lost with the connection.
  delete_replied,
  // Before a DELETE of settled rows is sent (conn: the relay's connection). A hook that
  // returns true makes the relay handle it as lost with the connection, without sending it.
  deleting,
  // stage_and_commit(), before it queues COMMIT in its pipeline (conn: the caller's). A hook
  // that returns true makes it handle the queuing as failed with the connection still up (as
  // when libpq runs out of memory), without queuing it.
  commit_queueing,
  // stage_and_commit(), before each attempt to queue its pipeline's sync (conn: the
  // caller's). A hook that returns true makes that attempt fail the same way.
  sync_queueing,
};

using FaultHook = std::function<bool(FaultPoint, PGconn*)>;

// Installs `hook` for every relay of the process (empty: none). Thread-safe.
void set_fault_hook(FaultHook hook);
// Calls the hook, if any (outside any lock); false without one.
bool fault(FaultPoint point, PGconn* conn);

}  // namespace emissions::postgres::detail
