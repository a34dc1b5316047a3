// transport/http_client driven directly (no botgate process): a keep-alive pool
// with optional pipelining, deadlines, and the resend-once rule, against the
// TestBackend (and, for pipelining, a raw-socket probe) on 127.0.0.1.
#include "transport/http_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/client_response_text.hpp"
#include "tests/support/test_backend.hpp"

using namespace botgate::test;
using namespace std::chrono_literals;
namespace bh = botgate::http;
using Clock = std::chrono::steady_clock;
using Error = bh::ClientResponse::Error;

namespace {

long long ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

// One HttpClient on its own io_context and thread. Declare it after everything its
// callbacks touch: the destructor joins the io thread, so no callback runs later.
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

  bh::HttpClient& operator*() { return *client_; }
  bh::HttpClient* operator->() { return client_.get(); }

 private:
  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_{
      ioc_.get_executor()};
  std::shared_ptr<bh::HttpClient> client_;
  std::thread thread_;
};

bh::ClientOptions options_for(std::uint16_t port) {
  bh::ClientOptions o;
  o.host = "127.0.0.1";
  o.port = port;
  o.connect_timeout = 2s;
  o.timeout = 5s;
  return o;
}

// Every callback of request i, counted, with its time and the last response.
struct Outcome {
  int calls = 0;
  bh::ClientResponse res;
  Clock::time_point posted{};
  Clock::time_point at{};
};

class Collector {
 public:
  explicit Collector(std::size_t n) : out_(n) {}

  // The callback for request i; `also` runs first, on the client's strand.
  bh::ClientCallback callback(std::size_t i,
                              std::function<void(const bh::ClientResponse&)> also = {}) {
    {
      std::lock_guard lk(mu_);
      out_[i].posted = Clock::now();
    }
    return [this, i, also = std::move(also)](bh::ClientResponse&& r) {
      if (also) also(r);
      {
        std::lock_guard lk(mu_);
        out_[i].calls++;
        out_[i].res = std::move(r);
        out_[i].at = Clock::now();
      }
      cv_.notify_all();
    };
  }

  bool wait_all(std::chrono::milliseconds timeout) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] {
      return std::all_of(out_.begin(), out_.end(), [](const Outcome& o) { return o.calls > 0; });
    });
  }

  bool wait_one(std::size_t i, std::chrono::milliseconds timeout) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return out_[i].calls > 0; });
  }

  std::vector<Outcome> snapshot() {
    std::lock_guard lk(mu_);
    return out_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Outcome> out_;
};

std::string key_of(std::size_t i) {
  return "key-" + std::to_string(i);
}

// Requests recorded by the backend, by Idempotency-Key.
std::map<std::string, std::vector<BackendRequest>> by_key(const TestBackend& backend) {
  std::map<std::string, std::vector<BackendRequest>> m;
  for (auto& r : backend.requests()) m[r.idempotency_key()].push_back(r);
  return m;
}

std::string describe(const Outcome& o) {
  return "calls=" + std::to_string(o.calls) + " " + botgate::test::describe(o.res) +
         " after=" + std::to_string(ms_between(o.posted, o.at)) + "ms";
}

// Posts `body` to /events as `key`, and waits (REQUIRE) for its answer.
Outcome post_one(ClientRig& client, const std::string& key, const std::string& body = "{}") {
  Collector got(1);
  client->post("/events", body, {{"Idempotency-Key", key}}, got.callback(0));
  REQUIRE(got.wait_all(5s));
  return got.snapshot()[0];
}

// Posts [from, out.size()) were each answered once, with a 200.
void check_each_ok(const std::vector<Outcome>& out, std::size_t from = 0) {
  for (std::size_t i = from; i < out.size(); ++i) {
    INFO("post " << i << " (" << key_of(i) << "): " << describe(out[i]));
    CHECK(out[i].calls == 1);
    CHECK(out[i].res.error == Error::none);
    CHECK(out[i].res.status == 200);
  }
}

