// WeChat Official Account and WeCom end to end (issue 5): the real botgate binary between a
// real HTTP backend and a fake platform on 127.0.0.1 that speaks the platforms' JSON APIs
// (tests/support/fake_wechat.hpp). Callbacks are signed and encrypted exactly as the
// platforms do; replies go out through account targets with tokens, failover and dead
// letters; bad input is refused with nothing stored.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/client.hpp"
#include "tests/support/fake_wechat.hpp"
#include "tests/support/gateway.hpp"
#include "tests/support/small_disk.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/test_backend.hpp"
#include "transport/wechat_crypto.hpp"

using namespace botgate::test;
using namespace std::chrono_literals;

namespace {

const std::string kAesKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const std::string kAppId = "wxcallbackapp";
const std::string kCorpId = "wwcorp0001";
const WechatCallbackKeys kOaKeys{"cb-token", kAesKey, kAppId};
const WechatCallbackKeys kWecomKeys{"wecom-token", kAesKey, kCorpId};
const std::string kAdmin = "admin-token";

std::int64_t now_s() {
  return static_cast<std::int64_t>(std::time(nullptr));
}

// What the tests vary in the WeChat part of the config.
struct Setup {
  std::string accounts_policy = "failover";
  std::string ack_deadline;  // empty: the default
  std::string extra_source;  // appended to the oa source
  std::string extra_wecom;   // appended to the wecom source
  // The tests post both modes to the oa source, which has a key: plaintext must be let in.
  bool allow_plaintext = true;
  std::string extra;  // more TOML at the end
  std::string a_secret = "secret-a";
  std::string a_probe;      // TOML after acct-a's [[targets]] entry, e.g. its [targets.probe]
  std::string accts_extra;  // TOML after the accts pool's entry, e.g. its [pools.outlier]
  bool with_b = true;
  int io_threads = 1;
  std::string backoff_cap = "50ms";  // [backoff] cap: how long the shard may wait to retry
};

template <typename F>
Setup setup(F change) {
  Setup s;
  change(s);
  return s;
}

// The demo generic source and the `backends` pool come from make_config; added: the OA
// source "oa" and the WeCom source, both forwarding to `backends`, a static rule, accounts A
// and B (wechat-oa) in pool "accts", and a wecom-kf account in pool "kf".
std::string wechat_config(GatewayOptions& o, const FakeWechat& fake, const Setup& s = {}) {
  o.backoff_base = "10ms";
  o.backoff_cap = s.backoff_cap;
  o.max_attempts = 6;
  std::string deadline =
      s.ack_deadline.empty() ? "" : "ack_deadline = \"" + s.ack_deadline + "\"\n";
  o.extra = fmt::format(
      R"(
[[sources]]
name = "oa"
kind = "wechat"
token = "{token}"
encoding_aes_key = "{key}"
app_id = "{app}"
route = "backends"
accounts = "accts"
allow_plaintext = {allow_plaintext}
{deadline}{extra_source}
[[sources]]
kind = "wecom"
corp_id = "{corp}"
token = "{wtoken}"
encoding_aes_key = "{key}"
route = "backends"
accounts = "kf"
{extra_wecom}
[[routes]]
text = "help"
reply = "How can I help?"

[[routes]]
type = "event:subscribe"
reply = "Welcome!"

[[routes]]
type = "event:kf_msg_or_event"
reply = "nobody to send this to"
pool = "backends"

[[pools]]
name = "accts"
policy = "{policy}"
targets = [{members}]
{accts_extra}
[[pools]]
name = "kf"
targets = ["kf-1"]

[[targets]]
name = "acct-a"
kind = "wechat-oa"
app_id = "wxa"
app_secret = "{a_secret}"
api_base = "{base}"
timeout = "2s"
{a_probe}
[[targets]]
name = "acct-b"
kind = "wechat-oa"
app_id = "wxb"
app_secret = "secret-b"
api_base = "{base}/"
timeout = "2s"

[[targets]]
name = "kf-1"
kind = "wecom-kf"
corp_id = "{corp}"
corp_secret = "secret-kf"
open_kfid = "wkKF001"
api_base = "{base}"
{extra}
)",
      fmt::arg("token", kOaKeys.token), fmt::arg("key", kAesKey), fmt::arg("app", kAppId),
      fmt::arg("deadline", deadline), fmt::arg("extra_source", s.extra_source),
      fmt::arg("extra_wecom", s.extra_wecom),
      fmt::arg("allow_plaintext", s.allow_plaintext ? "true" : "false"), fmt::arg("corp", kCorpId),
      fmt::arg("wtoken", kWecomKeys.token), fmt::arg("policy", s.accounts_policy),
      fmt::arg("members", s.with_b ? R"("acct-a", "acct-b")" : R"("acct-a")"),
      fmt::arg("a_secret", s.a_secret), fmt::arg("a_probe", s.a_probe),
      fmt::arg("accts_extra", s.accts_extra), fmt::arg("base", fake.api_base()),
      fmt::arg("extra", s.extra));
  return make_config(o);
}

// The platform's side of wechat_config's credentials: apps wxa and wxb, and the corp.
void add_accounts(FakeWechat& fake) {
  fake.add_oa("wxa", "secret-a");
  fake.add_oa("wxb", "secret-b");
  fake.add_corp(kCorpId, "secret-kf");
}

struct Fixture {
  // `tune` changes the rest of the config (GatewayOptions) before the gateway starts.
  explicit Fixture(const Setup& s = {}, const std::function<void(GatewayOptions&)>& tune = {}) {
    add_accounts(fake);
    o.backend_ports = {backend.port()};
    o.io_threads = s.io_threads;
    if (tune) tune(o);
    config = wechat_config(o, fake, s);
    gw = std::make_unique<Gateway>(botgate_binary(), dir, config);
  }
  std::uint16_t port() { return gw->port(); }
  std::string metrics() { return http_request(port(), "GET", "/metrics").body; }
  double metric(const std::string& series) { return metric_value(metrics(), series).value_or(-1); }

  TempDir dir;
  FakeWechat fake;
  TestBackend backend;
  GatewayOptions o;
  std::string config;
  std::unique_ptr<Gateway> gw;
};

// The backend answers each delivery of a user message with one reply naming its MsgId.
void reply_to_everything(TestBackend& b) {
  b.set_answer_body([](const BackendRequest& r) {
    const auto id = r.idempotency_key();
    if (id.find("#reply") != std::string::npos) return std::string("{}");
    return R"({"replies":[{"text":"re: )" + id + R"("}]})";
  });
}

std::vector<std::string> contents(const std::vector<SentMessage>& sent) {
  std::vector<std::string> out;
  for (const auto& m : sent) out.push_back(m.content);
  return out;
}

Response admin(std::uint16_t port, const std::string& method, const std::string& path,
               const std::string& body = {}) {
  return http_request(port, method, path, {{"Authorization", "Bearer " + kAdmin}}, body);
}

// A text message of `from` whose Content is written as given (not as CDATA): markup and all.
std::string text_with_raw_content(const std::string& to, const std::string& from,
                                  const std::string& content, const std::string& msg_id) {
  const std::string marker = "<![CDATA[content]]>";
  std::string xml = oa_text_xml(to, from, now_s(), "content", msg_id);
  return xml.replace(xml.find(marker), marker.size(), content);
}

// `target` without its query parameter `name`.
std::string without_param(const std::string& target, const std::string& name) {
  const auto q = target.find('?');
  std::string out = target.substr(0, q);
  char sep = '?';
  std::size_t start = q + 1;
  while (q != std::string::npos && start <= target.size()) {
    const auto amp = std::min(target.find('&', start), target.size());
    const std::string pair = target.substr(start, amp - start);
    if (pair.substr(0, pair.find('=')) != name) {
      out += sep + pair;
      sep = '&';
    }
    start = amp + 1;
  }
  return out;
}

}  // namespace

TEST_CASE("wechat: URL verification answers echostr (WeCom's decrypted), and bad ones are 401",
          "[integration][wechat]") {
  Fixture f;
  auto ok = verify_oa_url(f.port(), "oa", kOaKeys, "echo-12345");
  CHECK(ok.status == 200);
  CHECK(ok.body == "echo-12345");
  auto wrong = verify_oa_url(f.port(), "oa", {"not-the-token", kAesKey, kAppId}, "echo");
  CHECK(wrong.status == 401);
  CHECK(wrong.body != "echo");

  auto wecom = verify_wecom_url(f.port(), kCorpId, kWecomKeys, "plain-echo-678");
  CHECK(wecom.status == 200);
  CHECK(wecom.body == "plain-echo-678");
  auto wecom_bad = verify_wecom_url(f.port(), kCorpId, {"wrong", kAesKey, kCorpId}, "x");
  CHECK(wecom_bad.status == 401);
  // A ciphertext sealed for another corp: the signature holds, the receiver id does not.
  auto other = verify_wecom_url(f.port(), kCorpId, {kWecomKeys.token, kAesKey, "wwother"}, "x");
  CHECK(other.status == 401);
  CHECK(verify_oa_url(f.port(), "nope", kOaKeys, "e").status == 404);
  CHECK(verify_wecom_url(f.port(), "wwnope", kWecomKeys, "e").status == 404);
  // The name in the path is percent-decoded (after the path is split at '/'), as a client's
  // URL encoder may have written it; a broken escape is 400.
  CHECK(verify_oa_url(f.port(), "%6Fa", kOaKeys, "echo-6").body == "echo-6");
  CHECK(verify_wecom_url(f.port(), "ww%63orp0001", kWecomKeys, "echo-7").body == "echo-7");
  CHECK(verify_oa_url(f.port(), "o%zz", kOaKeys, "e").status == 400);
  CHECK(verify_wecom_url(f.port(), "ww%6", kWecomKeys, "e").status == 400);
}

