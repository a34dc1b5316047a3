// Items an actor produced during one mailbox burst, gathered per receiver and sent as one batch
// each when the actor's `flush` (a message to itself, queued behind the burst) runs.
#pragma once

#include <utility>
#include <vector>

namespace botgate {

template <typename Receiver, typename Batch>
class Outbox {
 public:
  // Adds an item for `to`. Returns true for the first item since the last flush: the caller
  // then sends itself a `flush`.
  bool add(const Receiver& to, typename Batch::value_type item) {
    const bool first = empty_;
    empty_ = false;
    for (auto& [receiver, batch] : boxes_) {
      if (receiver == to) {
        batch.push_back(std::move(item));
        return first;
      }
    }
    boxes_.emplace_back(to, Batch{});
    boxes_.back().second.push_back(std::move(item));
    return first;
  }

  // Hands each non-empty batch to `send(receiver, Batch&&)`.
  template <typename Send>
  void flush(Send&& send) {
    for (auto& [receiver, batch] : boxes_) {
      if (batch.empty()) continue;
      send(receiver, std::move(batch));
      batch = Batch{};
    }
    empty_ = true;
  }

  bool empty() const noexcept { return empty_; }

 private:
  std::vector<std::pair<Receiver, Batch>> boxes_;  // a handful of receivers: a linear search
  bool empty_ = true;
};

}  // namespace botgate
