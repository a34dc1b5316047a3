#include "actors/router_actor.hpp"

namespace botgate {

router_actor::behavior_type router(router_actor::stateful_pointer<RouterState> self,
                                   std::vector<target_actor> targets,
                                   std::vector<std::string> names, Duration attempt_timeout) {
  self->state.policy = RoundRobin{targets.size()};
  self->state.targets = std::move(targets);
  self->state.names = std::move(names);
  self->state.attempt_timeout = attempt_timeout;
  return {
      [self](deliver_atom, EventPtr ev, std::uint32_t attempt,
             const std::string& avoid) -> caf::result<Outcome> {
        auto& st = self->state;
        std::optional<std::size_t> avoid_index;
        for (std::size_t i = 0; i < st.names.size(); ++i) {
          if (st.names[i] == avoid) avoid_index = i;
        }
        const std::size_t pick = *st.policy.pick(avoid_index);  // pools are never empty
        auto rp = self->make_response_promise<Outcome>();
        self->request(st.targets[pick], st.attempt_timeout, deliver_atom::value, std::move(ev),
                      attempt)
            .then([rp](Outcome& out) mutable { rp.deliver(std::move(out)); },
                  [self, rp, pick](caf::error& err) mutable {
                    Outcome out;
                    out.target = self->state.names[pick];
                    out.error = "no answer: " + self->system().render(err);
                    rp.deliver(std::move(out));
                  });
        return rp;
      },
  };
}

}  // namespace botgate
