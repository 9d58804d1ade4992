#include "options.hpp"

#include <algorithm>
#include <cctype>
#include <set>
#include <string_view>

#include "common/config_check.hpp"
#include "signature.hpp"
#include "url.hpp"

namespace emissions::detail::webhooks {
namespace {

// RFC 9110 token characters.
bool token_char(unsigned char c) {
  if (std::isalnum(c) != 0) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Headers the adapter writes itself (or that would break the framing of its requests).
bool reserved_header(std::string_view lower_name) {
  constexpr std::string_view kReserved[] = {"content-type",      "content-length", "host",
                                            "transfer-encoding", "connection",     "expect"};
  if (lower_name.starts_with("webhook-")) return true;
  return std::find(std::begin(kReserved), std::end(kReserved), lower_name) != std::end(kReserved);
}

std::string header_field(const std::string& name) {
  return "WebhookOptions.headers[\"" + name + "\"]";
}

}  // namespace

Settings check_options(const adapters::WebhookOptions& options) {
  Settings settings;

  if (options.url.empty())
    config_error("WebhookOptions.url", "set (an http:// or https:// URL)", "\"\"");
  const ParsedUrl url = parse_url(options.url);
  if (!url.error.empty()) {
    // The URL itself is not quoted: it may carry a password or a token.
    config_error("WebhookOptions.url", "an absolute http:// or https:// URL",
                 "a URL libcurl cannot parse: " + url.error);
  }
  if (url.scheme != "http" && url.scheme != "https") {
    config_error("WebhookOptions.url", "an http:// or https:// URL",
                 "a URL with scheme '" + url.scheme + "'");
  }
  settings.url = options.url;
  settings.endpoint = url.endpoint;

  if (options.secrets.empty()) {
    config_error("WebhookOptions.secrets", "at least one secret (" + std::string(kSecretRule) + ")",
                 "none");
  }
  for (std::size_t i = 0; i < options.secrets.size(); ++i) {
    std::string problem;
    std::string key = decode_secret(options.secrets[i], problem);
    if (key.empty()) {
      // The value is never quoted: only what is wrong with it.
      config_error("WebhookOptions.secrets[" + std::to_string(i) + "]", std::string(kSecretRule),
                   "a secret that " + problem);
    }
    settings.keys.push_back(std::move(key));
  }

  // HTTP header names are case-insensitive: two keys that differ only in case would send the
  // header twice (or let a later line override an earlier one), so they are refused.
  std::set<std::string> seen;
  for (const auto& [name, value] : options.headers) {
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) {
          return token_char(static_cast<unsigned char>(c));
        })) {
      throw ConfigError(
          "WebhookOptions.headers: the name of a header must be an HTTP token (got " +
          std::string(name.empty() ? "an empty name" : "a name with other characters") + ")");
    }
    const std::string lowered = lower(name);
    if (reserved_header(lowered)) {
      throw ConfigError(header_field(name) +
                        " is written by the adapter: content-type, content-length, host, "
                        "transfer-encoding, connection, expect and webhook-* cannot be set");
    }
    if (!seen.insert(lowered).second) {
      throw ConfigError(header_field(name) +
                        " is given twice: header names are case-insensitive, " +
                        "and another key of WebhookOptions.headers differs from it only in case");
    }
    if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
      throw ConfigError(header_field(name) +
                        " must not hold CR, LF or NUL (its value is not shown)");
    }
    // "Name;" is how libcurl sends a header with an empty value ("Name:" would remove it).
    settings.header_lines.push_back(value.empty() ? name + ";" : name + ": " + value);
  }

  check_range("WebhookOptions.timeout", options.timeout, std::chrono::milliseconds(1), kMaxTimeout);
  check_range("WebhookOptions.max_connections", options.max_connections, 1, kMaxConnections);
  check_range("WebhookOptions.max_body_bytes", options.max_body_bytes, 1, kMaxBodyBytes);
  if (options.name.empty()) config_error("WebhookOptions.name", "non-empty", "\"\"");

  settings.timeout = options.timeout;
  settings.max_connections = options.max_connections;
  settings.max_body_bytes = options.max_body_bytes;
  settings.batch = options.batch;
  settings.allow_private_networks = options.allow_private_networks;
  settings.insecure_skip_verify = options.insecure_skip_verify;
  settings.name = options.name;
  return settings;
}

}  // namespace emissions::detail::webhooks
