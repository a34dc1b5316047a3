// transport/http_server through the real botgate binary, on raw sockets: the read
// (idle) deadline, stalled request heads, and the hand-serialized response framing
// (Content-Length, Connection: close).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/rig.hpp"
#include "tests/support/client.hpp"
#include "tests/support/client_response_text.hpp"
#include "tests/support/events.hpp"
#include "tests/support/gateway.hpp"
#include "tests/support/headers.hpp"
#include "tests/support/process.hpp"
#include "tests/support/raw_conn.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/test_backend.hpp"
#include "transport/http_client.hpp"

using namespace botgate::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

long long ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

std::string get(const std::string& target, const std::string& extra_headers = {}) {
  return "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra_headers + "\r\n";
}

constexpr auto kReadTimeout = 500ms;
// "closed after >= read_timeout and < read_timeout + 1.5s"
constexpr auto kSlack = 1500ms;

}  // namespace

TEST_CASE("server closes an idle keep-alive connection after read_timeout, not a busy one",
          "[server]") {
  TempDir dir;
  TestBackend backend;
  GatewayOptions o;
  o.backend_ports = {backend.port()};
  o.read_timeout = "500ms";
  Gateway gw(botgate_binary(), dir, make_config(o));

  // Never sends a byte.
  RawConn silent(gw.port());
  // One request answered, then idle.
  RawConn after(gw.port());
  const auto sent = Clock::now();
  REQUIRE(after.send(get("/healthz")));
  auto res = after.read_response();
  const auto answered = Clock::now();
  INFO(describe(res));
  REQUIRE(res.complete);
  REQUIRE(res.status == 200);
  REQUIRE(res.count("connection") == 0);

  auto silent_closed =
      std::async(std::launch::async, [&] { return silent.wait_closed(kReadTimeout + 3s); });
  auto after_closed =
      std::async(std::launch::async, [&] { return after.wait_closed(kReadTimeout + 3s); });

  // Meanwhile a connection with a request every 150 ms outlives several read
  // timeouts: the deadline runs from the start of each request, not the connection.
  RawConn busy(gw.port());
  int busy_ok = 0;
  for (int i = 0; i < 8; ++i) {
    std::this_thread::sleep_for(150ms);
    if (!busy.send(get("/healthz"))) break;
    auto r = busy.read_response(1s);
    if (!r.complete || r.status != 200) break;
    ++busy_ok;
  }
  CHECK(busy_ok == 8);

  auto s = silent_closed.get();
  auto a = after_closed.get();
  REQUIRE(s.has_value());
  REQUIRE(a.has_value());
  INFO("silent closed after " << ms_between(silent.started(), *s) << " ms");
  INFO("idle after answer closed after " << ms_between(sent, *a) << " ms from the request, "
                                         << ms_between(answered, *a) << " ms from its answer");
  CHECK(ms_between(silent.started(), *s) >= 500);
  CHECK(ms_between(silent.connected(), *s) < 500 + 1500);
  CHECK(ms_between(sent, *a) >= 500);
  CHECK(ms_between(answered, *a) < 500 + 1500);
  CHECK(silent.leftover().empty());
  CHECK(after.leftover().empty());
}

