#include "actors/token_actor.hpp"

#include "core/log.hpp"
#include "core/units.hpp"
#include "policies/platform_errors.hpp"
#include "storage/event_record.hpp"

namespace botgate {
namespace {

using Self = token_actor::stateful_pointer<TokenState>;

void report_credentials(Self self, bool ok, const std::string& why) {
  auto& st = self->state;
  if (st.credentials_ok == ok) return;
  st.credentials_ok = ok;
  if (ok) {
    log::info("account credentials accepted", {{"account", st.options.id}});
  } else {
    log::warn("account credentials refused", {{"account", st.options.id}, {"error", why}});
  }
  ProbeResult r;
  r.ok = ok;
  r.healthy = ok;
  r.error = why;
  r.at_ms = storage::unix_now_ms();
  r.credentials = true;
  for (const auto& w : *st.options.watchers) {
    r.target = w.target;
    self->send(w.router, health_atom::value, r);
  }
}

// Does a token living `expires_in` seconds live less than `min_life`? (In seconds: a huge
// expires_in must not overflow the nanosecond clock.)
bool too_short(std::int64_t expires_in, Duration min_life) {
  return expires_in < std::chrono::ceil<std::chrono::seconds>(min_life).count();
}

void answer_all(Self self) {
  auto& st = self->state;
  AccessToken t;
  if (st.token.empty()) {
    t.error = st.error.empty() ? "no access token" : st.error;
    t.retry_at = st.retry_at;
  } else {
    t.token = st.token;
    t.use_until = st.use_until;
  }
  for (auto& p : st.waiting) p.deliver(t);
  st.waiting.clear();
}

void start_fetch(Self self) {
  auto& st = self->state;
  if (st.fetching) return;
  st.fetching = true;
  const auto n = ++st.fetch;
  auto me = caf::actor_cast<token_actor>(self);
  st.client->get(
      wechat::token_target(st.options.api, st.options.base_path, st.options.id, st.options.secret),
      {},
      [me, n](http::ClientResponse&& r) { caf::anon_send(me, done_atom::value, n, std::move(r)); });
}

void fetched(Self self, std::uint64_t n, http::ClientResponse& r) {
  auto& st = self->state;
  if (n != st.fetch || !st.fetching) return;
  st.fetching = false;
  const auto now = Clock::now();
  std::string error;
  bool credentials_refused = false;
  wechat::ApiAnswer a;
  if (r.error != http::ClientResponse::Error::none) {
    error = "token fetch failed: " + r.message;
  } else if (r.status != 200) {
    error = "token fetch failed: HTTP " + std::to_string(r.status);
  } else if (a = wechat::parse_api_answer(r.body); !a.parsed) {
    error = "token fetch failed: " + a.problem;
  } else if (a.errcode != 0) {
    error = "token refused: " + wechat::describe(a);
    credentials_refused = !token_error_is_transient(a.errcode);
  } else if (auto why = wechat::token_problem(a); !why.empty()) {
    error = "token fetch failed: " + why;
  } else if (too_short(a.expires_in, st.options.min_life)) {
    // Refreshed at half its life, such a token would be fetched again and again, without
    // traffic, for as long as the platform answers so: a failed fetch, retried with backoff.
    error = "token fetch failed: its expires_in " + std::to_string(a.expires_in) +
            "s is under token_min_life (" + format_duration(st.options.min_life) + ")";
  }
  for (auto* m : *st.options.metrics) {
    (error.empty() ? m->token_fetches_ok : m->token_fetches_failed).inc();
  }
  if (!error.empty()) {
    st.error = error;
    st.retry_at = now + st.options.retry.delay(st.failures++, st.rng);
    log::warn("access token fetch failed", {{"account", st.options.id}, {"error", error}});
    if (credentials_refused) report_credentials(self, false, wechat::describe(a));
    // A token still within its lifetime keeps serving; askers get it or the error.
    if (now >= st.expires_at) st.token.clear();
    answer_all(self);
    // Fetch again at retry_at with or without askers: an account reported unhealthy gets no
    // sends, so it would never ask, and fixed credentials would never be noticed.
    self->delayed_send(self, st.retry_at - now, tick_atom::value, n);
    return;
  }
  st.token = std::move(a.access_token);
  st.error.clear();
  st.failures = 0;
  // expires_in > 0 here. Capped in seconds, before the nanosecond clock could overflow.
  constexpr auto kMaxSeconds = std::chrono::duration_cast<std::chrono::seconds>(kMaxTokenLife);
  const Duration life = std::chrono::seconds(std::min(a.expires_in, kMaxSeconds.count()));
  st.expires_at = now + life;
  // Refresh `margin` before expiry; a token living less than two margins at half its life.
  st.use_until = now + (life > 2 * st.options.margin ? life - st.options.margin : life / 2);
  log::info("access token fetched",
            {{"account", st.options.id}, {"expires_in_s", a.expires_in}, {"fetch", n}});
  report_credentials(self, true, "");
  answer_all(self);
  self->delayed_send(self, st.use_until - now, tick_atom::value, n);
}

}  // namespace

token_actor::behavior_type token_cache(Self self, TokenOptions options,
                                       std::shared_ptr<http::HttpClient> client) {
  self->state.options = std::move(options);
  self->state.client = std::move(client);
  return {
      [self](token_atom) -> caf::result<AccessToken> {
        auto& st = self->state;
        const auto now = Clock::now();
        if (!st.token.empty() && now < st.use_until) {
          return AccessToken{st.token, {}, st.use_until};
        }
        if (!st.fetching && !st.error.empty() && now < st.retry_at) {
          if (!st.token.empty() && now < st.expires_at) {
            return AccessToken{st.token, {}, st.retry_at};
          }
          return AccessToken{{}, st.error, {}, st.retry_at};
        }
        if (!st.token.empty() && now < st.expires_at) {
          // Due for refresh but still alive: the sender need not wait for the refresh.
          start_fetch(self);
          return AccessToken{st.token, {}, std::min(st.expires_at, now + kStaleServe)};
        }
        auto promise = self->make_response_promise<AccessToken>();
        st.waiting.push_back(promise);
        start_fetch(self);
        return promise;
      },
      [self](invalid_atom, const std::string& stale) {
        auto& st = self->state;
        // Only the current token: several senders reporting the same stale token cause one
        // fetch, and a report about a token already replaced changes nothing.
        if (stale.empty() || stale != st.token) return;
        log::info("access token refused by the platform, fetching a new one",
                  {{"account", st.options.id}});
        st.token.clear();
        st.expires_at = Clock::time_point{};
        st.retry_at = Clock::time_point{};
        start_fetch(self);
      },
      [self](done_atom, std::uint64_t n, http::ClientResponse& r) { fetched(self, n, r); },
      [self](tick_atom, std::uint64_t n) {
        // The refresh or retry point of fetch n: fetch unless a later fetch replaced it.
        if (n == self->state.fetch && !self->state.fetching) start_fetch(self);
      },
  };
}

}  // namespace botgate