// A raw HTTP/1.1 server for one connection that answers in batches: after a
// request arrives it waits until `quiet` passes with no new complete request,
// then answers every request received so far, in order. The largest batch is the
// largest number of requests the client had on the wire at once. Each answer's
// body is {"key":"<Idempotency-Key of the request>"}.
class PipelineProbe {
 public:
  explicit PipelineProbe(std::size_t expected, std::chrono::milliseconds quiet = 60ms)
      : expected_(expected), quiet_(quiet) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listen_fd_, 16) != 0) {
      throw std::runtime_error("probe: bind/listen failed");
    }
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~PipelineProbe() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
  }

  std::uint16_t port() const { return port_; }
  std::size_t max_batch() const { return max_batch_.load(); }
  std::size_t connections() const { return connections_.load(); }
  std::vector<std::string> keys() {
    std::lock_guard lk(mu_);
    return keys_;
  }

 private:
  static std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }

  // Moves every complete request at the front of `buf` into `pending` (its key).
  static void parse(std::string& buf, std::vector<std::string>& pending) {
    for (;;) {
      auto end = buf.find("\r\n\r\n");
      if (end == std::string::npos) return;
      const std::string head = lower(buf.substr(0, end + 2));
      std::size_t cl = 0;
      if (auto p = head.find("\r\ncontent-length:"); p != std::string::npos) {
        cl = std::stoul(head.substr(p + 17));
      }
      if (buf.size() < end + 4 + cl) return;
      std::string key;
      if (auto p = head.find("\r\nidempotency-key:"); p != std::string::npos) {
        auto v = p + 18;
        auto e = head.find("\r\n", v);
        key = head.substr(v, e - v);
        key.erase(0, key.find_first_not_of(' '));
      }
      pending.push_back(key);
      buf.erase(0, end + 4 + cl);
    }
  }

  void run() {
    int fd = -1;
    const auto hard_deadline = Clock::now() + 10s;
    while (!stop_ && fd < 0 && Clock::now() < hard_deadline) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) > 0) fd = ::accept(listen_fd_, nullptr, nullptr);
    }
    if (fd < 0) return;
    connections_++;
    std::string buf;
    std::vector<std::string> pending;
    std::size_t answered = 0;
    auto last_arrival = Clock::now();
    while (!stop_ && answered < expected_ && Clock::now() < hard_deadline) {
      pollfd p{fd, POLLIN, 0};
      int r = ::poll(&p, 1, 10);
      // A second connection is counted (and left unanswered).
      pollfd l{listen_fd_, POLLIN, 0};
      if (::poll(&l, 1, 0) > 0) {
        int extra = ::accept(listen_fd_, nullptr, nullptr);
        if (extra >= 0) {
          connections_++;
          extra_fds_.push_back(extra);
        }
      }
      if (r > 0) {
        char tmp[65536];
        auto n = ::recv(fd, tmp, sizeof tmp, 0);
        if (n <= 0) break;
        buf.append(tmp, static_cast<std::size_t>(n));
        auto before = pending.size();
        parse(buf, pending);
        if (pending.size() != before) last_arrival = Clock::now();
        continue;
      }
      if (pending.empty() || Clock::now() - last_arrival < quiet_) continue;
      max_batch_ = std::max(max_batch_.load(), pending.size());
      std::string out;
      for (auto& key : pending) {
        const std::string body = "{\"key\":\"" + key + "\"}";
        out += "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
               std::to_string(body.size()) + "\r\n\r\n" + body;
      }
      {
        std::lock_guard lk(mu_);
        keys_.insert(keys_.end(), pending.begin(), pending.end());
      }
      answered += pending.size();
      pending.clear();
      std::size_t off = 0;
      while (off < out.size()) {
        auto n = ::send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
        if (n <= 0) break;
        off += static_cast<std::size_t>(n);
      }
    }
    // Linger until the test is done so the client sees no close.
    while (!stop_) std::this_thread::sleep_for(10ms);
    ::close(fd);
    for (int e : extra_fds_) ::close(e);
  }

  std::size_t expected_;
  std::chrono::milliseconds quiet_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> max_batch_{0};
  std::atomic<std::size_t> connections_{0};
  std::vector<int> extra_fds_;
  std::mutex mu_;
  std::vector<std::string> keys_;
};

}  // namespace

