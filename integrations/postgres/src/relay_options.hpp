// Internal: RelayOptions checked once, at construction.
#pragma once

#include "emissions/outbox/postgres_relay.hpp"

namespace emissions::postgres::detail {

// Throws ConfigError naming the first field that is wrong. Never shows the conninfo.
void validate(const RelayOptions& options);

}  // namespace emissions::postgres::detail
