// Query strings and percent-decoding, as the WeChat callbacks and the admin API read them.
#include "app/http_util.hpp"

#include <catch2/catch.hpp>
#include <optional>
#include <string>

using botgate::percent_decode;
using botgate::query_param;

TEST_CASE("percent_decode copies plain text and decodes escapes", "[http_util]") {
  CHECK(percent_decode("", true) == std::string());
  CHECK(percent_decode("0123456789abcdef0123456789abcdef01234567", true) ==
        std::string("0123456789abcdef0123456789abcdef01234567"));
  CHECK(percent_decode("a%20b%2Fc%2fd", false) == std::string("a b/c/d"));
  CHECK(percent_decode("%E4%BD%A0%E5%A5%BD", true) == std::string("你好"));
  CHECK(percent_decode("x%00y", true) == std::string("x\0y", 3));
  CHECK(percent_decode("plain%", false) == std::nullopt);
}

TEST_CASE("percent_decode reads '+' as a space only in a query", "[http_util]") {
  CHECK(percent_decode("a+b", true) == std::string("a b"));
  CHECK(percent_decode("a+b", false) == std::string("a+b"));
  CHECK(percent_decode("a%2Bb+c", true) == std::string("a+b c"));
}

TEST_CASE("percent_decode refuses a broken escape anywhere", "[http_util]") {
  for (const char* bad : {"%", "%4", "a%4", "%zz", "%4g", "ok%2", "ok+%x1"}) {
    INFO(bad);
    CHECK(percent_decode(bad, true) == std::nullopt);
  }
}

TEST_CASE("query_param finds a parameter by its exact name", "[http_util]") {
  const std::string target =
      "/wechat/oa?signature=abc&timestamp=1700000000&nonce=n%201&encrypt_type=aes"
      "&msg_signature=def&flag&empty=";
  CHECK(query_param(target, "signature") == std::string("abc"));
  CHECK(query_param(target, "msg_signature") == std::string("def"));
  CHECK(query_param(target, "timestamp") == std::string("1700000000"));
  CHECK(query_param(target, "nonce") == std::string("n 1"));
  CHECK(query_param(target, "flag") == std::string());
  CHECK(query_param(target, "empty") == std::string());
  CHECK(query_param(target, "signatur") == std::nullopt);
  CHECK(query_param(target, "echostr") == std::nullopt);
  CHECK(query_param("/wechat/oa", "signature") == std::nullopt);
  CHECK(query_param("/x?a=1&a=2", "a") == std::string("1"));  // the first one counts
  CHECK(query_param("/x?a=%zz", "a") == std::nullopt);        // broken escape
}

TEST_CASE("query_params reads several parameters in one pass, each as query_param would",
          "[http_util]") {
  const std::string_view target =
      "/wechat/oa?nonce=n%201&a=1&signature=abc&a=2&bad=%zz&flag&timestamp=1700000000";
  const std::string_view names[] = {"signature", "timestamp", "nonce",  "a",
                                    "bad",       "flag",      "echostr"};
  std::optional<std::string> values[std::size(names)];
  values[6] = "left over";                                     // every output is set, found or not
  CHECK(botgate::query_params(target, names, values) == "a");  // the one given twice
  for (std::size_t i = 0; i < std::size(names); ++i) {
    INFO(names[i]);
    CHECK(values[i] == query_param(target, names[i]));
  }
  CHECK(values[0] == std::string("abc"));
  CHECK(values[2] == std::string("n 1"));
  CHECK(values[3] == std::string("1"));  // the first one counts
  CHECK(values[4] == std::nullopt);      // broken escape
  CHECK(values[5] == std::string());
  CHECK(values[6] == std::nullopt);
  const std::string_view signing[] = {"signature", "timestamp", "nonce"};
  std::optional<std::string> once[std::size(signing)];
  CHECK(botgate::query_params(target, signing, once).empty());  // none of these twice
  CHECK(botgate::query_params("/w?nonce=1&signature=a&nonce=1", signing, once) == "nonce");
  const std::string_view too_many[65] = {};
  std::optional<std::string> out[65];
  CHECK_THROWS(botgate::query_params(target, too_many, out));
}
