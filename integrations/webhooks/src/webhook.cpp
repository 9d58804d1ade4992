// The Webhook adapter: deliver() plans requests (requests.*) and queues them on the client
// (client.*, the I/O thread); each finished request is classified (outcome.*), settled and
// reported here; a 410 disables the endpoint; terminate() waits for the responses, then
// stops the client.
#include "emissions/adapters/webhook.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>

#include "client.hpp"
#include "common/best_effort.hpp"
#include "common/exceptions.hpp"
#include "common/status_copy.hpp"
#include "options.hpp"
#include "outcome.hpp"
#include "probes.hpp"
#include "requests.hpp"
#include "signature.hpp"
#include "webhook_access.hpp"

namespace emissions::adapters {
namespace {

// The window the adapter asks for, per connection (preferred_max_in_flight()).
constexpr std::size_t kDeliveriesPerConnection = 16;

}  // namespace

using detail::webhooks::Client;
using detail::webhooks::Outcome;
using detail::webhooks::Request;
using detail::webhooks::Response;
using detail::webhooks::Verdict;

struct Webhook::State {
  explicit State(const WebhookOptions& options)
      : settings(detail::webhooks::check_options(options)),
        what("webhook '" + settings.name + "'"),
        signer(settings.keys) {}

  void deliver(Delivery delivery) noexcept;
  // The client's completion callback, on the I/O thread.
  void on_done(Request& request, const Response& response) noexcept;
  void report_response(const Request& request, const Response& response,
                       const Outcome& outcome) const noexcept;
  void disable(long status) noexcept;
  // insecure_skip_verify: the warning, once per adapter (from the constructor).
  void warn_insecure() const noexcept;
  Status terminate(Deadline deadline) noexcept;

