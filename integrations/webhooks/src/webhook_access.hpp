// Internal, for tests: what the public Webhook does not offer. A friend of the adapter.
#pragma once

#include <string>

#include "emissions/adapters/webhook.hpp"

namespace emissions::detail {

struct WebhookAccess {
  // Trusts the CA certificates in `path` (PEM) instead of the system's: a test's own
  // certificate authority. Call it before the first delivery.
  static void trust_ca_file(adapters::Webhook& webhook, std::string path);
};

}  // namespace emissions::detail
