// The high-availability policies: routing (weighted, least-inflight, sticky, failover, and all
// five behind Picker), passive outlier ejection and the active health state machine. Every
// clock and random source is fixed, so each run sees the same decisions.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "policies/failover.hpp"
#include "policies/health.hpp"
#include "policies/least_inflight.hpp"
#include "policies/outlier.hpp"
#include "policies/pick.hpp"
#include "policies/sticky.hpp"
#include "policies/target_mask.hpp"
#include "policies/token_bucket.hpp"
#include "policies/weighted_round_robin.hpp"

using namespace std::chrono_literals;
using botgate::Failover;
using botgate::HealthState;
using botgate::HealthThresholds;
using botgate::LeastInflight;
using botgate::OutlierConfig;
using botgate::OutlierDetector;
using botgate::parse_policy_kind;
using botgate::Picker;
using botgate::PolicyKind;
using botgate::Sticky;
using botgate::TargetMask;
using botgate::TokenBucket;
using botgate::WeightedRoundRobin;

namespace {

using Index = std::optional<std::size_t>;
using TimePoint = OutlierDetector::TimePoint;

// A fixed "now", far from the clock's epoch.
const TimePoint t0 = TimePoint{} + 1h;

TargetMask all(std::size_t n) {
  return TargetMask(n, true);
}

std::vector<std::string> names(std::size_t n) {
  std::vector<std::string> v;
  for (std::size_t i = 0; i < n; ++i) v.push_back("backend-" + std::to_string(i + 1));
  return v;
}

std::string conversation(int i) {
  return "wx-conv-" + std::to_string(i);
}

}  // namespace

// ---------------------------------------------------------------------------
// Smooth weighted round-robin

TEST_CASE("Weighted round-robin holds weights 5,3,2 within 5% over 10,000 picks",
          "[policies][ha][weighted]") {
  WeightedRoundRobin wrr({5, 3, 2});
  const auto mask = all(3);
  std::map<std::size_t, int> counts;
  const int picks = 10000;
  for (int i = 0; i < picks; ++i) ++counts[*wrr.pick(mask)];
  const double share[] = {0.5, 0.3, 0.2};
  for (std::size_t t = 0; t < 3; ++t) {
    const double expected = share[t] * picks;
    INFO("target " << t << " got " << counts[t]);
    CHECK(std::abs(counts[t] - expected) <= 0.05 * expected);
  }
}

TEST_CASE("Weighted round-robin with weights 5,1,1 gives nginx's smooth sequence",
          "[policies][ha][weighted]") {
  WeightedRoundRobin wrr({5, 1, 1});
  const auto mask = all(3);
  std::vector<std::size_t> seq;
  for (int i = 0; i < 14; ++i) seq.push_back(*wrr.pick(mask));
  // nginx documents { a, a, b, a, c, a, a } for a=5, b=1, c=1; the cycle then repeats.
  CHECK(seq == std::vector<std::size_t>{0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0});
}

TEST_CASE("Weighted round-robin interleaves instead of sending runs", "[policies][ha][weighted]") {
  // Plain weighted round-robin would send 5 in a row to target 0; smooth never sends more
  // than 2 in a row here.
  WeightedRoundRobin wrr({5, 3, 2});
  const auto mask = all(3);
  std::size_t prev = 99;
  int run = 0, longest = 0;
  for (int i = 0; i < 10000; ++i) {
    const std::size_t p = *wrr.pick(mask);
    run = (p == prev) ? run + 1 : 1;
    prev = p;
    longest = std::max(longest, run);
  }
  CHECK(longest == 2);
}

TEST_CASE("Weighted round-robin shares among eligible targets by weight",
          "[policies][ha][weighted]") {
  WeightedRoundRobin wrr({5, 3, 2});
  const TargetMask mask{false, true, true};
  std::map<std::size_t, int> counts;
  for (int i = 0; i < 1000; ++i) ++counts[*wrr.pick(mask)];
  CHECK(counts[0] == 0);
  CHECK(counts[1] == 600);
  CHECK(counts[2] == 400);
}

