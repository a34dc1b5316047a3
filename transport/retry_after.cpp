#include "transport/retry_after.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <ctime>
#include <string>

namespace botgate::http {

namespace {

constexpr std::chrono::seconds kMaxWait{86400};

// Seconds since the epoch of an HTTP-date, or -1. strptime reads the C locale's day and
// month names, which are HTTP's: botgate never calls setlocale.
std::int64_t http_date(std::string_view value) {
  static constexpr const char* kFormats[] = {
      "%a, %d %b %Y %H:%M:%S GMT",  // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
      "%A, %d-%b-%y %H:%M:%S GMT",  // RFC 850:     Sunday, 06-Nov-94 08:49:37 GMT
      "%a %b %e %H:%M:%S %Y",       // asctime:     Sun Nov  6 08:49:37 1994
  };
  const std::string text(value);  // strptime wants a terminated string
  for (const char* format : kFormats) {
    std::tm tm{};
    const char* end = ::strptime(text.c_str(), format, &tm);
    if (end == nullptr || *end != '\0') continue;
    const std::time_t t = ::timegm(&tm);
    if (t == static_cast<std::time_t>(-1)) continue;
    return static_cast<std::int64_t>(t);
  }
  return -1;
}

}  // namespace

std::chrono::seconds parse_retry_after(std::string_view value,
                                       std::chrono::system_clock::time_point now) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (value.empty()) return std::chrono::seconds{0};
  if (value.front() >= '0' && value.front() <= '9') {
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec == std::errc::result_out_of_range) return kMaxWait;
    if (ec != std::errc{} || end != value.data() + value.size()) return std::chrono::seconds{0};
    return std::chrono::seconds{std::min<std::uint64_t>(n, kMaxWait.count())};
  }
  const std::int64_t at = http_date(value);
  if (at < 0) return std::chrono::seconds{0};
  const auto from_now =
      at - std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  return std::chrono::seconds{std::clamp<std::int64_t>(from_now, 0, kMaxWait.count())};
}

}  // namespace botgate::http
