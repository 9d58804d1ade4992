// Signatures: the Standard Webhooks test vector, an independent HMAC (the openssl command)
// over the same bytes, rotation with several secrets, and what verify() says (and never
// says) when it refuses.
#include <chrono>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base64.hpp"
#include "emissions/status.hpp"
#include "emissions/webhooks/verify.hpp"
#include "signature.hpp"
#include "test_server.hpp"
#include "webhook_fixture.hpp"

namespace {

using emissions::Errc;
using emissions::webhooks::sign;
using emissions::webhooks::verify;
using emissions::webhooks_test::openssl_signature;
using emissions::webhooks_test::run_command;
using ::testing::HasSubstr;
using ::testing::Not;
namespace detail = emissions::detail::webhooks;

// The test vector of the specification's reference libraries
// (standard-webhooks/standard-webhooks, libraries/go/webhook_test.go, TestWebhookSign; the
// same in the other languages' tests).
constexpr const char* kSpecSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
constexpr const char* kSpecId = "msg_p5jXN8AQM9LWM0D4loKWxJek";
constexpr std::int64_t kSpecTimestamp = 1614265330;
constexpr const char* kSpecBody = R"({"test": 2432232314})";
constexpr const char* kSpecSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

// Two more secrets (24 and 32 random bytes).
constexpr const char* kSecretA = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
constexpr const char* kSecretB = "whsec_1X5ns+JwydcD0XgUN0Ey3qxcS9pzTbr6YXS0y0SBldM=";

std::string now_text() {
  return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count());
}

std::string hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (const char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

TEST(WebhookSignature, MatchesTheSpecificationsTestVector) {
  const std::vector<std::string> secrets = {kSpecSecret};
  EXPECT_EQ(sign(secrets, kSpecId, kSpecTimestamp, kSpecBody), kSpecSignature);
  // And verifies, given a tolerance that reaches back to 2021.
  EXPECT_TRUE(verify(secrets, kSpecId, std::to_string(kSpecTimestamp), kSpecSignature, kSpecBody,
                     std::chrono::hours(24 * 365 * 100))
                  .ok());
}

TEST(WebhookSignature, MatchesTheOpensslCommandOverTheSameBytes) {
  ASSERT_TRUE(run_command("openssl version").first) << "the openssl command is needed";
  EXPECT_EQ(openssl_signature(kSpecSecret, kSpecId, std::to_string(kSpecTimestamp), kSpecBody),
            kSpecSignature);
  // Bodies with what a naive implementation gets wrong: UTF-8, quotes, newlines, dots.
  const std::vector<std::string> bodies = {
      R"({"name":"order_created","payload":{"note":"crème brûlée. \"ok\"\n"}})", "[]",
      std::string(70'000, 'x') + "."};
  for (const std::string& body : bodies) {
    for (const char* secret : {kSecretA, kSecretB}) {
      const std::string ts = now_text();
      const std::vector<std::string> secrets = {secret};
      EXPECT_EQ(sign(secrets, "0190a2b4-7c1d-7e00-8000-000000000001", std::stoll(ts), body),
                openssl_signature(secret, "0190a2b4-7c1d-7e00-8000-000000000001", ts, body));
    }
  }
}

