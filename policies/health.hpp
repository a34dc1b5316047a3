// The active health state of one target, driven by probe results with rise/fall thresholds:
// `fall` failed probes in a row take a healthy target down, `rise` good probes in a row bring
// an unhealthy one back. Pure: the prober actor runs the probes and feeds the results in.
#pragma once

#include <algorithm>
#include <cstdint>

namespace botgate {

//   healthy --(fall failures in a row)--> unhealthy
//   unhealthy --(rise successes in a row)--> healthy
// A result that agrees with the current state resets the opposite streak. Counting is strictly
// consecutive, as Envoy's thresholds (HAProxy instead lets a success undo one failure).
struct HealthThresholds {
  std::uint32_t rise = 2;  // HAProxy's default
  std::uint32_t fall = 3;  // HAProxy's default
};

class HealthState {
 public:
  // A target starts healthy, as HAProxy's servers do: traffic flows at startup without waiting
  // rise * interval, and a target that is in fact down leaves after `fall` probes, or at once
  // through outlier detection. Thresholds of 0 are treated as 1.
  explicit HealthState(HealthThresholds t = {}, bool healthy = true) noexcept
      : rise_(std::max<std::uint32_t>(t.rise, 1)),
        fall_(std::max<std::uint32_t>(t.fall, 1)),
        healthy_(healthy) {}

  // Records one probe result. Returns true when it flipped the state.
  bool on_probe(bool ok) noexcept {
    if (ok == healthy_) {
      streak_ = 0;
      return false;
    }
    if (++streak_ < (healthy_ ? fall_ : rise_)) return false;
    healthy_ = ok;
    streak_ = 0;
    return true;
  }

  bool healthy() const noexcept { return healthy_; }
  // Probe results in a row against the current state (failures while healthy, successes while
  // unhealthy): how close the target is to flipping.
  std::uint32_t streak() const noexcept { return streak_; }
  std::uint32_t rise() const noexcept { return rise_; }
  std::uint32_t fall() const noexcept { return fall_; }

 private:
  std::uint32_t rise_;
  std::uint32_t fall_;
  bool healthy_;
  std::uint32_t streak_ = 0;
};

}  // namespace botgate