TEST_CASE("Weighted round-robin honours avoid, and falls back only to an eligible target",
          "[policies][ha][weighted]") {
  WeightedRoundRobin wrr({5, 3, 2});
  for (int i = 0; i < 100; ++i) {
    const Index p = wrr.pick(all(3), 0);
    REQUIRE(p);
    CHECK(*p != 0);
  }
  // The avoided target is the only eligible one: retry on it rather than wait.
  CHECK(wrr.pick(TargetMask{true, false, false}, 0) == Index{0});
  // Nothing eligible: nothing picked, with or without avoid.
  CHECK_FALSE(wrr.pick(TargetMask{false, false, false}));
  CHECK_FALSE(wrr.pick(TargetMask{false, false, false}, 1));
  CHECK_FALSE(WeightedRoundRobin({}).pick(TargetMask{}));
}

TEST_CASE("Weighted round-robin treats a zero weight as 1", "[policies][ha][weighted]") {
  WeightedRoundRobin wrr({0, 1});
  CHECK(wrr.weight(0) == 1);
  std::map<std::size_t, int> counts;
  for (int i = 0; i < 100; ++i) ++counts[*wrr.pick(all(2))];
  CHECK(counts[0] == 50);
  CHECK(counts[1] == 50);
}

// ---------------------------------------------------------------------------
// Least-inflight

TEST_CASE("Least-inflight picks the eligible target with the fewest in flight",
          "[policies][ha][least_inflight]") {
  LeastInflight li(3);
  const std::vector<std::uint32_t> in_flight{5, 0, 3};
  CHECK(li.pick(in_flight, all(3)) == Index{1});
  CHECK(li.pick(in_flight, TargetMask{true, false, true}) == Index{2});
  CHECK(li.pick(in_flight, all(3), 1) == Index{2});
}

TEST_CASE("Least-inflight avoids a slow target", "[policies][ha][least_inflight]") {
  // One request per tick; targets 0 and 1 answer in 2 ticks, target 2 takes 50.
  const std::vector<int> latency{2, 2, 50};
  LeastInflight li(3);
  std::vector<std::uint32_t> in_flight(3, 0);
  std::vector<std::deque<int>> due(3);
  std::map<std::size_t, int> counts;
  const int ticks = 3000;
  for (int t = 0; t < ticks; ++t) {
    for (std::size_t i = 0; i < 3; ++i) {
      while (!due[i].empty() && due[i].front() <= t) {
        due[i].pop_front();
        --in_flight[i];
      }
    }
    const std::size_t p = *li.pick(in_flight, all(3));
    ++counts[p];
    ++in_flight[p];
    due[p].push_back(t + latency[p]);
  }
  INFO("picks: " << counts[0] << ", " << counts[1] << ", " << counts[2]);
  // Round-robin would send it a third of them.
  CHECK(counts[2] < ticks / 20);
  CHECK(counts[0] > ticks * 4 / 10);
  CHECK(counts[1] > ticks * 4 / 10);
}

TEST_CASE("Least-inflight breaks ties round-robin", "[policies][ha][least_inflight]") {
  LeastInflight li(3);
  const std::vector<std::uint32_t> idle(3, 0);
  std::vector<std::size_t> seq;
  for (int i = 0; i < 7; ++i) seq.push_back(*li.pick(idle, all(3)));
  CHECK(seq == std::vector<std::size_t>{0, 1, 2, 0, 1, 2, 0});
  // Tied targets 0 and 2 alternate while 1 is busier.
  const std::vector<std::uint32_t> busy_middle{1, 4, 1};
  LeastInflight li2(3);
  seq.clear();
  for (int i = 0; i < 4; ++i) seq.push_back(*li2.pick(busy_middle, all(3)));
  CHECK(seq == std::vector<std::size_t>{0, 2, 0, 2});
}

