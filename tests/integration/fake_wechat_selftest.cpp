// Checks the fake WeChat / WeCom platform and the callback builders against the wire
// contract (/work/notes/issue5-contract.md) and the project's own crypto and codec, so a
// failing WeChat integration test points at botgate, not at the harness. No botgate here.
#include <simdjson.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/event.hpp"
#include "tests/support/client.hpp"
#include "tests/support/fake_wechat.hpp"
#include "tests/support/mini_server.hpp"
#include "tests/support/test_backend.hpp"
#include "transport/wechat_codec.hpp"
#include "transport/wechat_crypto.hpp"

using namespace botgate::test;
using namespace std::chrono_literals;
namespace wx = botgate::wechat;

namespace {

const std::string kAesKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

// The fields of a platform JSON answer (absent: errcode nullopt, strings "").
struct Api {
  int status = 0;
  std::optional<std::int64_t> errcode;
  std::string errmsg;
  std::string access_token;
  std::optional<std::int64_t> expires_in;
  std::string msgid;
  std::string raw;
};

Api parse_api(const Response& res) {
  Api a;
  a.status = res.status;
  a.raw = res.body;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(res.body).get(doc) != simdjson::SUCCESS) return a;
  std::int64_t i;
  std::string_view s;
  if (doc["errcode"].get_int64().get(i) == simdjson::SUCCESS) a.errcode = i;
  if (doc["expires_in"].get_int64().get(i) == simdjson::SUCCESS) a.expires_in = i;
  if (doc["errmsg"].get_string().get(s) == simdjson::SUCCESS) a.errmsg = std::string(s);
  if (doc["access_token"].get_string().get(s) == simdjson::SUCCESS) a.access_token = s;
  if (doc["msgid"].get_string().get(s) == simdjson::SUCCESS) a.msgid = std::string(s);
  return a;
}

Api oa_token(HttpConnection& c, const std::string& appid, const std::string& secret) {
  return parse_api(c.request(
      "GET", "/cgi-bin/token?" +
                 build_query(
                     {{"grant_type", "client_credential"}, {"appid", appid}, {"secret", secret}})));
}

Api corp_token(HttpConnection& c, const std::string& corpid, const std::string& secret) {
  return parse_api(c.request(
      "GET", "/cgi-bin/gettoken?" + build_query({{"corpid", corpid}, {"corpsecret", secret}})));
}

std::string custom_body(const std::string& touser, const std::string& content) {
  return R"({"touser":")" + touser + R"(","msgtype":"text","text":{"content":")" + content +
         R"("}})";
}

std::string kf_body(const std::string& touser, const std::string& content, const std::string& msgid,
                    const std::string& kfid = "wkKF1") {
  std::string b = R"({"touser":")" + touser + R"(","open_kfid":")" + kfid + "\"";
  if (!msgid.empty()) b += R"(,"msgid":")" + msgid + "\"";
  return b + R"(,"msgtype":"text","text":{"content":")" + content + R"("}})";
}

Api custom_send(HttpConnection& c, const std::string& token, const std::string& body) {
  return parse_api(c.request("POST", "/cgi-bin/message/custom/send?access_token=" + token,
                             {{"Content-Type", "application/json"}}, body));
}

Api kf_send(HttpConnection& c, const std::string& token, const std::string& body) {
  return parse_api(c.request("POST", "/cgi-bin/kf/send_msg?access_token=" + token,
                             {{"Content-Type", "application/json"}}, body));
}

