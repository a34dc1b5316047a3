// The router actor on CAF's deterministic test scheduler: messages run only inside run(), and
// a delayed message (the router's tick) is delivered only when the test fires it, so the tests
// can count the timers the router keeps. The router reads the real steady clock: the tests
// move time by sleeping.
#include "actors/router_actor.hpp"

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "actors/messages.hpp"
#include "core/metrics.hpp"
#include "tests/unit/fake_targets.hpp"

using namespace std::chrono_literals;
using namespace botgate::test;

namespace {

// Stands in for a shard: forwards deliveries to the router (so that it is their sender) and
// keeps the answers.
caf::behavior fake_shard(caf::event_based_actor* self, botgate::router_actor router,
                         std::shared_ptr<std::vector<botgate::Answer>> answers) {
  return {
      [self, router](botgate::deliver_atom, botgate::Deliveries& d) {
        self->send(router, botgate::deliver_atom::value, std::move(d));
      },
      [answers](botgate::outcome_atom, const botgate::Answers& a) {
        answers->insert(answers->end(), a.begin(), a.end());
      },
  };
}

struct TestRouter {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::scheduler::test_coordinator* sched = nullptr;
  std::shared_ptr<Recorder> rec = std::make_shared<Recorder>();
  std::shared_ptr<std::vector<botgate::Answer>> answers =
      std::make_shared<std::vector<botgate::Answer>>();
  std::vector<std::unique_ptr<botgate::TargetMetrics>> metrics;
  std::vector<botgate::target_actor> targets;
  botgate::router_actor router;
  caf::actor shard;

  TestRouter(std::vector<std::pair<std::string, Script>> fakes, botgate::RouterOptions ro) {
    cfg.set("scheduler.policy", caf::atom("testing"));
    sys = std::make_unique<caf::actor_system>(cfg);
    sched = &dynamic_cast<caf::scheduler::test_coordinator&>(sys->scheduler());
    std::vector<std::string> names;
    ro.targets.resize(fakes.size());
    for (std::size_t i = 0; i < fakes.size(); ++i) {
      names.push_back(fakes[i].first);
      metrics.push_back(std::make_unique<botgate::TargetMetrics>(fakes[i].first));
      ro.targets[i].metrics = metrics.back().get();
      targets.push_back(sys->spawn(fake_target, fakes[i].first, rec, fakes[i].second));
    }
    router = sys->spawn(botgate::router, targets, names, ro);
    shard = sys->spawn(fake_shard, router, answers);
    sched->run();
  }

