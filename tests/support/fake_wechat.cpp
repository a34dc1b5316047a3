#include "tests/support/fake_wechat.hpp"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <pugixml.hpp>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>
#include <utility>

#include "tests/support/mini_server.hpp"
#include "transport/wechat_crypto.hpp"

namespace botgate::test {

namespace {

enum class Kind { oa, corp };

std::string random_hex(std::size_t n) {
  static std::mt19937_64 rng(std::random_device{}());
  static std::mutex mu;
  static constexpr char kHex[] = "0123456789abcdef";
  std::lock_guard lk(mu);
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(kHex[rng() & 0xf]);
  return out;
}

std::string error_json(int errcode, const std::string& errmsg) {
  // errmsg is one of ours: no characters that need escaping.
  return fmt::format(R"({{"errcode":{},"errmsg":"{}"}})", errcode, errmsg);
}

std::string error_json(int errcode) {
  return error_json(errcode, wechat_errmsg(errcode));
}

MiniReply json_reply(std::string body, std::chrono::milliseconds delay = {}) {
  MiniReply r;
  r.content_type = "application/json; charset=UTF-8";
  r.body = std::move(body);
  r.delay = delay;
  return r;
}

// KF msgid: at most 32 characters of [0-9a-zA-Z_-].
bool valid_kf_msgid(const std::string& id) {
  if (id.size() > 32) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           c == '-';
  });
}

// "<![CDATA[s]]>", with any "]]>" in s split across two sections.
std::string cdata(const std::string& s) {
  std::string out = "<![CDATA[";
  std::size_t pos = 0;
  for (;;) {
    auto end = s.find("]]>", pos);
    if (end == std::string::npos) break;
    out.append(s, pos, end + 2 - pos);  // up to and including "]]"
    out += "]]><![CDATA[";
    pos = end + 2;  // continue with ">"
  }
  out.append(s, pos, std::string::npos);
  out += "]]>";
  return out;
}

std::string element(const std::string& name, const std::string& inner) {
  return "<" + name + ">" + inner + "</" + name + ">";
}

}  // namespace

std::string wechat_errmsg(int errcode) {
  switch (errcode) {
    case 0:
      return "ok";
    case -1:
      return "system error";
    case 40001:
      return "invalid credential";
    case 40002:
      return "invalid grant_type";
    case 40007:
      return "invalid media_id";
    case 40008:
      return "invalid message type";
    case 40013:
      return "invalid appid";
    case 40014:
      return "invalid access_token";
    case 40058:
      return "invalid parameter";
    case 40125:
      return "invalid appsecret";
    case 41001:
      return "access_token missing";
    case 42001:
      return "access_token expired";
    case 43002:
      return "require POST method";
    case 44002:
      return "empty post data";
    case 45009:
      return "reach max api daily quota limit";
    case 45011:
      return "api minute-quota reach limit";
    case 45015:
      return "response out of time limit or subscription is canceled";
    case 45047:
      return "out of response count limit";
    case 47001:
      return "data format error";
    default:
      return "error";
  }
}

struct FakeWechat::Impl {
  struct Account {
    Kind kind = Kind::oa;
    std::string secret;
    int expires_in = kDefaultExpiresIn;
    std::vector<std::string> tokens;  // issue order
    std::deque<int> token_script;
    std::deque<int> send_script;
    std::deque<std::string> answer_script;
    std::deque<std::string> token_answers;
    std::optional<int> always_error;
    std::set<std::string> kf_msgids;  // accepted
  };
  struct Token {
    std::string account;
    Kind kind = Kind::oa;
    std::chrono::steady_clock::time_point expires_at{};
    bool revoked = false;
  };
  using Hook = std::function<void(const SentMessage&)>;

  mutable std::mutex mu;
  mutable std::condition_variable cv;  // a message was recorded / a hook was queued / stopping
  std::map<std::string, Account> accounts;
  std::map<std::string, Token> tokens;
  std::vector<SentMessage> sent;
  std::chrono::milliseconds delay{0};
  std::map<std::string, std::chrono::milliseconds> delay_for;  // by touser
  std::uint64_t seq = 0;
  Hook hook;
  std::deque<std::pair<Hook, SentMessage>> hook_queue;
  bool stopping = false;
  std::thread worker;

