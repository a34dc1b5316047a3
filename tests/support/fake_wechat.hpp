// A fake WeChat Official Account / WeCom platform for integration tests, and the client-side
// builders for the callbacks those platforms send to botgate.
//
// FakeWechat is a real HTTP/1.1 server on 127.0.0.1 (an ephemeral port; see MiniServer) that
// speaks the JSON APIs botgate calls (docs: /work/notes/issue5-contract.md): the access-token
// endpoints of both platforms and the two text-send endpoints, with token expiry, scripted
// errcodes and the KF msgid idempotency. Point botgate's api_base at api_base() (a path
// prefix, e.g. api_base() + "/wx", is accepted: only the part from "/cgi-bin/" on counts).
//
// The callback builders sign (and in safe mode encrypt) with the project's crypto
// (transport/wechat_crypto.hpp), so they produce exactly what the real platforms send.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/client.hpp"

namespace botgate::test {

using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------
// The fake platform.

// One request to a send endpoint, whatever the answer.
struct SentMessage {
  std::string api;           // "custom" (OA /cgi-bin/message/custom/send) | "kf" (WeCom)
  std::string account;       // appid / corpid the access_token belongs to; "" if unknown token
  std::string access_token;  // as sent in the query
  std::string touser;
  std::string open_kfid;  // kf only
  std::string msgid;      // kf: as sent ("" when absent; the answer then carries a generated one)
  std::string msgtype;
  std::string content;   // text.content
  std::string media_id;  // image, voice, video, file: <msgtype>.media_id
  std::string payload;   // any msgtype: its object, minified
  std::string body;      // the raw request body
  int errcode = 0;       // what the fake answered
  // A body scripted with script_answers, answered (HTTP 200) in place of the errcode JSON.
  // Whether the platform took the message is unknown: not counted as delivered.
  std::string answer;
  // A kf msgid already accepted: answered errcode 0, but not a new message.
  bool duplicate = false;
  std::chrono::steady_clock::time_point at{};  // arrival

  bool delivered() const { return errcode == 0 && !duplicate && answer.empty(); }
};

class FakeWechat {
 public:
  static constexpr int kDefaultExpiresIn = 7200;

  // Binds 127.0.0.1 on an ephemeral port and serves at once.
  FakeWechat();
  // Stops the server, then the on_delivered worker (hooks still queued are dropped); both
  // threads are joined.
  ~FakeWechat();
  FakeWechat(const FakeWechat&) = delete;
  FakeWechat& operator=(const FakeWechat&) = delete;

  std::uint16_t port() const;
  // "http://127.0.0.1:PORT": botgate's api_base.
  std::string api_base() const;
  std::uint64_t connections_accepted() const;

  // Accounts. Ids share one namespace (an id is an OA appid or a WeCom corpid, not both).
  // Every control below throws std::invalid_argument for an id never added.
  void add_oa(const std::string& appid, const std::string& secret);
  void add_corp(const std::string& corpid, const std::string& secret);
  // expires_in of the tokens issued from now on (seconds); they answer 42001 once it passed.
  void set_expires_in(const std::string& account, int seconds);

  // Tokens issued (successful token fetches) for the account, and the tokens themselves in
  // issue order. Every fetch issues a fresh token; earlier ones stay valid until they expire.
  std::size_t token_fetches(const std::string& account) const;
  std::vector<std::string> tokens(const std::string& account) const;
  // The next token fetches of the account (with a correct secret) answer these errcodes in
  // turn instead of a token (e.g. -1), then tokens again.
  void script_token_errors(const std::string& account, std::vector<int> errcodes);

  // The next token fetches of the account (with a correct secret, after any scripted errors)
  // answer these bodies in turn, HTTP 200, then the usual answer again. "{token}" in a body
  // is replaced by a token issued as usual (valid for sends), e.g.
  // R"({"access_token":"{token}","expires_in":7200.0})".
  void script_token_answers(const std::string& account, std::vector<std::string> bodies);

