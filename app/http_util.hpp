// Small helpers the HTTP endpoint handlers share: responses, error bodies, query strings.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "actors/messages.hpp"
#include "core/metrics.hpp"
#include "transport/http_server.hpp"
#include "transport/signature.hpp"

namespace botgate {

http::Response make_response(unsigned status, std::string body,
                             std::string_view type = "application/json");

// {"error":"<code>"}
std::string error_body(std::string_view code);

// Decodes %XX escapes (and '+' as space in a query); nullopt when an escape is broken.
std::optional<std::string> percent_decode(std::string_view in, bool query);

// A name that a request path carries in one segment (a source, a corp id, a dead letter's id).
// RFC 3986 3.3: the path is split at '/' first, then each segment is percent-decoded, so "%65"
// is an 'e' and "%2F" a '/' in the name. nullopt when an escape is broken (a 400). A `segment`
// that is more than one segment (holds a raw '/') names nothing: "", which no table holds, so
// the lookup answers it like any unknown name.
std::optional<std::string> path_name(std::string_view segment);

// The decoded values of the query parameters `names` (at most 64) in a request target, in one
// pass: out[i] for names[i], nullopt when absent or its escape is broken. The first occurrence
// of a name counts; returns the first of `names` that occurs more than once (a request that
// could be read two ways), or "".
std::string_view query_params(std::string_view target, std::span<const std::string_view> names,
                              std::span<std::optional<std::string>> out);

// The decoded value of query parameter `name` in a request target, if present.
std::optional<std::string> query_param(std::string_view target, std::string_view name);

// Refuses an inbound event (bad input, or no room): counts it by reason and by route and status,
// logs it, and answers {"error":"<reason>"}, with Allow on a 405 and Retry-After on a 503. Bad
// input gets one line each; a full queue's and a failed log's refusals one line a second per
// reason, with left_out=N for those not logged since the last line.
void refuse_event(Metrics& metrics, HttpRoute route, RejectReason why, unsigned status,
                  std::string_view source, std::string_view detail, std::string_view allow,
                  const http::Responder& respond);

// Refuses, with refuse_event's 503, an event the shards did not store (`status` is not
// stored(status)): their queue was full, their log cannot store, or the disk is below min_free.
void refuse_unstored(Metrics& metrics, HttpRoute route, IngestStatus status,
                     std::string_view source, const http::Responder& respond);

// Counts and logs a connection closed at [server] max_connections: one line a second, with
// left_out=N for those not logged since the last line.
void refuse_connection(Metrics& metrics, const std::string& peer);

// Logs, per reason, the refusals left out since refuse_event's (and refuse_connection's) last line:
// at shutdown, once no request is served any more, so the log accounts for every refusal.
void log_refusals_left_out();

// A secret a client presents as `Authorization: Bearer <token>` (the scheme in any case, then
// one or more spaces: RFC 9110 11.1, RFC 6750 2.1). It is kept as an HMAC under a key drawn at
// start-up, and a presented token is compared as its MAC: in constant time and at one length
// whatever its own, so nothing about the secret's length leaks either.
class BearerToken {
 public:
  // An empty token matches nothing.
  explicit BearerToken(std::string_view token);
  // Does the value of an Authorization header carry this token?
  bool matches(std::string_view authorization) const;

 private:
  HmacSha256 mac_;
  std::optional<HmacSha256::Hex> expected_;
};

// The request target without its query string.
// Does `s` start with `prefix` (lowercase), letters compared case-insensitively (ASCII)?
inline bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != prefix[i]) return false;
  }
  return true;
}

inline std::string_view path_of(std::string_view target) {
  const auto q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

}  // namespace botgate
