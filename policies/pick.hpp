// The routing policy a pool chooses in config, behind one interface: a router holds a Picker
// and calls pick() the same way whatever the policy. Pure: no clock, no randomness, no I/O.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "policies/failover.hpp"
#include "policies/least_inflight.hpp"
#include "policies/round_robin.hpp"
#include "policies/sticky.hpp"
#include "policies/target_mask.hpp"
#include "policies/weighted_round_robin.hpp"

namespace botgate {

enum class PolicyKind { round_robin, weighted, least_inflight, sticky, failover };

inline constexpr std::array<std::pair<std::string_view, PolicyKind>, 5> kPolicyNames{{
    {"round-robin", PolicyKind::round_robin},
    {"weighted", PolicyKind::weighted},
    {"least-inflight", PolicyKind::least_inflight},
    {"sticky", PolicyKind::sticky},
    {"failover", PolicyKind::failover},
}};

// The config spelling (`pools[].policy`); nullopt for anything else (exact, case-sensitive).
constexpr std::optional<PolicyKind> parse_policy_kind(std::string_view s) noexcept {
  for (const auto& [name, kind] : kPolicyNames) {
    if (name == s) return kind;
  }
  return std::nullopt;
}

constexpr std::string_view to_string(PolicyKind kind) noexcept {
  for (const auto& [name, k] : kPolicyNames) {
    if (k == kind) return name;
  }
  return "unknown";
}

// Round-robin that honours the mask: the rotation walks past ineligible (and the avoided)
// targets, so the next pick starts after the one chosen. Reuses RoundRobin's rotation.
inline std::optional<std::size_t> pick_round_robin(RoundRobin& rr, const TargetMask& eligible,
                                                   std::optional<std::size_t> avoid) noexcept {
  // A full turn visits every index once, so one turn finds a candidate if there is one, and a
  // fruitless turn leaves the rotation where it was.
  for (std::size_t k = 0; k < rr.size(); ++k) {
    const std::size_t i = *rr.pick();
    if (is_candidate(eligible, avoid, i)) return i;
  }
  return fallback_to_avoided(eligible, avoid, rr.size());
}

// Everything any policy may need for one decision. Each policy reads what it uses. Build it at
// the call (`picker.pick({.eligible = mask, .key = conv})`): it refers to the caller's mask.
struct PickRequest {
  const TargetMask& eligible;                     // healthy and not ejected; see target_mask.hpp
  std::optional<std::size_t> avoid = {};          // the target that just failed this event
  std::string_view key = {};                      // conversation (sticky)
  std::span<const std::uint32_t> in_flight = {};  // per target (least-inflight)
};

class Picker {
 public:
  // `names` are the pool's targets in configured order (the order failover follows; sticky
  // hashes the names). `weights` are per target; empty means all 1. Round-robin, sticky and
  // failover ignore weights.
  Picker(PolicyKind kind, std::span<const std::string> names,
         std::span<const std::uint32_t> weights = {})
      : kind_(kind), n_(names.size()) {
    const auto weight_list = [&] {
      std::vector<std::uint32_t> w(names.size(), 1);
      for (std::size_t i = 0; i < w.size() && i < weights.size(); ++i) w[i] = weights[i];
      return w;
    };
    switch (kind) {
      case PolicyKind::round_robin:
        round_robin_ = RoundRobin(n_);
        break;
      case PolicyKind::weighted:
        weighted_ = WeightedRoundRobin(weight_list());
        break;
      case PolicyKind::least_inflight:
        least_inflight_ = LeastInflight(weight_list());
        break;
      case PolicyKind::sticky:
        sticky_ = Sticky(names);
        break;
      case PolicyKind::failover:
        failover_ = Failover(n_);
        break;
    }
  }

  // The chosen target's index, or nullopt when no target is eligible (the event waits).
  std::optional<std::size_t> pick(const PickRequest& r) {
    switch (kind_) {
      case PolicyKind::round_robin:
        return pick_round_robin(round_robin_, r.eligible, r.avoid);
      case PolicyKind::weighted:
        return weighted_.pick(r.eligible, r.avoid);
      case PolicyKind::least_inflight:
        return least_inflight_.pick(r.in_flight, r.eligible, r.avoid);
      case PolicyKind::sticky:
        return sticky_.pick(r.key, r.eligible, r.avoid);
      case PolicyKind::failover:
        return failover_.pick(r.eligible, r.avoid);
    }
    return std::nullopt;
  }

  PolicyKind kind() const noexcept { return kind_; }
  std::size_t size() const noexcept { return n_; }

 private:
  // One member per policy, and only the one for kind_ is sized; the others stay empty. (A
  // std::variant would say "one of" more directly, but GCC 12 reports false
  // -Wmaybe-uninitialized warnings on destroying a variant of vector-holding types.)
  PolicyKind kind_;
  std::size_t n_;
  RoundRobin round_robin_{0};
  WeightedRoundRobin weighted_{{}};
  LeastInflight least_inflight_{0};
  Sticky sticky_{std::span<const std::string>{}};
  Failover failover_{0};
};

}  // namespace botgate
