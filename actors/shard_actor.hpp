// A queue shard: owns the events of the conversations that hash to it, keeps each
// conversation in order (one event in flight per conversation), and retries a
// failed delivery after a backoff while other conversations keep flowing.
//
// Per conversation:
//
//   empty --ingest--> sending --success--> sending (next event) or empty
//                      |   ^
//             failure  |   | backoff timer
//                      v   |
//                    waiting --attempts or age exhausted--> dead letter, next event
//
// This shard keeps its queue in memory, bounded by max_pending; the ack is sent
// once the event is queued. The durable log replaces the storage behind this same
// interface.
#pragma once

#include <deque>
#include <random>
#include <string>
#include <unordered_map>

#include "actors/messages.hpp"
#include "core/metrics.hpp"
#include "policies/backoff.hpp"

namespace botgate {

struct ShardOptions {
  std::size_t index = 0;
  std::uint64_t max_pending = 100000;
  std::uint32_t max_attempts = 8;
  Duration max_age = std::chrono::hours(48);
  Backoff backoff{std::chrono::milliseconds(100), std::chrono::seconds(30)};
};

struct ConversationQueue {
  std::deque<EventPtr> events;  // front() is the head, in flight or waiting
  std::uint32_t attempts = 0;   // attempts made for the head event
  std::string last_target;      // where the head last failed, avoided on retry
  bool busy = false;            // head is in flight or waiting for its backoff
};

struct ShardState {
  static inline const char* name = "shard";
  ShardOptions options;
  Metrics* metrics = nullptr;
  std::unordered_map<std::string, router_actor> routes;  // source name -> pool router
  std::unordered_map<std::string, ConversationQueue> conversations;
  std::uint64_t pending = 0;  // queued + in flight
  std::mt19937_64 rng{std::random_device{}()};
};

shard_actor::behavior_type shard(shard_actor::stateful_pointer<ShardState> self,
                                 ShardOptions options, Metrics* metrics,
                                 std::unordered_map<std::string, router_actor> routes);

}  // namespace botgate
