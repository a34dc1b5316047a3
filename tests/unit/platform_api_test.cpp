// The WeChat Official Account / WeCom KF server APIs: error-code verdicts, request targets and
// bodies, KF msgids and the JSON answers.
#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <set>
#include <string>

#include "policies/platform_errors.hpp"
#include "transport/wechat_api.hpp"

using botgate::classify_platform_error;
using botgate::PlatformVerdict;
using botgate::token_error_is_transient;
using botgate::wechat::AccountApi;
using botgate::wechat::ApiAnswer;
using botgate::wechat::describe;
using botgate::wechat::kf_msgid;
using botgate::wechat::parse_api_answer;
using botgate::wechat::send_body;
using botgate::wechat::send_target;
using botgate::wechat::token_target;

namespace {

constexpr AccountApi kOa = AccountApi::official_account;
constexpr AccountApi kKf = AccountApi::wecom_kf;

const char* name(PlatformVerdict v) {
  switch (v) {
    case PlatformVerdict::sent:
      return "sent";
    case PlatformVerdict::refresh_token:
      return "refresh_token";
    case PlatformVerdict::retry:
      return "retry";
    case PlatformVerdict::dead_letter:
      return "dead_letter";
  }
  return "?";
}

std::string verdict(long errcode) {
  return name(classify_platform_error(errcode));
}

bool is_lower_hex(const std::string& s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------
// policies/platform_errors.hpp

TEST_CASE("errcode 0 means the message was sent", "[platform_api]") {
  CHECK(verdict(0) == "sent");
}

TEST_CASE("stale-token errcodes ask for a token refresh", "[platform_api]") {
  CHECK(verdict(40001) == "refresh_token");  // invalid credential
  CHECK(verdict(40014) == "refresh_token");  // invalid access_token
  CHECK(verdict(42001) == "refresh_token");  // access_token expired
}

TEST_CASE("transient errcodes are retried", "[platform_api]") {
  CHECK(verdict(-1) == "retry");     // system busy
  CHECK(verdict(45009) == "retry");  // api freq out of limit
  CHECK(verdict(45011) == "retry");  // api minute-quota
}

TEST_CASE("errcodes the platform will never take are dead-lettered", "[platform_api]") {
  CHECK(verdict(45015) == "dead_letter");  // outside the 48 h window
  CHECK(verdict(45047) == "dead_letter");  // out of send limit
  CHECK(verdict(40003) == "dead_letter");  // invalid openid
  CHECK(verdict(99999) == "dead_letter");  // unknown
  CHECK(verdict(40013) == "dead_letter");  // invalid appid
  CHECK(verdict(1) == "dead_letter");
  CHECK(verdict(-2) == "dead_letter");
}

TEST_CASE("classify_platform_error is usable at compile time", "[platform_api]") {
  static_assert(classify_platform_error(0) == PlatformVerdict::sent);
  static_assert(classify_platform_error(42001) == PlatformVerdict::refresh_token);
  static_assert(token_error_is_transient(-1));
  CHECK(true);
}

TEST_CASE("only busy and frequency errors make a token fetch transient", "[platform_api]") {
  CHECK(token_error_is_transient(-1));
  CHECK(token_error_is_transient(45009));
  CHECK(token_error_is_transient(45011));
  // Refused credentials are not transient.
  CHECK_FALSE(token_error_is_transient(40001));
  CHECK_FALSE(token_error_is_transient(40013));
  CHECK_FALSE(token_error_is_transient(40125));
  CHECK_FALSE(token_error_is_transient(40014));
  CHECK_FALSE(token_error_is_transient(42001));
  CHECK_FALSE(token_error_is_transient(45015));
  CHECK_FALSE(token_error_is_transient(0));
  CHECK_FALSE(token_error_is_transient(99999));
}

// ---------------------------------------------------------------------------
// Request targets

TEST_CASE("token_target for an Official Account", "[platform_api]") {
  CHECK(token_target(kOa, "", "wx1234567890abcdef", "app-secret_1.0~") ==
        "/cgi-bin/token?grant_type=client_credential&appid=wx1234567890abcdef&secret=app-"
        "secret_1.0~");
}

TEST_CASE("token_target for WeCom", "[platform_api]") {
  CHECK(token_target(kKf, "", "ww0123456789", "CorpSecret42") ==
        "/cgi-bin/gettoken?corpid=ww0123456789&corpsecret=CorpSecret42");
}

TEST_CASE("token_target percent-encodes the id and the secret", "[platform_api]") {
  CHECK(token_target(kOa, "", "a b&c=d", "x+y/z?#%&secret=evil") ==
        "/cgi-bin/token?grant_type=client_credential&appid=a%20b%26c%3Dd"
        "&secret=x%2By%2Fz%3F%23%25%26secret%3Devil");
  CHECK(token_target(kKf, "", "corp&x=1", "s e\xc3\xa9") ==
        "/cgi-bin/gettoken?corpid=corp%26x%3D1&corpsecret=s%20e%C3%A9");
  // A CR LF cannot reach the request line.
  CHECK(token_target(kKf, "", "c", "s\r\nHost: evil") ==
        "/cgi-bin/gettoken?corpid=c&corpsecret=s%0D%0AHost%3A%20evil");
}

TEST_CASE("token_target puts the api_base path in front", "[platform_api]") {
  CHECK(token_target(kOa, "/wx", "id", "sec") ==
        "/wx/cgi-bin/token?grant_type=client_credential&appid=id&secret=sec");
  CHECK(token_target(kKf, "/a/b", "id", "sec") == "/a/b/cgi-bin/gettoken?corpid=id&corpsecret=sec");
}

TEST_CASE("send_target for both APIs", "[platform_api]") {
  CHECK(send_target(kOa, "", "TOKEN") == "/cgi-bin/message/custom/send?access_token=TOKEN");
  CHECK(send_target(kKf, "", "TOKEN") == "/cgi-bin/kf/send_msg?access_token=TOKEN");
  CHECK(send_target(kOa, "/wx", "T") == "/wx/cgi-bin/message/custom/send?access_token=T");
  CHECK(send_target(kKf, "/wx", "T") == "/wx/cgi-bin/kf/send_msg?access_token=T");
  // Tokens are opaque: anything unusual is encoded.
  CHECK(send_target(kOa, "", "a+b/c=&d") ==
        "/cgi-bin/message/custom/send?access_token=a%2Bb%2Fc%3D%26d");
}

// ---------------------------------------------------------------------------
// Bodies

TEST_CASE("send_body for an Official Account", "[platform_api]") {
  CHECK(send_body(kOa, "OPENID", "text", "hello", "", "") ==
        R"({"touser":"OPENID","msgtype":"text","text":{"content":"hello"}})");
  // open_kfid and msgid are WeCom KF only.
  CHECK(send_body(kOa, "OPENID", "text", "hello", "KF", "MSGID") ==
        R"({"touser":"OPENID","msgtype":"text","text":{"content":"hello"}})");
}

TEST_CASE("send_body for WeCom KF", "[platform_api]") {
  CHECK(send_body(kKf, "EXTERNAL_USERID", "text", "hello", "OPEN_KFID", "MSGID") ==
        R"({"touser":"EXTERNAL_USERID","open_kfid":"OPEN_KFID","msgid":"MSGID",)"
        R"("msgtype":"text","text":{"content":"hello"}})");
}

TEST_CASE("send_body escapes quotes, backslashes and newlines and keeps UTF-8", "[platform_api]") {
  const std::string content = "say \"hi\"\\\nline 2\t\xe4\xbd\xa0\xe5\xa5\xbd";  // 你好
  const std::string escaped = R"(say \"hi\"\\\nline 2\t)"
                              "\xe4\xbd\xa0\xe5\xa5\xbd";
  CHECK(send_body(kOa, "o\"1", "text", content, "", "") ==
        R"({"touser":"o\"1","msgtype":"text","text":{"content":")" + escaped + R"("}})");
  CHECK(send_body(kKf, "u\n", "text", content, "k\"f", "m") ==
        R"({"touser":"u\n","open_kfid":"k\"f","msgid":"m","msgtype":"text",)"
        R"("text":{"content":")" +
            escaped + R"("}})");
  // The body is JSON the answer parser reads as an object.
  CHECK(parse_api_answer(send_body(kKf, "u", "text", content, "k", "m")).parsed);
}

