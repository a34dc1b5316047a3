#include "app/http_api.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <random>
#include <set>

#include "app/http_util.hpp"
#include "core/json.hpp"
#include "core/log.hpp"
#include "transport/generic_codec.hpp"
#include "transport/signature.hpp"

namespace botgate {
namespace {

namespace bhttp = boost::beast::http;

constexpr std::string_view kEventsPrefix = "/v1/events/";
constexpr std::string_view kDeadLetters = "/v1/dead-letters";
constexpr std::string_view kTargets = "/v1/targets";
constexpr std::string_view kMessages = "/v1/messages";
constexpr std::string_view kReplaySuffix = "/replay";
// Most rounds of list-and-replay for one call. A call loses a round only when a concurrent
// replay took the copy it picked, so it needs at most as many rounds as copies it first
// listed; this caps that for an id dead-lettered a great many times.
constexpr std::size_t kReplayMaxRounds = 64;
constexpr std::uint64_t kDefaultListLimit = 1000;
constexpr std::uint64_t kMaxListLimit = 100000;

// GET, or HEAD (answered as GET, without the body: the server drops it).
bool is_read(const http::Request& req) {
  return req.method() == bhttp::verb::get || req.method() == bhttp::verb::head;
}

HttpRoute route_of(std::string_view path) {
  if (path == "/healthz") return HttpRoute::healthz;
  if (path == "/readyz") return HttpRoute::readyz;
  if (path == "/metrics") return HttpRoute::metrics;
  if (path.starts_with(kEventsPrefix)) return HttpRoute::events;
  if (path.starts_with(kWechatPrefix)) return HttpRoute::wechat;
  if (path.starts_with(kWecomPrefix)) return HttpRoute::wecom;
  if (path == kMessages) return HttpRoute::messages;
  if (path == kDeadLetters || path.starts_with(std::string(kDeadLetters) + "/") || path == kTargets)
    return HttpRoute::admin;
  return HttpRoute::unknown;
}

// The value of header `name`, empty when the request has none; nullopt when it has several.
std::optional<std::string_view> sole_field(const http::Request& req, std::string_view name) {
  auto [first, last] = req.equal_range(name);
  if (first == last) return std::string_view{};
  const std::string_view value{first->value().data(), first->value().size()};
  if (++first != last) return std::nullopt;
  return value;
}

// The routes whose requests are inbound events: botgate_events_rejected_total counts their
// refusals. (POST /v1/messages is counted only when its shard cannot store it, like an event's
// 503: its bad input is the admin's, not a platform's.)
bool takes_events(HttpRoute route) {
  return route == HttpRoute::events || route == HttpRoute::wechat || route == HttpRoute::wecom;
}

void append_dead_letter(std::string& out, const DeadLetterInfo& d) {
  out += "{\"id\":";
  append_json_string(out, d.id);
  out += ",\"source\":";
  append_json_string(out, d.source);
  out += ",\"conversation\":";
  append_json_string(out, d.conversation);
  out += ",\"attempts\":" + std::to_string(d.attempts);
  out += ",\"error\":";
  append_json_string(out, d.error);
  out += ",\"received_at_ms\":" + std::to_string(d.received_ms);
  out += ",\"dead_at_ms\":" + std::to_string(d.dead_at_ms);
  out += ",\"shard\":" + std::to_string(d.shard) + "}";
}

void append_target(std::string& out, const TargetStatus& t) {
  out += "{\"name\":";
  append_json_string(out, t.name);
  out += t.healthy ? ",\"healthy\":true" : ",\"healthy\":false";
  out += t.ejected ? ",\"ejected\":true" : ",\"ejected\":false";
  out += ",\"ejected_for_ms\":" + std::to_string(t.ejected_for_ms);
  out += ",\"ejections\":" + std::to_string(t.ejections);
  out += ",\"in_flight\":" + std::to_string(t.in_flight);
  out += ",\"max_in_flight\":" + std::to_string(t.max_in_flight);
  out += ",\"successes\":" + std::to_string(t.successes);
  out += ",\"failures\":" + std::to_string(t.failures);
  out += ",\"last_error\":";
  append_json_string(out, t.last_error);
  out += ",\"probe\":{\"kind\":";
  append_json_string(out, t.probe_kind);
  out += ",\"last_at_ms\":" + std::to_string(t.probe_at_ms);
  out += t.probe_ok ? ",\"last_ok\":true" : ",\"last_ok\":false";
  out += ",\"last_error\":";
  append_json_string(out, t.probe_error);
  out += "},\"credentials_error\":";
  append_json_string(out, t.credentials_error);
  out += "}";
}

void append_pool(std::string& out, const PoolStatus& p) {
  out += "{\"name\":";
  append_json_string(out, p.name);
  out += ",\"policy\":";
  append_json_string(out, p.policy);
  out += ",\"waiting\":" + std::to_string(p.waiting) + ",\"targets\":[";
  for (std::size_t i = 0; i < p.targets.size(); ++i) {
    if (i > 0) out += ',';
    append_target(out, p.targets[i]);
  }
  out += "]}";
}

}  // namespace

HttpApi::HttpApi(const Config& config, Metrics& metrics, const ShardSet& shards,
                 const RouterSet& routers, DingRegistry* dings, const std::atomic<bool>& ready,
                 boost::asio::io_context& ioc)
    : callbacks_(config, metrics, shards, dings, ioc),
      admin_token_(config.server.admin_token),
      metrics_(metrics),
      shards_(shards),
      routers_(routers),
      dings_(dings),
      ready_(ready) {
  for (const auto& s : config.sources) {
    if (s.kind == SourceKind::generic) {
      sources_.emplace(s.name, GenericSource{&s, HmacSha256(s.secret)});
    }
  }
  for (const auto& p : config.pools) {
    bool accounts = !p.targets.empty();
    for (const auto& name : p.targets) {
      for (const auto& t : config.targets) {
        if (t.name == name && !is_account(t.kind)) accounts = false;
      }
    }
    pools_.emplace(p.name, accounts);
  }
}

void HttpApi::handle(http::Request&& req, http::Responder respond) const {
  std::string_view path = req.target();
  if (auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  const HttpRoute route = route_of(path);

  if (route == HttpRoute::events) {
    const std::string_view raw = path.substr(kEventsPrefix.size());
    if (req.method() != bhttp::verb::post) {
      return reject(RejectReason::wrong_method, 405, raw, "only POST is allowed", respond);
    }
    const auto source = path_name(raw);
    if (!source) {
      return reject(RejectReason::malformed, 400, raw, "broken %-escape in the source", respond);
    }
    return ingest(std::move(req), *source, std::move(respond));
  }
  if (route == HttpRoute::wechat || route == HttpRoute::wecom) {
    return callbacks_.handle(std::move(req), path, std::move(respond));
  }
  if (route == HttpRoute::admin || route == HttpRoute::messages) {
    return admin(std::move(req), path, std::move(respond));
  }
  if (route == HttpRoute::unknown) {
    log::info("unknown route", {{"path", path}});
    return send(route, 404, error_body("not_found"), respond);
  }
  if (!is_read(req)) return method_not_allowed(route, "GET, HEAD", path, respond);
  switch (route) {
    case HttpRoute::healthz:
      return send(route, 200, "{\"status\":\"ok\"}", respond);
    case HttpRoute::readyz:
      // Before every shard's log has probed the disk (and after the drain began): not ready.
      // Read first: once set, the logs' disk states below are published.
      if (!ready_.load(std::memory_order_acquire))
        return send(route, 503, "{\"status\":\"not_ready\"}", respond);
      // A shard whose log failed refuses every event until a restart: not ready.
      if (metrics_.log_errors().value() > 0)
        return send(route, 503, "{\"status\":\"storage_failed\"}", respond);
      // A shard below [queue] min_free refuses new events until space comes back.
      if (metrics_.shards_disk_full().value() > 0)
        return send(route, 503, "{\"status\":\"disk_full\"}", respond);
      return send(route, 200, "{\"status\":\"ready\"}", respond);
    case HttpRoute::metrics:
      return send(route, 200, metrics_.render(), respond,
                  "text/plain; version=0.0.4; charset=utf-8");
    default:
      return send(route, 404, error_body("not_found"), respond);
  }
}

void HttpApi::reject(RejectReason why, unsigned status, std::string_view source,
                     std::string_view detail, const http::Responder& respond) const {
  refuse_event(metrics_, HttpRoute::events, why, status, source, detail, "POST", respond);
}

void HttpApi::ingest(http::Request&& req, std::string_view source, http::Responder respond) const {
  const auto received_at = Clock::now();
  auto it = sources_.find(source);
  if (it == sources_.end()) {
    return reject(RejectReason::unknown_source, 404, source, "no such source", respond);
  }
  const SourceConfig& cfg = *it->second.config;
  // A second copy of a signing header makes the request ambiguous (which one was signed, and
  // which would a proxy on the way have read?): refused like the callbacks' repeated fields.
  const auto timestamp = sole_field(req, "X-Botgate-Timestamp");
  const auto signature = sole_field(req, "X-Botgate-Signature");
  if (!timestamp || !signature) {
    return reject(RejectReason::malformed, 400, source,
                  "X-Botgate-Timestamp or X-Botgate-Signature given more than once", respond);
  }
  const auto verdict = verify_generic(it->second.mac, *timestamp, *signature, req.body(),
                                      std::chrono::system_clock::now(), cfg.max_skew);
  if (verdict == CodecStatus::stale_timestamp) {
    return reject(RejectReason::stale_timestamp, 401, source, "timestamp outside the window",
                  respond);
  }
  if (verdict != CodecStatus::ok) {
    return reject(RejectReason::bad_signature, 401, source, "bad or missing signature", respond);
  }
  auto ev = std::make_shared<Event>();
  std::string detail;
  const auto parsed = parse_generic_event(std::move(req.body()), *ev, detail);
  if (parsed == CodecStatus::missing_field) {
    return reject(RejectReason::missing_field, 400, source, detail, respond);
  }
  if (parsed != CodecStatus::ok) {
    return reject(RejectReason::malformed, 400, source, detail, respond);
  }
  ev->source = cfg.name;
  ev->received_at = received_at;
  ev->received_wall = std::chrono::system_clock::now();
  if (claim_probe_answer(*ev, respond)) return;
  std::string id = ev->id;
  shards_.submit(std::move(ev), [this, respond = std::move(respond), received_at, src = &cfg,
                                 id = std::move(id)](IngestStatus status) {
    if (!stored(status))
      return refuse_unstored(metrics_, HttpRoute::events, status, src->name, respond);
    const bool duplicate = status == IngestStatus::duplicate;
    if (!duplicate) metrics_.events_accepted().inc();
    metrics_.count_request(HttpRoute::events, 200);
    std::string body =
        duplicate ? "{\"status\":\"duplicate\",\"id\":" : "{\"status\":\"accepted\",\"id\":";
    append_json_string(body, id);
    body += "}";
    respond(make_response(200, std::move(body)));
    metrics_.ingest_to_ack().observe(Clock::now() - received_at);
  });
}

void HttpApi::send(HttpRoute route, unsigned status, std::string body,
                   const http::Responder& respond, std::string_view type) const {
  metrics_.count_request(route, status);
  auto res = make_response(status, std::move(body), type);
  if (status == 503) res.set(bhttp::field::retry_after, "1");
  respond(std::move(res));
}

void HttpApi::method_not_allowed(HttpRoute route, std::string_view allow, std::string_view path,
                                 const http::Responder& respond) const {
  log::info("method not allowed", {{"path", path}, {"allow", allow}});
  metrics_.count_request(route, 405);
  auto res = make_response(405, error_body("method_not_allowed"));
  res.set(bhttp::field::allow, allow);
  respond(std::move(res));
}

void HttpApi::admin(http::Request&& req, std::string_view path, http::Responder respond) const {
  if (!admin_token_.matches(req[bhttp::field::authorization])) {
    log::warn("admin request refused", {{"path", path}, {"reason", "missing or wrong token"}});
    auto res = make_response(401, error_body("unauthorized"));
    res.set(bhttp::field::www_authenticate, "Bearer");
    metrics_.count_request(route_of(path), 401);
    return respond(std::move(res));
  }
  if (path == kMessages) {
    if (req.method() != bhttp::verb::post) {
      return method_not_allowed(HttpRoute::messages, "POST", path, respond);
    }
    return send_message(std::move(req), std::move(respond));
  }
  if (path == kTargets) {
    if (!is_read(req)) return method_not_allowed(HttpRoute::admin, "GET, HEAD", path, respond);
    return list_targets(std::move(respond));
  }
  if (path == kDeadLetters) {
    if (!is_read(req)) return method_not_allowed(HttpRoute::admin, "GET, HEAD", path, respond);
    return list_dead_letters(req, std::move(respond));
  }
  std::string_view rest = path.substr(kDeadLetters.size() + 1);
  if (!rest.ends_with(kReplaySuffix) || rest.size() == kReplaySuffix.size()) {
    log::info("unknown route", {{"path", path}});
    return send(HttpRoute::admin, 404, error_body("not_found"), respond);
  }
  if (req.method() != bhttp::verb::post) {
    return method_not_allowed(HttpRoute::admin, "POST", path, respond);
  }
  auto id = path_name(rest.substr(0, rest.size() - kReplaySuffix.size()));
  if (!id) {
    log::info("bad dead-letter id", {{"path", path}});
    return send(HttpRoute::admin, 400, error_body("bad_id"), respond);
  }
  replay_dead_letter(req, std::move(*id), std::move(respond));
}

void HttpApi::list_dead_letters(const http::Request& req, http::Responder respond) const {
  std::uint64_t limit = kDefaultListLimit;
  if (auto text = query_param(req.target(), "limit")) {
    auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), limit);
    if (ec != std::errc{} || ptr != text->data() + text->size() || limit == 0 ||
        limit > kMaxListLimit) {
      log::info("bad dead-letter list limit", {{"limit", *text}});
      return send(HttpRoute::admin, 400, error_body("bad_limit"), respond);
    }
  }
  shards_.list_dead_letters(
      limit, [this, respond = std::move(respond)](DeadLetterList list, std::string error) {
        if (!error.empty()) {
          log::error("dead-letter list failed", {{"error", error}});
          return send(HttpRoute::admin, 503, error_body("unavailable"), respond);
        }
        std::string body = "{\"count\":" + std::to_string(list.size()) + ",\"dead_letters\":[";
        for (std::size_t i = 0; i < list.size(); ++i) {
          if (i > 0) body += ',';
          append_dead_letter(body, list[i]);
        }
        body += "]}";
        send(HttpRoute::admin, 200, std::move(body), respond);
      });
}

