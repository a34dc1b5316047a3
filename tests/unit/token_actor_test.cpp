// The token actor against a token endpoint on 127.0.0.1 (tests/support/mini_server): how
// long it keeps a token, and what askers get while a refresh runs.
#include "actors/token_actor.hpp"

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <caf/all.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/support/eventually.hpp"
#include "tests/support/mini_server.hpp"

using namespace std::chrono_literals;
using botgate::test::eventually;
using botgate::test::MiniReply;
using botgate::test::MiniRequest;
using botgate::test::MiniServer;

namespace {

// A token endpoint answering fetch k with bodies[min(k, last)], after delays[k] (0 if none).
class TokenEndpoint {
 public:
  TokenEndpoint(std::vector<std::string> bodies, std::vector<std::chrono::milliseconds> delays)
      : bodies_(std::move(bodies)), delays_(std::move(delays)), server_([this](const MiniRequest&) {
          const std::size_t k = fetches_++;
          MiniReply r;
          r.body = bodies_[std::min(k, bodies_.size() - 1)];
          if (k < delays_.size()) r.delay = delays_[k];
          return r;
        }) {}
  std::uint16_t port() const { return server_.port(); }
  std::size_t fetches() const { return fetches_.load(); }

 private:
  std::vector<std::string> bodies_;
  std::vector<std::chrono::milliseconds> delays_;
  std::atomic<std::size_t> fetches_{0};
  MiniServer server_;  // last: stopped first, while the members its handler uses still live
};

// A token actor with its HTTP client on an io thread of its own.
struct TokenRig {
  boost::asio::io_context ioc;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{ioc.get_executor()};
  std::thread io;
  std::shared_ptr<botgate::http::HttpClient> client;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  botgate::token_actor tokens;

  // min_life: below the default, so that the tests may use tokens living seconds.
  TokenRig(std::uint16_t port, botgate::Duration margin, botgate::Duration min_life = 1s) {
    botgate::http::ClientOptions co;
    co.host = "127.0.0.1";
    co.port = port;
    co.timeout = 5s;
    client = botgate::http::HttpClient::create(ioc, co);
    io = std::thread([this] { ioc.run(); });
    cfg.set("scheduler.max-threads", std::size_t{2});
    sys = std::make_unique<caf::actor_system>(cfg);
    botgate::TokenOptions o;
    o.id = "wxapp";
    o.secret = "secret";
    o.margin = margin;
    o.min_life = min_life;
    o.watchers = std::make_shared<const std::vector<botgate::TokenOptions::Watcher>>();
    o.metrics = std::make_shared<const std::vector<botgate::TargetMetrics*>>();
    tokens = sys->spawn(botgate::token_cache, std::move(o), client);
  }
  ~TokenRig() {
    caf::anon_send_exit(tokens, caf::exit_reason::user_shutdown);
    sys.reset();
    client->shutdown();
    work.reset();
    ioc.stop();
    io.join();
  }

  // What an asker gets: the token, or the error.
  botgate::AccessToken answer() {
    caf::scoped_actor self{*sys};
    botgate::AccessToken got;
    self->request(tokens, 10s, botgate::token_atom::value)
        .receive([&](botgate::AccessToken& t) { got = std::move(t); },
                 [&](caf::error& e) { got.error = caf::to_string(e); });
    return got;
  }

  // The token an asker gets ("" on an error), and how long the answer took.
  std::pair<std::string, std::chrono::milliseconds> ask() {
    caf::scoped_actor self{*sys};
    std::string got;
    const auto t0 = std::chrono::steady_clock::now();
    self->request(tokens, 10s, botgate::token_atom::value)
        .receive([&](botgate::AccessToken& t) { got = t.token; }, [](caf::error&) {});
    return {got, std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - t0)};
  }
};

}  // namespace

TEST_CASE("token actor takes an absurd expires_in as a day, not as a token to fetch again",
          "[actors][token]") {
  TokenEndpoint endpoint({R"({"access_token":"TOKEN-1","expires_in":10000000000})"}, {});
  TokenRig rig(endpoint.port(), 5min);
  REQUIRE(rig.ask().first == "TOKEN-1");
  std::this_thread::sleep_for(500ms);
  CHECK(rig.ask().first == "TOKEN-1");
  CHECK(endpoint.fetches() == 1);
}