  const detail::webhooks::Settings settings;
  const std::string what;  // "webhook '<name>'", how reasons begin
  const detail::webhooks::Signer signer;
  detail::webhooks::BatchMemory batches;
  std::atomic<bool> disabled{false};
  std::atomic<bool> terminated{false};
  // Last: destroyed (its thread joined) before what its callback uses.
  std::unique_ptr<Client> client;
};

// --- deliver ------------------------------------------------------------------------------

// The calling thread's requests, kept between deliveries (of any Webhook): spares the I/O
// threads gave back, and the vector the requests are planned into. Taken by a delivery
// and put back when it ends (a nested delivery on this thread would start empty).
thread_local std::vector<Request> t_spares;
thread_local std::vector<Request> t_planned;

void Webhook::State::deliver(Delivery delivery) noexcept {
  std::shared_ptr<Delivery> shared;
  std::vector<Request> spares = std::move(t_spares);
  std::vector<Request> requests = std::move(t_planned);
  try {
    // One relaxed load in the steady state; the refusal itself is read under the client's
    // lock only once the endpoint was disabled or the adapter terminated.
    if (std::optional<Status> refused =
            client->refused() ? client->refusal() : std::optional<Status>()) {
      // Disabled, or terminated: nothing to serialize. The thread's spares are put back
      // first (for its next delivery, to another Webhook), before fail() runs callbacks.
      t_spares = std::move(spares);
      t_planned = std::move(requests);
      delivery.fail(std::move(*refused));  // moved: no copy to run out of memory
      return;
    }
    requests.clear();
    if (!settings.batch && delivery.events().size() == 1) {
      // One event, one request: the request holds the delivery (no shared block).
      detail::webhooks::plan_alone(delivery, settings.max_body_bytes, what, spares, requests);
    } else {
      shared = std::make_shared<Delivery>(std::move(delivery));
      detail::webhooks::plan_requests(
          shared, {.max_body_bytes = settings.max_body_bytes, .batch = settings.batch}, batches,
          what, spares, requests);
    }
    // Signed here, on the consumer's thread, for an attempt that starts now (the I/O thread
    // signs again what waits too long).
    const std::int64_t now = detail::webhooks::unix_seconds();
    for (Request& request : requests)
      detail::webhooks::sign(request, signer, now);
    // As many spares back as this delivery used (one request per event, unless batched).
    const std::size_t want =
        settings.batch || spares.size() >= requests.size() ? 0 : requests.size() - spares.size();
    client->submit(requests, spares, want);
  } catch (...) {
    // Out of memory: what is not settled yet fails (retriably) on whichever handle holds it.
    // Building the message allocates too, and memory may still be short: the code is what
    // counts, the message is added if it can be (this block must not throw).
    const Status error = detail::status_or_bare(
        Errc::unavailable, [&] { return what + ": " + detail::describe_current_exception(); });
    if (shared) {
      shared->fail(detail::copy_or_bare(error));
    } else {
      delivery.fail(detail::copy_or_bare(error));  // a no-op once a request took it
    }
    for (Request& request : requests)
      request.own.fail(detail::copy_or_bare(error));  // a no-op on a request without one
  }
  requests.clear();  // moved from, or (after a failure) holding the delivery: released here
  t_spares = std::move(spares);
  t_planned = std::move(requests);
}

// --- responses (the I/O thread) ------------------------------------------------------------

void Webhook::State::on_done(Request& request, const Response& response) noexcept {
  Outcome outcome;
  try {
    // The clock only for a Retry-After (an HTTP date is relative to it).
    const auto now = response.retry_after.empty() ? std::chrono::system_clock::time_point{}
                                                  : std::chrono::system_clock::now();
    outcome = detail::webhooks::classify(response, what, settings.endpoint, now);
  } catch (...) {
    outcome.verdict = Verdict::retry;
    outcome.status = Status(Errc::unavailable, {});  // out of memory for the reason
  }
  report_response(request, response, outcome);
  switch (outcome.verdict) {
    case Verdict::delivered:
      request.ack();
      break;
    case Verdict::retry:
      // A retried batch must be cut the same way to keep its webhook-id.
      if (settings.batch) {
        detail::best_effort([&] { batches.remember(request.event_ids()); });
      }
      request.fail(outcome.status, outcome.retry_after);
      break;
    case Verdict::failed:
      request.fail(outcome.status);
      break;
  }
  if (outcome.disable) disable(response.status);
}

void Webhook::State::report_response(const Request& request, const Response& response,
                                     const Outcome& outcome) const noexcept {
  const telemetry::Probe& probe = detail::webhooks::g_probes->response;
  if (!probe.enabled()) return;
  detail::best_effort([&] {
    const char* verdict = outcome.verdict == Verdict::delivered ? "delivered"
                          : outcome.verdict == Verdict::retry   ? "retry"
                                                                : "failed";
    probe.execute({{"duration", response.duration.count()},
                   {"events", request.count},
                   {"bytes", request.body.size()}},
                  {{"adapter", settings.name},
                   {"endpoint", settings.endpoint},
                   {"status", response.status},
                   {"outcome", verdict},
                   {"reason", outcome.status.message()}});
  });
}

void Webhook::State::disable(long status) noexcept {
  if (disabled.exchange(true, std::memory_order_acq_rel)) return;
  // Later deliveries, and the requests not started yet, fail at once.
  Status reason(Errc::invalid_argument, {});
  detail::best_effort([&] {
    reason = Status(Errc::invalid_argument,
                    what + " is disabled: " + settings.endpoint + " answered HTTP 410 Gone");
  });
  client->refuse(reason, true);
  const telemetry::Probe& probe = detail::webhooks::g_probes->disabled;
  if (!probe.enabled()) return;
  detail::best_effort([&] {
    probe.execute(
        {{"count", 1}},
        {{"adapter", settings.name}, {"endpoint", settings.endpoint}, {"status", status}});
  });
}

void Webhook::State::warn_insecure() const noexcept {
  detail::best_effort([&] {
    const std::string reason =
        "insecure_skip_verify is set: TLS certificates and host names "
        "are not verified";
    // The library has no logger: the line goes to stderr as well as to telemetry, so that
    // a service with no handler attached still shows it. One write of the whole line (no
    // interleaving with other writers); the endpoint is scheme://host:port only.
    const std::string line =
        "emissions: warning: " + what + " (" + settings.endpoint + "): " + reason + "\n";
    (void)std::fwrite(line.data(), 1, line.size(), stderr);
    const telemetry::Probe& probe = detail::webhooks::g_probes->warning;
    if (probe.enabled()) {
      probe.execute(
          {{"count", 1}},
          {{"adapter", settings.name}, {"endpoint", settings.endpoint}, {"reason", reason}});
    }
  });
}

// --- terminate ----------------------------------------------------------------------------

Status Webhook::State::terminate(Deadline deadline) noexcept {
  if (terminated.exchange(true, std::memory_order_acq_rel)) return {};
  const auto started = std::chrono::steady_clock::now();
  Status closed(Errc::closed, {});
  detail::best_effort([&] { closed = Status(Errc::closed, what + " is terminated"); });
  client->refuse(closed, false);  // what is queued is still sent, until the deadline
  const std::size_t left = client->stop(deadline);

  Status status;
  detail::best_effort([&] {
    const telemetry::Probe& probe = detail::webhooks::g_probes->terminated;
    if (probe.enabled()) {
      const auto duration = std::chrono::steady_clock::now() - started;
      probe.execute(
          {{"left", left},
           {"duration", std::chrono::duration_cast<std::chrono::nanoseconds>(duration).count()}},
          {{"adapter", settings.name}, {"endpoint", settings.endpoint}});
    }
  });
  if (left != 0) {
    status = Status(Errc::timeout, {});
    detail::best_effort([&] {
      status = Status(Errc::timeout, what + ": " + std::to_string(left) +
                                         " requests had no response by the deadline; their "
                                         "events were failed");
    });
  }
  return status;
}

// --- Webhook ------------------------------------------------------------------------------

Webhook::Webhook(WebhookOptions options) {
  auto state = std::make_shared<State>(options);
  State* raw = state.get();
  // The I/O thread keeps the state alive until its last callback has returned: a callback
  // may release the last Webhook (see ~Webhook).
  state->client = std::make_unique<Client>(
      state->settings, state->signer,
      [raw](Request& request, const Response& response) { raw->on_done(request, response); },
      std::shared_ptr<const void>(state));
  if (state->settings.insecure_skip_verify) state->warn_insecure();
  state_ = std::move(state);
}

Webhook::~Webhook() {
  const Deadline now = deadline_after(std::chrono::nanoseconds::zero());
  (void)state_->terminate(now);
  // Off the I/O thread this joins it, also when terminate() ran earlier on that thread (and
  // so could not). On it (a callback released the last reference), the loop ends once the
  // callback returns, and the state goes with the thread's own reference (client.hpp).
  (void)state_->client->stop(now);
}

void Webhook::deliver(Delivery delivery) {
  state_->deliver(std::move(delivery));
}

Status Webhook::flush(Deadline deadline) {
  (void)deadline;
  return {};
}

Status Webhook::terminate(Deadline deadline) {
  return state_->terminate(deadline);
}

std::string_view Webhook::name() const {
  return state_->settings.name;
}

std::size_t Webhook::preferred_max_in_flight() const noexcept {
  return kDeliveriesPerConnection * state_->settings.max_connections;
}

std::size_t Webhook::outstanding() const noexcept {
  return state_->client->outstanding();
}

}  // namespace emissions::adapters

namespace emissions::detail {

void WebhookAccess::trust_ca_file(adapters::Webhook& webhook, std::string path) {
  webhook.state_->client->set_ca_file(std::move(path));
}

}  // namespace emissions::detail
