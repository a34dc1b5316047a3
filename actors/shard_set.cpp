#include "actors/shard_set.hpp"

#include <algorithm>
#include <memory>

namespace botgate {
namespace {

constexpr auto kAdminTimeout = std::chrono::seconds(5);

}  // namespace

void ShardSet::list_dead_letters(std::uint64_t limit,
                                 std::function<void(DeadLetterList, std::string)> done) const {
  // A short-lived actor gathers every shard's answer, then reports once.
  sys_.spawn([shards = shards_, limit, done = std::move(done)](caf::event_based_actor* self) {
    struct Gather {
      DeadLetterList all;
      std::string error;
      std::size_t left;
    };
    auto g = std::make_shared<Gather>(Gather{{}, {}, shards.size()});
    auto finish_one = [g, limit, done, self] {
      if (--g->left != 0) return;
      std::stable_sort(g->all.begin(), g->all.end(),
                       [](const auto& a, const auto& b) { return a.dead_at_ms < b.dead_at_ms; });
      if (g->all.size() > limit) g->all.resize(limit);
      done(std::move(g->all), std::move(g->error));
      self->quit();
    };
    for (const auto& s : shards) {
      self->request(s, kAdminTimeout, list_atom::value, limit)
          .then(
              [g, finish_one](DeadLetterList& part) {
                std::move(part.begin(), part.end(), std::back_inserter(g->all));
                finish_one();
              },
              [g, finish_one](caf::error& err) {
                g->error = caf::to_string(err);
                finish_one();
              });
    }
  });
}

void ShardSet::replay_dead_letter(std::size_t shard, std::string source, std::string id,
                                  std::function<void(std::string)> done) const {
  sys_.spawn([target = shards_.at(shard), source = std::move(source), id = std::move(id),
              done = std::move(done)](caf::event_based_actor* self) {
    self->request(target, kAdminTimeout, replay_atom::value, source, id)
        .then(
            [self, done](std::string& result) {
              done(std::move(result));
              self->quit();
            },
            [self, done](caf::error& err) {
              done("error: " + caf::to_string(err));
              self->quit();
            });
  });
}

}  // namespace botgate