  ~TestRouter() {
    caf::anon_send_exit(shard, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(router, caf::exit_reason::user_shutdown);
    for (auto& t : targets) caf::anon_send_exit(t, caf::exit_reason::user_shutdown);
    sched->run();
    while (sched->trigger_timeout()) sched->run();
  }

  void deliver(const std::vector<std::string>& ids) {
    botgate::Deliveries d;
    for (const auto& id : ids) {
      auto ev = std::make_shared<botgate::Event>();
      ev->source = "src";
      ev->id = id;
      ev->conversation = "conv-" + id;
      ev->received_at = botgate::Clock::now();
      d.push_back(botgate::Delivery{ev, 1, ""});
    }
    caf::anon_send(shard, botgate::deliver_atom::value, std::move(d));
    sched->run();
  }

  std::size_t pending_timers() const { return sched->clock().schedule().size(); }

  // Fires the timers due within `within` of the scheduler's clock, one after another, at
  // most `limit`; returns how many fired.
  int fire_due(std::chrono::milliseconds within, int limit) {
    int fired = 0;
    for (; fired < limit; ++fired) {
      const auto& schedule = sched->clock().schedule();
      if (schedule.empty() || schedule.begin()->first - sched->clock().now() > within) break;
      sched->trigger_timeout();
      sched->run();
    }
    return fired;
  }
};

}  // namespace

TEST_CASE("router keeps one or two tick timers however often a rate limit wakes it",
          "[actors][router]") {
  botgate::RouterOptions ro;
  ro.attempt_timeout = 10s;
  ro.targets.resize(1);
  ro.targets[0].limits = botgate::TargetLimits{0, 100.0, 1};  // 100/s, burst 1
  TestRouter h({{"t1", never_answers()}}, ro);
  std::vector<std::string> ids;
  for (int i = 0; i < 40; ++i) ids.push_back("r" + std::to_string(i));
  h.deliver(ids);  // one goes at once, 39 wait for tokens, every attempt's deadline runs
  std::size_t most = h.pending_timers();
  for (int k = 0; k < 25; ++k) {
    std::this_thread::sleep_for(12ms);    // a token is back
    REQUIRE(h.sched->trigger_timeout());  // the earliest timer: the rate-limit wake-up
    h.sched->run();
    most = std::max(most, h.pending_timers());
  }
  REQUIRE(h.rec->seen().size() >= 20);
  // The deadline tick and a wake-up; not one more deadline tick per wake-up.
  CHECK(most <= 3);
}

TEST_CASE("router waiting on a tiny rate limit does not spin on its tick", "[actors][router]") {
  botgate::RouterOptions ro;
  ro.attempt_timeout = 10s;
  ro.targets.resize(1);
  ro.targets[0].limits = botgate::TargetLimits{0, 1e-12, 1};
  TestRouter h({{"t1", always(200)}}, ro);
  h.deliver({"a", "b"});  // "a" takes the only token; "b" waits for the next, ages away
  CHECK(h.rec->seen().size() == 1);
  CHECK(h.fire_due(1s, 1000) < 5);
}

TEST_CASE("router's ejected gauge counts a target ejected again before its return was noticed",
          "[actors][router]") {
  botgate::RouterOptions ro;
  ro.policy = botgate::PolicyKind::failover;  // t1 while it is eligible
  ro.attempt_timeout = 10s;
  ro.outlier.consecutive_failures = 1;
  ro.outlier.base_ejection_time = 100ms;
  ro.outlier.max_ejection_time = 1s;
  ro.outlier.max_ejection_percent = 50;
  TestRouter h({{"t1", always(500)}, {"t2", always(200)}}, ro);
  auto& ejected = h.metrics[0]->ejected;
  h.deliver({"e1"});  // t1 answers 500: ejected for 100 ms
  REQUIRE(h.metrics[0]->ejections.value() == 1);
  REQUIRE(ejected.value() == 1);
  // The ejection ends; before the router's tick notices, a delivery goes to t1 again, fails
  // and ejects it once more. One pool: t1 is ejected from it or not.
  std::this_thread::sleep_for(150ms);
  h.deliver({"e2"});
  REQUIRE(h.metrics[0]->ejections.value() == 2);
  CHECK(ejected.value() == 1);
  // Once that ejection (200 ms) is over and the ticks ran, nothing is ejected.
  std::this_thread::sleep_for(300ms);
  while (h.sched->trigger_timeout()) h.sched->run();
  CHECK(ejected.value() == 0);
}

namespace {

// Tells the router that the platform refuses t's credentials, as a token actor does.
void refuse_credentials(TestRouter& h, const std::string& t) {
  botgate::ProbeResult r;
  r.target = t;
  r.healthy = false;
  r.error = "errcode 40125: invalid appsecret";
  r.credentials = true;
  caf::anon_send(h.router, botgate::health_atom::value, r);
  h.sched->run();
}

}  // namespace

TEST_CASE("router leaves a send in flight on a target that cannot take it back when it goes down",
          "[actors][router]") {
  // An account's send may already be with the platform, which has no idempotency key: sent
  // through another account as well, the user would get it twice. A backend's may move, unless
  // that send would be one more than max_attempts allows.
  enum class Kind { account, http, http_at_max_attempts };
  const Kind kind = GENERATE(Kind::account, Kind::http, Kind::http_at_max_attempts);
  const bool account = kind == Kind::account;
  const bool stays = kind != Kind::http;
  INFO((account ? "account target" : stays ? "http target, max_attempts 1" : "http target"));
  botgate::RouterOptions ro;
  if (kind == Kind::http_at_max_attempts) ro.max_attempts = 1;
  ro.policy = botgate::PolicyKind::failover;
  ro.attempt_timeout = 10s;
  ro.outlier.consecutive_failures = 1;
  ro.outlier.max_ejection_percent = 50;
  ro.targets.resize(2);
  ro.targets[0].reroute_in_flight = !account;
  // t1 keeps "slow" in flight and fails everything else.
  Script t1 = [](const botgate::Event& ev, std::uint32_t) -> std::optional<unsigned> {
    if (ev.id.starts_with("slow")) return std::nullopt;
    return 503u;
  };
  const bool by_ejection = GENERATE(false, true);
  INFO((by_ejection ? "ejected by outlier detection" : "credentials refused"));
  TestRouter h({{"t1", t1}, {"t2", always(200)}}, ro);
  h.deliver({"slow"});
  REQUIRE(h.rec->seen() == std::vector<Attempt>{{"t1", "slow", 1}});
  if (by_ejection) {
    h.deliver({"fails"});  // 503 from t1: ejected
    REQUIRE(h.metrics[0]->ejections.value() == 1);
  } else {
    refuse_credentials(h, "t1");
  }
  const auto slow = h.rec->seen_for("slow");
  if (stays) {
    CHECK(slow.size() == 1);  // still t1's, answered by t1 or by its deadline
  } else {
    REQUIRE(slow.size() == 2);
    CHECK(slow[1] == Attempt{"t2", "slow", 2});
  }
}

TEST_CASE("router answers an attempt that waited for a target past max_age, saying why",
          "[actors][router]") {
  // Every account refused: the attempt waits in the router, where the shard cannot see its
  // age. Once its event is max_age old it is answered as failed, and the shard gives it up.
  botgate::RouterOptions ro;
  ro.pool = "accts";
  ro.attempt_timeout = 10s;
  ro.max_age = 200ms;
  TestRouter h({{"acct-a", always(200)}, {"acct-b", always(200)}}, ro);
  refuse_credentials(h, "acct-a");
  refuse_credentials(h, "acct-b");
  h.deliver({"w1"});
  CHECK(h.rec->seen().empty());
  CHECK(h.answers->empty());
  std::this_thread::sleep_for(250ms);
  while (h.sched->trigger_timeout()) h.sched->run();
  REQUIRE(h.answers->size() == 1);
  const auto& out = (*h.answers)[0].outcome;
  CHECK((*h.answers)[0].ev->id == "w1");
  CHECK(out.target == "accts");
  CHECK(out.status == 0);  // a failure to retry, which max_age forbids: a dead letter
  CHECK(out.sends == 0);   // nothing was sent: the dead letter counts no attempt for it
  CHECK(out.error ==
        "no target took it within max_age (200ms): acct-a: credentials refused (errcode 40125: "
        "invalid appsecret); acct-b: credentials refused (errcode 40125: invalid appsecret)");
  CHECK(h.rec->seen().empty());
  // It is gone from the router: a target coming back sends nothing.
  botgate::ProbeResult ok;
  ok.target = "acct-a";
  ok.healthy = true;
  ok.credentials = true;
  caf::anon_send(h.router, botgate::health_atom::value, ok);
  h.sched->run();
  CHECK(h.rec->seen().empty());
}
