// emissions::webhooks::verify and sign (emissions/webhooks/verify.hpp).
#include "emissions/webhooks/verify.hpp"

#include <algorithm>
#include <charconv>
#include <string>
#include <vector>

#include <openssl/crypto.h>

#include "base64.hpp"
#include "common/exceptions.hpp"
#include "signature.hpp"

namespace emissions::webhooks {
namespace {

using detail::webhooks::Mac;
using detail::webhooks::Signer;

// The longest tolerance taken into account (about 31 700 years): beyond, the bounds would
// overflow, and every timestamp is within it anyway.
constexpr std::int64_t kLongestTolerance = std::int64_t{1} << 40;

// The keys of `secrets`; on failure, empty, with `problem` naming the secret by its index.
std::vector<std::string> decode_all(std::span<const std::string> secrets, std::string& problem) {
  std::vector<std::string> keys;
  if (secrets.empty()) {
    problem = "secrets must hold at least one secret (" +
              std::string(detail::webhooks::kSecretRule) + ")";
    return keys;
  }
  keys.reserve(secrets.size());
  for (std::size_t i = 0; i < secrets.size(); ++i) {
    std::string why;
    std::string key = detail::webhooks::decode_secret(secrets[i], why);
    if (key.empty()) {
      problem = "secrets[" + std::to_string(i) + "] must be " +
                std::string(detail::webhooks::kSecretRule) + " (it " + why + ")";
      keys.clear();
      return keys;
    }
    keys.push_back(std::move(key));
  }
  return keys;
}

Status invalid(std::string message) {
  return Status(Errc::invalid_argument, std::move(message));
}

}  // namespace

Status verify(std::span<const std::string> secrets, std::string_view id, std::string_view timestamp,
              std::string_view signature_header, std::string_view body,
              std::chrono::seconds tolerance) {
  try {
    std::string problem;
    const std::vector<std::string> keys = decode_all(secrets, problem);
    if (keys.empty()) return invalid(problem);
    if (id.empty()) return invalid("webhook-id is missing");

    // The timestamp first: a stale message is refused whatever its signature.
    if (timestamp.empty()) return invalid("webhook-timestamp is missing");
    std::int64_t sent = 0;
    const auto [end, error] =
        std::from_chars(timestamp.data(), timestamp.data() + timestamp.size(), sent);
    if (error != std::errc() || end != timestamp.data() + timestamp.size()) {
      return invalid("webhook-timestamp is not a number of seconds");
    }
    const std::int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
    const std::int64_t allowed = std::clamp<std::int64_t>(tolerance.count(), 0, kLongestTolerance);
    const std::string within = " s, beyond the tolerance of " + std::to_string(allowed) + " s";
    // The gaps in unsigned arithmetic: a hostile timestamp (INT64_MIN) must not overflow.
    const auto gap = [](std::int64_t later, std::int64_t earlier) {
      return std::to_string(static_cast<std::uint64_t>(later) -
                            static_cast<std::uint64_t>(earlier));
    };
    if (sent < now - allowed) {
      return invalid("webhook-timestamp is stale: " + gap(now, sent) + within);
    }
    if (sent > now + allowed) {
      return invalid("webhook-timestamp is in the future by " + gap(sent, now) + within);
    }

    // Every v1 signature of the header (space-separated `version,base64` entries); other
    // versions, and v1 entries that are not the base64 of 32 bytes, cannot match.
    std::vector<Mac> offered;
    std::size_t start = 0;
    while (start <= signature_header.size()) {
      std::size_t stop = signature_header.find(' ', start);
      if (stop == std::string_view::npos) stop = signature_header.size();
      const std::string_view entry = signature_header.substr(start, stop - start);
      start = stop + 1;
      if (!entry.starts_with("v1,")) continue;
      const std::optional<std::string> bytes = detail::webhooks::base64_decode(entry.substr(3));
      if (!bytes || bytes->size() != detail::webhooks::kMacBytes) continue;
      Mac mac{};
      std::copy(bytes->begin(), bytes->end(), mac.begin());
      offered.push_back(mac);
    }
    if (offered.empty()) return invalid("webhook-signature holds no v1 signature");

    const Signer signer(keys);
    bool matched = false;
    for (std::size_t k = 0; k < signer.size(); ++k) {
      const Mac expected = signer.mac(k, id, timestamp, body);
      for (const Mac& candidate : offered) {
        // Constant time: how much of a forged signature is right is never timed.
        matched |= CRYPTO_memcmp(expected.data(), candidate.data(), expected.size()) == 0;
      }
    }
    if (!matched) {
      return invalid(
          "no signature in webhook-signature matches the secrets (signed with another "
          "secret, or the id, timestamp or body differ from what was signed)");
    }
    return {};
  } catch (...) {
    return Status(Errc::internal,
                  "webhook verification failed: " + detail::describe_current_exception());
  }
}

std::string sign(std::span<const std::string> secrets, std::string_view id, std::int64_t timestamp,
                 std::string_view body) {
  std::string problem;
  const std::vector<std::string> keys = decode_all(secrets, problem);
  if (keys.empty()) throw ConfigError(problem);
  std::string out;
  Signer(keys).sign(id, std::to_string(timestamp), body, out);
  return out;
}

}  // namespace emissions::webhooks
