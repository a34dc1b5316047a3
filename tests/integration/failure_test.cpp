// Failure handling of the real botgate binary: full shards, oversized headers,
// backends that hang, close mid-response or refuse connections, secrets kept out
// of the log, SIGINT, and the JSON log format.
#include <signal.h>
#include <simdjson.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/rig.hpp"
#include "tests/support/client.hpp"
#include "tests/support/events.hpp"
#include "tests/support/gateway.hpp"
#include "tests/support/process.hpp"
#include "tests/support/raw_conn.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/test_backend.hpp"

using namespace botgate::test;
using namespace std::chrono_literals;

namespace {

std::set<std::string> delivered_ids(const TestBackend& backend) {
  std::set<std::string> ids;
  for (const auto& r : backend.requests()) {
    if (r.delivered()) ids.insert(r.idempotency_key());
  }
  return ids;
}

// Non-empty lines of `text` containing `needle`.
int count_lines(const std::string& text, const std::string& needle) {
  std::istringstream in(text);
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.find(needle) != std::string::npos) ++n;
  }
  return n;
}

// Sends `count` events over `convs` conversations on one keep-alive connection and
// returns their ids; every one must be acknowledged.
std::vector<std::string> send_acked(std::uint16_t port, const GatewayOptions& o,
                                    const std::string& prefix, int count, int convs) {
  std::vector<std::string> ids;
  auto conn = std::make_unique<HttpConnection>(port);
  for (int i = 0; i < count; ++i) {
    if (!conn->is_open()) conn = std::make_unique<HttpConnection>(port);
    auto id = prefix + "-" + std::to_string(i);
    auto res = send_event(*conn, o.source, o.secret,
                          event_json(id, prefix + "-conv-" + std::to_string(i % convs), i / convs));
    INFO(id << ": " << res.describe());
    REQUIRE(res.status == 200);
    ids.push_back(id);
  }
  return ids;
}

// X-Botgate-Attempt numbers of `id` over both backends, sorted.
std::vector<int> attempt_numbers(const TestBackend& bad, const TestBackend& good,
                                 const std::string& id) {
  std::vector<int> out;
  for (const auto* b : {&bad, &good}) {
    for (const auto& r : b->requests()) {
      if (r.idempotency_key() == id) out.push_back(std::atoi(r.attempt().c_str()));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Every id has attempts 1..n over both backends. An attempt that outlier ejection
// re-routed (router_actor.cpp reroute()) is not cancelled on `bad`: attempt 1 may reach
// `bad` after attempt 2 reached `good`, so wait for it.
bool attempts_complete(const TestBackend& bad, const TestBackend& good,
                       const std::vector<std::string>& ids) {
  for (const auto& id : ids) {
    const auto a = attempt_numbers(bad, good, id);
    for (std::size_t k = 0; k < a.size(); ++k) {
      if (a[k] != static_cast<int>(k + 1)) return false;
    }
  }
  return true;
}

// The failover contract when `bad` never takes an event and `good` always does:
// every id is delivered exactly once, by `good`; an event first tried on `bad` is
// retried on `good` (attempt 2), never on `bad` again, and one never tried on
// `bad` goes through at attempt 1. Attempt numbers of an id are 1..n over both
// backends, the delivered one the highest. Not necessarily in arrival order: when
// `bad` is ejected, its in-flight attempt goes to `good` as the next attempt at once,
// and may overtake the first on its way to `bad` (as in delivery_test's 5xx case).
void check_failed_over(const TestBackend& bad, const TestBackend& good,
                       const std::vector<std::string>& ids) {
  std::vector<BackendRequest> all = bad.requests();
  auto g = good.requests();
  all.insert(all.end(), g.begin(), g.end());
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.order < b.order; });

  CHECK(bad.delivered_count() == 0);
  for (const auto& id : ids) {
    std::vector<std::string> attempts;
    int on_bad = 0, delivered = 0;
    std::string delivered_attempt;
    for (const auto& r : all) {
      if (r.idempotency_key() != id) continue;
      attempts.push_back(r.attempt());
      if (r.delivered()) {
        ++delivered;
        delivered_attempt = r.attempt();
      }
    }
    for (const auto& r : bad.requests()) {
      if (r.idempotency_key() == id) ++on_bad;
    }
    std::ostringstream got;
    for (const auto& a : attempts) got << a << ' ';
    INFO(id << ": X-Botgate-Attempt in arrival order: " << got.str() << "(" << on_bad
            << " on the failing backend)");
    CHECK(delivered == 1);
    CHECK(on_bad <= 1);
    CHECK(delivered_attempt == std::to_string(on_bad + 1));
    const auto sorted = attempt_numbers(bad, good, id);
    bool one_to_n = true;
    for (std::size_t k = 0; k < sorted.size(); ++k) {
      if (sorted[k] != static_cast<int>(k + 1)) one_to_n = false;
    }
    CHECK(one_to_n);
  }
}

}  // namespace

