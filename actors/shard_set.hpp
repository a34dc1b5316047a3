// The door from the transport into the actors: places an event on the shard that
// owns its conversation. Holds no lock; sending is a mailbox enqueue.
#pragma once

#include <vector>

#include "actors/messages.hpp"
#include "core/hash.hpp"

namespace botgate {

class ShardSet {
 public:
  explicit ShardSet(std::vector<shard_actor> shards) : shards_(std::move(shards)) {}

  static std::size_t shard_of(std::string_view conversation, std::size_t shards) noexcept {
    return static_cast<std::size_t>(fnv1a64(conversation) % shards);
  }

  // `ack` runs once, on an actor thread, when the shard has taken or refused it.
  void submit(EventPtr ev, AckFn ack) const {
    const auto& target = shards_[shard_of(ev->conversation, shards_.size())];
    caf::anon_send(target, ingest_atom::value, std::move(ev), std::move(ack));
  }

  const std::vector<shard_actor>& shards() const noexcept { return shards_; }

 private:
  std::vector<shard_actor> shards_;
};

}  // namespace botgate