void HttpApi::send_message(http::Request&& req, http::Responder respond) const {
  OutboundMessage m;
  std::string detail;
  auto refuse = [&](unsigned status, std::string_view code) {
    log::warn("message refused", {{"status", status}, {"detail", detail}});
    send(HttpRoute::messages, status, error_body(code), respond);
  };
  if (auto st = parse_outbound_message(req.body(), m, detail); st != CodecStatus::ok) {
    return refuse(400, st == CodecStatus::missing_field ? "missing_field" : "malformed");
  }
  auto pool = pools_.find(m.pool);
  if (pool == pools_.end()) {
    detail = "no pool named " + m.pool;
    return refuse(404, "unknown_pool");
  }
  if (!pool->second) {
    detail = "pool " + m.pool + " holds http targets, not accounts";
    return refuse(400, "not_an_account_pool");
  }
  if (m.id.empty()) {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    m.id = fmt::format("msg-{:016x}{:016x}", rng(), rng());
  }
  auto ev = std::make_shared<Event>();
  ev->source = std::string(kApiSource);
  ev->id = std::move(m.id);
  ev->conversation = std::move(m.to);
  ev->sender = std::string(kApiSource);
  ev->type = outbound_type("message", m.content);
  ev->text = std::move(m.content.body);
  ev->raw = std::move(req.body());
  ev->route = std::move(m.pool);
  ev->received_at = Clock::now();
  ev->received_wall = std::chrono::system_clock::now();
  std::string id = ev->id;
  shards_.submit(std::move(ev), [this, respond = std::move(respond), id](IngestStatus status) {
    if (!stored(status)) {
      // The same 503 as an inbound event's: counted by reason, logged at most once a second.
      return refuse_unstored(metrics_, HttpRoute::messages, status, kApiSource, respond);
    }
    std::string body = status == IngestStatus::duplicate ? R"({"status":"duplicate","id":)"
                                                         : R"({"status":"accepted","id":)";
    append_json_string(body, id);
    body += "}";
    send(HttpRoute::messages, 200, std::move(body), respond);
  });
}

