// Least-inflight: send the next request to the eligible target with the least load, where load
// is in-flight requests per unit of weight. A slow target accumulates in-flight requests and so
// stops being chosen. Pure: the caller supplies the in-flight counts; no clock, no randomness.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "policies/target_mask.hpp"

namespace botgate {

class LeastInflight {
 public:
  // Unweighted: every target has weight 1.
  explicit LeastInflight(std::size_t targets) : weights_(targets, 1) {}

  // Weighted: a target of weight 3 is as loaded with 3 in flight as one of weight 1 with 1.
  // A weight of 0 is treated as 1 (config rejects it).
  explicit LeastInflight(std::vector<std::uint32_t> weights) : weights_(std::move(weights)) {
    for (auto& w : weights_) w = std::max<std::uint32_t>(w, 1);
  }

  // `in_flight[i]` is target i's count of requests in flight; missing entries count as 0.
  // The load compared is (in_flight + 1) / weight, the load the target would carry with this
  // request, so that among idle targets the heavier one wins. Ties go round-robin: the first
  // tied target at or after the one following the previous pick, which keeps equal targets
  // evenly used and the choice deterministic. See target_mask.hpp for `avoid` and for what
  // happens when nothing is eligible.
  std::optional<std::size_t> pick(std::span<const std::uint32_t> in_flight,
                                  const TargetMask& eligible,
                                  std::optional<std::size_t> avoid = std::nullopt) noexcept {
    const std::size_t n = weights_.size();
    std::optional<std::size_t> best;
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t i = (next_ + k) % n;
      if (!is_candidate(eligible, avoid, i)) continue;
      if (!best || less_loaded(in_flight, i, *best)) best = i;
    }
    if (!best) best = fallback_to_avoided(eligible, avoid, n);
    if (best) next_ = (*best + 1) % n;
    return best;
  }

  std::size_t size() const noexcept { return weights_.size(); }

 private:
  // (a_in + 1) / w_a < (b_in + 1) / w_b, cross-multiplied: both sides stay below 2^64.
  bool less_loaded(std::span<const std::uint32_t> in_flight, std::size_t a,
                   std::size_t b) const noexcept {
    const auto load = [&](std::size_t i) -> std::uint64_t {
      return i < in_flight.size() ? std::uint64_t{in_flight[i]} + 1 : 1;
    };
    return load(a) * weights_[b] < load(b) * weights_[a];
  }

  std::vector<std::uint32_t> weights_;
  std::size_t next_ = 0;
};

}  // namespace botgate
