#include "core/units.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <limits>

using namespace std::chrono_literals;
using botgate::Duration;
using botgate::format_duration;
using botgate::parse_duration;
using botgate::parse_size;

TEST_CASE("parse_duration accepts every unit", "[units]") {
  CHECK(parse_duration("1ns") == Duration(1ns));
  CHECK(parse_duration("7us") == Duration(7us));
  CHECK(parse_duration("250ms") == Duration(250ms));
  CHECK(parse_duration("2s") == Duration(2s));
  CHECK(parse_duration("5m") == Duration(5min));
  CHECK(parse_duration("48h") == Duration(48h));
  CHECK(parse_duration("2d") == Duration(48h));
}

TEST_CASE("parse_duration accepts compound durations", "[units]") {
  CHECK(parse_duration("1h30m") == Duration(90min));
  CHECK(parse_duration("1m30s") == Duration(90s));
  CHECK(parse_duration("1s500ms") == Duration(1500ms));
  CHECK(parse_duration("1d1h1m1s1ms1us1ns") == Duration(24h + 1h + 1min + 1s + 1ms + 1us + 1ns));
}

TEST_CASE("parse_duration accepts zero (callers decide whether it is allowed)", "[units]") {
  CHECK(parse_duration("0s") == Duration(0));
  CHECK(parse_duration("0ms") == Duration(0));
}

TEST_CASE("parse_duration rejects malformed input", "[units]") {
  CHECK_FALSE(parse_duration(""));
  CHECK_FALSE(parse_duration("10"));
  CHECK_FALSE(parse_duration("s"));
  CHECK_FALSE(parse_duration("-1s"));
  CHECK_FALSE(parse_duration("+1s"));
  CHECK_FALSE(parse_duration("1.5s"));
  CHECK_FALSE(parse_duration("5 parsecs"));
  CHECK_FALSE(parse_duration("5parsecs"));
  CHECK_FALSE(parse_duration(" 1s"));
  CHECK_FALSE(parse_duration("1s "));
  CHECK_FALSE(parse_duration("1 s"));
  CHECK_FALSE(parse_duration("1S"));
  CHECK_FALSE(parse_duration("1h30"));
  CHECK_FALSE(parse_duration("1w"));
}

TEST_CASE("parse_duration rejects overflow", "[units]") {
  // int64 nanoseconds hold about 292 years (~106751 days).
  CHECK(parse_duration("106751d"));
  CHECK_FALSE(parse_duration("106752d"));
  CHECK_FALSE(parse_duration("99999999999999999999s"));
  CHECK_FALSE(parse_duration("9223372036854775807ns1ns"));
  CHECK(parse_duration("9223372036854775807ns") ==
        Duration(std::numeric_limits<std::int64_t>::max()));
}

TEST_CASE("parse_size accepts bytes and every unit", "[units]") {
  CHECK(parse_size("0") == std::uint64_t{0});
  CHECK(parse_size("1024") == std::uint64_t{1024});
  CHECK(parse_size("512B") == std::uint64_t{512});
  CHECK(parse_size("8KiB") == std::uint64_t{8 * 1024});
  CHECK(parse_size("1MiB") == std::uint64_t{1 << 20});
  CHECK(parse_size("2GiB") == std::uint64_t{2} << 30);
  CHECK(parse_size("3KB") == std::uint64_t{3000});
  CHECK(parse_size("4MB") == std::uint64_t{4000000});
  CHECK(parse_size("5GB") == std::uint64_t{5000000000});
}

TEST_CASE("parse_size rejects malformed input and overflow", "[units]") {
  CHECK_FALSE(parse_size(""));
  CHECK_FALSE(parse_size("MiB"));
  CHECK_FALSE(parse_size("-1"));
  CHECK_FALSE(parse_size("1.5MiB"));
  CHECK_FALSE(parse_size("1 MiB"));
  CHECK_FALSE(parse_size("1mib"));
  CHECK_FALSE(parse_size("1TiB"));
  CHECK_FALSE(parse_size("1MiBx"));
  CHECK_FALSE(parse_size("18446744073709551616"));
  CHECK_FALSE(parse_size("17179869184GiB"));
  CHECK(parse_size("18446744073709551615") == std::numeric_limits<std::uint64_t>::max());
}

TEST_CASE("format_duration picks the shortest exact spelling", "[units]") {
  CHECK(format_duration(Duration(0)) == "0s");
  CHECK(format_duration(250ms) == "250ms");
  CHECK(format_duration(2s) == "2s");
  CHECK(format_duration(48h) == "48h");
  CHECK(format_duration(24h * 7) == "7d");
  CHECK(format_duration(24h * 365) == "365d");
  CHECK(format_duration(24h * 8 + 1h) == "193h");
  CHECK(format_duration(90min) == "90m");
  CHECK(format_duration(1500ms) == "1500ms");
  CHECK(format_duration(7us) == "7us");
  CHECK(format_duration(1ns) == "1ns");
  CHECK(format_duration(1001ns) == "1001ns");
}

TEST_CASE("format_duration output parses back to the same value", "[units]") {
  for (Duration d : {Duration(1ns), Duration(250ms), Duration(2s), Duration(90min), Duration(48h),
                     Duration(24h * 365), Duration(1500ms), Duration(123456789ns)}) {
    INFO(d.count());
    CHECK(parse_duration(format_duration(d)) == d);
  }
}
