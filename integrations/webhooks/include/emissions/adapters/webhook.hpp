/// @file
/// emissions/adapters/webhook.hpp: an adapter that POSTs events to an HTTP endpoint, signed
/// as the Standard Webhooks specification says, and settles each one from the response.
///
/// Link `emissions::webhooks` (from an installed tree:
/// `find_package(emissions CONFIG REQUIRED COMPONENTS webhooks)`; built when libcurl and
/// OpenSSL are found, see EMISSIONS_WITH_WEBHOOKS). Neither libcurl's nor OpenSSL's headers
/// are needed to include this one. Receivers check the signatures with
/// emissions/webhooks/verify.hpp (or any Standard Webhooks library).
///
/// @code
///   #include <emissions/adapters/webhook.hpp>
///
///   auto hook =
///   std::make_shared<emissions::adapters::Webhook>(emissions::adapters::WebhookOptions{
///       .url = "https://hooks.example.com/orders",
///       .secrets = {"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
///       .headers = {{"Authorization", "Bearer " + token}}});
///   config.add_adapter(hook, {.dead_letter = dead_letters});
/// @endcode
///
/// The requests. One POST per event (`batch = false`: the body is the event's JSON envelope,
/// `emissions::serialize(event)`), or one per batch (`batch = true`: a JSON array of
/// envelopes in commit order, cut so that no body exceeds `max_body_bytes`). Headers:
/// `content-type: application/json`, `webhook-id` (the event id; for a batch, the first
/// event's id, `-` and the number of events), `webhook-timestamp` (Unix seconds when the
/// adapter takes the attempt; signed again if it then waits over 30 s for a connection),
/// `webhook-signature` (`v1,` and the base64 of HMAC-SHA256 over
/// `id.timestamp.body`, one per secret, space-separated), and `headers`. `webhook-id` stays
/// the same on every retry of an event (and of a batch, see WebhookOptions::batch), so a
/// receiver deduplicates on it; the timestamp and signature are made for each attempt.
///
/// Settlement, per request, from its response:
/// - 2xx: delivered;
/// - 408 (`timeout`), 429 (`overloaded`), 5xx (`unavailable`): retriable, the pipeline tries
///   again per the adapter's RetryPolicy; a `Retry-After` header (seconds, or an HTTP date)
///   is passed to Delivery::retry_after, up to 24 h;
/// - a timeout (`timeout`), a refused or reset connection, a name that does not resolve, a
///   TLS failure (a certificate that does not verify or names another host: it may be
///   fixed on the receiver's side) and any other transport error (`unavailable`): retriable;
/// - 3xx: never followed; failed for good (`invalid_argument`), the reason naming the
///   location;
/// - 410 Gone: failed for good, and the endpoint is disabled: every later event fails at
///   once with `invalid_argument` naming 410 (requests not started yet too), reported once
///   as `[emissions, webhook, disabled]`;
/// - any other status (4xx): failed for good (`invalid_argument`), the reason naming it;
/// - refused by the address policy (see `allow_private_networks`): failed for good
///   (`invalid_argument`), with no connection made;
/// - a body over `max_body_bytes`, or an event that cannot be serialized: failed for good
///   (`invalid_argument`) before any request.
/// Failures for good go to the adapter's dead letter, if it has one. Reasons read like
/// `webhook 'orders': HTTP 503 from https://hooks.example.com:443`: the endpoint is named by
/// scheme, host and port only (a path or a query may hold a token), and no reason, no
/// telemetry and no exception ever holds a secret, a header value or a payload.
///
/// Safety: TLS certificates and host names are verified (`insecure_skip_verify` turns both
/// off). Proxies from the environment (`http_proxy`, ...) are not used: the address policy
/// applies to the endpoint itself. Redirects are never followed. Only http and https.
///
/// Telemetry (besides the pipeline's `[emissions, adapter, ...]`), metadata always with
/// `adapter` (the name) and `endpoint` (scheme://host:port):
/// - `[emissions, webhook, response]` {duration (ns: libcurl's total time of the transfer,
///   to the microsecond), events, bytes} {adapter, endpoint, status (the HTTP status, 0
///   when there was no response), outcome (`delivered`, `retry` or `failed`), reason
///   (empty when delivered)}: one per request, on the I/O thread;
/// - `[emissions, webhook, disabled]` {count: 1} {adapter, endpoint, status: 410}: once;
/// - `[emissions, webhook, warning]` {count: 1} {adapter, endpoint, reason}: once per
///   adapter, from the constructor, when `insecure_skip_verify` is set; the library has no
///   logger, so the same warning is also written as one line to stderr
///   (e.g. `emissions: warning: webhook 'orders' (https://hooks.example.com:443):
///   insecure_skip_verify is set: ...`);
/// - `[emissions, webhook, terminated]` {left, duration} {adapter, endpoint}: at
///   terminate(), how many requests had no response by its deadline (their events are
///   failed, and counted dropped at shutdown).
///
/// Threads: one I/O thread per adapter (libcurl's multi interface: up to `max_connections`
/// requests at once, keep-alive connections, HTTP/2 over TLS when the server offers it),
/// started by the constructor and joined by terminate() (or the destructor; for a Webhook
/// released by a callback on that thread, see ~Webhook). Events are settled, and telemetry
/// runs, on it: a callback there may call terminate(), shut the Emitter down or release the
/// last reference. Name resolution runs on libcurl's resolver threads.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "emissions/deadline.hpp"
#include "emissions/delivery.hpp"
#include "emissions/status.hpp"

