// One router per pool: picks a target with the pool's policy and asks it to try
// the event, with a deadline. Every Outcome passes back through the router, so a
// target that never answers is still named in the Outcome and avoided on retry.
//
// Deadlines cost no timer per attempt: every attempt gets the same timeout, so
// attempts expire in the order they started, and one `tick` timer (running only
// while attempts are in flight) answers the expired ones. An attempt therefore
// times out between attempt_timeout and 1.25 x attempt_timeout after it started.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "actors/messages.hpp"
#include "core/units.hpp"
#include "policies/pick.hpp"

namespace botgate {

struct RouterState {
  static inline const char* name = "router";
  struct Attempt {
    caf::typed_response_promise<Outcome> promise;
    std::size_t target = 0;
  };
  std::vector<target_actor> targets;
  std::vector<std::string> names;
  std::optional<Picker> policy;
  std::vector<std::uint32_t> in_flight_per_target;  // for least-inflight
  TargetMask eligible;                              // every target, until health checks land
  Duration attempt_timeout{std::chrono::seconds(10)};
  std::unordered_map<std::uint64_t, Attempt> in_flight;
  std::deque<std::pair<Clock::time_point, std::uint64_t>> deadlines;  // oldest first
  std::uint64_t next_attempt = 0;
  bool ticking = false;
};

struct RouterOptions {
  PolicyKind policy = PolicyKind::round_robin;
  std::vector<std::uint32_t> weights;  // per target, in `names` order; empty: all 1
  Duration attempt_timeout{std::chrono::seconds(10)};
};

router_actor::behavior_type router(router_actor::stateful_pointer<RouterState> self,
                                   std::vector<target_actor> targets,
                                   std::vector<std::string> names, RouterOptions options);

}  // namespace botgate
