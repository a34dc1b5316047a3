#include "app/http_util.hpp"

#include <chrono>
#include <cstdint>
#include <random>
#include <stdexcept>

#include "core/json.hpp"
#include "core/log.hpp"
#include "core/log_throttle.hpp"

namespace botgate {
namespace {

namespace bhttp = boost::beast::http;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

http::Response make_response(unsigned status, std::string body, std::string_view type) {
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

std::optional<std::string> percent_decode(std::string_view in, bool query) {
  // Most values (signatures, timestamps, nonces) hold nothing to decode: copy them whole.
  std::size_t first = 0;
  while (first < in.size() && in[first] != '%' && !(query && in[first] == '+')) ++first;
  if (first == in.size()) return std::string(in);
  std::string out;
  out.reserve(in.size());
  out.append(in.substr(0, first));
  for (std::size_t i = first; i < in.size(); ++i) {
    if (in[i] == '%') {
      if (i + 2 >= in.size()) return std::nullopt;
      const int hi = hex_value(in[i + 1]);
      const int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (query && in[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

std::optional<std::string> path_name(std::string_view segment) {
  if (segment.find('/') != std::string_view::npos) return std::string();
  return percent_decode(segment, false);
}

std::string_view query_params(std::string_view target, std::span<const std::string_view> names,
                              std::span<std::optional<std::string>> out) {
  if (names.size() > 64 || out.size() != names.size()) {
    throw std::invalid_argument("query_params: at most 64 names, one output each");
  }
  for (auto& v : out) v.reset();
  const auto q = target.find('?');
  if (q == std::string_view::npos) return {};
  std::string_view rest = target.substr(q + 1);
  std::uint64_t seen = 0;  // bit i: names[i] met
  std::string_view repeated;
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
    const auto eq = pair.find('=');
    const std::string_view key = pair.substr(0, eq);
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (key != names[i]) continue;
      if ((seen >> i & 1) != 0) {
        if (repeated.empty()) repeated = names[i];
        break;
      }
      seen |= std::uint64_t{1} << i;
      out[i] =
          eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1), true);
      break;
    }
  }
  return repeated;
}

std::optional<std::string> query_param(std::string_view target, std::string_view name) {
  std::optional<std::string> value;
  query_params(target, {&name, 1}, {&value, 1});
  return value;
}

namespace {

// The refusals logged at most once a second, one throttle per reason; null for the others.
log::Throttle* refusal_throttle(RejectReason why) {
  static log::Throttle full, failed, disk;
  if (why == RejectReason::shards_full) return &full;
  if (why == RejectReason::storage_error) return &failed;
  if (why == RejectReason::disk_full) return &disk;
  return nullptr;
}

log::Throttle& connection_throttle() {
  static log::Throttle throttle;
  return throttle;
}

}  // namespace

void log_refusals_left_out() {
  for (const auto why :
       {RejectReason::shards_full, RejectReason::storage_error, RejectReason::disk_full}) {
    if (const auto n = refusal_throttle(why)->take_left_out(); n > 0) {
      log::warn("event rejected",
                {{"reason", to_string(why)}, {"left_out", n}, {"detail", "not logged one by one"}});
    }
  }
  if (const auto n = connection_throttle().take_left_out(); n > 0) {
    log::warn(
        "connection refused",
        {{"reason", "max_connections"}, {"left_out", n}, {"detail", "not logged one by one"}});
  }
}

void refuse_connection(Metrics& metrics, const std::string& peer) {
  // Met by every client while the cap lasts: one line a second.
  metrics.connections_refused().inc();
  log::warn_throttled(connection_throttle(), "connection refused",
                      {{"reason", "max_connections"}, {"peer", peer}});
}

void refuse_event(Metrics& metrics, HttpRoute route, RejectReason why, unsigned status,
                  std::string_view source, std::string_view detail, std::string_view allow,
                  const http::Responder& respond) {
  metrics.count_rejected(why);
  metrics.count_request(route, status);
  const std::initializer_list<log::Field> fields = {
      {"reason", to_string(why)}, {"status", status}, {"source", source}, {"detail", detail}};
  if (log::Throttle* throttle = refusal_throttle(why)) {
    // Not bad input but the gateway's own state, which every request meets while it lasts:
    // one line a second per reason (the metric counts each refusal).
    log::warn_throttled(*throttle, "event rejected", fields);
  } else {
    log::warn("event rejected", fields);
  }
  auto res = make_response(status, error_body(to_string(why)));
  if (status == 405) res.set(bhttp::field::allow, allow);
  if (status == 503) res.set(bhttp::field::retry_after, "1");
  respond(std::move(res));
}

void refuse_unstored(Metrics& metrics, HttpRoute route, IngestStatus status,
                     std::string_view source, const http::Responder& respond) {
  if (status == IngestStatus::full) {
    return refuse_event(metrics, route, RejectReason::shards_full, 503, source, "shard queue full",
                        "", respond);
  }
  if (status == IngestStatus::disk_full) {
    return refuse_event(metrics, route, RejectReason::disk_full, 503, source,
                        "the queue's disk is below min_free", "", respond);
  }
  refuse_event(metrics, route, RejectReason::storage_error, 503, source,
               "the shard log cannot store events", "", respond);
}

namespace {

// 32 random bytes, for a key that lives as long as the process.
std::string random_key() {
  std::random_device rd;
  std::string key(32, '\0');
  for (auto& c : key) c = static_cast<char>(rd());
  return key;
}

std::string_view bearer_token(std::string_view auth) {
  constexpr std::string_view kBearer = "bearer";
  if (auth.size() <= kBearer.size() || !iequals_prefix(auth, kBearer) ||
      auth[kBearer.size()] != ' ') {
    return {};
  }
  auth.remove_prefix(kBearer.size());
  while (!auth.empty() && auth.front() == ' ') auth.remove_prefix(1);
  return auth;
}

}  // namespace

BearerToken::BearerToken(std::string_view token) : mac_(random_key()) {
  if (!token.empty()) expected_ = mac_.hex({token});
}

bool BearerToken::matches(std::string_view authorization) const {
  const std::string_view token = bearer_token(authorization);
  if (!expected_ || token.empty()) return false;
  return constant_time_equal({mac_.hex({token}).data(), HmacSha256::kHexLength},
                             {expected_->data(), HmacSha256::kHexLength});
}

}  // namespace botgate
