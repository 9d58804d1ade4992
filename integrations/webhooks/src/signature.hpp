// Internal: Standard Webhooks secrets and signatures over OpenSSL's libcrypto. A secret is
// `whsec_` + base64(key); a signature is `v1,` + base64(HMAC-SHA256(key, id.timestamp.body)).
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace emissions::detail::webhooks {

inline constexpr std::string_view kSecretPrefix = "whsec_";
inline constexpr std::size_t kMinKeyBytes = 24;
inline constexpr std::size_t kMaxKeyBytes = 64;
// What a secret must be, as ConfigErrors and statuses say it.
inline constexpr std::string_view kSecretRule = "whsec_ followed by the base64 of 24 to 64 bytes";
inline constexpr std::size_t kMacBytes = 32;

using Mac = std::array<unsigned char, kMacBytes>;

// The key of `secret`; on failure, empty, with `problem` saying what is wrong without
// quoting the secret (e.g. "has no whsec_ prefix", "decodes to 16 bytes").
[[nodiscard]] std::string decode_secret(std::string_view secret, std::string& problem);

// HMAC-SHA256 under a fixed set of keys. Each key's context is keyed once, at construction;
// a signature works on a copy of it, kept for a later signature (a few per key). Thread-
// safety: const members may run on several threads at once (each takes a copy of its own,
// under a mutex held only to take or give back a copy; the keyed context is only read).
class Signer {
 public:
  // One context per key (the decoded bytes, not the whsec_ text). Throws std::runtime_error
  // naming OpenSSL's failure when a context cannot be made (no key material is quoted).
  explicit Signer(const std::vector<std::string>& keys);
  ~Signer();
  Signer(Signer&&) noexcept;
  Signer& operator=(Signer&&) noexcept;
  Signer(const Signer&) = delete;
  Signer& operator=(const Signer&) = delete;

  [[nodiscard]] std::size_t size() const noexcept;
  // HMAC-SHA256 of `id.timestamp.body` under key `index`. Throws std::runtime_error when
  // OpenSSL fails (out of memory).
  [[nodiscard]] Mac mac(std::size_t index, std::string_view id, std::string_view timestamp,
                        std::string_view body) const;
  // Appends the header value, `v1,<base64>` per key space-separated, to `out`.
  void sign(std::string_view id, std::string_view timestamp, std::string_view body,
            std::string& out) const;

 private:
  struct Contexts;
  std::unique_ptr<Contexts> contexts_;
};

}  // namespace emissions::detail::webhooks