void HttpApi::list_targets(http::Responder respond) const {
  routers_.status([this, respond = std::move(respond)](PoolStatuses pools, std::string error) {
    if (!error.empty()) {
      log::error("target status failed", {{"error", error}});
      return send(HttpRoute::admin, 503, error_body("unavailable"), respond);
    }
    std::sort(pools.begin(), pools.end(),
              [](const PoolStatus& a, const PoolStatus& b) { return a.name < b.name; });
    std::string body = "{\"pools\":[";
    for (std::size_t i = 0; i < pools.size(); ++i) {
      if (i > 0) body += ',';
      append_pool(body, pools[i]);
    }
    body += "]}";
    send(HttpRoute::admin, 200, std::move(body), respond);
  });
}

bool HttpApi::claim_probe_answer(const Event& ev, const http::Responder& respond) const {
  if (dings_ == nullptr) return false;
  const auto claim = dings_->claim(ev);
  if (claim == DingRegistry::Claim::none) return false;
  const bool answered = claim == DingRegistry::Claim::answered;
  if (!answered) log::info("stale dong ignored", {{"source", ev.source}, {"id", ev.id}});
  std::string body = answered ? R"({"status":"probe","id":)" : R"({"status":"stale_probe","id":)";
  append_json_string(body, ev.id);
  body += "}";
  send(HttpRoute::events, 200, std::move(body), respond);
  return true;
}