TEST_CASE("wecom: an echostr sealed for another corp is 401 bad_signature as a POST's is",
          "[integration][wechat][wecom]") {
  Fixture f;
  const WechatCallbackKeys other{kWecomKeys.token, kAesKey, "wwother"};
  auto get = verify_wecom_url(f.port(), kCorpId, other, "x");
  CHECK(get.status == 401);
  CHECK(get.body == R"({"error":"bad_signature"})");
  auto post = post_wecom_callback(f.port(), kCorpId, other,
                                  wecom_text_xml(kCorpId, "u", now_s(), "x", "1"));
  CHECK(post.status == 401);
  CHECK(post.body == get.body);
  CHECK(f.metric(R"(botgate_events_rejected_total{reason="bad_signature"})") == 2);
}

TEST_CASE("wecom: an echostr that decrypts to nothing is refused 400 as an empty one is",
          "[integration][wechat][wecom]") {
  Fixture f;
  auto empty = verify_wecom_url(f.port(), kCorpId, kWecomKeys, "");
  CHECK(empty.status == 400);
  CHECK(empty.body == R"({"error":"missing_field"})");
  auto oa_empty = verify_oa_url(f.port(), "oa", kOaKeys, "");
  CHECK(oa_empty.status == 400);
  CHECK(oa_empty.body == empty.body);
}

TEST_CASE(
    "wechat: a missing signature is 401 and a missing timestamp or nonce 400 and a repeated one "
    "400 "
    "on GET and POST",
    "[integration][wechat][wecom]") {
  Fixture f;
  const auto ts = unix_now();
  const auto nonce = wechat_nonce();
  const auto oa_xml = oa_text_xml("gh_account", "user-q", now_s(), "hi", "9301");
  const auto wecom_xml = wecom_text_xml(kCorpId, "user-q", now_s(), "hi", "9302");
  struct Signed {
    CallbackRequest req;
    std::string signature;  // the name of the parameter that signs it
  };
  const Signed requests[] = {
      {build_oa_verify("oa", kOaKeys, "echo", ts, nonce), "signature"},
      {build_wecom_verify(kCorpId, kWecomKeys, "echo", ts, nonce), "msg_signature"},
      {build_oa_callback("oa", kOaKeys, oa_xml, false, ts, nonce), "signature"},
      {build_oa_callback("oa", kOaKeys, oa_xml, true, ts, nonce), "msg_signature"},
      {build_wecom_callback(kCorpId, kWecomKeys, wecom_xml, ts, nonce), "msg_signature"},
  };
  for (const Signed& s : requests) {
    struct Case {
      std::string drop;
      int status;
      std::string body;
    };
    for (const Case& c : {Case{s.signature, 401, R"({"error":"bad_signature"})"},
                          Case{"timestamp", 400, R"({"error":"missing_field"})"},
                          Case{"nonce", 400, R"({"error":"missing_field"})"}}) {
      CallbackRequest req = s.req;
      req.target = without_param(req.target, c.drop);
      INFO(req.method << " " << req.target);
      auto res = send_callback(f.port(), req);
      CHECK(res.status == c.status);
      CHECK(res.body == c.body);
    }
    // With no query at all, the signature is what is missing first.
    CallbackRequest bare = s.req;
    bare.target = bare.target.substr(0, bare.target.find('?'));
    INFO(bare.method << " " << bare.target);
    auto res = send_callback(f.port(), bare);
    CHECK(res.status == 401);
    CHECK(res.body == R"({"error":"bad_signature"})");
    // A signing parameter given twice, the good copy first, could be read two ways: refused.
    for (const std::string& name : {s.signature, std::string("timestamp"), std::string("nonce")}) {
      CallbackRequest twice = s.req;
      twice.target += "&" + name + "=1";
      INFO(twice.method << " " << twice.target);
      auto again = send_callback(f.port(), twice);
      CHECK(again.status == 400);
      CHECK(again.body == R"({"error":"malformed"})");
    }
  }
  std::this_thread::sleep_for(300ms);
  CHECK(f.backend.count() == 0);  // nothing refused was stored
  // Each request is whole and good as built.
  for (const Signed& s : requests) CHECK(send_callback(f.port(), s.req).status == 200);
}

// The only callback the backend gets is `xml`, byte for byte, and it gets it once.
void check_forwarded_once(Fixture& f, const std::string& xml) {
  REQUIRE(f.backend.wait_for_delivered(1));
  std::this_thread::sleep_for(300ms);
  REQUIRE(f.backend.count() == 1);
  CHECK(f.backend.requests()[0].body == xml);
}

TEST_CASE(
    "wechat: XML with an '&' that starts no reference is refused in both modes and never forwarded",
    "[integration][wechat][wecom]") {
  Fixture f;
  for (const std::string content : {"&e;x", "AT&T", "a &amp b", "&#0;"}) {
    INFO(content);
    const auto xml = text_with_raw_content("gh_account", "user-r", content, "9401");
    for (const bool safe : {false, true}) {
      auto res = post_oa_callback(f.port(), "oa", kOaKeys, xml, safe);
      CHECK(res.status == 400);
      CHECK(res.body == R"({"error":"malformed"})");
    }
    auto wecom = post_wecom_callback(f.port(), kCorpId, kWecomKeys,
                                     text_with_raw_content(kCorpId, "user-r", content, "9402"));
    CHECK(wecom.status == 400);
    CHECK(wecom.body == R"({"error":"malformed"})");
  }
  // The envelope of safe mode is XML too.
  auto env = build_oa_callback("oa", kOaKeys, oa_text_xml("gh", "u", now_s(), "x", "9403"), true,
                               unix_now(), wechat_nonce());
  env.body.insert(env.body.find("</xml>"), "<Note>AT&T</Note>");
  CHECK(send_callback(f.port(), env).status == 400);

  // Written as XML says, the same text goes through, its escapes kept in raw.
  const auto good = text_with_raw_content("gh_account", "user-r", "AT&amp;T &#x4e2d;", "9404");
  auto ok = post_oa_callback(f.port(), "oa", kOaKeys, good, true);
  CHECK(ok.status == 200);
  CHECK(ok.body == "success");
  check_forwarded_once(f, good);
}

TEST_CASE("wechat: a declared encoding other than UTF-8 is refused in both modes",
          "[integration][wechat][wecom]") {
  Fixture f;
  const std::string gbk = "<?xml version='1.0' encoding='GBK'?>";
  for (const bool safe : {false, true}) {
    auto res =
        post_oa_callback(f.port(), "oa", kOaKeys,
                         gbk + oa_text_xml("gh_account", "user-s", now_s(), "hi", "9501"), safe);
    CHECK(res.status == 400);
    CHECK(res.body == R"({"error":"malformed"})");
  }
  auto wecom = post_wecom_callback(f.port(), kCorpId, kWecomKeys,
                                   gbk + wecom_text_xml(kCorpId, "user-s", now_s(), "hi", "9502"));
  CHECK(wecom.status == 400);
  // UTF-8, however spelt in case, goes through with its declaration.
  const std::string utf8 = "<?xml version='1.0' encoding='utf-8'?>" +
                           oa_text_xml("gh_account", "user-s", now_s(), "hi", "9503");
  CHECK(post_oa_callback(f.port(), "oa", kOaKeys, utf8, true).status == 200);
  check_forwarded_once(f, utf8);
}

TEST_CASE("wechat: a callback over max_body is counted under its route",
          "[integration][wechat][wecom]") {
  Fixture f;  // max_body 64KiB
  const std::string big(80 << 10, 'x');
  auto oa = post_oa_callback(f.port(), "oa", kOaKeys,
                             oa_text_xml("gh_account", "user-t", now_s(), big, "9601"), false);
  CHECK(oa.status == 413);
  auto wecom = post_wecom_callback(f.port(), kCorpId, kWecomKeys,
                                   wecom_text_xml(kCorpId, "user-t", now_s(), big, "9602"));
  CHECK(wecom.status == 413);
  const auto m = f.metrics();
  CHECK(metric_value(m, R"(botgate_http_requests_total{route="wechat",status="413"})") == 1);
  CHECK(metric_value(m, R"(botgate_http_requests_total{route="wecom",status="413"})") == 1);
  CHECK_FALSE(metric_value(m, R"(botgate_http_requests_total{route="unknown",status="413"})"));
  CHECK(metric_value(m, R"(botgate_events_rejected_total{reason="too_large"})") == 2);
}

