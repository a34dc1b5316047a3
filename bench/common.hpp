// Small helpers shared by the bench tools (loadgen, sink, router_bench).
#pragma once

#include <time.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace bench {

inline std::uint64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

template <class T>
bool parse_num(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size();
}

// A non-negative decimal number below `max` ("2", "0.5"): seconds, rates.
inline bool parse_decimal(std::string_view s, double& out, double max = 1e7) {
  try {
    std::size_t pos = 0;
    out = std::stod(std::string(s), &pos);
    return pos == s.size() && out >= 0 && out < max;
  } catch (...) {
    return false;
  }
}

// Splits argv[i] into a flag and its value, written `--flag=value` or
// `--flag value` (then i moves past the value). False when the value is missing.
inline bool flag_value(int argc, char** argv, int& i, std::string_view& flag,
                       std::string_view& value) {
  flag = argv[i];
  if (auto eq = flag.find('='); eq != std::string_view::npos) {
    value = flag.substr(eq + 1);
    flag = flag.substr(0, eq);
    return true;
  }
  if (i + 1 >= argc) return false;
  value = argv[++i];
  return true;
}

enum class Flag { ok, bad, unknown };

// Walks argv. -h/--help prints the usage and exits 0. `on_switch(flag)` takes the flags that
// have no value (true when it knew the flag); every other flag has a value (`--flag=value` or
// `--flag value`) and goes to `on_value(flag, value)`. A missing, bad or unknown one is
// reported on stderr as "<tool>: ..." and gives false.
template <class Usage, class Switch, class Value>
bool parse_flags(const char* tool, int argc, char** argv, Usage usage, Switch on_switch,
                 Value on_value) {
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      usage(stdout);
      std::exit(0);
    }
    if (on_switch(flag)) continue;
    std::string_view value;
    if (!flag_value(argc, argv, i, flag, value)) {
      std::fprintf(stderr, "%s: %.*s needs a value\n", tool, static_cast<int>(flag.size()),
                   flag.data());
      return false;
    }
    switch (on_value(flag, value)) {
      case Flag::ok:
        continue;
      case Flag::bad:
        std::fprintf(stderr, "%s: bad value for %.*s: '%.*s'\n", tool,
                     static_cast<int>(flag.size()), flag.data(), static_cast<int>(value.size()),
                     value.data());
        return false;
      case Flag::unknown:
        std::fprintf(stderr, "%s: unknown option %.*s\n", tool, static_cast<int>(flag.size()),
                     flag.data());
        usage(stderr);
        return false;
    }
  }
  return true;
}

// The q-quantile (0 < q <= 1) of sorted samples, nearest rank; 0 when empty.
inline std::uint32_t percentile(const std::vector<std::uint32_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  auto rank = static_cast<std::size_t>(q * static_cast<double>(sorted.size()) + 0.999999);
  rank = std::clamp<std::size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

}  // namespace bench