// True when every query value of `target` is percent-encoded: only unreserved characters
// and %XX escapes, one '=' per parameter.
bool query_strictly_encoded(const std::string& target) {
  auto q = target.find('?');
  if (q == std::string::npos) return false;
  std::string query = target.substr(q + 1);
  std::size_t start = 0;
  while (start <= query.size()) {
    auto amp = query.find('&', start);
    std::string part = query.substr(start, amp == std::string::npos ? amp : amp - start);
    auto eq = part.find('=');
    if (eq == std::string::npos || part.find('=', eq + 1) != std::string::npos) return false;
    for (std::size_t i = eq + 1; i < part.size(); ++i) {
      unsigned char ch = static_cast<unsigned char>(part[i]);
      if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') continue;
      if (ch == '%' && i + 2 < part.size() &&
          std::isxdigit(static_cast<unsigned char>(part[i + 1])) &&
          std::isxdigit(static_cast<unsigned char>(part[i + 2]))) {
        i += 2;
        continue;
      }
      return false;
    }
    if (amp == std::string::npos) break;
    start = amp + 1;
  }
  return true;
}

std::string decrypt_or_fail(const std::string& encrypt, const std::string& receiver) {
  std::string err;
  auto key = wx::AesKey::parse(kAesKey, err);
  REQUIRE(key);
  std::string plain;
  auto st = wx::decrypt(*key, encrypt, receiver, plain);
  INFO(wx::to_string(st));
  REQUIRE(st == wx::CryptoStatus::ok);
  return plain;
}

}  // namespace

TEST_CASE("fake_wechat: token endpoints of both platforms", "[support][fake_wechat]") {
  FakeWechat fake;
  fake.add_oa("wxapp1", "oa-secret");
  fake.add_corp("ww-corp1", "corp-secret");
  HttpConnection c(fake.port());
  REQUIRE(c.is_open());

  // Official Account.
  auto t1 = oa_token(c, "wxapp1", "oa-secret");
  INFO(t1.raw);
  REQUIRE(t1.status == 200);
  CHECK_FALSE(t1.errcode);  // the OA success answer carries no errcode
  REQUIRE_FALSE(t1.access_token.empty());
  CHECK(t1.expires_in == 7200);
  auto t2 = oa_token(c, "wxapp1", "oa-secret");
  REQUIRE_FALSE(t2.access_token.empty());
  CHECK(t2.access_token != t1.access_token);
  CHECK(fake.token_fetches("wxapp1") == 2);
  CHECK(fake.tokens("wxapp1") == std::vector<std::string>{t1.access_token, t2.access_token});

  auto bad_app = oa_token(c, "wxnobody", "oa-secret");
  CHECK(bad_app.status == 200);
  CHECK(bad_app.errcode == 40013);
  CHECK(bad_app.errmsg == "invalid appid");
  CHECK(bad_app.access_token.empty());
  auto bad_secret = oa_token(c, "wxapp1", "wrong");
  CHECK(bad_secret.errcode == 40125);
  CHECK(bad_secret.errmsg == "invalid appsecret");
  CHECK(bad_secret.access_token.empty());
  // A corp id is not an appid.
  CHECK(oa_token(c, "ww-corp1", "corp-secret").errcode == 40013);
  CHECK(fake.token_fetches("wxapp1") == 2);

  // WeCom.
  auto w1 = corp_token(c, "ww-corp1", "corp-secret");
  INFO(w1.raw);
  CHECK(w1.errcode == 0);
  CHECK(w1.errmsg == "ok");
  REQUIRE_FALSE(w1.access_token.empty());
  CHECK(w1.expires_in == 7200);
  CHECK(w1.access_token != t1.access_token);
  CHECK(w1.access_token != t2.access_token);
  auto bad_corp = corp_token(c, "ww-nobody", "corp-secret");
  CHECK(bad_corp.errcode == 40013);
  CHECK(bad_corp.access_token.empty());
  auto bad_csecret = corp_token(c, "ww-corp1", "wrong");
  CHECK(bad_csecret.errcode == 40001);
  CHECK(bad_csecret.errmsg == "invalid credential");
  CHECK(bad_csecret.access_token.empty());
  CHECK(fake.token_fetches("ww-corp1") == 1);

  // Per-account expires_in, and scripted token errors.
  fake.set_expires_in("ww-corp1", 60);
  CHECK(corp_token(c, "ww-corp1", "corp-secret").expires_in == 60);
  CHECK(oa_token(c, "wxapp1", "oa-secret").expires_in == 7200);
  fake.script_token_errors("wxapp1", {-1});
  auto busy = oa_token(c, "wxapp1", "oa-secret");
  CHECK(busy.errcode == -1);
  CHECK(busy.errmsg == "system error");
  CHECK(busy.access_token.empty());
  CHECK_FALSE(oa_token(c, "wxapp1", "oa-secret").access_token.empty());
  CHECK(fake.token_fetches("wxapp1") == 4);
  CHECK(fake.token_fetches("ww-corp1") == 2);

  // All of it on one keep-alive connection.
  CHECK(c.is_open());
  CHECK(fake.connections_accepted() == 1);
  CHECK_THROWS_AS(fake.token_fetches("nobody"), std::invalid_argument);
}