TEST_CASE("server answers 408 and drops a client that stalls or trickles a request head",
          "[server]") {
  TempDir dir;
  TestBackend backend;
  GatewayOptions o;
  o.backend_ports = {backend.port()};
  o.read_timeout = "500ms";
  Gateway gw(botgate_binary(), dir, make_config(o));

  const std::string head =
      "POST /v1/events/demo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
      "Content-Length: 2\r\nX-Botgate-Timestamp: 1\r\n\r\n{}";

  RawConn stalled(gw.port());
  REQUIRE(stalled.send(head.substr(0, 40)));  // half a head, then nothing
  auto stalled_closed =
      std::async(std::launch::async, [&] { return stalled.wait_closed(kReadTimeout + 3s); });

  // One byte every 100 ms: never idle for long, but never a whole request in time.
  RawConn trickle(gw.port());
  std::atomic<bool> stop{false};
  std::thread trickler([&] {
    for (std::size_t i = 0; i + 1 < head.size() && !stop; ++i) {
      if (!trickle.send(head.substr(i, 1))) return;
      std::this_thread::sleep_for(100ms);
    }
  });
  auto trickle_closed =
      std::async(std::launch::async, [&] { return trickle.wait_closed(kReadTimeout + 3s); });

  // Others are served while those two hang on.
  std::this_thread::sleep_for(200ms);
  auto during = http_request(gw.port(), "GET", "/healthz", {}, {}, 2s);
  CHECK(during.status == 200);

  auto s = stalled_closed.get();
  auto t = trickle_closed.get();
  stop = true;
  trickler.join();
  REQUIRE(s.has_value());
  INFO("stalled closed after " << ms_between(stalled.started(), *s) << " ms");
  CHECK(ms_between(stalled.started(), *s) >= 500);
  CHECK(ms_between(stalled.connected(), *s) < 500 + 1500);
  REQUIRE(t.has_value());
  INFO("trickle closed after " << ms_between(trickle.started(), *t) << " ms");
  CHECK(ms_between(trickle.started(), *t) >= 500);
  CHECK(ms_between(trickle.connected(), *t) < 500 + 1500);
  // A request begun and not finished is told why before the close; one log line each.
  for (const RawConn* c : {&stalled, &trickle}) {
    INFO("answer before the close: " << c->leftover());
    CHECK(c->leftover().rfind("HTTP/1.1 408 ", 0) == 0);
    CHECK(c->leftover().find(R"({"error":"request_timeout"})") != std::string::npos);
  }
  CHECK(lines_with(gw.log(), "reason=read_timeout").size() == 2);

  // And after they are gone.
  CHECK(gw.process().running());
  auto res = http_request(gw.port(), "GET", "/healthz", {}, {}, 2s);
  CHECK(res.status == 200);
  HttpConnection conn(gw.port(), 2s);
  auto ev = send_event(conn, o.source, o.secret, event_json("after-stall", "conv", 0));
  INFO(ev.describe());
  CHECK(ev.status == 200);
}

// docs/configuration.md: read_timeout is the time to read one whole request, and how long a
// kept-alive connection may stay idle. The two are separate: idle time before a request does
// not count against the request.
TEST_CASE("server gives a request read_timeout from its first byte and not from the idle before it",
          "[server]") {
  OneBackendGateway rig([](GatewayOptions& o) { o.read_timeout = "2s"; });
  Gateway& gw = *rig.gw;
  constexpr auto kTimeout = 2000ms;
  constexpr auto kIdle = 1600ms;  // most of read_timeout
  constexpr auto kLook = 500ms;   // the server looks for a first byte every read_timeout / 4
  const std::string request = get("/healthz");

  // One request answered, the connection kept alive; the time it was sent.
  auto ask = [&](RawConn& c) {
    const auto sent = Clock::now();
    REQUIRE(c.send(request));
    const RawResponse r = c.read_response();
    INFO(describe(r));
    REQUIRE(r.status == 200);
    return sent;
  };
  RawConn kept(gw.port());     // request, idle, then a request dribbled over a second
  RawConn fresh(gw.port());    // idle, then a request dribbled over a second
  RawConn stalled(gw.port());  // request, idle, then a fragment of a request and nothing
  RawConn silent(gw.port());   // request, then nothing at all
  ask(kept);
  ask(stalled);
  const auto silent_asked = ask(silent);
  const auto idle_began = Clock::now();

  auto dribble = [&](RawConn& c) {
    std::this_thread::sleep_until(idle_began + kIdle);
    const std::size_t piece = request.size() / 10 + 1;
    for (std::size_t i = 0; i < request.size(); i += piece) {
      if (!c.send(request.substr(i, piece))) break;
      std::this_thread::sleep_for(100ms);
    }
    return c.read_response(3s);
  };
  auto kept_res = std::async(std::launch::async, [&] { return dribble(kept); });
  auto fresh_res = std::async(std::launch::async, [&] { return dribble(fresh); });
  auto stalled_first = std::async(std::launch::async, [&] {
    std::this_thread::sleep_until(idle_began + kIdle);
    const auto first = Clock::now();
    stalled.send(request.substr(0, 10));
    return std::make_pair(first, stalled.wait_closed(kTimeout + 3s));
  });
  auto silent_closed =
      std::async(std::launch::async, [&] { return silent.wait_closed(kTimeout + 3s); });

  for (auto* f : {&kept_res, &fresh_res}) {
    const RawResponse r = f->get();
    INFO(describe(r));
    CHECK(r.status == 200);  // was 408: the idle time had used up the request's deadline
    CHECK(r.body == R"({"status":"ok"})");
  }
  CHECK(kept.leftover().empty());

  // A request begun and stalled still gets its 408, read_timeout after its first byte.
  const auto [first, stalled_closed] = stalled_first.get();
  REQUIRE(stalled_closed.has_value());
  INFO("stalled closed " << ms_between(first, *stalled_closed) << " ms after its first byte");
  CHECK(ms_between(first, *stalled_closed) >= kTimeout.count());
  CHECK(ms_between(first, *stalled_closed) < kTimeout.count() + kLook.count() + kSlack.count());
  CHECK(stalled.leftover().rfind("HTTP/1.1 408 ", 0) == 0);

  // An idle connection is closed after read_timeout of silence, without an answer.
  const auto s = silent_closed.get();
  REQUIRE(s.has_value());
  INFO("silent closed " << ms_between(silent_asked, *s) << " ms after its request");
  CHECK(ms_between(silent_asked, *s) >= kTimeout.count());
  CHECK(ms_between(silent_asked, *s) < kTimeout.count() + kSlack.count());
  CHECK(silent.leftover().empty());
  CHECK(lines_with(gw.log(), "reason=read_timeout").size() == 1);
}

