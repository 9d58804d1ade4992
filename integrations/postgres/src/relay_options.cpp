#include "relay_options.hpp"

#include <libpq-fe.h>

#include "common/config_check.hpp"
#include "pq_handles.hpp"
#include "sql.hpp"

namespace emissions::postgres::detail {

namespace {
// The server's identifier limit (NAMEDATALEN - 1): LISTEN would cut a longer channel.
constexpr std::size_t kMaxChannel = 63;
constexpr std::size_t kMaxBatch = 100'000;
}  // namespace

void validate(const RelayOptions& options) {
  using std::chrono::milliseconds;
  if (options.conninfo.empty()) {
    emissions::detail::config_error("RelayOptions::conninfo", "a libpq connection string or URI",
                                    "an empty string");
  }
  char* message = nullptr;
  const ConninfoHandle parsed(PQconninfoParse(options.conninfo.c_str(), &message));
  // libpq's message quotes the text it could not parse, which may be a password: not shown.
  if (message != nullptr) PQfreemem(message);
  if (!parsed) {
    emissions::detail::config_error("RelayOptions::conninfo",
                                    "a valid libpq connection string or URI (key=value pairs, "
                                    "or postgresql://...)",
                                    "text libpq cannot parse; not shown, it may hold a password");
  }
  (void)quote_table(options.outbox.table, "RelayOptions::outbox.table");
  if (options.outbox.channel.empty() || options.outbox.channel.size() > kMaxChannel) {
    emissions::detail::config_error("RelayOptions::outbox.channel", "1 to 63 bytes long",
                                    "'" + options.outbox.channel + "'");
  }
  emissions::detail::check_range("RelayOptions::batch", options.batch, 1, kMaxBatch);
  emissions::detail::check_range("RelayOptions::poll_interval", options.poll_interval,
                                 milliseconds(1), milliseconds(3'600'000));
  emissions::detail::check_range("RelayOptions::lease", options.lease, milliseconds(100),
                                 milliseconds(3'600'000));
  if (options.name.empty()) {
    emissions::detail::config_error("RelayOptions::name", "non-empty", "''");
  }
}

}  // namespace emissions::postgres::detail