TEST_CASE("Least-inflight weighs in-flight requests by target weight",
          "[policies][ha][least_inflight]") {
  // Weight 3 against weight 1: (in_flight + 1) / weight decides.
  LeastInflight li(std::vector<std::uint32_t>{3, 1});
  CHECK(li.pick(std::vector<std::uint32_t>{0, 0}, all(2)) == Index{0});  // 1/3 < 1
  CHECK(li.pick(std::vector<std::uint32_t>{1, 0}, all(2)) == Index{0});  // 2/3 < 1
  CHECK(li.pick(std::vector<std::uint32_t>{3, 0}, all(2)) == Index{1});  // 4/3 > 1
  CHECK(li.pick(std::vector<std::uint32_t>{6, 2}, all(2)) == Index{0});  // 7/3 < 3
  // Unweighted, the same counts only compare in flight.
  LeastInflight plain(2);
  CHECK(plain.pick(std::vector<std::uint32_t>{1, 0}, all(2)) == Index{1});
}

TEST_CASE("Least-inflight honours mask and avoid, and what it does with nothing eligible",
          "[policies][ha][least_inflight]") {
  LeastInflight li(3);
  const std::vector<std::uint32_t> in_flight{0, 9, 9};
  for (int i = 0; i < 20; ++i) {
    const Index p = li.pick(in_flight, all(3), 0);
    REQUIRE(p);
    CHECK(*p != 0);
    const Index q = li.pick(in_flight, TargetMask{false, true, true});
    REQUIRE(q);
    CHECK(*q != 0);
  }
  CHECK(li.pick(in_flight, TargetMask{true, false, false}, 0) == Index{0});
  CHECK_FALSE(li.pick(in_flight, TargetMask{false, false, false}));
  CHECK_FALSE(li.pick(in_flight, TargetMask{false, false, false}, 2));
  // Missing in-flight counts read as 0.
  CHECK(li.pick(std::vector<std::uint32_t>{4}, all(3)).value() != 0);
}

// ---------------------------------------------------------------------------
// Sticky (rendezvous hashing)

TEST_CASE("Sticky spreads 10,000 conversations evenly over 4 targets", "[policies][ha][sticky]") {
  const auto targets = names(4);
  Sticky sticky(targets);
  std::map<std::size_t, int> counts;
  for (int i = 0; i < 10000; ++i) ++counts[*sticky.pick(conversation(i), all(4))];
  for (std::size_t t = 0; t < 4; ++t) {
    INFO("target " << t << " holds " << counts[t]);
    CHECK(std::abs(counts[t] - 2500) <= 250);
  }
}

TEST_CASE("Sticky moves only the failed target's conversations", "[policies][ha][sticky]") {
  const auto targets = names(4);
  Sticky sticky(targets);
  const int keys = 10000;
  std::vector<std::size_t> before;
  for (int i = 0; i < keys; ++i) before.push_back(*sticky.pick(conversation(i), all(4)));

  for (std::size_t failed = 0; failed < 4; ++failed) {
    INFO("failed target " << failed);
    TargetMask mask = all(4);
    mask[failed] = false;
    int held = 0, moved = 0, stayed_wrongly = 0, moved_wrongly = 0;
    std::map<std::size_t, int> moved_to;
    for (int i = 0; i < keys; ++i) {
      const std::size_t after = *sticky.pick(conversation(i), mask);
      if (before[i] == failed) {
        ++held;
        if (after == failed) ++stayed_wrongly;
        ++moved_to[after];
      } else if (after != before[i]) {
        ++moved_wrongly;
      }
      if (after != before[i]) ++moved;
      // The retry path (avoid) sends a key where the mask would.
      if (before[i] == failed) CHECK(sticky.pick(conversation(i), all(4), failed) == Index{after});
    }
    CHECK(stayed_wrongly == 0);
    CHECK(moved_wrongly == 0);
    CHECK(moved == held);
    // The failed target's conversations spread over all three survivors.
    CHECK(moved_to.size() == 3);
    for (auto& [t, c] : moved_to) CHECK(c > held / 6);
  }
  // When the target returns, exactly its conversations come back.
  for (int i = 0; i < keys; ++i) REQUIRE(*sticky.pick(conversation(i), all(4)) == before[i]);
}

