// Delivery through the real botgate binary to real HTTP backends: exactly-once
// under normal operation, balance, per-conversation order, retries, dead letters
// and a backend killed mid-run.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/client.hpp"
#include "tests/support/events.hpp"
#include "tests/support/gateway.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/test_backend.hpp"

using namespace botgate::test;
using namespace std::chrono_literals;

namespace {

struct Planned {
  std::string id;
  std::string conversation;
  int conv = 0;
  int seq = 0;
  std::string body;
};

// Event i belongs to conversation i % convs and has seq i / convs.
std::vector<Planned> plan_events(int count, int convs, const std::string& prefix) {
  std::vector<Planned> out;
  out.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    Planned p;
    p.conv = i % convs;
    p.seq = i / convs;
    p.id = prefix + "-" + std::to_string(i);
    p.conversation = "conv-" + std::to_string(p.conv);
    p.body = event_json(p.id, p.conversation, p.seq, "hello " + std::to_string(i));
    out.push_back(std::move(p));
  }
  return out;
}

// Sends every planned event with `threads` client threads, each on its own
// keep-alive connection. A conversation is owned by one thread, which sends its
// events in seq order and waits for each ack, so the ack order of a conversation
// is its seq order. `on_sent` runs after every request (any thread).
template <typename OnSent>
std::vector<Response> send_all(std::uint16_t port, const GatewayOptions& o,
                               const std::vector<Planned>& events, int convs, int threads,
                               OnSent on_sent) {
  std::vector<Response> acks(events.size());
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      auto conn = std::make_unique<HttpConnection>(port);
      for (std::size_t i = 0; i < events.size(); ++i) {
        if (events[i].conv % threads != t) continue;
        if (!conn->is_open()) conn = std::make_unique<HttpConnection>(port);
        acks[i] = send_event(*conn, o.source, o.secret, events[i].body);
        on_sent();
      }
    });
  }
  for (auto& th : pool) th.join();
  (void)convs;
  return acks;
}

std::vector<BackendRequest> merged(std::initializer_list<const TestBackend*> backends) {
  std::vector<BackendRequest> all;
  for (auto* b : backends) {
    auto r = b->requests();
    all.insert(all.end(), r.begin(), r.end());
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.order < b.order; });
  return all;
}

std::set<std::string> delivered_ids(std::initializer_list<const TestBackend*> backends) {
  std::set<std::string> ids;
  for (auto* b : backends) {
    for (const auto& r : b->requests()) {
      if (r.delivered()) ids.insert(r.idempotency_key());
    }
  }
  return ids;
}

std::string first_failures(const std::vector<Response>& acks, const std::vector<Planned>& events) {
  std::ostringstream os;
  int shown = 0;
  for (std::size_t i = 0; i < acks.size() && shown < 5; ++i) {
    if (acks[i].status != 200) {
      os << events[i].id << ": " << acks[i].describe() << "\n";
      ++shown;
    }
  }
  return os.str();
}

}  // namespace

