#include "core/units.hpp"

#include <limits>

namespace botgate {
namespace {

bool read_uint(std::string_view& s, std::uint64_t& out) {
  std::size_t i = 0;
  std::uint64_t v = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    auto digit = static_cast<std::uint64_t>(s[i] - '0');
    if (v > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return false;
    v = v * 10 + digit;
    ++i;
  }
  if (i == 0) return false;
  out = v;
  s.remove_prefix(i);
  return true;
}

}  // namespace

std::optional<Duration> parse_duration(std::string_view s) {
  if (s.empty()) return std::nullopt;
  struct Unit {
    std::string_view name;
    std::uint64_t ns;
  };
  // Longest names first so "ms" is not read as "m" followed by garbage.
  static constexpr Unit units[] = {{"ns", 1},
                                   {"us", 1000},
                                   {"ms", 1000000},
                                   {"s", 1000000000ull},
                                   {"m", 60ull * 1000000000ull},
                                   {"h", 3600ull * 1000000000ull},
                                   {"d", 86400ull * 1000000000ull}};
  const std::uint64_t max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t total = 0;
  while (!s.empty()) {
    std::uint64_t n = 0;
    if (!read_uint(s, n)) return std::nullopt;
    const Unit* unit = nullptr;
    for (const auto& u : units) {
      if (s.substr(0, u.name.size()) == u.name) {
        unit = &u;
        break;
      }
    }
    if (unit == nullptr) return std::nullopt;
    s.remove_prefix(unit->name.size());
    if (n != 0 && unit->ns > max / n) return std::nullopt;
    if (total > max - n * unit->ns) return std::nullopt;
    total += n * unit->ns;
  }
  return Duration{static_cast<std::int64_t>(total)};
}

std::optional<std::uint64_t> parse_size(std::string_view s) {
  std::uint64_t n = 0;
  if (!read_uint(s, n)) return std::nullopt;
  struct Unit {
    std::string_view name;
    std::uint64_t mul;
  };
  static constexpr Unit units[] = {
      {"", 1},      {"B", 1},        {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30},
      {"KB", 1000}, {"MB", 1000000}, {"GB", 1000000000}};
  for (const auto& u : units) {
    if (s == u.name) {
      if (n != 0 && u.mul > std::numeric_limits<std::uint64_t>::max() / n) return std::nullopt;
      return n * u.mul;
    }
  }
  return std::nullopt;
}

std::string format_duration(Duration d) {
  auto ns = d.count();
  struct Unit {
    const char* name;
    std::int64_t ns;
  };
  static constexpr Unit units[] = {
      {"h", 3600000000000}, {"m", 60000000000}, {"s", 1000000000}, {"ms", 1000000}, {"us", 1000}};
  if (ns == 0) return "0s";
  // Whole days from a week on, as the config limits are written ("365d"); shorter spans stay in
  // hours ("48h", as WeChat's reply window is spoken of).
  constexpr std::int64_t kDay = 86400000000000;
  if (ns % kDay == 0 && ns >= 7 * kDay) return std::to_string(ns / kDay) + "d";
  for (const auto& u : units) {
    if (ns % u.ns == 0) return std::to_string(ns / u.ns) + u.name;
  }
  return std::to_string(ns) + "ns";
}

}  // namespace botgate