TEST_CASE("Sticky follows target names, not their position in the pool", "[policies][ha][sticky]") {
  const std::vector<std::string> forward{"a", "b", "c"}, reversed{"c", "b", "a"};
  Sticky s1(forward), s2(reversed), s3(forward);
  for (int i = 0; i < 1000; ++i) {
    const std::size_t p1 = *s1.pick(conversation(i), all(3));
    CHECK(*s3.pick(conversation(i), all(3)) == p1);
    CHECK(reversed[*s2.pick(conversation(i), all(3))] == forward[p1]);
  }
}

TEST_CASE("Sticky honours the mask and falls back to the avoided target only when eligible",
          "[policies][ha][sticky]") {
  const auto targets = names(3);
  Sticky sticky(targets);
  for (int i = 0; i < 200; ++i) {
    const Index p = sticky.pick(conversation(i), TargetMask{true, false, true}, 2);
    CHECK(p == Index{0});
  }
  CHECK(sticky.pick("k", TargetMask{false, true, false}, 1) == Index{1});
  CHECK_FALSE(sticky.pick("k", TargetMask{false, false, false}));
  CHECK_FALSE(sticky.pick("k", TargetMask{false, false, false}, 0));
}

// ---------------------------------------------------------------------------
// Priority failover

TEST_CASE("Failover picks the first eligible target in configured order",
          "[policies][ha][failover]") {
  Failover f(3);
  CHECK(f.pick(all(3)) == Index{0});
  CHECK(f.pick(TargetMask{false, true, true}) == Index{1});
  CHECK(f.pick(TargetMask{false, false, true}) == Index{2});
  CHECK(f.pick(TargetMask{true, false, true}) == Index{0});  // the primary is back: it wins
}

TEST_CASE("Failover honours avoid, and what it does with nothing eligible",
          "[policies][ha][failover]") {
  Failover f(3);
  CHECK(f.pick(all(3), 0) == Index{1});
  CHECK(f.pick(TargetMask{true, false, true}, 0) == Index{2});
  CHECK(f.pick(all(3), 2) == Index{0});
  CHECK(f.pick(TargetMask{false, true, false}, 1) == Index{1});
  CHECK_FALSE(f.pick(TargetMask{false, false, false}));
  CHECK_FALSE(f.pick(TargetMask{false, false, false}, 1));
  CHECK_FALSE(Failover(0).pick(TargetMask{}));
}

// ---------------------------------------------------------------------------
// Picker: the five policies behind one interface

TEST_CASE("PolicyKind parses exactly the config spellings", "[policies][ha][picker]") {
  CHECK(parse_policy_kind("round-robin") == PolicyKind::round_robin);
  CHECK(parse_policy_kind("weighted") == PolicyKind::weighted);
  CHECK(parse_policy_kind("least-inflight") == PolicyKind::least_inflight);
  CHECK(parse_policy_kind("sticky") == PolicyKind::sticky);
  CHECK(parse_policy_kind("failover") == PolicyKind::failover);
  for (const char* bad : {"", "Round-Robin", "least_inflight", "random", "sticky ", "rr"}) {
    INFO("'" << bad << "'");
    CHECK_FALSE(parse_policy_kind(bad));
  }
  for (const auto& [name, kind] : botgate::kPolicyNames) {
    CHECK(botgate::to_string(kind) == name);
    CHECK(parse_policy_kind(botgate::to_string(kind)) == kind);
  }
}