void HttpApi::replay_dead_letter(const http::Request& req, std::string id,
                                 http::Responder respond) const {
  // An empty ?source= names no source: like none, any source's copy.
  auto source = query_param(req.target(), "source").value_or("");
  Finish finish = [this, respond](unsigned status, std::string body) {
    send(HttpRoute::admin, status, std::move(body), respond);
  };
  replay_oldest(std::move(id), std::move(source), std::move(finish), 0);
}

void HttpApi::replay_oldest(std::string id, std::string source, Finish finish,
                            std::size_t rounds_left) const {
  // Find which shard holds it (and whether the id is ambiguous across sources).
  shards_.list_dead_letters(
      UINT64_MAX, [this, id, source, finish, rounds_left](DeadLetterList list, std::string error) {
        if (!error.empty()) return finish(503, error_body("unavailable"));
        std::vector<const DeadLetterInfo*> matches;
        for (const auto& d : list) {
          if (d.id == id && (source.empty() || d.source == source)) matches.push_back(&d);
        }
        if (matches.empty() && metrics_.log_errors().value() > 0) {
          // A failed shard records no more dead letters: this one may be among them.
          return finish(503, error_body("storage_failed"));
        }
        if (matches.empty()) {
          log::info("dead letter not found", {{"id", id}, {"source", source}});
          return finish(404, error_body("not_found"));
        }
        std::set<std::string_view> sources;
        for (const auto* m : matches) sources.insert(m->source);
        if (sources.size() > 1) {
          std::string body = R"({"error":"ambiguous","sources":[)";
          for (auto s = sources.begin(); s != sources.end(); ++s) {
            if (s != sources.begin()) body += ',';
            append_json_string(body, *s);
          }
          body += "]}";
          return finish(409, std::move(body));
        }
        // One source, several dead letters of the id (in several conversations' shards, or
        // dead again after dedup_window): the oldest goes first, a call each.
        const DeadLetterInfo& d = **std::min_element(
            matches.begin(), matches.end(), [](const DeadLetterInfo* a, const DeadLetterInfo* b) {
              return a->dead_at_ms < b->dead_at_ms;
            });
        // The first round sets the budget: one round per copy listed now.
        const std::size_t rounds =
            rounds_left > 0 ? rounds_left : std::min(matches.size(), kReplayMaxRounds);
        shards_.replay_dead_letter(
            d.shard, d.source, id, [this, id, source, finish, rounds](std::string result) {
              if (result.empty()) {
                std::string body = R"({"status":"replayed","id":)";
                append_json_string(body, id);
                body += "}";
                return finish(200, std::move(body));
              }
              if (result == "not_found") {
                // A replay at the same moment took this copy; another shard may hold one more.
                if (rounds > 1) return replay_oldest(id, source, finish, rounds - 1);
                return finish(404, error_body("not_found"));
              }
              if (result == "disk_full") return finish(503, error_body("disk_full"));
              if (result == "queued") return finish(409, error_body("queued"));
              log::error("dead-letter replay failed", {{"id", id}, {"error", result}});
              finish(503, error_body("unavailable"));
            });
      });
}