namespace emissions::detail {
struct WebhookAccess;
}  // namespace emissions::detail

namespace emissions::adapters {

/// Where a Webhook adapter sends, how it signs, and its limits. A plain struct for
/// designated initializers (every field has a default); validated by the Webhook
/// constructor, which throws ConfigError naming the field (and never a secret's value).
///
/// @code
///   WebhookOptions{.url = "https://hooks.example.com/in", .secrets = {current, previous},
///                  .timeout = std::chrono::seconds(5), .batch = true}
/// @endcode
struct WebhookOptions {
  /// The endpoint: an absolute `http://` or `https://` URL. Required.
  std::string url = {};
  /// The signing secrets, each `whsec_` followed by the base64 of 24 to 64 random bytes (the
  /// Standard Webhooks format). At least one. Every request carries one signature per
  /// secret: while a secret is rotated, give the new and the old one, then drop the old
  /// once every receiver has the new one.
  std::vector<std::string> secrets = {};
  /// Extra request headers (e.g. `Authorization`). Names must be HTTP tokens, values must
  /// not hold CR, LF or NUL; `content-type`, `content-length`, `transfer-encoding`, `host`,
  /// `connection`, `expect` and any `webhook-*` name, in any case, are the adapter's own;
  /// two names that differ only in case (`X-Trace`, `x-trace`) are one header given twice
  /// (ConfigError naming the field either way).
  std::map<std::string, std::string> headers = {};
  /// The longest one request may take, connecting included (1 ms .. 24 h); past it the
  /// request fails with `timeout` (retriable).
  std::chrono::milliseconds timeout{10'000};
  /// The most requests in flight at once (1..1024), and the most connections kept open.
  /// With HTTP/1.1 each request in flight has a connection; HTTP/2 multiplexes them.
  std::size_t max_connections = 8;
  /// The largest request body, in bytes (1 .. 1 GiB). An event whose body alone is larger
  /// fails for good before any request; with `batch`, batches are cut to stay within it.
  std::size_t max_body_bytes = std::size_t{1} << 20;
  /// One request per delivery batch (a JSON array of envelopes, `webhook-id`
  /// `<first event id>-<count>`) instead of one per event. The events of one request are
  /// settled together. A retried batch is cut as it was the first time (remembered for up to
  /// 65 536 failed batches), so its `webhook-id` stays the same.
  bool batch = false;
  /// false (the default): a request whose resolved address is loopback (127.0.0.0/8, ::1,
  /// `localhost`), private (10/8, 172.16/12, 192.168/16, fc00::/7), link-local
  /// (169.254/16 with the cloud metadata address, fe80::/10), unspecified (0.0.0.0/8, ::),
  /// shared (100.64/10), multicast, reserved or an IPv4-mapped, IPv4-compatible, NAT64 or
  /// 6to4 form of one of these is refused for good, without a connection. The address is
  /// checked when the socket is opened, after resolution, so a name that resolves (or is
  /// rebound) to such an address is refused too. true: any address.
  bool allow_private_networks = false;
  /// true: TLS certificates and host names are not verified (for tests against
  /// self-signed servers). Warned about once per adapter, from the constructor: one line on
  /// stderr and `[emissions, webhook, warning]`.
  bool insecure_skip_verify = false;
  /// The adapter's name in telemetry, statistics and reasons. Must not be empty.
  std::string name = "webhook";
};

/// POSTs events to one endpoint, signed, and settles them from the responses. See the file
/// comment for the requests, the outcomes, the safety rules and the threads.
///
/// @code
///   auto hook =
///   std::make_shared<emissions::adapters::Webhook>(emissions::adapters::WebhookOptions{
///       .url = "https://hooks.example.com/in", .secrets = {secret}});
///   config.add_adapter(hook);
/// @endcode
///
/// Thread-safety: every member may be called from any thread; deliver() may run on several
/// consumer threads at once (AdapterOptions::concurrency > 1).
class Webhook final : public AsyncAdapter {
 public:
  /// Validates `options` (ConfigError naming the field: no URL, a URL that is not http(s),
  /// no secret, a secret without the `whsec_` prefix or with bad base64, a reserved or
  /// malformed header, a limit out of range, an empty name) and starts the I/O thread.
  /// Connects to nothing until events come.
  explicit Webhook(WebhookOptions options);
  /// terminate() with a deadline already passed, if it has not been called: what has no
  /// response yet is failed at once; then joins the I/O thread (also when terminate() was
  /// called on that thread, which could not). May run on any thread, including the I/O
  /// thread itself, when a settlement or telemetry callback releases the last reference
  /// (or destroys the Emitter that held it): the adapter refuses new events at once, and
  /// once the callback returns the loop fails what is left, closes the connections and
  /// releases the adapter's state. That thread cannot join itself and no owner is left to
  /// join it, so it detaches itself as its very last act, after which it runs no code of
  /// this library or of any callback; nothing is global.
  ~Webhook() override;
  Webhook(const Webhook&) = delete;
  Webhook& operator=(const Webhook&) = delete;

