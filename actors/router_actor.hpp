// One router per pool: picks a target with the pool's policy and asks it to try
// the event, with a deadline. Every Outcome passes back through the router, so a
// target that never answers is still named in the Outcome and avoided on retry.
#pragma once

#include <string>
#include <vector>

#include "actors/messages.hpp"
#include "core/units.hpp"
#include "policies/round_robin.hpp"

namespace botgate {

struct RouterState {
  static inline const char* name = "router";
  std::vector<target_actor> targets;
  std::vector<std::string> names;
  RoundRobin policy{0};
  Duration attempt_timeout{std::chrono::seconds(10)};
};

router_actor::behavior_type router(router_actor::stateful_pointer<RouterState> self,
                                   std::vector<target_actor> targets,
                                   std::vector<std::string> names, Duration attempt_timeout);

}  // namespace botgate