  // Every token issued so far for the account answers 42001 from now on (new fetches work).
  void expire_tokens(const std::string& account);
  // The next well-formed sends of the account (valid token, valid body) answer these
  // errcodes in turn, then 0 again. A 0 in the list lets one send through.
  void script_errors(const std::string& account, std::vector<int> errcodes);
  // The next well-formed sends of the account (after any scripted errcodes) are answered with
  // these bodies in turn, HTTP 200, e.g. "{}": SentMessage::answer.
  void script_answers(const std::string& account, std::vector<std::string> bodies);
  // Every well-formed send of the account answers `errcode` (after any scripted ones).
  void set_always_error(const std::string& account, int errcode);
  void clear_always_error(const std::string& account);
  // Answer every send this much later. The send is recorded (and delivered) on arrival, as
  // a slow real platform that already took it would.
  void set_delay(std::chrono::milliseconds delay);
  // Answer every send to `touser` this much later instead (recorded on arrival as well).
  void set_delay_for(const std::string& touser, std::chrono::milliseconds delay);

  // Called for each delivered message on a worker thread of the fake (never the server
  // thread), in delivery order; it may make blocking HTTP calls (e.g. relay the message
  // into botgate as an inbound callback). Messages delivered while no hook is set are not
  // queued for a later one. Exceptions it throws are swallowed. Whatever it captures must
  // outlive the FakeWechat (declare it first): a hook may still run until the destructor.
  void set_on_delivered(std::function<void(const SentMessage&)> hook);

  // Every send request, in arrival order.
  std::vector<SentMessage> sent() const;
  // Only those answered errcode 0 that were not duplicates.
  std::vector<SentMessage> delivered() const;
  // kf sends whose msgid had already been accepted.
  std::size_t duplicates() const;
  // Forget the records (sent/delivered/duplicates); accounts, tokens and the kf msgids
  // already accepted stay.
  void clear();

