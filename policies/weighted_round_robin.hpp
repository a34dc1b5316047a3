// Smooth weighted round-robin (nginx's algorithm): over any window, target i gets its share
// weight_i / total of the picks, and picks of a heavy target are interleaved with the others
// rather than sent in a run. Pure: no clock, no randomness, no I/O.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "policies/target_mask.hpp"

namespace botgate {

class WeightedRoundRobin {
 public:
  // One weight per target, from config (>= 1). A weight of 0 is treated as 1: config rejects
  // it, and a target that can never be picked belongs out of the pool, not at weight 0.
  explicit WeightedRoundRobin(std::vector<std::uint32_t> weights)
      : weights_(std::move(weights)), current_(weights_.size(), 0) {
    for (auto& w : weights_) w = std::max<std::uint32_t>(w, 1);
  }

  // Each candidate's current weight grows by its weight; the largest wins (the lowest index on
  // a tie) and gives back the candidates' total. Ineligible targets sit out and keep their
  // current weight. See target_mask.hpp for `avoid` and for what happens when nothing is
  // eligible.
  std::optional<std::size_t> pick(const TargetMask& eligible,
                                  std::optional<std::size_t> avoid = std::nullopt) noexcept {
    if (auto i = round(eligible, avoid)) return i;
    // A round over the avoided target alone would add its weight and take it back: no state
    // to update.
    return fallback_to_avoided(eligible, avoid, weights_.size());
  }

  std::size_t size() const noexcept { return weights_.size(); }
  std::uint32_t weight(std::size_t i) const noexcept { return weights_[i]; }

 private:
  std::optional<std::size_t> round(const TargetMask& eligible,
                                   std::optional<std::size_t> avoid) noexcept {
    std::int64_t total = 0;
    std::optional<std::size_t> best;
    for (std::size_t i = 0; i < weights_.size(); ++i) {
      if (!is_candidate(eligible, avoid, i)) continue;
      current_[i] += weights_[i];
      total += weights_[i];
      if (!best || current_[i] > current_[*best]) best = i;
    }
    if (best) current_[*best] -= total;
    return best;
  }

  std::vector<std::uint32_t> weights_;
  // Every round adds the candidates' total and takes it back from one, so the current weights
  // sum to zero and stay within a small multiple of the total weight: int64 never overflows.
  std::vector<std::int64_t> current_;
};

}  // namespace botgate
