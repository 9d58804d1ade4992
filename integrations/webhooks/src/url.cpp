#include "url.hpp"

#include <algorithm>
#include <cctype>

#include "curl_handles.hpp"

namespace emissions::detail::webhooks {
namespace {

std::string get_part(CURLU* url, CURLUPart part, unsigned flags = 0) {
  char* raw = nullptr;
  if (curl_url_get(url, part, &raw, flags) != CURLUE_OK) return {};
  const CurlString owned(raw);
  return owned ? std::string(owned.get()) : std::string();
}

}  // namespace

ParsedUrl parse_url(std::string_view text) {
  ParsedUrl parsed;
  const UrlHandle url(curl_url());
  if (!url) {
    parsed.error = "out of memory";
    return parsed;
  }
  const std::string copy(text);
  const CURLUcode code = curl_url_set(url.get(), CURLUPART_URL, copy.c_str(), 0);
  if (code != CURLUE_OK) {
    parsed.error = curl_url_strerror(code);
    return parsed;
  }
  parsed.scheme = get_part(url.get(), CURLUPART_SCHEME);
  const auto to_lower = [](std::string& part) {
    std::transform(part.begin(), part.end(), part.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  };
  to_lower(parsed.scheme);
  std::string host = get_part(url.get(), CURLUPART_HOST);
  to_lower(host);  // host names are case-insensitive: one spelling in reasons
  const std::string port = get_part(url.get(), CURLUPART_PORT, CURLU_DEFAULT_PORT);
  if (host.empty()) {
    parsed.error = "no host";
    return parsed;
  }
  parsed.endpoint = parsed.scheme + "://" + host + (port.empty() ? "" : ":" + port);
  return parsed;
}

std::string describe_location(std::string_view location) {
  if (location.empty()) return "(none)";
  const ParsedUrl parsed = parse_url(location);
  if (!parsed.error.empty()) return "(unparseable)";
  return parsed.endpoint;  // never the path: a hook's path may be its credential
}

}  // namespace emissions::detail::webhooks
