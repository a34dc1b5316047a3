// The vocabulary actors speak: atoms, message types and the typed interfaces at
// each module border (shard, router, target).
#pragma once

#include <caf/all.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/event.hpp"
#include "storage/dedup_journal.hpp"
#include "storage/event_record.hpp"
#include "transport/http_client.hpp"

namespace botgate {

// accepted: stored; duplicate: the id is queued or was completed within the dedup window
// (stored before, so also an ack); full: over max_pending; failed: the log cannot store it.
enum class IngestStatus { accepted, duplicate, full, failed };

// Called by a shard once the event is stored (or refused). It runs on an actor
// thread and must only hand the answer on (e.g. post to an HTTP strand).
using AckFn = std::function<void(IngestStatus)>;

// The result of one delivery attempt, as a target reports it.
struct Outcome {
  std::string target;
  unsigned status = 0;  // HTTP status, 0 when no answer arrived
  std::string error;    // empty on success
};

// How often shards and their logs run their housekeeping `tick`.
inline constexpr auto kHousekeepingInterval = std::chrono::seconds(1);

using storage::DeadLetterInfo;
using storage::StoredEvent;
using StoredEvents = std::vector<StoredEvent>;
using EventBatch = std::vector<EventPtr>;
using DeadLetterList = std::vector<DeadLetterInfo>;

// The log's answer to the appends a commit covered, in the order they were sent.
struct Commit {
  std::vector<std::uint64_t> seqs;  // one per append
  std::string error;                // non-empty: none of them is stored
};

// An event is finished: record its completion (and dead letter, if it is one).
struct Completion {
  std::uint64_t seq = 0;
  storage::IdHash id;
  std::int64_t at_ms = 0;
  EventPtr dead;  // set for a dead letter
  std::uint32_t attempts = 0;
  std::string error;
};

using Completions = std::vector<Completion>;

}  // namespace botgate

CAF_BEGIN_TYPE_ID_BLOCK(botgate, caf::first_custom_type_id)
CAF_ADD_ATOM(botgate, botgate, ingest_atom, "ingest")
CAF_ADD_ATOM(botgate, botgate, deliver_atom, "deliver")
CAF_ADD_ATOM(botgate, botgate, retry_atom, "retry")
CAF_ADD_ATOM(botgate, botgate, done_atom, "done")
CAF_ADD_ATOM(botgate, botgate, pending_atom, "pending")
CAF_ADD_ATOM(botgate, botgate, tick_atom, "tick")
CAF_ADD_ATOM(botgate, botgate, append_atom, "append")
CAF_ADD_ATOM(botgate, botgate, commit_atom, "commit")
CAF_ADD_ATOM(botgate, botgate, stored_atom, "stored")
CAF_ADD_ATOM(botgate, botgate, read_atom, "read")
CAF_ADD_ATOM(botgate, botgate, take_atom, "take")
CAF_ADD_ATOM(botgate, botgate, list_atom, "list")
CAF_ADD_ATOM(botgate, botgate, replay_atom, "replay")
CAF_ADD_ATOM(botgate, botgate, stop_atom, "stop")
CAF_ADD_ATOM(botgate, botgate, flush_atom, "flush")
CAF_ADD_TYPE_ID(botgate, (botgate::EventPtr))
CAF_ADD_TYPE_ID(botgate, (botgate::AckFn))
CAF_ADD_TYPE_ID(botgate, (botgate::Outcome))
CAF_ADD_TYPE_ID(botgate, (botgate::http::ClientResponse))
CAF_ADD_TYPE_ID(botgate, (botgate::StoredEvent))
CAF_ADD_TYPE_ID(botgate, (botgate::StoredEvents))
CAF_ADD_TYPE_ID(botgate, (botgate::DeadLetterList))
CAF_ADD_TYPE_ID(botgate, (botgate::Commit))
CAF_ADD_TYPE_ID(botgate, (botgate::Completion))
CAF_ADD_TYPE_ID(botgate, (botgate::EventBatch))
CAF_ADD_TYPE_ID(botgate, (botgate::Completions))
CAF_END_TYPE_ID_BLOCK(botgate)

// These values never leave the process, so they need no serializer.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::EventPtr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::AckFn)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::Outcome)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::http::ClientResponse)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::StoredEvent)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::StoredEvents)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::DeadLetterList)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::Commit)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::Completion)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::EventBatch)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::Completions)

namespace botgate {

// A delivery target (one HTTP backend): try this event once, say what happened.
using target_actor =
    caf::typed_actor<caf::replies_to<deliver_atom, EventPtr, std::uint32_t>::with<Outcome>,
                     caf::reacts_to<done_atom, std::uint64_t, http::ClientResponse>>;

// A pool's router: choose a target by policy and hand the attempt to it. The
// string names a target to avoid (the one that just failed), or is empty.
// `tick` is the router's own timer: it answers attempts whose deadline passed.
using router_actor = caf::typed_actor<
    caf::replies_to<deliver_atom, EventPtr, std::uint32_t, std::string>::with<Outcome>,
    caf::reacts_to<tick_atom>>;

// A queue shard: accept events, keep each conversation in order, retry failures.
// `stored` is its log's answer to a commit; `tick` its housekeeping timer. `list` and
// `replay` serve the dead-letter admin API (replay answers an empty string on success).
using shard_actor =
    caf::typed_actor<caf::reacts_to<ingest_atom, EventPtr, AckFn>,
                     caf::replies_to<pending_atom>::with<std::uint64_t>,
                     caf::reacts_to<retry_atom, std::string>, caf::reacts_to<stored_atom, Commit>,
                     caf::reacts_to<tick_atom>, caf::reacts_to<flush_atom>,
                     caf::replies_to<list_atom, std::uint64_t>::with<DeadLetterList>,
                     caf::replies_to<replay_atom, std::string, std::string>::with<std::string>>;

// A shard's log (a detached actor: it does the blocking disk I/O). Appends are answered in
// batches with `stored` to the shard once a group commit made them durable. `read` returns
// committed events not completed with a sequence number above the first argument, at most
// the second. `take` reads dead letter (source, id) back for a replay (a null event: no such
// dead letter); it leaves the dead-letter log once the shard's append of it is durable.
// `stop` (to itself, on an exit signal) commits what the mailbox still held before it, then
// quits.
using shard_log_actor =
    caf::typed_actor<caf::reacts_to<append_atom, EventBatch>,
                     caf::reacts_to<done_atom, Completions>, caf::reacts_to<commit_atom>,
                     caf::reacts_to<tick_atom>, caf::reacts_to<stop_atom>,
                     caf::replies_to<read_atom, std::uint64_t, std::uint64_t>::with<StoredEvents>,
                     caf::replies_to<take_atom, std::string, std::string>::with<StoredEvent>,
                     caf::replies_to<list_atom, std::uint64_t>::with<DeadLetterList>>;

}  // namespace botgate
