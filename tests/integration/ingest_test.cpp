// The HTTP surface of the real botgate binary: status codes for bad input,
// health/readiness/metrics, and keep-alive.
#include <catch2/catch.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/client.hpp"
#include "tests/support/events.hpp"
#include "tests/support/gateway.hpp"
#include "tests/support/raw_conn.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/test_backend.hpp"
#include "transport/signature.hpp"

using namespace botgate::test;
using namespace std::chrono_literals;

namespace {

struct BadCase {
  std::string name;
  std::string method;
  std::string target;
  Headers headers;
  std::string body;
  int expected;
};

}  // namespace

TEST_CASE("bad input gets its status code and nothing is delivered", "[integration][ingest]") {
  TempDir dir;
  TestBackend backend;
  GatewayOptions o;
  o.backend_ports = {backend.port()};
  o.max_body = "16KiB";
  Gateway gw(botgate_binary(), dir, make_config(o));
  const auto events = "/v1/events/" + o.source;

  auto body = event_json("bad-1", "bad-conv", 0);
  auto signed_with = [&](const std::string& b) { return signed_headers(o.secret, b); };

  std::vector<BadCase> cases;
  cases.push_back(
      {"bad signature", "POST", events, signed_headers("not-the-secret", body), body, 401});
  cases.push_back({"missing signature",
                   "POST",
                   events,
                   {{"Content-Type", "application/json"}, {"X-Botgate-Timestamp", unix_now()}},
                   body,
                   401});
  {
    auto ts = unix_now();
    cases.push_back({"missing timestamp",
                     "POST",
                     events,
                     {{"Content-Type", "application/json"},
                      {"X-Botgate-Signature", botgate::generic_signature(o.secret, ts, body)}},
                     body,
                     401});
  }
  cases.push_back({"signature over a different body", "POST", events,
                   signed_with(event_json("bad-1", "bad-conv", 1)), body, 401});
  cases.push_back({"stale timestamp", "POST", events,
                   signed_headers(o.secret, body, unix_now(-1000)), body, 401});
  cases.push_back({"future timestamp", "POST", events,
                   signed_headers(o.secret, body, unix_now(+1000)), body, 401});
  cases.push_back(
      {"unknown source", "POST", "/v1/events/no-such-source", signed_with(body), body, 404});
  cases.push_back({"GET on the events route", "GET", events, {}, "", 405});
  {
    std::string b = R"({"id":"bad-2","conversation":)";
    cases.push_back({"malformed JSON", "POST", events, signed_with(b), b, 400});
  }
  {
    std::string b = R"({"id":"bad-3","conversation":"c"} trailing)";
    cases.push_back({"trailing garbage after JSON", "POST", events, signed_with(b), b, 400});
  }
  {
    std::string b = R"({"conversation":"bad-conv","text":"no id"})";
    cases.push_back({"missing id", "POST", events, signed_with(b), b, 400});
  }
  {
    std::string b = R"({"id":"bad-4","text":"no conversation"})";
    cases.push_back({"missing conversation", "POST", events, signed_with(b), b, 400});
  }
  {
    std::string b = "{\"id\":\"bad-5\",\"conversation\":\"bad-conv\",\"text\":\"\xff\xfe\xc3\"}";
    cases.push_back({"invalid UTF-8 in a string", "POST", events, signed_with(b), b, 400});
  }
  {
    std::string b = "";
    cases.push_back({"empty body", "POST", events, signed_with(b), b, 400});
  }
  {
    std::string b = event_json("bad-6", "bad-conv", 0, std::string(32 * 1024, 'x'));
    cases.push_back({"body bigger than max_body", "POST", events, signed_with(b), b, 413});
  }
  {
    std::string b(10000, '[');
    cases.push_back({"10000 nested arrays", "POST", events, signed_with(b), b, 400});
  }
  cases.push_back({"unknown route (GET)", "GET", "/no/such/route", {}, "", 404});
  cases.push_back(
      {"unknown route (POST)", "POST", "/v1/nothing-here", signed_with(body), body, 404});

  for (const auto& c : cases) {
    auto res = http_request(gw.port(), c.method, c.target, c.headers, c.body);
    INFO("case: " << c.name << " -> " << res.describe());
    CHECK(res.status == c.expected);
    REQUIRE(gw.process().running());
  }

  // A signing header given twice is ambiguous, whichever copy is the valid one: 400. (Raw
  // bytes: the test client keeps one field per name.)
  {
    const Headers good = signed_with(body);
    auto post = [&](const std::string& name, const std::string& value, bool before) {
      std::string extra = name + ": " + value + "\r\n";
      std::string req = "POST " + events +
                        " HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(body.size()) +
                        "\r\n" + (before ? extra : "");
      for (const auto& [field, v] : good) req += field + ": " + v + "\r\n";
      RawConn conn(gw.port());
      REQUIRE(conn.send(req + (before ? "" : extra) + "\r\n" + body));
      return conn.read_response();
    };
    std::string timestamp;
    for (const auto& [field, v] : good) {
      if (field == "X-Botgate-Timestamp") timestamp = v;
    }
    for (const auto& [what, res] :
         {std::pair{"valid signature, then a bogus copy",
                    post("X-Botgate-Signature", "v1=00", false)},
          std::pair{"bogus signature, then a valid copy",
                    post("X-Botgate-Signature", "v1=00", true)},
          std::pair{"the same timestamp twice", post("X-Botgate-Timestamp", timestamp, false)}}) {
      INFO(what << " -> " << describe(res));
      CHECK(res.status == 400);
      CHECK(res.body == R"({"error":"malformed"})");
    }
  }

  // A good event still goes through, and it is the only thing the backend sees.
  auto good = event_json("good-1", "good-conv", 0);
  auto res = send_event(gw.port(), o.source, o.secret, good);
  INFO(res.describe());
  CHECK(res.status == 200);
  CHECK(backend.wait_for_count(1, 10s));
  std::this_thread::sleep_for(500ms);
  auto reqs = backend.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].idempotency_key() == "good-1");
  CHECK(reqs[0].body == good);
  CHECK(gw.process().running());

  auto metrics = http_request(gw.port(), "GET", "/metrics");
  REQUIRE(metrics.status == 200);
  INFO(metrics.body);
  CHECK(metric_sum(metrics.body, "botgate_events_rejected_total") > 0);
  CHECK(metric_value(metrics.body, "botgate_events_rejected_total{reason=\"bad_signature\"}")
            .value_or(0) > 0);
  CHECK(metric_value(metrics.body, "botgate_events_rejected_total{reason=\"malformed\"}")
            .value_or(0) > 0);
  CHECK(metric_value(metrics.body, "botgate_events_rejected_total{reason=\"missing_field\"}")
            .value_or(0) > 0);
  CHECK(metric_value(metrics.body, "botgate_events_rejected_total{reason=\"unknown_source\"}")
            .value_or(0) > 0);
  CHECK(metric_value(metrics.body, "botgate_events_accepted_total") == 1.0);
  // One line for each ambiguous request.
  CHECK(lines_with(gw.log(), "given more than once").size() == 3);
}