namespace {

// One shard of `max_pending` events in front of a backend that hangs: nothing drains, so the
// shard fills. Hung attempts are retried, never dead-lettered, during a test.
GatewayOptions full_shard_options(TestBackend& backend, int max_pending) {
  backend.set_hang();
  GatewayOptions o;
  o.backend_ports = {backend.port()};
  o.shards = 1;
  o.max_pending = max_pending;
  o.target_timeout = "1s";
  o.max_attempts = 100;
  return o;
}

}  // namespace

TEST_CASE("a full shard answers 503 with Retry-After and enqueues nothing",
          "[integration][failure]") {
  TempDir dir;
  TestBackend backend;
  GatewayOptions o = full_shard_options(backend, 5);
  Gateway gw(botgate_binary(), dir, make_config(o));

  // Nothing drains while the backend hangs: the shard fills after max_pending events.
  std::vector<std::string> accepted, refused;
  std::vector<Response> refusals;
  {
    HttpConnection conn(gw.port());
    for (int i = 0; i < 20 && refused.empty(); ++i) {
      auto id = "full-" + std::to_string(i);
      auto res = send_event(conn, o.source, o.secret,
                            event_json(id, "full-conv-" + std::to_string(i % 3), i / 3));
      INFO(id << ": " << res.describe());
      REQUIRE((res.status == 200 || res.status == 503));
      if (res.status == 200) {
        accepted.push_back(id);
      } else {
        refused.push_back(id);
        refusals.push_back(res);
      }
    }
  }
  REQUIRE(refused.size() == 1);
  CHECK(accepted.size() == static_cast<std::size_t>(o.max_pending));
  // Still full: more events, on fresh connections, are refused too.
  for (int i = 0; i < 3; ++i) {
    auto id = "full-late-" + std::to_string(i);
    auto res = send_event(gw.port(), o.source, o.secret,
                          event_json(id, "full-late-conv-" + std::to_string(i), 0));
    INFO(id << ": " << res.describe());
    CHECK(res.status == 503);
    refused.push_back(id);
    refusals.push_back(res);
  }
  for (const auto& res : refusals) {
    auto retry_after = res.header("retry-after");
    INFO("503 answer: " << res.describe() << " Retry-After: '" << retry_after << "'");
    CHECK(std::regex_match(retry_after, std::regex("[1-9][0-9]*")));
  }

  auto metrics = http_request(gw.port(), "GET", "/metrics");
  INFO(metrics.body);
  REQUIRE(metrics.status == 200);
  CHECK(metric_sum(metrics.body, "botgate_queue_depth") == static_cast<double>(o.max_pending));
  CHECK(metric_value(metrics.body, "botgate_events_rejected_total{reason=\"shards_full\"}") ==
        static_cast<double>(refused.size()));
  // The held events really were tried (and are hanging), not sitting unsent.
  CHECK(backend.wait_for_count(1, 5s));

  // Once the backend answers, the held events drain: hung attempts time out
  // (target timeout 1 s) and are retried.
  backend.set_ok();
  const std::set<std::string> want(accepted.begin(), accepted.end());
  bool drained = eventually([&] { return delivered_ids(backend) == want; }, 10s);
  std::this_thread::sleep_for(300ms);  // let a duplicate or a refused event show up
  auto reqs = backend.requests();
  std::map<std::string, int> delivered;
  std::set<std::string> seen;
  for (const auto& r : reqs) {
    seen.insert(r.idempotency_key());
    if (r.delivered()) ++delivered[r.idempotency_key()];
  }
  INFO("backend got " << reqs.size() << " requests, delivered " << backend.delivered_count());
  CHECK(drained);
  for (const auto& id : accepted) {
    INFO("accepted " << id);
    CHECK(delivered[id] == 1);
  }
  for (const auto& id : refused) {
    INFO("refused with 503 but reached the backend: " << id);
    CHECK(seen.count(id) == 0);
  }
  CHECK(delivered.size() == accepted.size());

  // With room again, the gateway accepts new events.
  auto again =
      send_event(gw.port(), o.source, o.secret, event_json("full-after", "full-conv-0", 99));
  INFO(again.describe());
  CHECK(again.status == 200);
  CHECK(backend.wait_until(
      [](const auto& rs) {
        return std::any_of(rs.begin(), rs.end(), [](const auto& r) {
          return r.delivered() && r.idempotency_key() == "full-after";
        });
      },
      5s));
  CHECK(gw.process().running());
}

