// The vocabulary actors speak: atoms, message types and the typed interfaces at
// each module border (shard, router, target).
#pragma once

#include <caf/all.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/event.hpp"
#include "core/units.hpp"
#include "storage/dedup_journal.hpp"
#include "storage/event_record.hpp"
#include "transport/http_client.hpp"

namespace botgate {

// accepted: stored; duplicate: the id is queued or was completed within the dedup window
// (stored before, so also an ack); full: over max_pending; failed: the log cannot store it.
// full: the shard holds max_pending events; failed: its log failed; disk_full: the queue's disk
// is below [queue] min_free. The last three are not stored.
enum class IngestStatus { accepted, duplicate, full, failed, disk_full };

inline bool stored(IngestStatus s) noexcept {
  return s == IngestStatus::accepted || s == IngestStatus::duplicate;
}

// Called by a shard once the event is stored (or refused). It runs on an actor
// thread and must only hand the answer on (e.g. post to an HTTP strand).
using AckFn = std::function<void(IngestStatus)>;

// The result of one delivery attempt, as a target reports it.
struct Outcome {
  std::string target;
  unsigned status = 0;  // HTTP status, 0 when no answer arrived
  std::string error;    // empty on success
  std::string body;     // a backend's 2xx answer body (may carry replies); else empty
  // A 429 or 503 answer's Retry-After, or an account's wait for its next token fetch (0: none).
  Duration retry_after{0};
  // Sends the router made for this attempt: more than 1 when it re-routed the attempt off a
  // target that went down. Each send counts as an attempt (X-Botgate-Attempt counts up). A
  // target that could not send at all (an account without an access token) answers 0.
  std::uint32_t sends = 1;
};

// Deliveries travel in batches: each actor on the way (shard, router, target) gathers what one
// mailbox burst produced and sends it on as one message per receiver (a `flush` to itself,
// queued behind the burst, does the sending). Per event, the messaging then costs a fraction
// of a message, and the routing decision itself dominates.

// Shard -> router: deliver this event (attempt number; avoid the named target, or "").
struct Delivery {
  EventPtr ev;
  std::uint32_t attempt = 0;
  std::string avoid;
};
using Deliveries = std::vector<Delivery>;

// Router -> shard: what became of a delivered event.
struct Answer {
  EventPtr ev;
  Outcome outcome;
};
using Answers = std::vector<Answer>;

// Router (or prober) -> target: try this event once. The ticket (two numbers the sender chose)
// comes back with the result.
struct Send {
  EventPtr ev;
  std::uint32_t attempt = 0;
  std::uint64_t ticket = 0;
  std::uint64_t leg = 0;
};
using Sends = std::vector<Send>;

// Target -> router (or prober): the result of one Send.
struct Result {
  std::uint64_t ticket = 0;
  std::uint64_t leg = 0;
  Outcome outcome;
};
using Results = std::vector<Result>;

// How often shards and their logs run their housekeeping `tick`.
inline constexpr auto kHousekeepingInterval = std::chrono::seconds(1);

using storage::DeadLetterInfo;
using storage::StoredEvent;
using StoredEvents = std::vector<StoredEvent>;
// Sequence numbers of stored events to read back, in increasing order.
struct SeqList {
  std::vector<std::uint64_t> seqs;
};
// An event for a shard's log to append. `headroom`: it may be written into the disk's
// [queue] min_free headroom (a backend's reply: the event it answers is completed along with
// it, so refusing the reply would lose it for good).
struct Append {
  EventPtr ev;
  bool headroom = false;
};
using EventBatch = std::vector<Append>;
using DeadLetterList = std::vector<DeadLetterInfo>;

// The log's answer to the appends a commit covered, in the order they were sent.
struct Commit {
  std::vector<std::uint64_t> seqs;  // one per append; 0: not stored (refused for want of space)
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

// One health probe's result, from a target's prober to every router that has the target.
struct ProbeResult {
  std::string target;
  bool ok = false;         // this probe passed
  bool healthy = true;     // the target's state after it (rise/fall applied)
  std::string error;       // why it failed
  std::int64_t at_ms = 0;  // unix ms
  // Not a probe: an account's token actor reporting whether the platform takes its credentials
  // (`healthy`, with the platform's errmsg in `error`).
  bool credentials = false;
};

// An account's access token, from its token actor. `error` is set instead when none can be had
// right now, with `retry_at`: when the token actor fetches again (none: unknown). The holder may
// use the token until `use_until`, then asks again.
struct AccessToken {
  std::string token;
  std::string error;
  Clock::time_point use_until{};
  Clock::time_point retry_at{};
};

// What GET /v1/targets shows of one target in one pool.
struct TargetStatus {
  std::string name;
  bool healthy = true;
  bool ejected = false;
  std::int64_t ejected_for_ms = 0;  // left of the current ejection
  std::uint32_t ejections = 0;
  std::uint32_t in_flight = 0;
  std::uint32_t max_in_flight = 0;  // 0: unlimited
  std::uint64_t successes = 0;
  std::uint64_t failures = 0;
  std::string last_error;
  std::string probe_kind;
  std::int64_t probe_at_ms = 0;  // 0: no probe result yet
  bool probe_ok = false;
  std::string probe_error;
  std::string credentials_error;  // accounts: why the platform refuses the credentials, or ""
};

struct PoolStatus {
  std::string name;
  std::string policy;
  std::uint64_t waiting = 0;
  std::vector<TargetStatus> targets;
};

using PoolStatuses = std::vector<PoolStatus>;

}  // namespace botgate

CAF_BEGIN_TYPE_ID_BLOCK(botgate, caf::first_custom_type_id)
CAF_ADD_ATOM(botgate, botgate, ingest_atom, "ingest")
CAF_ADD_ATOM(botgate, botgate, deliver_atom, "deliver")
CAF_ADD_ATOM(botgate, botgate, outcome_atom, "outcome")
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
CAF_ADD_ATOM(botgate, botgate, health_atom, "health")
CAF_ADD_ATOM(botgate, botgate, status_atom, "status")
CAF_ADD_ATOM(botgate, botgate, dong_atom, "dong")
CAF_ADD_ATOM(botgate, botgate, timeout_atom, "timeout")
CAF_ADD_ATOM(botgate, botgate, token_atom, "token")
CAF_ADD_ATOM(botgate, botgate, invalid_atom, "invalid")
CAF_ADD_ATOM(botgate, botgate, owed_atom, "owed")
CAF_ADD_TYPE_ID(botgate, (botgate::EventPtr))
CAF_ADD_TYPE_ID(botgate, (botgate::AckFn))
CAF_ADD_TYPE_ID(botgate, (botgate::Outcome))
CAF_ADD_TYPE_ID(botgate, (botgate::http::ClientResponse))
CAF_ADD_TYPE_ID(botgate, (botgate::StoredEvent))
CAF_ADD_TYPE_ID(botgate, (botgate::StoredEvents))
CAF_ADD_TYPE_ID(botgate, (botgate::SeqList))
CAF_ADD_TYPE_ID(botgate, (botgate::DeadLetterList))
CAF_ADD_TYPE_ID(botgate, (botgate::Commit))
CAF_ADD_TYPE_ID(botgate, (botgate::Completion))
CAF_ADD_TYPE_ID(botgate, (botgate::EventBatch))
CAF_ADD_TYPE_ID(botgate, (botgate::Completions))
CAF_ADD_TYPE_ID(botgate, (botgate::ProbeResult))
CAF_ADD_TYPE_ID(botgate, (botgate::Deliveries))
CAF_ADD_TYPE_ID(botgate, (botgate::Answers))
CAF_ADD_TYPE_ID(botgate, (botgate::Sends))
CAF_ADD_TYPE_ID(botgate, (botgate::Results))
CAF_ADD_TYPE_ID(botgate, (botgate::PoolStatus))
CAF_ADD_TYPE_ID(botgate, (botgate::AccessToken))
CAF_END_TYPE_ID_BLOCK(botgate)

// These values never leave the process, so they need no serializer.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::EventPtr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::AckFn)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::Outcome)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::http::ClientResponse)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::StoredEvent)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::StoredEvents)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::SeqList)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::DeadLetterList)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::Commit)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::Completion)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::EventBatch)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::Completions)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::ProbeResult)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::Deliveries)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::Answers)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::Sends)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::Results)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::PoolStatus)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::AccessToken)

namespace botgate {

// Deliveries are plain messages answered by plain messages, not CAF requests: the router owns
// every attempt's deadline, so CAF's response bookkeeping (a linear search over all requests
// outstanding, per answer) would be pure cost. Each answer goes to the sender of the deliver.

// A delivery target (one HTTP backend): try each Send once, then answer the sender with
// (outcome, Results). `flush` (to itself) sends the results gathered in a mailbox burst.
using target_actor =
    caf::typed_actor<caf::reacts_to<deliver_atom, Sends>,
                     caf::reacts_to<done_atom, std::uint64_t, http::ClientResponse>,
                     caf::reacts_to<flush_atom>>;

// A pool's router: choose a target for each Delivery by policy and hand it over; answer the
// sender with (outcome, Answers) as the attempts end. `outcome` carries the targets' Results;
// `flush` (to itself) sends what a burst gathered; `tick` is its timer (deadlines, ejections
// ending, rate-limit refills), carrying the steady-clock time (ns) it was set for; `health` a
// prober's report; `status` answers GET /v1/targets.
using router_actor = caf::typed_actor<
    caf::reacts_to<deliver_atom, Deliveries>, caf::reacts_to<outcome_atom, Results>,
    caf::reacts_to<flush_atom>, caf::reacts_to<tick_atom, std::int64_t>,
    caf::reacts_to<health_atom, ProbeResult>, caf::replies_to<status_atom>::with<PoolStatus>>;

// A target's health prober: `tick` starts a probe; `done` is an http probe's answer; `outcome`
// the target's answer to a ding (ticket: the probe round); `dong` the inbound answer to a ding
// (by nonce); `timeout` ends probe round N.
using prober_actor =
    caf::typed_actor<caf::reacts_to<tick_atom>,
                     caf::reacts_to<done_atom, std::uint64_t, http::ClientResponse>,
                     caf::reacts_to<outcome_atom, Results>, caf::reacts_to<dong_atom, std::string>,
                     caf::reacts_to<timeout_atom, std::uint64_t>>;

// An account credential's access-token cache (one per app id + secret, or corp id + secret):
// `token` answers the cached token, fetching it first when there is none (one fetch for any
// number of askers); `invalid` reports a token the platform called stale, so the next ask
// fetches anew; `done` is a fetch's answer (by fetch number); `tick` is the refresh timer.
using token_actor = caf::typed_actor<caf::replies_to<token_atom>::with<AccessToken>,
                                     caf::reacts_to<invalid_atom, std::string>,
                                     caf::reacts_to<done_atom, std::uint64_t, http::ClientResponse>,
                                     caf::reacts_to<tick_atom, std::uint64_t>>;

// A queue shard: accept events, keep each conversation in order, retry failures. An `owed`
// ingest is an event its sender was already told is stored (a callback acked at its deadline):
// it is taken past max_pending and into the min_free headroom. `outcome` is its router's
// answer to a deliver.
// `stored` is its log's answer to a commit; `tick` its housekeeping timer; `retry` the end of
// a conversation's backoff (its queue key and the seq of the head that failed). `list` and
// `replay` serve the dead-letter admin API (replay answers an empty string on success).
using shard_actor = caf::typed_actor<
    caf::reacts_to<ingest_atom, EventPtr, AckFn>,
    caf::reacts_to<ingest_atom, owed_atom, EventPtr, AckFn>, caf::reacts_to<outcome_atom, Answers>,
    caf::replies_to<pending_atom>::with<std::uint64_t>,
    caf::reacts_to<retry_atom, std::string, std::uint64_t>, caf::reacts_to<stored_atom, Commit>,
    caf::reacts_to<tick_atom>, caf::reacts_to<flush_atom>,
    caf::replies_to<list_atom, std::uint64_t>::with<DeadLetterList>,
    caf::replies_to<replay_atom, std::string, std::string>::with<std::string>>;

// A shard's log (a detached actor: it does the blocking disk I/O). Appends are answered in
// batches with `stored` to the shard once a group commit made them durable. `read` returns
// committed events not completed with a sequence number above the first argument, at most
// the second; with a SeqList, those of the listed sequence numbers that are committed and not
// completed. `take` reads dead letter (source, id) back for a replay (a null event: no such
// dead letter); it leaves the dead-letter log once the shard's append of it is durable.
// `stop` (to itself, on an exit signal) commits what the mailbox still held before it, then
// quits. A `read` answers an entry with a null event for each record found damaged on disk (or
// not decoding): the log completed it, and the shard stops counting it.
using shard_log_actor =
    caf::typed_actor<caf::reacts_to<append_atom, EventBatch>,
                     caf::reacts_to<done_atom, Completions>, caf::reacts_to<commit_atom>,
                     caf::reacts_to<tick_atom>, caf::reacts_to<stop_atom>,
                     caf::replies_to<read_atom, std::uint64_t, std::uint64_t>::with<StoredEvents>,
                     caf::replies_to<read_atom, SeqList>::with<StoredEvents>,
                     caf::replies_to<take_atom, std::string, std::string>::with<StoredEvent>,
                     caf::replies_to<list_atom, std::uint64_t>::with<DeadLetterList>>;

}  // namespace botgate
