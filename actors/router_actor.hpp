// One router per pool. It places each delivery attempt with the pool's Balancer
// (policies/balancer.hpp: policy, health, ejection, concurrency and rate limits, waiting), sends
// it to the chosen target with a deadline, and answers the shard with the Outcome. Attempts and
// answers are plain messages with tickets (attempt id, send number), not CAF requests, and go
// out in one batch per receiver per mailbox burst: see messages.hpp.
//
// Health comes in two ways: a prober's `health` report (active checks) and the outcomes of real
// deliveries (passive outlier ejection). When a target goes down either way, the attempts in
// flight to it are re-routed at once to another target; a late answer from the old one is
// ignored. Not so for a target that cannot take a send back (`reroute_in_flight` off: a
// platform account, whose send API has no idempotency key): what it was sent may already be
// with the platform, so it is left to finish, bounded by its deadline, or the user would get
// the message twice. When no target can take an attempt, it waits here (the shard's
// conversation waits with it) and goes out when a target recovers or has room again, or is
// answered as failed once its event is older than `max_age`, with why no target took it.
//
// Deadlines cost no timer per attempt: every attempt gets the same timeout, so attempts expire
// in the order they were sent, and the router's one `tick` (armed only while something needs
// it) answers the expired ones. An attempt therefore times out between attempt_timeout and
// 1.25 x attempt_timeout after it was sent.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "actors/messages.hpp"
#include "actors/outbox.hpp"
#include "actors/probe_options.hpp"
#include "core/metrics.hpp"
#include "core/units.hpp"
#include "policies/balancer.hpp"

namespace botgate {

struct RouterTargetOptions {
  TargetLimits limits;
  ProbeKind probe = ProbeKind::none;
  TargetMetrics* metrics = nullptr;  // nullptr: the router keeps its own, unexported
  // false: attempts in flight stay with the target when it goes down (see above).
  bool reroute_in_flight = true;
};

struct RouterOptions {
  std::string pool = "pool";
  PolicyKind policy = PolicyKind::round_robin;
  std::vector<std::uint32_t> weights;  // per target, in `names` order; empty: all 1
  Duration attempt_timeout{std::chrono::seconds(10)};
  // [queue] max_age: an attempt still waiting for a target when its event is this old is
  // answered as failed (the shard then gives the event up).
  Duration max_age{std::chrono::hours(48)};
  // [queue] max_attempts: an attempt in flight to a target that goes down is re-routed only
  // while its next send stays within this many; else it ends on the target it went to.
  std::uint32_t max_attempts{8};
  OutlierConfig outlier;
  std::vector<RouterTargetOptions> targets;  // per target; missing entries: defaults
  PoolMetrics* metrics = nullptr;            // nullptr: the router keeps its own
};

struct RouterState {
  static inline const char* name = "router";

  struct Attempt {
    caf::strong_actor_ptr reply_to;  // the shard (or whoever sent the deliver)
    EventPtr ev;
    std::uint32_t number = 0;
    std::optional<std::size_t> avoid;
    std::size_t target = 0;
    std::uint64_t leg = 0;  // counts sends; an answer for an older leg is stale
    // Of those, the ones whose target could not send at all (an account without an access
    // token): they are no attempt.
    std::uint64_t unsent = 0;
    bool sent = false;
    bool in_expiries = false;  // has an entry in `expiries`
  };

  struct Deadline {
    Clock::time_point at;
    std::uint64_t id;
    std::uint64_t leg;
  };

  // What the router knows of one target beyond the Balancer.
  struct Target {
    target_actor actor;
    std::string name;
    ProbeKind probe = ProbeKind::none;
    TargetMetrics* metrics = nullptr;
    bool reroute_in_flight = true;
    std::uint64_t successes = 0;
    std::uint64_t failures = 0;
    std::string last_error;
    ProbeResult last_probe;
    // Health has two sources: the prober, and (accounts) the token actor's verdict on the
    // credentials. The target is eligible only while both say healthy.
    bool probe_healthy = true;
    bool credentials_ok = true;
    std::string credentials_error;
  };

  std::string pool;
  std::vector<Target> targets;
  std::optional<Balancer> balancer;
  Duration attempt_timeout{std::chrono::seconds(10)};
  Duration max_age{std::chrono::hours(48)};
  std::uint32_t max_attempts{8};
  std::unordered_map<std::uint64_t, Attempt> attempts;  // in flight or waiting
  std::deque<Deadline> deadlines;                       // oldest first
  // The attempts waiting in the Balancer, by when their event reaches max_age.
  std::set<std::pair<Clock::time_point, std::uint64_t>> expiries;
  std::uint64_t next_id = 0;
  // The ticks scheduled and not yet run, each by the time it was set for (a tick carries it).
  std::set<Clock::time_point> ticks;
  // What this burst sends: attempts per target (by index), answers per asker.
  Outbox<std::size_t, Sends> sends;
  Outbox<caf::strong_actor_ptr, Answers> answers;
  bool flush_queued = false;
  PoolMetrics* metrics = nullptr;
  // Stand-ins when the owner passed no metrics (tests, benchmarks).
  std::unique_ptr<PoolMetrics> own_pool_metrics;
  std::vector<std::unique_ptr<TargetMetrics>> own_target_metrics;
};

router_actor::behavior_type router(router_actor::stateful_pointer<RouterState> self,
                                   std::vector<target_actor> targets,
                                   std::vector<std::string> names, RouterOptions options);

}  // namespace botgate