TEST_CASE("healthz, readyz and metrics answer", "[integration][ingest]") {
  TempDir dir;
  TestBackend backend;
  GatewayOptions o;
  o.backend_ports = {backend.port()};
  Gateway gw(botgate_binary(), dir, make_config(o));

  auto health = http_request(gw.port(), "GET", "/healthz");
  INFO(health.describe());
  CHECK(health.status == 200);

  bool ready =
      eventually([&] { return http_request(gw.port(), "GET", "/readyz").status == 200; }, 5s);
  CHECK(ready);

  // One event end to end, so the counters and histograms have something in them.
  auto res = send_event(gw.port(), o.source, o.secret, event_json("m-1", "m-conv", 0));
  CHECK(res.status == 200);
  CHECK(backend.wait_for_delivered(1, 10s));

  Response metrics;
  bool delivered_counted = eventually(
      [&] {
        metrics = http_request(gw.port(), "GET", "/metrics");
        return metric_value(metrics.body, "botgate_events_delivered_total").value_or(0) >= 1;
      },
      5s);
  INFO(metrics.describe());
  REQUIRE(metrics.status == 200);
  CHECK(metrics.header("content-type").rfind("text/plain", 0) == 0);
  for (const char* name :
       {"botgate_http_requests_total", "botgate_events_accepted_total", "botgate_queue_depth",
        "botgate_deliveries_total", "botgate_ingest_to_ack_seconds_bucket",
        "botgate_end_to_end_seconds_bucket"}) {
    INFO("metric " << name);
    CHECK(metrics.body.find(name) != std::string::npos);
  }
  CHECK(delivered_counted);
  CHECK(metric_value(metrics.body, "botgate_events_accepted_total") == 1.0);
  CHECK(metric_value(metrics.body, "botgate_ingest_to_ack_seconds_count").value_or(0) >= 1);
  CHECK(metric_value(metrics.body, "botgate_end_to_end_seconds_count").value_or(0) >= 1);
  // Nothing is held once the only event was delivered.
  CHECK(eventually(
      [&] {
        auto m = http_request(gw.port(), "GET", "/metrics");
        return m.status == 200 && m.body.find("botgate_queue_depth") != std::string::npos &&
               metric_sum(m.body, "botgate_queue_depth") == 0.0;
      },
      5s));
}

TEST_CASE("many requests over one keep-alive connection all succeed", "[integration][ingest]") {
  TempDir dir;
  TestBackend backend;
  GatewayOptions o;
  o.backend_ports = {backend.port()};
  Gateway gw(botgate_binary(), dir, make_config(o));

  HttpConnection conn(gw.port());
  REQUIRE(conn.is_open());
  const auto local = conn.local_port();
  constexpr int kRequests = 200;
  int ok = 0;
  std::string first_error;
  for (int i = 0; i < kRequests; ++i) {
    Response res = i % 2 == 0 ? send_event(conn, o.source, o.secret,
                                           event_json("ka-" + std::to_string(i), "ka-conv", i))
                              : conn.request("GET", "/healthz");
    if (res.status == 200 && res.keep_alive) {
      ++ok;
    } else if (first_error.empty()) {
      first_error = "request " + std::to_string(i) + ": " + res.describe() +
                    (res.keep_alive ? "" : " (Connection: close)");
    }
  }
  INFO(first_error);
  CHECK(ok == kRequests);
  CHECK(conn.is_open());
  CHECK(conn.local_port() == local);
  CHECK(backend.wait_for_delivered(kRequests / 2, 20s));
}
