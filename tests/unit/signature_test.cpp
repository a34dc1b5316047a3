#include "transport/signature.hpp"

#include <catch2/catch.hpp>
#include <string>

using botgate::constant_time_equal;
using botgate::generic_signature;
using botgate::hmac_sha256_hex;

TEST_CASE("hmac_sha256_hex matches RFC 4231 test case 2", "[signature]") {
  CHECK(hmac_sha256_hex("Jefe", "what do ya want for nothing?") ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST_CASE("hmac_sha256_hex matches RFC 4231 test case 1", "[signature]") {
  const std::string key(20, '\x0b');
  CHECK(hmac_sha256_hex(key, "Hi There") ==
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

TEST_CASE("hmac_sha256_hex hashes a key longer than the block size (RFC 4231 case 6)",
          "[signature]") {
  const std::string key(131, '\xaa');
  CHECK(hmac_sha256_hex(key, "Test Using Larger Than Block-Size Key - Hash Key First") ==
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST_CASE("hmac_sha256_hex handles binary data with NUL bytes", "[signature]") {
  const std::string a("a\0b", 3), b("a\0c", 3);
  CHECK(hmac_sha256_hex("k", a) != hmac_sha256_hex("k", b));
  CHECK(hmac_sha256_hex("k", a) != hmac_sha256_hex("k", "a"));
}

TEST_CASE("hmac_sha256_hex is 64 lower-case hex digits", "[signature]") {
  const std::string mac = hmac_sha256_hex("key", "message");
  REQUIRE(mac.size() == 64);
  for (char c : mac) {
    INFO("char " << c);
    CHECK(((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')));
  }
}

TEST_CASE("generic_signature is v1= plus the HMAC of timestamp.body", "[signature]") {
  const std::string secret = "topsecret";
  const std::string ts = "1700000000";
  const std::string body = R"({"id":"a","conversation":"c"})";
  const std::string sig = generic_signature(secret, ts, body);
  CHECK(sig == "v1=" + hmac_sha256_hex(secret, ts + "." + body));
  CHECK(sig.rfind("v1=", 0) == 0);
  CHECK(sig.size() == 3 + 64);
}

TEST_CASE("generic_signature depends on secret, timestamp and body", "[signature]") {
  const std::string base = generic_signature("s", "1700000000", "body");
  CHECK(generic_signature("t", "1700000000", "body") != base);
  CHECK(generic_signature("s", "1700000001", "body") != base);
  CHECK(generic_signature("s", "1700000000", "bodY") != base);
  // The "." separator matters: moving a character across it changes the MAC.
  CHECK(generic_signature("s", "170000000", "0body") != base);
  CHECK(generic_signature("s", "1700000000", "body") == base);
}

TEST_CASE("constant_time_equal is true for equal strings", "[signature]") {
  CHECK(constant_time_equal("abc", "abc"));
  CHECK(constant_time_equal(std::string(1000, 'x'), std::string(1000, 'x')));
  CHECK(constant_time_equal(std::string("a\0b", 3), std::string("a\0b", 3)));
}

TEST_CASE("constant_time_equal detects a difference in the first or last byte", "[signature]") {
  CHECK_FALSE(constant_time_equal("xbcdef", "abcdef"));
  CHECK_FALSE(constant_time_equal("abcdex", "abcdef"));
  CHECK_FALSE(constant_time_equal("abcxef", "abcdef"));
  CHECK_FALSE(constant_time_equal(std::string("a\0b", 3), std::string("a\0c", 3)));
}

TEST_CASE("constant_time_equal is false for different lengths", "[signature]") {
  CHECK_FALSE(constant_time_equal("abc", "abcd"));
  CHECK_FALSE(constant_time_equal("abcd", "abc"));
  CHECK_FALSE(constant_time_equal("", "a"));
  CHECK_FALSE(constant_time_equal("a", ""));
}

TEST_CASE("constant_time_equal treats two empty strings as equal", "[signature]") {
  CHECK(constant_time_equal("", ""));
  CHECK(constant_time_equal(std::string_view{}, std::string_view{}));
  CHECK(constant_time_equal(std::string_view{}, ""));
}
