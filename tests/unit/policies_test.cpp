#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "policies/backoff.hpp"
#include "policies/delivery_rules.hpp"
#include "policies/round_robin.hpp"

using namespace std::chrono_literals;
using botgate::Backoff;
using botgate::classify_answer;
using botgate::may_retry;
using botgate::RoundRobin;
using botgate::Verdict;

// ---------------------------------------------------------------------------
// RoundRobin

TEST_CASE("RoundRobin cycles through every index in order", "[policies][round_robin]") {
  RoundRobin rr(3);
  CHECK(rr.size() == 3);
  std::vector<std::size_t> seen;
  for (int i = 0; i < 7; ++i) seen.push_back(*rr.pick());
  CHECK(seen == std::vector<std::size_t>{0, 1, 2, 0, 1, 2, 0});
}

TEST_CASE("RoundRobin spreads many picks evenly", "[policies][round_robin]") {
  for (std::size_t n : {1u, 2u, 3u, 5u, 8u}) {
    RoundRobin rr(n);
    std::map<std::size_t, int> counts;
    const int rounds = 1000;
    for (std::size_t i = 0; i < n * rounds; ++i) {
      auto p = rr.pick();
      REQUIRE(p);
      REQUIRE(*p < n);
      ++counts[*p];
    }
    INFO("n = " << n);
    CHECK(counts.size() == n);
    for (auto& [index, c] : counts) CHECK(c == rounds);
  }
}

TEST_CASE("RoundRobin skips the avoided index when another exists", "[policies][round_robin]") {
  RoundRobin rr(3);
  // The next pick would be 0; avoiding 0 must yield something else.
  auto p = rr.pick(0);
  REQUIRE(p);
  CHECK(*p != 0);
  // Whatever the rotation state, an avoided index is never returned.
  for (int i = 0; i < 100; ++i) {
    const std::size_t avoid = static_cast<std::size_t>(i % 3);
    auto q = rr.pick(avoid);
    REQUIRE(q);
    CHECK(*q != avoid);
    CHECK(*q < 3);
  }
}

TEST_CASE("RoundRobin with two targets sends a retry to the other one", "[policies][round_robin]") {
  RoundRobin rr(2);
  CHECK(*rr.pick() == 0);
  CHECK(*rr.pick() == 1);
  // Next in rotation is 0, but 0 just failed.
  CHECK(*rr.pick(0) == 1);
  for (int i = 0; i < 50; ++i) {
    CHECK(*rr.pick(0) == 1);
    CHECK(*rr.pick(1) == 0);
  }
}

TEST_CASE("RoundRobin avoiding an index that is not next keeps the rotation",
          "[policies][round_robin]") {
  RoundRobin rr(3);
  CHECK(*rr.pick(2) == 0);
  CHECK(*rr.pick(0) == 1);
  CHECK(*rr.pick() == 2);
}

TEST_CASE("RoundRobin with one target returns it even when avoided", "[policies][round_robin]") {
  RoundRobin rr(1);
  for (int i = 0; i < 5; ++i) {
    auto p = rr.pick(0);
    REQUIRE(p);
    CHECK(*p == 0);
    CHECK(*rr.pick() == 0);
  }
}

TEST_CASE("RoundRobin over an empty pool picks nothing", "[policies][round_robin]") {
  RoundRobin rr(0);
  CHECK(rr.size() == 0);
  CHECK_FALSE(rr.pick());
  CHECK_FALSE(rr.pick(0));
}

// ---------------------------------------------------------------------------
// Backoff

TEST_CASE("Backoff ceiling doubles from base up to cap", "[policies][backoff]") {
  Backoff b(100ms, 30s);
  CHECK(b.ceiling(0) == Backoff::Duration(100ms));
  CHECK(b.ceiling(1) == Backoff::Duration(200ms));
  CHECK(b.ceiling(2) == Backoff::Duration(400ms));
  CHECK(b.ceiling(3) == Backoff::Duration(800ms));
  CHECK(b.ceiling(8) == Backoff::Duration(25600ms));
  CHECK(b.ceiling(9) == Backoff::Duration(30s));  // 51.2 s truncated
  CHECK(b.ceiling(10) == Backoff::Duration(30s));
}

