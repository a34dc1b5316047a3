// A queue shard: owns the events of the conversations that hash to it, keeps each
// conversation in order (one event in flight per conversation and destination pool), and
// retries a
// failed delivery after a backoff while other conversations keep flowing.
//
// Per conversation:
//
//   empty --stored--> sending --success--> sending (next event) or empty
//                      |   ^
//             failure  |   | backoff timer
//                      v   |
//                    waiting --attempts or age exhausted--> dead letter, next event
//
// Durability: an ingested event is sent to the shard's log actor (shard_log_actor.hpp) and
// acknowledged only when the log's group commit reports it stored. A finished event (delivered
// or dead-lettered) is reported back to the log as a completion.
//
// Memory: at most `memory_window` events are held in memory. Stored events beyond that stay
// on disk only and are read back, in sequence order, once the window has drained to half.
// Per-conversation order holds because events enter memory in sequence order.
//
// Replies: a backend's 2xx answer may carry {"replies":[...]}. Each reply becomes an outbound
// event (id "<event id>#reply-<n>", routed to the source's account pool) appended to this
// shard's log before the event's completion, in the same commit order: a crash in between
// redelivers the event, and the replies' fixed ids make the second copy a duplicate.
//
// Idempotency: the 128-bit hash of every (source, id) queued, or completed within
// `dedup_window`, is kept; such an event is acknowledged as a duplicate and not queued again.
#pragma once

#include <boost/container/devector.hpp>
#include <boost/unordered/unordered_flat_map.hpp>
#include <deque>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "actors/messages.hpp"
#include "actors/outbox.hpp"
#include "core/metrics.hpp"
#include "policies/backoff.hpp"
#include "storage/shard_store.hpp"

