// One access-token cache per account credential (wechat-oa: app id + secret; wecom-kf: corp id
// + secret), shared by every account target that uses it.
//
//   empty --ask--> fetching --ok--> cached --refresh timer (expires_in - margin)--> fetching
//     ^               |   ^            |                                    (old token served)
//     |       failed  |   |  retry     +--invalid(token)--> fetching
//     |               v   |  timer
//     +----------- failed (asks answered with the error until the retry)
//
// Single flight: askers that arrive while a fetch runs wait for that fetch, unless the token
// it replaces is still within its lifetime: they get that one (for at most kStaleServe, then
// they ask again). The platform's expires_in is taken up to kMaxTokenLife. A token the answer
// gives with an expires_in under `min_life`, with none, or longer than wechat::kMaxAccessToken
// is not taken: the fetch failed (with that reason). A fetch refused for
// the credentials (any errcode but a transient one) reports the account's targets unhealthy to
// their routers with the platform's errmsg; the next good fetch reports them healthy again.
// Failed fetches are retried with truncated exponential backoff and full jitter. The secret never
// leaves the fetch's request target and is never logged.
#pragma once

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "actors/messages.hpp"
#include "core/metrics.hpp"
#include "policies/backoff.hpp"
#include "transport/wechat_api.hpp"

namespace botgate {

// The longest a token is used without a new fetch, whatever expires_in says (WeChat and WeCom
// give 7200 s): an absurd value must neither overflow the clock nor keep a token for years.
inline constexpr Duration kMaxTokenLife = std::chrono::hours(24);
// How long an asker may use a token that is due for refresh while the refresh runs.
inline constexpr Duration kStaleServe = std::chrono::seconds(1);

struct TokenOptions {
  wechat::AccountApi api = wechat::AccountApi::official_account;
  std::string id;  // app id or corp id (safe to log)
  std::string secret;
  std::string base_path;  // api_base's path prefix
  Duration margin = std::chrono::minutes(5);
  // A token living less than this is not used (the fetch failed): refreshed at half its life,
  // it would have the platform's daily token quota fetched away with no traffic at all.
  Duration min_life = std::chrono::seconds(60);
  Backoff retry{std::chrono::seconds(1), std::chrono::minutes(1)};
  // The account targets using this credential and the routers that hold each, for health.
  struct Watcher {
    std::string target;
    router_actor router;
  };
  // Shared with the wiring, which fills it once the routers exist (before any token is asked).
  std::shared_ptr<const std::vector<Watcher>> watchers;
  // Of those targets, for the fetch counts; filled with the watchers.
  std::shared_ptr<const std::vector<TargetMetrics*>> metrics;
};

struct TokenState {
  static inline const char* name = "token";
  TokenOptions options;
  std::shared_ptr<http::HttpClient> client;
  std::string token;
  Clock::time_point expires_at{};  // the platform's expiry (as received)
  Clock::time_point use_until{};   // refresh point: expiry minus the margin
  std::uint64_t fetch = 0;         // number of the fetch running or last run
  bool fetching = false;
  std::vector<caf::typed_response_promise<AccessToken>> waiting;
  std::string error;             // the last fetch's failure, until a fetch succeeds
  Clock::time_point retry_at{};  // while failed: no new fetch before this
  std::uint32_t failures = 0;    // consecutive failed fetches
  bool credentials_ok = true;    // as last reported to the routers
  std::mt19937_64 rng{std::random_device{}()};
};

token_actor::behavior_type token_cache(token_actor::stateful_pointer<TokenState> self,
                                       TokenOptions options,
                                       std::shared_ptr<http::HttpClient> client);

}  // namespace botgate