TEST_CASE("fake_wechat: custom send checks the token and the body", "[support][fake_wechat]") {
  FakeWechat fake;
  fake.add_oa("wxapp1", "s1");
  fake.add_corp("ww1", "s2");
  HttpConnection c(fake.port());
  const auto tok = oa_token(c, "wxapp1", "s1").access_token;
  const auto corp_tok = corp_token(c, "ww1", "s2").access_token;
  REQUIRE_FALSE(tok.empty());
  REQUIRE_FALSE(corp_tok.empty());

  auto ok = custom_send(c, tok, custom_body("oUser1", "hello"));
  INFO(ok.raw);
  CHECK(ok.status == 200);
  CHECK(ok.errcode == 0);
  CHECK(ok.errmsg == "ok");
  auto sent = fake.sent();
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].api == "custom");
  CHECK(sent[0].account == "wxapp1");
  CHECK(sent[0].access_token == tok);
  CHECK(sent[0].touser == "oUser1");
  CHECK(sent[0].msgtype == "text");
  CHECK(sent[0].content == "hello");
  CHECK(sent[0].errcode == 0);
  CHECK_FALSE(sent[0].duplicate);

  auto unknown = custom_send(c, "NOT-A-TOKEN", custom_body("oUser1", "x"));
  CHECK(unknown.errcode == 40014);
  CHECK(unknown.errmsg == "invalid access_token");
  CHECK(custom_send(c, corp_tok, custom_body("oUser1", "x")).errcode == 40014);
  CHECK(custom_send(c, "", custom_body("oUser1", "x")).errcode == 41001);

  // Malformed bodies.
  CHECK(custom_send(c, tok, "").errcode == 44002);
  auto bad_json = custom_send(c, tok, "{not json");
  CHECK(bad_json.errcode == 47001);
  CHECK(bad_json.errmsg == "data format error");
  CHECK(custom_send(c, tok, R"({"touser":"u","msgtype":"text"})").errcode == 47001);
  CHECK(custom_send(c, tok, R"({"msgtype":"text","text":{"content":"x"}})").errcode == 47001);
  CHECK(custom_send(c, tok, R"({"touser":"u","msgtype":"hologram","hologram":{}})").errcode ==
        40008);
  CHECK(custom_send(c, tok, R"({"touser":"u","msgtype":"image"})").errcode == 47001);
  CHECK(custom_send(c, tok, R"({"touser":"u","msgtype":"image","image":"m"})").errcode == 47001);
  CHECK(custom_send(c, tok, R"({"touser":"u","msgtype":"image","image":{}})").errcode == 40007);
  // Another msgtype with its object is a message like text.
  const auto before = fake.sent().size();
  CHECK(custom_send(c, tok, R"({"touser":"u","msgtype":"image","image":{ "media_id" : "m1" }})")
            .errcode == 0);
  REQUIRE(fake.sent().size() == before + 1);
  CHECK(fake.sent().back().msgtype == "image");
  CHECK(fake.sent().back().media_id == "m1");
  CHECK(fake.sent().back().payload == R"({"media_id":"m1"})");
  CHECK(parse_api(c.request("GET", "/cgi-bin/message/custom/send?access_token=" + tok)).errcode ==
        43002);

  // Expired: every token issued so far answers 42001; a fresh one works.
  fake.expire_tokens("wxapp1");
  auto expired = custom_send(c, tok, custom_body("oUser1", "late"));
  CHECK(expired.errcode == 42001);
  CHECK(expired.errmsg == "access_token expired");
  const auto tok2 = oa_token(c, "wxapp1", "s1").access_token;
  REQUIRE_FALSE(tok2.empty());
  CHECK(custom_send(c, tok2, custom_body("oUser1", "again")).errcode == 0);
  CHECK(custom_send(c, tok, custom_body("oUser1", "old")).errcode == 42001);

  // Expired by time: expires_in 0.
  fake.set_expires_in("wxapp1", 0);
  const auto tok3 = oa_token(c, "wxapp1", "s1").access_token;
  REQUIRE_FALSE(tok3.empty());
  CHECK(custom_send(c, tok3, custom_body("oUser1", "x")).errcode == 42001);

  auto all = fake.sent();
  CHECK(all.size() == 18);
  auto delivered = fake.delivered();
  REQUIRE(delivered.size() == 3);
  CHECK(delivered[0].content == "hello");
  CHECK(delivered[1].msgtype == "image");
  CHECK(delivered[2].content == "again");
  CHECK(delivered[2].access_token == tok2);
  // The unknown token is recorded with no account; the expired one with its account.
  CHECK(all[1].account.empty());
  CHECK(all[1].errcode == 40014);
  CHECK(all[14].errcode == 42001);
  CHECK(all[14].account == "wxapp1");
  CHECK(fake.connections_accepted() == 1);

  fake.clear();
  CHECK(fake.sent().empty());
  CHECK(custom_send(c, tok2, custom_body("oUser1", "after clear")).errcode == 0);
  CHECK(fake.delivered().size() == 1);

  // An api_base with a path prefix; unknown paths are 404.
  auto prefixed = parse_api(
      c.request("POST", "/wx/cgi-bin/message/custom/send?access_token=" + tok2,
                {{"Content-Type", "application/json"}}, custom_body("oUser1", "prefixed")));
  CHECK(prefixed.errcode == 0);
  CHECK(fake.delivered().size() == 2);
  CHECK(c.request("GET", "/nothing/here").status == 404);
}