TEST_CASE("send_body passes another msgtype's object through as given", "[platform_api]") {
  const std::string image = R"({"media_id":"MEDIA_ID"})";
  CHECK(send_body(kOa, "OPENID", "image", image, "", "") ==
        R"({"touser":"OPENID","msgtype":"image","image":{"media_id":"MEDIA_ID"}})");
  CHECK(send_body(kKf, "EXTERNAL_USERID", "image", image, "OPEN_KFID", "MSGID") ==
        R"({"touser":"EXTERNAL_USERID","open_kfid":"OPEN_KFID","msgid":"MSGID",)"
        R"("msgtype":"image","image":{"media_id":"MEDIA_ID"}})");
  const std::string menu =
      R"({"head_content":"你?","list":[{"id":"1","content":"yes"}],"tail_content":""})";
  const std::string body = send_body(kOa, "o", "msgmenu", menu, "", "");
  CHECK(body == R"({"touser":"o","msgtype":"msgmenu","msgmenu":)" + menu + "}");
  CHECK(parse_api_answer(body).parsed);
}

// ---------------------------------------------------------------------------
// kf_msgid

TEST_CASE("kf_msgid is 32 lowercase hex digits", "[platform_api]") {
  for (auto [source, id] : {std::pair<std::string, std::string>{"wx", "evt-1"},
                            {"", ""},
                            {"src", std::string(1000, 'x')},
                            {"s\xe4\xbd\xa0", "id with spaces\r\n"}}) {
    const std::string m = kf_msgid(source, id);
    INFO("msgid: " << m);
    CHECK(m.size() == 32);
    CHECK(is_lower_hex(m));
  }
}