  simdjson::dom::parser parser;  // server thread only
  std::unique_ptr<MiniServer> server;

  Account& account_or_throw(const std::string& id) {  // under mu
    auto it = accounts.find(id);
    if (it == accounts.end()) throw std::invalid_argument("fake_wechat: unknown account " + id);
    return it->second;
  }

  MiniReply handle(const MiniRequest& r) {
    // Whatever path api_base carries comes before "/cgi-bin/".
    const auto at = r.path.find("/cgi-bin/");
    const std::string path = at == std::string::npos ? r.path : r.path.substr(at);
    if (path == "/cgi-bin/token") return json_reply(oa_token(r));
    if (path == "/cgi-bin/gettoken") return json_reply(corp_token(r));
    if (path == "/cgi-bin/message/custom/send") return send(r, "custom", Kind::oa);
    if (path == "/cgi-bin/kf/send_msg") return send(r, "kf", Kind::corp);
    MiniReply nf;
    nf.status = 404;
    nf.content_type = "text/plain";
    nf.body = "not found";
    return nf;
  }

  // A fresh token for `id`, or the next scripted token error (under mu).
  std::string issue(const std::string& id, Account& acc, Kind kind) {
    if (!acc.token_script.empty()) {
      int code = acc.token_script.front();
      acc.token_script.pop_front();
      if (code != 0) return error_json(code);
    }
    std::string scripted;
    if (!acc.token_answers.empty()) {
      scripted = std::move(acc.token_answers.front());
      acc.token_answers.pop_front();
      if (scripted.find("{token}") == std::string::npos) return scripted;
    }
    std::string token =
        fmt::format("FAKE{}_{}_{}", kind == Kind::oa ? "OA" : "WW", ++seq, random_hex(32));
    Token t;
    t.account = id;
    t.kind = kind;
    t.expires_at = std::chrono::steady_clock::now() + std::chrono::seconds(acc.expires_in);
    tokens.emplace(token, t);
    acc.tokens.push_back(token);
    if (!scripted.empty()) return scripted.replace(scripted.find("{token}"), 7, token);
    if (kind == Kind::oa) {
      return fmt::format(R"({{"access_token":"{}","expires_in":{}}})", token, acc.expires_in);
    }
    return fmt::format(R"({{"errcode":0,"errmsg":"ok","access_token":"{}","expires_in":{}}})",
                       token, acc.expires_in);
  }

  std::string oa_token(const MiniRequest& r) {
    if (r.param("grant_type") != "client_credential") return error_json(40002);
    const auto appid = r.param("appid");
    const auto secret = r.param("secret");
    if (appid.empty()) return error_json(41002, "appid missing");
    std::lock_guard lk(mu);
    auto it = accounts.find(appid);
    if (it == accounts.end() || it->second.kind != Kind::oa) {
      return error_json(40013, "invalid appid");
    }
    if (secret.empty()) return error_json(41004, "appsecret missing");
    if (secret != it->second.secret) return error_json(40125, "invalid appsecret");
    return issue(appid, it->second, Kind::oa);
  }

  std::string corp_token(const MiniRequest& r) {
    const auto corpid = r.param("corpid");
    const auto secret = r.param("corpsecret");
    if (corpid.empty()) return error_json(41002, "corpid missing");
    std::lock_guard lk(mu);
    auto it = accounts.find(corpid);
    if (it == accounts.end() || it->second.kind != Kind::corp) {
      return error_json(40013, "invalid corpid");
    }
    if (secret.empty()) return error_json(41004, "corpsecret missing");
    if (secret != it->second.secret) return error_json(40001, "invalid credential");
    return issue(corpid, it->second, Kind::corp);
  }

