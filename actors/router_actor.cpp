#include "actors/router_actor.hpp"

namespace botgate {

router_actor::behavior_type router(router_actor::stateful_pointer<RouterState> self,
                                   std::vector<target_actor> targets,
                                   std::vector<std::string> names) {
  self->state.policy = RoundRobin{targets.size()};
  self->state.targets = std::move(targets);
  self->state.names = std::move(names);
  return {
      [self](deliver_atom, EventPtr ev, std::uint32_t attempt,
             const std::string& avoid) -> caf::delegated<Outcome> {
        auto& st = self->state;
        std::optional<std::size_t> avoid_index;
        for (std::size_t i = 0; i < st.names.size(); ++i) {
          if (st.names[i] == avoid) avoid_index = i;
        }
        const auto pick = st.policy.pick(avoid_index);  // pools are never empty (config)
        return self->delegate(st.targets[*pick], deliver_atom::value, std::move(ev), attempt);
      },
  };
}

}  // namespace botgate
