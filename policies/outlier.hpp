// Passive outlier detection, as in Envoy's consecutive-failure detector: real deliveries that
// fail (5xx, timeout, connection error) in a row eject a target for a growing time. Pure: the
// caller reports outcomes and passes the time in; nothing here reads a clock.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "policies/target_mask.hpp"

namespace botgate {

struct OutlierConfig {
  // Failures in a row that eject a target.
  std::uint32_t consecutive_failures = 5;
  // The k-th ejection of a target lasts base_ejection_time * k, at most max_ejection_time.
  std::chrono::nanoseconds base_ejection_time = std::chrono::seconds(30);
  std::chrono::nanoseconds max_ejection_time = std::chrono::seconds(300);
  // At most floor(pool size * percent / 100) targets are ejected at once, but at least one when
  // percent > 0 (as Envoy's always_eject_one_host: with the default 10% a pool of fewer than
  // ten targets could otherwise never eject), and never the last target. 0 disables ejection.
  std::uint32_t max_ejection_percent = 10;
};

class OutlierDetector {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;

  explicit OutlierDetector(std::size_t targets, OutlierConfig config = {})
      : config_(config), targets_(targets) {
    config_.consecutive_failures = std::max<std::uint32_t>(config_.consecutive_failures, 1);
    config_.max_ejection_percent = std::min<std::uint32_t>(config_.max_ejection_percent, 100);
    config_.max_ejection_time = std::max(config_.max_ejection_time, config_.base_ejection_time);
  }

  // A delivery to target i failed. Returns true when this failure ejected it. Failures while
  // already ejected are answers to requests sent before the ejection: they neither count nor
  // extend it. When the ejection limit is reached the streak keeps counting, so the next
  // failure after another target returns ejects this one.
  bool on_failure(std::size_t i, TimePoint now) noexcept {
    auto& t = targets_[i];
    if (t.ejected_until > now) return false;
    if (t.consecutive < config_.consecutive_failures) ++t.consecutive;
    if (t.consecutive < config_.consecutive_failures) return false;
    if (ejected_count(now) >= max_ejected()) return false;
    ++t.ejections;
    t.ejected_until = now + ejection_time(t.ejections);
    t.consecutive = 0;
    return true;
  }

  // A delivery to target i succeeded: its failure streak starts over.
  void on_success(std::size_t i) noexcept { targets_[i].consecutive = 0; }

  // An ejection ends by itself once its time has passed.
  bool ejected(std::size_t i, TimePoint now) const noexcept {
    return targets_[i].ejected_until > now;
  }

  // mask[i] is true when target i is not ejected at `now`.
  TargetMask eligible(TimePoint now) const {
    TargetMask mask(targets_.size());
    for (std::size_t i = 0; i < targets_.size(); ++i) mask[i] = !ejected(i, now);
    return mask;
  }

  std::size_t ejected_count(TimePoint now) const noexcept {
    return static_cast<std::size_t>(std::count_if(
        targets_.begin(), targets_.end(), [&](const Target& t) { return t.ejected_until > now; }));
  }

  // When target i's ejection ends, if it is ejected at `now`.
  std::optional<TimePoint> ejected_until(std::size_t i, TimePoint now) const noexcept {
    if (!ejected(i, now)) return std::nullopt;
    return targets_[i].ejected_until;
  }

  // The earliest end of an ejection after `now`: when a router should look again for waiting
  // events. nullopt when nothing is ejected.
  std::optional<TimePoint> next_return(TimePoint now) const noexcept {
    std::optional<TimePoint> next;
    for (const auto& t : targets_) {
      if (t.ejected_until > now && (!next || t.ejected_until < *next)) next = t.ejected_until;
    }
    return next;
  }

  // How many times target i has been ejected (the multiplier of its next ejection, minus one).
  std::uint32_t ejections(std::size_t i) const noexcept { return targets_[i].ejections; }
  std::uint32_t consecutive_failures(std::size_t i) const noexcept {
    return targets_[i].consecutive;
  }

  // The most targets that may be ejected at once (see OutlierConfig::max_ejection_percent).
  std::size_t max_ejected() const noexcept {
    const std::size_t n = targets_.size();
    if (n <= 1 || config_.max_ejection_percent == 0) return 0;
    const std::size_t by_percent = n * config_.max_ejection_percent / 100;
    return std::clamp<std::size_t>(by_percent, 1, n - 1);
  }

  // The length of the k-th ejection: base * k, at most max.
  std::chrono::nanoseconds ejection_time(std::uint32_t k) const noexcept {
    const auto base = config_.base_ejection_time;
    if (base <= std::chrono::nanoseconds::zero()) return std::chrono::nanoseconds::zero();
    // base * k <= max exactly when k <= floor(max / base); the test avoids overflowing base * k.
    if (k > config_.max_ejection_time / base) return config_.max_ejection_time;
    return base * k;
  }

  std::size_t size() const noexcept { return targets_.size(); }
  const OutlierConfig& config() const noexcept { return config_; }

 private:
  struct Target {
    std::uint32_t consecutive = 0;
    std::uint32_t ejections = 0;
    TimePoint ejected_until{};  // in the past when not ejected
  };

  OutlierConfig config_;
  std::vector<Target> targets_;
};

}  // namespace botgate
