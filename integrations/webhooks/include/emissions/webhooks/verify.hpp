/// @file
/// emissions/webhooks/verify.hpp: checking (and making) Standard Webhooks signatures, for
/// services that receive what emissions::adapters::Webhook sends.
///
/// Link `emissions::webhooks` (the target of the Webhook adapter). OpenSSL's headers are not
/// needed to include this one.
///
/// @code
///   #include <emissions/webhooks/verify.hpp>
///
///   // In the receiver's HTTP handler, with the raw body bytes as they arrived:
///   const std::vector<std::string> secrets = {"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"};
///   emissions::Status s = emissions::webhooks::verify(
///       secrets, request.header("webhook-id"), request.header("webhook-timestamp"),
///       request.header("webhook-signature"), request.body());
///   if (!s.ok()) return respond(400, s.message());  // stale, or not signed by us
///   if (already_seen(request.header("webhook-id"))) return respond(200);  // a retry
/// @endcode
///
/// The signed content is `id + "." + timestamp + "." + body`; a signature is `v1,` and the
/// base64 of its HMAC-SHA256 under the secret's key (the base64-decoded part after
/// `whsec_`). A `webhook-signature` header holds one or more, space-separated (one per
/// secret while a secret is rotated); signatures of other versions (`v1a,` ...) are
/// ignored.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "emissions/status.hpp"

namespace emissions::webhooks {

/// Whether `signature_header` holds a valid signature of (`id`, `timestamp`, `body`) under
/// one of `secrets`, made within `tolerance` of now.
///
/// Ok when the timestamp (Unix seconds) is at most `tolerance` away from the clock, in
/// either direction, and one `v1` signature of the header matches one secret (compared in
/// constant time). Otherwise `invalid_argument`, whose message says which: the timestamp is
/// missing, not a number, too old or too far in the future (with by how much); the
/// header holds no `v1` signature; no signature matches; or a secret is malformed (naming
/// its index). Messages never contain a secret or the body. Every secret must be `whsec_`
/// and the base64 of 24 to 64 bytes.
///
/// Thread-safe. Allocates; never throws (out of memory: `internal`).
///
/// @code
///   Status s = verify(secrets, id, ts, sig, body, std::chrono::minutes(1));
/// @endcode
[[nodiscard]] Status verify(std::span<const std::string> secrets, std::string_view id,
                            std::string_view timestamp, std::string_view signature_header,
                            std::string_view body,
                            std::chrono::seconds tolerance = std::chrono::minutes(5));

/// The `webhook-signature` header value for (`id`, `timestamp`, `body`): `v1,<base64>` per
/// secret, in the order given, space-separated. For tests and for senders of our own.
///
/// Throws ConfigError (naming the secret's index, not its value) for no secret or a
/// malformed one. Thread-safe.
///
/// @code
///   sign(secrets, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, R"({"test": 2432232314})");
///   // "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" for
///   whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
/// @endcode
[[nodiscard]] std::string sign(std::span<const std::string> secrets, std::string_view id,
                               std::int64_t timestamp, std::string_view body);

}  // namespace emissions::webhooks
