// The vocabulary actors speak: atoms, message types and the typed interfaces at
// each module border (shard, router, target).
#pragma once

#include <caf/all.hpp>
#include <cstdint>
#include <functional>
#include <string>

#include "core/event.hpp"
#include "transport/http_client.hpp"

namespace botgate {

enum class IngestStatus { accepted, full };

// Called by a shard once the event is stored (or refused). It runs on an actor
// thread and must only hand the answer on (e.g. post to an HTTP strand).
using AckFn = std::function<void(IngestStatus)>;

// The result of one delivery attempt, as a target reports it.
struct Outcome {
  std::string target;
  unsigned status = 0;  // HTTP status, 0 when no answer arrived
  std::string error;    // empty on success
};

}  // namespace botgate

CAF_BEGIN_TYPE_ID_BLOCK(botgate, caf::first_custom_type_id)
CAF_ADD_ATOM(botgate, botgate, ingest_atom, "ingest")
CAF_ADD_ATOM(botgate, botgate, deliver_atom, "deliver")
CAF_ADD_ATOM(botgate, botgate, retry_atom, "retry")
CAF_ADD_ATOM(botgate, botgate, done_atom, "done")
CAF_ADD_ATOM(botgate, botgate, pending_atom, "pending")
CAF_ADD_ATOM(botgate, botgate, tick_atom, "tick")
CAF_ADD_TYPE_ID(botgate, (botgate::EventPtr))
CAF_ADD_TYPE_ID(botgate, (botgate::AckFn))
CAF_ADD_TYPE_ID(botgate, (botgate::Outcome))
CAF_ADD_TYPE_ID(botgate, (botgate::http::ClientResponse))
CAF_END_TYPE_ID_BLOCK(botgate)

// These values never leave the process, so they need no serializer.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::EventPtr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::AckFn)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::Outcome)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(botgate::http::ClientResponse)

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
using shard_actor = caf::typed_actor<caf::reacts_to<ingest_atom, EventPtr, AckFn>,
                                     caf::replies_to<pending_atom>::with<std::uint64_t>,
                                     caf::reacts_to<retry_atom, std::string>>;

}  // namespace botgate
