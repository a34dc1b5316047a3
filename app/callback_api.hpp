// The WeChat Official Account and WeCom callback endpoints:
//   GET  /wechat/{source}    URL verification (signature over token, timestamp, nonce)
//   POST /wechat/{source}    a message, plaintext or safe mode (encrypt_type=aes)
//   GET  /callback/{corpId}  WeCom URL verification (echostr decrypted)
//   POST /callback/{corpId}  a WeCom message (always encrypted)
//
// A message is verified (signature before any decryption: CBC alone is not tamper-proof),
// decrypted, parsed, and routed by the rule table. When it is forwarded it is stored in its
// shard, and the answer waits for the store, but never past the source's ack_deadline (4.5 s):
// then "success" goes out anyway and the late ack is counted. A rule's static reply (or the
// heartbeat's "dong") is the answer itself, as passive-reply XML, encrypted in safe mode.
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "actors/dingdong.hpp"
#include "actors/shard_set.hpp"
#include "app/config.hpp"
#include "app/http_util.hpp"
#include "core/hash.hpp"
#include "core/metrics.hpp"
#include "transport/deadline_queue.hpp"
#include "transport/http_server.hpp"
#include "transport/wechat_codec.hpp"
#include "transport/wechat_crypto.hpp"

namespace botgate {

inline constexpr std::string_view kWechatPrefix = "/wechat/";
inline constexpr std::string_view kWecomPrefix = "/callback/";
// WXKF notifications a trusted front end already decrypted (wxkf-manager's second door).
inline constexpr std::string_view kWecomDecryptedPrefix = "/callback/decrypted/";

class CallbackApi {
 public:
  CallbackApi(const Config& config, Metrics& metrics, const ShardSet& shards, DingRegistry* dings,
              boost::asio::io_context& ioc);

  // `path` (no query) starts with kWechatPrefix or kWecomPrefix.
  void handle(http::Request&& req, std::string_view path, http::Responder respond) const;

 private:
  struct Exchange;
  struct Source {
    const SourceConfig* config = nullptr;
    std::optional<wechat::AesKey> key;  // none: plaintext mode only (wechat)
    std::string receiver_id;            // app id or corp id
    HttpRoute route = HttpRoute::wechat;
    // Forwarded callbacks raced against config->ack_deadline.
    std::unique_ptr<http::DeadlineQueue<Exchange>> acks;
    // wecom with a decrypted_token: the bearer token of its decrypted notifications.
    std::optional<BearerToken> decrypted;
  };
  // What one callback request carried, once read from the query.
  struct Call {
    const Source* source = nullptr;
    std::string timestamp;
    std::string nonce;
    bool encrypted = false;
    // A platform's callback is answered by the source's ack_deadline even if the store is
    // slower; a decrypted notification's sender has no such deadline and gets the real answer.
    bool ack_at_deadline = true;
  };

  void verify_url(const http::Request& req, const Source& src,
                  const http::Responder& respond) const;
  void receive(http::Request&& req, const Source& src, http::Responder respond) const;
  // POST /callback/decrypted/{corpId}: {"token","openKfId"}, turned into the notification XML
  // WeCom would have sent, then handled as one.
  void receive_decrypted(http::Request&& req, std::string_view corp_id,
                         http::Responder respond) const;
  void route(Call call, Event&& ev, const WechatMessage& msg, http::Responder respond) const;
  // The answer to a stored (or unstored) message: the passive reply, else "success".
  http::Response answer(const Call& call, const WechatMessage& msg, const std::string& reply) const;
  void reject(HttpRoute route, RejectReason why, unsigned status, std::string_view source,
              std::string_view detail, const http::Responder& respond) const;
  // False (after a 400 malformed) when the query named the parameter `repeated` twice: a
  // callback that could be read two ways is refused, not read the first way.
  bool unambiguous_query(const Source& src, std::string_view repeated,
                         const http::Responder& respond) const;
  // Checks the query parameters that sign a URL check or a callback, alike for GET and POST:
  // a missing signature (`sig_name`) is 401 bad_signature, a missing timestamp or nonce 400
  // missing_field, an overlong one 400 malformed, a stale timestamp 401. False once it has
  // refused the request.
  bool check_signing(const Source& src, std::string_view sig_name,
                     const std::optional<std::string>& sig, const std::optional<std::string>& ts,
                     const std::optional<std::string>& nonce, const http::Responder& respond) const;
  // Refuses a callback or URL check whose ciphertext did not open: `what` heads the detail.
  void reject_crypto(const Source& src, wechat::CryptoStatus st, std::string_view what,
                     const http::Responder& respond) const;
  // The ack deadline passed before the store answered: "success" (or the reply) goes out.
  void ack_late(Exchange& ex) const;
  // `owed`: `status` answers the second asking, submit_owed.
  void settle_late(const EventPtr& event, IngestStatus status, bool owed) const;

  using Table = std::unordered_map<std::string, Source, StringHash, std::equal_to<>>;
  Table wechat_;  // by source name
  Table wecom_;   // by corp id
  const std::vector<RouteRule>& rules_;
  Metrics& metrics_;
  const ShardSet& shards_;
  DingRegistry* dings_;
};

}  // namespace botgate
