// Checks the test support library against itself (TestBackend, HttpConnection,
// Process), so a failing integration test points at botgate, not at the harness.
// These need no botgate and take well under a second each.
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>

#include "tests/support/client.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/test_backend.hpp"
#include "transport/signature.hpp"

using namespace botgate::test;
using namespace std::chrono_literals;

TEST_CASE("support: test backend records requests and keeps connections alive", "[support]") {
  TestBackend backend;
  REQUIRE(backend.port() != 0);
  HttpConnection conn(backend.port());
  REQUIRE(conn.is_open());
  for (int i = 1; i <= 3; ++i) {
    auto res = conn.request("POST", "/events",
                            {{"Idempotency-Key", "k" + std::to_string(i)},
                             {"X-Botgate-Attempt", "1"},
                             {"Content-Type", "application/json"}},
                            "{\"n\":" + std::to_string(i) + "}");
    INFO(res.describe());
    REQUIRE(res.status == 200);
    CHECK(res.body == "{}");
    CHECK(res.keep_alive);
  }
  REQUIRE(backend.wait_for_delivered(3, 2s));
  auto reqs = backend.requests();
  REQUIRE(reqs.size() == 3);
  CHECK(backend.connections_accepted() == 1);
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    CHECK(reqs[i].method == "POST");
    CHECK(reqs[i].target == "/events");
    CHECK(reqs[i].idempotency_key() == "k" + std::to_string(i + 1));
    CHECK(reqs[i].attempt() == "1");
    CHECK(reqs[i].body == "{\"n\":" + std::to_string(i + 1) + "}");
    CHECK(reqs[i].delivered());
    if (i > 0) CHECK(reqs[i].order > reqs[i - 1].order);
  }
}

TEST_CASE("support: test backend fault modes", "[support]") {
  TestBackend backend;

  backend.set_status(500);
  auto r500 = http_request(backend.port(), "POST", "/events", {}, "{}");
  CHECK(r500.status == 500);

  backend.set_status(400);
  CHECK(http_request(backend.port(), "POST", "/events", {}, "{}").status == 400);

  backend.set_slow(200ms);
  auto t0 = std::chrono::steady_clock::now();
  auto slow = http_request(backend.port(), "POST", "/events", {}, "{}");
  CHECK(slow.status == 200);
  CHECK(std::chrono::steady_clock::now() - t0 >= 200ms);

  backend.set_hang();
  auto hang = http_request(backend.port(), "POST", "/events", {}, "{}", 300ms);
  CHECK(hang.status == 0);
  CHECK(hang.error.find("timeout") != std::string::npos);

  backend.set_close_mid_response();
  auto mid = http_request(backend.port(), "POST", "/events", {}, "{}");
  INFO(mid.describe());
  CHECK(mid.status == 0);
  CHECK_FALSE(mid.error.empty());

  backend.set_ok();
  CHECK(http_request(backend.port(), "POST", "/events", {}, "{}").status == 200);

  REQUIRE(backend.wait_for_count(6, 2s));
  // The client can read the last answer before the backend's write handler marks
  // it answered, so wait for both 2xx answers to be recorded as written.
  REQUIRE(backend.wait_for_delivered(2, 2s));
  auto reqs = backend.requests();
  REQUIRE(reqs.size() == 6);
  CHECK(reqs[0].status == 500);
  CHECK_FALSE(reqs[0].delivered());
  CHECK(reqs[2].delivered());
  CHECK_FALSE(reqs[3].answered);  // hang
  CHECK_FALSE(reqs[4].answered);  // close mid-response
  CHECK(reqs[5].delivered());
}

TEST_CASE("support: test backend stop kills connections and start revives the same port",
          "[support]") {
  TestBackend backend;
  auto port = backend.port();
  HttpConnection idle(port);
  REQUIRE(idle.is_open());
  REQUIRE(idle.request("GET", "/x").status == 200);

  backend.set_hang();
  HttpConnection busy(port, 5s);
  REQUIRE(busy.is_open());
  Response busy_res;
  std::thread t([&] { busy_res = busy.request("POST", "/events", {}, "{}"); });
  REQUIRE(backend.wait_for_count(2, 2s));
  backend.stop();
  t.join();
  CHECK(busy_res.status == 0);
  CHECK_FALSE(busy_res.error.empty());
  CHECK(idle.request("GET", "/x").status == 0);
  auto refused = http_request(port, "GET", "/x");
  CHECK(refused.status == 0);
  CHECK(refused.error.find("refused") != std::string::npos);

  backend.set_ok();
  backend.start();
  CHECK(backend.port() == port);
  CHECK(http_request(port, "GET", "/x").status == 200);
}

TEST_CASE("support: signing, metric parsing and process control", "[support]") {
  auto h = signed_headers("sec", "{\"a\":1}", "1700000000");
  REQUIRE(h.size() == 3);
  CHECK(h[2].second == botgate::generic_signature("sec", "1700000000", "{\"a\":1}"));
  CHECK(h[2].second.rfind("v1=", 0) == 0);

  std::string text =
      "# TYPE x counter\n"
      "x_total{reason=\"a\"} 2\n"
      "x_total{reason=\"b\"} 3\n"
      "x_total_other 7\n"
      "y 1.5\n";
  CHECK(metric_value(text, "x_total{reason=\"b\"}") == 3.0);
  CHECK(metric_value(text, "y") == 1.5);
  CHECK_FALSE(metric_value(text, "x_total").has_value());
  CHECK(metric_sum(text, "x_total") == 5.0);

  TempDir dir("botgate-selftest");
  {
    Process p({"/bin/sh", "-c",
               "echo 'ts=now level=info msg=listening address=127.0.0.1 port=4321' >&2; "
               "exec sleep 30"},
              dir / "p.log", dir / "p.log");
    CHECK(p.port(5s) == 4321);
    CHECK(p.running());
    CHECK(p.wait_for_log("level=info", 1s));
    CHECK_FALSE(p.wait_for_log("never printed", 100ms));
    p.signal(SIGTERM);
    CHECK(p.wait_exit(5s) == 128 + SIGTERM);
    CHECK_FALSE(p.running());
  }
  auto r = run_command({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}, dir.path());
  CHECK(r.exit_code == 3);
  CHECK(r.out == "out\n");
  CHECK(r.err == "err\n");
  auto slow = run_command({"/bin/sh", "-c", "exec sleep 30"}, dir.path(), 200ms);
  CHECK_FALSE(slow.exit_code.has_value());
}
