// Retry-After values as a backend or platform sends them with 429 and 503 answers.
#include "transport/retry_after.hpp"

#include <catch2/catch.hpp>
#include <chrono>

using botgate::http::parse_retry_after;
using std::chrono::seconds;

namespace {
// 1994-11-06 08:49:37 UTC, the date of RFC 9110's examples.
const auto kNow = std::chrono::system_clock::time_point{seconds{784111777}};
}  // namespace

TEST_CASE("Retry-After delta-seconds", "[retry_after]") {
  CHECK(parse_retry_after("0", kNow) == seconds{0});
  CHECK(parse_retry_after("7", kNow) == seconds{7});
  CHECK(parse_retry_after(" 120 ", kNow) == seconds{120});
  CHECK(parse_retry_after("86400", kNow) == seconds{86400});
  CHECK(parse_retry_after("86401", kNow) == seconds{86400});
  CHECK(parse_retry_after("99999999999999999999999", kNow) == seconds{86400});
}

TEST_CASE("Retry-After HTTP-date in the three formats counts from now", "[retry_after]") {
  CHECK(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", kNow) == seconds{30});
  CHECK(parse_retry_after("Sunday, 06-Nov-94 08:50:07 GMT", kNow) == seconds{30});
  CHECK(parse_retry_after("Sun Nov  6 08:50:07 1994", kNow) == seconds{30});
  CHECK(parse_retry_after("Mon, 07 Nov 1994 08:49:37 GMT", kNow) == seconds{86400});
  CHECK(parse_retry_after("Tue, 08 Nov 1994 08:49:37 GMT", kNow) == seconds{86400});
}

TEST_CASE("Retry-After in the past or unreadable asks for no wait", "[retry_after]") {
  CHECK(parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", kNow) == seconds{0});
  CHECK(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", kNow) == seconds{0});
  for (const char* bad : {"", "  ", "-5", "1.5", "5s", "soon", "Sun, 06 Nov 1994 08:50:07",
                          "Sun, 06 Nov 1994 08:50:07 GMT trailing", "Sun, 32 Nov 1994 08:50:07 GMT",
                          "Xyz, 06 Nov 1994 08:50:07 GMT"}) {
    INFO(bad);
    CHECK(parse_retry_after(bad, kNow) == seconds{0});
  }
}
