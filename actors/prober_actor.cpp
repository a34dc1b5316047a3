#include "actors/prober_actor.hpp"

#include <fmt/format.h>

#include "core/json.hpp"
#include "core/log.hpp"
#include "storage/event_record.hpp"

namespace botgate {
namespace {

using Self = prober_actor::stateful_pointer<ProberState>;

// interval * (1 + U[-jitter, +jitter])
Duration jittered(Self self) {
  auto& st = self->state;
  std::uniform_real_distribution<double> u(-st.options.jitter, st.options.jitter);
  const double factor = 1.0 + u(st.rng);
  return std::chrono::duration_cast<Duration>(st.options.interval * factor);
}

// The event a dingdong probe sends: a text message to the peer, as a backend would get one.
EventPtr ding_event(const std::string& nonce, const std::string& peer) {
  auto ev = std::make_shared<Event>();
  ev->source = std::string(kProbeSource);
  ev->id = "ding-" + nonce;
  ev->conversation = peer;
  ev->sender = "botgate";
  ev->type = "text";
  ev->text = std::string(kDingPrefix) + nonce;
  ev->raw = "{\"id\":";
  append_json_string(ev->raw, ev->id);
  ev->raw += ",\"conversation\":";
  append_json_string(ev->raw, peer);
  ev->raw += ",\"sender\":\"botgate\",\"type\":\"text\",\"text\":";
  append_json_string(ev->raw, ev->text);
  ev->raw += "}";
  ev->received_at = Clock::now();
  ev->received_wall = std::chrono::system_clock::now();
  return ev;
}

void finish(Self self, bool ok, std::string error) {
  auto& st = self->state;
  if (!st.probing) return;
  st.probing = false;
  if (!st.nonce.empty()) {
    st.channel.registry->forget(st.nonce);
    st.nonce.clear();
  }
  (ok ? st.metrics->probes_ok : st.metrics->probes_failed).inc();
  if (!ok) log::debug("probe failed", {{"target", st.target}, {"error", error}});
  if (st.health.on_probe(ok)) {
    st.metrics->healthy.set(ok ? 1 : 0);
    if (ok) {
      st.metrics->became_healthy.inc();
      log::info("target healthy", {{"target", st.target}, {"rise", st.health.rise()}});
    } else {
      st.metrics->became_unhealthy.inc();
      log::warn("target unhealthy",
                {{"target", st.target}, {"fall", st.health.fall()}, {"reason", error}});
    }
  }
  ProbeResult r;
  r.target = st.target;
  r.ok = ok;
  r.healthy = st.health.healthy();
  r.error = std::move(error);
  r.at_ms = storage::unix_now_ms();
  for (const auto& router : st.routers) self->send(router, health_atom::value, r);
  const auto next = st.started + jittered(self);
  self->delayed_send(self, std::max<Duration>(next - Clock::now(), Duration::zero()),
                     tick_atom::value);
}

void start_http(Self self) {
  auto& st = self->state;
  auto me = caf::actor_cast<prober_actor>(self);
  const auto round = st.round;
  st.channel.client->get(st.options.path, {{"User-Agent", "botgate-probe"}},
                         [me, round](http::ClientResponse&& r) {
                           caf::anon_send(me, done_atom::value, round, std::move(r));
                         });
}

void start_dingdong(Self self) {
  auto& st = self->state;
  st.nonce = fmt::format("{:0{}x}", st.rng(), kNonceDigits);
  st.ding_sent = false;
  st.channel.registry->expect(st.nonce, caf::actor_cast<prober_actor>(self));
  // The target answers with the round as the ticket; the timeout covers it never answering.
  self->send(st.channel.via, deliver_atom::value,
             Sends{Send{ding_event(st.nonce, st.options.peer), 1, st.round, 0}});
}

void start(Self self) {
  auto& st = self->state;
  if (st.probing) return;
  st.probing = true;
  ++st.round;
  st.started = Clock::now();
  self->delayed_send(self, st.options.timeout, timeout_atom::value, st.round);
  if (st.options.kind == ProbeKind::http) {
    start_http(self);
  } else {
    start_dingdong(self);
  }
}

}  // namespace

prober_actor::behavior_type prober(Self self, std::string target, ProbeOptions options,
                                   std::vector<router_actor> routers, TargetMetrics* metrics,
                                   ProbeChannel channel) {
  auto& st = self->state;
  st.target = std::move(target);
  st.health = HealthState(options.thresholds);
  st.options = std::move(options);
  st.routers = std::move(routers);
  st.metrics = metrics;
  st.channel = std::move(channel);
  // Spread the first probes of many targets over a slice of the interval.
  std::uniform_real_distribution<double> first(0.0, std::max(st.options.jitter, 0.01));
  self->delayed_send(self,
                     std::chrono::duration_cast<Duration>(st.options.interval * first(st.rng)),
                     tick_atom::value);
  return {
      [self](tick_atom) { start(self); },
      [self](done_atom, std::uint64_t round, http::ClientResponse& r) {
        if (round != self->state.round) return;
        if (r.error != http::ClientResponse::Error::none) return finish(self, false, r.message);
        if (r.status >= 200 && r.status < 300) return finish(self, true, {});
        finish(self, false, "HTTP " + std::to_string(r.status));
      },
      [self](outcome_atom, const Results& results) {
        auto& st = self->state;
        for (const auto& r : results) {
          if (r.ticket != st.round || !st.probing) continue;
          if (r.outcome.error.empty()) {
            st.ding_sent = true;
          } else {
            finish(self, false, "ding not delivered: " + r.outcome.error);
          }
        }
      },
      [self](dong_atom, const std::string& nonce) {
        if (nonce == self->state.nonce) finish(self, true, {});
      },
      [self](timeout_atom, std::uint64_t round) {
        auto& st = self->state;
        if (round != st.round) return;
        const auto limit = format_duration(st.options.timeout);
        if (st.options.kind == ProbeKind::http) {
          return finish(self, false, "no answer within " + limit);
        }
        finish(self, false,
               st.ding_sent ? "no dong within " + limit : "ding not answered within " + limit);
      },
  };
}

}  // namespace botgate
