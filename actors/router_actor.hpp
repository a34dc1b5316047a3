// One router per pool: picks a target with the pool's policy and delegates the
// attempt to it, so the target's Outcome goes straight back to the asking shard.
#pragma once

#include <string>
#include <vector>

#include "actors/messages.hpp"
#include "policies/round_robin.hpp"

namespace botgate {

struct RouterState {
  static inline const char* name = "router";
  std::vector<target_actor> targets;
  std::vector<std::string> names;
  RoundRobin policy{0};
};

router_actor::behavior_type router(router_actor::stateful_pointer<RouterState> self,
                                   std::vector<target_actor> targets,
                                   std::vector<std::string> names);

}  // namespace botgate