TEST_CASE("client without pipelining answers every post once, intact, on at most max_connections",
          "[client]") {
  TestBackend backend;
  constexpr std::size_t kPosts = 50;
  Collector got(kPosts);
  auto o = options_for(backend.port());
  o.pipeline = 1;
  o.max_connections = 2;
  ClientRig client(o);

  // Bodies of different sizes (one well over a socket buffer) from two threads.
  auto body_of = [](std::size_t i) {
    std::string pad(i == 7 ? 300000 : i * 37, static_cast<char>('a' + i % 26));
    return "{\"i\":" + std::to_string(i) + ",\"pad\":\"" + pad + "\"}";
  };
  std::vector<bh::ClientCallback> cbs;
  for (std::size_t i = 0; i < kPosts; ++i) cbs.push_back(got.callback(i));
  auto poster = [&](std::size_t from) {
    for (std::size_t i = from; i < kPosts; i += 2) {
      client->post("/events?n=" + std::to_string(i), body_of(i),
                   {{"Idempotency-Key", key_of(i)}, {"X-Seq", std::to_string(i)}},
                   std::move(cbs[i]));
    }
  };
  std::thread a(poster, 0), b(poster, 1);
  a.join();
  b.join();

  REQUIRE(got.wait_all(10s));
  std::this_thread::sleep_for(50ms);  // a second callback would show up here
  auto out = got.snapshot();
  check_each_ok(out);
  for (std::size_t i = 0; i < kPosts; ++i) CHECK(out[i].res.body == "{}");

  auto seen = by_key(backend);
  CHECK(backend.count() == kPosts);
  std::set<std::uint64_t> conns;
  for (std::size_t i = 0; i < kPosts; ++i) {
    INFO("post " << i);
    REQUIRE(seen[key_of(i)].size() == 1);
    const auto& r = seen[key_of(i)].front();
    conns.insert(r.connection);
    CHECK(r.method == "POST");
    CHECK(r.target == "/events?n=" + std::to_string(i));
    CHECK(r.header("content-type") == "application/json");
    CHECK(r.header("content-length") == std::to_string(body_of(i).size()));
    CHECK(r.header("x-seq") == std::to_string(i));
    CHECK(r.header("host") == "127.0.0.1:" + std::to_string(backend.port()));
    CHECK(r.body == body_of(i));
  }
  CHECK(conns.size() <= 2);
  CHECK(backend.connections_accepted() <= 2);
}

TEST_CASE("client with pipelining keeps post order on one connection", "[client]") {
  TestBackend backend;
  backend.set_slow(20ms);
  constexpr std::size_t kPosts = 40;
  Collector got(kPosts);
  auto o = options_for(backend.port());
  o.pipeline = 8;
  o.max_connections = 1;
  ClientRig client(o);

  for (std::size_t i = 0; i < kPosts; ++i) {
    client->post("/events", "{\"i\":" + std::to_string(i) + "}", {{"Idempotency-Key", key_of(i)}},
                 got.callback(i));
  }
  REQUIRE(got.wait_all(10s));
  std::this_thread::sleep_for(50ms);
  auto out = got.snapshot();
  check_each_ok(out);
  // Answers come back in post order too.
  for (std::size_t i = 1; i < kPosts; ++i) CHECK(out[i - 1].at <= out[i].at);

  auto reqs = backend.requests();
  CHECK(backend.connections_accepted() == 1);
  REQUIRE(reqs.size() == kPosts);
  std::sort(reqs.begin(), reqs.end(), [](auto& a, auto& b) { return a.order < b.order; });
  for (std::size_t i = 0; i < kPosts; ++i) {
    INFO("arrival " << i);
    CHECK(reqs[i].idempotency_key() == key_of(i));
    CHECK(reqs[i].body == "{\"i\":" + std::to_string(i) + "}");
    CHECK(reqs[i].connection == reqs[0].connection);
  }
}

