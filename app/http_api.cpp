#include "app/http_api.hpp"

#include "core/json.hpp"
#include "core/log.hpp"
#include "transport/generic_codec.hpp"

namespace botgate {
namespace {

namespace bhttp = boost::beast::http;

constexpr std::string_view kEventsPrefix = "/v1/events/";

http::Response make_response(unsigned status, std::string body,
                             std::string_view type = "application/json") {
  http::Response res{static_cast<bhttp::status>(status), 11};
  res.set(bhttp::field::content_type, type);
  res.set(bhttp::field::server, "botgate");
  res.body() = std::move(body);
  return res;
}

std::string error_body(std::string_view code) {
  std::string body = "{\"error\":";
  append_json_string(body, code);
  body += "}";
  return body;
}

HttpRoute route_of(std::string_view path) {
  if (path == "/healthz") return HttpRoute::healthz;
  if (path == "/readyz") return HttpRoute::readyz;
  if (path == "/metrics") return HttpRoute::metrics;
  if (path.starts_with(kEventsPrefix)) return HttpRoute::events;
  return HttpRoute::unknown;
}

}  // namespace

HttpApi::HttpApi(const Config& config, Metrics& metrics, const ShardSet& shards,
                 const std::atomic<bool>& ready)
    : metrics_(metrics), shards_(shards), ready_(ready) {
  for (const auto& s : config.sources) sources_.emplace(s.name, &s);
}

void HttpApi::handle(http::Request&& req, http::Responder respond) const {
  std::string_view path = req.target();
  if (auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  const HttpRoute route = route_of(path);

  auto answer = [&](unsigned status, std::string body, std::string_view type = "application/json") {
    metrics_.count_request(route, status);
    respond(make_response(status, std::move(body), type));
  };

  if (route == HttpRoute::events) {
    const std::string_view source = path.substr(kEventsPrefix.size());
    if (req.method() != bhttp::verb::post) {
      return reject(RejectReason::wrong_method, 405, source, "only POST is allowed", respond);
    }
    return ingest(std::move(req), source, std::move(respond));
  }
  if (route == HttpRoute::unknown) {
    log::info("unknown route", {{"path", path}});
    return answer(404, error_body("not_found"));
  }
  if (req.method() != bhttp::verb::get && req.method() != bhttp::verb::head) {
    metrics_.count_request(route, 405);
    auto res = make_response(405, error_body("method_not_allowed"));
    res.set(bhttp::field::allow, "GET, HEAD");
    return respond(std::move(res));
  }
  switch (route) {
    case HttpRoute::healthz:
      return answer(200, "{\"status\":\"ok\"}");
    case HttpRoute::readyz:
      if (ready_.load(std::memory_order_relaxed)) return answer(200, "{\"status\":\"ready\"}");
      return answer(503, "{\"status\":\"not_ready\"}");
    case HttpRoute::metrics:
      return answer(200, metrics_.render(), "text/plain; version=0.0.4; charset=utf-8");
    default:
      return answer(404, error_body("not_found"));
  }
}

void HttpApi::reject(RejectReason why, unsigned status, std::string_view source,
                     std::string_view detail, const http::Responder& respond) const {
  metrics_.count_rejected(why);
  metrics_.count_request(HttpRoute::events, status);
  log::warn(
      "event rejected",
      {{"reason", to_string(why)}, {"status", status}, {"source", source}, {"detail", detail}});
  auto res = make_response(status, error_body(to_string(why)));
  if (status == 405) res.set(bhttp::field::allow, "POST");
  if (status == 503) res.set(bhttp::field::retry_after, "1");
  respond(std::move(res));
}

void HttpApi::ingest(http::Request&& req, std::string_view source, http::Responder respond) const {
  const auto received_at = Clock::now();
  auto it = sources_.find(std::string(source));
  if (it == sources_.end()) {
    return reject(RejectReason::unknown_source, 404, source, "no such source", respond);
  }
  const SourceConfig& cfg = *it->second;
  const auto verdict =
      verify_generic(cfg.secret, req["X-Botgate-Timestamp"], req["X-Botgate-Signature"], req.body(),
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
  std::string id = ev->id;
  shards_.submit(std::move(ev), [this, respond = std::move(respond), received_at, src = &cfg,
                                 id = std::move(id)](IngestStatus status) {
    if (status == IngestStatus::full) {
      return reject(RejectReason::shards_full, 503, src->name, "shard queue full", respond);
    }
    metrics_.events_accepted().inc();
    metrics_.count_request(HttpRoute::events, 200);
    std::string body = "{\"status\":\"accepted\",\"id\":";
    append_json_string(body, id);
    body += "}";
    respond(make_response(200, std::move(body)));
    metrics_.ingest_to_ack().observe(Clock::now() - received_at);
  });
}

void HttpApi::on_refusal(http::Refusal why, const std::string& peer) const {
  switch (why) {
    case http::Refusal::body_too_large:
      metrics_.count_rejected(RejectReason::too_large);
      metrics_.count_request(HttpRoute::unknown, 413);
      log::warn("request refused", {{"reason", "body_too_large"}, {"status", 413}, {"peer", peer}});
      break;
    case http::Refusal::header_too_large:
      metrics_.count_rejected(RejectReason::too_large);
      metrics_.count_request(HttpRoute::unknown, 431);
      log::warn("request refused",
                {{"reason", "header_too_large"}, {"status", 431}, {"peer", peer}});
      break;
    case http::Refusal::malformed:
      metrics_.count_rejected(RejectReason::malformed);
      metrics_.count_request(HttpRoute::unknown, 400);
      log::warn("request refused", {{"reason", "malformed_http"}, {"status", 400}, {"peer", peer}});
      break;
  }
}

}  // namespace botgate