TEST_CASE("a client that sends all of an oversized body still reads its 413",
          "[integration][failure]") {
  TempDir dir;
  TestBackend backend;
  GatewayOptions o;
  o.backend_ports = {backend.port()};  // max_body 64KiB
  Gateway gw(botgate_binary(), dir, make_config(o));
  // Like most clients, send the whole request before reading. botgate refuses after 64 KiB;
  // closing with the rest unread would reset the connection under the sender.
  const std::string body(16u << 20, 'x');
  for (int round = 0; round < 2; ++round) {
    RawConn c(gw.port());
    const bool sent = c.send("POST /v1/events/" + o.source +
                             " HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                             "Content-Length: " +
                             std::to_string(body.size()) + "\r\n\r\n" + body);
    CHECK(sent);
    const RawResponse r = c.read_response(5s);
    INFO(describe(r));
    CHECK(r.status == 413);
    CHECK(r.body == R"({"error":"too_large"})");
    CHECK(r.header("connection") == "close");
  }
  REQUIRE(gw.process().running());
  CHECK(backend.requests().empty());

  // A refused client that keeps its connection open does not hold up a shutdown.
  RawConn held(gw.port());
  REQUIRE(held.send("POST /v1/events/" + o.source +
                    " HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\n" +
                    std::string(128u << 10, 'x')));
  REQUIRE(held.read_response(5s).status == 413);
  const auto t0 = std::chrono::steady_clock::now();
  gw.process().signal(SIGTERM);
  CHECK(gw.process().wait_exit(15s) == std::optional<int>(0));
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);  // the linger alone lasts 5 s
}

namespace {

// The log lines of refusals with reason `reason`, and the refusals they account for: one each,
// plus the left_out=N each carries (those not logged one by one before it).
struct RefusalLines {
  std::size_t lines = 0;
  std::uint64_t accounted = 0;
};
RefusalLines refusal_lines(const std::string& log, const std::string& reason) {
  static const std::regex left_out(R"(left_out=([0-9]+))");
  RefusalLines out;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    if (line.find("msg=\"event rejected\" reason=" + reason) == std::string::npos) continue;
    std::smatch m;
    const bool counted = line.find("status=") != std::string::npos;  // else a shutdown summary
    if (counted) {
      ++out.lines;
      ++out.accounted;
    }
    if (std::regex_search(line, m, left_out)) out.accounted += std::stoull(m[1]);
  }
  return out;
}

}  // namespace