TEST_CASE("server frames responses by Content-Length and honours Connection: close", "[server]") {
  TempDir dir;
  TestBackend backend;
  GatewayOptions o;
  o.backend_ports = {backend.port()};
  o.read_timeout = "5s";  // so a close below is not the idle timeout
  Gateway gw(botgate_binary(), dir, make_config(o));

  SECTION("keep-alive: two pipelined requests, each response exactly Content-Length long") {
    RawConn c(gw.port());
    REQUIRE(c.send(get("/healthz") + get("/no-such-route")));
    auto r1 = c.read_response();
    auto r2 = c.read_response();
    INFO(describe(r1));
    INFO(describe(r2));
    REQUIRE(r1.complete);
    REQUIRE(r2.complete);  // starts right where r1's body ended
    CHECK(r1.status == 200);
    CHECK(r1.body == "{\"status\":\"ok\"}");
    CHECK(r1.count("content-length") == 1);
    CHECK(r1.count("connection") == 0);
    CHECK(r2.status == 404);
    CHECK(r2.count("content-length") == 1);
    CHECK(r2.count("connection") == 0);
    CHECK(r2.body.find("not_found") != std::string::npos);
    // A longer body (the metrics page) on the same connection.
    REQUIRE(c.send(get("/metrics")));
    auto r3 = c.read_response();
    INFO(describe(r3));
    REQUIRE(r3.complete);
    CHECK(r3.status == 200);
    CHECK(r3.body.find("botgate_") != std::string::npos);
    CHECK(r3.body.back() == '\n');
    CHECK(!c.wait_closed(300ms).has_value());  // still open
    CHECK(c.leftover().empty());               // and nothing past the last body
  }

  SECTION("Connection: close on the request") {
    RawConn c(gw.port());
    REQUIRE(c.send(get("/healthz", "Connection: close\r\n")));
    auto r = c.read_response();
    const auto answered = Clock::now();
    INFO(describe(r));
    REQUIRE(r.complete);
    CHECK(r.status == 200);
    CHECK(r.count("content-length") == 1);
    CHECK(r.header("content-length") == std::to_string(r.body.size()));
    CHECK(r.count("connection") == 1);
    CHECK(lower(r.header("connection")) == "close");
    auto closed = c.wait_closed(2s);
    REQUIRE(closed.has_value());
    CHECK(ms_between(answered, *closed) < 1000);
    CHECK(c.leftover().empty());
  }

  SECTION("Connection: close on an event POST") {
    RawConn c(gw.port());
    const std::string body = event_json("close-1", "conv-close", 0);
    std::string req = "POST /v1/events/" + o.source + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    for (const auto& [name, value] : signed_headers(o.secret, body)) {
      req += name + ": " + value + "\r\n";
    }
    req +=
        "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    REQUIRE(c.send(req));
    auto r = c.read_response();
    INFO(describe(r));
    REQUIRE(r.complete);
    CHECK(r.status == 200);
    CHECK(r.count("content-length") == 1);
    CHECK(lower(r.header("connection")) == "close");
    auto closed = c.wait_closed(2s);
    REQUIRE(closed.has_value());
    CHECK(c.leftover().empty());
  }

  SECTION("HTTP/1.0 without keep-alive") {
    RawConn c(gw.port());
    REQUIRE(c.send("GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"));
    auto r = c.read_response();
    INFO(describe(r));
    REQUIRE(r.complete);
    CHECK(r.status == 200);
    CHECK(r.count("content-length") == 1);
    CHECK(lower(r.header("connection")) == "close");
    REQUIRE(c.wait_closed(2s).has_value());
  }
}