TEST_CASE("wechat: in safe mode the 256 KiB limit on the envelope leaves about 192 KiB",
          "[integration][wechat]") {
  Fixture f({}, [](GatewayOptions& o) { o.max_body = "1MiB"; });  // not the limit under test
  const auto message = [](std::size_t kib, const std::string& id) {
    return oa_text_xml("gh_account", "user-u", now_s(), std::string(kib << 10, 'x'), id);
  };
  CHECK(post_oa_callback(f.port(), "oa", kOaKeys, message(190, "9701"), true).status == 200);
  // A message that fits 256 KiB in plaintext does not once encrypted and base64-encoded.
  auto safe = post_oa_callback(f.port(), "oa", kOaKeys, message(194, "9702"), true);
  CHECK(safe.status == 400);
  CHECK(safe.body == R"({"error":"malformed"})");
  CHECK(post_oa_callback(f.port(), "oa", kOaKeys, message(194, "9703"), false).status == 200);
  CHECK(f.backend.wait_for_delivered(2));
}

TEST_CASE("wechat: a user message reaches the backend and its reply goes out through account A",
          "[integration][wechat]") {
  Fixture f;
  reply_to_everything(f.backend);
  for (bool safe : {false, true}) {
    const std::string msg_id = safe ? "7001" : "7000";
    INFO((safe ? "safe mode" : "plaintext"));
    auto res = post_oa_callback(
        f.port(), "oa", kOaKeys,
        oa_text_xml("gh_account", "user-1", now_s(), "你好 botgate", msg_id), safe);
    REQUIRE(res.status == 200);
    CHECK(res.body == "success");
  }
  REQUIRE(f.backend.wait_for_delivered(2));
  const auto reqs = f.backend.requests();
  CHECK(reqs[0].idempotency_key() == "7000");
  CHECK(reqs[0].header("x-botgate-source") == "oa");
  // The backend gets the decrypted XML, unchanged, labelled as WeChat labels it.
  CHECK(reqs[0].header("content-type") == "text/xml");
  CHECK(reqs[1].header("content-type") == "text/xml");
  CHECK(xml_field(reqs[1].body, "Content") == "你好 botgate");
  CHECK(xml_field(reqs[1].body, "MsgId") == "7001");

  REQUIRE(f.fake.wait_for_delivered(2));
  auto sent = f.fake.delivered();
  const auto sent_texts = contents(sent);
  std::set<std::string> texts(sent_texts.begin(), sent_texts.end());
  CHECK(texts == std::set<std::string>{"re: 7000", "re: 7001"});
  for (const auto& m : sent) {
    CHECK(m.api == "custom");
    CHECK(m.account == "wxa");  // failover: the first account while it works
    CHECK(m.touser == "user-1");
  }
  CHECK(f.fake.token_fetches("wxa") == 1);
  CHECK(f.metric("botgate_replies_queued_total") == 2);
}

TEST_CASE("wechat: when account A answers system busy, the reply goes through account B",
          "[integration][wechat]") {
  Fixture f;
  reply_to_everything(f.backend);
  f.fake.set_always_error("wxa", -1);
  auto res =
      post_oa_callback(f.port(), "oa", kOaKeys,
                       oa_text_xml("gh_account", "user-2", now_s(), "order status", "8001"), true);
  REQUIRE(res.status == 200);
  REQUIRE(f.fake.wait_for_delivered(1));
  auto sent = f.fake.sent();
  REQUIRE(!sent.empty());
  CHECK(sent.front().account == "wxa");
  CHECK(sent.front().errcode == -1);
  auto delivered = f.fake.delivered();
  REQUIRE(delivered.size() == 1);
  CHECK(delivered[0].account == "wxb");
  CHECK(delivered[0].content == "re: 8001");
  CHECK(delivered[0].touser == "user-2");
  CHECK(f.metric("botgate_platform_errors_total{target=\"acct-a\"}") >= 1);
}

TEST_CASE("wechat: a token that expires mid-run is refetched exactly once",
          "[integration][wechat]") {
  Fixture f(setup([](Setup& s) { s.with_b = false; }));
  constexpr int kBatch = 20;
  auto send_batch = [&](int from) {
    for (int i = from; i < from + kBatch; ++i) {
      auto body =
          fmt::format(R"({{"pool":"accts","to":"user-{}","text":"n{}","id":"m{}"}})", i % 5, i, i);
      auto r = admin(f.port(), "POST", "/v1/messages", body);
      REQUIRE(r.status == 200);
    }
  };
  send_batch(0);
  REQUIRE(f.fake.wait_for_delivered(kBatch));
  CHECK(f.fake.token_fetches("wxa") == 1);

  f.fake.expire_tokens("wxa");
  send_batch(kBatch);
  REQUIRE(f.fake.wait_for_delivered(2 * kBatch));
  std::this_thread::sleep_for(200ms);
  CHECK(f.fake.token_fetches("wxa") == 2);
  CHECK(f.fake.delivered().size() == 2 * kBatch);
  // Some sends of the second batch met the expired token and were sent again.
  const auto sent = f.fake.sent();
  CHECK(std::count_if(sent.begin(), sent.end(),
                      [](const SentMessage& m) { return m.errcode == 42001; }) >= 1);
}

TEST_CASE("wechat: a token is refreshed token_margin before it expires, without traffic",
          "[integration][wechat]") {
  FakeWechat fake;
  add_accounts(fake);
  fake.set_expires_in("wxa", 4);
  TestBackend backend;
  TempDir dir;
  GatewayOptions o;
  o.backend_ports = {backend.port()};
  Setup s;
  s.with_b = false;
  s.a_probe = "token_margin = \"1s\"\ntoken_min_life = \"1s\"\n";
  Gateway gw(botgate_binary(), dir, wechat_config(o, fake, s));
  auto r = admin(gw.port(), "POST", "/v1/messages", R"({"pool":"accts","to":"u","text":"one"})");
  REQUIRE(r.status == 200);
  REQUIRE(fake.wait_for_delivered(1));
  const auto first = std::chrono::steady_clock::now();
  CHECK(fake.token_fetches("wxa") == 1);
  // Refreshed at 4 s - 1 s, with nothing being sent.
  CHECK(eventually([&] { return fake.token_fetches("wxa") == 2; }, 5s));
  const auto refreshed_after = std::chrono::steady_clock::now() - first;
  CHECK(refreshed_after < 3800ms);
  // The old token has expired by now; the next message goes out on the new one, first time.
  std::this_thread::sleep_for(1500ms);
  r = admin(gw.port(), "POST", "/v1/messages", R"({"pool":"accts","to":"u","text":"two"})");
  REQUIRE(r.status == 200);
  REQUIRE(fake.wait_for_delivered(2));
  for (const auto& m : fake.sent()) CHECK(m.errcode == 0);
}

namespace {

std::vector<SentMessage> delivered_to(const FakeWechat& fake, const std::string& user) {
  std::vector<SentMessage> out;
  for (const auto& m : fake.delivered()) {
    if (m.touser == user) out.push_back(m);
  }
  return out;
}

// A message to "victim" is with account A (its answer 1.5 s away) when `go_down` makes A
// unhealthy: after that the victim must still have its message once, from A.
void check_in_flight_send_stays(Fixture& f, const std::function<void()>& go_down) {
  f.fake.set_delay_for("victim", 1500ms);
  auto r = admin(f.port(), "POST", "/v1/messages",
                 R"({"pool":"accts","to":"victim","text":"pay 100 yuan","id":"dup-1"})");
  REQUIRE(r.status == 200);
  REQUIRE(f.fake.wait_for_sent(1));  // A has it; the platform took it
  go_down();
  r = admin(f.port(), "POST", "/v1/messages",
            R"({"pool":"accts","to":"other","text":"next","id":"dup-2"})");
  REQUIRE(r.status == 200);
  // "other" failed on A, which took A down, and went out through B.
  REQUIRE(eventually([&] { return delivered_to(f.fake, "other").size() == 1; }, 10s));
  CHECK(delivered_to(f.fake, "other")[0].account == "wxb");
  std::this_thread::sleep_for(2500ms);  // A's answer is in; a copy through B would be too
  const auto victim = delivered_to(f.fake, "victim");
  REQUIRE(victim.size() == 1);
  CHECK(victim[0].account == "wxa");
  CHECK(f.metric("botgate_router_reroutes_total{pool=\"accts\"}") == 0);
}

}  // namespace

TEST_CASE("wechat: a send in flight when its account's credentials are refused is sent once",
          "[integration][wechat]") {
  // message/custom/send has no idempotency key: a send the platform already has must not go
  // out through another account too, or the user gets the message twice.
  Fixture f;
  check_in_flight_send_stays(f, [&] {
    // The next send on A meets a stale token; the fetch that replaces it is refused.
    f.fake.expire_tokens("wxa");
    f.fake.script_token_errors("wxa", {40125, 40125, 40125, 40125});
  });
}