TEST_CASE("fake_wechat: scripted and permanent errors, then recovery", "[support][fake_wechat]") {
  FakeWechat fake;
  fake.add_oa("wxA", "sa");
  fake.add_oa("wxB", "sb");
  HttpConnection c(fake.port());
  const auto ta = oa_token(c, "wxA", "sa").access_token;
  const auto tb = oa_token(c, "wxB", "sb").access_token;

  fake.script_errors("wxA", {-1, 45009, 45015, 45047});
  // A malformed send does not consume the script; another account is not affected.
  CHECK(custom_send(c, ta, "{bad").errcode == 47001);
  CHECK(custom_send(c, tb, custom_body("u", "b1")).errcode == 0);
  const std::vector<std::pair<int, std::string>> expected = {
      {-1, "system error"},
      {45009, "reach max api daily quota limit"},
      {45015, "response out of time limit or subscription is canceled"},
      {45047, "out of response count limit"},
  };
  for (const auto& [code, msg] : expected) {
    auto r = custom_send(c, ta, custom_body("u", "a"));
    INFO(r.raw);
    CHECK(r.errcode == code);
    CHECK(r.errmsg == msg);
  }
  CHECK(custom_send(c, ta, custom_body("u", "a-ok")).errcode == 0);

  fake.set_always_error("wxA", 45009);
  CHECK(custom_send(c, ta, custom_body("u", "x")).errcode == 45009);
  CHECK(custom_send(c, ta, custom_body("u", "x")).errcode == 45009);
  CHECK(custom_send(c, tb, custom_body("u", "b2")).errcode == 0);
  fake.clear_always_error("wxA");
  CHECK(custom_send(c, ta, custom_body("u", "a-ok2")).errcode == 0);

  std::vector<std::string> got;
  for (const auto& m : fake.delivered()) got.push_back(m.account + ":" + m.content);
  CHECK(got == std::vector<std::string>{"wxB:b1", "wxA:a-ok", "wxB:b2", "wxA:a-ok2"});
  CHECK_THROWS_AS(fake.script_errors("nobody", {1}), std::invalid_argument);
}

