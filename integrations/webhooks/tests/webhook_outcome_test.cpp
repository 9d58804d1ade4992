// How a response (or a transport failure) settles a request's events, without a server:
// every status class, Retry-After in seconds and as an HTTP date, libcurl's errors.
#include <chrono>
#include <string>

#include <curl/curl.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "outcome.hpp"
#include "url.hpp"

namespace {

using emissions::Errc;
using namespace emissions::detail::webhooks;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

// 2026-12-01 10:00:00 UTC.
const std::chrono::system_clock::time_point kNow =
    std::chrono::system_clock::from_time_t(1796119200);

Outcome of_status(long status, std::string retry_after = "", std::string location = "") {
  Response response;
  response.status = status;
  response.retry_after = std::move(retry_after);
  response.location = std::move(location);
  return classify(response, "webhook 'orders'", "https://hooks.example.com:443", kNow);
}

TEST(WebhookOutcome, EveryStatusClass) {
  for (const long status : {200L, 201L, 202L, 204L, 299L}) {
    const Outcome o = of_status(status);
    EXPECT_EQ(o.verdict, Verdict::delivered) << status;
    EXPECT_TRUE(o.status.ok());
  }
  struct Retried {
    long status;
    Errc code;
  };
  for (const Retried r : {Retried{408, Errc::timeout}, Retried{429, Errc::overloaded},
                          Retried{500, Errc::unavailable}, Retried{502, Errc::unavailable},
                          Retried{503, Errc::unavailable}, Retried{599, Errc::unavailable}}) {
    const Outcome o = of_status(r.status);
    EXPECT_EQ(o.verdict, Verdict::retry) << r.status;
    EXPECT_EQ(o.status.code(), r.code) << r.status;
    EXPECT_EQ(o.status.message(), "webhook 'orders': HTTP " + std::to_string(r.status) +
                                      " from https://hooks.example.com:443");
    EXPECT_FALSE(o.retry_after.has_value());
    EXPECT_FALSE(o.disable);
  }
  for (const long status : {400L, 401L, 403L, 404L, 405L, 409L, 413L, 422L, 451L}) {
    const Outcome o = of_status(status);
    EXPECT_EQ(o.verdict, Verdict::failed) << status;
    EXPECT_EQ(o.status.code(), Errc::invalid_argument);
    EXPECT_THAT(o.status.message(), HasSubstr("HTTP " + std::to_string(status) + " from"));
    EXPECT_THAT(o.status.message(), HasSubstr("not retried"));
    EXPECT_FALSE(o.disable);
  }
  const Outcome gone = of_status(410);
  EXPECT_EQ(gone.verdict, Verdict::failed);
  EXPECT_TRUE(gone.disable);
  EXPECT_THAT(gone.status.message(), HasSubstr("HTTP 410 Gone"));

  for (const long status : {300L, 301L, 302L, 303L, 307L, 308L}) {
    const Outcome o = of_status(status, "", "https://other.example.com/new/path?sig=abc#frag");
    EXPECT_EQ(o.verdict, Verdict::failed) << status;
    EXPECT_EQ(o.status.message(), "webhook 'orders': HTTP " + std::to_string(status) +
                                      " from https://hooks.example.com:443 redirects to "
                                      "https://other.example.com:443: redirects are not followed");
  }
  EXPECT_THAT(of_status(302).status.message(), HasSubstr("redirects to (none)"));
  // A final 1xx, or a status outside HTTP's range: a broken server, tried again.
  EXPECT_EQ(of_status(0).verdict, Verdict::retry);
  EXPECT_EQ(of_status(101).verdict, Verdict::retry);
  EXPECT_EQ(of_status(600).verdict, Verdict::retry);
}

TEST(WebhookOutcome, RetryAfterInSecondsOrAsAnHttpDate) {
  EXPECT_EQ(parse_retry_after("2", kNow), 2s);
  EXPECT_EQ(parse_retry_after(" 120 ", kNow), 120s);
  EXPECT_EQ(parse_retry_after("0", kNow), 0s);
  // The three date forms RFC 9110 accepts, 90 s after kNow.
  EXPECT_EQ(parse_retry_after("Tue, 01 Dec 2026 10:01:30 GMT", kNow), 90s);
  EXPECT_EQ(parse_retry_after("Tuesday, 01-Dec-26 10:01:30 GMT", kNow), 90s);
  EXPECT_EQ(parse_retry_after("Tue Dec  1 10:01:30 2026", kNow), 90s);
  // A date in the past: no wait beyond the backoff.
  EXPECT_EQ(parse_retry_after("Tue, 01 Dec 2026 09:00:00 GMT", kNow), 0ms);
  // Capped at 24 h, however far.
  EXPECT_EQ(parse_retry_after("999999999999999999999999", kNow), kLongestRetryAfter);
  EXPECT_EQ(parse_retry_after("172800", kNow), kLongestRetryAfter);
  EXPECT_EQ(parse_retry_after("Fri, 01 Dec 2045 10:00:00 GMT", kNow), kLongestRetryAfter);
  // Anything else is no Retry-After.
  for (const char* junk : {"", "   ", "-5", "1.5", "soon", "2s", "0x10"}) {
    EXPECT_FALSE(parse_retry_after(junk, kNow).has_value()) << junk;
  }

  const Outcome o = of_status(429, "3");
  EXPECT_EQ(o.retry_after, 3s);
  EXPECT_EQ(o.status.message(),
            "webhook 'orders': HTTP 429 from https://hooks.example.com:443 (Retry-After 3 s)");
  EXPECT_EQ(of_status(503, "Tue, 01 Dec 2026 10:00:02 GMT").retry_after, 2s);
  // Retry-After on a status that is not retried changes nothing.
  EXPECT_FALSE(of_status(400, "5").retry_after.has_value());
}

TEST(WebhookOutcome, TransportErrorsAreRetriedAndTheAddressPolicyIsNot) {
  auto of_curl = [](CURLcode code, std::string error = "", std::string refused = "") {
    Response response;
    response.curl_code = code;
    response.error = std::move(error);
    response.refused = std::move(refused);
    return classify(response, "webhook 'orders'", "https://hooks.example.com:443", kNow);
  };
  const Outcome timed_out =
      of_curl(CURLE_OPERATION_TIMEDOUT, "Operation timed out after 300 milliseconds");
  EXPECT_EQ(timed_out.verdict, Verdict::retry);
  EXPECT_EQ(timed_out.status.code(), Errc::timeout);
  EXPECT_EQ(timed_out.status.message(),
            "webhook 'orders': request to https://hooks.example.com:443 failed: Operation timed "
            "out after 300 milliseconds (Timeout was reached)");
  for (const CURLcode code :
       {CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_RECV_ERROR, CURLE_SEND_ERROR,
        CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE, CURLE_SSL_CONNECT_ERROR,
        CURLE_PEER_FAILED_VERIFICATION, CURLE_HTTP2, CURLE_HTTP2_STREAM, CURLE_OUT_OF_MEMORY,
        CURLE_UNSUPPORTED_PROTOCOL, CURLE_WEIRD_SERVER_REPLY}) {
    const Outcome o = of_curl(code);
    EXPECT_EQ(o.verdict, Verdict::retry) << code;
    EXPECT_EQ(o.status.code(), Errc::unavailable) << code;
    EXPECT_THAT(o.status.message(), HasSubstr(curl_easy_strerror(code)));
  }
  const Outcome refused = of_curl(CURLE_COULDNT_CONNECT, "Failed to connect", "10.0.0.1 (private)");
  EXPECT_EQ(refused.verdict, Verdict::failed);
  EXPECT_EQ(refused.status.code(), Errc::invalid_argument);
  EXPECT_EQ(refused.status.message(),
            "webhook 'orders': https://hooks.example.com:443 resolves to 10.0.0.1 (private), "
            "refused because allow_private_networks is false (no connection was made)");
}

TEST(WebhookOutcome, EndpointsAndLocationsAreNamedWithoutCredentialsOrQueries) {
  EXPECT_EQ(parse_url("https://user:pw@Hooks.Example.com/a/b?key=k#f").endpoint,
            "https://hooks.example.com:443");
  EXPECT_EQ(parse_url("HTTP://127.0.0.1:8080/x").endpoint, "http://127.0.0.1:8080");
  EXPECT_EQ(parse_url("http://[::1]:9/x").endpoint, "http://[::1]:9");
  EXPECT_EQ(parse_url("https://h.example/x").scheme, "https");
  EXPECT_FALSE(parse_url("not a url").error.empty());
  // Never the path, the query or user information: any of them may be a credential.
  EXPECT_EQ(describe_location("https://user:pw@other.example/services/T0/B0/SECRET?token=t"),
            "https://other.example:443");
  EXPECT_EQ(describe_location(""), "(none)");
  EXPECT_EQ(describe_location("::::"), "(unparseable)");
}

}  // namespace