TEST_CASE("wechat: a send in flight when its account is ejected is sent once",
          "[integration][wechat]") {
  Fixture f(setup([](Setup& s) {
    s.accts_extra = "[pools.outlier]\nconsecutive_failures = 1\nmax_ejection_percent = 50\n";
  }));
  check_in_flight_send_stays(f, [&] { f.fake.script_errors("wxa", {-1}); });
}

TEST_CASE("wechat: a message no account can take is dead-lettered at max_age, saying why",
          "[integration][wechat]") {
  // Every account's credentials refused: the message waits in the accounts pool's router.
  // Past [queue] max_age it is given up, as docs/configuration.md says, not sent days late.
  Fixture f(setup([](Setup& s) {
              s.with_b = false;
              s.a_secret = "not-the-secret";
            }),
            [](GatewayOptions& o) { o.max_age = "3s"; });
  auto r = admin(f.port(), "POST", "/v1/messages",
                 R"({"pool":"accts","to":"u-late","text":"too late","id":"late-1"})");
  REQUIRE(r.status == 200);
  std::string list;
  const bool dead = eventually(
      [&] {
        list = admin(f.port(), "GET", "/v1/dead-letters").body;
        return list.find("late-1") != std::string::npos;
      },
      10s);
  INFO(list);
  REQUIRE(dead);
  CHECK(list.find("max_age") != std::string::npos);
  CHECK(list.find("acct-a: credentials refused (errcode 40125: invalid appsecret)") !=
        std::string::npos);
  CHECK(f.fake.sent().empty());
}

TEST_CASE("wechat: a token outage costs no attempts: the message goes out once a token is had",
          "[integration][wechat]") {
  // The token endpoint answers -1 three times (the token actor retries after up to 1, 2, 4 s):
  // the message makes no send meanwhile, so max_attempts (6) cannot dead-letter it, and it
  // waits for each next fetch instead of asking again and again.
  Fixture f(setup([](Setup& s) {
    s.with_b = false;
    s.backoff_cap = "30s";
  }));
  f.fake.script_token_errors("wxa", {-1, -1, -1});
  auto r = admin(f.port(), "POST", "/v1/messages",
                 R"({"pool":"accts","to":"u-out","text":"after the outage","id":"outage-1"})");
  REQUIRE(r.status == 200);
  REQUIRE(f.fake.wait_for_delivered(1, 20s));
  std::this_thread::sleep_for(300ms);
  CHECK(f.fake.sent().size() == 1);
  CHECK(f.fake.delivered()[0].content == "after the outage");
  CHECK(f.fake.token_fetches("wxa") == 1);
  CHECK(admin(f.port(), "GET", "/v1/dead-letters").body.find("outage-1") == std::string::npos);
  const auto metrics = f.metrics();
  INFO(metrics);
  CHECK(metric_value(metrics, R"(botgate_token_fetches_total{target="acct-a",result="fail"})") ==
        3);
  CHECK(metric_value(metrics, R"(botgate_deliveries_total{target="acct-a",outcome="success"})") ==
        1);
  CHECK(metric_value(metrics,
                     R"(botgate_deliveries_total{target="acct-a",outcome="server_error"})") == 0);
  CHECK(metric_value(metrics, "botgate_events_dead_lettered_total") == 0);
  // One retry per failed fetch (the message waited for the next one), not one per backoff.
  CHECK(metric_value(metrics, "botgate_delivery_retries_total").value_or(99) <= 4);
}

TEST_CASE("wechat: a message goes through account B at once while A can get no token",
          "[integration][wechat]") {
  Fixture f(setup([](Setup& s) { s.backoff_cap = "30s"; }));
  f.fake.script_token_errors("wxa", std::vector<int>(20, -1));
  auto post = [&](const std::string& id) {
    const auto r =
        admin(f.port(), "POST", "/v1/messages",
              fmt::format(R"({{"pool":"accts","to":"u-{}","text":"via b","id":"{}"}})", id, id));
    REQUIRE(r.status == 200);
  };
  post("fo-1");
  REQUIRE(f.fake.wait_for_delivered(1, 5s));
  // A's token actor keeps failing, its next fetch seconds away: the next message does not
  // wait for it.
  REQUIRE(eventually(
      [&] {
        return f.metric(R"(botgate_token_fetches_total{target="acct-a",result="fail"})") >= 4;
      },
      20s));
  const auto start = std::chrono::steady_clock::now();
  post("fo-2");
  REQUIRE(f.fake.wait_for_delivered(2, 5s));
  CHECK(std::chrono::steady_clock::now() - start < 500ms);
  for (const auto& m : f.fake.sent()) CHECK(m.account == "wxb");
}

TEST_CASE("wechat: a token refused again on the send once more is not used again",
          "[integration][wechat]") {
  // 40001 on the send, and again on the send once more with a fresh token: the retry after
  // that goes out with yet another token, not the one just refused.
  Fixture f(setup([](Setup& s) { s.with_b = false; }));
  f.fake.script_errors("wxa", {40001, 40001});
  auto r = admin(f.port(), "POST", "/v1/messages",
                 R"({"pool":"accts","to":"u-stale","text":"third time","id":"stale-1"})");
  REQUIRE(r.status == 200);
  REQUIRE(f.fake.wait_for_delivered(1));
  const auto sent = f.fake.sent();
  REQUIRE(sent.size() == 3);
  CHECK(sent[0].errcode == 40001);
  CHECK(sent[1].errcode == 40001);
  CHECK(sent[1].access_token != sent[0].access_token);
  CHECK(sent[2].access_token != sent[1].access_token);
  CHECK(sent[2].access_token != sent[0].access_token);
  CHECK(f.fake.token_fetches("wxa") == 3);
  CHECK(sent[2].access_token == f.fake.tokens("wxa").back());
}

TEST_CASE("wechat: a send answered without errcode is retried, not counted as delivered",
          "[integration][wechat]") {
  // Only errcode 0 says the platform took the message; {} or another service's error shape
  // says nothing of the kind.
  Fixture f;
  f.fake.script_answers("wxa", {"{}", R"({"code":500,"msg":"internal error"})"});
  for (const char* to : {"u-1", "u-2"}) {
    auto r = admin(f.port(), "POST", "/v1/messages",
                   fmt::format(R"({{"pool":"accts","to":"{}","text":"hello"}})", to));
    REQUIRE(r.status == 200);
  }
  REQUIRE(f.fake.wait_for_delivered(2));
  for (const auto& m : f.fake.delivered()) CHECK(m.account == "wxb");
  std::size_t odd = 0;
  for (const auto& m : f.fake.sent()) odd += m.answer.empty() ? 0 : 1;
  CHECK(odd == 2);
  CHECK(admin(f.port(), "GET", "/v1/targets").body.find("platform answer has no errcode") !=
        std::string::npos);
}

TEST_CASE("wechat: an account whose platform gives tokens under token_min_life is not used",
          "[integration][wechat]") {
  // A token living 1 s was refreshed at half its life, twice a second, with no traffic.
  Fixture f;
  f.fake.set_expires_in("wxa", 1);
  auto r = admin(f.port(), "POST", "/v1/messages", R"({"pool":"accts","to":"u","text":"one"})");
  REQUIRE(r.status == 200);
  REQUIRE(f.fake.wait_for_delivered(1));
  CHECK(f.fake.delivered()[0].account == "wxb");
  const auto fetched = f.fake.token_fetches("wxa");
  std::this_thread::sleep_for(4s);  // idle: backoff, not a fetch every half second
  CHECK(f.fake.token_fetches("wxa") - fetched <= 5);
  const auto targets = admin(f.port(), "GET", "/v1/targets").body;
  INFO(targets);
  CHECK(targets.find("its expires_in 1s is under token_min_life (1m)") != std::string::npos);
}

TEST_CASE("wechat: a token answer with a fractional expires_in is used", "[integration][wechat]") {
  Fixture f(setup([](Setup& s) { s.with_b = false; }));
  f.fake.script_token_answers("wxa", {R"({"access_token":"{token}","expires_in":7200.0})"});
  auto r = admin(f.port(), "POST", "/v1/messages", R"({"pool":"accts","to":"u","text":"one"})");
  REQUIRE(r.status == 200);
  REQUIRE(f.fake.wait_for_delivered(1));
  CHECK(f.fake.sent().size() == 1);
  CHECK(f.fake.token_fetches("wxa") == 1);
}