TEST_CASE("fake_wechat: kf send and msgid idempotency", "[support][fake_wechat]") {
  FakeWechat fake;
  fake.add_corp("ww1", "cs");
  fake.add_oa("wxapp", "os");
  HttpConnection c(fake.port());
  const auto tok = corp_token(c, "ww1", "cs").access_token;
  const auto oa_tok = oa_token(c, "wxapp", "os").access_token;
  REQUIRE_FALSE(tok.empty());

  auto first = kf_send(c, tok, kf_body("wmUser", "hi", "msg-1"));
  INFO(first.raw);
  CHECK(first.errcode == 0);
  CHECK(first.errmsg == "ok");
  CHECK(first.msgid == "msg-1");
  auto again = kf_send(c, tok, kf_body("wmUser", "hi", "msg-1"));
  CHECK(again.errcode == 0);
  CHECK(again.msgid == "msg-1");
  CHECK(fake.sent().size() == 2);
  CHECK(fake.delivered().size() == 1);
  CHECK(fake.duplicates() == 1);
  CHECK(fake.sent()[1].duplicate);
  CHECK(fake.sent()[0].open_kfid == "wkKF1");
  CHECK(fake.sent()[0].api == "kf");
  CHECK(fake.sent()[0].account == "ww1");

  // Without msgid every send is a new message, with a generated msgid.
  auto g1 = kf_send(c, tok, kf_body("wmUser", "n1", ""));
  auto g2 = kf_send(c, tok, kf_body("wmUser", "n2", ""));
  CHECK(g1.errcode == 0);
  CHECK_FALSE(g1.msgid.empty());
  CHECK(g1.msgid != g2.msgid);
  CHECK(fake.delivered().size() == 3);

  // A send that failed did not take its msgid: the retry is delivered, not a duplicate.
  fake.script_errors("ww1", {-1});
  CHECK(kf_send(c, tok, kf_body("wmUser", "retry", "msg-2")).errcode == -1);
  CHECK(kf_send(c, tok, kf_body("wmUser", "retry", "msg-2")).errcode == 0);
  CHECK(fake.delivered().size() == 4);
  CHECK(fake.duplicates() == 1);

  // msgid: at most 32 of [0-9a-zA-Z_-].
  CHECK(kf_send(c, tok, kf_body("wmUser", "x", std::string(32, 'a'))).errcode == 0);
  auto too_long = kf_send(c, tok, kf_body("wmUser", "x", std::string(33, 'a')));
  CHECK(too_long.errcode == 40058);
  CHECK(too_long.errmsg == "invalid parameter");
  CHECK(kf_send(c, tok, kf_body("wmUser", "x", "bad!id")).errcode == 40058);
  CHECK(kf_send(c, tok, kf_body("wmUser", "x", "m3", "")).errcode == 47001);  // no open_kfid
  CHECK(kf_send(c, oa_tok, kf_body("wmUser", "x", "m4")).errcode == 40014);   // OA token
  fake.expire_tokens("ww1");
  CHECK(kf_send(c, tok, kf_body("wmUser", "x", "m5")).errcode == 42001);
  CHECK(fake.delivered().size() == 5);
  CHECK(fake.duplicates() == 1);
}