TEST_CASE(
    "1000 events over 20 conversations are acked, delivered exactly once, balanced and in "
    "order",
    "[integration][delivery]") {
  // Also with two io threads: answers then reach sessions on either thread.
  const int io_threads = GENERATE(1, 2);
  INFO("io_threads = " << io_threads);
  TempDir dir;
  TestBackend b1, b2;
  GatewayOptions o;
  o.backend_ports = {b1.port(), b2.port()};
  o.io_threads = io_threads;
  Gateway gw(botgate_binary(), dir, make_config(o));

  constexpr int kEvents = 1000, kConvs = 20, kThreads = 4;
  auto events = plan_events(kEvents, kConvs, "evt");
  auto acks = send_all(gw.port(), o, events, kConvs, kThreads, [] {});

  std::size_t acked = static_cast<std::size_t>(
      std::count_if(acks.begin(), acks.end(), [](const auto& r) { return r.status == 200; }));
  INFO("first failed acks:\n" << first_failures(acks, events));
  REQUIRE(acked == kEvents);

  bool all_arrived =
      eventually([&] { return b1.delivered_count() + b2.delivered_count() >= kEvents; }, 60s);
  std::this_thread::sleep_for(300ms);  // let any duplicate show up before counting
  INFO("b1 delivered " << b1.delivered_count() << ", b2 delivered " << b2.delivered_count());
  REQUIRE(all_arrived);

  std::map<std::string, const Planned*> by_id;
  for (const auto& e : events) by_id[e.id] = &e;

  auto all = merged({&b1, &b2});
  std::map<std::string, int> seen;
  std::size_t unknown = 0, wrong_attempt = 0, wrong_body = 0, wrong_request = 0, undelivered = 0;
  std::string example;
  std::vector<std::vector<int>> seqs(kConvs);
  for (const auto& r : all) {
    auto it = by_id.find(r.idempotency_key());
    if (it == by_id.end()) {
      ++unknown;
      example = "unknown Idempotency-Key '" + r.idempotency_key() + "'";
      continue;
    }
    ++seen[r.idempotency_key()];
    if (r.attempt() != "1") {
      ++wrong_attempt;
      example = r.idempotency_key() + " has X-Botgate-Attempt '" + r.attempt() + "'";
    }
    if (r.body != it->second->body) {
      ++wrong_body;
      example = r.idempotency_key() + " body '" + r.body + "' != sent '" + it->second->body + "'";
    }
    if (r.method != "POST" || r.target != "/events" ||
        r.header("content-type") != "application/json") {
      ++wrong_request;
      example = r.method + " " + r.target + " Content-Type '" + r.header("content-type") + "'";
    }
    if (!r.delivered()) ++undelivered;
    seqs[static_cast<std::size_t>(it->second->conv)].push_back(it->second->seq);
  }
  std::size_t missing = 0, duplicated = 0;
  for (const auto& e : events) {
    auto n = seen[e.id];
    if (n == 0) ++missing;
    if (n > 1) ++duplicated;
  }
  INFO("example problem: " << example);
  CHECK(unknown == 0);
  CHECK(missing == 0);
  CHECK(duplicated == 0);
  CHECK(all.size() == static_cast<std::size_t>(kEvents));
  CHECK(wrong_attempt == 0);
  CHECK(wrong_body == 0);
  CHECK(wrong_request == 0);
  CHECK(undelivered == 0);

  // Round-robin over two healthy backends: each gets between 40% and 60%.
  auto n1 = b1.count(), n2 = b2.count();
  INFO("b1 got " << n1 << ", b2 got " << n2);
  CHECK(n1 >= kEvents * 40 / 100);
  CHECK(n1 <= kEvents * 60 / 100);
  CHECK(n2 >= kEvents * 40 / 100);
  CHECK(n2 <= kEvents * 60 / 100);

  // Per conversation, arrival order over both backends is the send order.
  for (int c = 0; c < kConvs; ++c) {
    const auto& s = seqs[static_cast<std::size_t>(c)];
    bool increasing =
        std::is_sorted(s.begin(), s.end()) && std::adjacent_find(s.begin(), s.end()) == s.end();
    std::ostringstream got;
    for (int v : s) got << v << ' ';
    INFO("conversation conv-" << c << " arrival seqs: " << got.str());
    CHECK(increasing);
    CHECK(s.size() == static_cast<std::size_t>(kEvents / kConvs));
  }
}

TEST_CASE("a backend killed mid-run loses no acknowledged event", "[integration][delivery]") {
  TempDir dir;
  TestBackend b1, b2;
  GatewayOptions o;
  o.backend_ports = {b1.port(), b2.port()};
  o.backoff_base = "10ms";
  o.backoff_cap = "200ms";
  o.target_timeout = "1s";
  o.connect_timeout = "1s";
  o.max_attempts = 10;
  Gateway gw(botgate_binary(), dir, make_config(o));

  constexpr int kEvents = 1000, kConvs = 20, kThreads = 4;
  auto events = plan_events(kEvents, kConvs, "kill");
  std::atomic<int> sent{0};
  std::atomic<bool> senders_done{false};
  std::size_t b2_before_kill = 0;
  int sent_at_kill = 0;
  std::thread killer([&] {
    while (sent.load() < kEvents * 30 / 100 && !senders_done.load()) {
      std::this_thread::sleep_for(1ms);
    }
    sent_at_kill = sent.load();
    b2.stop();
    b2_before_kill = b2.count();
  });
  auto acks = send_all(gw.port(), o, events, kConvs, kThreads, [&] { ++sent; });
  senders_done = true;
  killer.join();

  std::set<std::string> acked;
  for (std::size_t i = 0; i < acks.size(); ++i) {
    if (acks[i].status == 200) acked.insert(events[i].id);
  }
  INFO("b2 killed after " << sent_at_kill << " events were sent; it had received "
                          << b2_before_kill);
  INFO("first failed acks:\n" << first_failures(acks, events));
  // Ingest does not depend on backends: every event is acknowledged.
  CHECK(acked.size() == static_cast<std::size_t>(kEvents));
  // The kill happened while events were flowing, not before or after.
  CHECK(sent_at_kill < kEvents);
  CHECK(b2_before_kill > 0);

  std::vector<std::string> lost;
  bool all_delivered = eventually(
      [&] {
        auto got = delivered_ids({&b1, &b2});
        lost.clear();
        std::set_difference(acked.begin(), acked.end(), got.begin(), got.end(),
                            std::back_inserter(lost));
        return lost.empty();
      },
      90s);
  std::ostringstream ex;
  for (std::size_t i = 0; i < lost.size() && i < 10; ++i) ex << lost[i] << ' ';
  INFO(lost.size() << " acked events never delivered, e.g. " << ex.str());
  INFO("b1 delivered " << b1.delivered_count() << ", b2 delivered " << b2.delivered_count());
  CHECK(all_delivered);
  CHECK(gw.process().running());
}