  bool wait_for_sent(std::size_t n, std::chrono::milliseconds timeout = 10s) const;
  bool wait_for_delivered(std::size_t n, std::chrono::milliseconds timeout = 10s) const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// The errmsg the fake answers with a send errcode: 0 "ok", -1 "system error", 40001 "invalid
// credential", 40014 "invalid access_token", 42001 "access_token expired", 45009 "reach max
// api daily quota limit", 45015 "response out of time limit or subscription is canceled",
// 45047 "out of response count limit", 40058 "invalid parameter", 47001 "data format error",
// ...; "error" for codes it does not know.
std::string wechat_errmsg(int errcode);

// ---------------------------------------------------------------------------------------
// Callbacks into botgate (client side).

struct WechatCallbackKeys {
  std::string token;        // the callback Token
  std::string aes_key;      // the 43-character EncodingAESKey; may be empty (plaintext OA)
  std::string receiver_id;  // the app id (OA) or corp id (WeCom) inside every envelope
};

// A random numeric nonce, as WeChat sends.
std::string wechat_nonce();

// Message XML as the platforms send it (strings as CDATA). An empty msg_id / event_key /
// agent_id leaves that element out.
std::string oa_text_xml(const std::string& to_user, const std::string& from_user,
                        std::int64_t create_time, const std::string& content,
                        const std::string& msg_id);
std::string oa_event_xml(const std::string& to_user, const std::string& from_user,
                         std::int64_t create_time, const std::string& event,
                         const std::string& event_key = "");
std::string wecom_text_xml(const std::string& corp_id, const std::string& from_user,
                           std::int64_t create_time, const std::string& content,
                           const std::string& msg_id, const std::string& agent_id = "");

// The base64 Encrypt value of `plaintext` under keys.aes_key / keys.receiver_id. Throws
// std::invalid_argument if the key does not parse.
std::string wechat_encrypt(const WechatCallbackKeys& keys, const std::string& plaintext);

// A built request, to send as is or to tamper with first.
struct CallbackRequest {
  std::string method;
  std::string target;  // path and query, values percent-encoded
  Headers headers;
  std::string body;
};

// POST /wechat/{source}?signature&timestamp&nonce[&openid][&encrypt_type=aes&msg_signature].
// openid is the XML's FromUserName (left out when it has none). Safe mode sends the envelope
// <xml><ToUserName/><Encrypt/></xml>, ToUserName taken from the XML; it throws
// std::invalid_argument when keys.aes_key is empty or bad.
CallbackRequest build_oa_callback(const std::string& source, const WechatCallbackKeys& keys,
                                  const std::string& xml, bool safe_mode,
                                  const std::string& timestamp, const std::string& nonce);
// POST /callback/{corp_id}?msg_signature&timestamp&nonce with the envelope
// <xml><ToUserName>corp_id</ToUserName><Encrypt/>[<AgentID/>]</xml>, AgentID taken from the XML.
CallbackRequest build_wecom_callback(const std::string& corp_id, const WechatCallbackKeys& keys,
                                     const std::string& xml, const std::string& timestamp,
                                     const std::string& nonce);
// GET /wechat/{source}?signature&timestamp&nonce&echostr.
CallbackRequest build_oa_verify(const std::string& source, const WechatCallbackKeys& keys,
                                const std::string& echostr, const std::string& timestamp,
                                const std::string& nonce);
// GET /callback/{corp_id}?msg_signature&timestamp&nonce&echostr, echostr the encrypted
// plaintext_echo.
CallbackRequest build_wecom_verify(const std::string& corp_id, const WechatCallbackKeys& keys,
                                   const std::string& plaintext_echo, const std::string& timestamp,
                                   const std::string& nonce);

Response send_callback(std::uint16_t port, const CallbackRequest& req);
Response send_callback(HttpConnection& conn, const CallbackRequest& req);

// Build and send in one go.
Response post_oa_callback(std::uint16_t port, const std::string& source,
                          const WechatCallbackKeys& keys, const std::string& xml, bool safe_mode,
                          std::string timestamp = unix_now(), std::string nonce = wechat_nonce());
Response post_oa_callback(HttpConnection& conn, const std::string& source,
                          const WechatCallbackKeys& keys, const std::string& xml, bool safe_mode,
                          std::string timestamp = unix_now(), std::string nonce = wechat_nonce());
Response post_wecom_callback(std::uint16_t port, const std::string& corp_id,
                             const WechatCallbackKeys& keys, const std::string& xml,
                             std::string timestamp = unix_now(),
                             std::string nonce = wechat_nonce());
Response post_wecom_callback(HttpConnection& conn, const std::string& corp_id,
                             const WechatCallbackKeys& keys, const std::string& xml,
                             std::string timestamp = unix_now(),
                             std::string nonce = wechat_nonce());
Response verify_oa_url(std::uint16_t port, const std::string& source,
                       const WechatCallbackKeys& keys, const std::string& echostr,
                       std::string timestamp = unix_now(), std::string nonce = wechat_nonce());
Response verify_wecom_url(std::uint16_t port, const std::string& corp_id,
                          const WechatCallbackKeys& keys, const std::string& plaintext_echo,
                          std::string timestamp = unix_now(), std::string nonce = wechat_nonce());

// An encrypted passive reply (<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>):
// checks MsgSignature against keys.token and returns the decrypted reply XML. On failure
// nullopt, and why in *error when given.
std::optional<std::string> decrypt_passive_reply(const WechatCallbackKeys& keys,
                                                 const std::string& body,
                                                 std::string* error = nullptr);

// The text of <name> under the root element (CDATA sections concatenated), "" when the
// XML does not parse or has no such element.
std::string xml_field(const std::string& xml, const std::string& name);

}  // namespace botgate::test