  // Reads the send body into m; 0 or the errcode for a malformed one.
  int parse_send_body(SentMessage& m, bool kf) {
    if (m.body.empty()) return 44002;
    simdjson::dom::element doc;
    if (parser.parse(m.body).get(doc) != simdjson::SUCCESS || !doc.is_object()) return 47001;
    auto str = [&](simdjson::dom::element e, const char* key, std::string& out) {
      std::string_view v;
      if (e[key].get_string().get(v) != simdjson::SUCCESS) return false;
      out = std::string(v);
      return true;
    };
    const bool has_touser = str(doc, "touser", m.touser);
    const bool has_msgtype = str(doc, "msgtype", m.msgtype);
    bool has_content = false;
    simdjson::dom::element text;
    if (doc["text"].get(text) == simdjson::SUCCESS && text.is_object()) {
      has_content = str(text, "content", m.content);
    }
    bool has_kfid = false;
    bool has_msgid = false;
    bool msgid_is_string = true;
    if (kf) {
      has_kfid = str(doc, "open_kfid", m.open_kfid);
      has_msgid = str(doc, "msgid", m.msgid);
      msgid_is_string = has_msgid || doc["msgid"].error() == simdjson::NO_SUCH_FIELD;
    }
    if (!has_touser || m.touser.empty() || !has_msgtype) return 47001;
    if (kf && (!has_kfid || m.open_kfid.empty())) return 47001;
    if (kf && (!msgid_is_string || !valid_kf_msgid(m.msgid))) return 40058;
    // The message types both APIs share, and a few of either; the object of any other is not
    // looked at (errcode 40008, as the platforms answer an unknown msgtype).
    static const std::set<std::string, std::less<>> kMedia = {"image", "voice", "video", "file"};
    static const std::set<std::string, std::less<>> kOther = {
        "text", "news", "mpnews", "msgmenu", "link", "miniprogrampage", "miniprogram"};
    const bool media = kMedia.count(m.msgtype) != 0;
    if (!media && kOther.count(m.msgtype) == 0) return 40008;
    simdjson::dom::element object;
    if (doc[m.msgtype].get(object) != simdjson::SUCCESS || !object.is_object()) return 47001;
    m.payload = simdjson::minify(object);
    if (m.msgtype == "text" && !has_content) return 47001;
    if (media && !str(object, "media_id", m.media_id)) return 40007;  // invalid media_id
    return 0;
  }

  MiniReply send(const MiniRequest& r, const char* api, Kind kind) {
    SentMessage m;
    m.api = api;
    m.at = r.at;
    m.body = r.body;
    m.access_token = r.param("access_token");
    const bool kf = kind == Kind::corp;
    std::string reply_msgid;

    std::unique_lock lk(mu);
    int code = 0;
    if (r.method != "POST") {
      code = 43002;
    } else if (m.access_token.empty()) {
      code = 41001;
    } else {
      auto t = tokens.find(m.access_token);
      if (t == tokens.end() || t->second.kind != kind) {
        code = 40014;
      } else {
        m.account = t->second.account;
        if (t->second.revoked || std::chrono::steady_clock::now() >= t->second.expires_at) {
          code = 42001;
        }
      }
    }
    if (code == 0) code = parse_send_body(m, kf);
    if (code == 0) {
      Account& acc = accounts.at(m.account);
      if (!acc.send_script.empty()) {
        code = acc.send_script.front();
        acc.send_script.pop_front();
      } else if (!acc.answer_script.empty()) {
        m.answer = std::move(acc.answer_script.front());
        acc.answer_script.pop_front();
      } else if (acc.always_error) {
        code = *acc.always_error;
      }
      if (code == 0 && kf && m.answer.empty()) {
        if (m.msgid.empty()) {
          reply_msgid = fmt::format("FAKEMSG{}", ++seq);
        } else {
          reply_msgid = m.msgid;
          m.duplicate = !acc.kf_msgids.insert(m.msgid).second;
        }
      }
    }
    m.errcode = code;
    const auto special = delay_for.find(m.touser);
    const auto delay_now = special != delay_for.end() ? special->second : delay;
    const std::string answer = m.answer;
    sent.push_back(m);
    if (m.delivered() && hook) hook_queue.emplace_back(hook, m);
    lk.unlock();
    cv.notify_all();

    if (!answer.empty()) return json_reply(answer, delay_now);
    if (code != 0) return json_reply(error_json(code), delay_now);
    if (kf) {
      return json_reply(fmt::format(R"({{"errcode":0,"errmsg":"ok","msgid":"{}"}})", reply_msgid),
                        delay_now);
    }
    return json_reply(error_json(0), delay_now);
  }