TEST_CASE("Backoff ceiling equals min(cap, base * 2^n) for small n", "[policies][backoff]") {
  const Backoff::Duration base = 3ms, cap = 1s;
  Backoff b(base, cap);
  for (std::uint32_t n = 0; n < 20; ++n) {
    const auto expected = std::min<Backoff::Duration>(cap, base * (std::int64_t{1} << n));
    INFO("n = " << n);
    CHECK(b.ceiling(n) == expected);
  }
}

TEST_CASE("Backoff ceiling never exceeds cap for huge n", "[policies][backoff]") {
  Backoff b(100ms, 30s);
  for (std::uint32_t n :
       {30u, 63u, 64u, 65u, 100u, 1000u, 100000u, std::numeric_limits<std::uint32_t>::max()}) {
    INFO("n = " << n);
    CHECK(b.ceiling(n) == Backoff::Duration(30s));
  }
}

TEST_CASE("Backoff ceiling saturates at cap even near the Duration limit", "[policies][backoff]") {
  // A cap above 2^62 ns: doubling base past it must not overflow and wrap.
  const auto huge_cap = Backoff::Duration::max();
  Backoff b(1ns, huge_cap);
  for (std::uint32_t n : {62u, 63u, 64u, 100u, 1000u}) {
    INFO("n = " << n);
    CHECK(b.ceiling(n) > Backoff::Duration::zero());
    CHECK(b.ceiling(n) <= huge_cap);
  }
  CHECK(b.ceiling(1000) == huge_cap);
}

TEST_CASE("Backoff with cap below base uses base", "[policies][backoff]") {
  Backoff b(500ms, 100ms);
  CHECK(b.ceiling(0) == Backoff::Duration(500ms));
  CHECK(b.ceiling(5) == Backoff::Duration(500ms));
}

TEST_CASE("Backoff delay stays within [0, ceiling(n)]", "[policies][backoff]") {
  Backoff b(10ms, 1s);
  std::mt19937_64 rng(12345);
  for (std::uint32_t n : {0u, 1u, 3u, 7u, 20u, 1000u}) {
    const auto ceil = b.ceiling(n);
    for (int i = 0; i < 2000; ++i) {
      const auto d = b.delay(n, rng);
      INFO("n = " << n << " delay = " << d.count());
      REQUIRE(d >= Backoff::Duration::zero());
      REQUIRE(d <= ceil);
    }
  }
}

TEST_CASE("Backoff delay is jittered over the whole range", "[policies][backoff]") {
  Backoff b(10ms, 1s);
  std::mt19937_64 rng(42);
  const auto ceil = b.ceiling(4);  // 160 ms
  std::set<std::int64_t> distinct;
  bool low = false, high = false;
  for (int i = 0; i < 1000; ++i) {
    const auto d = b.delay(4, rng);
    distinct.insert(d.count());
    if (d < ceil / 4) low = true;
    if (d > ceil * 3 / 4) high = true;
  }
  CHECK(distinct.size() > 900);  // not a constant, not a handful of values
  CHECK(low);                    // full jitter reaches down towards 0 ...
  CHECK(high);                   // ... and up towards the ceiling
}

TEST_CASE("Backoff delay is deterministic for the same seed", "[policies][backoff]") {
  Backoff b(10ms, 1s);
  std::mt19937_64 r1(7), r2(7), r3(8);
  std::vector<std::int64_t> a, c, d;
  for (std::uint32_t i = 0; i < 50; ++i) {
    a.push_back(b.delay(i % 8, r1).count());
    c.push_back(b.delay(i % 8, r2).count());
    d.push_back(b.delay(i % 8, r3).count());
  }
  CHECK(a == c);
  CHECK(a != d);
}

