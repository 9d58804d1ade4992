#include "outcome.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <ctime>

#include <curl/curl.h>

#include "url.hpp"

namespace emissions::detail::webhooks {
namespace {

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())) != 0)
    text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())) != 0)
    text.remove_suffix(1);
  return text;
}

Outcome retry(Errc code, std::string reason, std::optional<std::chrono::milliseconds> after) {
  return Outcome{Verdict::retry, Status(code, std::move(reason)), after, false};
}

Outcome fail(std::string reason, bool disable = false) {
  return Outcome{Verdict::failed, Status(Errc::invalid_argument, std::move(reason)), std::nullopt,
                 disable};
}

std::string describe_delay(std::chrono::milliseconds delay) {
  if (delay.count() % 1000 == 0) return std::to_string(delay.count() / 1000) + " s";
  return std::to_string(delay.count()) + " ms";
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_retry_after(
    std::string_view value, std::chrono::system_clock::time_point now) {
  value = trim(value);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    std::uint64_t seconds = 0;
    const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), seconds);
    const auto longest = std::chrono::duration_cast<std::chrono::seconds>(kLongestRetryAfter);
    if (error == std::errc::result_out_of_range ||
        (error == std::errc() && seconds > static_cast<std::uint64_t>(longest.count()))) {
      return kLongestRetryAfter;
    }
    if (error != std::errc() || end != value.data() + value.size()) return std::nullopt;
    return std::chrono::seconds(seconds);
  }
  // An HTTP date. curl_getdate reads the three forms RFC 9110 allows (and a few more); it
  // is thread-safe.
  const std::string text(value);
  const time_t date = curl_getdate(text.c_str(), nullptr);
  if (date == -1) return std::nullopt;
  const auto at = std::chrono::system_clock::from_time_t(date);
  if (at <= now) return std::chrono::milliseconds(0);
  const auto delay = std::chrono::ceil<std::chrono::milliseconds>(at - now);
  return std::min(delay, kLongestRetryAfter);
}

Outcome classify(const Response& response, std::string_view what, std::string_view endpoint,
                 std::chrono::system_clock::time_point now) {
  // The common case first, building no text.
  if (response.refused.empty() && response.curl_code == CURLE_OK && response.status >= 200 &&
      response.status <= 299) {
    return Outcome{};
  }
  const std::string who(what);
  const std::string where(endpoint);

  if (!response.refused.empty()) {
    return fail(who + ": " + where + " resolves to " + response.refused +
                ", refused because allow_private_networks is false (no connection was made)");
  }
  if (response.curl_code != CURLE_OK) {
    const auto code = static_cast<CURLcode>(response.curl_code);
    std::string reason = who + ": request to " + where + " failed: ";
    reason += response.error.empty() ? curl_easy_strerror(code) : response.error;
    reason += " (";
    reason += curl_easy_strerror(code);
    reason += ")";
    switch (code) {
      case CURLE_OPERATION_TIMEDOUT:
        return retry(Errc::timeout, std::move(reason), std::nullopt);
      default:
        // Refused, reset, unresolvable, TLS handshake or verification, a reply that is not
        // HTTP (libcurl says "unsupported protocol" for it): may work later. The URL was
        // checked at construction.
        return retry(Errc::unavailable, std::move(reason), std::nullopt);
    }
  }

  const long status = response.status;
  const std::string http = who + ": HTTP " + std::to_string(status);
  if (status == 408 || status == 429 || (status >= 500 && status <= 599)) {
    const std::optional<std::chrono::milliseconds> after =
        parse_retry_after(response.retry_after, now);
    std::string reason = http + " from " + where;
    if (after) reason += " (Retry-After " + describe_delay(*after) + ")";
    const Errc code = status == 408   ? Errc::timeout
                      : status == 429 ? Errc::overloaded
                                      : Errc::unavailable;
    return retry(code, std::move(reason), after);
  }
  if (status == 410) {
    return fail(
        http + " Gone from " + where + ": the endpoint is disabled, later events fail at once",
        true);
  }
  if (status >= 300 && status <= 399) {
    return fail(http + " from " + where + " redirects to " + describe_location(response.location) +
                ": redirects are not followed");
  }
  if (status >= 400 && status <= 499) {
    return fail(http + " from " + where +
                ": not retried (a 4xx other than 408, 410 and 429 "
                "fails for good)");
  }
  // 1xx as a final status, or outside 100..599: a broken server, which may be fixed.
  return retry(Errc::unavailable, http + " from " + where + ": not an HTTP status for a response",
               std::nullopt);
}

}  // namespace emissions::detail::webhooks