// The TestBackend serves a connection strictly one request after the other, so
// its timing cannot show overlap. The probe holds its answers until the client
// stops sending: every request that arrives before an answer was outstanding.
TEST_CASE("client with pipelining has several requests outstanding at once, at most `pipeline`",
          "[client]") {
  constexpr std::size_t kPosts = 40;
  PipelineProbe probe(kPosts);
  Collector got(kPosts);
  auto o = options_for(probe.port());
  o.pipeline = 8;
  o.max_connections = 1;
  ClientRig client(o);

  for (std::size_t i = 0; i < kPosts; ++i) {
    client->post("/events", "{}", {{"Idempotency-Key", key_of(i)}}, got.callback(i));
  }
  const bool all = got.wait_all(8s);
  auto out = got.snapshot();
  CHECK(all);
  for (std::size_t i = 0; i < kPosts; ++i) {
    INFO("post " << i << ": " << describe(out[i]));
    CHECK(out[i].calls == 1);
    CHECK(out[i].res.status == 200);
    // Each answer went to the callback of the request it answers.
    CHECK(out[i].res.body == "{\"key\":\"" + key_of(i) + "\"}");
  }
  CHECK(probe.connections() == 1);
  CHECK(probe.max_batch() > 1);
  CHECK(probe.max_batch() <= 8);
  auto keys = probe.keys();
  REQUIRE(keys.size() == kPosts);
  for (std::size_t i = 0; i < kPosts; ++i) CHECK(keys[i] == key_of(i));
}

TEST_CASE("client pipeline: a timed-out front fails alone, the requests behind it are resent",
          "[client]") {
  TestBackend backend;
  constexpr std::size_t kPosts = 4;
  Collector got(kPosts);
  Collector warm(1);
  auto o = options_for(backend.port());
  o.pipeline = 4;
  o.max_connections = 1;
  o.timeout = 300ms;
  o.connect_timeout = 200ms;  // shorter than `timeout`: see the next test for the other way
  ClientRig client(o);

  // A kept-alive connection first, so the four requests below are pipelined on it.
  client->post("/events", "{}", {{"Idempotency-Key", "warm"}}, warm.callback(0));
  REQUIRE(warm.wait_all(5s));
  REQUIRE(warm.snapshot()[0].res.status == 200);

  backend.set_hang();
  // The backend is healed from the timed-out request's callback, on the client's
  // strand: before any resent request can be written.
  std::atomic<int> healed{0};
  client->post("/events", "{\"i\":0}", {{"Idempotency-Key", key_of(0)}},
               got.callback(0, [&](const bh::ClientResponse&) {
                 backend.set_ok();
                 healed++;
               }));
  for (std::size_t i = 1; i < kPosts; ++i) {
    client->post("/events", "{\"i\":" + std::to_string(i) + "}", {{"Idempotency-Key", key_of(i)}},
                 got.callback(i));
  }
  REQUIRE(got.wait_one(0, 3s));
  {
    auto first = got.snapshot()[0];
    INFO(describe(first));
    CHECK(first.res.error == Error::timeout);
    CHECK(ms_between(first.posted, first.at) >= 300);
    CHECK(ms_between(first.posted, first.at) < 700);
  }
  CHECK(got.wait_all(5s));
  std::this_thread::sleep_for(100ms);
  auto out = got.snapshot();
  CHECK(out[0].calls == 1);
  check_each_ok(out, 1);
  auto seen = by_key(backend);
  CHECK(seen[key_of(0)].size() == 1);  // the timed-out one is not resent
  for (std::size_t i = 1; i < kPosts; ++i) {
    INFO("post " << i);
    CHECK(seen[key_of(i)].size() >= 1);
    CHECK(seen[key_of(i)].size() <= 2);
    CHECK(std::count_if(seen[key_of(i)].begin(), seen[key_of(i)].end(),
                        [](auto& r) { return r.delivered(); }) == 1);
  }
  CHECK(healed == 1);
}

TEST_CASE("client timeout fires on time when it is shorter than connect_timeout", "[client]") {
  TestBackend backend;
  backend.set_hang();
  Collector got(1);
  auto o = options_for(backend.port());
  o.max_connections = 1;
  o.timeout = 300ms;
  o.connect_timeout = 2s;  // connects at once; only the exchange can time out
  ClientRig client(o);

  client->post("/events", "{}", {{"Idempotency-Key", key_of(0)}}, got.callback(0));
  REQUIRE(got.wait_all(4s));
  auto out = got.snapshot()[0];
  INFO(describe(out));
  CHECK(out.res.error == Error::timeout);
  CHECK(ms_between(out.posted, out.at) >= 300);
  CHECK(ms_between(out.posted, out.at) < 700);
  CHECK(backend.count() == 1);
}

