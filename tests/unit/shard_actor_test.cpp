// The shard and router actors against scripted fake targets: ordering per
// conversation, retries on another target, dead letters, back-pressure, timeouts.
#include "actors/shard_actor.hpp"

#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "actors/messages.hpp"
#include "actors/router_actor.hpp"
#include "core/metrics.hpp"
#include "policies/delivery_rules.hpp"
#include "storage/shard_store.hpp"
#include "tests/support/eventually.hpp"
#include "tests/unit/fake_targets.hpp"
#include "tests/unit/scratch_dir.hpp"

using namespace std::chrono_literals;
using botgate::AckFn;
using botgate::Event;
using botgate::EventPtr;
using botgate::IngestStatus;
using botgate::Outcome;
using botgate::router_actor;
using botgate::shard_actor;
using botgate::ShardOptions;
using botgate::target_actor;

namespace {

using namespace botgate::test;

ShardOptions fast_options() {
  ShardOptions o;
  o.index = 0;
  o.max_pending = 1000;
  o.max_attempts = 5;
  o.max_age = 1h;
  o.backoff = botgate::Backoff{1ms, 5ms};
  return o;
}

using botgate::test::eventually;
using botgate::test::ScratchDir;

// One actor system with two fake targets t1, t2 behind a round-robin router and
// one shard (with its log in a scratch directory) routing source "src" to it.
struct Harness {
  std::shared_ptr<ScratchDir> dir;
  botgate::Metrics metrics{1, {"t1", "t2"}};
  std::shared_ptr<Recorder> rec = std::make_shared<Recorder>();
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  target_actor t1, t2;
  router_actor router;
  shard_actor shard;

