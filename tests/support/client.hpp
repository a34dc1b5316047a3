// A small synchronous HTTP/1.1 client (Boost.Beast) for integration tests, and the
// generic-event signing helpers. It never throws on network errors: they come back
// in Response::error with status 0.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/support/eventually.hpp"

namespace botgate::test {

using namespace std::chrono_literals;

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Response {
  int status = 0;                              // 0 when no response was read
  std::string error;                           // empty on success
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  bool keep_alive = false;

  std::string header(const std::string& lower_name) const;
  // "status=200 error=... body=..." for failure messages.
  std::string describe() const;
};

// One client connection to 127.0.0.1:port. Not thread-safe: one per thread. Never
// reconnects: after an error or a close by the server, requests fail.
class HttpConnection {
 public:
  explicit HttpConnection(std::uint16_t port, std::chrono::milliseconds timeout = 10s);
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  bool is_open() const;
  const std::string& connect_error() const;
  std::uint16_t local_port() const;  // 0 if not connected

  // Sends one request and reads one response. The response is read while the
  // request is still being written, so an early answer (e.g. 413) is seen even if
  // the server stops reading.
  Response request(const std::string& method, const std::string& target,
                   const Headers& headers = {}, const std::string& body = {});

  void close();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// One request on a fresh connection.
Response http_request(std::uint16_t port, const std::string& method, const std::string& target,
                      const Headers& headers = {}, const std::string& body = {},
                      std::chrono::milliseconds timeout = 10s);

// Unix seconds now, as the X-Botgate-Timestamp header value.
std::string unix_now(std::int64_t offset_seconds = 0);

// X-Botgate-Timestamp, X-Botgate-Signature and Content-Type for a generic event.
Headers signed_headers(const std::string& secret, const std::string& body,
                       const std::string& timestamp = unix_now());

// POST /v1/events/{source}, signed with `secret`.
Response send_event(std::uint16_t port, const std::string& source, const std::string& secret,
                    const std::string& json_body);
Response send_event(HttpConnection& conn, const std::string& source, const std::string& secret,
                    const std::string& json_body);

// Prometheus text helpers. `series` is a full series name with labels exactly as
// rendered, e.g. `botgate_events_rejected_total{reason="malformed"}`.
std::optional<double> metric_value(const std::string& exposition, const std::string& series);
// Sum over every series of the metric `name` (any labels).
double metric_sum(const std::string& exposition, const std::string& name);
// Scrapes /metrics until `series` is at least `at_least` or `timeout` passed; returns the last
// exposition scraped, for the caller's checks.
std::string metrics_once(std::uint16_t port, const std::string& series, double at_least,
                         std::chrono::milliseconds timeout);

}  // namespace botgate::test
