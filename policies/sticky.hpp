// Sticky routing by conversation: rendezvous (highest-random-weight) hashing. Each target gets a
// score per conversation key and the highest-scoring eligible target wins. A target leaving the
// eligible set therefore moves only the conversations it held (each to its runner-up), and its
// return brings back exactly those. Pure: no clock, no randomness, no state besides the targets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/hash.hpp"
#include "policies/target_mask.hpp"

namespace botgate {

class Sticky {
 public:
  // Targets are identified by their configured names, so a conversation keeps its target across
  // restarts and across reordering of the pool's list. Names must be unique within the pool.
  explicit Sticky(std::span<const std::string> names) {
    ids_.reserve(names.size());
    for (const auto& name : names) ids_.push_back(fmix64(fnv1a64(name)));
  }

  // score(key, target) = fmix64(H(key) xor H(target)): fmix64 is a bijection with full
  // avalanche, so for a fixed key the targets' scores are distinct and look independent.
  std::uint64_t score(std::string_view key, std::size_t target) const noexcept {
    return fmix64(key_hash(key) ^ ids_[target]);
  }

  // The highest-scoring eligible target for `key` (the lowest index on a tie, which needs
  // duplicate names). With `avoid`, the key's best target other than the avoided one: the same
  // target the key moves to if the avoided one leaves the eligible set. See target_mask.hpp for
  // what happens when nothing is eligible.
  std::optional<std::size_t> pick(std::string_view key, const TargetMask& eligible,
                                  std::optional<std::size_t> avoid = std::nullopt) const noexcept {
    const std::uint64_t k = key_hash(key);
    std::optional<std::size_t> best;
    std::uint64_t best_score = 0;
    for (std::size_t i = 0; i < ids_.size(); ++i) {
      if (!is_candidate(eligible, avoid, i)) continue;
      const std::uint64_t s = fmix64(k ^ ids_[i]);
      if (!best || s > best_score) {
        best = i;
        best_score = s;
      }
    }
    if (best) return best;
    return fallback_to_avoided(eligible, avoid, ids_.size());
  }

  std::size_t size() const noexcept { return ids_.size(); }

 private:
  // The same hash that places a conversation on a shard (core/hash.hpp).
  static std::uint64_t key_hash(std::string_view key) noexcept { return placement_hash(key); }

  std::vector<std::uint64_t> ids_;  // hashed target names
};

}  // namespace botgate
