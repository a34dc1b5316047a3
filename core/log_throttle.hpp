// One log line per interval for a condition that can repeat thousands of times a second (a full
// queue, a failed log): the first occurrence is logged at once, the next ones are only counted,
// and the next line logged says how many were left out. Writing a line per refused request
// while overloaded would add a write(2) to every one of them, just when there is no time to spare.
// Thread-safe and lock-free; the clock is the caller's, so the policy is testable.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "core/log.hpp"

namespace botgate::log {

class Throttle {
 public:
  static constexpr std::int64_t kOneSecondNs = 1'000'000'000;

  explicit Throttle(std::int64_t interval_ns = kOneSecondNs) : interval_ns_(interval_ns) {}

  // nullopt: leave this line out. Otherwise write it, noting the returned number of lines left
  // out before it. (Under a race a left-out line may be counted with the line after.) What is
  // left out after the last line waits for the next one, or for take_left_out().
  std::optional<std::uint64_t> admit(std::int64_t now_ns) {
    std::int64_t next = next_ns_.load(std::memory_order_relaxed);
    if (now_ns >= next &&
        next_ns_.compare_exchange_strong(next, now_ns + interval_ns_, std::memory_order_relaxed)) {
      return left_out_.exchange(0, std::memory_order_relaxed);
    }
    left_out_.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  }

  // admit() on the steady clock.
  std::optional<std::uint64_t> admit_now() {
    return admit(std::chrono::duration_cast<std::chrono::nanoseconds>(
                     std::chrono::steady_clock::now().time_since_epoch())
                     .count());
  }

  // The lines left out since the last one admitted, now counted as reported: for a last line
  // when the process stops.
  std::uint64_t take_left_out() { return left_out_.exchange(0, std::memory_order_relaxed); }

 private:
  const std::int64_t interval_ns_;
  std::atomic<std::int64_t> next_ns_{std::numeric_limits<std::int64_t>::min()};
  std::atomic<std::uint64_t> left_out_{0};
};

// A warning line for a condition that can repeat thousands of times a second: written when
// `throttle` admits it now, with a last field left_out=N (the lines left out since the one
// before); otherwise only counted.
inline void warn_throttled(Throttle& throttle, std::string_view msg,
                           std::initializer_list<Field> fields) {
  const auto left_out = throttle.admit_now();
  if (!left_out || !enabled(Level::warn)) return;
  std::vector<Field> all(fields);
  all.emplace_back("left_out", *left_out);
  write(Level::warn, msg, all);
}

}  // namespace botgate::log