TEST_CASE("fake_wechat: on_delivered runs on a worker thread, and delay",
          "[support][fake_wechat]") {
  // What the hook touches outlives the fake.
  std::mutex mu;
  std::vector<std::string> contents;
  std::vector<int> nested_status;
  std::atomic<bool> on_test_thread{false};

  FakeWechat fake;
  fake.add_oa("wxapp", "s");
  HttpConnection c(fake.port());
  const auto tok = oa_token(c, "wxapp", "s").access_token;
  const auto test_thread = std::this_thread::get_id();
  const auto port = fake.port();
  fake.set_on_delivered([&](const SentMessage& m) {
    if (std::this_thread::get_id() == test_thread) on_test_thread = true;
    // A blocking call into the fake itself: it would time out on the server thread.
    auto r = http_request(port, "GET", "/cgi-bin/token?grant_type=client_credential&appid=x", {},
                          {}, 1500ms);
    std::lock_guard lk(mu);
    contents.push_back(m.content);
    nested_status.push_back(r.status);
  });

  fake.script_errors("wxapp", {45009});
  CHECK(custom_send(c, tok, custom_body("u", "failed")).errcode == 45009);
  CHECK(custom_send(c, tok, custom_body("u", "one")).errcode == 0);
  CHECK(custom_send(c, tok, custom_body("u", "two")).errcode == 0);
  REQUIRE(eventually(
      [&] {
        std::lock_guard lk(mu);
        return contents.size() >= 2;
      },
      3s));
  std::this_thread::sleep_for(50ms);  // nothing more arrives
  {
    std::lock_guard lk(mu);
    CHECK(contents == std::vector<std::string>{"one", "two"});
    CHECK(nested_status == std::vector<int>{200, 200});
  }
  CHECK_FALSE(on_test_thread);

  // Delay: the answer comes late, the message is recorded at once.
  fake.set_on_delivered(nullptr);
  fake.set_delay(150ms);
  auto start = std::chrono::steady_clock::now();
  CHECK(custom_send(c, tok, custom_body("u", "slow")).errcode == 0);
  auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(elapsed >= 150ms);
  auto d = fake.delivered();
  REQUIRE(d.size() == 3);
  CHECK(d[2].content == "slow");
  CHECK(d[2].at < start + 100ms);
  fake.set_delay(0ms);
}

