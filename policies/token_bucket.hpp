// A token bucket: a target's rate limit (a platform quota). Tokens refill at `rate` per second
// up to `burst`; each delivery takes one. Pure: the caller passes the time in.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>

namespace botgate {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;

  // rate <= 0: unlimited. burst < 1 is taken as 1 (a bucket must hold one token to let
  // anything through). The bucket starts full.
  TokenBucket(double rate = 0, double burst = 1, TimePoint now = {}) noexcept
      : rate_(std::max(rate, 0.0)), burst_(std::max(burst, 1.0)), tokens_(burst_), at_(now) {}

  bool unlimited() const noexcept { return rate_ <= 0; }

  // Is a token there at `now`?
  bool available(TimePoint now) noexcept {
    if (unlimited()) return true;
    refill(now);
    return tokens_ >= 1.0;
  }

  // Takes a token if one is there.
  bool try_take(TimePoint now) noexcept {
    if (!available(now)) return false;
    if (!unlimited()) tokens_ -= 1.0;
    return true;
  }

  // When the next token will be there: `now` when one is there already.
  TimePoint next_available(TimePoint now) noexcept {
    if (available(now)) return now;
    // At most a year: a tiny rate would overflow the clock and put the time in the past.
    constexpr double kMaxWaitS = 365.0 * 24 * 3600;
    const double wait_s = std::min((1.0 - tokens_) / rate_, kMaxWaitS);
    return now +
           std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(wait_s)) +
           Clock::duration(1);  // round up, so the token is there at that time
  }

  double rate() const noexcept { return rate_; }
  double burst() const noexcept { return burst_; }

 private:
  void refill(TimePoint now) noexcept {
    if (now <= at_) return;
    const double elapsed = std::chrono::duration<double>(now - at_).count();
    tokens_ = std::min(burst_, tokens_ + elapsed * rate_);
    at_ = now;
  }

  double rate_;
  double burst_;
  double tokens_;
  TimePoint at_;
};

// The default burst for a rate: one second's worth, at least one token.
inline double default_burst(double rate) noexcept {
  return std::max(1.0, std::ceil(rate));
}

}  // namespace botgate