TEST_CASE("client fails a request that found no free connection in time, without sending it",
          "[client]") {
  // One connection, answers 250 ms apart; a request may wait connect_timeout + timeout (400 ms)
  // for it. The second goes out at 250 ms; the third and fourth would go out at 500 and 750 ms,
  // after their caller's deadline for them ran: they fail unsent instead.
  TestBackend backend;
  backend.set_slow(250ms);
  Collector got(4);
  auto o = options_for(backend.port());
  o.max_connections = 1;
  o.timeout = 300ms;
  o.connect_timeout = 100ms;
  ClientRig client(o);
  for (std::size_t i = 0; i < 4; ++i) {
    client->post("/events", "{}", {{"Idempotency-Key", key_of(i)}}, got.callback(i));
  }
  REQUIRE(got.wait_all(5s));
  const auto out = got.snapshot();
  check_each_ok(std::vector<Outcome>(out.begin(), out.begin() + 2));
  for (std::size_t i = 2; i < 4; ++i) {
    INFO(i << ": " << describe(out[i]));
    CHECK(out[i].calls == 1);
    CHECK(out[i].res.error == Error::timeout);
    CHECK(out[i].res.message.find("not sent") != std::string::npos);
  }
  std::this_thread::sleep_for(300ms);
  const auto seen = by_key(backend);
  CHECK(seen.size() == 2);
  CHECK(seen.count(key_of(2)) == 0);
  CHECK(seen.count(key_of(3)) == 0);
}

TEST_CASE("client fails a sent request whose connection broke after its send_by, unresent",
          "[client]") {
  // One connection; X is answered at 900 ms, so A (submitted at 0) is written at 900 ms,
  // before its send_by (connect_timeout + timeout = 1.05 s). The server reads A and then
  // closes the connection at 1.3 s: too late to send A again, and it says A was sent.
  const int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(lfd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(lfd, 4) == 0);
  socklen_t len = sizeof addr;
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len);
  std::atomic<int> connections{0};
  auto read_head = [](int fd) {
    std::string head;
    char c = 0;
    while (head.find("\r\n\r\n") == std::string::npos && ::recv(fd, &c, 1, 0) == 1) head += c;
  };
  std::thread server([&] {
    const int c = ::accept(lfd, nullptr, nullptr);
    ++connections;
    read_head(c);  // X
    std::this_thread::sleep_for(900ms);
    const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    (void)!::send(c, ok.data(), ok.size(), MSG_NOSIGNAL);
    read_head(c);  // A
    std::this_thread::sleep_for(400ms);
    ::close(c);
    pollfd p{lfd, POLLIN, 0};  // a resend would come on a new connection
    if (::poll(&p, 1, 1500) == 1) {
      ::close(::accept(lfd, nullptr, nullptr));
      ++connections;
    }
  });
  {
    Collector got(2);
    auto o = options_for(ntohs(addr.sin_port));
    o.max_connections = 1;
    o.connect_timeout = 50ms;
    o.timeout = 1s;
    ClientRig client(o);
    client->get("/x", {}, got.callback(0));
    client->get("/a", {}, got.callback(1));
    REQUIRE(got.wait_all(5s));
    const auto out = got.snapshot();
    check_each_ok({out[0]});
    INFO(describe(out[1]));
    CHECK(out[1].calls == 1);
    CHECK(out[1].res.error == Error::io);
    CHECK(out[1].res.message.find("after the request was sent") != std::string::npos);
    server.join();
  }
  ::close(lfd);
  CHECK(connections == 1);
}