void HttpApi::on_refusal(http::Refusal why, const std::string& peer,
                         std::string_view target) const {
  // Like every other answer on its path: a 413 on /wechat/oa counts under route "wechat".
  const HttpRoute route = route_of(path_of(target));
  // `reason`: the event refusal it counts as, on a route that takes events (a generic event,
  // a WeChat or WeCom callback); none for a request that was only too slow. Bytes that are not
  // HTTP, or a refused /metrics or admin request, are no refused event.
  auto refused = [&](std::optional<RejectReason> reason, unsigned status, std::string_view what) {
    if (reason && takes_events(route)) metrics_.count_rejected(*reason);
    metrics_.count_request(route, status);
    log::warn("request refused", {{"reason", what}, {"status", status}, {"peer", peer}});
  };
  switch (why) {
    case http::Refusal::body_too_large:
      return refused(RejectReason::too_large, 413, "body_too_large");
    case http::Refusal::header_too_large:
      return refused(RejectReason::too_large, 413, "header_too_large");
    case http::Refusal::malformed:
      return refused(RejectReason::malformed, 400, "malformed_http");
    case http::Refusal::unsupported_coding:
      return refused(RejectReason::malformed, 501, "unsupported_transfer_coding");
    case http::Refusal::too_many_connections:
      return refuse_connection(metrics_, peer);
    case http::Refusal::read_timeout:
      return refused(std::nullopt, 408, "read_timeout");
  }
}

}  // namespace botgate