TEST_CASE("kf_msgid is the same for the same message", "[platform_api]") {
  CHECK(kf_msgid("wx", "evt-1") == kf_msgid("wx", "evt-1"));
  CHECK(kf_msgid(std::string("wx"), std::string("evt-1")) == kf_msgid("wx", "evt-1"));
}

TEST_CASE("kf_msgid differs by source and by id", "[platform_api]") {
  const std::string base = kf_msgid("wx", "evt-1");
  CHECK(kf_msgid("wx", "evt-2") != base);
  CHECK(kf_msgid("wy", "evt-1") != base);
  CHECK(kf_msgid("wx", "evt-1 ") != base);
  // The boundary between source and id counts.
  CHECK(kf_msgid("ab", "c") != kf_msgid("a", "bc"));
  CHECK(kf_msgid("", "wxevt-1") != kf_msgid("wx", "evt-1"));
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(kf_msgid("wx", "evt-" + std::to_string(i)));
  CHECK(seen.size() == 1000);
}

// ---------------------------------------------------------------------------
// parse_api_answer and describe

TEST_CASE("an Official Account token answer without errcode is a success", "[platform_api]") {
  const ApiAnswer a = parse_api_answer(R"({"access_token":"TOKEN-1","expires_in":7200})");
  CHECK(a.parsed);
  CHECK(a.errcode == 0);
  CHECK(a.errmsg.empty());
  CHECK(a.access_token == "TOKEN-1");
  CHECK(a.expires_in == 7200);
}

TEST_CASE("a WeCom token answer with errcode 0 is a success", "[platform_api]") {
  const ApiAnswer a =
      parse_api_answer(R"({"errcode":0,"errmsg":"ok","access_token":"TOKEN-2","expires_in":3600})");
  CHECK(a.parsed);
  CHECK(a.errcode == 0);
  CHECK(a.errmsg == "ok");
  CHECK(a.access_token == "TOKEN-2");
  CHECK(a.expires_in == 3600);
}

TEST_CASE("error answers carry their errcode and errmsg", "[platform_api]") {
  ApiAnswer a = parse_api_answer(R"({"errcode":40013,"errmsg":"invalid appid"})");
  CHECK(a.parsed);
  CHECK(a.errcode == 40013);
  CHECK(a.errmsg == "invalid appid");
  CHECK(a.access_token.empty());
  CHECK(a.expires_in == 0);

  a = parse_api_answer(R"({"errcode":-1,"errmsg":"system busy"})");
  CHECK(a.parsed);
  CHECK(a.errcode == -1);
  CHECK(a.errmsg == "system busy");

  a = parse_api_answer(" {\n \"errmsg\" : \"response out of time limit\", \"errcode\" : 45015 }\n");
  CHECK(a.parsed);
  CHECK(a.errcode == 45015);
  CHECK(a.errmsg == "response out of time limit");
}

TEST_CASE("a send answer with extra fields parses", "[platform_api]") {
  const ApiAnswer a = parse_api_answer(
      R"({"errcode":0,"errmsg":"ok","msgid":"MSGID","extra":{"a":[1,2,null]},"n":1.5})");
  CHECK(a.parsed);
  CHECK(a.errcode == 0);
  CHECK(a.errmsg == "ok");
  CHECK(a.access_token.empty());
}

TEST_CASE("an errmsg with escapes is unescaped", "[platform_api]") {
  const ApiAnswer a = parse_api_answer(R"({"errcode":40003,"errmsg":"invalid \"openid\"\n"})");
  CHECK(a.parsed);
  CHECK(a.errcode == 40003);
  CHECK(a.errmsg == "invalid \"openid\"\n");
}

TEST_CASE("an answer that is not a JSON object is not parsed", "[platform_api]") {
  for (const char* body : {"", " ", "<html><body>502 Bad Gateway</body></html>", "not json", "{",
                           "[]", R"([{"errcode":0}])", R"("errcode")", "42", "null", "true"}) {
    INFO("body: " << body);
    CHECK_FALSE(parse_api_answer(body).parsed);
  }
}

