#include "app/callback_api.hpp"

#include <fmt/format.h>

#include <atomic>
#include <charconv>

#include "app/http_util.hpp"
#include "core/log.hpp"
#include "policies/route_rules.hpp"
#include "transport/generic_codec.hpp"

namespace botgate {
namespace {

namespace bhttp = boost::beast::http;
namespace net = boost::asio;

// Longest timestamp or nonce taken from a query; real ones are 10 digits and ~10 characters.
constexpr std::size_t kMaxQueryValue = 128;

constexpr std::string_view kSuccess = "success";

// Decimal unix seconds within `max_skew` of now.
bool fresh_timestamp(std::string_view ts, Duration max_skew) {
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(ts.data(), ts.data() + ts.size(), v);
  if (ec != std::errc{} || ptr != ts.data() + ts.size()) return false;
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  const auto skew = std::chrono::duration_cast<std::chrono::seconds>(max_skew).count();
  return v >= now - skew && v <= now + skew;
}

}  // namespace

// One forwarded callback waiting for its shard's ack, raced by the ack deadline: whichever
// comes first claims it and answers; the other finds it claimed.
struct CallbackApi::Exchange {
  Exchange(const Source& s, http::Responder r, http::Response a)
      : source(s), respond(std::move(r)), ready(std::move(a)) {}

  struct Claim {
    http::Responder respond;
    http::Response ready;  // the answer once the event is stored
  };
  // The first caller takes the responder and the prepared answer; later ones get nothing.
  // Taking them out leaves an answered exchange small (and its connection free to go)
  // while it waits in the deadline queue behind an unanswered one.
  std::optional<Claim> claim() {
    if (answered.exchange(true, std::memory_order_acq_rel)) return std::nullopt;
    return Claim{std::move(respond), std::move(ready)};
  }
  bool settled() const { return answered.load(std::memory_order_acquire); }

  const Source& source;

