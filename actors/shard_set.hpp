// The door from the transport into the actors: places an event on the shard that
// owns its conversation, and serves the dead-letter admin calls. Holds no lock;
// sending is a mailbox enqueue. Callbacks run on an actor thread and must only
// hand the answer on (e.g. post it to an HTTP strand).
#pragma once

#include <functional>
#include <vector>

#include "actors/messages.hpp"
#include "core/hash.hpp"

namespace botgate {

class ShardSet {
 public:
  ShardSet(caf::actor_system& sys, std::vector<shard_actor> shards)
      : sys_(sys), shards_(std::move(shards)) {}

  static std::size_t shard_of(std::string_view conversation, std::size_t shards) noexcept {
    return static_cast<std::size_t>(placement_hash(conversation) % shards);
  }

  // `ack` runs once, on an actor thread, when the shard has stored or refused it.
  void submit(EventPtr ev, AckFn ack) const {
    const auto& target = owner(*ev);
    caf::anon_send(target, ingest_atom::value, std::move(ev), std::move(ack));
  }

  // submit() for an event its sender was already told is stored: the shard takes it even
  // when full or low on disk (only a failed log refuses it).
  void submit_owed(EventPtr ev, AckFn ack) const {
    const auto& target = owner(*ev);
    caf::anon_send(target, ingest_atom::value, owed_atom::value, std::move(ev), std::move(ack));
  }

  // Dead letters of every shard, oldest first (by dead-letter time), at most `limit`.
  // An empty `error` means every shard answered.
  void list_dead_letters(std::uint64_t limit,
                         std::function<void(DeadLetterList, std::string error)> done) const;

  // Queues dead letter (source, id) of `shard` again; `done` gets "" on success,
  // "not_found", or another error text.
  void replay_dead_letter(std::size_t shard, std::string source, std::string id,
                          std::function<void(std::string)> done) const;

  const std::vector<shard_actor>& shards() const noexcept { return shards_; }

 private:
  const shard_actor& owner(const Event& ev) const {
    return shards_[shard_of(ev.conversation, shards_.size())];
  }

  caf::actor_system& sys_;
  std::vector<shard_actor> shards_;
};

}  // namespace botgate
