// Priority failover: every request goes to the first eligible target in the pool's configured
// order; the next one takes over only while all before it are out, and traffic returns to a
// higher-priority target as soon as it is eligible again. Pure and stateless.
#pragma once

#include <cstddef>
#include <optional>

#include "policies/target_mask.hpp"

namespace botgate {

class Failover {
 public:
  explicit Failover(std::size_t targets) : n_(targets) {}

  // The first eligible target by index, skipping `avoid`. See target_mask.hpp for `avoid` and
  // for what happens when nothing is eligible.
  std::optional<std::size_t> pick(const TargetMask& eligible,
                                  std::optional<std::size_t> avoid = std::nullopt) const noexcept {
    for (std::size_t i = 0; i < n_; ++i) {
      if (is_candidate(eligible, avoid, i)) return i;
    }
    return fallback_to_avoided(eligible, avoid, n_);
  }

  std::size_t size() const noexcept { return n_; }

 private:
  std::size_t n_;
};

}  // namespace botgate