TEST_CASE("a full queue's refusals are logged once a second, and all are accounted for by the end",
          "[integration][failure]") {
  TempDir dir;
  TestBackend backend;
  GatewayOptions o = full_shard_options(backend, 1);
  o.drain_timeout = "1s";
  Gateway gw(botgate_binary(), dir, make_config(o));
  HttpConnection conn(gw.port());
  int n = 0;
  auto refuse = [&](int count) {
    for (int i = 0; i < count; ++i, ++n) {
      auto res = send_event(conn, o.source, o.secret,
                            event_json("f-" + std::to_string(n), "c-" + std::to_string(n), 0));
      REQUIRE(res.status == 503);
    }
  };
  REQUIRE(send_event(conn, o.source, o.secret, event_json("held", "c-held", 0)).status == 200);

  refuse(30);  // well within a second: the first is logged, the rest only counted
  auto now = refusal_lines(gw.log(), "shards_full");
  INFO("after 30 refusals: " << now.lines << " lines accounting for " << now.accounted);
  CHECK(now.lines >= 1);
  CHECK(now.lines < 30);
  CHECK(now.accounted <= 30);

  // A second later the next refusal is logged with the count of those left out before it.
  std::this_thread::sleep_for(1100ms);
  refuse(1);
  now = refusal_lines(gw.log(), "shards_full");
  INFO("after 31: " << now.lines << " lines accounting for " << now.accounted);
  CHECK(now.accounted == 31);

  // What is left out after the last line is logged when the gateway stops.
  refuse(10);
  gw.process().signal(SIGTERM);
  REQUIRE(gw.process().wait_exit(15s) == 0);
  now = refusal_lines(gw.log(), "shards_full");
  INFO("after 41 and a stop: " << now.lines << " lines accounting for " << now.accounted << "\n"
                               << gw.log());
  CHECK(now.accounted == 41);
  CHECK(now.lines <= 4);
}

TEST_CASE(
    "bytes that are not HTTP, or HTTP/1.1 without one Host, get 400, one log line and a close",
    "[integration][failure]") {
  OneBackendGateway rig([](GatewayOptions&) {});
  TestBackend& backend = rig.backend;
  Gateway& gw = *rig.gw;
  for (const std::string& junk :
       {std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"),
        std::string("POST /v1/events/x HTTP/9\r\n\r\n"),
        std::string("POST /v1/events/x HTTP/1.1\r\nBad Header\r\n\r\n"),
        // HTTP/1.1 without a Host, or with two (RFC 9112 3.2).
        std::string("GET /healthz HTTP/1.1\r\n\r\n"),
        std::string("GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")}) {
    RawConn c(gw.port());
    REQUIRE(c.send(junk));
    const RawResponse r = c.read_response(5s);
    INFO(describe(r));
    CHECK(r.status == 400);
    CHECK(r.body == R"({"error":"malformed"})");
    CHECK(r.header("connection") == "close");
  }
  REQUIRE(gw.process().running());
  CHECK(lines_with(gw.log(), "request refused").size() == 5);
  CHECK(http_request(gw.port(), "GET", "/healthz").status == 200);
  std::this_thread::sleep_for(200ms);
  CHECK(backend.requests().empty());
}

TEST_CASE("a request header over max_header gets 413", "[integration][failure]") {
  TempDir dir;
  TestBackend backend;
  GatewayOptions o;
  o.backend_ports = {backend.port()};
  o.max_header = "4KiB";
  Gateway gw(botgate_binary(), dir, make_config(o));

  // One header far over the limit, and many small ones that add up to more than it.
  auto one_big = event_json("hdr-big", "hdr-conv", 0);
  auto big_headers = signed_headers(o.secret, one_big);
  big_headers.emplace_back("X-Padding", std::string(8 * 1024, 'a'));
  auto many_small = event_json("hdr-many", "hdr-conv", 1);
  auto many_headers = signed_headers(o.secret, many_small);
  for (int i = 0; i < 80; ++i) {
    many_headers.emplace_back("X-Padding-" + std::to_string(i), std::string(100, 'b'));
  }
  struct Oversized {
    std::string name;
    Headers headers;
    std::string body;
  };
  for (const auto& c : {Oversized{"one 8 KiB header", big_headers, one_big},
                        Oversized{"80 headers of 100 bytes", many_headers, many_small}}) {
    auto res = http_request(gw.port(), "POST", "/v1/events/" + o.source, c.headers, c.body);
    INFO(c.name << " -> " << res.describe());
    CHECK(res.status == 413);
    CHECK(res.body == R"({"error":"headers_too_large"})");
    CHECK_FALSE(res.keep_alive);
    REQUIRE(gw.process().running());
  }

  // Headers under the limit are fine, and that event is the only one delivered.
  auto good = event_json("hdr-good", "hdr-conv", 2);
  auto good_headers = signed_headers(o.secret, good);
  good_headers.emplace_back("X-Padding", std::string(1024, 'c'));
  auto res = http_request(gw.port(), "POST", "/v1/events/" + o.source, good_headers, good);
  INFO(res.describe());
  CHECK(res.status == 200);
  CHECK(backend.wait_for_delivered(1, 10s));
  std::this_thread::sleep_for(300ms);
  auto reqs = backend.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].idempotency_key() == "hdr-good");
  CHECK(gw.process().running());

  auto metrics = http_request(gw.port(), "GET", "/metrics");
  INFO(metrics.body);
  CHECK(metric_value(metrics.body, "botgate_events_rejected_total{reason=\"too_large\"}") == 2.0);
  CHECK(metric_value(metrics.body, "botgate_events_accepted_total") == 1.0);
  // One log line per refused request.
  auto log = gw.log();
  INFO(log);
  CHECK(count_lines(log, "header_too_large") == 2);
}