TEST(WebhookSignature, OneSignaturePerSecretWhileRotatingAndEitherVerifies) {
  const std::vector<std::string> both = {kSecretB, kSecretA};  // the new one, the old one
  const std::string ts = now_text();
  const std::string header = sign(both, "id-1", std::stoll(ts), "{}");
  const std::vector<std::string> parts = {
      sign(std::vector<std::string>{kSecretB}, "id-1", std::stoll(ts), "{}"),
      sign(std::vector<std::string>{kSecretA}, "id-1", std::stoll(ts), "{}")};
  EXPECT_EQ(header, parts[0] + " " + parts[1]);

  // A receiver that has only the old secret, only the new one, or both, accepts it.
  EXPECT_TRUE(verify(std::vector<std::string>{kSecretA}, "id-1", ts, header, "{}").ok());
  EXPECT_TRUE(verify(std::vector<std::string>{kSecretB}, "id-1", ts, header, "{}").ok());
  EXPECT_TRUE(verify(both, "id-1", ts, header, "{}").ok());
  // One with neither refuses it.
  const emissions::Status other =
      verify(std::vector<std::string>{kSpecSecret}, "id-1", ts, header, "{}");
  EXPECT_EQ(other.code(), Errc::invalid_argument);
  EXPECT_THAT(other.message(), HasSubstr("no signature"));
  // Other versions and junk entries are ignored; a valid v1 among them is enough.
  EXPECT_TRUE(verify(std::vector<std::string>{kSecretA}, "id-1", ts,
                     "v1a,Zm9v v1,notbase64! v2,abc " + parts[1] + " v1,", "{}")
                  .ok());
}

TEST(WebhookSignature, VerifyTellsAStaleTimestampFromABadSignature) {
  const std::vector<std::string> secrets = {kSecretA};
  const std::int64_t now = std::stoll(now_text());
  const std::string body = R"({"card":"4111-CANARY"})";

  // Stale: signed right, ten minutes ago.
  const std::string old_ts = std::to_string(now - 600);
  const emissions::Status stale =
      verify(secrets, "id", old_ts, sign(secrets, "id", now - 600, body), body);
  EXPECT_EQ(stale.code(), Errc::invalid_argument);
  EXPECT_THAT(stale.message(), HasSubstr("stale"));
  EXPECT_THAT(stale.message(), HasSubstr("tolerance of 300 s"));
  // Accepted with a longer tolerance.
  EXPECT_TRUE(verify(secrets, "id", old_ts, sign(secrets, "id", now - 600, body), body,
                     std::chrono::minutes(11))
                  .ok());
  // In the future.
  const std::string future_ts = std::to_string(now + 600);
  const emissions::Status future =
      verify(secrets, "id", future_ts, sign(secrets, "id", now + 600, body), body);
  EXPECT_THAT(future.message(), HasSubstr("in the future"));
  // The extremes of the type: refused as stale or future, without overflowing (UBSan).
  const emissions::Status oldest = verify(secrets, "id", "-9223372036854775808", "v1,AAAA", body);
  EXPECT_THAT(oldest.message(), HasSubstr("stale: 92233720"));
  const emissions::Status latest = verify(secrets, "id", "9223372036854775807", "v1,AAAA", body);
  EXPECT_THAT(latest.message(), HasSubstr("in the future by 92233720"));

  // Fresh, but the body, the id or the timestamp changed after signing.
  const std::string ts = std::to_string(now);
  const std::string good = sign(secrets, "id", now, body);
  EXPECT_TRUE(verify(secrets, "id", ts, good, body).ok());
  for (const auto& [id, t, b] :
       {std::tuple<std::string, std::string, std::string>{"id", ts, body + " "},
        {"id2", ts, body},
        {"id", std::to_string(now - 1), body}}) {
    const emissions::Status bad = verify(secrets, id, t, good, b);
    EXPECT_EQ(bad.code(), Errc::invalid_argument);
    EXPECT_THAT(bad.message(), HasSubstr("no signature"));
    EXPECT_THAT(bad.message(), Not(HasSubstr("stale")));
  }

  // Malformed input, each named.
  EXPECT_THAT(verify(secrets, "id", "", good, body).message(),
              HasSubstr("webhook-timestamp is missing"));
  EXPECT_THAT(verify(secrets, "id", "12x", good, body).message(), HasSubstr("not a number"));
  EXPECT_THAT(verify(secrets, "", ts, good, body).message(), HasSubstr("webhook-id is missing"));
  EXPECT_THAT(verify(secrets, "id", ts, "", body).message(), HasSubstr("no v1 signature"));
  EXPECT_THAT(verify(secrets, "id", ts, "v1a,abc", body).message(), HasSubstr("no v1 signature"));
}