TEST_CASE("wechat: accounts of one credential share a token however api_base is spelled",
          "[integration][wechat]") {
  FakeWechat fake;
  add_accounts(fake);
  TestBackend backend;
  TempDir dir;
  GatewayOptions o;
  o.backend_ports = {backend.port()};
  Setup s;
  // acct-a again, its api_base with a trailing '/' and the default port spelled out.
  const std::string base = fake.api_base();
  s.extra = fmt::format(
      "\n[[targets]]\nname = \"acct-a2\"\nkind = \"wechat-oa\"\napp_id = \"wxa\"\n"
      "app_secret = \"secret-a\"\napi_base = \"{}/\"\n\n[[pools]]\nname = \"twins\"\n"
      "policy = \"round-robin\"\ntargets = [\"acct-a\", \"acct-a2\"]\n",
      base);
  Gateway gw(botgate_binary(), dir, wechat_config(o, fake, s));
  for (int i = 0; i < 4; ++i) {
    auto r = admin(gw.port(), "POST", "/v1/messages",
                   fmt::format(R"({{"pool":"twins","to":"u","text":"m{}"}})", i));
    REQUIRE(r.status == 200);
  }
  REQUIRE(fake.wait_for_delivered(4));
  CHECK(fake.token_fetches("wxa") == 1);
  for (const auto& m : fake.sent()) CHECK(m.errcode == 0);
}

TEST_CASE("wechat: a retried MsgId is acked each time and delivered once",
          "[integration][wechat]") {
  Fixture f;
  const auto xml = oa_text_xml("gh_account", "user-3", now_s(), "hello again", "9001");
  for (int i = 0; i < 3; ++i) {
    auto res = post_oa_callback(f.port(), "oa", kOaKeys, xml, i % 2 == 1);
    REQUIRE(res.status == 200);
    CHECK(res.body == "success");
  }
  // An event has no MsgId: FromUserName + CreateTime (+ Event) is its id.
  const auto t = now_s();
  for (int i = 0; i < 2; ++i) {
    auto res = post_oa_callback(f.port(), "oa", kOaKeys,
                                oa_event_xml("gh_account", "user-3", t, "CLICK", "MENU_1"), false);
    REQUIRE(res.status == 200);
  }
  REQUIRE(f.backend.wait_for_delivered(2));
  std::this_thread::sleep_for(500ms);
  const auto reqs = f.backend.requests();
  REQUIRE(reqs.size() == 2);
  CHECK(reqs[0].idempotency_key() == "9001");
  CHECK(xml_field(reqs[1].body, "EventKey") == "MENU_1");
  CHECK(f.metric("botgate_events_duplicate_total") == 3);
}

TEST_CASE("wechat: concurrent callbacks on two io threads are each acked and delivered once",
          "[integration][wechat]") {
  // Two io threads: answers from the shard are handed out while either thread may be running
  // another hand-out, and callbacks join the ack-deadline queue from both.
  Fixture f(setup([](Setup& s) { s.io_threads = 2; }));
  constexpr int kClients = 4, kEach = 50;
  std::vector<std::vector<Response>> answers(kClients);
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      HttpConnection conn(f.port());
      for (int i = 0; i < kEach; ++i) {
        const auto id = std::to_string(50000 + c * kEach + i);
        answers[c].push_back(post_oa_callback(
            conn, "oa", kOaKeys,
            oa_text_xml("gh_account", "user-c" + std::to_string(c), now_s(), "hi", id), true));
      }
    });
  }
  for (auto& t : clients) t.join();
  for (const auto& per_client : answers) {
    for (const auto& res : per_client) {
      INFO(res.describe());
      CHECK(res.status == 200);
      CHECK(res.body == "success");
    }
  }
  REQUIRE(f.backend.wait_for_delivered(kClients * kEach));
  std::this_thread::sleep_for(300ms);  // let any duplicate show up before counting
  std::set<std::string> ids;
  for (const auto& r : f.backend.requests()) ids.insert(r.idempotency_key());
  CHECK(f.backend.requests().size() == static_cast<std::size_t>(kClients * kEach));
  CHECK(ids.size() == static_cast<std::size_t>(kClients * kEach));
  CHECK(f.metric("botgate_late_acks_total") == 0);
}

TEST_CASE("wechat: a static rule answers with a passive reply, encrypted in safe mode",
          "[integration][wechat]") {
  Fixture f;
  auto plain = post_oa_callback(
      f.port(), "oa", kOaKeys, oa_text_xml("gh_account", "user-4", now_s(), "help", "9101"), false);
  REQUIRE(plain.status == 200);
  CHECK(xml_field(plain.body, "Content") == "How can I help?");
  CHECK(xml_field(plain.body, "ToUserName") == "user-4");
  CHECK(xml_field(plain.body, "FromUserName") == "gh_account");

  auto safe = post_oa_callback(f.port(), "oa", kOaKeys,
                               oa_text_xml("gh_account", "user-4", now_s(), "help", "9102"), true);
  REQUIRE(safe.status == 200);
  CHECK(xml_field(safe.body, "Content").empty());  // nothing in clear
  std::string why;
  auto reply = decrypt_passive_reply(kOaKeys, safe.body, &why);
  INFO(why);
  REQUIRE(reply);
  CHECK(xml_field(*reply, "Content") == "How can I help?");

  // The heartbeat responder answers a ding before any rule.
  auto ding =
      post_oa_callback(f.port(), "oa", kOaKeys,
                       oa_text_xml("gh_account", "peer", now_s(), "ding 42", "9103"), false);
  CHECK(xml_field(ding.body, "Content") == "dong 42");

  auto sub = post_wecom_callback(f.port(), kCorpId, kWecomKeys,
                                 wecom_text_xml(kCorpId, "zhangsan", now_s(), "help", "9104"));
  REQUIRE(sub.status == 200);
  auto wreply = decrypt_passive_reply(kWecomKeys, sub.body, &why);
  INFO(why);
  REQUIRE(wreply);
  CHECK(xml_field(*wreply, "Content") == "How can I help?");

  // Rules without a pool store nothing and forward nothing.
  std::this_thread::sleep_for(300ms);
  CHECK(f.backend.count() == 0);
  CHECK(f.metric("botgate_passive_replies_total") == 4);
}

TEST_CASE("wechat: every bad callback is refused and nothing is enqueued",
          "[integration][wechat]") {
  Fixture f;
  const auto good_xml = oa_text_xml("gh_account", "user-5", now_s(), "hi", "9201");
  auto expect = [&](const CallbackRequest& req, int status, const std::string& what) {
    INFO(what);
    auto res = send_callback(f.port(), req);
    CHECK(res.status == status);
    CHECK(res.body != "success");
  };
  const auto ts = unix_now();
  const auto nonce = wechat_nonce();

  auto bad_sig = build_oa_callback("oa", kOaKeys, good_xml, false, ts, nonce);
  bad_sig.target = bad_sig.target.replace(bad_sig.target.find("signature=") + 10, 4, "0000");
  expect(bad_sig, 401, "wrong signature (plaintext)");
  expect(build_oa_callback("oa", {"other-token", kAesKey, kAppId}, good_xml, true, ts, nonce), 401,
         "wrong token (safe mode)");
  expect(
      build_oa_callback("oa", {kOaKeys.token, kAesKey, "wxsomeoneelse"}, good_xml, true, ts, nonce),
      401, "wrong app id");
  expect(build_oa_callback("oa", kOaKeys, good_xml, true, unix_now(-3600), nonce), 401,
         "stale timestamp");
  // Validly signed Encrypt values that do not decrypt: not base64, not whole AES blocks, and
  // a real ciphertext whose padding byte is broken (in CBC, flipping a bit of the next-to-last
  // block flips the same bit of the last plaintext block: pad byte p becomes p ^ 0x40 > 32).
  auto raw = *botgate::wechat::base64_decode(wechat_encrypt(kOaKeys, good_xml));
  raw[raw.size() - 17] = static_cast<char>(raw[raw.size() - 17] ^ 0x40);
  for (const std::string& encrypt :
       {std::string("!!not base64!!"), std::string("QUJD"), botgate::wechat::base64_encode(raw)}) {
    CallbackRequest req;
    req.method = "POST";
    req.target = "/wechat/oa?timestamp=" + ts + "&nonce=" + nonce +
                 "&encrypt_type=aes&msg_signature=" +
                 botgate::wechat::msg_signature(kOaKeys.token, ts, nonce, encrypt);
    req.body = "<xml><ToUserName><![CDATA[gh]]></ToUserName><Encrypt><![CDATA[" + encrypt +
               "]]></Encrypt></xml>";
    expect(req, 400, "undecryptable Encrypt " + encrypt);
  }
  auto truncated = build_oa_callback("oa", kOaKeys, good_xml, false, ts, nonce);
  truncated.body = truncated.body.substr(0, truncated.body.size() / 2);
  expect(truncated, 400, "truncated body");
  auto bomb = build_oa_callback(
      "oa", kOaKeys,
      R"(<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&lol2;</Content></xml>)",
      false, ts, nonce);
  expect(bomb, 400, "XML bomb (DOCTYPE)");
  expect(build_oa_callback("oa", kOaKeys,
                           "<xml><ToUserName>a</ToUserName><CreateTime>1</CreateTime>"
                           "<MsgType>text</MsgType><Content>x</Content></xml>",
                           true, ts, nonce),
         400, "missing FromUserName");
  auto huge = build_oa_callback("oa", kOaKeys,
                                oa_text_xml("gh", "u", now_s(), std::string(2 << 20, 'x'), "1"),
                                false, ts, nonce);
  expect(huge, 413, "huge body");
  expect(build_oa_callback("nope", kOaKeys, good_xml, false, ts, nonce), 404, "unknown source");
  auto put = build_oa_callback("oa", kOaKeys, good_xml, false, ts, nonce);
  put.method = "PUT";
  expect(put, 405, "wrong method");
  auto wecom_wrong =
      build_wecom_callback(kCorpId, {kWecomKeys.token, kAesKey, "wwother"},
                           wecom_text_xml(kCorpId, "u", now_s(), "x", "1"), ts, nonce);
  expect(wecom_wrong, 401, "WeCom ciphertext for another corp");

  std::this_thread::sleep_for(300ms);
  CHECK(f.backend.count() == 0);
  CHECK(f.metric("botgate_events_accepted_total") == 0);
  CHECK(metric_sum(f.metrics(), "botgate_queue_depth") == 0);
  // And the gateway still serves.
  auto ok = post_oa_callback(f.port(), "oa", kOaKeys, good_xml, true);
  CHECK(ok.status == 200);
  CHECK(f.backend.wait_for_delivered(1));
}