  /// Serializes the batch into requests and queues them for the I/O thread; returns at
  /// once. Events that cannot be sent (too large, not serializable, the endpoint disabled
  /// or the adapter terminated) are failed before it returns. Never blocks on the network;
  /// never throws.
  void deliver(Delivery delivery) override;

  /// Returns ok at once: the adapter holds nothing back (queued requests are sent as soon
  /// as a connection is free), and the pipeline waits for the responses.
  Status flush(Deadline deadline) override;

  /// Stops taking events (later deliveries fail with `closed`), waits for the responses to
  /// what was queued until `deadline`, then fails what is left with `unavailable` (the
  /// pipeline counts it dropped at shutdown), closes the connections and joins the I/O
  /// thread. Returns ok when nothing was left, otherwise `timeout` naming how many requests
  /// were left. Idempotent (later calls return ok). A terminate() from another thread wakes
  /// the I/O thread at once: it returns by `deadline` whatever the requests in flight wait
  /// for. Called back on the adapter's own I/O thread (a settlement or telemetry callback
  /// that shuts the Emitter down), it cannot wait for that thread: it returns at once, the
  /// thread fails what is left once the callback returns, and the destructor joins it (see
  /// ~Webhook); the result counts what was outstanding.
  Status terminate(Deadline deadline) override;

  /// `options.name`.
  [[nodiscard]] std::string_view name() const override;

  /// 16 deliveries per connection (`16 * max_connections`), which the pipeline cuts to a
  /// queue's worth of batches (200 with the default options) unless
  /// AdapterOptions::max_in_flight is set. A deep window keeps signed requests queued
  /// behind the busy connections: a connection that frees starts the next one in the same
  /// pass of the I/O thread, and the consumer is woken once per many responses instead of
  /// once per few (docs/BENCHMARKS.md, "Webhooks"). The price: when a request fails, up
  /// to that many deliveries already handed over may be settled before its retry
  /// (delivery.hpp, "Retries and order"); set max_in_flight lower where order matters more.
  [[nodiscard]] std::size_t preferred_max_in_flight() const noexcept override;

  /// Requests queued or in flight (not yet answered). Thread-safe; one relaxed load.
  [[nodiscard]] std::size_t outstanding() const noexcept;

 private:
  friend struct detail::WebhookAccess;
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace emissions::adapters
