#include "actors/http_target_actor.hpp"

#include <charconv>
#include <string_view>

#include "core/log.hpp"
#include "policies/delivery_rules.hpp"

namespace botgate {
namespace {

DeliveryOutcome metric_outcome(const http::ClientResponse& r) {
  using E = http::ClientResponse::Error;
  switch (r.error) {
    case E::timeout:
      return DeliveryOutcome::timeout;
    case E::connect:
      return DeliveryOutcome::connect_error;
    case E::io:
      return DeliveryOutcome::connect_error;
    case E::none:
      break;
  }
  switch (classify_answer(r.status)) {
    case Verdict::done:
      return DeliveryOutcome::success;
    case Verdict::retry:
      return DeliveryOutcome::server_error;
    case Verdict::dead_letter:
      return DeliveryOutcome::rejected;
  }
  return DeliveryOutcome::server_error;
}

}  // namespace

target_actor::behavior_type http_target(target_actor::stateful_pointer<HttpTargetState> self,
                                        std::string name, std::string path,
                                        std::shared_ptr<http::HttpClient> client,
                                        TargetMetrics* metrics) {
  self->state.target_name = std::move(name);
  self->state.path = std::move(path);
  self->state.client = std::move(client);
  self->state.metrics = metrics;
  return {
      [self](deliver_atom, Sends& sends) {
        auto& st = self->state;
        auto me = caf::actor_cast<target_actor>(self);
        for (auto& s : sends) {
          const auto job = st.next_job++;
          st.waiting.emplace(job,
                             HttpTargetState::Waiting{self->current_sender(), s.ticket, s.leg});
          st.metrics->in_flight.add(1);
          char attempt[16];
          const auto digits = std::to_chars(attempt, attempt + sizeof attempt, s.attempt);
          // The callback runs on the client's strand: it only mails the result back.
          st.client->post(st.path, raw_content_type(*s.ev), s.ev->raw,
                          {{"Idempotency-Key", s.ev->id},
                           {"X-Botgate-Attempt", std::string_view(attempt, digits.ptr - attempt)},
                           {"X-Botgate-Source", s.ev->source}},
                          [me, job](http::ClientResponse&& r) {
                            caf::anon_send(me, done_atom::value, job, std::move(r));
                          });
        }
      },
      [self](done_atom, std::uint64_t job, http::ClientResponse& r) {
        auto& st = self->state;
        auto it = st.waiting.find(job);
        if (it == st.waiting.end()) return;
        st.metrics->in_flight.add(-1);
        st.metrics->count(metric_outcome(r));
        Outcome out;
        out.target = st.target_name;
        out.status = r.status;
        if (r.error != http::ClientResponse::Error::none) {
          out.error = std::move(r.message);
        } else if (classify_answer(r.status) != Verdict::done) {
          out.error = "HTTP " + std::to_string(r.status);
          out.retry_after = r.retry_after;
        } else {
          out.body = std::move(r.body);  // may carry replies for the shard
        }
        if (r.body_dropped) {
          log::warn_throttled(st.body_dropped,
                              "backend answer body over the limit: dropped, with any replies in it",
                              {{"target", st.target_name}, {"status", r.status}});
        }
        auto& w = it->second;
        st.results.add(w.reply_to, Result{w.ticket, w.leg, std::move(out)});
        request_flush(self, st.flush_queued);
        st.waiting.erase(it);
      },
      [self](flush_atom) {
        self->state.flush_queued = false;
        send_results(self->state.results);
      },
  };
}

}  // namespace botgate