TEST_CASE("wechat: 45015 and 45047 dead-letter the reply with the platform's reason",
          "[integration][wechat]") {
  Fixture f(setup([](Setup& s) { s.with_b = false; }));
  f.fake.script_errors("wxa", {45015, 45047});
  for (int i = 0; i < 2; ++i) {
    auto r = admin(f.port(), "POST", "/v1/messages",
                   fmt::format(R"({{"pool":"accts","to":"late-user-{}","text":"sorry"}})", i));
    REQUIRE(r.status == 200);
  }
  bool listed = eventually(
      [&] {
        auto r = admin(f.port(), "GET", "/v1/dead-letters");
        return r.body.find("45015") != std::string::npos &&
               r.body.find("45047") != std::string::npos;
      },
      10s);
  CHECK(listed);
  auto list = admin(f.port(), "GET", "/v1/dead-letters").body;
  CHECK(list.find("response out of time limit") != std::string::npos);
  // Not retried: each was sent once.
  CHECK(f.fake.sent().size() == 2);
}

TEST_CASE("wechat: refused credentials make the account unhealthy, with the platform's errmsg",
          "[integration][wechat]") {
  Fixture f(setup([](Setup& s) { s.a_secret = "wrong-secret"; }));
  auto r = admin(f.port(), "POST", "/v1/messages", R"({"pool":"accts","to":"u-9","text":"t"})");
  REQUIRE(r.status == 200);
  REQUIRE(f.fake.wait_for_delivered(1));
  CHECK(f.fake.delivered()[0].account == "wxb");
  bool unhealthy = eventually(
      [&] {
        auto t = admin(f.port(), "GET", "/v1/targets").body;
        return t.find("invalid appsecret") != std::string::npos;
      },
      5s);
  CHECK(unhealthy);
  CHECK(f.metric("botgate_token_fetches_total{target=\"acct-a\",result=\"fail\"}") >= 1);

  // The operator fixes the credentials: the fetch is retried on its own (nothing is sent to
  // the account while it is unhealthy), and the account comes back.
  f.fake.add_oa("wxa", "wrong-secret");
  bool healthy = eventually(
      [&] {
        auto t = admin(f.port(), "GET", "/v1/targets").body;
        // (Its last_error keeps the failure of the send that met the refused fetch.)
        return t.find(R"({"name":"acct-a","healthy":true)") != std::string::npos &&
               t.find(R"("credentials_error":"errcode 40125)") == std::string::npos;
      },
      15s);
  CHECK(healthy);
  r = admin(f.port(), "POST", "/v1/messages", R"({"pool":"accts","to":"u-9","text":"t2"})");
  REQUIRE(r.status == 200);
  REQUIRE(f.fake.wait_for_delivered(2));
  CHECK(f.fake.delivered()[1].account == "wxa");  // the first account of the failover pool
}

TEST_CASE("wecom: an encrypted callback reaches the backend and the reply goes out via kf/send_msg",
          "[integration][wechat][wecom]") {
  Fixture f;
  reply_to_everything(f.backend);
  const auto xml = wecom_text_xml(kCorpId, "ext-user-1", now_s(), "你好", "wc-1", "1000002");
  for (int i = 0; i < 2; ++i) {  // a retry of the same MsgId changes nothing
    auto res = post_wecom_callback(f.port(), kCorpId, kWecomKeys, xml);
    REQUIRE(res.status == 200);
    CHECK(res.body == "success");
  }
  REQUIRE(f.backend.wait_for_delivered(1));
  CHECK(xml_field(f.backend.requests()[0].body, "Content") == "你好");
  REQUIRE(f.fake.wait_for_delivered(1));
  std::this_thread::sleep_for(300ms);
  auto sent = f.fake.delivered();
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].api == "kf");
  CHECK(sent[0].account == kCorpId);
  CHECK(sent[0].open_kfid == "wkKF001");
  CHECK(sent[0].touser == "ext-user-1");
  CHECK(sent[0].content == "re: wc-1");
  CHECK(sent[0].msgid.size() == 32);
  CHECK(f.backend.requests().size() == 1);
}

TEST_CASE("wechat: a source with a key refuses plaintext callbacks unless allowed",
          "[integration][wechat]") {
  // Every safe-mode callback URL carries the plaintext `signature` as well, and it does not
  // cover the body: with it, plaintext mode would take any body for max_skew.
  Fixture f(setup([](Setup& s) { s.allow_plaintext = false; }));
  const auto forged = post_oa_callback(
      f.port(), "oa", kOaKeys, oa_text_xml("gh_account", "attacker", now_s(), "hi", "6001"), false);
  CHECK(forged.status == 401);
  const auto safe = post_oa_callback(
      f.port(), "oa", kOaKeys, oa_text_xml("gh_account", "user-s", now_s(), "hi", "6002"), true);
  CHECK(safe.status == 200);
  REQUIRE(f.backend.wait_for_delivered(1));
  std::this_thread::sleep_for(300ms);
  REQUIRE(f.backend.requests().size() == 1);
  CHECK(xml_field(f.backend.requests()[0].body, "MsgId") == "6002");
  CHECK(f.metric("botgate_events_rejected_total{reason=\"bad_signature\"}") == 1);
}

TEST_CASE("wecom: WXKF notifications are acked and forwarded, two in one second as two",
          "[integration][wechat][wecom]") {
  Fixture f;
  reply_to_everything(f.backend);  // replies without "to": there is no user to send them to
  const auto now = now_s();
  // As documented (path/94670): no FromUserName, a Token for kf/sync_msg, the account.
  const auto kf = [&](const std::string& token) {
    return "<xml><ToUserName><![CDATA[" + kCorpId + "]]></ToUserName><CreateTime>" +
           std::to_string(now) +
           "</CreateTime><MsgType><![CDATA[event]]></MsgType>"
           "<Event><![CDATA[kf_msg_or_event]]></Event><Token><![CDATA[" +
           token + "]]></Token><OpenKfId><![CDATA[wkKF001]]></OpenKfId></xml>";
  };
  for (const char* token : {"ENC-TOKEN-1", "ENC-TOKEN-2", "ENC-TOKEN-1"}) {  // then a resend
    auto res = post_wecom_callback(f.port(), kCorpId, kWecomKeys, kf(token));
    REQUIRE(res.status == 200);
    CHECK(res.body == "success");  // its rule has a reply, but there is no user to reply to
  }
  CHECK(f.metric("botgate_passive_replies_total") == 0);
  REQUIRE(f.backend.wait_for_delivered(2));
  std::this_thread::sleep_for(300ms);
  const auto reqs = f.backend.requests();
  REQUIRE(reqs.size() == 2);
  CHECK(xml_field(reqs[0].body, "Token") == "ENC-TOKEN-1");
  CHECK(xml_field(reqs[1].body, "Token") == "ENC-TOKEN-2");
  CHECK(xml_field(reqs[1].body, "OpenKfId") == "wkKF001");
  CHECK(f.fake.sent().empty());  // nothing went to the account id as if it were a user
  CHECK(f.metric("botgate_replies_dropped_total") == 2);
}

