// The pool balancer: which target takes a delivery given health, ejection, concurrency and rate
// limits, and how deliveries wait and come back out. The clock is a fixed time the test moves.
#include "policies/balancer.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using botgate::Balancer;
using botgate::OutlierConfig;
using botgate::PolicyKind;
using botgate::TargetLimits;

namespace {

const Balancer::TimePoint t0 = Balancer::TimePoint{} + 1h;
const std::vector<std::string> kNames{"a", "b", "c"};

Balancer make(PolicyKind kind, std::vector<TargetLimits> limits = {}, OutlierConfig o = {}) {
  return Balancer(kind, kNames, {}, limits, o, t0);
}

std::vector<std::uint64_t> ids(const std::vector<Balancer::Assignment>& v) {
  std::vector<std::uint64_t> out;
  for (const auto& a : v) out.push_back(a.id);
  return out;
}

}  // namespace

TEST_CASE("Balancer places round-robin over healthy targets only", "[balancer][ha]") {
  auto b = make(PolicyKind::round_robin);
  CHECK(b.place(1, "x", {}, t0) == 0u);
  CHECK(b.place(2, "x", {}, t0) == 1u);
  CHECK(b.set_healthy(1, false));
  CHECK_FALSE(b.set_healthy(1, false));  // no change
  for (std::uint64_t id = 3; id < 9; ++id) {
    auto t = b.place(id, "x", {}, t0);
    REQUIRE(t);
    CHECK(*t != 1u);
  }
  CHECK(b.waiting() == 0);
}

TEST_CASE("Balancer: with no healthy target deliveries wait, then go out in order",
          "[balancer][ha]") {
  auto b = make(PolicyKind::round_robin);
  for (std::size_t i = 0; i < 3; ++i) b.set_healthy(i, false);
  CHECK_FALSE(b.place(1, "x", {}, t0));
  CHECK_FALSE(b.place(2, "y", {}, t0));
  CHECK_FALSE(b.place(3, "z", {}, t0));
  CHECK(b.waiting() == 3);
  CHECK(b.drain(t0).empty());    // still nothing to send to
  CHECK_FALSE(b.next_wake(t0));  // only a probe can help
  b.set_healthy(2, true);
  auto out = b.drain(t0);
  CHECK(ids(out) == std::vector<std::uint64_t>{1, 2, 3});
  for (const auto& a : out) CHECK(a.target == 2u);
  CHECK(b.waiting() == 0);
}

TEST_CASE("Balancer: a full target is skipped, and when all are full deliveries wait for a slot",
          "[balancer][ha]") {
  auto b = make(PolicyKind::round_robin, {{1, 0, 1}, {1, 0, 1}, {1, 0, 1}});
  CHECK(b.place(1, "x", {}, t0) == 0u);
  CHECK(b.place(2, "x", {}, t0) == 1u);
  CHECK(b.place(3, "x", {}, t0) == 2u);
  CHECK_FALSE(b.place(4, "x", {}, t0));
  CHECK_FALSE(b.place(5, "x", {}, t0));
  CHECK(b.in_flight(1) == 1);
  b.release(1);
  auto out = b.drain(t0);
  REQUIRE(out.size() == 1);
  CHECK(out[0].id == 4);
  CHECK(out[0].target == 1u);
  CHECK(b.waiting() == 1);
  // A newcomer queues behind the one still waiting, even once a slot is free.
  b.release(0);
  CHECK_FALSE(b.place(6, "x", {}, t0));
  CHECK(ids(b.drain(t0)) == std::vector<std::uint64_t>{5});
}

TEST_CASE("Balancer: sticky waits for its own full target, and moves only when it is down",
          "[balancer][ha]") {
  auto b = make(PolicyKind::sticky, {{1, 0, 1}, {1, 0, 1}, {1, 0, 1}});
  // Find two conversations that stick to different targets.
  std::string k1 = "conv-0", k2;
  const auto home1 = *b.place(1, k1, {}, t0);
  for (int i = 1; k2.empty(); ++i) {
    auto k = "conv-" + std::to_string(i);
    Balancer probe = make(PolicyKind::sticky);
    if (*probe.place(0, k, {}, t0) != home1) k2 = k;
  }
  // k1's target is full: k1 waits for it, while k2 still goes to its own target.
  CHECK_FALSE(b.place(2, k1, {}, t0));
  auto home2 = b.place(3, k2, {}, t0);
  REQUIRE(home2);
  CHECK(*home2 != home1);
  CHECK(b.waiting() == 1);
  // A slot on k1's target: the waiter goes there.
  b.release(home1);
  auto out = b.drain(t0);
  REQUIRE(out.size() == 1);
  CHECK(out[0].id == 2);
  CHECK(out[0].target == home1);
  // k1's target full again and a waiter for it; then the target goes down: the waiter moves.
  CHECK_FALSE(b.place(4, k1, {}, t0));
  b.set_healthy(home1, false);
  out = b.drain(t0);
  // The runner-up may be k2's target, which is full: then it waits for that one instead.
  if (out.empty()) {
    b.release(*home2);
    out = b.drain(t0);
  }
  REQUIRE(out.size() == 1);
  CHECK(out[0].id == 4);
  CHECK(out[0].target != home1);
}