// RFC 9110 9.3.2: a response to HEAD has no content. botgate allows HEAD on
// /healthz, /readyz and /metrics; body bytes after a HEAD answer would be read by a
// keep-alive client as the start of the next response.
TEST_CASE("server answers HEAD without a body, so a kept-alive connection stays in sync",
          "[server]") {
  TempDir dir;
  TestBackend backend;
  GatewayOptions o;
  o.backend_ports = {backend.port()};
  Gateway gw(botgate_binary(), dir, make_config(o));

  RawConn c(gw.port());
  REQUIRE(c.send("HEAD /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + get("/healthz")));
  auto head = c.read_response(3s, /*to_head=*/true);
  INFO(describe(head));
  REQUIRE(head.complete);
  CHECK(head.status == 200);
  auto next = c.read_response();
  INFO(describe(next));
  CHECK(next.complete);
  CHECK(next.status == 200);  // fails if the HEAD answer carried a body
  CHECK(next.body == "{\"status\":\"ok\"}");
}

// Where the two rewritten halves meet: botgate's server closes an idle kept-alive
// connection (a FIN, not a reset) that HttpClient still holds; the next post must
// go through on a new connection without the caller noticing.
TEST_CASE("HttpClient resends transparently over a connection the server idled out",
          "[server][client]") {
  TempDir dir;
  TestBackend backend;
  GatewayOptions o;
  o.backend_ports = {backend.port()};
  o.read_timeout = "300ms";
  Gateway gw(botgate_binary(), dir, make_config(o));

  std::mutex mu;
  std::condition_variable cv;
  std::vector<botgate::http::ClientResponse> got;
  int calls[2] = {0, 0};
  auto cb = [&](int i) {
    return [&, i](botgate::http::ClientResponse&& r) {
      std::lock_guard lk(mu);
      calls[i]++;
      got.push_back(std::move(r));
      cv.notify_all();
    };
  };
  auto wait_calls = [&](std::size_t n) {
    std::unique_lock lk(mu);
    return cv.wait_for(lk, 5s, [&] { return got.size() >= n; });
  };

  boost::asio::io_context ioc;
  auto guard = boost::asio::make_work_guard(ioc);
  botgate::http::ClientOptions co;
  co.host = "127.0.0.1";
  co.port = gw.port();
  co.max_connections = 1;
  auto client = botgate::http::HttpClient::create(ioc, co);
  std::thread io([&] { ioc.run(); });
  // signed_headers gives Content-Type, the timestamp and the signature; the client sets
  // Content-Type itself, so only the other two are posted.
  auto post_signed = [&](const std::string& body, int i) {
    const auto h = signed_headers(o.secret, body);
    client->post("/v1/events/" + o.source, body,
                 {{h[1].first, h[1].second}, {h[2].first, h[2].second}}, cb(i));
  };

  const auto b1 = event_json("idle-1", "conv-idle", 0);
  post_signed(b1, 0);
  bool first = wait_calls(1);
  std::this_thread::sleep_for(800ms);  // > read_timeout: the server has closed it
  const auto b2 = event_json("idle-2", "conv-idle", 1);
  post_signed(b2, 1);
  bool second = wait_calls(2);
  std::this_thread::sleep_for(50ms);

  client->shutdown();
  guard.reset();
  ioc.stop();
  io.join();

  REQUIRE(first);
  REQUIRE(second);
  std::lock_guard lk(mu);
  for (auto& r : got) {
    INFO(botgate::test::describe(r));
    CHECK(r.error == botgate::http::ClientResponse::Error::none);
    CHECK(r.status == 200);
  }
  CHECK(calls[0] == 1);
  CHECK(calls[1] == 1);
}

namespace {

// A raw POST of a signed event to `source`, its head carrying `framing` (e.g. a
// Transfer-Encoding line) in place of Content-Length; `body` is sent as given.
std::string raw_event_post(const GatewayOptions& o, const std::string& event,
                           const std::string& framing, const std::string& body) {
  std::string req = "POST /v1/events/" + o.source + " HTTP/1.1\r\nHost: t\r\n";
  for (const auto& [name, value] : signed_headers(o.secret, event)) {
    req += name + ": " + value + "\r\n";
  }
  return req + framing + "\r\n" + body;
}

std::string chunked(const std::string& body) {
  char size[32];
  std::snprintf(size, sizeof size, "%zx\r\n", body.size());
  return size + body + "\r\n0\r\n\r\n";
}

}  // namespace

TEST_CASE("server refuses a Transfer-Encoding it cannot frame, so a body is never a request",
          "[server]") {
  OneBackendGateway rig([](GatewayOptions& o) { o.read_timeout = "5s"; });
  const GatewayOptions& o = rig.o;
  TestBackend& backend = rig.backend;
  Gateway& gw = *rig.gw;

  // The smuggled request: a whole signed event, as the body of a request framed so that a
  // server honouring only Content-Length or chunked would see no body, and then this.
  const std::string inner_event = event_json("smuggled", "te-conv", 0);
  const std::string inner =
      raw_event_post(o, inner_event,
                     "Content-Length: " + std::to_string(inner_event.size()) + "\r\n", inner_event);
  struct Case {
    std::string coding;
    int status;
    std::string error;
  };
  for (const auto& c :
       {Case{"identity", 400, "malformed"}, Case{"chunked, identity", 400, "malformed"},
        Case{"xchunked", 400, "malformed"}, Case{"chunked, chunked", 400, "malformed"},
        Case{";x, chunked", 400, "malformed"},
        Case{"gzip, chunked", 501, "unsupported_transfer_coding"}}) {
    RawConn conn(gw.port());
    const std::string outer =
        "POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: " + c.coding + "\r\n\r\n" +
        (c.status == 501 ? chunked(inner) : inner);
    REQUIRE(conn.send(outer));
    const RawResponse res = conn.read_response(3s);
    INFO(c.coding << " -> " << describe(res));
    CHECK(res.status == c.status);
    CHECK(res.body == "{\"error\":\"" + c.error + "\"}");
    CHECK(res.header("connection") == "close");
    // Nothing more is answered: the rest is dropped, not parsed as a request.
    CHECK(conn.wait_closed(3s).has_value());
    CHECK(conn.leftover().empty());
  }
  // HTTP/1.0 has no Transfer-Encoding: chunked there is faulty framing too.
  {
    RawConn conn(gw.port());
    const std::string ev = event_json("http10", "te-conv", 2);
    std::string req = raw_event_post(
        o, ev, "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n", chunked(ev));
    req.replace(req.find("HTTP/1.1"), 8, "HTTP/1.0");
    REQUIRE(conn.send(req));
    const RawResponse res = conn.read_response(3s);
    INFO("HTTP/1.0 chunked -> " << describe(res));
    CHECK(res.status == 400);
    CHECK(conn.wait_closed(3s).has_value());
  }
  // A body that is chunked and nothing else is read as the body it is.
  const std::string good = event_json("chunked-ok", "te-conv", 1);
  RawConn conn(gw.port());
  REQUIRE(conn.send(raw_event_post(o, good, "Transfer-Encoding: chunked\r\n", chunked(good))));
  const RawResponse res = conn.read_response(3s);
  INFO(describe(res));
  CHECK(res.status == 200);
  REQUIRE(backend.wait_for_delivered(1, 10s));
  std::this_thread::sleep_for(300ms);
  REQUIRE(backend.requests().size() == 1);
  CHECK(backend.requests()[0].idempotency_key() == "chunked-ok");
  CHECK(gw.process().running());
  CHECK(lines_with(gw.log(), "request refused").size() == 7);
}

TEST_CASE("server answers 413 to a chunk header or trailer without end, before read_timeout",
          "[server]") {
  OneBackendGateway rig([](GatewayOptions& o) {
    o.max_header = "2KiB";
    o.read_timeout = "10s";
  });
  const GatewayOptions& o = rig.o;
  TestBackend& backend = rig.backend;
  Gateway& gw = *rig.gw;
  const std::string event = event_json("never", "te-conv", 0);
  const std::string endless(1u << 20, 'x');  // no CRLF anywhere: the line never ends
  for (const auto& [what, body] :
       {std::pair<std::string, std::string>{"chunk extension", "1;a=" + endless},
        std::pair<std::string, std::string>{"trailer", "0\r\nX-Trailer: " + endless}}) {
    RawConn conn(gw.port());
    const auto start = Clock::now();
    // The answer may come before all of it is sent, so the send's result is not checked.
    conn.send(raw_event_post(o, event, "Transfer-Encoding: chunked\r\n", body));
    const RawResponse res = conn.read_response(5s);
    INFO(what << " -> " << describe(res));
    CHECK(res.status == 413);
    CHECK(res.body == R"({"error":"headers_too_large"})");
    CHECK(ms_between(start, Clock::now()) < 5000);
  }
  CHECK(gw.process().running());
  CHECK(http_request(gw.port(), "GET", "/healthz").status == 200);
  std::this_thread::sleep_for(200ms);
  CHECK(backend.requests().empty());
}

// README: 413 for "a chunk header or trailer larger than [server] max_header". Beast counts
// neither against its header limit; only the read buffer's cap (max_header + 68 KiB) stopped
// them, so a 3,000 or 60,000 byte one was taken under a 2 KiB max_header.
TEST_CASE("server answers 413 to a chunk extension or trailer over max_header", "[server]") {
  OneBackendGateway rig([](GatewayOptions& o) { o.max_header = "2KiB"; });
  const GatewayOptions& o = rig.o;
  auto post = [&](const std::string& id, const std::string& extension, const std::string& trailer) {
    const std::string event = event_json(id, "te-conv", 0);
    char size[32];
    std::snprintf(size, sizeof size, "%zx", event.size());
    const std::string body = size + extension + "\r\n" + event + "\r\n0\r\n" + trailer + "\r\n";
    RawConn conn(rig.port());
    conn.send(raw_event_post(o, event, "Transfer-Encoding: chunked\r\n", body));
    return conn.read_response(5s);
  };
  for (const std::size_t n : {3000u, 60000u}) {
    const RawResponse ext = post("ext-" + std::to_string(n), ";e=" + std::string(n, 'e'), "");
    INFO("a chunk extension of " << n << " bytes -> " << describe(ext));
    CHECK(ext.status == 413);
    CHECK(ext.body == R"({"error":"headers_too_large"})");
    const RawResponse tr =
        post("tr-" + std::to_string(n), "", "X-T: " + std::string(n, 't') + "\r\n");
    INFO("a trailer of " << n << " bytes -> " << describe(tr));
    CHECK(tr.status == 413);
    CHECK(tr.body == R"({"error":"headers_too_large"})");
  }
  // Under the limit both are fine.
  const RawResponse ok =
      post("small", ";e=" + std::string(500, 'e'), "X-T: " + std::string(500, 't') + "\r\n");
  INFO(describe(ok));
  CHECK(ok.status == 200);
  REQUIRE(rig.backend.wait_for_delivered(1, 10s));
  std::this_thread::sleep_for(300ms);
  REQUIRE(rig.backend.requests().size() == 1);
  CHECK(rig.backend.requests()[0].idempotency_key() == "small");
}

TEST_CASE(
    "server answers Expect: 100-continue at once: the client sends its body without "
    "waiting",
    "[server]") {
  OneBackendGateway rig([](GatewayOptions& o) {
    o.max_body = "64KiB";
    o.read_timeout = "5s";
  });
  const GatewayOptions& o = rig.o;
  TestBackend& backend = rig.backend;
  Gateway& gw = *rig.gw;
  const std::string event = event_json("expects", "expect-conv", 0, std::string(2000, 'e'));
  RawConn conn(gw.port());
  // The head alone, as curl sends it, then a wait for the interim answer.
  REQUIRE(conn.send(raw_event_post(
      o, event, "Content-Length: " + std::to_string(event.size()) + "\r\nExpect: 100-continue\r\n",
      "")));
  const auto start = Clock::now();
  const RawResponse interim = conn.read_response(3s, true);
  INFO(describe(interim));
  CHECK(interim.status == 100);
  CHECK(ms_between(start, Clock::now()) < 2000);  // not a client-side wait; loaded CI is slow
  REQUIRE(conn.send(event));
  const RawResponse res = conn.read_response(3s);
  INFO(describe(res));
  CHECK(res.status == 200);
  CHECK(backend.wait_for_delivered(1, 10s));

  // Over max_body the 413 comes at once, without the interim answer or the body.
  const std::string big(70'000, 'b');
  RawConn over(gw.port());
  REQUIRE(over.send(raw_event_post(
      o, big, "Content-Length: " + std::to_string(big.size()) + "\r\nExpect: 100-continue\r\n",
      "")));
  const RawResponse refused = over.read_response(3s);
  INFO(describe(refused));
  CHECK(refused.status == 413);
}

TEST_CASE("server routes a request target in absolute form like its origin form", "[server]") {
  OneBackendGateway rig([](GatewayOptions&) {});
  const GatewayOptions& o = rig.o;
  const std::string event = event_json("absolute", "abs-conv", 0);
  std::string req =
      raw_event_post(o, event, "Content-Length: " + std::to_string(event.size()) + "\r\n", event);
  req.replace(0, req.find(' ') + 1, "POST http://127.0.0.1:8080");  // POST http://host/v1/...
  RawConn conn(rig.port());
  REQUIRE(conn.send(req + "GET HTTP://t?x=1 HTTP/1.1\r\nHost: t\r\n\r\n"));
  const RawResponse res = conn.read_response(3s);
  INFO(describe(res));
  CHECK(res.status == 200);
  CHECK(res.body.find("accepted") != std::string::npos);
  const RawResponse root = conn.read_response(3s);  // "/?x=1": no such route
  INFO(describe(root));
  CHECK(root.status == 404);
  REQUIRE(rig.backend.wait_for_delivered(1, 10s));
  CHECK(rig.backend.requests()[0].idempotency_key() == "absolute");
}

// botgate_events_rejected_total counts refused events. A request the HTTP layer refuses on
// another route (or bytes that are not HTTP at all) is no event: it counts only in
// botgate_http_requests_total, by route and status.
TEST_CASE("server counts a refusal as a rejected event only on a route that takes events",
          "[server]") {
  OneBackendGateway rig([](GatewayOptions& o) {
    o.max_header = "2KiB";
    o.max_body = "64KiB";
  });
  Gateway& gw = *rig.gw;
  struct Case {
    std::string what;
    std::string bytes;
    int status;
  };
  const Case cases[] = {
      {"TLS bytes", std::string("\x16\x03\x01\x00\xa5hello\r\n\r\n"), 400},
      {"an over-long /healthz target",
       "GET /healthz?" + std::string(3000, 'a') + " HTTP/1.1\r\nHost: t\r\n\r\n", 413},
      {"/metrics without Host", "GET /metrics HTTP/1.1\r\n\r\n", 400},
      {"an oversize replay",
       "POST /v1/dead-letters/x/replay HTTP/1.1\r\nHost: t\r\nContent-Length: 99999\r\n\r\n", 413},
      {"a gzip-coded /readyz",
       "GET /readyz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
      // The one refused event.
      {"an oversize event",
       "POST /v1/events/" + rig.o.source + " HTTP/1.1\r\nHost: t\r\nContent-Length: 99999\r\n\r\n",
       413},
  };
  for (const Case& c : cases) {
    RawConn conn(gw.port());
    REQUIRE(conn.send(c.bytes));
    const RawResponse res = conn.read_response(3s);
    INFO(c.what << " -> " << describe(res));
    CHECK(res.status == c.status);
  }
  const std::string m = http_request(gw.port(), "GET", "/metrics").body;
  INFO(m);
  CHECK(metric_sum(m, "botgate_events_rejected_total") == 1);
  CHECK(metric_value(m, R"(botgate_events_rejected_total{reason="too_large"})") == 1);
  CHECK(metric_value(m, R"(botgate_events_rejected_total{reason="malformed"})") == 0);
  // A head over max_header is refused before its request line is read: no route.
  CHECK(metric_value(m, R"(botgate_http_requests_total{route="unknown",status="400"})") == 1);
  CHECK(metric_value(m, R"(botgate_http_requests_total{route="unknown",status="413"})") == 1);
  CHECK(metric_value(m, R"(botgate_http_requests_total{route="metrics",status="400"})") == 1);
  CHECK(metric_value(m, R"(botgate_http_requests_total{route="admin",status="413"})") == 1);
  CHECK(metric_value(m, R"(botgate_http_requests_total{route="events",status="413"})") == 1);
  CHECK(lines_with(gw.log(), "request refused").size() == std::size(cases));
}

// RFC 3986 3.3: a path is split at '/' first, then each segment is percent-decoded. Every
// route with a name in its path does so: the events route took "%65" literally (404) while the
// dead-letter replay decoded it.
TEST_CASE("server percent-decodes a name in the path after splitting the path at '/'", "[server]") {
  OneBackendGateway rig([](GatewayOptions&) {});
  const GatewayOptions& o = rig.o;
  REQUIRE(o.source == "demo");
  const std::string event = event_json("escaped-source", "esc-conv", 0);
  auto post = [&](const std::string& target) {
    return http_request(rig.port(), "POST", target, signed_headers(o.secret, event), event);
  };
  const auto res = post("/v1/events/d%65mo");
  INFO(res.describe());
  CHECK(res.status == 200);
  CHECK(res.body.find("accepted") != std::string::npos);
  CHECK(post("/v1/events/d%6").status == 400);       // a broken escape
  CHECK(post("/v1/events/de%zzmo").status == 400);   // a broken escape
  CHECK(post("/v1/events/demo%2Fx").status == 404);  // the source "demo/x"
  CHECK(post("/v1/events/demo/x").status == 404);    // not one segment
  REQUIRE(rig.backend.wait_for_delivered(1, 10s));
  std::this_thread::sleep_for(200ms);
  REQUIRE(rig.backend.requests().size() == 1);
  CHECK(rig.backend.requests()[0].idempotency_key() == "escaped-source");
}

// RFC 9112 2.2: a server SHOULD ignore an empty line before a request line; some clients send
// one more CRLF after a POST body, before the next request on the connection.
TEST_CASE("server ignores empty lines before a request line but nowhere else", "[server]") {
  OneBackendGateway rig([](GatewayOptions&) {});
  const GatewayOptions& o = rig.o;
  const std::string event = event_json("after-crlf", "crlf-conv", 0);
  const std::string post =
      raw_event_post(o, event, "Content-Length: " + std::to_string(event.size()) + "\r\n", event);
  const std::string healthz = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
  RawConn conn(rig.port());
  REQUIRE(conn.send("\r\n" + post + "\r\n" + healthz + "\r\n\r\n" + healthz));
  for (int i = 0; i < 3; ++i) {
    const RawResponse res = conn.read_response(3s);
    INFO(i << ": " << describe(res));
    CHECK(res.status == 200);
  }
  REQUIRE(rig.backend.wait_for_delivered(1, 10s));
  std::this_thread::sleep_for(200ms);
  CHECK(rig.backend.count() == 1);
  // Anything else before a request line is still no HTTP.
  RawConn bad(rig.port());
  REQUIRE(bad.send(" \r\n" + healthz));
  const RawResponse refused = bad.read_response(3s);
  INFO(describe(refused));
  CHECK(refused.status == 400);
}