// ---------------------------------------------------------------------------
// Delivery rules

TEST_CASE("classify_answer: 2xx is done", "[policies][delivery_rules]") {
  CHECK(classify_answer(200) == Verdict::done);
  CHECK(classify_answer(201) == Verdict::done);
  CHECK(classify_answer(202) == Verdict::done);
  CHECK(classify_answer(204) == Verdict::done);
  CHECK(classify_answer(299) == Verdict::done);
}

TEST_CASE("classify_answer: no answer, 408, 429 and 5xx are retried",
          "[policies][delivery_rules]") {
  CHECK(classify_answer(0) == Verdict::retry);
  CHECK(classify_answer(408) == Verdict::retry);
  CHECK(classify_answer(429) == Verdict::retry);
  CHECK(classify_answer(500) == Verdict::retry);
  CHECK(classify_answer(502) == Verdict::retry);
  CHECK(classify_answer(503) == Verdict::retry);
  CHECK(classify_answer(504) == Verdict::retry);
  CHECK(classify_answer(599) == Verdict::retry);
}

TEST_CASE("classify_answer: other 4xx and 3xx are dead-lettered", "[policies][delivery_rules]") {
  CHECK(classify_answer(400) == Verdict::dead_letter);
  CHECK(classify_answer(401) == Verdict::dead_letter);
  CHECK(classify_answer(403) == Verdict::dead_letter);
  CHECK(classify_answer(404) == Verdict::dead_letter);
  CHECK(classify_answer(409) == Verdict::dead_letter);
  CHECK(classify_answer(410) == Verdict::dead_letter);
  CHECK(classify_answer(413) == Verdict::dead_letter);
  CHECK(classify_answer(422) == Verdict::dead_letter);
  CHECK(classify_answer(301) == Verdict::dead_letter);
  CHECK(classify_answer(302) == Verdict::dead_letter);
}

TEST_CASE("classify_answer is usable at compile time", "[policies][delivery_rules]") {
  static_assert(classify_answer(200) == Verdict::done);
  static_assert(classify_answer(503) == Verdict::retry);
  static_assert(classify_answer(404) == Verdict::dead_letter);
  SUCCEED();
}

TEST_CASE("may_retry stops after max_attempts", "[policies][delivery_rules]") {
  const auto age = 1s;
  const auto max_age = 48h;
  CHECK(may_retry(1, 3, age, max_age));
  CHECK(may_retry(2, 3, age, max_age));
  CHECK_FALSE(may_retry(3, 3, age, max_age));
  CHECK_FALSE(may_retry(4, 3, age, max_age));
  CHECK_FALSE(may_retry(1, 1, age, max_age));
  CHECK(may_retry(0, 1, age, max_age));
}

TEST_CASE("may_retry stops once the event is older than max_age", "[policies][delivery_rules]") {
  const auto max_age = std::chrono::nanoseconds(48h);
  CHECK(may_retry(1, 8, 47h, max_age));
  CHECK(may_retry(1, 8, max_age - 1ns, max_age));
  CHECK_FALSE(may_retry(1, 8, max_age, max_age));
  CHECK_FALSE(may_retry(1, 8, 49h, max_age));
  // Either limit alone is enough to stop.
  CHECK_FALSE(may_retry(8, 8, 1s, max_age));
  CHECK_FALSE(may_retry(0, 8, 30s, 30s));
}

TEST_CASE("Backoff stretches a delay to a Retry-After, up to the cap", "[policies][backoff]") {
  using namespace std::chrono_literals;
  const Backoff b(100ms, 30s);
  CHECK(b.honour_retry_after(250ms, 0s) == 250ms);  // none asked for
  CHECK(b.honour_retry_after(250ms, 5s) == 5s);
  CHECK(b.honour_retry_after(8s, 5s) == 8s);      // the backoff is already longer
  CHECK(b.honour_retry_after(1s, 3600s) == 30s);  // never past the cap
}
