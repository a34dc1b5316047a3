#include "actors/account_target_actor.hpp"

#include "core/log.hpp"
#include "policies/platform_errors.hpp"
#include "transport/generic_codec.hpp"

namespace botgate {
namespace {

using Self = target_actor::stateful_pointer<AccountTargetState>;
using Job = AccountTargetState::Job;

void submit(Self self, Job job);

// Hands the job's outcome back to whoever sent it.
void give_back(Self self, Job& job, Outcome out) {
  auto& st = self->state;
  out.target = st.options.name;
  st.results.add(job.reply_to, Result{job.send.ticket, job.send.leg, std::move(out)});
  request_flush(self, st.flush_queued);
}

void answer(Self self, Job& job, unsigned status, std::string error, DeliveryOutcome metric) {
  self->state.metrics->count(metric);
  Outcome out;
  out.status = status;
  out.error = std::move(error);
  give_back(self, job, std::move(out));
}

// No token to send with: a retry that made no send (unless the job's first send, refused for a
// stale token, did), so neither an attempt nor a delivery; it waits for the token actor's next
// fetch, when a token may be had again.
void answer_no_token(Self self, Job& job, const AccessToken& t) {
  if (job.refreshed) self->state.metrics->count(DeliveryOutcome::server_error);
  Outcome out;
  out.status = 503;
  out.error = "no access token: " + t.error;
  out.sends = job.refreshed ? 1 : 0;
  out.retry_after = std::max(t.retry_at - Clock::now(), Duration::zero());
  give_back(self, job, std::move(out));
}

// The platform refused `token` as stale: the token actor must not hand it out again.
void report_stale(Self self, const std::string& token) {
  auto& st = self->state;
  self->send(st.tokens, invalid_atom::value, token);
  if (st.token == token) st.token.clear();
}

void post(Self self, Job job) {
  auto& st = self->state;
  const auto& ev = *job.send.ev;
  job.token = st.token;
  const auto n = st.next_job++;
  const std::string msgid = st.options.api == wechat::AccountApi::wecom_kf
                                ? wechat::kf_msgid(ev.source, ev.id)
                                : std::string();
  const auto content = outbound_content(ev);
  auto me = caf::actor_cast<target_actor>(self);
  st.client->post(wechat::send_target(st.options.api, st.options.base_path, job.token),
                  wechat::send_body(st.options.api, ev.conversation, content.msgtype, content.body,
                                    st.options.open_kfid, msgid),
                  {}, [me, n](http::ClientResponse&& r) {
                    caf::anon_send(me, done_atom::value, n, std::move(r));
                  });
  st.metrics->in_flight.add(1);
  st.in_flight.emplace(n, std::move(job));
}

void on_token(Self self, AccessToken& t) {
  auto& st = self->state;
  st.asking = false;
  auto jobs = std::move(st.needs_token);
  st.needs_token.clear();
  if (!t.error.empty()) {
    for (auto& job : jobs) answer_no_token(self, job, t);
    return;
  }
  st.token = std::move(t.token);
  st.use_until = t.use_until;
  for (auto& job : jobs) post(self, std::move(job));
}

void ask_token(Self self) {
  auto& st = self->state;
  if (st.asking) return;
  st.asking = true;
  self->request(st.tokens, st.options.token_timeout, token_atom::value)
      .then([self](AccessToken& t) { on_token(self, t); },
            [self](caf::error& err) {
              AccessToken t;
              t.error = "token actor: " + caf::to_string(err);
              on_token(self, t);
            });
}

void submit(Self self, Job job) {
  auto& st = self->state;
  if (!st.token.empty() && Clock::now() < st.use_until) return post(self, std::move(job));
  st.needs_token.push_back(std::move(job));
  ask_token(self);
}

void on_done(Self self, std::uint64_t n, http::ClientResponse& r) {
  auto& st = self->state;
  auto it = st.in_flight.find(n);
  if (it == st.in_flight.end()) return;
  Job job = std::move(it->second);
  st.in_flight.erase(it);
  st.metrics->in_flight.add(-1);
  using E = http::ClientResponse::Error;
  if (r.error != E::none) {
    return answer(
        self, job, 0, std::move(r.message),
        r.error == E::timeout ? DeliveryOutcome::timeout : DeliveryOutcome::connect_error);
  }
  if (r.status != 200) {
    const unsigned status = r.status >= 500 || r.status == 429 ? r.status : 502;
    return answer(self, job, status, "platform answered HTTP " + std::to_string(r.status),
                  DeliveryOutcome::server_error);
  }
  const auto a = wechat::parse_api_answer(r.body);
  if (!a.parsed) {
    return answer(self, job, 502, "platform answer not understood: " + a.problem,
                  DeliveryOutcome::server_error);
  }
  // Only an explicit errcode 0 says the message was taken: an answer without one (`{}`, an
  // error page of another shape) says nothing, and is retried like an unreadable one.
  if (!a.has_errcode) {
    return answer(self, job, 502, "platform answer has no errcode", DeliveryOutcome::server_error);
  }
  if (a.errcode != 0) st.metrics->platform_errors.inc();
  switch (classify_platform_error(a.errcode)) {
    case PlatformVerdict::sent:
      return answer(self, job, 200, {}, DeliveryOutcome::success);
    case PlatformVerdict::refresh_token:
      // Refused on the send once more too: the next attempt must not reuse that token either.
      report_stale(self, job.token);
      if (!job.refreshed) {
        job.refreshed = true;
        return submit(self, std::move(job));
      }
      return answer(self, job, 503, wechat::describe(a), DeliveryOutcome::server_error);
    case PlatformVerdict::retry:
      return answer(self, job, 503, wechat::describe(a), DeliveryOutcome::server_error);
    case PlatformVerdict::dead_letter:
      log::warn(
          "platform refused a message",
          {{"target", st.options.name}, {"id", job.send.ev->id}, {"error", wechat::describe(a)}});
      return answer(self, job, 400, wechat::describe(a), DeliveryOutcome::rejected);
  }
}

}  // namespace

target_actor::behavior_type account_target(Self self, AccountOptions options,
                                           std::shared_ptr<http::HttpClient> client,
                                           token_actor tokens, TargetMetrics* metrics) {
  auto& st = self->state;
  st.options = std::move(options);
  st.client = std::move(client);
  st.tokens = std::move(tokens);
  st.metrics = metrics;
  return {
      [self](deliver_atom, Sends& sends) {
        for (auto& s : sends) submit(self, Job{self->current_sender(), std::move(s), {}, false});
      },
      [self](done_atom, std::uint64_t n, http::ClientResponse& r) { on_done(self, n, r); },
      [self](flush_atom) {
        self->state.flush_queued = false;
        send_results(self->state.results);
      },
  };
}

}  // namespace botgate