namespace botgate {

// Where a source's events go: its default pool (`route`, may be empty) and the account pool
// backends' replies go out through (`accounts`, may be empty).
struct SourceRoutes {
  std::string route;
  std::string accounts;
};

struct ShardOptions {
  std::size_t index = 0;
  std::unordered_map<std::string, SourceRoutes> sources;  // by source name
  std::uint64_t max_pending = 100000;
  std::uint32_t max_attempts = 8;
  Duration max_age = std::chrono::hours(48);
  Backoff backoff{std::chrono::milliseconds(100), std::chrono::seconds(30)};
  std::uint64_t memory_window = 10000;
  std::chrono::milliseconds dedup_window{std::chrono::minutes(10)};
  Duration commit_interval{};         // the log's shortest time between syncs (fsync = batch)
  std::uint64_t min_free = 0;         // [queue] min_free: the log refuses new events below it
  std::function<void()> log_started;  // see ShardLogOptions::started
};

struct QueuedEvent {
  EventPtr ev;
  std::uint64_t seq = 0;
  storage::IdHash id;
};

// The queue an event waits in: its destination pool (empty for generic sources, which route
// by source) and its conversation. A view into the event, so that looking a queue up costs
// no allocation; the map stores it flattened as route + '\x1f' + conversation (or the
// conversation alone), and hashes and compares both forms as that byte sequence.
struct QueueKey {
  std::string_view route;
  std::string_view conversation;
  std::string flat() const;
};

struct QueueKeyHash {
  using is_transparent = void;
  std::size_t operator()(const QueueKey& k) const noexcept;
  // Not noexcept on purpose: libstdc++ then keeps each node's hash in the node instead of
  // hashing the stored key again while it walks a bucket or rehashes.
  std::size_t operator()(std::string_view flat) const;
};

struct QueueKeyEqual {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
  bool operator()(const QueueKey& k, std::string_view flat) const noexcept;
  bool operator()(std::string_view flat, const QueueKey& k) const noexcept {
    return (*this)(k, flat);
  }
};

// A conversation's events in memory are a prefix of its queue; the rest wait on disk, `spilled`
// (their seqs, in order), until the conversation has none left in memory. A head that failed
// goes back to disk with the events behind it while it waits out its backoff, so the memory
// window holds only events that can go: a conversation or pool that keeps failing does not fill
// it and hold back the others.
struct ConversationQueue {
  // A std::deque: a devector here, which allocates nothing while empty, cost 10-30% of the
  // accepted rate in bench/run.sh (docs/benchmarks.md). `spilled` is rarely used: a devector,
  // as most conversations never have one.
  std::deque<QueuedEvent> events;  // front() is the head, in flight (or read back to retry)
  boost::container::devector<std::uint64_t> spilled;  // the events after `events`, on disk
  std::uint32_t attempts = 0;                         // attempts made for the head event
  std::string last_target;    // where the head last failed, avoided on retry
  std::string last_error;     // and why ("target: error"), for a dead letter's reason
  bool busy = false;          // head is in flight or waiting for its backoff
  bool pulling = false;       // a read of spilled events is outstanding
  bool waiting_room = false;  // in ShardState::want_pull
  bool idle() const noexcept { return events.empty() && spilled.empty() && !pulling; }
};

// An event sent to the log and not yet reported stored, with whoever waits for its ack.
struct UnstoredEvent {
  EventPtr ev;
  storage::IdHash id;
  AckFn ack;
  std::vector<AckFn> duplicates;  // the same id arrived again meanwhile
  // The id's completion time before (a replayed dead letter's): restored if the store fails.
  std::int64_t completed_before = 0;
};

inline constexpr std::size_t kMaxIdleConversations = 4096;
// Most spilled events of one conversation read back at once.
inline constexpr std::uint64_t kPullBatch = 64;

struct ShardState {
  static inline const char* name = "shard";
  ShardOptions options;
  Metrics* metrics = nullptr;
  std::unordered_map<std::string, router_actor> pools;  // pool name -> its router
  shard_log_actor log;
  // A conversation whose queue empties stays here, idle, until the next housekeeping tick
  // (at most kMaxIdleConversations of them): a busy conversation's next event then reuses
  // its entry instead of allocating a map node and a deque again.
  std::unordered_map<std::string, ConversationQueue, QueueKeyHash, QueueKeyEqual> conversations;
  std::size_t idle_conversations = 0;  // entries with no events
  std::deque<UnstoredEvent> unstored;
  // Appends and completions not sent to the log yet, and deliveries not sent to the routers;
  // while any is non-empty, one `flush` to self is queued, so the log gets one message of each
  // and each router one batch per mailbox burst.
  EventBatch outbox;
  Completions finished;
  Outbox<router_actor, Deliveries> deliveries;
  bool flush_queued = false;
  // Known ids: 0 while queued, else the unix ms of completion (expires after dedup_window).
  // Open addressing: one entry per event accepted in the last dedup_window (millions at a
  // sustained high rate) costs no allocation of its own and half the memory of a node map.
  boost::unordered_flat_map<storage::IdHash, std::int64_t, storage::IdHashHasher> ids;
  std::deque<storage::DedupEntry> expiry;  // completions, oldest first
  // Ids with a replayed dead letter queued, and how many: another copy of the id (one dead in
  // another conversation, or again after dedup_window) may be replayed beside it, but a
  // replay beside a platform's resend is refused. Forgotten at a restart (then refused too).
  std::unordered_map<storage::IdHash, std::uint32_t, storage::IdHashHasher> replays_queued;
  std::uint64_t pending = 0;          // accepted and not completed: unstored + in memory + on disk
  std::uint64_t in_memory = 0;        // events in conversations' `events`
  std::uint64_t pull_reserved = 0;    // window room held for spilled events being read back
  std::deque<std::string> want_pull;  // conversations waiting for room to read spilled events
  std::uint64_t on_disk = 0;          // stored events not read yet (their conversations unknown)
  std::uint64_t loaded_upto = 0;      // highest seq placed (in memory or spilled)
  bool reading = false;               // a read-back from the log is outstanding
  std::mt19937_64 rng{std::random_device{}()};
};

// `store` and `recovered` come from storage::ShardStore::open; the shard spawns its log
// actor (linked, detached) on the store and resumes the recovered events.
shard_actor::behavior_type shard(shard_actor::stateful_pointer<ShardState> self,
                                 ShardOptions options, Metrics* metrics,
                                 std::unordered_map<std::string, router_actor> pools,
                                 std::shared_ptr<storage::ShardStore> store,
                                 std::shared_ptr<storage::Recovered> recovered);

}  // namespace botgate