TEST_CASE("Balancer: a rate limit spaces deliveries and says when to look again",
          "[balancer][ha]") {
  auto b = Balancer(PolicyKind::round_robin, std::vector<std::string>{"only"}, {},
                    std::vector<TargetLimits>{{0, 10.0, 1.0}}, {}, t0);
  CHECK(b.place(1, "x", {}, t0) == 0u);
  CHECK_FALSE(b.place(2, "x", {}, t0));
  auto wake = b.next_wake(t0);
  REQUIRE(wake);
  CHECK(*wake > t0 + 99ms);
  CHECK(*wake <= t0 + 101ms);
  CHECK(b.drain(t0 + 50ms).empty());
  CHECK(ids(b.drain(*wake)) == std::vector<std::uint64_t>{2});
}

TEST_CASE("Balancer: a tiny rate limit asks to be woken in the future, not the past",
          "[balancer][ha]") {
  auto b = Balancer(PolicyKind::round_robin, std::vector<std::string>{"only"}, {},
                    std::vector<TargetLimits>{{0, 1e-12, 1.0}}, {}, t0);
  CHECK(b.place(1, "x", {}, t0) == 0u);
  CHECK_FALSE(b.place(2, "x", {}, t0));
  auto wake = b.next_wake(t0);
  REQUIRE(wake);
  CHECK(*wake > t0 + std::chrono::hours(24));
}

TEST_CASE("Balancer: consecutive failures eject, and the ejection ends by itself",
          "[balancer][ha]") {
  OutlierConfig o;
  o.consecutive_failures = 2;
  o.base_ejection_time = 10s;
  o.max_ejection_percent = 50;
  auto b = make(PolicyKind::failover, {}, o);
  CHECK(b.place(1, "x", {}, t0) == 0u);
  CHECK_FALSE(b.on_failure(0, t0));
  CHECK(b.on_failure(0, t0));
  CHECK_FALSE(b.available(0, t0));
  CHECK(b.place(2, "x", {}, t0) == 1u);  // failover's next in line
  CHECK(b.returned(t0 + 5s).empty());
  CHECK(b.returned(t0 + 10s) == std::vector<std::size_t>{0});
  CHECK(b.returned(t0 + 11s).empty());  // reported once
  CHECK(b.place(3, "x", {}, t0 + 10s) == 0u);
}

TEST_CASE("Balancer: least-inflight counts what it placed", "[balancer][ha]") {
  auto b = make(PolicyKind::least_inflight);
  const auto first = *b.place(1, "x", {}, t0);
  const auto second = *b.place(2, "x", {}, t0);
  const auto third = *b.place(3, "x", {}, t0);
  CHECK(first != second);
  CHECK(second != third);
  CHECK(first != third);
  b.release(second);
  CHECK(b.place(4, "x", {}, t0) == second);
}

TEST_CASE("Balancer never ejects the last available target, counting probe-down ones",
          "[balancer][ha]") {
  OutlierConfig o;
  o.consecutive_failures = 2;
  o.max_ejection_percent = 100;
  auto b = Balancer(PolicyKind::round_robin, std::vector<std::string>{"a", "b"}, {}, {}, o, t0);
  b.set_healthy(0, false);  // a is down by probe: b is all the pool has
  CHECK_FALSE(b.on_failure(1, t0));
  CHECK_FALSE(b.on_failure(1, t0));
  CHECK_FALSE(b.on_failure(1, t0));
  CHECK(b.available(1, t0));
  CHECK(b.place(1, "x", {}, t0) == 1u);
  // With a back, b may be ejected again.
  b.set_healthy(0, true);
  CHECK_FALSE(b.on_failure(1, t0));
  CHECK(b.on_failure(1, t0));
}

TEST_CASE("Balancer: withdrawn waiting deliveries are never handed out", "[balancer][ha]") {
  auto b = make(PolicyKind::round_robin);
  for (std::size_t i = 0; i < 3; ++i) b.set_healthy(i, false);
  for (std::uint64_t id = 1; id <= 4; ++id) CHECK_FALSE(b.place(id, "x", {}, t0));
  CHECK(b.withdraw_if([](std::uint64_t id) { return id == 2 || id == 3; }) == 2);
  CHECK(b.waiting() == 2);
  b.set_healthy(0, true);
  CHECK(ids(b.drain(t0)) == std::vector<std::uint64_t>{1, 4});
}