TEST_CASE("Picker runs the configured policy", "[policies][ha][picker]") {
  const auto targets = names(3);
  const std::vector<std::uint32_t> weights{5, 1, 1};
  const auto mask = all(3);
  const auto run = [&](Picker& p, int count, botgate::PickRequest r) {
    std::vector<std::size_t> seq;
    for (int i = 0; i < count; ++i) seq.push_back(*p.pick(r));
    return seq;
  };

  Picker rr(PolicyKind::round_robin, targets, weights);
  CHECK(rr.kind() == PolicyKind::round_robin);
  CHECK(rr.size() == 3);
  CHECK(run(rr, 6, {.eligible = mask}) == std::vector<std::size_t>{0, 1, 2, 0, 1, 2});

  Picker weighted(PolicyKind::weighted, targets, weights);
  CHECK(run(weighted, 7, {.eligible = mask}) == std::vector<std::size_t>{0, 0, 1, 0, 2, 0, 0});

  Picker least(PolicyKind::least_inflight, targets);
  const std::vector<std::uint32_t> in_flight{4, 7, 2};
  CHECK(run(least, 3, {.eligible = mask, .in_flight = in_flight}) ==
        std::vector<std::size_t>{2, 2, 2});

  Picker sticky(PolicyKind::sticky, targets);
  const Sticky direct(targets);
  for (int i = 0; i < 100; ++i) {
    const auto key = conversation(i);
    CHECK(sticky.pick({.eligible = mask, .key = key}) == direct.pick(key, mask));
  }

  Picker failover(PolicyKind::failover, targets);
  CHECK(run(failover, 3, {.eligible = TargetMask{false, true, true}}) ==
        std::vector<std::size_t>{1, 1, 1});
}

TEST_CASE("Picker round-robin walks past ineligible targets", "[policies][ha][picker]") {
  const auto targets = names(4);
  Picker rr(PolicyKind::round_robin, targets);
  const TargetMask mask{true, false, true, true};
  std::vector<std::size_t> seq;
  for (int i = 0; i < 6; ++i) seq.push_back(*rr.pick({.eligible = mask}));
  CHECK(seq == std::vector<std::size_t>{0, 2, 3, 0, 2, 3});
  // Nothing eligible leaves the rotation where it was.
  CHECK_FALSE(rr.pick({.eligible = TargetMask(4, false)}));
  CHECK(rr.pick({.eligible = all(4)}) == Index{0});
  CHECK(rr.pick({.eligible = all(4), .avoid = 1}) == Index{2});
}