namespace {

// b1 misbehaves as `fault` sets it up and b2 is healthy: every event ends up
// delivered by b2, b1 answered none of the requests it took, and the attempt
// numbers show the failover.
void check_fault_fails_over(const std::function<void(TestBackend&)>& fault,
                            const std::string& target_timeout, const std::string& prefix,
                            std::chrono::milliseconds wait) {
  TempDir dir;
  TestBackend b1, b2;
  fault(b1);
  GatewayOptions o;
  o.backend_ports = {b1.port(), b2.port()};
  o.target_timeout = target_timeout;
  o.max_attempts = 10;
  Gateway gw(botgate_binary(), dir, make_config(o));

  auto ids = send_acked(gw.port(), o, prefix, 20, 5);
  const std::set<std::string> want(ids.begin(), ids.end());
  bool all =
      eventually([&] { return delivered_ids(b2) == want && attempts_complete(b1, b2, ids); }, wait);
  std::this_thread::sleep_for(300ms);  // let any duplicate show up
  INFO("b1 got " << b1.count() << ", b2 delivered " << b2.delivered_count());
  REQUIRE(all);

  auto failed = b1.requests();
  CHECK_FALSE(failed.empty());
  for (const auto& r : failed) {
    INFO("b1 request " << r.idempotency_key() << " attempt " << r.attempt());
    CHECK_FALSE(r.answered);
  }
  check_failed_over(b1, b2, ids);
  CHECK(gw.process().running());
}

}  // namespace

TEST_CASE("a backend that hangs past the timeout is retried on the other backend",
          "[integration][failure]") {
  check_fault_fails_over([](TestBackend& b) { b.set_hang(); }, "500ms", "hang", 15s);
}

TEST_CASE("a backend that closes mid-response is retried", "[integration][failure]") {
  check_fault_fails_over([](TestBackend& b) { b.set_close_mid_response(); }, "2s", "midclose", 10s);
}

TEST_CASE("a connection-refused backend is retried on the other", "[integration][failure]") {
  TempDir dir;
  TestBackend b1, b2;
  b1.stop();  // nothing listens on b1's port
  GatewayOptions o;
  o.backend_ports = {b1.port(), b2.port()};
  o.max_attempts = 10;
  Gateway gw(botgate_binary(), dir, make_config(o));

  auto ids = send_acked(gw.port(), o, "refused", 20, 5);
  const std::set<std::string> want(ids.begin(), ids.end());
  bool all = eventually([&] { return delivered_ids(b2) == want; }, 10s);
  std::this_thread::sleep_for(300ms);
  INFO("b2 delivered " << b2.delivered_count());
  REQUIRE(all);
  CHECK(b1.count() == 0);

  // Every delivery took one or two attempts: the first on b1 (refused) is
  // followed by one on b2, and some events were routed to b1 first.
  std::map<std::string, int> delivered;
  int second_attempts = 0;
  for (const auto& r : b2.requests()) {
    INFO(r.idempotency_key() << " attempt " << r.attempt());
    CHECK(r.delivered());
    CHECK((r.attempt() == "1" || r.attempt() == "2"));
    if (r.attempt() == "2") ++second_attempts;
    ++delivered[r.idempotency_key()];
  }
  for (const auto& id : ids) {
    INFO(id);
    CHECK(delivered[id] == 1);
  }
  CHECK(second_attempts > 0);

  auto metrics = http_request(gw.port(), "GET", "/metrics");
  INFO(metrics.body);
  CHECK(metric_value(metrics.body,
                     "botgate_deliveries_total{target=\"b1\",outcome=\"connect_error\"}")
            .value_or(0) == static_cast<double>(second_attempts));
  CHECK(gw.process().running());
}

