// transport/http_client over TLS (https), driven directly against the in-process
// TlsServer on 127.0.0.1, with self-signed certificates generated at run time:
// verification against a CA file, by IP address and by DNS name (with SNI), the
// failures a bad certificate or a stalled handshake give, and the keep-alive
// pool, pipelining and resend-once rule working the same as over plain http.
#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/client_response_text.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/tls_server.hpp"
#include "transport/http_client.hpp"

using namespace botgate::test;
using namespace std::chrono_literals;
namespace bh = botgate::http;
using Clock = std::chrono::steady_clock;
using Error = bh::ClientResponse::Error;

namespace {

// One HttpClient on its own io_context and thread; the destructor joins the thread.
class ClientRig {
 public:
  explicit ClientRig(bh::ClientOptions o) {
    client_ = bh::HttpClient::create(ioc_, std::move(o));
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~ClientRig() {
    client_->shutdown();
    guard_.reset();
    ioc_.stop();
    thread_.join();
  }
  ClientRig(const ClientRig&) = delete;
  ClientRig& operator=(const ClientRig&) = delete;

  // POSTs `body` (or, with method "GET", GETs) and waits for the answer.
  bh::ClientResponse call(const std::string& method, const std::string& target,
                          const std::string& body = {}, std::chrono::milliseconds wait = 10s) {
    auto p = std::make_shared<std::promise<bh::ClientResponse>>();
    auto f = p->get_future();
    auto done = [p](bh::ClientResponse&& r) { p->set_value(std::move(r)); };
    if (method == "GET") {
      client_->get(target, {}, done);
    } else {
      client_->post(target, body, {{"Idempotency-Key", target}}, done);
    }
    if (f.wait_for(wait) != std::future_status::ready) {
      throw std::runtime_error("no answer within " + std::to_string(wait.count()) + "ms");
    }
    return f.get();
  }

  bh::HttpClient* operator->() { return client_.get(); }

 private:
  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_{
      ioc_.get_executor()};
  std::shared_ptr<bh::HttpClient> client_;
  std::thread thread_;
};

bh::ClientOptions tls_options(std::uint16_t port, const std::string& ca_file,
                              const std::string& host = "127.0.0.1") {
  bh::ClientOptions o;
  o.host = host;
  o.port = port;
  o.connect_timeout = 2s;
  o.timeout = 5s;
  o.tls = true;
  o.ca_file = ca_file;
  o.verify_peer = true;
  return o;
}

long long ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE(
    "https client: POST and GET succeed with a verified certificate, on one kept-alive "
    "connection",
    "[client][tls]") {
  TempDir dir("botgate-tls");
  const auto id = make_localhost_identity();
  const auto ca = dir.write("ca.pem", id.cert_pem).string();
  TlsServer server(id);

  SECTION("by IP address: subjectAltName IP:127.0.0.1, no SNI") {
    ClientRig rig(tls_options(server.port(), ca));
    for (int i = 0; i < 4; ++i) {
      const std::string body = R"({"n":)" + std::to_string(i) + "}";
      const auto res = rig.call("POST", "/events/" + std::to_string(i), body);
      INFO(describe(res));
      REQUIRE(res.error == Error::none);
      CHECK(res.status == 200);
      CHECK(res.body == "POST /events/" + std::to_string(i) + "\n" + body);
    }
    const auto res = rig.call("GET", "/healthz");
    INFO(describe(res));
    REQUIRE(res.error == Error::none);
    CHECK(res.status == 200);
    CHECK(res.body == "GET /healthz\n");

    CHECK(server.connections_accepted() == 1);
    CHECK(server.handshakes_completed() == 1);
    const auto reqs = server.requests();
    REQUIRE(reqs.size() == 5);
    for (const auto& r : reqs) {
      CHECK(r.connection == 1);
      CHECK(r.server_name.empty());  // RFC 6066: no SNI for an IP address
    }
  }

  SECTION("by DNS name: subjectAltName DNS:localhost, with SNI") {
    ClientRig rig(tls_options(server.port(), ca, "localhost"));
    for (int i = 0; i < 3; ++i) {
      const auto res = rig.call("POST", "/n/" + std::to_string(i), "{}");
      INFO(describe(res));
      REQUIRE(res.error == Error::none);
      CHECK(res.status == 200);
    }
    CHECK(server.connections_accepted() == 1);
    const auto reqs = server.requests();
    REQUIRE(reqs.size() == 3);
    for (const auto& r : reqs) CHECK(r.server_name == "localhost");
  }
}

TEST_CASE("https client: a certificate that does not verify fails the request as Error::connect",
          "[client][tls]") {
  TempDir dir("botgate-tls");
  const auto id = make_localhost_identity();
  TlsServer server(id);

  std::string ca;
  std::string expect;
  SECTION("signed by another CA") {
    // The same subjectAltNames, another CN and key: not the server's certificate.
    ca = dir.write("other.pem",
                   make_self_signed("botgate-other-ca", {"localhost"}, {"127.0.0.1"}).cert_pem)
             .string();
    expect = "self-signed certificate";
  }
  SECTION("no CA file: the system's CAs do not know a self-signed certificate") {
    ca = "";
    expect = "self-signed certificate";
  }

  ClientRig rig(tls_options(server.port(), ca));
  for (int i = 0; i < 2; ++i) {  // and again on a fresh connection: no state kept
    const auto start = Clock::now();
    const auto res = rig.call("POST", "/events", "{}");
    INFO(describe(res));
    CHECK(res.error == Error::connect);
    CHECK(res.status == 0);
    CHECK(contains(res.message, "TLS handshake"));
    CHECK(contains(res.message, "certificate verify"));
    CHECK(contains(res.message, expect));
    CHECK(ms_since(start) < 1500);
  }
  CHECK(server.handshakes_completed() == 0);
  CHECK(server.requests().empty());
  CHECK(server.connections_accepted() == 2);
}

TEST_CASE("https client: a trusted certificate issued for another name fails as Error::connect",
          "[client][tls]") {
  TempDir dir("botgate-tls");
  const auto other = make_self_signed("other.example", {"other.example"}, {});
  const auto ca = dir.write("other-name.pem", other.cert_pem).string();
  TlsServer server(other);

  SECTION("by IP address") {
    ClientRig rig(tls_options(server.port(), ca));
    const auto res = rig.call("POST", "/events", "{}");
    INFO(describe(res));
    CHECK(res.error == Error::connect);
    CHECK(contains(res.message, "certificate verify"));
    CHECK(contains(res.message, "IP address mismatch"));
  }
  SECTION("by DNS name") {
    ClientRig rig(tls_options(server.port(), ca, "localhost"));
    const auto res = rig.call("POST", "/events", "{}");
    INFO(describe(res));
    CHECK(res.error == Error::connect);
    CHECK(contains(res.message, "certificate verify"));
    CHECK(contains(res.message, "hostname mismatch"));
  }
  CHECK(server.requests().empty());
}

TEST_CASE("https client: verify_peer=false accepts a certificate it cannot verify",
          "[client][tls]") {
  TempDir dir("botgate-tls");
  const auto id = make_self_signed("other.example", {"other.example"}, {});
  TlsServer server(id);
  const auto unrelated = dir.write("unrelated.pem", make_localhost_identity().cert_pem).string();

  auto o = tls_options(server.port(), unrelated);
  o.verify_peer = false;
  ClientRig rig(o);
  const auto res = rig.call("POST", "/events", R"({"a":1})");
  INFO(describe(res));
  REQUIRE(res.error == Error::none);
  CHECK(res.status == 200);
  CHECK(res.body == "POST /events\n{\"a\":1}");
  const auto get = rig.call("GET", "/healthz");
  CHECK(get.error == Error::none);
  CHECK(server.connections_accepted() == 1);
}

TEST_CASE(
    "https client: a server that never completes the handshake fails within "
    "connect_timeout",
    "[client][tls]") {
  TempDir dir("botgate-tls");
  const auto id = make_localhost_identity();
  const auto ca = dir.write("ca.pem", id.cert_pem).string();
  TlsServer server(id, TlsServerMode::stall_handshake);

  auto o = tls_options(server.port(), ca);
  o.connect_timeout = 300ms;
  o.timeout = 10s;
  ClientRig rig(o);
  const auto start = Clock::now();
  const auto res = rig.call("POST", "/events", "{}", 5s);
  const auto took = ms_since(start);
  INFO(describe(res) << " after " << took << "ms");
  CHECK((res.error == Error::timeout || res.error == Error::connect));
  CHECK(contains(res.message, "TLS handshake"));
  CHECK(took >= 250);
  CHECK(took < 1500);
  CHECK(server.connections_accepted() == 1);
  CHECK(server.handshakes_completed() == 0);
}

TEST_CASE("https client: pipelined and concurrent requests, and large bodies, arrive intact",
          "[client][tls]") {
  TempDir dir("botgate-tls");
  const auto id = make_localhost_identity();
  const auto ca = dir.write("ca.pem", id.cert_pem).string();
  TlsServer server(id);

  auto o = tls_options(server.port(), ca);
  o.max_connections = 2;
  o.pipeline = 4;
  ClientRig rig(o);

  constexpr std::size_t kPosts = 40;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<bh::ClientResponse> out(kPosts);
  std::vector<int> calls(kPosts, 0);
  std::size_t done = 0;
  auto body_of = [](std::size_t i) {
    // Every fifth one spans many TLS records.
    return i % 5 == 0 ? std::string(200 * 1024 + i, static_cast<char>('a' + i % 26))
                      : R"({"i":)" + std::to_string(i) + "}";
  };
  for (std::size_t i = 0; i < kPosts; ++i) {
    rig->post("/p/" + std::to_string(i), body_of(i), {}, [&, i](bh::ClientResponse&& r) {
      std::lock_guard lk(mu);
      out[i] = std::move(r);
      ++calls[i];
      ++done;
      cv.notify_all();
    });
  }
  {
    std::unique_lock lk(mu);
    REQUIRE(cv.wait_for(lk, 20s, [&] { return done >= kPosts; }));
  }
  std::lock_guard lk(mu);
  for (std::size_t i = 0; i < kPosts; ++i) {
    INFO("post " << i << ": " << describe(out[i]));
    CHECK(calls[i] == 1);
    CHECK(out[i].error == Error::none);
    CHECK(out[i].status == 200);
    CHECK(out[i].body == "POST /p/" + std::to_string(i) + "\n" + body_of(i));
  }
  CHECK(server.connections_accepted() <= 2);
  CHECK(server.requests().size() == kPosts);
}

TEST_CASE("https client: resends transparently when the server dropped its idle TLS connection",
          "[client][tls]") {
  TempDir dir("botgate-tls");
  const auto id = make_localhost_identity();
  const auto ca = dir.write("ca.pem", id.cert_pem).string();
  TlsServer server(id);
  ClientRig rig(tls_options(server.port(), ca));

  auto res = rig.call("POST", "/first", "{}");
  INFO(describe(res));
  REQUIRE(res.error == Error::none);
  server.drop_connections();
  std::this_thread::sleep_for(50ms);  // the close reaches the client's socket

  res = rig.call("POST", "/second", "{}");
  INFO(describe(res));
  REQUIRE(res.error == Error::none);
  CHECK(res.status == 200);
  CHECK(res.body == "POST /second\n{}");
  CHECK(server.connections_accepted() == 2);
  CHECK(server.handshakes_completed() == 2);
}

TEST_CASE("https client: create() throws when the CA file cannot be loaded", "[client][tls]") {
  TempDir dir("botgate-tls");
  boost::asio::io_context ioc;
  auto o = tls_options(443, (dir / "missing.pem").string());
  CHECK_THROWS_WITH(bh::HttpClient::create(ioc, o), Catch::Contains("missing.pem"));
}
