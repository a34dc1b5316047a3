// Items an actor produced during one mailbox burst, gathered per receiver and sent as one batch
// each when the actor's `flush` (a message to itself, queued behind the burst) runs.
#pragma once

#include <utility>
#include <vector>

#include "actors/messages.hpp"

namespace botgate {

// Queues one `flush` to the actor itself per burst: `queued` is the actor's flag, which its
// flush handler clears. Call it whenever something was added to an outbox.
template <typename Self>
void request_flush(Self self, bool& queued) {
  if (queued) return;
  queued = true;
  self->send(self, flush_atom::value);
}

template <typename Receiver, typename Batch>
class Outbox {
 public:
  void add(const Receiver& to, typename Batch::value_type item) {
    for (auto& [receiver, batch] : boxes_) {
      if (receiver == to) return batch.push_back(std::move(item));
    }
    boxes_.emplace_back(to, Batch{});
    boxes_.back().second.push_back(std::move(item));
  }

  // Hands each non-empty batch to `send(receiver, Batch&&)`.
  template <typename Send>
  void flush(Send&& send) {
    for (auto& [receiver, batch] : boxes_) {
      if (batch.empty()) continue;
      send(receiver, std::move(batch));
      batch = Batch{};
    }
  }

 private:
  std::vector<std::pair<Receiver, Batch>> boxes_;  // a handful of receivers: a linear search
};

// A target's results, gathered per asker (the sender of each `deliver`).
using ResultOutbox = Outbox<caf::strong_actor_ptr, Results>;

// A target's flush: each asker gets its results of the burst as one `outcome` batch.
inline void send_results(ResultOutbox& results) {
  results.flush([](const caf::strong_actor_ptr& to, Results&& batch) {
    caf::anon_send(caf::actor_cast<caf::actor>(to), outcome_atom::value, std::move(batch));
  });
}

}  // namespace botgate
