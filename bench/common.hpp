// Small helpers shared by the bench tools (loadgen, sink).
#pragma once

#include <time.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
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

// The q-quantile (0 < q <= 1) of sorted samples, nearest rank; 0 when empty.
inline std::uint32_t percentile(const std::vector<std::uint32_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  auto rank = static_cast<std::size_t>(q * static_cast<double>(sorted.size()) + 0.999999);
  rank = std::clamp<std::size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

}  // namespace bench