TEST_CASE("secrets never appear in the log", "[integration][failure]") {
  TempDir dir;
  TestBackend backend;
  GatewayOptions o;
  o.backend_ports = {backend.port()};
  o.secret = "Sx7-source-secret-qZ4wK9-never-log";
  o.admin_token = "Ax7-admin-token-mP2vL8-never-log";
  o.log_level = "debug";
  Gateway gw(botgate_binary(), dir, make_config(o));

  auto ids = send_acked(gw.port(), o, "secret", 3, 2);
  constexpr int kBad = 3;
  for (int i = 0; i < kBad; ++i) {
    auto body = event_json("secret-bad-" + std::to_string(i), "secret-conv", 10 + i);
    auto res = http_request(gw.port(), "POST", "/v1/events/" + o.source,
                            signed_headers("wrong-" + o.secret, body), body);
    INFO(res.describe());
    CHECK(res.status == 401);
  }
  // The admin token travels in a request header; it must not be echoed either.
  for (const char* path : {"/v1/targets", "/metrics"}) {
    auto res = http_request(gw.port(), "GET", path, {{"Authorization", "Bearer " + o.admin_token}});
    INFO(path << " -> " << res.describe());
    CHECK(res.status != 0);
  }
  CHECK(backend.wait_for_delivered(ids.size(), 10s));

  gw.process().signal(SIGTERM);
  auto code = gw.process().wait_exit(15s);
  REQUIRE(code.has_value());
  CHECK(*code == 0);

  auto log = gw.log();
  INFO(log);
  REQUIRE_FALSE(log.empty());
  CHECK(log.find(o.secret) == std::string::npos);
  CHECK(log.find(o.admin_token) == std::string::npos);
  // Each badly-signed request got its one log line.
  CHECK(count_lines(log, "bad_signature") == kBad);
}

TEST_CASE("SIGINT drains and exits 0", "[integration][failure][lifecycle]") {
  TempDir dir;
  TestBackend backend;
  backend.set_slow(200ms);
  GatewayOptions o;
  o.backend_ports = {backend.port()};
  o.target_timeout = "5s";
  Gateway gw(botgate_binary(), dir, make_config(o));

  // 2 conversations x 3 events: at least 3 x 200 ms of delivery left to drain.
  auto ids = send_acked(gw.port(), o, "sigint", 6, 2);
  auto delivered_before = backend.delivered_count();
  REQUIRE(delivered_before < ids.size());

  auto t0 = std::chrono::steady_clock::now();
  gw.process().signal(SIGINT);
  auto code = gw.process().wait_exit(15s);
  auto took = std::chrono::steady_clock::now() - t0;
  INFO("delivered before SIGINT: "
       << delivered_before << ", exit after "
       << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(took < 12s);  // drain_timeout (10 s) plus slack

  auto got = delivered_ids(backend);
  for (const auto& id : ids) {
    INFO("acked but not delivered before exit: " << id);
    CHECK(got.count(id) == 1);
  }
  CHECK(http_request(gw.port(), "GET", "/healthz", {}, {}, 1s).status == 0);
}

TEST_CASE("log.format = json writes one JSON object per line", "[integration][failure]") {
  TempDir dir;
  TestBackend backend;
  GatewayOptions o;
  o.backend_ports = {backend.port()};
  o.log_format = "json";
  o.log_level = "debug";
  o.max_header = "4KiB";
  Gateway gw(botgate_binary(), dir, make_config(o));

  // Something to log at every level we can provoke: accepted, rejected (with
  // quotes in the detail), refused before routing, unknown route.
  send_acked(gw.port(), o, "json", 2, 1);
  auto bad = event_json("json-bad", "json-conv", 9);
  CHECK(http_request(gw.port(), "POST", "/v1/events/" + o.source,
                     signed_headers("not-the-secret", bad), bad)
            .status == 401);
  std::string malformed = R"({"id":"json-m","conversation":"c\"x","text":)";
  CHECK(http_request(gw.port(), "POST", "/v1/events/" + o.source,
                     signed_headers(o.secret, malformed), malformed)
            .status == 400);
  auto padded = signed_headers(o.secret, bad);
  padded.emplace_back("X-Padding", std::string(8 * 1024, 'p'));
  CHECK(http_request(gw.port(), "POST", "/v1/events/" + o.source, padded, bad).status == 413);
  CHECK(http_request(gw.port(), "GET", "/no/such/route\\x").status == 404);
  CHECK(backend.wait_for_delivered(2, 10s));

  gw.process().signal(SIGTERM);
  auto code = gw.process().wait_exit(15s);
  REQUIRE(code.has_value());
  CHECK(*code == 0);

  auto log = gw.log();
  INFO(log);
  REQUIRE_FALSE(log.empty());
  CHECK(log.back() == '\n');
  simdjson::dom::parser parser;
  std::istringstream in(log);
  int lines = 0;
  std::set<std::string> msgs;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    ++lines;
    INFO("line " << lines << ": " << line);
    CHECK(line.front() == '{');
    CHECK(line.back() == '}');
    simdjson::dom::element doc;
    REQUIRE(parser.parse(line).get(doc) == simdjson::SUCCESS);
    simdjson::dom::object obj;
    REQUIRE(doc.get_object().get(obj) == simdjson::SUCCESS);
    std::string_view level, msg;
    CHECK(obj["level"].get_string().get(level) == simdjson::SUCCESS);
    CHECK((level == "debug" || level == "info" || level == "warn" || level == "error"));
    CHECK(obj["msg"].get_string().get(msg) == simdjson::SUCCESS);
    CHECK_FALSE(msg.empty());
    msgs.emplace(msg);
  }
  // The lines checked above include the ones this test provoked.
  for (const char* m :
       {"listening", "event rejected", "request refused", "unknown route", "stopped"}) {
    INFO("msg " << m);
    CHECK(msgs.count(m) == 1);
  }
}