TEST_CASE("client reports a refused connection promptly as Error::connect, once per post",
          "[client]") {
  TestBackend backend;
  constexpr std::size_t kPosts = 6;
  auto o = options_for(backend.port());
  o.max_connections = 2;
  o.pipeline = 2;

  SECTION("no connection was ever open") {
    backend.stop();
    Collector got(kPosts);
    ClientRig client(o);
    for (std::size_t i = 0; i < kPosts; ++i) {
      client->post("/events", "{}", {{"Idempotency-Key", key_of(i)}}, got.callback(i));
    }
    REQUIRE(got.wait_all(5s));
    std::this_thread::sleep_for(50ms);
    for (auto& out : got.snapshot()) {
      INFO(describe(out));
      CHECK(out.calls == 1);
      CHECK(out.res.error == Error::connect);
      CHECK(out.res.status == 0);
      CHECK(ms_between(out.posted, out.at) < 500);  // refused, not the 2 s connect timeout
    }
  }
  SECTION("the backend died behind a kept-alive connection") {
    Collector warm(1);
    Collector got(kPosts);
    ClientRig client(o);
    client->post("/events", "{}", {{"Idempotency-Key", "warm"}}, warm.callback(0));
    REQUIRE(warm.wait_all(5s));
    backend.stop();
    for (std::size_t i = 0; i < kPosts; ++i) {
      client->post("/events", "{}", {{"Idempotency-Key", key_of(i)}}, got.callback(i));
    }
    REQUIRE(got.wait_all(5s));
    std::this_thread::sleep_for(50ms);
    for (auto& out : got.snapshot()) {
      INFO(describe(out));
      CHECK(out.calls == 1);
      CHECK(out.res.error == Error::connect);
      CHECK(ms_between(out.posted, out.at) < 500);
    }
    CHECK(backend.count() == 1);  // only the warm-up
  }
}

TEST_CASE("client reports a response cut off mid-body as Error::io and does not resend it",
          "[client]") {
  TestBackend backend;
  auto o = options_for(backend.port());
  o.max_connections = 1;
  const bool reused = GENERATE(false, true);
  INFO((reused ? "on a kept-alive connection" : "on a fresh connection"));
  ClientRig client(o);
  if (reused) post_one(client, "warm");
  backend.set_close_mid_response();
  const auto out = post_one(client, key_of(0));
  std::this_thread::sleep_for(200ms);  // a resend would reach the backend by now
  INFO(describe(out));
  CHECK(out.calls == 1);
  CHECK(out.res.error == Error::io);
  CHECK(out.res.status == 0);
  CHECK(by_key(backend)[key_of(0)].size() == 1);
}

TEST_CASE("client resends transparently when the server dropped its idle kept-alive connection",
          "[client]") {
  TestBackend backend;
  auto o = options_for(backend.port());
  o.max_connections = 1;
  ClientRig client(o);
  REQUIRE(post_one(client, "warm").res.status == 200);
  REQUIRE(backend.connections_accepted() == 1);

  backend.stop();  // resets the idle connection
  backend.start();
  const auto out = post_one(client, key_of(0), "{\"after\":\"restart\"}");
  std::this_thread::sleep_for(50ms);
  INFO(describe(out));
  CHECK(out.calls == 1);
  CHECK(out.res.error == Error::none);
  CHECK(out.res.status == 200);
  auto seen = by_key(backend)[key_of(0)];
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].delivered());
  CHECK(seen[0].body == "{\"after\":\"restart\"}");
  CHECK(seen[0].connection == 2);  // a new connection
  CHECK(backend.connections_accepted() == 2);
}

TEST_CASE("client without resend_posts fails a written POST whose connection broke, unresent",
          "[client]") {
  // A platform send has no idempotency key: once written it may have been taken, so a break
  // without an answer must come back as a failure, not reach the platform a second time.
  TestBackend backend;
  auto o = options_for(backend.port());
  o.max_connections = 1;
  const bool resend = GENERATE(true, false);
  o.resend_posts = resend;
  INFO((resend ? "resend_posts on" : "resend_posts off"));
  ClientRig client(o);
  post_one(client, "warm");        // the connection is kept alive: a break on it may be resent
  backend.set_close_unanswered();  // takes the request, closes without an answer byte
  const auto out = post_one(client, key_of(0));
  std::this_thread::sleep_for(200ms);  // a resend would reach the backend by now
  INFO(describe(out));
  CHECK(out.calls == 1);
  CHECK(out.res.error == Error::io);  // the resend, if any, met the same end
  CHECK(by_key(backend)[key_of(0)].size() == (resend ? 2u : 1u));
}