TEST(WebhookSignature, BadSecretsAreNamedByIndexAndNeverQuoted) {
  const std::string ts = now_text();
  const std::vector<std::string> bad_secrets = {
      "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw-CANARY",  // no prefix
      "whsec_CANARY!!notbase64",                  // bad base64
      "whsec_Q0FOQVJZ",                           // 6 bytes: too short
  };
  for (std::size_t i = 0; i < bad_secrets.size(); ++i) {
    const std::vector<std::string> secrets = {kSecretA, bad_secrets[i]};
    const emissions::Status s = verify(secrets, "id", ts, "v1,abc", "{}");
    EXPECT_EQ(s.code(), Errc::invalid_argument);
    EXPECT_THAT(s.message(), HasSubstr("secrets[1]"));
    EXPECT_THAT(s.message(), Not(HasSubstr("CANARY")));
    EXPECT_THAT(s.message(), Not(HasSubstr("Q0FOQVJZ")));
    try {
      (void)sign(secrets, "id", 1, "{}");
      ADD_FAILURE() << "sign() accepted bad secret " << i;
    } catch (const emissions::ConfigError& e) {
      EXPECT_THAT(e.what(), HasSubstr("secrets[1]"));
      EXPECT_THAT(e.what(), Not(HasSubstr("CANARY")));
      EXPECT_THAT(e.what(), Not(HasSubstr("Q0FOQVJZ")));
    }
  }
  EXPECT_THAT(verify({}, "id", ts, "v1,abc", "{}").message(), HasSubstr("at least one secret"));
  EXPECT_THROW((void)sign({}, "id", 1, "{}"), emissions::ConfigError);
}

TEST(WebhookSignature, VerifyNeverQuotesTheSecretOrTheBody) {
  const std::vector<std::string> secrets = {kSecretA};
  const std::string body = R"({"secret_note":"CANARY-7f3a"})";
  const std::string ts = now_text();
  const std::string key_b64 = std::string(kSecretA).substr(6);
  for (const std::string& header :
       {std::string("v1,AAAA"), std::string("v1,") + key_b64, sign(secrets, "x", 1, body)}) {
    for (const std::string& t : {ts, std::string("1"), std::string("zz")}) {
      const std::string message = verify(secrets, "id", t, header, body).message();
      EXPECT_THAT(message, Not(HasSubstr("CANARY")));
      EXPECT_THAT(message, Not(HasSubstr(key_b64)));
    }
  }
}

TEST(WebhookBase64, RoundTripsAndRefusesWhatIsNotCanonical) {
  for (const std::string text : {"", "f", "fo", "foo", "foob", "fooba", "foobar"}) {
    const std::string encoded = detail::base64_encode(
        std::span(reinterpret_cast<const unsigned char*>(text.data()), text.size()));
    EXPECT_EQ(detail::base64_decode(encoded), text) << encoded;
  }
  EXPECT_EQ(detail::base64_encode(std::span(reinterpret_cast<const unsigned char*>("foobar"), 6)),
            "Zm9vYmFy");
  EXPECT_EQ(detail::base64_decode("Zm9vYg=="), "foob");
  EXPECT_EQ(detail::base64_decode("Zm9vYg"), "foob");  // padding may be left out
  EXPECT_FALSE(detail::base64_decode("Zm9vYg="));      // but not half of it
  EXPECT_FALSE(detail::base64_decode("Zm9vYh=="));     // leftover bits set
  EXPECT_FALSE(detail::base64_decode("Zm9v YmFy"));    // whitespace
  EXPECT_FALSE(detail::base64_decode("Zm9v-mFy"));     // base64url is not accepted
  EXPECT_FALSE(detail::base64_decode("Z"));            // a lone character
  EXPECT_FALSE(detail::base64_decode("Zm=9"));         // padding inside
  EXPECT_EQ(hex(*detail::base64_decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")),
            "31f290f6bf06298aab4f08d43c3f082cf648a362da2da4b0");
}

}  // namespace