TEST_CASE("events a backend answers with 5xx are retried until it recovers",
          "[integration][delivery]") {
  TempDir dir;
  TestBackend b1, b2;
  b1.set_status(500);
  b2.set_status(503);
  GatewayOptions o;
  o.backend_ports = {b1.port(), b2.port()};
  o.backoff_base = "10ms";
  o.backoff_cap = "100ms";
  o.max_attempts = 100;
  Gateway gw(botgate_binary(), dir, make_config(o));

  constexpr int kEvents = 5;
  std::vector<std::string> ids, bodies;
  for (int i = 0; i < kEvents; ++i) {
    ids.push_back("retry-" + std::to_string(i));
    bodies.push_back(event_json(ids.back(), "retry-conv-" + std::to_string(i), 0));
    auto res = send_event(gw.port(), o.source, o.secret, bodies.back());
    INFO(res.describe());
    REQUIRE(res.status == 200);
  }

  // While both backends fail, every event is tried at least three times.
  auto tried_thrice = [&] {
    auto all = merged({&b1, &b2});
    for (const auto& id : ids) {
      bool ok = std::any_of(all.begin(), all.end(), [&](const auto& r) {
        return r.idempotency_key() == id && r.attempt() == "3";
      });
      if (!ok) return false;
    }
    return true;
  };
  bool retried = eventually(tried_thrice, 30s);
  INFO("requests so far: b1 " << b1.count() << ", b2 " << b2.count());
  REQUIRE(retried);
  CHECK(b1.delivered_count() + b2.delivered_count() == 0);

  b1.set_ok();
  b2.set_ok();
  bool recovered = eventually(
      [&] {
        return delivered_ids({&b1, &b2}).size() == static_cast<std::size_t>(kEvents);
      },
      30s);
  std::this_thread::sleep_for(300ms);
  REQUIRE(recovered);

  // Attempt numbers are unique per event and count up from 1, and the one that got
  // through is the highest. Arrival order can interleave: when outlier detection
  // ejects a failing backend, its in-flight attempt is re-sent at once as the next
  // attempt to the other one, before the first has been answered.
  auto all = merged({&b1, &b2});
  for (std::size_t i = 0; i < ids.size(); ++i) {
    std::vector<int> attempts;
    int delivered = 0, delivered_attempt = 0;
    bool same_body = true;
    std::ostringstream got;
    for (const auto& r : all) {
      if (r.idempotency_key() != ids[i]) continue;
      attempts.push_back(std::stoi(r.attempt()));
      got << r.attempt() << ' ';
      if (r.body != bodies[i]) same_body = false;
      if (r.delivered()) {
        ++delivered;
        delivered_attempt = attempts.back();
      }
    }
    INFO(ids[i] << " X-Botgate-Attempt in arrival order: " << got.str());
    REQUIRE(attempts.size() >= 4);  // at least three failures, then a success
    std::sort(attempts.begin(), attempts.end());
    bool one_to_n = true;
    for (std::size_t k = 0; k < attempts.size(); ++k) {
      if (attempts[k] != static_cast<int>(k + 1)) one_to_n = false;
    }
    CHECK(one_to_n);
    CHECK(delivered == 1);
    CHECK(delivered_attempt == attempts.back());
    CHECK(same_body);
  }
}