TEST_CASE("Every policy honours the mask and avoid, and picks nothing only when none is eligible",
          "[policies][ha][picker]") {
  std::mt19937_64 rng(20240604);
  for (const auto& [name, kind] : botgate::kPolicyNames) {
    for (std::size_t n = 1; n <= 6; ++n) {
      const auto targets = names(n);
      std::vector<std::uint32_t> weights(n);
      for (auto& w : weights) w = static_cast<std::uint32_t>(rng() % 5 + 1);
      Picker picker(kind, targets, weights);
      for (int round = 0; round < 500; ++round) {
        TargetMask mask(n);
        std::size_t eligible = 0;
        for (std::size_t i = 0; i < n; ++i) {
          mask[i] = rng() % 3 != 0;
          eligible += mask[i];
        }
        const Index avoid = rng() % 2 ? Index{rng() % n} : std::nullopt;
        std::vector<std::uint32_t> in_flight(n);
        for (auto& c : in_flight) c = static_cast<std::uint32_t>(rng() % 4);
        const auto key = conversation(round);
        const Index p =
            picker.pick({.eligible = mask, .avoid = avoid, .key = key, .in_flight = in_flight});
        INFO(name << " n=" << n << " round=" << round);
        if (eligible == 0) {
          REQUIRE_FALSE(p);
          continue;
        }
        REQUIRE(p);
        REQUIRE(*p < n);
        REQUIRE(mask[*p]);
        const bool only_avoided_eligible = avoid && mask[*avoid] && eligible == 1;
        if (avoid && !only_avoided_eligible) REQUIRE(*p != *avoid);
        if (only_avoided_eligible) REQUIRE(*p == *avoid);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Outlier ejection

TEST_CASE("Outlier ejects a target after N consecutive failures", "[policies][ha][outlier]") {
  OutlierDetector od(10);  // defaults: 5 failures, 30 s base, 300 s cap, 10%
  for (int i = 0; i < 4; ++i) CHECK_FALSE(od.on_failure(3, t0));
  CHECK(od.consecutive_failures(3) == 4);
  CHECK_FALSE(od.ejected(3, t0));
  CHECK(od.on_failure(3, t0));
  CHECK(od.ejected(3, t0));
  CHECK(od.ejections(3) == 1);
  CHECK(od.eligible(t0) == TargetMask{true, true, true, false, true, true, true, true, true, true});
}

TEST_CASE("Outlier: a success resets the failure streak", "[policies][ha][outlier]") {
  OutlierDetector od(4, OutlierConfig{.consecutive_failures = 3});
  for (int round = 0; round < 10; ++round) {
    CHECK_FALSE(od.on_failure(0, t0));
    CHECK_FALSE(od.on_failure(0, t0));
    od.on_success(0);
  }
  CHECK_FALSE(od.ejected(0, t0));
  CHECK(od.consecutive_failures(0) == 0);
  od.on_failure(0, t0);
  od.on_failure(0, t0);
  CHECK(od.on_failure(0, t0));
}

TEST_CASE("Outlier ejection lasts base x ejections, capped, then ends by itself",
          "[policies][ha][outlier]") {
  OutlierConfig cfg{.consecutive_failures = 2,
                    .base_ejection_time = 10s,
                    .max_ejection_time = 35s,
                    .max_ejection_percent = 50};
  OutlierDetector od(2, cfg);
  const std::vector<std::chrono::nanoseconds> expected{10s, 20s, 30s, 35s, 35s, 35s};
  TimePoint now = t0;
  for (std::size_t k = 0; k < expected.size(); ++k) {
    INFO("ejection " << k + 1);
    od.on_failure(1, now);
    REQUIRE(od.on_failure(1, now));
    CHECK(od.ejected_until(1, now) == now + expected[k]);
    CHECK(od.next_return(now) == now + expected[k]);
    CHECK(od.ejected(1, now + expected[k] - 1ns));
    CHECK(od.eligible(now + expected[k] - 1ns) == TargetMask{true, false});
    // Failures reported while ejected (late answers) neither count nor extend it.
    CHECK_FALSE(od.on_failure(1, now + 1s));
    CHECK_FALSE(od.on_failure(1, now + 2s));
    CHECK(od.ejected_until(1, now + 2s) == now + expected[k]);
    now += expected[k];
    CHECK_FALSE(od.ejected(1, now));
    CHECK(od.eligible(now) == TargetMask{true, true});
    CHECK_FALSE(od.next_return(now));
    CHECK(od.consecutive_failures(1) == 0);
  }
  CHECK(od.ejections(1) == expected.size());
}

TEST_CASE("Outlier ejection time saturates without overflow", "[policies][ha][outlier]") {
  OutlierDetector od(2, OutlierConfig{.base_ejection_time = 30s, .max_ejection_time = 300s});
  CHECK(od.ejection_time(1) == 30s);
  CHECK(od.ejection_time(9) == 270s);
  CHECK(od.ejection_time(10) == 300s);
  CHECK(od.ejection_time(11) == 300s);
  CHECK(od.ejection_time(0xffffffffu) == 300s);
  // A cap that is not a multiple of base: the first product past it is capped.
  OutlierDetector odd(2, OutlierConfig{.base_ejection_time = 30s, .max_ejection_time = 100s});
  CHECK(odd.ejection_time(3) == 90s);
  CHECK(odd.ejection_time(4) == 100s);
}

TEST_CASE("Outlier never ejects more than max_ejection_percent of the pool",
          "[policies][ha][outlier]") {
  OutlierDetector od(20, OutlierConfig{.consecutive_failures = 1, .base_ejection_time = 10s});
  CHECK(od.max_ejected() == 2);  // 10% of 20
  CHECK(od.on_failure(0, t0));
  CHECK(od.on_failure(1, t0 + 1s));
  CHECK_FALSE(od.on_failure(2, t0 + 2s));
  CHECK_FALSE(od.on_failure(2, t0 + 3s));
  CHECK(od.ejected_count(t0 + 3s) == 2);
  CHECK_FALSE(od.ejected(2, t0 + 3s));
  // Target 0 returns at t0 + 10 s; target 2's next failure takes the freed slot.
  CHECK(od.on_failure(2, t0 + 10s));
  CHECK(od.eligible(t0 + 10s)[0]);
  CHECK_FALSE(od.eligible(t0 + 10s)[2]);
  CHECK(od.ejected_count(t0 + 10s) == 2);
}

TEST_CASE("Outlier may eject one target of a small pool, never the last one",
          "[policies][ha][outlier]") {
  SECTION("10% of 3 targets still allows one ejection") {
    OutlierDetector od(3, OutlierConfig{.consecutive_failures = 1});
    CHECK(od.max_ejected() == 1);
    CHECK(od.on_failure(0, t0));
    CHECK_FALSE(od.on_failure(1, t0));
    CHECK(od.eligible(t0) == TargetMask{false, true, true});
  }
  SECTION("even at 100%, the last target of the pool stays") {
    OutlierDetector od(2, OutlierConfig{.consecutive_failures = 1, .max_ejection_percent = 100});
    CHECK(od.max_ejected() == 1);
    CHECK(od.on_failure(0, t0));
    for (int i = 0; i < 10; ++i) CHECK_FALSE(od.on_failure(1, t0 + i * 1s));
    CHECK(od.eligible(t0 + 9s) == TargetMask{false, true});
  }
  SECTION("a pool of one is never ejected") {
    OutlierDetector od(1, OutlierConfig{.consecutive_failures = 1, .max_ejection_percent = 100});
    for (int i = 0; i < 10; ++i) CHECK_FALSE(od.on_failure(0, t0));
    CHECK(od.eligible(t0) == TargetMask{true});
  }
  SECTION("0% disables ejection") {
    OutlierDetector od(5, OutlierConfig{.consecutive_failures = 1, .max_ejection_percent = 0});
    for (int i = 0; i < 10; ++i) CHECK_FALSE(od.on_failure(0, t0));
    CHECK(od.ejected_count(t0) == 0);
  }
}

// ---------------------------------------------------------------------------
// Active health state (rise / fall)

TEST_CASE("Health starts healthy and goes down after fall failures in a row",
          "[policies][ha][health]") {
  HealthState h;  // rise 2, fall 3
  CHECK(h.healthy());
  CHECK(h.rise() == 2);
  CHECK(h.fall() == 3);
  CHECK_FALSE(h.on_probe(false));
  CHECK_FALSE(h.on_probe(false));
  CHECK(h.healthy());
  CHECK(h.streak() == 2);
  CHECK(h.on_probe(false));  // the third flips it
  CHECK_FALSE(h.healthy());
  CHECK_FALSE(h.on_probe(false));  // already down: no transition
  CHECK_FALSE(h.healthy());
}

TEST_CASE("Health comes back after rise successes in a row", "[policies][ha][health]") {
  HealthState h(HealthThresholds{}, /*healthy=*/false);
  CHECK_FALSE(h.healthy());
  CHECK_FALSE(h.on_probe(true));
  CHECK(h.on_probe(true));
  CHECK(h.healthy());
  CHECK_FALSE(h.on_probe(true));
}

TEST_CASE("Health thresholds count only consecutive results", "[policies][ha][health]") {
  HealthState h;
  // Failures broken by a success never reach fall = 3.
  for (int i = 0; i < 10; ++i) {
    CHECK_FALSE(h.on_probe(false));
    CHECK_FALSE(h.on_probe(false));
    CHECK_FALSE(h.on_probe(true));
  }
  CHECK(h.healthy());
  for (int i = 0; i < 3; ++i) h.on_probe(false);
  REQUIRE_FALSE(h.healthy());
  // Successes broken by a failure never reach rise = 2.
  for (int i = 0; i < 10; ++i) {
    CHECK_FALSE(h.on_probe(true));
    CHECK_FALSE(h.on_probe(false));
  }
  CHECK_FALSE(h.healthy());
}

TEST_CASE("Health with custom and zero thresholds", "[policies][ha][health]") {
  HealthState h(HealthThresholds{.rise = 4, .fall = 1});
  CHECK(h.on_probe(false));
  for (int i = 0; i < 3; ++i) CHECK_FALSE(h.on_probe(true));
  CHECK(h.on_probe(true));
  HealthState z(HealthThresholds{.rise = 0, .fall = 0});
  CHECK(z.on_probe(false));  // 0 acts as 1: every contrary result flips
  CHECK(z.on_probe(true));
  CHECK(z.healthy());
}

TEST_CASE("Policies never pick an index outside their pool, even with a longer mask",
          "[policies][ha][picker]") {
  const auto targets = names(2);
  const TargetMask mask{false, false, true, true};  // targets 2 and 3 do not exist in the pool
  for (const auto& [name, kind] : botgate::kPolicyNames) {
    INFO(name);
    Picker picker(kind, targets);
    CHECK_FALSE(picker.pick({.eligible = mask}));
    CHECK_FALSE(picker.pick({.eligible = mask, .avoid = 2}));
    Picker empty(kind, std::vector<std::string>{});
    CHECK_FALSE(empty.pick({.eligible = mask, .avoid = 3}));
  }
}

TEST_CASE("Token bucket lets a burst through, then the rate", "[policies][ha][token_bucket]") {
  TokenBucket b(10.0, 3.0, t0);  // 10/s, burst 3
  CHECK(b.try_take(t0));
  CHECK(b.try_take(t0));
  CHECK(b.try_take(t0));
  CHECK_FALSE(b.try_take(t0));
  CHECK(b.next_available(t0) > t0 + 99ms);
  CHECK(b.next_available(t0) <= t0 + 101ms);
  CHECK_FALSE(b.available(t0 + 99ms));
  CHECK(b.try_take(t0 + 100ms));
  CHECK_FALSE(b.try_take(t0 + 100ms));
  // A long pause refills only up to the burst.
  const auto later = t0 + 1h;
  int taken = 0;
  while (b.try_take(later)) ++taken;
  CHECK(taken == 3);
}

TEST_CASE("Token bucket holds its rate over a long run", "[policies][ha][token_bucket]") {
  TokenBucket b(50.0, 1.0, t0);
  int taken = 0;
  for (auto t = t0; t < t0 + 10s; t += 1ms) taken += b.try_take(t) ? 1 : 0;
  // 10 s at 50/s, plus the one token the bucket started with.
  CHECK(taken >= 500);
  CHECK(taken <= 501);
}

TEST_CASE("Token bucket: a tiny rate puts the next token far ahead, never in the past",
          "[policies][ha][token_bucket]") {
  for (double rate : {1e-12, 1e-300, 1e-3}) {
    INFO("rate " << rate);
    TokenBucket b(rate, 1.0, t0);
    REQUIRE(b.try_take(t0));
    const auto next = b.next_available(t0);
    CHECK(next > t0);
    CHECK(next <= t0 + std::chrono::hours(24 * 366));
  }
}

TEST_CASE("Token bucket: rate 0 is unlimited, burst below 1 is 1", "[policies][ha][token_bucket]") {
  TokenBucket open;
  CHECK(open.unlimited());
  for (int i = 0; i < 1000; ++i) REQUIRE(open.try_take(t0));
  CHECK(open.next_available(t0) == t0);
  TokenBucket tiny(5.0, 0.0, t0);
  CHECK(tiny.burst() == 1.0);
  CHECK(tiny.try_take(t0));
  CHECK_FALSE(tiny.try_take(t0));
  CHECK(botgate::default_burst(0.5) == 1.0);
  CHECK(botgate::default_burst(20.0) == 20.0);
  CHECK(botgate::default_burst(2.5) == 3.0);
}
