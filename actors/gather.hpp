// Ask several actors the same question and answer once, when all have replied: what the admin
// API does with every shard (dead letters) and every router (target status). A short-lived
// actor does the asking, so the caller never blocks; `done` runs once, on an actor thread.
#pragma once

#include <caf/all.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace botgate {

inline constexpr auto kAdminTimeout = std::chrono::seconds(5);

// `done` gets the replies in arrival order, and an error text when any actor failed to answer
// (the replies of the others are still there).
template <typename Reply, typename Actor, typename... Ts>
void gather(caf::actor_system& sys, std::vector<Actor> actors,
            std::function<void(std::vector<Reply>, std::string)> done, Ts... question) {
  sys.spawn([actors = std::move(actors), done = std::move(done),
             ... question = std::move(question)](caf::event_based_actor* self) {
    struct State {
      std::vector<Reply> replies;
      std::string error;
      std::size_t left;
    };
    auto st = std::make_shared<State>(State{{}, {}, actors.size()});
    auto one_done = [st, done, self] {
      if (--st->left != 0) return;
      done(std::move(st->replies), std::move(st->error));
      self->quit();
    };
    if (actors.empty()) {
      done({}, {});
      self->quit();
      return;
    }
    for (const auto& a : actors) {
      self->request(a, kAdminTimeout, question...)
          .then(
              [st, one_done](Reply& r) {
                st->replies.push_back(std::move(r));
                one_done();
              },
              [st, one_done](caf::error& err) {
                st->error = caf::to_string(err);
                one_done();
              });
    }
  });
}

}  // namespace botgate