TEST_CASE(
    "client without resend_posts does not write a POST into an idle connection the server "
    "closed",
    "[client]") {
  // With no resend to fall back on, a POST written into a connection the server has closed
  // (its keep-alive timeout, a restart) would fail for nothing: the client notices first.
  TestBackend backend;
  auto o = options_for(backend.port());
  o.max_connections = 1;
  o.resend_posts = false;
  ClientRig client(o);
  post_one(client, "warm");
  backend.stop();  // closes the idle connection
  backend.start();
  std::this_thread::sleep_for(50ms);
  const auto out = post_one(client, key_of(0));
  INFO(describe(out));
  CHECK(out.calls == 1);
  CHECK(out.res.error == Error::none);
  CHECK(out.res.status == 200);
  auto seen = by_key(backend)[key_of(0)];
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].connection == 2);
}

// Leaves `n` kept-alive connections idle in the client's pool: n posts at once to a backend
// slow enough that each needs a connection of its own. The backend is left answering 200.
void open_idle_connections(ClientRig& client, TestBackend& backend, std::size_t n) {
  backend.set_slow(100ms);
  Collector warm(n);
  for (std::size_t i = 0; i < n; ++i) {
    client->post("/events", "{}", {{"Idempotency-Key", "warm-" + std::to_string(i)}},
                 warm.callback(i));
  }
  REQUIRE(warm.wait_all(5s));
  REQUIRE(backend.connections_accepted() == n);
  backend.set_ok();
}

TEST_CASE("client survives a server restart that reset several idle kept-alive connections",
          "[client]") {
  // The server restarts and every kept-alive connection in the pool is dead. Each post must
  // still succeed: after the first dead connection the client must not try the next one.
  TestBackend backend;
  auto o = options_for(backend.port());
  o.max_connections = 4;
  ClientRig client(o);
  open_idle_connections(client, backend, 4);

  backend.stop();  // resets all four idle connections
  backend.start();
  Collector got(4);
  for (std::size_t i = 0; i < 4; ++i) {
    client->post("/events", "{}", {{"Idempotency-Key", key_of(i)}}, got.callback(i));
    REQUIRE(got.wait_one(i, 5s));  // one at a time: each would meet a dead idle connection
  }
  auto out = got.snapshot();
  check_each_ok(out);
}

TEST_CASE("client keeps its other idle connections when a server closes one in order", "[client]") {
  // `Connection: close` on one answer is routine (keepalive_requests, error pages): it must
  // cost that one connection, not the whole idle pool.
  TestBackend backend;
  auto o = options_for(backend.port());
  o.max_connections = 4;
  ClientRig client(o);
  open_idle_connections(client, backend, 4);

  backend.set_close_after_answer();
  Collector closing(1);
  client->post("/events", "{}", {{"Idempotency-Key", "closing"}}, closing.callback(0));
  REQUIRE(closing.wait_all(5s));
  REQUIRE(closing.snapshot()[0].res.status == 200);

  backend.set_ok();
  Collector got(3);
  for (std::size_t i = 0; i < 3; ++i) {
    client->post("/events", "{}", {{"Idempotency-Key", key_of(i)}}, got.callback(i));
    REQUIRE(got.wait_one(i, 5s));
    INFO(key_of(i) << ": " << describe(got.snapshot()[i]));
    CHECK(got.snapshot()[i].res.status == 200);
  }
  CHECK(backend.connections_accepted() == 4);  // the three idle ones were reused
}

TEST_CASE("client with pipelining serves a server that closes after every answer", "[client]") {
  // HTTP/1.0-style servers answer `Connection: close` every time. What was pipelined behind
  // such an answer was never processed: it goes out again, however often that happens.
  TestBackend backend;
  backend.set_close_after_answer();
  constexpr std::size_t kPosts = 200;
  Collector got(kPosts);
  auto o = options_for(backend.port());
  o.pipeline = 4;
  o.max_connections = 2;
  ClientRig client(o);
  for (std::size_t i = 0; i < kPosts; ++i) {
    client->post("/events", "{}", {{"Idempotency-Key", key_of(i)}}, got.callback(i));
  }
  REQUIRE(got.wait_all(30s));
  std::this_thread::sleep_for(50ms);
  auto out = got.snapshot();
  check_each_ok(out);
  std::set<std::string> keys;
  for (const auto& r : backend.requests()) CHECK(keys.insert(r.idempotency_key()).second);
  CHECK(keys.size() == kPosts);
}

