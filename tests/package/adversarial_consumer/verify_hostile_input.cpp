// Adversary: emissions::webhooks::verify() fed what an attacker can send a receiver: huge
// and malformed headers and bodies, timestamps that overflow, signatures that are almost
// right. The promise (emissions/webhooks/verify.hpp): ok only for a real signature within
// the tolerance; otherwise an error naming what was wrong; never a crash, never a secret in
// the message. Exit status 0 when every case holds; 1 and a line per broken case otherwise.
#include <emissions/webhooks/verify.hpp>

#include <cstdio>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

namespace {

const std::string kSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const std::string kKey = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
int g_broken = 0;

void expect_refused(const char* what, const std::vector<std::string>& secrets, std::string_view id,
                    std::string_view timestamp, std::string_view header, std::string_view body) {
  const emissions::Status s = emissions::webhooks::verify(secrets, id, timestamp, header, body);
  const std::string message = s.message();
  if (s.ok()) {
    std::printf("BROKEN %s: accepted\n", what);
    ++g_broken;
  } else if (message.empty()) {
    std::printf("BROKEN %s: refused without saying why\n", what);
    ++g_broken;
  } else if (message.find(kKey) != std::string::npos || message.size() > 4096) {
    std::printf("BROKEN %s: the message echoes the secret or the input (%zu bytes)\n", what,
                message.size());
    ++g_broken;
  }
}

}  // namespace

int main() {
  const std::vector<std::string> secrets = {kSecret};
  const std::string id = "msg_1";
  const std::string now = std::to_string(std::time(nullptr));
  const std::string body = R"({"type":"order_created"})";
  const std::string good = emissions::webhooks::sign(secrets, id, std::stoll(now), body);

  if (!emissions::webhooks::verify(secrets, id, now, good, body).ok()) {
    std::printf("BROKEN the genuine signature is refused\n");
    ++g_broken;
  }
  // A 16 MiB body, signed and verified, then with its last byte changed.
  std::string big(16u << 20, 'x');
  const std::string big_signature = emissions::webhooks::sign(secrets, id, std::stoll(now), big);
  if (!emissions::webhooks::verify(secrets, id, now, big_signature, big).ok()) {
    std::printf("BROKEN a genuine 16 MiB body is refused\n");
    ++g_broken;
  }
  big.back() = 'y';
  expect_refused("16 MiB body, last byte changed", secrets, id, now, big_signature, big);

  expect_refused("no secrets", {}, id, now, good, body);
  expect_refused("empty header", secrets, id, now, "", body);
  expect_refused("empty id", secrets, "", now, good, body);
  for (const char* timestamp : {"", " ", "-1", "0", "1e10", "0x10", "+1", " 1", "1 ",
                                "99999999999999999999999999", "-99999999999999999999999999",
                                "9223372036854775807", "-9223372036854775808", "1700000000.5"}) {
    const std::string what = std::string("timestamp '") + timestamp + "'";
    expect_refused(what.c_str(), secrets, id, timestamp, good, body);
  }
  // Signatures that are nearly right, or built to cost: one character off, the right bytes
  // under another version, a million spaces, 100,000 candidate signatures, bad base64,
  // a 1 MiB base64 string, embedded NULs.
  std::string off = good;  // "v1," then base64: change a character in the middle
  off[10] = off[10] == 'A' ? 'B' : 'A';
  expect_refused("one character off", secrets, id, now, off, body);
  expect_refused("v2 prefix", secrets, id, now, "v2," + good.substr(3), body);
  expect_refused("no version", secrets, id, now, good.substr(3), body);
  expect_refused("a million spaces", secrets, id, now, std::string(1u << 20, ' '), body);
  std::string many;
  for (int i = 0; i < 100000; ++i)
    many += "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= ";
  expect_refused("100,000 wrong signatures", secrets, id, now, many, body);
  expect_refused("bad base64", secrets, id, now, "v1,!!!!", body);
  expect_refused("1 MiB of base64", secrets, id, now, "v1," + std::string(1u << 20, 'A'), body);
  expect_refused("embedded NUL", secrets, id, now, good + std::string(1, '\0'), body);
  expect_refused("body with a NUL appended", secrets, id, now, good, body + std::string(1, '\0'));
  expect_refused("another id", secrets, "msg_2", now, good, body);
  const std::string old = std::to_string(std::time(nullptr) - 3600);
  expect_refused("an hour old, signed then", secrets, id, old,
                 emissions::webhooks::sign(secrets, id, std::stoll(old), body), body);
  // Secrets that are themselves malformed must be refused, not crash.
  expect_refused("malformed secret", {"whsec_%%%"}, id, now, good, body);
  expect_refused("secret without prefix", {kKey}, id, now, good, body);

  if (g_broken != 0) {
    std::printf("verify_hostile_input: %d broken promises\n", g_broken);
    return 1;
  }
  std::printf("verify_hostile_input: every hostile input refused with a reason\n");
  return 0;
}
