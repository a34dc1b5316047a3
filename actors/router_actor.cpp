#include "actors/router_actor.hpp"

#include <algorithm>

#include "core/log.hpp"
#include "policies/delivery_rules.hpp"
#include "storage/event_record.hpp"

namespace botgate {
namespace {

using Self = router_actor::stateful_pointer<RouterState>;

Duration tick_granularity(const RouterState& st) {
  return std::max<Duration>(st.attempt_timeout / 4, std::chrono::milliseconds(1));
}

// Arms a tick for `at` unless one is already due by then. Every tick scheduled stays known
// until it runs, so a later one that an earlier one overtook is not scheduled again.
void want_tick(Self self, Clock::time_point at, Clock::time_point now) {
  auto& st = self->state;
  if (!st.ticks.empty() && *st.ticks.begin() <= at) return;
  st.ticks.insert(at);
  self->delayed_send(self, std::max<Duration>(at - now, Duration::zero()), tick_atom::value,
                     static_cast<std::int64_t>(at.time_since_epoch().count()));
}

// The tick is needed for the oldest deadline (rounded up to the granularity, so a stream of
// attempts costs a few ticks per timeout, not one each) and for what waits on time alone.
void arm_tick(Self self, Clock::time_point now) {
  auto& st = self->state;
  if (!st.deadlines.empty()) {
    want_tick(self, std::max(st.deadlines.front().at, now + tick_granularity(st)), now);
  }
  if (auto wake = st.balancer->next_wake(now)) want_tick(self, *wake, now);
  if (auto back = st.balancer->outlier().next_return(now)) want_tick(self, *back, now);
  if (!st.expiries.empty()) want_tick(self, std::max(st.expiries.begin()->first, now), now);
}

Clock::time_point expiry(const RouterState& st, const RouterState::Attempt& a) {
  return a.ev->received_at + st.max_age;
}

// Is this deadline's send still the attempt's current one (neither answered nor re-routed)?
bool live(const RouterState& st, const RouterState::Deadline& d) {
  auto it = st.attempts.find(d.id);
  return it != st.attempts.end() && it->second.sent && it->second.leg == d.leg;
}

// Answers mostly come back in send order, so dropping answered deadlines from the front keeps
// the queue about as long as the attempts in flight.
void drop_answered_deadlines(RouterState& st) {
  while (!st.deadlines.empty() && !live(st, st.deadlines.front())) st.deadlines.pop_front();
}

void update_waiting(Self self) {
  auto& st = self->state;
  st.metrics->waiting.set(static_cast<std::int64_t>(st.balancer->waiting()));
}

void flush(Self self) {
  auto& st = self->state;
  st.flush_queued = false;
  st.sends.flush([&](std::size_t target, Sends&& batch) {
    self->send(st.targets[target].actor, deliver_atom::value, std::move(batch));
  });
  st.answers.flush([](const caf::strong_actor_ptr& to, Answers&& batch) {
    caf::anon_send(caf::actor_cast<caf::actor>(to), outcome_atom::value, std::move(batch));
  });
}

// The sends of attempt `a` that reached a target's other end (legs a target could not send
// are not attempts).
std::uint32_t sends_made(const RouterState::Attempt& a) {
  return static_cast<std::uint32_t>(a.leg - a.unsent);
}

// The number the next send of attempt `a` carries (X-Botgate-Attempt): a re-routed attempt is
// the next attempt, so its number counts on from the first send's.
std::uint32_t next_number(const RouterState::Attempt& a) {
  return a.number + sends_made(a);
}

void send(Self self, std::uint64_t id, std::size_t target, Clock::time_point now) {
  auto& st = self->state;
  auto& a = st.attempts.at(id);
  if (a.in_expiries) {
    st.expiries.erase({expiry(st, a), id});
    a.in_expiries = false;
  }
  a.target = target;
  a.sent = true;
  const auto number = next_number(a);
  const auto leg = ++a.leg;
  st.deadlines.push_back(RouterState::Deadline{now + st.attempt_timeout, id, leg});
  st.sends.add(target, Send{a.ev, number, id, leg});
  request_flush(self, self->state.flush_queued);
}

// Hands out whatever waited and may go now.
void drain(Self self, Clock::time_point now) {
  auto& st = self->state;
  if (st.balancer->waiting() != 0) {
    for (const auto& a : st.balancer->drain(now)) send(self, a.id, a.target, now);
    update_waiting(self);
  }
  arm_tick(self, now);
}

// Places attempt `id`: sends it, or leaves it waiting in the Balancer until max_age.
void place(Self self, std::uint64_t id, Clock::time_point now) {
  auto& st = self->state;
  auto& a = st.attempts.at(id);
  if (auto t = st.balancer->place(id, a.ev->conversation, a.avoid, now)) {
    return send(self, id, *t, now);
  }
  if (!a.in_expiries) {
    st.expiries.emplace(expiry(st, a), id);
    a.in_expiries = true;
  }
}

// Why target i took nothing: down (and how), or no room (in-flight or rate limit).
std::string why_not(const RouterState& st, std::size_t i, Clock::time_point now) {
  const auto& t = st.targets[i];
  std::string why = t.name + ": ";
  if (!t.credentials_ok) return why + "credentials refused (" + t.credentials_error + ")";
  if (!t.probe_healthy) return why + "unhealthy (" + t.last_probe.error + ")";
  if (st.balancer->outlier().ejected(i, now)) return why + "ejected (" + t.last_error + ")";
  return why + "no room";
}

// Attempts that waited for a target until their event reached max_age are answered as failed,
// with why no target took them; the shard then gives the event up (delivery_rules.hpp). One
// pass over the Balancer's queues for all of them: an outage may let thousands age at once.
void expire_waiting(Self self, Clock::time_point now) {
  auto& st = self->state;
  std::vector<std::uint64_t> expired;  // oldest first
  while (!st.expiries.empty() && st.expiries.begin()->first <= now) {
    const auto id = st.expiries.begin()->second;
    st.expiries.erase(st.expiries.begin());
    st.attempts.at(id).in_expiries = false;  // every entry is of an attempt waiting
    expired.push_back(id);
  }
  if (expired.empty()) return;
  std::vector<std::uint64_t> sorted = expired;
  std::sort(sorted.begin(), sorted.end());
  st.balancer->withdraw_if(
      [&](std::uint64_t id) { return std::binary_search(sorted.begin(), sorted.end(), id); });
  std::string why = "no target took it within max_age (" + format_duration(st.max_age) + "): ";
  for (std::size_t i = 0; i < st.targets.size(); ++i) {
    why += (i == 0 ? "" : "; ") + why_not(st, i, now);
  }
  for (auto id : expired) {
    auto it = st.attempts.find(id);
    RouterState::Attempt a = std::move(it->second);
    st.attempts.erase(it);
    Outcome out;
    out.target = st.pool;
    out.error = why;
    out.sends = sends_made(a);  // 0: never sent
    st.answers.add(a.reply_to, Answer{std::move(a.ev), std::move(out)});
  }
  log::warn("deliveries given up waiting for a target",
            {{"pool", st.pool}, {"count", expired.size()}, {"error", why}});
  update_waiting(self);
  request_flush(self, self->state.flush_queued);
}

// Target i went down: move the attempts in flight to it elsewhere, oldest first. Unless it
// cannot take a send back (an account), or the send would exceed max_attempts: then they stay,
// and end with its answer or deadline.
void reroute(Self self, std::size_t i, Clock::time_point now) {
  auto& st = self->state;
  std::vector<std::uint64_t> ids;
  for (const auto& [id, a] : st.attempts) {
    if (a.sent && a.target == i && next_number(a) <= st.max_attempts) ids.push_back(id);
  }
  if (!ids.empty() && !st.targets[i].reroute_in_flight) {
    log::info("in-flight sends left to finish on a target that went down",
              {{"pool", st.pool}, {"target", st.targets[i].name}, {"count", ids.size()}});
    return;
  }
  std::sort(ids.begin(), ids.end());
  for (auto id : ids) {
    auto& a = st.attempts.at(id);
    st.balancer->release(i);
    a.sent = false;
    a.avoid = i;
    place(self, id, now);
  }
  if (!ids.empty()) {
    st.metrics->reroutes.inc(ids.size());
    log::warn("in-flight deliveries re-routed",
              {{"pool", st.pool}, {"from", st.targets[i].name}, {"count", ids.size()}});
  }
}

// Ejections that have ended: the gauge goes down before a new ejection can put it up again.
void note_returns(Self self, Clock::time_point now) {
  auto& st = self->state;
  for (auto i : st.balancer->returned(now)) {
    st.targets[i].metrics->ejected.add(-1);
    log::info("target returned", {{"pool", st.pool}, {"target", st.targets[i].name}});
  }
}

void ejected(Self self, std::size_t i, Clock::time_point now) {
  auto& st = self->state;
  auto& t = st.targets[i];
  const auto until = st.balancer->outlier().ejected_until(i, now).value_or(now);
  t.metrics->ejected.add(1);
  t.metrics->ejections.inc();
  log::warn("target ejected",
            {{"pool", st.pool},
             {"target", t.name},
             {"for_ms", std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count()},
             {"ejections", st.balancer->outlier().ejections(i)},
             {"error", t.last_error}});
  reroute(self, i, now);
}

// Attempt `id`'s send number `leg` is over. Stale answers (the attempt was re-routed, or its
// deadline answered it already) are dropped. The caller drains the Balancer afterwards: the
// slot is free.
void on_answer(Self self, std::uint64_t id, std::uint64_t leg, Outcome&& out,
               Clock::time_point now) {
  auto& st = self->state;
  auto it = st.attempts.find(id);
  if (it == st.attempts.end() || !it->second.sent || it->second.leg != leg) return;
  // Out of the table first: an ejection below re-routes what is still in flight to the target.
  RouterState::Attempt a = std::move(it->second);
  st.attempts.erase(it);
  const std::size_t i = a.target;
  auto& t = st.targets[i];
  st.balancer->release(i);
  const Verdict verdict = out.error.empty() ? Verdict::done : classify_answer(out.status);
  if (verdict == Verdict::done) {
    ++t.successes;
    st.balancer->on_success(i);
  } else {
    ++t.failures;
    t.last_error = out.error;
    // A refusal of this one event (4xx) says nothing about the target's health.
    if (verdict == Verdict::retry) {
      note_returns(self, now);
      if (st.balancer->on_failure(i, now)) ejected(self, i, now);
    }
  }
  // The target could not send at all (an account without an access token): the first time,
  // another target of the pool may take the attempt at once; after that the shard retries it
  // when the answer says (its retry_after).
  if (verdict == Verdict::retry && out.sends == 0 && a.unsent++ == 0 && st.targets.size() > 1) {
    a.sent = false;
    a.avoid = i;
    st.attempts.emplace(id, std::move(a));
    return place(self, id, now);
  }
  out.sends = sends_made(a);
  st.answers.add(a.reply_to, Answer{std::move(a.ev), std::move(out)});
  request_flush(self, self->state.flush_queued);
}

void on_probe(Self self, ProbeResult& r) {
  auto& st = self->state;
  for (std::size_t i = 0; i < st.targets.size(); ++i) {
    auto& t = st.targets[i];
    if (t.name != r.target) continue;
    if (r.credentials) {
      t.credentials_ok = r.healthy;
      t.credentials_error = r.healthy ? std::string() : r.error;
    } else {
      t.probe_healthy = r.healthy;
      t.last_probe = r;
    }
    const bool healthy = t.probe_healthy && t.credentials_ok;
    const auto now = Clock::now();
    if (st.balancer->set_healthy(i, healthy) && !healthy) reroute(self, i, now);
    drain(self, now);
    return;
  }
}

void on_tick(Self self, std::int64_t set_for) {
  auto& st = self->state;
  const auto now = Clock::now();
  st.ticks.erase(Clock::time_point(Clock::duration(set_for)));
  expire_waiting(self, now);
  while (!st.deadlines.empty() && st.deadlines.front().at <= now) {
    const auto d = st.deadlines.front();
    st.deadlines.pop_front();
    if (!live(st, d)) continue;
    Outcome out;
    out.target = st.targets[st.attempts.at(d.id).target].name;
    out.error = "no answer within " + format_duration(st.attempt_timeout);
    on_answer(self, d.id, d.leg, std::move(out), now);
  }
  drop_answered_deadlines(st);
  note_returns(self, now);
  drain(self, now);
}

PoolStatus status(const RouterState& st) {
  const auto now = Clock::now();
  const auto& bal = *st.balancer;
  PoolStatus s;
  s.name = st.pool;
  s.policy = std::string(to_string(bal.kind()));
  s.waiting = bal.waiting();
  for (std::size_t i = 0; i < st.targets.size(); ++i) {
    const auto& t = st.targets[i];
    TargetStatus ts;
    ts.name = t.name;
    ts.healthy = bal.healthy(i);
    if (auto until = bal.outlier().ejected_until(i, now)) {
      ts.ejected = true;
      ts.ejected_for_ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(*until - now).count();
    }
    ts.ejections = bal.outlier().ejections(i);
    ts.in_flight = bal.in_flight(i);
    ts.max_in_flight = bal.max_in_flight(i);
    ts.successes = t.successes;
    ts.failures = t.failures;
    ts.last_error = t.last_error;
    ts.probe_kind = std::string(to_string(t.probe));
    ts.probe_at_ms = t.last_probe.at_ms;
    ts.probe_ok = t.last_probe.ok;
    ts.probe_error = t.last_probe.error;
    ts.credentials_error = t.credentials_error;
    s.targets.push_back(std::move(ts));
  }
  return s;
}

void init(Self self, std::vector<target_actor>& actors, std::vector<std::string>& names,
          RouterOptions& options) {
  auto& st = self->state;
  st.pool = std::move(options.pool);
  st.attempt_timeout = options.attempt_timeout;
  st.max_age = options.max_age;
  st.max_attempts = options.max_attempts;
  st.metrics = options.metrics;
  if (st.metrics == nullptr) {
    st.own_pool_metrics = std::make_unique<PoolMetrics>(st.pool);
    st.metrics = st.own_pool_metrics.get();
  }
  options.targets.resize(names.size());
  std::vector<TargetLimits> limits;
  for (std::size_t i = 0; i < names.size(); ++i) {
    auto& o = options.targets[i];
    if (o.metrics == nullptr) {
      st.own_target_metrics.push_back(std::make_unique<TargetMetrics>(names[i]));
      o.metrics = st.own_target_metrics.back().get();
    }
    limits.push_back(o.limits);
    RouterState::Target t;
    t.actor = std::move(actors[i]);
    t.name = names[i];
    t.probe = o.probe;
    t.metrics = o.metrics;
    t.reroute_in_flight = o.reroute_in_flight;
    st.targets.push_back(std::move(t));
  }
  st.balancer.emplace(options.policy, names, options.weights, limits, options.outlier,
                      Clock::now());
}

}  // namespace

router_actor::behavior_type router(Self self, std::vector<target_actor> targets,
                                   std::vector<std::string> names, RouterOptions options) {
  init(self, targets, names, options);
  return {
      [self](deliver_atom, Deliveries& batch) {
        auto& st = self->state;
        const auto now = Clock::now();
        for (auto& d : batch) {
          RouterState::Attempt a;
          a.reply_to = self->current_sender();
          a.ev = std::move(d.ev);
          a.number = d.attempt;
          if (!d.avoid.empty()) {
            for (std::size_t i = 0; i < st.targets.size(); ++i) {
              if (st.targets[i].name == d.avoid) a.avoid = i;
            }
          }
          const auto id = st.next_id++;
          st.attempts.emplace(id, std::move(a));
          place(self, id, now);
        }
        if (st.balancer->waiting() != 0) update_waiting(self);
        arm_tick(self, now);
      },
      [self](outcome_atom, Results& results) {
        const auto now = Clock::now();
        for (auto& r : results) on_answer(self, r.ticket, r.leg, std::move(r.outcome), now);
        drop_answered_deadlines(self->state);
        drain(self, now);
      },
      [self](flush_atom) { flush(self); },
      [self](tick_atom, std::int64_t set_for) { on_tick(self, set_for); },
      [self](health_atom, ProbeResult& r) { on_probe(self, r); },
      [self](status_atom) { return status(self->state); },
  };
}

}  // namespace botgate