TEST_CASE("fake_wechat: OA callback builders sign and encrypt like WeChat",
          "[support][fake_wechat]") {
  TestBackend receiver;
  const WechatCallbackKeys keys{"cb-token", kAesKey, "wxappid123"};
  const std::string content = "hi ]]> there & <b>\xe4\xbd\xa0\xe5\xa5\xbd";
  const auto xml =
      oa_text_xml("gh_account", "oUser+/=1", 1700000000, content, "6054768590064713728");

  // The XML is what the project's codec expects.
  CHECK(xml_field(xml, "Content") == content);
  CHECK(xml_field(xml, "FromUserName") == "oUser+/=1");
  CHECK(xml_field(xml, "NoSuchField").empty());
  {
    botgate::Event ev;
    botgate::WechatMessage msg;
    std::string detail;
    REQUIRE(botgate::parse_wechat_message(xml, ev, msg, detail) == botgate::CodecStatus::ok);
    CHECK(ev.id == "6054768590064713728");
    CHECK(ev.text == content);
    CHECK(ev.sender == "oUser+/=1");
    CHECK(msg.to_user == "gh_account");
    botgate::Event ev2;
    botgate::WechatMessage msg2;
    REQUIRE(botgate::parse_wechat_message(
                oa_event_xml("gh_account", "oUser", 1700000001, "CLICK", "MENU_1"), ev2, msg2,
                detail) == botgate::CodecStatus::ok);
    CHECK(ev2.type == "event:CLICK");
    CHECK(ev2.text == "MENU_1");
  }

  HttpConnection conn(receiver.port());
  // Plaintext mode.
  auto r1 = post_oa_callback(conn, "oa-src", keys, xml, false, "1700000000", "123456789");
  INFO(r1.describe());
  CHECK(r1.status == 200);
  // Safe mode.
  auto r2 = post_oa_callback(conn, "oa-src", keys, xml, true, "1700000002", "987654321");
  CHECK(r2.status == 200);
  REQUIRE(receiver.wait_for_count(2, 2s));
  CHECK(receiver.connections_accepted() == 1);
  auto reqs = receiver.requests();

  const auto& plain = reqs[0];
  CHECK(plain.method == "POST");
  CHECK(plain.target.rfind("/wechat/oa-src?", 0) == 0);
  CHECK(query_strictly_encoded(plain.target));
  auto q1 = parse_query(plain.target.substr(plain.target.find('?') + 1));
  CHECK(q1["timestamp"] == "1700000000");
  CHECK(q1["nonce"] == "123456789");
  CHECK(q1["openid"] == "oUser+/=1");
  CHECK(q1.count("encrypt_type") == 0);
  CHECK(q1.count("msg_signature") == 0);
  CHECK(wx::verify_signature(q1["signature"], "cb-token", "1700000000", "123456789"));
  CHECK_FALSE(wx::verify_signature(q1["signature"], "other-token", "1700000000", "123456789"));
  CHECK(plain.body == xml);
  CHECK(plain.header("content-type") == "text/xml");

  const auto& safe = reqs[1];
  CHECK(query_strictly_encoded(safe.target));
  auto q2 = parse_query(safe.target.substr(safe.target.find('?') + 1));
  CHECK(q2["encrypt_type"] == "aes");
  CHECK(wx::verify_signature(q2["signature"], "cb-token", "1700000002", "987654321"));
  botgate::WechatEnvelope env;
  std::string detail;
  REQUIRE(botgate::parse_wechat_envelope(safe.body, env, detail) == botgate::CodecStatus::ok);
  CHECK(env.to_user == "gh_account");
  CHECK(safe.body.find(content) == std::string::npos);  // the content travels encrypted
  CHECK(wx::verify_msg_signature(q2["msg_signature"], "cb-token", "1700000002", "987654321",
                                 env.encrypt));
  CHECK(decrypt_or_fail(env.encrypt, "wxappid123") == xml);
  {
    std::string err, out;
    auto key = wx::AesKey::parse(kAesKey, err);
    REQUIRE(key);
    CHECK(wx::decrypt(*key, env.encrypt, "wx-other", out) == wx::CryptoStatus::receiver_mismatch);
  }

  // URL verification.
  auto v = verify_oa_url(receiver.port(), "oa-src", keys, "echo+/= 42", "1700000003", "55");
  CHECK(v.status == 200);
  REQUIRE(receiver.wait_for_count(3, 2s));
  const auto get = receiver.requests()[2];
  CHECK(get.method == "GET");
  CHECK(get.target.rfind("/wechat/oa-src?", 0) == 0);
  CHECK(query_strictly_encoded(get.target));
  auto q3 = parse_query(get.target.substr(get.target.find('?') + 1));
  CHECK(q3["echostr"] == "echo+/= 42");
  CHECK(wx::verify_signature(q3["signature"], "cb-token", "1700000003", "55"));

  // Safe mode needs a key.
  CHECK_THROWS_AS(build_oa_callback("s", WechatCallbackKeys{"t", "", "wx"}, xml, true, "1", "2"),
                  std::invalid_argument);
  // Default timestamp and nonce: now, and a fresh nonce each time.
  auto b1 = build_oa_callback("s", keys, xml, false, unix_now(), wechat_nonce());
  auto n1 = parse_query(b1.target.substr(b1.target.find('?') + 1))["nonce"];
  CHECK_FALSE(n1.empty());
  CHECK(n1 != wechat_nonce());
}

