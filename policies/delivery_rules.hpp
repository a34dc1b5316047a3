// What a backend's answer means for an event, and when to stop retrying it.
// Pure: the caller supplies the status, the attempt count and the event's age.
#pragma once

#include <chrono>
#include <cstdint>

namespace botgate {

enum class Verdict { done, retry, dead_letter };

// `status` is 0 when no answer arrived (timeout, refused, reset).
// 2xx: done. 408, 429, 5xx or no answer: retry elsewhere. Any other answer (1xx, 3xx, any
// other 4xx): the backend refused this event for good, so it is dead-lettered.
constexpr Verdict classify_answer(unsigned status) noexcept {
  if (status == 0) return Verdict::retry;
  if (status >= 200 && status < 300) return Verdict::done;
  if (status == 408 || status == 429 || status >= 500) return Verdict::retry;
  return Verdict::dead_letter;
}

// After `attempts` failed tries of an event that is `age` old, may it be tried again?
constexpr bool may_retry(std::uint32_t attempts, std::uint32_t max_attempts,
                         std::chrono::nanoseconds age, std::chrono::nanoseconds max_age) noexcept {
  return attempts < max_attempts && age < max_age;
}

}  // namespace botgate