TEST_CASE("an event a backend rejects with 4xx is dead-lettered, not retried",
          "[integration][delivery]") {
  TempDir dir;
  TestBackend b1;
  b1.set_status(400);
  GatewayOptions o;
  o.backend_ports = {b1.port()};
  o.backoff_base = "10ms";
  o.backoff_cap = "50ms";
  o.max_attempts = 20;
  Gateway gw(botgate_binary(), dir, make_config(o));

  auto body = event_json("dead-1", "dead-conv", 0);
  auto res = send_event(gw.port(), o.source, o.secret, body);
  INFO(res.describe());
  REQUIRE(res.status == 200);

  REQUIRE(b1.wait_for_count(1, 10s));
  // Many backoff periods: a retry would have shown up by now.
  std::this_thread::sleep_for(1500ms);
  auto reqs = b1.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].idempotency_key() == "dead-1");
  CHECK(reqs[0].attempt() == "1");
  CHECK(reqs[0].body == body);
  CHECK(reqs[0].status == 400);

  const std::string metrics = metrics_once(gw.port(), "botgate_events_dead_lettered_total", 1, 5s);
  INFO(metrics);
  CHECK(metric_value(metrics, "botgate_events_dead_lettered_total") == 1.0);
  CHECK(metric_value(metrics, "botgate_events_delivered_total").value_or(-1) == 0.0);

  // The gateway still delivers once the backend accepts again.
  b1.set_ok();
  auto res2 = send_event(gw.port(), o.source, o.secret, event_json("dead-2", "dead-conv", 1));
  CHECK(res2.status == 200);
  CHECK(b1.wait_for_delivered(1, 10s));
  CHECK(b1.count() == 2);
}

TEST_CASE("a 2xx answer with a body over the limit is a delivery and is not retried",
          "[integration][delivery]") {
  TempDir dir;
  TestBackend b1;
  // 2 MiB of answer: over the client's 1 MiB limit on answer bodies.
  b1.set_answer_body([](const BackendRequest&) { return std::string(2 << 20, ' ') + "{}"; });
  GatewayOptions o;
  o.backend_ports = {b1.port()};
  o.backoff_base = "10ms";
  o.backoff_cap = "50ms";
  o.max_attempts = 4;
  Gateway gw(botgate_binary(), dir, make_config(o));

  for (int i = 0; i < 3; ++i) {
    auto res = send_event(gw.port(), o.source, o.secret,
                          event_json("big-answer-" + std::to_string(i), "big-conv", i));
    INFO(res.describe());
    REQUIRE(res.status == 200);
  }
  std::string metrics = metrics_once(gw.port(), "botgate_events_delivered_total", 3, 10s);
  INFO(metrics);
  REQUIRE(metric_value(metrics, "botgate_events_delivered_total").value_or(0) >= 3);
  std::this_thread::sleep_for(300ms);  // many backoff periods: a retry would show by now
  CHECK(b1.count() == 3);
  for (const auto& r : b1.requests()) CHECK(r.attempt() == "1");
  metrics = http_request(gw.port(), "GET", "/metrics").body;
  CHECK(metric_value(metrics, "botgate_events_dead_lettered_total").value_or(-1) == 0.0);
  CHECK(metric_value(metrics, "botgate_delivery_retries_total").value_or(-1) == 0.0);
  CHECK(lines_with(gw.log(), "backend answer body over the limit").size() >= 1);
}

TEST_CASE("a 429 with Retry-After holds the retry back that long", "[integration][delivery]") {
  TempDir dir;
  TestBackend b1;
  b1.set_status(429);
  b1.set_retry_after("1");
  GatewayOptions o;
  o.backend_ports = {b1.port()};
  o.backoff_base = "10ms";  // without Retry-After the retry would come within 20 ms
  o.backoff_cap = "5s";
  o.max_attempts = 10;
  Gateway gw(botgate_binary(), dir, make_config(o));

  REQUIRE(
      send_event(gw.port(), o.source, o.secret, event_json("limited", "limited-conv", 0)).status ==
      200);
  REQUIRE(b1.wait_for_count(2, 10s));
  b1.set_ok();
  REQUIRE(b1.wait_for_delivered(1, 10s));
  const auto reqs = b1.requests();
  REQUIRE(reqs.size() >= 2);
  const auto gap = reqs[1].at - reqs[0].at;
  INFO("second attempt " << std::chrono::duration_cast<std::chrono::milliseconds>(gap).count()
                         << " ms after the first");
  CHECK(gap >= 950ms);
  CHECK(gap < 3s);
}
