// Which targets of a pool a routing policy may choose, and the fallback rule all policies share.
// A policy never picks a target outside the mask; it skips the avoided target (the one that just
// failed) unless that target is the only eligible one; with nothing eligible it picks nothing, and
// the event waits in its shard until a target recovers.
#pragma once

#include <cstddef>
#include <optional>
#include <vector>

namespace botgate {

// mask[i] is true when target i is healthy and not ejected. Indices past the end are ineligible.
using TargetMask = std::vector<bool>;

inline bool is_eligible(const TargetMask& mask, std::size_t i) noexcept {
  return i < mask.size() && mask[i];
}

// May target i be chosen in the first pass, before falling back to the avoided target?
inline bool is_candidate(const TargetMask& mask, std::optional<std::size_t> avoid,
                         std::size_t i) noexcept {
  return is_eligible(mask, i) && (!avoid || *avoid != i);
}

// What a policy over `n` targets returns when its first pass found no candidate: the avoided
// target if it is still eligible (retrying on it beats waiting), otherwise nothing.
inline std::optional<std::size_t> fallback_to_avoided(const TargetMask& mask,
                                                      std::optional<std::size_t> avoid,
                                                      std::size_t n) noexcept {
  if (avoid && *avoid < n && is_eligible(mask, *avoid)) return avoid;
  return std::nullopt;
}

}  // namespace botgate
