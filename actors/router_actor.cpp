#include "actors/router_actor.hpp"

#include <algorithm>

namespace botgate {
namespace {

using Self = router_actor::stateful_pointer<RouterState>;

// Answers attempt `id` unless it was already answered (a late reply after its
// deadline, or a deadline after its reply).
void answer(Self self, std::uint64_t id, Outcome&& out) {
  auto& st = self->state;
  auto it = st.in_flight.find(id);
  if (it == st.in_flight.end()) return;
  it->second.promise.deliver(std::move(out));
  --st.in_flight_per_target[it->second.target];
  st.in_flight.erase(it);
}

Duration tick_interval(const RouterState& st) {
  return std::max<Duration>(st.attempt_timeout / 4, std::chrono::milliseconds(1));
}

void schedule_tick(Self self) {
  auto& st = self->state;
  if (st.ticking || st.in_flight.empty()) return;
  st.ticking = true;
  self->delayed_send(self, tick_interval(st), tick_atom::value);
}

}  // namespace

router_actor::behavior_type router(Self self, std::vector<target_actor> targets,
                                   std::vector<std::string> names, RouterOptions options) {
  auto& st = self->state;
  st.policy.emplace(options.policy, names, options.weights);
  st.in_flight_per_target.assign(targets.size(), 0);
  st.eligible.assign(targets.size(), true);
  st.targets = std::move(targets);
  st.names = std::move(names);
  st.attempt_timeout = options.attempt_timeout;
  return {
      [self](deliver_atom, EventPtr ev, std::uint32_t attempt,
             const std::string& avoid) -> caf::result<Outcome> {
        auto& st = self->state;
        std::optional<std::size_t> avoid_index;
        for (std::size_t i = 0; i < st.names.size(); ++i) {
          if (st.names[i] == avoid) avoid_index = i;
        }
        // Every target is eligible (pools are never empty), so a policy always picks one.
        const std::size_t pick = st.policy
                                     ->pick(PickRequest{st.eligible, avoid_index, ev->conversation,
                                                        st.in_flight_per_target})
                                     .value_or(0);
        ++st.in_flight_per_target[pick];
        auto rp = self->make_response_promise<Outcome>();
        const auto id = st.next_attempt++;
        st.in_flight.emplace(id, RouterState::Attempt{rp, pick});
        st.deadlines.emplace_back(Clock::now() + st.attempt_timeout, id);
        self->request(st.targets[pick], caf::infinite, deliver_atom::value, std::move(ev), attempt)
            .then([self, id](Outcome& out) { answer(self, id, std::move(out)); },
                  [self, id, pick](caf::error& err) {
                    Outcome out;
                    out.target = self->state.names[pick];
                    out.error = "no answer: " + self->system().render(err);
                    answer(self, id, std::move(out));
                  });
        schedule_tick(self);
        return rp;
      },
      [self](tick_atom) {
        auto& st = self->state;
        st.ticking = false;
        const auto now = Clock::now();
        while (!st.deadlines.empty() && st.deadlines.front().first <= now) {
          const auto id = st.deadlines.front().second;
          st.deadlines.pop_front();
          auto it = st.in_flight.find(id);
          if (it == st.in_flight.end()) continue;  // answered in time
          Outcome out;
          out.target = st.names[it->second.target];
          out.error = "no answer within " + format_duration(st.attempt_timeout);
          answer(self, id, std::move(out));
        }
        // Answered attempts leave their deadline behind; drop those at the front.
        while (!st.deadlines.empty() && !st.in_flight.count(st.deadlines.front().second)) {
          st.deadlines.pop_front();
        }
        schedule_tick(self);
      },
  };
}

}  // namespace botgate