TEST_CASE("client replaces CR and LF in header values: no header injection", "[client]") {
  TestBackend backend;
  auto o = options_for(backend.port());
  Collector got(3);
  ClientRig client(o);
  client->post("/events", "{\"a\":1}",
               {{"Idempotency-Key", key_of(0)}, {"X-Note", "a\r\nX-Injected: yes"}},
               got.callback(0));
  client->post("/events", "text/xml\r\nX-Injected: ct", "<xml/>", {{"Idempotency-Key", key_of(2)}},
               got.callback(2));
  client->post("/events", "{\"a\":2}",
               {{"Idempotency-Key", key_of(1)}, {"X-Note", "b\nX-Injected: lf\rX-Also: cr"}},
               got.callback(1));
  REQUIRE(got.wait_all(5s));
  for (auto& out : got.snapshot()) {
    INFO(describe(out));
    CHECK(out.res.status == 200);
  }
  auto seen = by_key(backend);
  REQUIRE(seen[key_of(0)].size() == 1);
  REQUIRE(seen[key_of(1)].size() == 1);
  const auto& r0 = seen[key_of(0)][0];
  const auto& r1 = seen[key_of(1)][0];
  CHECK(r0.header("x-note") == "a  X-Injected: yes");
  CHECK(r0.header("x-injected").empty());
  CHECK(r0.body == "{\"a\":1}");
  CHECK(r1.header("x-note") == "b X-Injected: lf X-Also: cr");
  CHECK(r1.header("x-injected").empty());
  CHECK(r1.header("x-also").empty());
  CHECK(r1.body == "{\"a\":2}");
  REQUIRE(seen[key_of(2)].size() == 1);
  const auto& r2 = seen[key_of(2)][0];
  CHECK(r2.header("content-type") == "text/xml  X-Injected: ct");
  CHECK(r2.header("x-injected").empty());
  CHECK(r2.body == "<xml/>");
  CHECK(backend.count() == 3);
}

TEST_CASE("client skips interim 1xx answers and matches each final answer to its request",
          "[client]") {
  // A raw server on one connection: the first request gets 103 Early Hints, then
  // 200; the second gets 500. Were the 103 taken as the first answer, the 200
  // would be handed to the second request.
  int listen_fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(listen_fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(listen_fd, 4) == 0);
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::uint16_t port = ntohs(addr.sin_port);

  std::thread server([listen_fd] {
    int fd = ::accept(listen_fd, nullptr, nullptr);
    if (fd < 0) return;
    const char* answers[] = {
        "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst",
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 6\r\n\r\nsecond"};
    std::string in;
    char buf[4096];
    for (const char* answer : answers) {
      // One whole request: its head, then Content-Length bytes of body.
      for (;;) {
        auto head_end = in.find("\r\n\r\n");
        if (head_end != std::string::npos) {
          auto cl = in.find("Content-Length: ");
          std::size_t body = cl == std::string::npos ? 0 : std::stoul(in.substr(cl + 16));
          if (in.size() >= head_end + 4 + body) {
            in.erase(0, head_end + 4 + body);
            break;
          }
        }
        auto n = ::read(fd, buf, sizeof buf);
        if (n <= 0) {
          ::close(fd);
          return;
        }
        in.append(buf, static_cast<std::size_t>(n));
      }
      std::string out(answer);
      if (::write(fd, out.data(), out.size()) != static_cast<ssize_t>(out.size())) break;
    }
    ::sleep(1);  // keep the connection open while the client reads
    ::close(fd);
  });

  {
    auto o = options_for(port);
    o.max_connections = 1;
    Collector got(2);
    ClientRig client(o);
    client->post("/events", R"({"n":1})", {{"Idempotency-Key", key_of(0)}}, got.callback(0));
    REQUIRE(got.wait_one(0, 5s));
    client->post("/events", R"({"n":2})", {{"Idempotency-Key", key_of(1)}}, got.callback(1));
    REQUIRE(got.wait_all(5s));
    auto out = got.snapshot();
    INFO(describe(out[0]) << " / " << describe(out[1]));
    CHECK(out[0].calls == 1);
    CHECK(out[0].res.status == 200);
    CHECK(out[0].res.body == "first");
    CHECK(out[1].calls == 1);
    CHECK(out[1].res.status == 500);
    CHECK(out[1].res.body == "second");
  }
  server.join();
  ::close(listen_fd);
}
