#include "actors/shard_set.hpp"

#include <algorithm>
#include <iterator>
#include <memory>

#include "actors/gather.hpp"

namespace botgate {

void ShardSet::list_dead_letters(std::uint64_t limit,
                                 std::function<void(DeadLetterList, std::string)> done) const {
  gather<DeadLetterList>(
      sys_, shards_,
      [limit, done = std::move(done)](std::vector<DeadLetterList> parts, std::string error) {
        DeadLetterList all;
        for (auto& part : parts) std::move(part.begin(), part.end(), std::back_inserter(all));
        std::stable_sort(all.begin(), all.end(),
                         [](const auto& a, const auto& b) { return a.dead_at_ms < b.dead_at_ms; });
        if (all.size() > limit) all.resize(limit);
        done(std::move(all), std::move(error));
      },
      list_atom::value, limit);
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