TEST_CASE("a truncated answer is not parsed", "[platform_api]") {
  const std::string body = R"({"errcode":0,"errmsg":"ok","access_token":"T","expires_in":7200})";
  REQUIRE(parse_api_answer(body).parsed);
  for (std::size_t len = 0; len < body.size(); ++len) {
    INFO("prefix: " << body.substr(0, len));
    CHECK_FALSE(parse_api_answer(body.substr(0, len)).parsed);
  }
}

TEST_CASE("an answer with wrong-typed fields is not parsed", "[platform_api]") {
  for (const char* body :
       {R"({"errcode":"40001","errmsg":"x"})", R"({"errcode":null})", R"({"errcode":1.5})",
        R"({"errcode":true})", R"({"errmsg":5})", R"({"errcode":0,"errmsg":["ok"]})",
        R"({"access_token":123})", R"({"access_token":null,"expires_in":7200})",
        R"({"access_token":"T","expires_in":"7200"})",
        R"({"access_token":"T","expires_in":null})"}) {
    INFO("body: " << body);
    const ApiAnswer a = parse_api_answer(body);
    CHECK_FALSE(a.parsed);
    CHECK(a.problem.find(" is not a") != std::string::npos);
  }
  CHECK(parse_api_answer("<html>").problem == "the answer is not a JSON object");
}

TEST_CASE("expires_in is taken as any JSON number of seconds", "[platform_api]") {
  // The docs take an expires_in over a day as a day: a float or a huge one is a number too.
  const auto expires = [](const std::string& v) {
    const ApiAnswer a = parse_api_answer(R"({"access_token":"T","expires_in":)" + v + "}");
    INFO("expires_in: " << v << " problem: " << a.problem);
    CHECK(a.parsed);
    CHECK(a.has_expires_in);
    return a.expires_in;
  };
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  CHECK(expires("7200") == 7200);
  CHECK(expires("7200.0") == 7200);
  CHECK(expires("7200.9") == 7200);
  CHECK(expires("7.2e3") == 7200);
  CHECK(expires("1e20") == kMax);
  CHECK(expires("100000000000000000000") == kMax);
  CHECK(expires("-1e20") == std::numeric_limits<std::int64_t>::min());
  CHECK(expires("0.5") == 0);
  CHECK_FALSE(parse_api_answer(R"({"access_token":"T"})").has_expires_in);
}

TEST_CASE("a send answer without errcode is told apart from errcode 0", "[platform_api]") {
  CHECK(parse_api_answer(R"({"errcode":0,"errmsg":"ok"})").has_errcode);
  for (const char* body : {"{}", R"({"code":500,"msg":"internal error"})", R"({"errmsg":"ok"})"}) {
    INFO("body: " << body);
    const ApiAnswer a = parse_api_answer(body);
    CHECK(a.parsed);
    CHECK_FALSE(a.has_errcode);
  }
}

TEST_CASE("token_problem says why a token answer gives no token to use", "[platform_api]") {
  const auto problem = [](const std::string& body) {
    const ApiAnswer a = parse_api_answer(body);
    REQUIRE(a.parsed);
    return botgate::wechat::token_problem(a);
  };
  CHECK(problem(R"({"access_token":"T","expires_in":7200})").empty());
  CHECK(problem(R"({"access_token":"T","expires_in":1e20})").empty());
  CHECK(problem(R"({"errcode":0,"errmsg":"ok","expires_in":7200})") ==
        "the answer has no access_token");
  CHECK(problem(R"({"access_token":"","expires_in":7200})") == "the answer has no access_token");
  CHECK(problem(R"({"access_token":"T"})") == "the answer has no expires_in");
  CHECK(problem(R"({"access_token":"T","expires_in":0})") == "its expires_in 0 is not positive");
  CHECK(problem(R"({"access_token":"T","expires_in":-5})") == "its expires_in -5 is not positive");
  const std::string longest(botgate::wechat::kMaxAccessToken, 'A');
  CHECK(problem(R"({"access_token":")" + longest + R"(","expires_in":7200})").empty());
  CHECK(problem(R"({"access_token":")" + std::string(200000, 'A') + R"(","expires_in":7200})") ==
        "its access_token is 200000 bytes long, over 2048");
}

TEST_CASE("describe names the errcode and the platform's words", "[platform_api]") {
  ApiAnswer a;
  a.errcode = 45015;
  a.errmsg = "response out of time limit";
  CHECK(describe(a) == "errcode 45015: response out of time limit");
  a.errcode = -1;
  a.errmsg = "system busy";
  CHECK(describe(a) == "errcode -1: system busy");
  a.errmsg.clear();
  CHECK(describe(a) == "errcode -1");
  CHECK(describe(parse_api_answer(R"({"errcode":45047,"errmsg":"out of send limit"})")) ==
        "errcode 45047: out of send limit");
}
