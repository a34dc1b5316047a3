#include "core/log_throttle.hpp"

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <thread>
#include <vector>

#include "tests/unit/scratch_dir.hpp"
#include "tests/unit/stderr_capture.hpp"

using botgate::log::Throttle;

TEST_CASE("log::Throttle admits one line per interval and reports what it left out", "[log]") {
  constexpr std::int64_t kSecond = 1'000'000'000;
  Throttle t(kSecond);
  REQUIRE(t.admit(5 * kSecond) == std::optional<std::uint64_t>(0));  // the first, at once
  CHECK_FALSE(t.admit(5 * kSecond));
  CHECK_FALSE(t.admit(5 * kSecond + kSecond / 2));
  CHECK_FALSE(t.admit(6 * kSecond - 1));
  CHECK(t.admit(6 * kSecond) == std::optional<std::uint64_t>(3));  // three left out meanwhile
  CHECK_FALSE(t.admit(6 * kSecond + 1));
  // After a quiet spell the next line goes out at once, with what was left out before it.
  CHECK(t.admit(60 * kSecond) == std::optional<std::uint64_t>(1));
  CHECK(t.admit(61 * kSecond) == std::optional<std::uint64_t>(0));
}

TEST_CASE("log::Throttle admits one line among threads racing in one interval", "[log]") {
  Throttle t(1'000'000'000);
  constexpr int kThreads = 4, kEach = 10000;
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      for (int n = 0; n < kEach; ++n) {
        if (t.admit(1000)) admitted.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(admitted.load() == 1);
  // Every other call was counted, and the next admitted line says so.
  CHECK(t.admit(2'000'000'000) == std::optional<std::uint64_t>(kThreads * kEach - 1));
}

TEST_CASE("log::warn_throttled writes the admitted line with left_out and counts the rest",
          "[log]") {
  botgate::test::ScratchDir dir("botgate-throttle");
  botgate::log::Throttle throttle(std::int64_t{3600} * botgate::log::Throttle::kOneSecondNs);
  const std::string out = botgate::test::stderr_of(dir.path, [&] {
    for (int i = 0; i < 3; ++i) {
      botgate::log::warn_throttled(throttle, "disk full", {{"shard", 2}, {"why", "no room"}});
    }
  });
  CHECK(out.find(" level=warn msg=\"disk full\" shard=2 why=\"no room\" left_out=0\n") !=
        std::string::npos);
  CHECK(std::count(out.begin(), out.end(), '\n') == 1);
  CHECK(throttle.take_left_out() == 2);
}
