// Internal: owning handles on libpq's objects, released exactly once on every path, and
// libpq's messages on one line.
#pragma once

#include <memory>
#include <string>
#include <string_view>

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

// A libpq message (PQerrorMessage, PQresultErrorMessage) without its trailing newlines and
// spaces.
inline std::string trimmed(std::string_view message) {
  while (!message.empty() && (message.back() == '\n' || message.back() == ' '))
    message.remove_suffix(1);
  return std::string(message);
}
// The same; "" for null.
inline std::string trimmed(const char* message) {
  return trimmed(message == nullptr ? std::string_view() : std::string_view(message));
}

}  // namespace emissions::postgres::detail