TEST_CASE("fake_wechat: WeCom callback builders and the passive reply", "[support][fake_wechat]") {
  TestBackend receiver;
  const WechatCallbackKeys keys{"wecom-token", kAesKey, "ww-corp"};
  const auto xml = wecom_text_xml("ww-corp", "zhangsan", 1700000000, "hello", "1234", "1000002");

  auto r = post_wecom_callback(receiver.port(), "ww-corp", keys, xml, "1700000010", "42");
  INFO(r.describe());
  CHECK(r.status == 200);
  auto v = verify_wecom_url(receiver.port(), "ww-corp", keys, "echo-7", "1700000011", "43");
  CHECK(v.status == 200);
  REQUIRE(receiver.wait_for_count(2, 2s));
  auto reqs = receiver.requests();

  const auto& post = reqs[0];
  CHECK(post.method == "POST");
  CHECK(post.target.rfind("/callback/ww-corp?", 0) == 0);
  CHECK(query_strictly_encoded(post.target));
  auto q = parse_query(post.target.substr(post.target.find('?') + 1));
  CHECK(q.count("signature") == 0);
  botgate::WechatEnvelope env;
  std::string detail;
  REQUIRE(botgate::parse_wechat_envelope(post.body, env, detail) == botgate::CodecStatus::ok);
  CHECK(env.to_user == "ww-corp");
  CHECK(env.agent_id == "1000002");
  CHECK(
      wx::verify_msg_signature(q["msg_signature"], "wecom-token", "1700000010", "42", env.encrypt));
  CHECK(decrypt_or_fail(env.encrypt, "ww-corp") == xml);

  const auto& get = reqs[1];
  CHECK(get.method == "GET");
  CHECK(get.target.rfind("/callback/ww-corp?", 0) == 0);
  CHECK(query_strictly_encoded(get.target));
  auto qv = parse_query(get.target.substr(get.target.find('?') + 1));
  CHECK(wx::verify_msg_signature(qv["msg_signature"], "wecom-token", "1700000011", "43",
                                 qv["echostr"]));
  CHECK(decrypt_or_fail(qv["echostr"], "ww-corp") == "echo-7");

  // An encrypted passive reply, built with the project's codec and crypto.
  const auto reply = botgate::build_wechat_text_reply("zhangsan", "ww-corp", 1700000012, "pong");
  std::string err, enc;
  auto key = wx::AesKey::parse(kAesKey, err);
  REQUIRE(key);
  REQUIRE(wx::encrypt(*key, reply, "ww-corp", enc) == wx::CryptoStatus::ok);
  const auto sig = wx::msg_signature("wecom-token", "1700000012", "99", enc);
  const auto body = botgate::build_wechat_encrypted_reply(enc, sig, "1700000012", "99");
  std::string why;
  auto got = decrypt_passive_reply(keys, body, &why);
  INFO(why);
  REQUIRE(got);
  CHECK(*got == reply);
  CHECK(xml_field(*got, "Content") == "pong");
  CHECK(why.empty());

  std::string bad_sig = sig;
  bad_sig[0] = bad_sig[0] == '0' ? '1' : '0';
  CHECK_FALSE(decrypt_passive_reply(
      keys, botgate::build_wechat_encrypted_reply(enc, bad_sig, "1700000012", "99"), &why));
  CHECK(why.find("MsgSignature") != std::string::npos);
  CHECK_FALSE(
      decrypt_passive_reply(WechatCallbackKeys{"wecom-token", kAesKey, "ww-other"}, body, &why));
  CHECK(why.find("decrypt") != std::string::npos);
  CHECK_FALSE(decrypt_passive_reply(keys, reply, &why));  // a plaintext reply
  CHECK(why.find("Encrypt") != std::string::npos);
}

TEST_CASE("fake_wechat: query helpers", "[support][fake_wechat]") {
  CHECK(url_encode("a+b/c=d e~") == "a%2Bb%2Fc%3Dd%20e~");
  CHECK(url_decode("a%2Bb%2fc%3Dd+e%zz%4") == "a+b/c=d e%zz%4");
  auto q = parse_query("a=1&b=x%2By&a=2&flag&=v");
  CHECK(q["a"] == "1");
  CHECK(q["b"] == "x+y");
  CHECK(q.count("flag") == 1);
  CHECK(q["flag"].empty());
  CHECK(build_query({{"k", "v=/+"}, {"n", ""}}) == "k=v%3D%2F%2B&n=");
}