 private:
  http::Responder respond;
  http::Response ready;
  std::atomic<bool> answered{false};
};

CallbackApi::CallbackApi(const Config& config, Metrics& metrics, const ShardSet& shards,
                         DingRegistry* dings, net::io_context& ioc)
    : rules_(config.routes), metrics_(metrics), shards_(shards), dings_(dings) {
  for (const auto& s : config.sources) {
    if (s.kind == SourceKind::generic) continue;
    Source src;
    src.config = &s;
    std::string error;
    if (!s.encoding_aes_key.empty()) src.key = wechat::AesKey::parse(s.encoding_aes_key, error);
    src.acks = std::make_unique<http::DeadlineQueue<Exchange>>(
        ioc, s.ack_deadline, [this](const std::shared_ptr<Exchange>& ex) { ack_late(*ex); });
    if (s.kind == SourceKind::wechat) {
      src.receiver_id = s.app_id;
      src.route = HttpRoute::wechat;
      wechat_.emplace(s.name, std::move(src));
    } else {
      src.receiver_id = s.corp_id;
      src.route = HttpRoute::wecom;
      if (!s.decrypted_token.empty()) src.decrypted.emplace(s.decrypted_token);
      wecom_.emplace(s.corp_id, std::move(src));
    }
  }
}

void CallbackApi::reject(HttpRoute route, RejectReason why, unsigned status,
                         std::string_view source, std::string_view detail,
                         const http::Responder& respond) const {
  refuse_event(metrics_, route, why, status, source, detail, "GET, POST", respond);
}

void CallbackApi::reject_crypto(const Source& src, wechat::CryptoStatus st, std::string_view what,
                                const http::Responder& respond) const {
  // A ciphertext sealed for another receiver proves the sender does not hold this source's
  // key, like a wrong signature: 401. Anything else is a garbled ciphertext: 400.
  const bool foreign = st == wechat::CryptoStatus::receiver_mismatch;
  reject(src.route, foreign ? RejectReason::bad_signature : RejectReason::malformed,
         foreign ? 401 : 400, src.config->name, fmt::format("{}{}", what, wechat::to_string(st)),
         respond);
}

bool CallbackApi::unambiguous_query(const Source& src, std::string_view repeated,
                                    const http::Responder& respond) const {
  if (repeated.empty()) return true;
  // Which copy was signed is anyone's guess: one reading of the request, or none.
  reject(src.route, RejectReason::malformed, 400, src.config->name,
         fmt::format("query parameter {} given twice", repeated), respond);
  return false;
}

bool CallbackApi::check_signing(const Source& src, std::string_view sig_name,
                                const std::optional<std::string>& sig,
                                const std::optional<std::string>& ts,
                                const std::optional<std::string>& nonce,
                                const http::Responder& respond) const {
  const SourceConfig& cfg = *src.config;
  // No signature proves as little as a wrong one: 401, as for every signed request.
  if (!sig) {
    reject(src.route, RejectReason::bad_signature, 401, cfg.name,
           fmt::format("missing {}", sig_name), respond);
    return false;
  }
  if (!ts || !nonce) {
    reject(src.route, RejectReason::missing_field, 400, cfg.name,
           !ts ? "missing timestamp" : "missing nonce", respond);
    return false;
  }
  if (ts->size() > kMaxQueryValue || nonce->size() > kMaxQueryValue) {
    reject(src.route, RejectReason::malformed, 400, cfg.name, "timestamp or nonce too long",
           respond);
    return false;
  }
  if (!fresh_timestamp(*ts, cfg.max_skew)) {
    reject(src.route, RejectReason::stale_timestamp, 401, cfg.name, "timestamp outside the window",
           respond);
    return false;
  }
  return true;
}

void CallbackApi::handle(http::Request&& req, std::string_view path,
                         http::Responder respond) const {
  if (path.starts_with(kWecomDecryptedPrefix)) {
    return receive_decrypted(std::move(req), path.substr(kWecomDecryptedPrefix.size()),
                             std::move(respond));
  }
  const bool wecom = path.starts_with(kWecomPrefix);
  const HttpRoute route = wecom ? HttpRoute::wecom : HttpRoute::wechat;
  const std::string_view key = path.substr(wecom ? kWecomPrefix.size() : kWechatPrefix.size());
  const auto& table = wecom ? wecom_ : wechat_;
  const auto name = path_name(key);
  if (!name) {
    return reject(route, RejectReason::malformed, 400, key, "broken %-escape in the path", respond);
  }
  auto it = table.find(*name);
  if (it == table.end()) {
    return reject(route, RejectReason::unknown_source, 404, key,
                  wecom ? "no wecom source with this corp id" : "no wechat source", respond);
  }
  if (req.method() == bhttp::verb::get) return verify_url(req, it->second, respond);
  if (req.method() == bhttp::verb::post)
    return receive(std::move(req), it->second, std::move(respond));
  reject(route, RejectReason::wrong_method, 405, key, "only GET and POST are allowed", respond);
}

void CallbackApi::verify_url(const http::Request& req, const Source& src,
                             const http::Responder& respond) const {
  const SourceConfig& cfg = *src.config;
  const bool wecom = cfg.kind == SourceKind::wecom;
  const std::string_view sig_name = wecom ? "msg_signature" : "signature";
  const std::string_view names[] = {sig_name, "timestamp", "nonce", "echostr"};
  std::optional<std::string> values[std::size(names)];
  if (!unambiguous_query(src, query_params(req.target(), names, values), respond)) return;
  const auto& [sig, ts, nonce, echo] = values;
  if (!check_signing(src, sig_name, sig, ts, nonce, respond)) return;
  if (!echo || echo->empty()) {
    return reject(src.route, RejectReason::missing_field, 400, cfg.name,
                  "URL verification needs an echostr", respond);
  }
  std::string plain;
  if (wecom) {
    if (!wechat::verify_msg_signature(*sig, cfg.token, *ts, *nonce, *echo)) {
      return reject(src.route, RejectReason::bad_signature, 401, cfg.name, "bad msg_signature",
                    respond);
    }
    const auto st = wechat::decrypt(*src.key, *echo, src.receiver_id, plain);
    if (st != wechat::CryptoStatus::ok) return reject_crypto(src, st, "echostr: ", respond);
    // Refused like an empty echostr: an empty answer would echo nothing.
    if (plain.empty()) {
      return reject(src.route, RejectReason::missing_field, 400, cfg.name,
                    "echostr decrypts to nothing", respond);
    }
  } else {
    if (!wechat::verify_signature(*sig, cfg.token, *ts, *nonce)) {
      return reject(src.route, RejectReason::bad_signature, 401, cfg.name, "bad signature",
                    respond);
    }
    plain = *echo;
  }
  log::info("callback URL verified", {{"source", cfg.name}});
  metrics_.count_request(src.route, 200);
  respond(make_response(200, std::move(plain), "text/plain; charset=utf-8"));
}

void CallbackApi::receive(http::Request&& req, const Source& src, http::Responder respond) const {
  const SourceConfig& cfg = *src.config;
  const auto received_at = Clock::now();
  Call call;
  call.source = &src;
  // One pass over the query for everything a callback carries.
  constexpr std::string_view kNames[] = {"encrypt_type", "signature", "msg_signature", "timestamp",
                                         "nonce"};
  std::optional<std::string> values[std::size(kNames)];
  if (!unambiguous_query(src, query_params(req.target(), kNames, values), respond)) return;
  auto& [encrypt_type, plain_sig, encrypted_sig, ts, nonce] = values;
  call.encrypted = cfg.kind == SourceKind::wecom || encrypt_type.value_or("") == "aes";
  // A plaintext callback's signature does not cover its body, and WeChat puts that same
  // signature in the URL of every safe-mode callback too: one logged URL would let anyone
  // post any body for max_skew. A source with a key takes safe (or compatible) mode only.
  if (!call.encrypted && src.key && !cfg.allow_plaintext) {
    return reject(src.route, RejectReason::bad_signature, 401, cfg.name,
                  "plaintext callback to a safe-mode source (allow_plaintext is off)", respond);
  }
  const auto& sig = call.encrypted ? encrypted_sig : plain_sig;
  if (!check_signing(src, call.encrypted ? "msg_signature" : "signature", sig, ts, nonce,
                     respond)) {
    return;
  }
  std::string detail;
  std::string xml;
  if (call.encrypted) {
    if (!src.key) {
      return reject(src.route, RejectReason::malformed, 400, cfg.name,
                    "safe mode message, but the source has no encoding_aes_key", respond);
    }
    WechatEnvelope env;
    if (auto st = parse_wechat_envelope(req.body(), env, detail); st != CodecStatus::ok) {
      return reject(
          src.route,
          st == CodecStatus::missing_field ? RejectReason::missing_field : RejectReason::malformed,
          400, cfg.name, "envelope: " + detail, respond);
    }
    // Verify before decrypting: the ciphertext alone is not authenticated.
    if (!wechat::verify_msg_signature(*sig, cfg.token, *ts, *nonce, env.encrypt)) {
      return reject(src.route, RejectReason::bad_signature, 401, cfg.name, "bad msg_signature",
                    respond);
    }
    const auto st = wechat::decrypt(*src.key, env.encrypt, src.receiver_id, xml);
    if (st != wechat::CryptoStatus::ok) return reject_crypto(src, st, "Encrypt: ", respond);
  } else {
    if (!wechat::verify_signature(*sig, cfg.token, *ts, *nonce)) {
      return reject(src.route, RejectReason::bad_signature, 401, cfg.name, "bad signature",
                    respond);
    }
    xml = std::move(req.body());
  }
  Event ev;
  WechatMessage msg;
  if (auto st = parse_wechat_message(std::move(xml), ev, msg, detail); st != CodecStatus::ok) {
    return reject(
        src.route,
        st == CodecStatus::missing_field ? RejectReason::missing_field : RejectReason::malformed,
        400, cfg.name, detail, respond);
  }
  ev.source = cfg.name;
  ev.received_at = received_at;
  ev.received_wall = std::chrono::system_clock::now();
  call.timestamp = std::move(*ts);
  call.nonce = std::move(*nonce);
  route(std::move(call), std::move(ev), msg, std::move(respond));
}

void CallbackApi::receive_decrypted(http::Request&& req, std::string_view corp_id,
                                    http::Responder respond) const {
  const auto received_at = Clock::now();
  constexpr HttpRoute kRoute = HttpRoute::wecom;
  const auto name = path_name(corp_id);
  if (!name) {
    return reject(kRoute, RejectReason::malformed, 400, corp_id, "broken %-escape in the path",
                  respond);
  }
  auto it = wecom_.find(*name);
  if (it == wecom_.end() || !it->second.decrypted) {
    return reject(kRoute, RejectReason::unknown_source, 404, corp_id,
                  "no wecom source with this corp id takes decrypted notifications "
                  "(decrypted_token)",
                  respond);
  }
  const Source& src = it->second;
  const SourceConfig& cfg = *src.config;
  if (req.method() != bhttp::verb::post) {
    return refuse_event(metrics_, kRoute, RejectReason::wrong_method, 405, cfg.name,
                        "only POST is allowed", "POST", respond);
  }
  if (!src.decrypted->matches(req[bhttp::field::authorization])) {
    return reject(kRoute, RejectReason::bad_signature, 401, cfg.name,
                  "missing or wrong bearer token (decrypted_token)", respond);
  }
  KfNotification n;
  std::string detail;
  if (auto st = parse_kf_notification(req.body(), n, detail); st != CodecStatus::ok) {
    return reject(
        kRoute,
        st == CodecStatus::missing_field ? RejectReason::missing_field : RejectReason::malformed,
        400, cfg.name, detail, respond);
  }
  const auto now = std::chrono::system_clock::now();
  const auto now_s =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  Event ev;
  WechatMessage msg;
  if (auto st = parse_wechat_message(
          build_kf_notification_xml(cfg.corp_id, now_s, n.token, n.open_kfid), ev, msg, detail);
      st != CodecStatus::ok) {
    return reject(kRoute, RejectReason::malformed, 400, cfg.name, detail, respond);
  }
  ev.source = cfg.name;
  ev.received_at = received_at;
  ev.received_wall = now;
  Call call;
  call.source = &src;
  call.ack_at_deadline = false;  // 200 only once stored; 503 if it cannot be
  route(std::move(call), std::move(ev), msg, std::move(respond));
}

void CallbackApi::ack_late(Exchange& ex) const {
  auto won = ex.claim();
  if (!won) return;
  // Storage is slow: the platform gets its answer in time, the store goes on.
  metrics_.late_acks().inc();
  metrics_.count_request(ex.source.route, 200);
  log::warn("callback acked at the deadline before it was stored",
            {{"source", ex.source.config->name}});
  won->respond(std::move(won->ready));
}

// The shard's answer to a callback the platform was already told `success` (at the deadline):
// the event is owed a place. A full shard or a disk below min_free takes it on a second asking
// (past max_pending, into the headroom); only a failed log loses it.
void CallbackApi::settle_late(const EventPtr& event, IngestStatus status, bool owed) const {
  if (!owed && (status == IngestStatus::full || status == IngestStatus::disk_full)) {
    return shards_.submit_owed(
        event, [this, event](IngestStatus again) { settle_late(event, again, true); });
  }
  if (status == IngestStatus::accepted) metrics_.events_accepted().inc();
  if (!stored(status)) {
    log::error("an event acked at the deadline was not stored",
               {{"source", event->source}, {"id", event->id}});
  }
}

http::Response CallbackApi::answer(const Call& call, const WechatMessage& msg,
                                   const std::string& reply) const {
  if (reply.empty()) return make_response(200, std::string(kSuccess), "text/plain; charset=utf-8");
  const auto now_s = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  std::string xml = build_wechat_text_reply(msg.from_user, msg.to_user, now_s, reply);
  if (call.encrypted) {
    const Source& src = *call.source;
    std::string encrypted;
    if (wechat::encrypt(*src.key, xml, src.receiver_id, encrypted) != wechat::CryptoStatus::ok) {
      // No randomness: answer without the reply rather than fail the callback.
      log::error("passive reply not encrypted", {{"source", src.config->name}});
      return make_response(200, std::string(kSuccess), "text/plain; charset=utf-8");
    }
    const std::string ts = std::to_string(now_s);
    xml = build_wechat_encrypted_reply(
        encrypted, wechat::msg_signature(src.config->token, ts, call.nonce, encrypted), ts,
        call.nonce);
  }
  return make_response(200, std::move(xml), "application/xml; charset=utf-8");
}

void CallbackApi::route(Call call, Event&& ev, const WechatMessage& msg,
                        http::Responder respond) const {
  const Source& src = *call.source;
  const SourceConfig& cfg = *src.config;
  // A dong answering one of our dingdong probes: consumed here, never queued.
  if (dings_ != nullptr && dings_->claim(ev) != DingRegistry::Claim::none) {
    metrics_.count_request(src.route, 200);
    return respond(answer(call, msg, {}));
  }
  RouteDecision d = decide_route(rules_, ev, cfg.answer_ding, cfg.route);
  if (msg.from_user.empty()) d.reply.clear();  // an event from no user: no one to reply to
  if (!d.reply.empty()) metrics_.passive_replies().inc();
  if (d.pool.empty()) {
    if (d.reply.empty()) {
      metrics_.events_unrouted().inc();
      log::debug("callback not routed", {{"source", cfg.name}, {"id", ev.id}, {"type", ev.type}});
    }
    metrics_.count_request(src.route, 200);
    return respond(answer(call, msg, d.reply));
  }
  ev.route = d.pool;
  auto ex = std::make_shared<Exchange>(src, std::move(respond), answer(call, msg, d.reply));
  if (call.ack_at_deadline) src.acks->watch(ex);
  auto event = std::make_shared<const Event>(std::move(ev));
  shards_.submit(event, [this, ex, event](IngestStatus status) {
    const HttpRoute route = ex->source.route;
    auto won = ex->claim();
    if (!won) return settle_late(event, status, false);
    if (!stored(status))
      return refuse_unstored(metrics_, route, status, event->source, won->respond);
    if (status == IngestStatus::accepted) metrics_.events_accepted().inc();
    metrics_.count_request(route, 200);
    won->respond(std::move(won->ready));
    metrics_.ingest_to_ack().observe(Clock::now() - event->received_at);
  });
}

}  // namespace botgate