TEST_CASE("token actor serves the still-valid token while its refresh runs", "[actors][token]") {
  // TOKEN-1 lives 4 s and is refreshed 2 s before that; the refresh takes 1.5 s.
  TokenEndpoint endpoint({R"({"access_token":"TOKEN-1","expires_in":4})",
                          R"({"access_token":"TOKEN-2","expires_in":7200})"},
                         {0ms, 1500ms});
  TokenRig rig(endpoint.port(), 2s);
  REQUIRE(rig.ask().first == "TOKEN-1");
  REQUIRE(eventually([&] { return endpoint.fetches() == 2; }, 4s));  // the refresh runs
  const auto [token, took] = rig.ask();
  INFO(token << " after " << took.count() << " ms");
  CHECK(token == "TOKEN-1");
  CHECK(took < 300ms);
  // Once the refresh is in, askers get the new token.
  CHECK(eventually([&] { return rig.ask().first == "TOKEN-2"; }, 4s));
  CHECK(endpoint.fetches() == 2);
}

TEST_CASE("token actor takes a fractional or huge expires_in as a number of seconds",
          "[actors][token]") {
  const std::string expires = GENERATE(as<std::string>{}, "7200.0", "1e20");
  INFO("expires_in " << expires);
  TokenEndpoint endpoint({R"({"access_token":"TOKEN-1","expires_in":)" + expires + "}"}, {});
  TokenRig rig(endpoint.port(), 5min, 60s);
  const auto t = rig.answer();
  INFO(t.error);
  CHECK(t.token == "TOKEN-1");
  std::this_thread::sleep_for(300ms);
  CHECK(rig.answer().token == "TOKEN-1");
  CHECK(endpoint.fetches() == 1);
}

TEST_CASE("token actor says why an answer gives no usable token", "[actors][token]") {
  struct Case {
    std::string body;
    std::string error;
  };
  const Case c = GENERATE(
      Case{R"({"errcode":0,"errmsg":"ok","expires_in":7200})", "the answer has no access_token"},
      Case{R"({"access_token":"","expires_in":7200})", "the answer has no access_token"},
      Case{R"({"access_token":"TOKEN-1"})", "the answer has no expires_in"},
      Case{R"({"access_token":"TOKEN-1","expires_in":0})", "its expires_in 0 is not positive"},
      Case{R"({"access_token":"TOKEN-1","expires_in":-7200})",
           "its expires_in -7200 is not positive"},
      // Cached, it would go into every send's query and each would fail (414).
      Case{R"({"access_token":")" + std::string(200000, 'A') + R"(","expires_in":7200})",
           "its access_token is 200000 bytes long, over 2048"},
      Case{"<html>busy</html>", "the answer is not a JSON object"});
  INFO(c.body.substr(0, 80));
  TokenEndpoint endpoint({c.body}, {});
  TokenRig rig(endpoint.port(), 5min, 60s);
  const auto t = rig.answer();
  CHECK(t.token.empty());
  CHECK(t.error == "token fetch failed: " + c.error);
}

TEST_CASE("token actor does not use a token living under min_life, and backs off",
          "[actors][token]") {
  // Refreshed at half its life, a 1 s token was fetched twice a second, with no traffic,
  // until the platform's daily token quota ran out.
  TokenEndpoint endpoint({R"({"access_token":"TOKEN-1","expires_in":1})"}, {});
  TokenRig rig(endpoint.port(), 5min, 60s);
  const auto t = rig.answer();
  CHECK(t.token.empty());
  CHECK(t.error == "token fetch failed: its expires_in 1s is under token_min_life (1m)");
  // Failed fetches are retried after U[0, 1 s], U[0, 2 s], U[0, 4 s], ...: about 4 in 4 s,
  // where refreshing at half life made 8.
  std::this_thread::sleep_for(4s);
  INFO("fetches " << endpoint.fetches());
  CHECK(endpoint.fetches() <= 6);
}
