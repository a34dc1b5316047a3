// Truncated exponential backoff with full jitter: delay = U[0, min(cap, base * 2^n)].
// Pure: the random source is injected.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

namespace botgate {

class Backoff {
 public:
  using Duration = std::chrono::nanoseconds;

  Backoff(Duration base, Duration cap) : base_(base), cap_(std::max(cap, base)) {}

  // The ceiling for the n-th retry (n = 0 for the first retry).
  Duration ceiling(std::uint32_t n) const noexcept {
    Duration d = base_;
    for (std::uint32_t i = 0; i < n && d < cap_; ++i) {
      if (d > cap_ / 2) return cap_;  // doubling would pass the cap (or overflow)
      d *= 2;
    }
    return std::min(d, cap_);
  }

  template <typename Rng>
  Duration delay(std::uint32_t n, Rng& rng) const {
    std::uniform_int_distribution<std::int64_t> dist(0, ceiling(n).count());
    return Duration{dist(rng)};
  }

  // A backend that answered 429 or 503 with Retry-After asked for at least that long: the
  // delay is stretched to it, but never past the cap, which keeps the operator's bound on how
  // long one conversation waits.
  Duration honour_retry_after(Duration delay, Duration retry_after) const noexcept {
    return std::max(delay, std::min(retry_after, cap_));
  }

 private:
  Duration base_;
  Duration cap_;
};

}  // namespace botgate