  void hook_loop() {
    std::unique_lock lk(mu);
    for (;;) {
      cv.wait(lk, [&] { return stopping || !hook_queue.empty(); });
      if (stopping) return;
      auto [h, m] = std::move(hook_queue.front());
      hook_queue.pop_front();
      lk.unlock();
      try {
        h(m);
      } catch (...) {
      }
      lk.lock();
    }
  }
};

FakeWechat::FakeWechat() : impl_(std::make_shared<Impl>()) {
  impl_->worker = std::thread([impl = impl_.get()] { impl->hook_loop(); });
  try {
    impl_->server = std::make_unique<MiniServer>(
        [impl = impl_.get()](const MiniRequest& r) { return impl->handle(r); },
        "botgate-fake-wechat");
  } catch (...) {
    {
      std::lock_guard lk(impl_->mu);
      impl_->stopping = true;
    }
    impl_->cv.notify_all();
    impl_->worker.join();
    throw;
  }
}

FakeWechat::~FakeWechat() {
  impl_->server.reset();  // joins the server thread: no more sends or hooks queued
  {
    std::lock_guard lk(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->worker.joinable()) impl_->worker.join();
}

std::uint16_t FakeWechat::port() const {
  return impl_->server->port();
}

std::string FakeWechat::api_base() const {
  return impl_->server->url();
}

std::uint64_t FakeWechat::connections_accepted() const {
  return impl_->server->connections_accepted();
}

void FakeWechat::add_oa(const std::string& appid, const std::string& secret) {
  std::lock_guard lk(impl_->mu);
  auto& acc = impl_->accounts[appid];
  acc.kind = Kind::oa;
  acc.secret = secret;
}

void FakeWechat::add_corp(const std::string& corpid, const std::string& secret) {
  std::lock_guard lk(impl_->mu);
  auto& acc = impl_->accounts[corpid];
  acc.kind = Kind::corp;
  acc.secret = secret;
}

void FakeWechat::set_expires_in(const std::string& account, int seconds) {
  std::lock_guard lk(impl_->mu);
  impl_->account_or_throw(account).expires_in = seconds;
}

std::size_t FakeWechat::token_fetches(const std::string& account) const {
  std::lock_guard lk(impl_->mu);
  return impl_->account_or_throw(account).tokens.size();
}

std::vector<std::string> FakeWechat::tokens(const std::string& account) const {
  std::lock_guard lk(impl_->mu);
  return impl_->account_or_throw(account).tokens;
}

void FakeWechat::script_token_errors(const std::string& account, std::vector<int> errcodes) {
  std::lock_guard lk(impl_->mu);
  auto& acc = impl_->account_or_throw(account);
  acc.token_script.insert(acc.token_script.end(), errcodes.begin(), errcodes.end());
}

void FakeWechat::script_token_answers(const std::string& account, std::vector<std::string> bodies) {
  std::lock_guard lk(impl_->mu);
  auto& acc = impl_->account_or_throw(account);
  for (auto& b : bodies) acc.token_answers.push_back(std::move(b));
}

void FakeWechat::script_answers(const std::string& account, std::vector<std::string> bodies) {
  std::lock_guard lk(impl_->mu);
  auto& acc = impl_->account_or_throw(account);
  for (auto& b : bodies) acc.answer_script.push_back(std::move(b));
}

void FakeWechat::expire_tokens(const std::string& account) {
  std::lock_guard lk(impl_->mu);
  for (const auto& t : impl_->account_or_throw(account).tokens) impl_->tokens.at(t).revoked = true;
}

void FakeWechat::script_errors(const std::string& account, std::vector<int> errcodes) {
  std::lock_guard lk(impl_->mu);
  auto& acc = impl_->account_or_throw(account);
  acc.send_script.insert(acc.send_script.end(), errcodes.begin(), errcodes.end());
}

void FakeWechat::set_always_error(const std::string& account, int errcode) {
  std::lock_guard lk(impl_->mu);
  impl_->account_or_throw(account).always_error = errcode;
}

void FakeWechat::clear_always_error(const std::string& account) {
  std::lock_guard lk(impl_->mu);
  impl_->account_or_throw(account).always_error.reset();
}

void FakeWechat::set_delay(std::chrono::milliseconds delay) {
  std::lock_guard lk(impl_->mu);
  impl_->delay = delay;
}

void FakeWechat::set_delay_for(const std::string& touser, std::chrono::milliseconds delay) {
  std::lock_guard lk(impl_->mu);
  impl_->delay_for[touser] = delay;
}

void FakeWechat::set_on_delivered(std::function<void(const SentMessage&)> hook) {
  std::lock_guard lk(impl_->mu);
  impl_->hook = std::move(hook);
}

std::vector<SentMessage> FakeWechat::sent() const {
  std::lock_guard lk(impl_->mu);
  return impl_->sent;
}

std::vector<SentMessage> FakeWechat::delivered() const {
  std::lock_guard lk(impl_->mu);
  std::vector<SentMessage> out;
  for (const auto& m : impl_->sent) {
    if (m.delivered()) out.push_back(m);
  }
  return out;
}

std::size_t FakeWechat::duplicates() const {
  std::lock_guard lk(impl_->mu);
  return static_cast<std::size_t>(std::count_if(impl_->sent.begin(), impl_->sent.end(),
                                                [](const auto& m) { return m.duplicate; }));
}

void FakeWechat::clear() {
  std::lock_guard lk(impl_->mu);
  impl_->sent.clear();
}

bool FakeWechat::wait_for_sent(std::size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lk(impl_->mu);
  return impl_->cv.wait_for(lk, timeout, [&] { return impl_->sent.size() >= n; });
}

bool FakeWechat::wait_for_delivered(std::size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lk(impl_->mu);
  return impl_->cv.wait_for(lk, timeout, [&] {
    return static_cast<std::size_t>(std::count_if(impl_->sent.begin(), impl_->sent.end(),
                                                  [](const auto& m) { return m.delivered(); })) >=
           n;
  });
}

// ---------------------------------------------------------------------------------------
// Callbacks.

std::string wechat_nonce() {
  static std::mt19937_64 rng(std::random_device{}());
  static std::mutex mu;
  std::lock_guard lk(mu);
  return std::to_string(1000000000 + rng() % 1000000000);
}

std::string oa_text_xml(const std::string& to_user, const std::string& from_user,
                        std::int64_t create_time, const std::string& content,
                        const std::string& msg_id) {
  std::string xml = "<xml>";
  xml += element("ToUserName", cdata(to_user));
  xml += element("FromUserName", cdata(from_user));
  xml += element("CreateTime", std::to_string(create_time));
  xml += element("MsgType", cdata("text"));
  xml += element("Content", cdata(content));
  if (!msg_id.empty()) xml += element("MsgId", msg_id);
  xml += "</xml>";
  return xml;
}

std::string oa_event_xml(const std::string& to_user, const std::string& from_user,
                         std::int64_t create_time, const std::string& event,
                         const std::string& event_key) {
  std::string xml = "<xml>";
  xml += element("ToUserName", cdata(to_user));
  xml += element("FromUserName", cdata(from_user));
  xml += element("CreateTime", std::to_string(create_time));
  xml += element("MsgType", cdata("event"));
  xml += element("Event", cdata(event));
  if (!event_key.empty()) xml += element("EventKey", cdata(event_key));
  xml += "</xml>";
  return xml;
}

std::string wecom_text_xml(const std::string& corp_id, const std::string& from_user,
                           std::int64_t create_time, const std::string& content,
                           const std::string& msg_id, const std::string& agent_id) {
  std::string xml = "<xml>";
  xml += element("ToUserName", cdata(corp_id));
  xml += element("FromUserName", cdata(from_user));
  xml += element("CreateTime", std::to_string(create_time));
  xml += element("MsgType", cdata("text"));
  xml += element("Content", cdata(content));
  if (!msg_id.empty()) xml += element("MsgId", msg_id);
  if (!agent_id.empty()) xml += element("AgentID", agent_id);
  xml += "</xml>";
  return xml;
}

std::string wechat_encrypt(const WechatCallbackKeys& keys, const std::string& plaintext) {
  std::string error;
  auto key = wechat::AesKey::parse(keys.aes_key, error);
  if (!key) throw std::invalid_argument("fake_wechat: bad EncodingAESKey: " + error);
  std::string out;
  auto st = wechat::encrypt(*key, plaintext, keys.receiver_id, out);
  if (st != wechat::CryptoStatus::ok) {
    throw std::invalid_argument(std::string("fake_wechat: encrypt: ") + wechat::to_string(st));
  }
  return out;
}

CallbackRequest build_oa_callback(const std::string& source, const WechatCallbackKeys& keys,
                                  const std::string& xml, bool safe_mode,
                                  const std::string& timestamp, const std::string& nonce) {
  std::vector<std::pair<std::string, std::string>> q = {
      {"signature", wechat::signature(keys.token, timestamp, nonce)},
      {"timestamp", timestamp},
      {"nonce", nonce},
  };
  const auto openid = xml_field(xml, "FromUserName");
  if (!openid.empty()) q.emplace_back("openid", openid);
  CallbackRequest req;
  req.method = "POST";
  req.headers = {{"Content-Type", "text/xml"}};
  if (safe_mode) {
    const auto enc = wechat_encrypt(keys, xml);
    q.emplace_back("encrypt_type", "aes");
    q.emplace_back("msg_signature", wechat::msg_signature(keys.token, timestamp, nonce, enc));
    req.body = "<xml>" + element("ToUserName", cdata(xml_field(xml, "ToUserName"))) +
               element("Encrypt", cdata(enc)) + "</xml>";
  } else {
    req.body = xml;
  }
  req.target = "/wechat/" + source + "?" + build_query(q);
  return req;
}

CallbackRequest build_wecom_callback(const std::string& corp_id, const WechatCallbackKeys& keys,
                                     const std::string& xml, const std::string& timestamp,
                                     const std::string& nonce) {
  const auto enc = wechat_encrypt(keys, xml);
  CallbackRequest req;
  req.method = "POST";
  req.headers = {{"Content-Type", "text/xml"}};
  req.target = "/callback/" + corp_id + "?" +
               build_query({
                   {"msg_signature", wechat::msg_signature(keys.token, timestamp, nonce, enc)},
                   {"timestamp", timestamp},
                   {"nonce", nonce},
               });
  req.body = "<xml>" + element("ToUserName", cdata(corp_id)) + element("Encrypt", cdata(enc));
  const auto agent = xml_field(xml, "AgentID");
  if (!agent.empty()) req.body += element("AgentID", cdata(agent));
  req.body += "</xml>";
  return req;
}

CallbackRequest build_oa_verify(const std::string& source, const WechatCallbackKeys& keys,
                                const std::string& echostr, const std::string& timestamp,
                                const std::string& nonce) {
  CallbackRequest req;
  req.method = "GET";
  req.target = "/wechat/" + source + "?" +
               build_query({
                   {"signature", wechat::signature(keys.token, timestamp, nonce)},
                   {"timestamp", timestamp},
                   {"nonce", nonce},
                   {"echostr", echostr},
               });
  return req;
}

CallbackRequest build_wecom_verify(const std::string& corp_id, const WechatCallbackKeys& keys,
                                   const std::string& plaintext_echo, const std::string& timestamp,
                                   const std::string& nonce) {
  const auto enc = wechat_encrypt(keys, plaintext_echo);
  CallbackRequest req;
  req.method = "GET";
  req.target = "/callback/" + corp_id + "?" +
               build_query({
                   {"msg_signature", wechat::msg_signature(keys.token, timestamp, nonce, enc)},
                   {"timestamp", timestamp},
                   {"nonce", nonce},
                   {"echostr", enc},
               });
  return req;
}

Response send_callback(std::uint16_t port, const CallbackRequest& req) {
  return http_request(port, req.method, req.target, req.headers, req.body);
}

Response send_callback(HttpConnection& conn, const CallbackRequest& req) {
  return conn.request(req.method, req.target, req.headers, req.body);
}

Response post_oa_callback(std::uint16_t port, const std::string& source,
                          const WechatCallbackKeys& keys, const std::string& xml, bool safe_mode,
                          std::string timestamp, std::string nonce) {
  return send_callback(port, build_oa_callback(source, keys, xml, safe_mode, timestamp, nonce));
}

Response post_oa_callback(HttpConnection& conn, const std::string& source,
                          const WechatCallbackKeys& keys, const std::string& xml, bool safe_mode,
                          std::string timestamp, std::string nonce) {
  return send_callback(conn, build_oa_callback(source, keys, xml, safe_mode, timestamp, nonce));
}

Response post_wecom_callback(std::uint16_t port, const std::string& corp_id,
                             const WechatCallbackKeys& keys, const std::string& xml,
                             std::string timestamp, std::string nonce) {
  return send_callback(port, build_wecom_callback(corp_id, keys, xml, timestamp, nonce));
}

Response post_wecom_callback(HttpConnection& conn, const std::string& corp_id,
                             const WechatCallbackKeys& keys, const std::string& xml,
                             std::string timestamp, std::string nonce) {
  return send_callback(conn, build_wecom_callback(corp_id, keys, xml, timestamp, nonce));
}

Response verify_oa_url(std::uint16_t port, const std::string& source,
                       const WechatCallbackKeys& keys, const std::string& echostr,
                       std::string timestamp, std::string nonce) {
  return send_callback(port, build_oa_verify(source, keys, echostr, timestamp, nonce));
}

Response verify_wecom_url(std::uint16_t port, const std::string& corp_id,
                          const WechatCallbackKeys& keys, const std::string& plaintext_echo,
                          std::string timestamp, std::string nonce) {
  return send_callback(port, build_wecom_verify(corp_id, keys, plaintext_echo, timestamp, nonce));
}

std::optional<std::string> decrypt_passive_reply(const WechatCallbackKeys& keys,
                                                 const std::string& body, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<std::string> {
    if (error) *error = std::move(why);
    return std::nullopt;
  };
  pugi::xml_document doc;
  if (!doc.load_buffer(body.data(), body.size())) return fail("reply is not XML");
  if (std::string(doc.document_element().name()) != "xml") return fail("reply root is not <xml>");
  const auto encrypt = xml_field(body, "Encrypt");
  const auto signature = xml_field(body, "MsgSignature");
  const auto timestamp = xml_field(body, "TimeStamp");
  const auto nonce = xml_field(body, "Nonce");
  if (encrypt.empty()) return fail("reply has no Encrypt");
  if (signature.empty()) return fail("reply has no MsgSignature");
  if (timestamp.empty()) return fail("reply has no TimeStamp");
  if (nonce.empty()) return fail("reply has no Nonce");
  if (!wechat::verify_msg_signature(signature, keys.token, timestamp, nonce, encrypt)) {
    return fail("reply MsgSignature does not verify");
  }
  std::string key_error;
  auto key = wechat::AesKey::parse(keys.aes_key, key_error);
  if (!key) return fail("bad EncodingAESKey: " + key_error);
  std::string plain;
  auto st = wechat::decrypt(*key, encrypt, keys.receiver_id, plain);
  if (st != wechat::CryptoStatus::ok) {
    return fail(std::string("reply does not decrypt: ") + wechat::to_string(st));
  }
  if (error) error->clear();
  return plain;
}

std::string xml_field(const std::string& xml, const std::string& name) {
  pugi::xml_document doc;
  if (!doc.load_buffer(xml.data(), xml.size())) return {};
  auto node = doc.document_element().child(name.c_str());
  std::string out;
  for (auto c : node.children()) {
    if (c.type() == pugi::node_pcdata || c.type() == pugi::node_cdata) out += c.value();
  }
  return out;
}

}  // namespace botgate::test