TEST_CASE("wecom: decrypted WXKF notifications need their bearer token and arrive as WeCom's XML",
          "[integration][wechat][wecom]") {
  const std::string kDoor = "front-door-token";
  Fixture f(setup([&](Setup& s) { s.extra_wecom = "decrypted_token = \"" + kDoor + "\"\n"; }));
  const std::string path = "/callback/decrypted/" + kCorpId;
  const Headers good{{"Authorization", "Bearer " + kDoor}};
  auto post = [&](const Headers& h, const std::string& body) {
    return http_request(f.port(), "POST", path, h, body);
  };
  for (const char* token : {"ENC-TOKEN-1", "ENC-TOKEN-2"}) {
    auto res = post(good, std::string(R"({"token":")") + token + R"(","openKfId":"wkKF001"})");
    INFO(res.describe());
    REQUIRE(res.status == 200);
    CHECK(res.body == "success");
  }
  REQUIRE(f.backend.wait_for_delivered(2));
  for (const auto& r : f.backend.requests()) {  // as the decrypted XML of an encrypted callback
    CHECK(xml_field(r.body, "ToUserName") == kCorpId);
    CHECK(xml_field(r.body, "MsgType") == "event");
    CHECK(xml_field(r.body, "Event") == "kf_msg_or_event");
    CHECK(xml_field(r.body, "OpenKfId") == "wkKF001");
    CHECK(r.header("content-type").rfind("text/xml", 0) == 0);
    CHECK(r.idempotency_key().rfind("wkKF001-", 0) == 0);
  }
  std::set<std::string> tokens;
  for (const auto& r : f.backend.requests()) tokens.insert(xml_field(r.body, "Token"));
  CHECK(tokens == std::set<std::string>{"ENC-TOKEN-1", "ENC-TOKEN-2"});

  const std::string ok_body = R"({"token":"T","openKfId":"wkKF001"})";
  CHECK(post({}, ok_body).status == 401);
  CHECK(post({{"Authorization", "Bearer wrong-token"}}, ok_body).status == 401);
  CHECK(post({{"Authorization", "Bearer " + kAdmin}}, ok_body).status == 401);
  CHECK(post(good, R"({"token":"T"})").status == 400);
  CHECK(post(good, R"({"openKfId":"wkKF001","token":""})").status == 400);
  CHECK(post(good, R"({"token":7,"openKfId":"wkKF001"})").status == 400);
  CHECK(post(good, R"({"token":"T","openKfId":"wkKF001"} x)").status == 400);
  CHECK(post(good, "<xml/>").status == 400);
  auto get = http_request(f.port(), "GET", path, good);
  CHECK(get.status == 405);
  CHECK(get.header("allow") == "POST");
  CHECK(http_request(f.port(), "POST", "/callback/decrypted/wwnosuchcorp", good, ok_body).status ==
        404);
  CHECK(http_request(f.port(), "POST", "/callback/decrypted/ww%zz", good, ok_body).status == 400);
  // The corp id in the path is percent-decoded.
  const auto escaped = http_request(f.port(), "POST", "/callback/decrypted/ww%63orp0001", good,
                                    R"({"token":"ENC-TOKEN-3","openKfId":"wkKF001"})");
  INFO(escaped.describe());
  CHECK(escaped.status == 200);
  REQUIRE(f.backend.wait_for_delivered(3));
  std::this_thread::sleep_for(300ms);
  CHECK(f.backend.requests().size() == 3);  // nothing refused was queued
  CHECK(f.metric("botgate_events_rejected_total{reason=\"bad_signature\"}") == 3);
  CHECK(f.metric("botgate_events_rejected_total{reason=\"missing_field\"}") == 2);
}

TEST_CASE("wecom: a decrypted notification is answered once stored, never at the ack deadline",
          "[integration][wechat][wecom]") {
  // The sender of a decrypted notification is not a platform with a 5 s limit: its 200 must
  // mean "stored", so a deadline far below a store's time changes nothing for it.
  Fixture f(setup(
      [](Setup& s) { s.extra_wecom = "decrypted_token = \"door\"\nack_deadline = \"1us\"\n"; }));
  for (int i = 0; i < 5; ++i) {
    auto res = http_request(f.port(), "POST", "/callback/decrypted/" + kCorpId,
                            {{"Authorization", "Bearer door"}},
                            R"({"token":"TOK-)" + std::to_string(i) + R"(","openKfId":"wkKF001"})");
    INFO(res.describe());
    CHECK(res.status == 200);
  }
  CHECK(f.metric("botgate_late_acks_total") == 0);
  // A platform callback to the same source is still answered at the deadline.
  auto res = post_wecom_callback(f.port(), kCorpId, kWecomKeys,
                                 wecom_text_xml(kCorpId, "ext-user-2", now_s(), "hi", "wc-late"));
  CHECK(res.status == 200);
  CHECK(f.metric("botgate_late_acks_total") == 1);
  REQUIRE(f.backend.wait_for_delivered(6));
}

TEST_CASE("wecom: a corp without decrypted_token has no decrypted door",
          "[integration][wechat][wecom]") {
  Fixture f;
  auto res =
      http_request(f.port(), "POST", "/callback/decrypted/" + kCorpId,
                   {{"Authorization", "Bearer anything"}}, R"({"token":"T","openKfId":"wkKF001"})");
  CHECK(res.status == 404);
  std::this_thread::sleep_for(200ms);
  CHECK(f.backend.requests().empty());
}

TEST_CASE("wechat: POST /v1/messages needs the admin token, an account pool and a body",
          "[integration][wechat]") {
  Fixture f;
  const std::string body = R"({"pool":"accts","to":"u-1","text":"hello","id":"once"})";
  CHECK(http_request(f.port(), "POST", "/v1/messages", {}, body).status == 401);
  CHECK(admin(f.port(), "POST", "/v1/messages", R"({"pool":"nope","to":"u","text":"t"})").status ==
        404);
  CHECK(admin(f.port(), "POST", "/v1/messages", R"({"pool":"backends","to":"u","text":"t"})")
            .status == 400);
  CHECK(admin(f.port(), "POST", "/v1/messages", R"({"pool":"accts","text":"t"})").status == 400);
  CHECK(admin(f.port(), "POST", "/v1/messages", "{not json").status == 400);
  // A msgtype's object given as a string is a field of the wrong type, not a missing one.
  const auto wrong_type = admin(f.port(), "POST", "/v1/messages",
                                R"({"pool":"accts","to":"u","msgtype":"image","image":"MID"})");
  CHECK(wrong_type.status == 400);
  CHECK(wrong_type.body == R"({"error":"malformed"})");
  const auto missing =
      admin(f.port(), "POST", "/v1/messages", R"({"pool":"accts","to":"u","msgtype":"image"})");
  CHECK(missing.status == 400);
  CHECK(missing.body == R"({"error":"missing_field"})");
  CHECK(admin(f.port(), "GET", "/v1/messages").status == 405);
  auto first = admin(f.port(), "POST", "/v1/messages", body);
  CHECK(first.status == 200);
  CHECK(first.body.find("accepted") != std::string::npos);
  auto again = admin(f.port(), "POST", "/v1/messages", body);
  CHECK(again.status == 200);
  CHECK(again.body.find("duplicate") != std::string::npos);
  REQUIRE(f.fake.wait_for_delivered(1));
  std::this_thread::sleep_for(300ms);
  CHECK(f.fake.delivered().size() == 1);
  CHECK(f.fake.delivered()[0].content == "hello");
}

TEST_CASE("wechat: POST /v1/messages into a full queue gets the 503 an inbound event gets",
          "[integration][wechat]") {
  FakeWechat fake;
  add_accounts(fake);
  fake.set_delay(1500ms);  // under the accounts' 2 s timeout: the first message stays in flight
  TestBackend backend;
  TempDir dir;
  GatewayOptions o;
  o.backend_ports = {backend.port()};
  o.shards = 1;
  o.max_pending = 1;
  Setup s;
  s.with_b = false;
  Gateway gw(botgate_binary(), dir, wechat_config(o, fake, s));
  REQUIRE(admin(gw.port(), "POST", "/v1/messages", R"({"pool":"accts","to":"u-1","text":"held"})")
              .status == 200);
  auto refused = admin(gw.port(), "POST", "/v1/messages",
                       R"({"pool":"accts","to":"u-2","text":"no room","id":"refused"})");
  INFO(refused.describe());
  CHECK(refused.status == 503);
  CHECK(refused.header("retry-after") == "1");
  CHECK(refused.body == R"({"error":"shards_full"})");

  auto metrics = http_request(gw.port(), "GET", "/metrics").body;
  INFO(metrics);
  CHECK(metric_value(metrics, R"(botgate_events_rejected_total{reason="shards_full"})") == 1);
  CHECK(metric_value(metrics, R"(botgate_http_requests_total{route="messages",status="503"})") ==
        1);
  CHECK(lines_with(gw.log(), R"(msg="event rejected" reason=shards_full status=503 source=api)")
            .size() == 1);

  REQUIRE(fake.wait_for_delivered(1));
  std::this_thread::sleep_for(300ms);
  REQUIRE(fake.delivered().size() == 1);
  CHECK(fake.delivered()[0].content == "held");
}

TEST_CASE("wechat: replies and messages of another msgtype go out with their object as given",
          "[integration][wechat]") {
  Fixture f(setup([](Setup& s) { s.with_b = false; }));
  f.backend.set_answer_body([](const BackendRequest& r) {
    if (r.idempotency_key() != "8100") return std::string("{}");
    return std::string(R"({"replies":[{"msgtype":"image","image":{"media_id":"MEDIA-1"}},)"
                       R"({"to":"user-9","msgtype":"hologram","hologram":{"x":1}}]})");
  });
  auto res =
      post_oa_callback(f.port(), "oa", kOaKeys,
                       oa_text_xml("gh_account", "user-8", now_s(), "a picture?", "8100"), true);
  REQUIRE(res.status == 200);
  const std::string news =
      R"({"articles":[{"title":"\u4f60\u597d","url":"http://127.0.0.1/a","picurl":""}]})";
  auto msg = admin(f.port(), "POST", "/v1/messages",
                   R"({"pool":"accts","to":"user-7","msgtype":"news","news":)" + news + "}");
  REQUIRE(msg.status == 200);
  // A msgtype without its object is refused before anything is stored.
  CHECK(admin(f.port(), "POST", "/v1/messages", R"({"pool":"accts","to":"u","msgtype":"image"})")
            .status == 400);

  REQUIRE(f.fake.wait_for_delivered(2));
  // The platform refuses the unknown msgtype (40008): dead-lettered with its reason, not retried.
  bool listed = eventually(
      [&] {
        return admin(f.port(), "GET", "/v1/dead-letters").body.find("40008") != std::string::npos;
      },
      10s);
  CHECK(listed);
  std::this_thread::sleep_for(300ms);
  std::map<std::string, SentMessage> by_type;
  for (const auto& m : f.fake.sent()) by_type[m.msgtype] = m;
  REQUIRE(by_type.size() == 3);
  CHECK(by_type["image"].touser == "user-8");
  CHECK(by_type["image"].media_id == "MEDIA-1");
  CHECK(by_type["image"].delivered());
  CHECK(by_type["news"].touser == "user-7");
  CHECK(by_type["news"].payload ==
        R"({"articles":[{"title":"你好","url":"http://127.0.0.1/a","picurl":""}]})");
  CHECK(by_type["news"].delivered());
  CHECK(by_type["hologram"].touser == "user-9");
  CHECK(by_type["hologram"].errcode == 40008);
  CHECK(f.fake.sent().size() == 3);
}

// Sends `n` text callbacks from user-d<i> and expects each answered `success`. A 503 (a full
// shard that answered before the deadline) is resent, as WeChat resends.
void send_deadline_acked(Fixture& f, int n) {
  for (int i = 0; i < n; ++i) {
    const auto xml = oa_text_xml("gh_account", "user-d" + std::to_string(i), now_s(), "x",
                                 fmt::format("d{}", i));
    auto res = post_oa_callback(f.port(), "oa", kOaKeys, xml, true);
    for (int resend = 0; res.status == 503 && resend < 50; ++resend) {
      res = post_oa_callback(f.port(), "oa", kOaKeys, xml, true);
    }
    REQUIRE(res.status == 200);
    CHECK(res.body == "success");
  }
}

TEST_CASE("wechat: a callback is answered by the ack deadline even when storage is slower",
          "[integration][wechat]") {
  // A deadline far below what a store takes: every answer comes from the deadline timer.
  Fixture f(setup([](Setup& s) { s.ack_deadline = "1us"; }));
  constexpr int kCallbacks = 20;
  send_deadline_acked(f, kCallbacks);
  // The store went on after the answer: every event still arrives.
  CHECK(f.backend.wait_for_delivered(kCallbacks));
  CHECK(f.metric("botgate_late_acks_total") >= 1);
}

TEST_CASE("wechat: a callback acked at the deadline is stored although the shard is full",
          "[integration][wechat]") {
  // WeChat was told `success`, so it will not resend: a shard that is full (max_pending) or
  // below min_free must still take the event, or it is lost. The shard stays full, so past
  // the first event only an answer from the deadline timer can be `success`.
  const bool disk = GENERATE(false, true);
  INFO((disk ? "below min_free" : "max_pending reached"));
  Fixture f(setup([](Setup& s) { s.ack_deadline = "1us"; }), [&](GatewayOptions& o) {
    o.shards = 1;
    o.max_pending = 1;
    o.max_attempts = 1000;             // the 503s below do not dead-letter anything
    if (disk) o.min_free = "1024GiB";  // more than any disk here: every new event is refused
  });
  f.backend.set_status(503);  // the backlog stays: the shard stays full
  constexpr int kCallbacks = 6;
  send_deadline_acked(f, kCallbacks);
  CHECK(eventually([&] { return f.metric("botgate_queue_depth{shard=\"0\"}") == kCallbacks; }));
  f.backend.set_ok();
  CHECK(f.backend.wait_for_delivered(kCallbacks));
  CHECK(f.backend.delivered_count() == kCallbacks);
  CHECK(lines_with(f.gw->log(), "was not stored").empty());
}

TEST_CASE("wechat: the dingdong probe works on wechat-oa accounts end to end",
          "[integration][wechat][dingdong]") {
  // Gateway A probes account acct-a by sending "ding <nonce>" to the user "peer-bot". The fake
  // platform hands that message to gateway B as a callback; B's heartbeat responder answers
  // "dong <nonce>" as a passive reply, which the platform delivers to A as a callback from
  // "peer-bot".
  // What the platform's relay hook uses lives longer than the platform.
  std::atomic<std::uint16_t> a_port{0};
  std::atomic<int> relayed{0};
  FakeWechat fake;
  add_accounts(fake);
  TestBackend backend_a, backend_b;
  TempDir dir;
  GatewayOptions ob;
  ob.queue_dir = "data-b";
  ob.backend_ports = {backend_b.port()};
  Gateway gw_b(botgate_binary(), dir, wechat_config(ob, fake), "gw-b");
  GatewayOptions oa;
  oa.queue_dir = "data-a";
  oa.backend_ports = {backend_a.port()};
  Setup s;
  s.with_b = false;
  s.a_probe = R"(
[targets.probe]
kind = "dingdong"
peer = "peer-bot"
source = "oa"
interval = "300ms"
timeout = "250ms"
rise = 1
fall = 1
)";
  const std::uint16_t b_port = gw_b.port();
  fake.set_on_delivered([&](const SentMessage& m) {
    if (m.touser != "peer-bot" || a_port == 0) return;
    auto at_b = post_oa_callback(b_port, "oa", kOaKeys,
                                 oa_text_xml("gh_b", "gw-a-bot", now_s(), m.content, ""), false);
    const auto dong = xml_field(at_b.body, "Content");
    if (dong.empty()) return;
    post_oa_callback(a_port, "oa", kOaKeys, oa_text_xml("gh_a", "peer-bot", now_s(), dong, ""),
                     true);
    ++relayed;
  });
  std::string cfg = wechat_config(oa, fake, s);
  Gateway gw_a(botgate_binary(), dir, cfg, "gw-a");
  a_port = gw_a.port();
  bool ok = eventually(
      [&] {
        auto m = http_request(gw_a.port(), "GET", "/metrics").body;
        return metric_value(m, "botgate_probes_total{target=\"acct-a\",result=\"ok\"}")
                   .value_or(0) >= 2;
      },
      10s);
  INFO("relayed " << relayed.load());
  CHECK(ok);
  // The dongs were consumed, not forwarded to A's backend.
  CHECK(backend_a.count() == 0);
  fake.set_on_delivered(nullptr);
}

TEST_CASE("wechat: a backend's reply is sent even while the queue's disk is below min_free",
          "[integration][wechat]") {
  TempDir dir;
  SmallDisk disk(dir.path() / "disk", "4m");
  if (!disk.mounted()) {
    WARN("cannot mount a tmpfs here (not root?): the low-disk path is not exercised");
    return;
  }
  FakeWechat fake;
  add_accounts(fake);
  TestBackend backend;
  reply_to_everything(backend);
  backend.set_slow(2s);  // the answer (with its reply) comes once the disk is low
  GatewayOptions o;
  o.backend_ports = {backend.port()};
  o.shards = 1;
  o.queue_dir = "disk/q";
  o.min_free = "1MiB";
  o.target_timeout = "5s";
  Gateway gw(botgate_binary(), dir, wechat_config(o, fake));

  auto res =
      post_oa_callback(gw.port(), "oa", kOaKeys,
                       oa_text_xml("gh_account", "user-low", now_s(), "hello", "7300"), false);
  REQUIRE(res.status == 200);
  REQUIRE(backend.wait_for_count(1, 5s));
  // Another process takes the disk down to half of min_free while the delivery is in flight.
  const auto free = std::filesystem::space(dir.path() / "disk").available;
  REQUIRE(free > (1u << 20));
  {
    std::ofstream filler(dir.path() / "disk" / "filler", std::ios::binary);
    const std::string chunk(64 << 10, 'f');
    for (std::uintmax_t left = free - (512u << 10); left > 0;) {
      const auto n = std::min<std::uintmax_t>(left, chunk.size());
      filler.write(chunk.data(), static_cast<std::streamsize>(n));
      left -= n;
    }
  }
  REQUIRE(eventually(
      [&] {
        return http_request(gw.port(), "GET", "/readyz").body.find("disk_full") !=
               std::string::npos;
      },
      5s));
  // New events are refused, but the reply to the stored one is not: it was answered for.
  CHECK(post_oa_callback(gw.port(), "oa", kOaKeys,
                         oa_text_xml("gh_account", "user-low", now_s(), "more", "7301"), false)
            .status == 503);
  REQUIRE(fake.wait_for_delivered(1, 10s));
  CHECK(contents(fake.delivered()) == std::vector<std::string>{"re: 7300"});
}
