// Internal: owning handles on libpq's objects, released exactly once on every path.
#pragma once

#include <memory>

#include <libpq-fe.h>

namespace emissions::postgres::detail {

struct ConnDeleter {
  void operator()(PGconn* conn) const noexcept { PQfinish(conn); }
};
struct ResultDeleter {
  void operator()(PGresult* result) const noexcept { PQclear(result); }
};
struct NotifyDeleter {
  void operator()(PGnotify* notify) const noexcept { PQfreemem(notify); }
};
struct ConninfoDeleter {
  void operator()(PQconninfoOption* options) const noexcept { PQconninfoFree(options); }
};

using ConnHandle = std::unique_ptr<PGconn, ConnDeleter>;
using ResultHandle = std::unique_ptr<PGresult, ResultDeleter>;
using NotifyHandle = std::unique_ptr<PGnotify, NotifyDeleter>;
using ConninfoHandle = std::unique_ptr<PQconninfoOption, ConninfoDeleter>;

}  // namespace emissions::postgres::detail
