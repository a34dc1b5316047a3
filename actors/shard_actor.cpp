#include "actors/shard_actor.hpp"

#include "core/log.hpp"
#include "policies/delivery_rules.hpp"

namespace botgate {
namespace {

using Self = shard_actor::stateful_pointer<ShardState>;

void dispatch(Self self, const std::string& key);

// The head of `key` is finished (delivered or given up): drop it and go on.
void advance(Self self, const std::string& key) {
  auto& st = self->state;
  auto it = st.conversations.find(key);
  if (it == st.conversations.end()) return;
  auto& conv = it->second;
  conv.events.pop_front();
  conv.attempts = 0;
  conv.last_target.clear();
  conv.busy = false;
  --st.pending;
  st.metrics->queue_depth(st.options.index).set(static_cast<std::int64_t>(st.pending));
  if (conv.events.empty()) {
    st.conversations.erase(it);
  } else {
    dispatch(self, key);
  }
}

void dead_letter(Self self, const std::string& key, const Event& ev, std::uint32_t attempts,
                 const std::string& why) {
  self->state.metrics->events_dead_lettered().inc();
  log::warn("event dead-lettered", {{"source", ev.source},
                                    {"id", ev.id},
                                    {"conversation", ev.conversation},
                                    {"attempts", attempts},
                                    {"error", why}});
  advance(self, key);
}

void on_outcome(Self self, const std::string& key, const Outcome& out) {
  auto& st = self->state;
  auto it = st.conversations.find(key);
  if (it == st.conversations.end()) return;
  auto& conv = it->second;
  const EventPtr ev = conv.events.front();
  switch (out.error.empty() ? Verdict::done : classify_answer(out.status)) {
    case Verdict::done: {
      st.metrics->events_delivered().inc();
      st.metrics->end_to_end().observe(Clock::now() - ev->received_at);
      return advance(self, key);
    }
    case Verdict::dead_letter:
      return dead_letter(self, key, *ev, conv.attempts, out.target + ": " + out.error);
    case Verdict::retry:
      break;
  }
  const auto age = Clock::now() - ev->received_at;
  if (!may_retry(conv.attempts, st.options.max_attempts, age, st.options.max_age)) {
    return dead_letter(self, key, *ev, conv.attempts, out.target + ": " + out.error);
  }
  conv.last_target = out.target;
  const auto delay = st.options.backoff.delay(conv.attempts - 1, st.rng);
  st.metrics->delivery_retries().inc();
  log::debug("delivery failed, will retry", {{"id", ev->id},
                                             {"target", out.target},
                                             {"attempt", conv.attempts},
                                             {"error", out.error},
                                             {"delay_ms", delay.count() / 1000000}});
  self->delayed_send(self, delay, retry_atom::value, key);
}

void dispatch(Self self, const std::string& key) {
  auto& st = self->state;
  auto& conv = st.conversations[key];
  if (conv.busy || conv.events.empty()) return;
  const EventPtr ev = conv.events.front();
  auto route = st.routes.find(ev->source);
  if (route == st.routes.end()) {
    return dead_letter(self, key, *ev, 0, "no route for source " + ev->source);
  }
  conv.busy = true;
  ++conv.attempts;
  // The router always answers: it owns the attempt's deadline.
  self->request(route->second, caf::infinite, deliver_atom::value, ev, conv.attempts,
                conv.last_target)
      .then([self, key](Outcome& out) { on_outcome(self, key, out); },
            [self, key](caf::error& err) {
              Outcome out;
              out.error = "no outcome: " + self->system().render(err);
              on_outcome(self, key, out);
            });
}

}  // namespace

shard_actor::behavior_type shard(Self self, ShardOptions options, Metrics* metrics,
                                 std::unordered_map<std::string, router_actor> routes) {
  self->state.options = std::move(options);
  self->state.metrics = metrics;
  self->state.routes = std::move(routes);
  return {
      [self](ingest_atom, EventPtr& ev, AckFn& ack) {
        auto& st = self->state;
        if (st.pending >= st.options.max_pending) return ack(IngestStatus::full);
        ++st.pending;
        st.metrics->queue_depth(st.options.index).set(static_cast<std::int64_t>(st.pending));
        const std::string key = ev->conversation;
        auto& conv = st.conversations[key];
        conv.events.push_back(std::move(ev));
        ack(IngestStatus::accepted);
        if (!conv.busy) dispatch(self, key);
      },
      [self](pending_atom) -> std::uint64_t { return self->state.pending; },
      [self](retry_atom, const std::string& key) {
        auto it = self->state.conversations.find(key);
        if (it == self->state.conversations.end()) return;
        it->second.busy = false;
        dispatch(self, key);
      },
  };
}

}  // namespace botgate