  // Pass the `dir` of an earlier (destroyed) Harness to restart on its log.
  Harness(Script s1, Script s2, ShardOptions opts, botgate::Duration attempt_timeout = 200ms,
          std::shared_ptr<ScratchDir> queue_dir = nullptr,
          botgate::PolicyKind policy = botgate::PolicyKind::round_robin,
          std::vector<std::uint32_t> weights = {})
      : dir(queue_dir ? std::move(queue_dir) : std::make_shared<ScratchDir>()) {
    cfg.set("scheduler.max-threads", std::size_t{2});
    sys = std::make_unique<caf::actor_system>(cfg);
    t1 = sys->spawn(fake_target, std::string("t1"), rec, std::move(s1));
    t2 = sys->spawn(fake_target, std::string("t2"), rec, std::move(s2));
    // The router times out a silent target.
    botgate::RouterOptions ropts;
    ropts.policy = policy;
    ropts.weights = weights;
    ropts.attempt_timeout = attempt_timeout;
    ropts.max_age = opts.max_age;  // as app/gateway.cpp sets them
    ropts.max_attempts = opts.max_attempts;
    router = sys->spawn(botgate::router, std::vector<target_actor>{t1, t2},
                        std::vector<std::string>{"t1", "t2"}, ropts);
    std::unordered_map<std::string, router_actor> routes{{"pool", router}};
    opts.sources["src"] = botgate::SourceRoutes{"pool", ""};
    auto recovered = std::make_shared<botgate::storage::Recovered>();
    store_options.memory_window = opts.memory_window;  // as app/queue_dir.cpp does
    std::shared_ptr<botgate::storage::ShardStore> store =
        botgate::storage::ShardStore::open(dir->path, store_options, *recovered);
    recovered_pending = recovered->pending;
    shard = sys->spawn(botgate::shard, std::move(opts), &metrics, routes, store, recovered);
  }

  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  ~Harness() {
    caf::anon_send_exit(shard, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(router, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(t1, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(t2, caf::exit_reason::user_shutdown);
    sys.reset();  // waits for every actor before `metrics` goes away
  }

  botgate::storage::StoreOptions store_options;
  std::uint64_t recovered_pending = 0;

  void ingest(const std::string& id, const std::string& conversation,
              const std::string& source = "src") {
    auto ev = std::make_shared<Event>();
    ev->source = source;
    ev->id = id;
    ev->conversation = conversation;
    ev->raw = R"({"id":")" + id + R"(","conversation":")" + conversation + R"("})";
    ev->received_at = botgate::Clock::now();
    ev->received_wall = std::chrono::system_clock::now();
    auto r = rec;
    AckFn ack = [r, id](IngestStatus s) { r->acked(id, s); };
    caf::anon_send(shard, botgate::ingest_atom::value, EventPtr(std::move(ev)), std::move(ack));
  }

  std::optional<std::uint64_t> pending() {
    std::optional<std::uint64_t> n;
    caf::scoped_actor self{*sys};
    self->request(shard, std::chrono::seconds(2), botgate::pending_atom::value)
        .receive([&](std::uint64_t v) { n = v; }, [&](caf::error&) {});
    return n;
  }

  // Asks the shard to replay dead letter `id`; "" on success, else the shard's answer.
  std::string replay(const std::string& id) {
    std::string out = "no answer";
    caf::scoped_actor self{*sys};
    self->request(shard, std::chrono::seconds(5), botgate::replay_atom::value, std::string("src"),
                  id)
        .receive([&](std::string& r) { out = r; }, [&](caf::error&) {});
    return out;
  }

  std::uint64_t delivered() { return metrics.events_delivered().value(); }
  std::uint64_t dead_lettered() { return metrics.events_dead_lettered().value(); }
  std::uint64_t retries() { return metrics.delivery_retries().value(); }
};

// The shard's dead letters, as GET /v1/dead-letters lists them.
botgate::DeadLetterList dead_letters(Harness& h) {
  botgate::DeadLetterList list;
  caf::scoped_actor self{*h.sys};
  self->request(h.shard, std::chrono::seconds(2), botgate::list_atom::value, std::uint64_t{10})
      .receive([&](botgate::DeadLetterList& l) { list = std::move(l); }, [&](caf::error&) {});
  return list;
}

// (id, attempt) pairs in the order the fakes saw them.
std::vector<std::pair<std::string, std::uint32_t>> sequence(const std::vector<Attempt>& seen) {
  std::vector<std::pair<std::string, std::uint32_t>> out;
  for (const auto& a : seen) out.emplace_back(a.id, a.attempt);
  return out;
}

using Seq = std::vector<std::pair<std::string, std::uint32_t>>;

}  // namespace

TEST_CASE("shard delivers one conversation strictly in order across retries", "[actors][shard]") {
  // A1 fails twice, A4 once; everything else succeeds first time.
  Script s = fail_on({{"A1", 1}, {"A1", 2}, {"A4", 1}}, 500);
  Harness h(s, s, fast_options());
  for (int i = 1; i <= 6; ++i) h.ingest("A" + std::to_string(i), "conv-A");

  REQUIRE(eventually([&] { return h.delivered() == 6; }));
  const Seq expected{{"A1", 1}, {"A1", 2}, {"A1", 3}, {"A2", 1}, {"A3", 1},
                     {"A4", 1}, {"A4", 2}, {"A5", 1}, {"A6", 1}};
  CHECK(sequence(h.rec->seen()) == expected);
  CHECK(h.retries() == 3);
  CHECK(h.dead_lettered() == 0);
  const auto acks = h.rec->all_acks();
  REQUIRE(acks.size() == 6);
  for (const auto& [id, status] : acks) {
    INFO(id);
    CHECK(status == IngestStatus::accepted);
  }
  REQUIRE(eventually([&] { return h.pending() == std::optional<std::uint64_t>{0}; }));
  CHECK(h.metrics.queue_depth(0).value() == 0);
}

TEST_CASE("shard takes new events in order on a conversation whose queue had emptied",
          "[actors][shard]") {
  // B2 fails once: its retry runs on the reused (idle) queue of conversation B.
  Script s = fail_on({{"B2", 1}}, 500);
  Harness h(s, s, fast_options());
  h.ingest("B1", "conv-B");
  REQUIRE(eventually([&] { return h.delivered() == 1; }));
  REQUIRE(eventually([&] { return h.pending() == std::optional<std::uint64_t>{0}; }));
  for (int i = 2; i <= 4; ++i) h.ingest("B" + std::to_string(i), "conv-B");
  REQUIRE(eventually([&] { return h.delivered() == 4; }));
  const Seq expected{{"B1", 1}, {"B2", 1}, {"B2", 2}, {"B3", 1}, {"B4", 1}};
  CHECK(sequence(h.rec->seen()) == expected);
}

TEST_CASE("a queue key and its flat form hash and compare alike", "[actors][shard]") {
  using botgate::QueueKey;
  const botgate::QueueKeyHash hash;
  const botgate::QueueKeyEqual eq;
  for (const QueueKey k :
       {QueueKey{"", "conv"}, QueueKey{"pool", "conv"},
        QueueKey{"accounts", "oABCDEFGHIJKLMNOPQRSTUVWXYZ01"}, QueueKey{"", ""}}) {
    INFO(k.flat());
    CHECK(hash(k) == hash(k.flat()));
    CHECK(eq(k, k.flat()));
    CHECK(eq(k.flat(), k));
  }
  CHECK(QueueKey{"pool", "conv"}.flat() ==
        "pool\x1f"
        "conv");
  CHECK(QueueKey{"", "conv"}.flat() == "conv");
  // Different pools or conversations are different queues.
  CHECK_FALSE(eq(QueueKey{"pool", "conv"}, QueueKey{"pool", "conw"}.flat()));
  CHECK_FALSE(eq(QueueKey{"pool", "conv"}, QueueKey{"poom", "conv"}.flat()));
  CHECK_FALSE(eq(QueueKey{"pool", "conv"}, QueueKey{"", "conv"}.flat()));
  CHECK_FALSE(eq(QueueKey{"", "conv"}, QueueKey{"pool", "conv"}.flat()));
  CHECK_FALSE(eq(QueueKey{"pool", "conv"}, "pool-conv"));
}

TEST_CASE("shard keeps each of several interleaved conversations in order", "[actors][shard]") {
  Script s = fail_on({{"A1", 1}, {"B2", 1}, {"C1", 1}, {"C1", 2}}, 503);
  Harness h(s, s, fast_options());
  for (int i = 1; i <= 5; ++i) {
    for (const char* c : {"A", "B", "C"}) h.ingest(std::string(c) + std::to_string(i), c);
  }
  REQUIRE(eventually([&] { return h.delivered() == 15; }));
  for (const char* c : {"A", "B", "C"}) {
    // The successful attempt of each event comes after that of its predecessor,
    // and no later event is tried before an earlier one succeeded.
    std::vector<std::string> order;
    for (const auto& a : h.rec->seen()) {
      if (a.id[0] != c[0]) continue;
      if (order.empty() || order.back() != a.id) order.push_back(a.id);
    }
    INFO("conversation " << c);
    CHECK(order == std::vector<std::string>{std::string(c) + "1", std::string(c) + "2",
                                            std::string(c) + "3", std::string(c) + "4",
                                            std::string(c) + "5"});
  }
  CHECK(h.dead_lettered() == 0);
}

TEST_CASE("shard retries a failed event on the other target, not the one that failed",
          "[actors][shard][router]") {
  // A1 goes to t1 and fails; B1 then takes t2, so plain rotation would bring
  // A1's retry back to t1. The router must skip the target that just failed.
  Script s = fail_on({{"A1", 1}}, 500);
  Harness h(s, s, fast_options());
  h.ingest("A1", "conv-A");
  h.ingest("B1", "conv-B");

  REQUIRE(eventually([&] { return h.delivered() == 2; }));
  const auto a1 = h.rec->seen_for("A1");
  REQUIRE(a1.size() == 2);
  CHECK(a1[0].attempt == 1);
  CHECK(a1[1].attempt == 2);
  CHECK(a1[0].target == "t1");
  CHECK(a1[1].target != a1[0].target);
  CHECK(h.retries() == 1);
}

TEST_CASE("shard never sends a retry back to the target that just failed",
          "[actors][shard][router]") {
  // t1 always fails; every retry must land on t2, whatever else is in flight.
  Harness h(always(500), always(200), fast_options());
  for (int i = 1; i <= 8; ++i) {
    h.ingest("E" + std::to_string(i), "conv-" + std::to_string(i));
  }
  REQUIRE(eventually([&] { return h.delivered() == 8; }));
  CHECK(h.dead_lettered() == 0);
  for (int i = 1; i <= 8; ++i) {
    const auto seen = h.rec->seen_for("E" + std::to_string(i));
    INFO("E" << i);
    REQUIRE_FALSE(seen.empty());
    CHECK(seen.back().target == "t2");
    CHECK(seen.size() <= 2);  // a failure on t1 is followed directly by t2
  }
}

TEST_CASE("shard dead-letters a 4xx answer without retrying and moves on", "[actors][shard]") {
  Script s = [](const Event& ev, std::uint32_t) -> std::optional<unsigned> {
    return ev.id == "A1" ? 400u : 200u;
  };
  Harness h(s, s, fast_options());
  h.ingest("A1", "conv-A");
  h.ingest("A2", "conv-A");
  h.ingest("A3", "conv-A");

  REQUIRE(eventually([&] { return h.delivered() == 2 && h.dead_lettered() == 1; }));
  CHECK(sequence(h.rec->seen()) == Seq{{"A1", 1}, {"A2", 1}, {"A3", 1}});
  CHECK(h.retries() == 0);
  REQUIRE(eventually([&] { return h.pending() == std::optional<std::uint64_t>{0}; }));
}

TEST_CASE("shard dead-letters other permanent refusals (404, 410) on the first answer",
          "[actors][shard]") {
  Script s = [](const Event& ev, std::uint32_t) -> std::optional<unsigned> {
    if (ev.id == "A1") return 404u;
    if (ev.id == "A2") return 410u;
    return 204u;
  };
  Harness h(s, s, fast_options());
  h.ingest("A1", "conv-A");
  h.ingest("A2", "conv-A");
  h.ingest("A3", "conv-A");
  REQUIRE(eventually([&] { return h.delivered() == 1 && h.dead_lettered() == 2; }));
  CHECK(sequence(h.rec->seen()) == Seq{{"A1", 1}, {"A2", 1}, {"A3", 1}});
  CHECK(h.retries() == 0);
}

TEST_CASE("shard dead-letters an event after max_attempts and delivers the next",
          "[actors][shard]") {
  auto opts = fast_options();
  opts.max_attempts = 3;
  Script s = [](const Event& ev, std::uint32_t) -> std::optional<unsigned> {
    return ev.id == "A1" ? 503u : 200u;
  };
  Harness h(s, s, opts);
  h.ingest("A1", "conv-A");
  h.ingest("A2", "conv-A");

  REQUIRE(eventually([&] { return h.dead_lettered() == 1 && h.delivered() == 1; }));
  CHECK(sequence(h.rec->seen()) == Seq{{"A1", 1}, {"A1", 2}, {"A1", 3}, {"A2", 1}});
  CHECK(h.retries() == 2);
  REQUIRE(eventually([&] { return h.pending() == std::optional<std::uint64_t>{0}; }));
  CHECK(h.metrics.queue_depth(0).value() == 0);
}

TEST_CASE("shard gives up events older than max_age when their turn comes, unsent",
          "[actors][shard]") {
  auto opts = fast_options();
  opts.max_attempts = 1000000;
  opts.max_age = 300ms;
  // A1 fails until it is older than max_age; A2 and A3 wait behind it that long.
  Script s = [](const Event& ev, std::uint32_t) -> std::optional<unsigned> {
    return ev.id == "A1" ? 503u : 200u;
  };
  Harness h(s, s, opts);
  h.ingest("A1", "conv-A");
  h.ingest("A2", "conv-A");
  h.ingest("A3", "conv-A");
  REQUIRE(eventually([&] { return h.dead_lettered() == 3; }, 5s));
  CHECK(h.rec->seen_for("A2").empty());
  CHECK(h.rec->seen_for("A3").empty());
  CHECK(h.delivered() == 0);
  // A1's reason says what kept it from going, not only its age; A2 and A3 never went.
  const auto list = dead_letters(h);
  REQUIRE(list.size() == 3);
  for (const auto& d : list) {
    INFO(d.id << ": " << d.error);
    CHECK_THAT(d.error, Catch::Contains("older than max_age"));
    CHECK((d.error.find("last failure: t") != std::string::npos) == (d.id == "A1"));
  }
  REQUIRE(eventually([&] { return h.pending() == std::optional<std::uint64_t>{0}; }));
  // The conversation goes on with fresh events.
  h.ingest("A4", "conv-A");
  REQUIRE(eventually([&] { return h.delivered() == 1; }));
  CHECK(h.rec->seen_for("A4").size() == 1);
}

TEST_CASE("shard retries 429 and 408 answers like server errors", "[actors][shard]") {
  Script s = [](const Event& ev, std::uint32_t attempt) -> std::optional<unsigned> {
    if (ev.id == "A1" && attempt == 1) return 429u;
    if (ev.id == "A1" && attempt == 2) return 408u;
    return 200u;
  };
  Harness h(s, s, fast_options());
  h.ingest("A1", "conv-A");
  REQUIRE(eventually([&] { return h.delivered() == 1; }));
  CHECK(sequence(h.rec->seen()) == Seq{{"A1", 1}, {"A1", 2}, {"A1", 3}});
  CHECK(h.dead_lettered() == 0);
}

TEST_CASE("shard answers full once max_pending events are held", "[actors][shard]") {
  auto opts = fast_options();
  opts.max_pending = 2;
  Harness h(never_answers(), never_answers(), opts, 30s);  // nothing completes during the test
  h.ingest("A1", "conv-A");
  h.ingest("A2", "conv-A");
  h.ingest("A3", "conv-A");
  h.ingest("B1", "conv-B");

  REQUIRE(eventually([&] { return h.rec->all_acks().size() == 4; }));
  // "full" is answered at once, "accepted" once stored: compare per id, not in order.
  const auto acks = h.rec->all_acks();
  const std::map<std::string, IngestStatus> by_id(acks.begin(), acks.end());
  CHECK(by_id == std::map<std::string, IngestStatus>{{"A1", IngestStatus::accepted},
                                                     {"A2", IngestStatus::accepted},
                                                     {"A3", IngestStatus::full},
                                                     {"B1", IngestStatus::full}});
  CHECK(h.pending() == std::optional<std::uint64_t>{2});
  CHECK(h.metrics.queue_depth(0).value() == 2);
  // A refused event is never delivered.
  CHECK(h.rec->seen_for("A3").empty());
  CHECK(h.rec->seen_for("B1").empty());
}

TEST_CASE("shard accepts again once a held event completes", "[actors][shard]") {
  auto opts = fast_options();
  opts.max_pending = 1;
  Harness h(always(200), always(200), opts);
  h.ingest("A1", "conv-A");
  REQUIRE(eventually([&] { return h.delivered() == 1; }));
  REQUIRE(eventually([&] { return h.pending() == std::optional<std::uint64_t>{0}; }));
  h.ingest("A2", "conv-A");
  REQUIRE(eventually([&] { return h.delivered() == 2; }));
  const auto acks = h.rec->all_acks();
  REQUIRE(acks.size() == 2);
  CHECK(acks[0].second == IngestStatus::accepted);
  CHECK(acks[1].second == IngestStatus::accepted);
}

TEST_CASE("under load a shard's log syncs at most once per commit_interval", "[actors][shard]") {
  auto opts = fast_options();
  opts.commit_interval = 1s;
  Harness h(never_answers(), never_answers(), opts, 30s);  // no completions: syncs are events'
  const auto syncs = [&] { return h.metrics.log_syncs().value(); };
  const auto acked = [&](std::size_t n) {
    return eventually([&] { return h.rec->all_acks().size() == n; }, 10s);
  };

  h.ingest("A", "conv-A");  // nothing synced before: not held
  REQUIRE(acked(1));
  CHECK(syncs() == 1);

  // Right behind a sync: held until a second after it started, then one sync for both.
  const auto sent_b = std::chrono::steady_clock::now();
  h.ingest("B", "conv-B");
  h.ingest("C", "conv-C");
  REQUIRE(acked(3));
  // Held from A's sync start: less what that sync took (slow under a loaded disk).
  CHECK(std::chrono::steady_clock::now() - sent_b >= 500ms);
  CHECK(syncs() == 2);

  // After a quiet spell longer than the interval, a commit is not held.
  std::this_thread::sleep_for(1100ms);
  const auto sent_d = std::chrono::steady_clock::now();
  h.ingest("D", "conv-D");
  REQUIRE(acked(4));
  CHECK(std::chrono::steady_clock::now() - sent_d < 800ms);
  CHECK(syncs() == 3);
  for (const auto& [id, status] : h.rec->all_acks()) {
    INFO(id);
    CHECK(status == IngestStatus::accepted);
  }
}

TEST_CASE("shard times out a silent target and retries on the other one",
          "[actors][shard][router]") {
  // t1 never answers. A1 goes to t1; B1 then takes t2, so the rotation points at
  // t1 again when A1 times out: its retry must still avoid t1.
  Harness h(never_answers(), always(200), fast_options());
  const auto start = std::chrono::steady_clock::now();
  h.ingest("A1", "conv-A");
  h.ingest("B1", "conv-B");

  REQUIRE(eventually([&] { return h.delivered() == 2; }));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  const auto a1 = h.rec->seen_for("A1");
  REQUIRE(a1.size() >= 2);
  CHECK(a1[0].target == "t1");
  CHECK(a1[1].target == "t2");
  CHECK(a1.size() == 2);
  CHECK(elapsed >= 200ms);  // the retry waited for the attempt timeout
  CHECK(h.dead_lettered() == 0);
}

TEST_CASE("shard retries an attempt that timed out instead of waiting forever", "[actors][shard]") {
  // Only one conversation: after t1's timeout the retry reaches t2.
  Harness h(never_answers(), always(200), fast_options());
  h.ingest("A1", "conv-A");
  h.ingest("A2", "conv-A");
  REQUIRE(eventually([&] { return h.delivered() == 2; }));
  const auto seen = h.rec->seen();
  REQUIRE(seen.size() >= 3);
  CHECK(seen[0] == Attempt{"t1", "A1", 1});
  CHECK(seen[1] == Attempt{"t2", "A1", 2});
  CHECK(h.retries() >= 1);
}

TEST_CASE("a conversation waiting on backoff does not hold back another conversation",
          "[actors][shard]") {
  auto opts = fast_options();
  opts.backoff = botgate::Backoff{60s, 60s};  // A1's retry waits up to a minute
  Script s = fail_on({{"A1", 1}}, 500);
  Harness h(s, s, opts);
  h.ingest("A1", "conv-A");
  // Once the retry is scheduled, conv A is waiting on its backoff.
  REQUIRE(eventually([&] { return h.retries() == 1; }));
  h.ingest("B1", "conv-B");
  h.ingest("B2", "conv-B");

  REQUIRE(eventually([&] { return h.delivered() == 2; }, 3000ms));
  CHECK(h.rec->seen_for("A1").size() == 1);  // A1 is still waiting
  CHECK(sequence(h.rec->seen_for("B1")) == Seq{{"B1", 1}});
  CHECK(sequence(h.rec->seen_for("B2")) == Seq{{"B2", 1}});
  CHECK(h.pending() == std::optional<std::uint64_t>{1});
}

TEST_CASE("shard dead-letters an event whose source has no route and moves on", "[actors][shard]") {
  Harness h(always(200), always(200), fast_options());
  h.ingest("X1", "conv-A", "no-such-source");
  h.ingest("A2", "conv-A");
  REQUIRE(eventually([&] { return h.delivered() == 1 && h.dead_lettered() == 1; }));
  CHECK(h.rec->seen_for("X1").empty());
  CHECK(sequence(h.rec->seen()) == Seq{{"A2", 1}});
}

TEST_CASE("shard acks a repeated id as a duplicate and delivers it once",
          "[actors][shard][durable]") {
  Harness h(always(200), always(200), fast_options());
  h.ingest("D1", "conv-A");
  h.ingest("D1", "conv-A");  // while the first is still being stored
  REQUIRE(eventually([&] { return h.delivered() == 1; }));
  h.ingest("D1", "conv-A");  // after it was delivered
  REQUIRE(eventually([&] { return h.rec->all_acks().size() == 3; }));
  std::this_thread::sleep_for(100ms);
  const auto acks = h.rec->all_acks();
  CHECK(std::count(acks.begin(), acks.end(),
                   std::make_pair(std::string("D1"), IngestStatus::accepted)) == 1);
  CHECK(std::count(acks.begin(), acks.end(),
                   std::make_pair(std::string("D1"), IngestStatus::duplicate)) == 2);
  CHECK(h.rec->seen_for("D1").size() == 1);
  CHECK(h.metrics.events_duplicate().value() == 2);
}

TEST_CASE("a restarted shard resumes stored events in order and remembers completed ids",
          "[actors][shard][durable]") {
  std::shared_ptr<ScratchDir> dir;
  {
    // A1 is delivered; A2, A3 and B1 are stored but their target never answers.
    Script only_a1 = [](const Event& ev, std::uint32_t) -> std::optional<unsigned> {
      if (ev.id == "A1") return 200u;
      return std::nullopt;
    };
    Harness h(only_a1, only_a1, fast_options(), 30s);
    dir = h.dir;
    h.ingest("A1", "conv-A");
    REQUIRE(eventually([&] { return h.delivered() == 1; }));
    h.ingest("A2", "conv-A");
    h.ingest("A3", "conv-A");
    h.ingest("B1", "conv-B");
    REQUIRE(eventually([&] { return h.rec->all_acks().size() == 4; }));
  }  // the actor system stops: nothing was delivered after A1
  Harness h(always(200), always(200), fast_options(), 200ms, dir);
  CHECK(h.recovered_pending == 3);
  REQUIRE(eventually([&] { return h.delivered() == 3; }));
  CHECK(sequence(h.rec->seen_for("B1")) == Seq{{"B1", 1}});
  const auto seen = h.rec->seen();
  const auto pos = [&](const std::string& id) {
    return std::find_if(seen.begin(), seen.end(), [&](const Attempt& a) { return a.id == id; }) -
           seen.begin();
  };
  CHECK(pos("A2") < pos("A3"));  // conv-A keeps its order across the restart
  CHECK(seen.size() == 3);
  // A1 was completed before the restart: still a duplicate.
  h.ingest("A1", "conv-A");
  REQUIRE(eventually([&] { return h.rec->all_acks().size() == 1; }));
  CHECK(h.rec->all_acks()[0].second == IngestStatus::duplicate);
  CHECK(h.rec->seen_for("A1").empty());
  CHECK(h.pending() == std::optional<std::uint64_t>{0});
}

TEST_CASE("a backlog beyond the memory window is read back from the log in order",
          "[actors][shard][durable]") {
  auto opts = fast_options();
  opts.memory_window = 16;
  opts.max_pending = 10000;
  std::atomic<bool> open{false};
  // Nothing is delivered until `open`: the backlog builds up on disk.
  Script gate = [&open](const Event&, std::uint32_t) -> std::optional<unsigned> {
    return open.load() ? 200u : 503u;
  };
  opts.max_attempts = 1000000;
  Harness h(gate, gate, opts);
  constexpr int kEvents = 400;
  for (int i = 0; i < kEvents; ++i) {
    h.ingest("E" + std::to_string(i), "conv-" + std::to_string(i % 3));
  }
  REQUIRE(eventually([&] { return h.rec->all_acks().size() == kEvents; }));
  CHECK(h.pending() == std::optional<std::uint64_t>{kEvents});
  open = true;
  REQUIRE(eventually([&] { return h.delivered() == kEvents; }, 20000ms));
  // An event is only tried as the head of its conversation, so the first attempts of each
  // conversation follow its queue order: they must be in ingest order.
  std::map<std::string, int> last;
  std::set<std::string> seen;
  for (const auto& a : h.rec->seen()) {
    if (seen.count(a.id)) continue;
    const int n = std::stoi(a.id.substr(1));
    seen.insert(a.id);
    const std::string conv = std::to_string(n % 3);
    if (last.count(conv)) CHECK(n > last[conv]);
    last[conv] = n;
  }
  CHECK(seen.size() == kEvents);
  CHECK(h.pending() == std::optional<std::uint64_t>{0});
}

namespace {

// Events of the conversations `stuck` names fail (503) until `open`; the others go at once.
// `stuck_events` of them are queued first, well past the memory window of 4, then one event
// of each of 10 other conversations: those must be delivered while the stuck ones still fail.
void stuck_hold_back_nothing(std::function<bool(const std::string&)> stuck, int stuck_events,
                             std::function<std::string(int)> stuck_conv) {
  auto opts = fast_options();
  opts.memory_window = 4;
  opts.max_attempts = 1000000;
  std::atomic<bool> open{false};
  Script script = [&](const Event& ev, std::uint32_t) -> std::optional<unsigned> {
    return !stuck(ev.conversation) || open.load() ? 200u : 503u;
  };
  Harness h(script, script, opts);
  for (int i = 0; i < stuck_events; ++i) h.ingest("S" + std::to_string(i), stuck_conv(i));
  REQUIRE(eventually([&] { return h.rec->all_acks().size() == std::size_t(stuck_events); }));
  for (int i = 0; i < 10; ++i) h.ingest("G" + std::to_string(i), "good-" + std::to_string(i));
  CHECK(eventually([&] { return h.delivered() == 10; }, 5000ms));
  for (int i = 0; i < 10; ++i) CHECK(h.rec->seen_for("G" + std::to_string(i)).size() == 1);
  open = true;
  REQUIRE(eventually([&] { return h.delivered() == std::size_t(stuck_events) + 10; }, 20000ms));
  // Each stuck conversation's events were first tried in their order, across the trips to disk.
  std::map<std::string, int> last;
  std::set<std::string> seen;
  for (const auto& a : h.rec->seen()) {
    if (a.id[0] != 'S' || !seen.insert(a.id).second) continue;
    const int n = std::stoi(a.id.substr(1));
    const std::string conv = stuck_conv(n);
    if (last.count(conv)) CHECK(n > last[conv]);
    last[conv] = n;
  }
  CHECK(seen.size() == std::size_t(stuck_events));
  CHECK(h.pending() == std::optional<std::uint64_t>{0});
}

}  // namespace

TEST_CASE("a conversation failing with more events than the memory window holds back no other",
          "[actors][shard][durable]") {
  stuck_hold_back_nothing([](const std::string& c) { return c == "bad"; }, 20,
                          [](int) { return std::string("bad"); });
}

TEST_CASE("more failing conversations than the memory window hold back no other",
          "[actors][shard][durable]") {
  stuck_hold_back_nothing([](const std::string& c) { return c.starts_with("bad-"); }, 36,
                          [](int i) { return "bad-" + std::to_string(i % 12); });
}

TEST_CASE("a dead letter replayed while a backlog waits on disk strands nothing",
          "[actors][shard][durable]") {
  auto opts = fast_options();
  opts.memory_window = 4;
  opts.max_attempts = 1000000;
  std::atomic<bool> open{false};
  std::atomic<bool> replayed{false};
  // D is refused for good (dead letter) until replayed; the others wait (503) until `open`.
  Script script = [&](const Event& ev, std::uint32_t) -> std::optional<unsigned> {
    if (ev.id == "D") return replayed.load() ? 200u : 400u;
    return open.load() ? 200u : 503u;
  };
  Harness h(script, script, opts);
  h.ingest("D", "conv-D");
  REQUIRE(eventually([&] { return h.dead_lettered() == 1; }));
  for (int i = 0; i < 20; ++i) h.ingest("E" + std::to_string(i), "conv-" + std::to_string(i % 2));
  REQUIRE(eventually([&] { return h.rec->all_acks().size() == 21; }));
  replayed = true;
  CHECK(h.replay("D") == "");
  CHECK(h.replay("D") == "not_found");  // being replayed, or already gone
  // The backlog stuck on its backoffs holds nothing back: D goes at once.
  REQUIRE(eventually([&] { return h.delivered() == 1; }, 5000ms));
  open = true;
  REQUIRE(eventually([&] { return h.delivered() == 21; }, 20000ms));
  CHECK(h.rec->seen_for("D").size() >= 2);
  CHECK(h.pending() == std::optional<std::uint64_t>{0});
}

TEST_CASE("two dead letters of one id replayed at once are both retired",
          "[actors][shard][durable]") {
  auto opts = fast_options();
  opts.dedup_window = 1ms;  // the platform may send an id again once the window is over
  std::atomic<bool> open{false};
  Script script = [&open](const Event&, std::uint32_t) -> std::optional<unsigned> {
    return open.load() ? 200u : 400u;
  };
  Harness h(script, script, opts);
  h.ingest("D", "conv-D");
  REQUIRE(eventually([&] { return h.dead_lettered() == 1; }));
  // Sent again after the window (forgotten at the next housekeeping tick), refused again.
  REQUIRE(eventually(
      [&] {
        h.ingest("D", "conv-D");
        return eventually([&] { return h.dead_lettered() == 2; }, 300ms);
      },
      5000ms));
  open = true;
  // Both replays asked before either answers: each takes its own dead letter.
  caf::scoped_actor self{*h.sys};
  auto ask = [&] {
    return self->request(h.shard, std::chrono::seconds(5), botgate::replay_atom::value,
                         std::string("src"), std::string("D"));
  };
  auto first = ask();
  auto second = ask();
  std::vector<std::string> answers;
  for (auto* r : {&first, &second}) {
    r->receive([&](std::string& a) { answers.push_back(a); },
               [&](caf::error&) { answers.push_back("error"); });
  }
  CHECK(answers == std::vector<std::string>{"", ""});
  REQUIRE(eventually([&] { return h.delivered() == 2; }));
  std::this_thread::sleep_for(200ms);
  CHECK(h.delivered() == 2);
  // Stored again (that is when a replay answers), neither is a dead letter any more.
  CHECK(h.replay("D") == "not_found");
}

TEST_CASE("dead letters finished while a read-back is placed do not read the batch twice",
          "[actors][shard][durable]") {
  auto opts = fast_options();
  opts.memory_window = 4;
  opts.max_attempts = 1000000;
  std::atomic<bool> open{false};
  Script gate = [&open](const Event&, std::uint32_t) -> std::optional<unsigned> {
    return open.load() ? 200u : 503u;
  };
  Harness h(gate, gate, opts);
  for (int i = 0; i < 4; ++i) h.ingest("R" + std::to_string(i), "conv-" + std::to_string(i));
  // These have no route: each is dead-lettered as soon as it is read back into memory.
  for (int i = 0; i < 30; ++i) h.ingest("X" + std::to_string(i), "conv-x", "no-such-source");
  REQUIRE(eventually([&] { return h.rec->all_acks().size() == 34; }));
  open = true;
  REQUIRE(eventually([&] { return h.delivered() == 4 && h.dead_lettered() == 30; }, 20000ms));
  REQUIRE(eventually([&] { return h.pending() == std::optional<std::uint64_t>{0}; }));
  std::this_thread::sleep_for(200ms);
  CHECK(h.dead_lettered() == 30);
  CHECK(h.pending() == std::optional<std::uint64_t>{0});
}

TEST_CASE("a dead letter while the recovered window is placed does not read it twice",
          "[actors][shard][durable]") {
  auto opts = fast_options();
  opts.memory_window = 16;
  opts.max_attempts = 1000000;
  std::shared_ptr<ScratchDir> dir;
  {
    // X0 comes from a source that is routed in this run only; 40 more wait behind a down pool,
    // so the log holds more than the window.
    auto first = opts;
    first.sources["gone"] = botgate::SourceRoutes{"pool", ""};
    Harness h(always(503), always(503), first);
    dir = h.dir;
    h.ingest("X0", "conv-x", "gone");
    for (int i = 0; i < 40; ++i) h.ingest("E" + std::to_string(i), "conv-" + std::to_string(i % 2));
    REQUIRE(eventually([&] { return h.rec->all_acks().size() == 41; }));
  }
  // Restarted without the source: X0, first in the window, is dead-lettered while the rest of
  // the window is still being placed.
  Harness h(always(200), always(200), opts, 200ms, dir);
  REQUIRE(eventually([&] { return h.dead_lettered() == 1 && h.delivered() >= 40; }, 20000ms));
  std::this_thread::sleep_for(300ms);
  CHECK(h.delivered() == 40);
  std::map<std::string, int> times;
  for (const auto& a : h.rec->seen()) ++times[a.id];
  for (const auto& [id, n] : times) {
    INFO("event " << id);
    CHECK(n == 1);
  }
  CHECK(h.pending() == std::optional<std::uint64_t>{0});
  h.ingest("NEW", "conv-new");  // the shard's count is right: it accepts again
  REQUIRE(eventually([&] { return h.rec->all_acks().size() == 1; }));
  CHECK(h.rec->all_acks()[0].second == IngestStatus::accepted);
}

namespace {

// Flips a payload byte of the record of `seq` in the one segment under `log_dir` (records:
// u32 length, u32 crc, u64 seq, u8 type, payload; storage/segment_log.hpp): damage on disk.
void damage_record(const std::filesystem::path& log_dir, std::uint64_t seq) {
  const auto files = log_files(log_dir);
  REQUIRE(files.size() == 1);
  std::ifstream in(files.front(), std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto le = [&](std::size_t at, int n) {
    std::uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(bytes[at + i]);
    return v;
  };
  const std::size_t header = botgate::storage::kRecordHeaderBytes;
  for (std::size_t off = 0; off + header <= bytes.size(); off += header + le(off, 4)) {
    if (le(off + 8, 8) != seq) continue;
    flip_byte(files.front(), static_cast<std::streamoff>(off + header + 5), 0xff);
    return;
  }
  FAIL("no record " << seq << " in " << files.front());
}

}  // namespace

TEST_CASE("a backlog record damaged on disk costs that event only: the read-back goes on",
          "[actors][shard][durable]") {
  auto opts = fast_options();
  opts.memory_window = 16;
  opts.max_pending = 10000;
  opts.max_attempts = 1000000;
  std::atomic<bool> open{false};
  Script gate = [&open](const Event&, std::uint32_t) -> std::optional<unsigned> {
    return open.load() ? 200u : 503u;
  };
  std::shared_ptr<ScratchDir> dir;
  {
    Harness h(gate, gate, opts);
    dir = h.dir;
    constexpr int kEvents = 100;
    for (int i = 1; i <= kEvents; ++i)
      h.ingest("E" + std::to_string(i), "conv-" + std::to_string(i % 3));
    REQUIRE(eventually([&] { return h.rec->all_acks().size() == kEvents; }));
    // Event 60 waits on disk, beyond the memory window, when a bit of it flips.
    damage_record(dir->path / "events", 60);
    open = true;
    REQUIRE(eventually([&] { return h.delivered() == kEvents - 1; }, 20000ms));
    REQUIRE(eventually([&] { return h.pending() == std::optional<std::uint64_t>{0}; }));
    CHECK(h.metrics.queue_depth(0).value() == 0);
    CHECK(h.metrics.log_records_damaged().value() == 1);
    CHECK(h.metrics.log_errors().value() == 0);
    CHECK(h.rec->seen_for("E60").empty());
    // The shard still takes events, and delivers them.
    h.ingest("NEW", "conv-new");
    REQUIRE(eventually([&] { return h.rec->all_acks().size() == kEvents + 1; }));
    CHECK(h.rec->all_acks().back() ==
          std::pair<std::string, IngestStatus>{"NEW", IngestStatus::accepted});
    REQUIRE(eventually([&] { return h.delivered() == kEvents; }));
  }
  // It was completed: a restart finds nothing left to deliver.
  Harness h(always(200), always(200), opts, 200ms, dir);
  CHECK(h.recovered_pending == 0);
}

TEST_CASE("a dead letter damaged on disk is not replayed, and the shard goes on",
          "[actors][shard][durable]") {
  Harness h(always(400), always(400), fast_options());
  h.ingest("D", "conv-D");
  REQUIRE(eventually([&] { return h.dead_lettered() == 1; }));
  REQUIRE(eventually([&] {
    const auto files = log_files(h.dir->path / "dead");
    return files.size() == 1 && std::filesystem::file_size(files.front()) > 0;
  }));
  REQUIRE(dead_letters(h).size() == 1);
  damage_record(h.dir->path / "dead", dead_letters(h).front().seq);
  CHECK(h.replay("D") == "not_found");  // as for a dead letter that does not decode
  CHECK(h.metrics.log_records_damaged().value() == 1);
  CHECK(h.metrics.log_errors().value() == 0);
  h.ingest("NEW", "conv-new");
  REQUIRE(eventually([&] { return h.rec->all_acks().size() == 2; }));
  CHECK(h.rec->all_acks().back() ==
        std::pair<std::string, IngestStatus>{"NEW", IngestStatus::accepted});
}

TEST_CASE("router spreads first attempts round-robin over its targets", "[actors][router]") {
  Harness h(always(200), always(200), fast_options());
  for (int i = 1; i <= 10; ++i) h.ingest("E" + std::to_string(i), "conv-" + std::to_string(i));
  REQUIRE(eventually([&] { return h.delivered() == 10; }));
  int on_t1 = 0, on_t2 = 0;
  for (const auto& a : h.rec->seen()) {
    CHECK(a.attempt == 1);
    (a.target == "t1" ? on_t1 : on_t2)++;
  }
  CHECK(on_t1 == 5);
  CHECK(on_t2 == 5);
}

TEST_CASE("router follows the pool's weighted policy", "[actors][router]") {
  Harness h(always(200), always(200), fast_options(), 200ms, nullptr, botgate::PolicyKind::weighted,
            {3, 1});
  for (int i = 1; i <= 40; ++i) h.ingest("W" + std::to_string(i), "conv-" + std::to_string(i));
  REQUIRE(eventually([&] { return h.delivered() == 40; }));
  int on_t1 = 0;
  for (const auto& a : h.rec->seen()) on_t1 += a.target == "t1";
  CHECK(on_t1 == 30);
}

TEST_CASE("router keeps a conversation on one target with the sticky policy", "[actors][router]") {
  Harness h(always(200), always(200), fast_options(), 200ms, nullptr, botgate::PolicyKind::sticky);
  for (int i = 1; i <= 20; ++i) h.ingest("S" + std::to_string(i), "conv-" + std::to_string(i % 4));
  REQUIRE(eventually([&] { return h.delivered() == 20; }));
  std::map<std::string, std::set<std::string>> targets_of;
  for (const auto& a : h.rec->seen()) {
    targets_of["conv-" + std::to_string(std::stoi(a.id.substr(1)) % 4)].insert(a.target);
  }
  REQUIRE(targets_of.size() == 4);
  for (const auto& [conv, ts] : targets_of) {
    INFO(conv);
    CHECK(ts.size() == 1);
  }
}

TEST_CASE("router's least-inflight policy avoids a target that holds requests",
          "[actors][router]") {
  // t1 never answers (its attempts pile up until the 30 s deadline); t2 answers at once.
  Harness h(never_answers(), always(200), fast_options(), 30s, nullptr,
            botgate::PolicyKind::least_inflight);
  // One at a time, as steady traffic: a burst would spread while both counts are equal.
  for (int i = 1; i <= 20; ++i) {
    const auto before = h.rec->seen().size();
    h.ingest("L" + std::to_string(i), "conv-" + std::to_string(i));
    REQUIRE(eventually([&] { return h.rec->seen().size() > before; }));
    std::this_thread::sleep_for(5ms);
  }
  int on_t1 = 0;
  for (const auto& a : h.rec->seen()) on_t1 += a.target == "t1";
  CHECK(on_t1 == 1);  // only the very first, when both were idle
  CHECK(h.delivered() == 19);
}

namespace {

void report_health(Harness& h, const std::string& target, bool healthy) {
  botgate::ProbeResult r;
  r.target = target;
  r.ok = healthy;
  r.healthy = healthy;
  r.error = healthy ? "" : "probe failed";
  caf::anon_send(h.router, botgate::health_atom::value, std::move(r));
}

}  // namespace

TEST_CASE("router re-routes an attempt in flight when its target goes down", "[actors][router]") {
  // t1 swallows everything; the attempt timeout is far longer than the test waits.
  Harness h(never_answers(), always(200), fast_options(), 30s);
  h.ingest("R1", "conv-r");
  REQUIRE(eventually([&] { return h.rec->seen().size() == 1; }));
  REQUIRE(h.rec->seen()[0].target == "t1");
  const auto down_at = std::chrono::steady_clock::now();
  report_health(h, "t1", false);
  REQUIRE(eventually([&] { return h.delivered() == 1; }, 2000ms));
  CHECK(std::chrono::steady_clock::now() - down_at < 2s);
  // The re-route was the next attempt, on the other target.
  CHECK(sequence(h.rec->seen()) == Seq{{"R1", 1}, {"R1", 2}});
  CHECK(h.rec->seen()[1].target == "t2");
  // While t1 is down, nothing new goes to it.
  for (int i = 0; i < 6; ++i) h.ingest("N" + std::to_string(i), "conv-n" + std::to_string(i));
  REQUIRE(eventually([&] { return h.delivered() == 7; }));
  for (const auto& a : h.rec->seen()) {
    if (a.id != "R1") CHECK(a.target == "t2");
  }
}

TEST_CASE("an event no target took before max_age is dead-lettered with no attempt counted",
          "[actors][router]") {
  auto opts = fast_options();
  opts.max_age = 300ms;
  Harness h(always(200), always(200), opts);
  report_health(h, "t1", false);
  report_health(h, "t2", false);
  std::this_thread::sleep_for(50ms);
  h.ingest("W1", "conv-w");
  REQUIRE(eventually([&] { return h.dead_lettered() == 1; }, 5s));
  CHECK(h.rec->seen().empty());
  const auto list = dead_letters(h);
  REQUIRE(list.size() == 1);
  CHECK(list[0].attempts == 0);
  CHECK_THAT(list[0].error, Catch::Contains("no target took it within max_age"));
}

TEST_CASE("router holds events while no target is healthy, then sends them on recovery",
          "[actors][router]") {
  Harness h(always(200), always(200), fast_options());
  report_health(h, "t1", false);
  report_health(h, "t2", false);
  std::this_thread::sleep_for(50ms);
  for (int i = 0; i < 5; ++i) h.ingest("W" + std::to_string(i), "conv-w" + std::to_string(i));
  REQUIRE(eventually([&] { return h.rec->all_acks().size() == 5; }));
  std::this_thread::sleep_for(300ms);
  CHECK(h.rec->seen().empty());  // nothing tried, so no attempt is used up
  CHECK(h.pending() == 5u);
  CHECK(h.dead_lettered() == 0);
  report_health(h, "t2", true);
  REQUIRE(eventually([&] { return h.delivered() == 5; }));
  for (const auto& a : h.rec->seen()) {
    CHECK(a.target == "t2");
    CHECK(a.attempt == 1u);
  }
}
