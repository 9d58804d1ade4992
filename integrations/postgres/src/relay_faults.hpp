// Internal: fault hooks, so that tests can put a relay in states the network makes only by
// chance (a host name resolution that hangs, a reply lost after the server committed).
// Never set outside tests.
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
};

using FaultHook = std::function<bool(FaultPoint, PGconn*)>;

// Installs `hook` for every relay of the process (empty: none). Thread-safe.
void set_fault_hook(FaultHook hook);
// Calls the hook, if any (outside any lock); false without one.
bool fault(FaultPoint point, PGconn* conn);

}  // namespace emissions::postgres::detail
