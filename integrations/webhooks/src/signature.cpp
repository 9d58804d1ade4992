#include "signature.hpp"

#include <mutex>
#include <stdexcept>
#include <utility>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "base64.hpp"

namespace emissions::detail::webhooks {
namespace {

struct MacDeleter {
  void operator()(EVP_MAC* mac) const noexcept { EVP_MAC_free(mac); }
};
struct MacContextDeleter {
  void operator()(EVP_MAC_CTX* context) const noexcept { EVP_MAC_CTX_free(context); }
};
using MacHandle = std::unique_ptr<EVP_MAC, MacDeleter>;
using MacContextHandle = std::unique_ptr<EVP_MAC_CTX, MacContextDeleter>;

// OpenSSL's last error, for an exception message (never holds key material).
[[noreturn]] void openssl_failed(const char* what) {
  const unsigned long code = ERR_get_error();
  std::string message = std::string("OpenSSL: ") + what;
  if (code != 0) {
    std::array<char, 256> text{};
    ERR_error_string_n(code, text.data(), text.size());
    message.append(": ").append(text.data());
  }
  ERR_clear_error();
  throw std::runtime_error(message);
}

void update(EVP_MAC_CTX* context, std::string_view part) {
  if (EVP_MAC_update(context, reinterpret_cast<const unsigned char*>(part.data()), part.size()) !=
      1) {
    openssl_failed("HMAC update failed");
  }
}

}  // namespace

std::string decode_secret(std::string_view secret, std::string& problem) {
  if (!secret.starts_with(kSecretPrefix)) {
    problem = "has no whsec_ prefix";
    return {};
  }
  std::optional<std::string> key = base64_decode(secret.substr(kSecretPrefix.size()));
  if (!key) {
    problem = "is not valid base64 after whsec_";
    return {};
  }
  if (key->size() < kMinKeyBytes || key->size() > kMaxKeyBytes) {
    problem = "decodes to " + std::to_string(key->size()) + " bytes";
    return {};
  }
  problem.clear();
  return std::move(*key);
}

struct Signer::Contexts {
  std::vector<MacContextHandle> keyed;
  // Per key, copies of its keyed context that finished a signature, for the next one: a
  // copy is re-initialised with the key it holds (EVP_MAC_init with no key), which saves
  // EVP_MAC_CTX_dup's and EVP_MAC_CTX_free's allocations on every signature. At most
  // kSpareContexts per key (one per thread signing at once is enough).
  static constexpr std::size_t kSpareContexts = 16;
  std::mutex mutex;
  std::vector<std::vector<MacContextHandle>> spare;  // guarded by mutex
};

Signer::Signer(const std::vector<std::string>& keys) : contexts_(std::make_unique<Contexts>()) {
  MacHandle hmac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
  if (!hmac) openssl_failed("HMAC is not available");
  std::array<char, 7> digest{"SHA256"};
  const std::array<OSSL_PARAM, 2> params{
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest.data(), 0),
      OSSL_PARAM_construct_end()};
  contexts_->keyed.reserve(keys.size());
  contexts_->spare.resize(keys.size());
  for (const std::string& key : keys) {
    MacContextHandle context(EVP_MAC_CTX_new(hmac.get()));
    if (!context) openssl_failed("cannot create an HMAC context");
    if (EVP_MAC_init(context.get(), reinterpret_cast<const unsigned char*>(key.data()), key.size(),
                     params.data()) != 1) {
      openssl_failed("cannot key an HMAC-SHA256 context");
    }
    contexts_->keyed.push_back(std::move(context));
  }
}

Signer::~Signer() = default;
Signer::Signer(Signer&&) noexcept = default;
Signer& Signer::operator=(Signer&&) noexcept = default;

std::size_t Signer::size() const noexcept {
  return contexts_->keyed.size();
}

Mac Signer::mac(std::size_t index, std::string_view id, std::string_view timestamp,
                std::string_view body) const {
  const EVP_MAC_CTX* keyed = contexts_->keyed.at(index).get();
  MacContextHandle context;
  {
    std::lock_guard lock(contexts_->mutex);
    std::vector<MacContextHandle>& spare = contexts_->spare[index];
    if (!spare.empty()) {
      context = std::move(spare.back());
      spare.pop_back();
    }
  }
  if (context) {
    if (EVP_MAC_init(context.get(), nullptr, 0, nullptr) != 1) {
      openssl_failed("cannot reinitialise an HMAC context");
    }
  } else {
    context.reset(EVP_MAC_CTX_dup(keyed));
    if (!context) openssl_failed("cannot copy an HMAC context");
  }
  update(context.get(), id);
  update(context.get(), ".");
  update(context.get(), timestamp);
  update(context.get(), ".");
  update(context.get(), body);
  Mac out{};
  std::size_t written = 0;
  if (EVP_MAC_final(context.get(), out.data(), &written, out.size()) != 1 ||
      written != out.size()) {
    openssl_failed("HMAC final failed");
  }
  std::lock_guard lock(contexts_->mutex);
  std::vector<MacContextHandle>& spare = contexts_->spare[index];
  if (spare.size() < Contexts::kSpareContexts) {
    try {
      spare.push_back(std::move(context));
    } catch (...) {  // NOLINT(bugprone-empty-catch): out of memory: the copy is freed instead
    }
  }
  return out;
}

void Signer::sign(std::string_view id, std::string_view timestamp, std::string_view body,
                  std::string& out) const {
  for (std::size_t i = 0; i < size(); ++i) {
    if (i != 0) out += ' ';
    out += "v1,";
    base64_encode_to(mac(i, id, timestamp, body), out);
  }
}

}  // namespace emissions::detail::webhooks