TEST_CASE("connections over the cap are closed at once, and the logs keep their descriptors",
          "[integration][failure]") {
  TempDir dir;
  TestBackend backend;
  GatewayOptions o;
  o.backend_ports = {backend.port()};
  o.shards = 1;
  o.segment_bytes = "1MiB";
  o.max_body = "64KiB";
  // 200 descriptors, less the reserve (64 + 12 for the shard + 34 for the target): a cap of 90.
  Gateway gw(limited_binary(dir, botgate_binary(), "--nofile=200"), dir, make_config(o));
  CHECK(lines_with(gw.log(), "max_connections lowered").size() == 1);
  HttpConnection events(gw.port());

  // More idle connections than the process has descriptors: those over the cap are closed.
  std::vector<std::unique_ptr<RawConn>> idle;
  for (int i = 0; i < 190; ++i) idle.push_back(std::make_unique<RawConn>(gw.port()));
  std::this_thread::sleep_for(300ms);
  int closed = 0;
  for (auto& c : idle) closed += c->wait_closed(20ms).has_value() ? 1 : 0;
  INFO("idle connections closed by the server: " << closed);
  CHECK(closed >= 90);
  CHECK(closed <= 110);

  // The shard log still opens new segments (50 KB events: about 20 to a segment) and the
  // dedup journal its first file: every event is stored and delivered.
  std::vector<std::string> ids;
  for (int i = 0; i < 100; ++i) {
    const std::string id = "fd-" + std::to_string(i);
    auto res = send_event(events, o.source, o.secret,
                          event_json(id, "fd-conv", i, std::string(50'000, 'z')));
    INFO(id << ": " << res.describe());
    REQUIRE(res.status == 200);
    ids.push_back(id);
  }
  CHECK(backend.wait_for_delivered(ids.size(), 20s));
  RawConn one_more(gw.port());  // still at the cap
  CHECK(one_more.wait_closed(1s).has_value());

  // Once the idle ones go, new connections are served again.
  idle.clear();
  CHECK(eventually([&] { return http_request(gw.port(), "GET", "/readyz").status == 200; }, 5s));
  auto metrics = http_request(gw.port(), "GET", "/metrics").body;
  CHECK(metric_value(metrics, "botgate_connections_refused_total").value_or(0) >= closed);
  CHECK(lines_with(gw.log(), "shard log failed").empty());
  const auto refusals = lines_with(gw.log(), "msg=\"connection refused\"");
  CHECK(refusals.size() >= 1);
  CHECK(refusals.size() <= 10);  // one a second, not one per connection
}
