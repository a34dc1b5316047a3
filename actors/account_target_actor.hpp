// One platform account as a delivery target (wechat-oa, wecom-kf): sends an outbound event
// (a reply, a POST /v1/messages message, a dingdong probe's ding) as a text message to the
// event's conversation through the platform's customer-service API, with an access token from
// the account's token actor (token_actor.hpp).
//
// The platform's errcode decides the outcome (policies/platform_errors.hpp):
//   0                      -> delivered
//   40001 / 40014 / 42001  -> the token went stale: report it, get a fresh one, send once more
//                             (refused again: report that one too, and retry)
//   -1 / 45009 / 45011     -> retry (status 503), so the router may pick another account
//   anything else          -> dead-letter (status 400) with the platform's errcode and errmsg
// No token to be had (credentials refused, platform down) is a retry that made no send (sends 0,
// so no attempt), to be tried again once the token actor fetches next (retry_after).
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "actors/messages.hpp"
#include "actors/outbox.hpp"
#include "core/metrics.hpp"
#include "transport/wechat_api.hpp"

namespace botgate {

struct AccountOptions {
  std::string name;
  wechat::AccountApi api = wechat::AccountApi::official_account;
  std::string base_path;  // api_base's path prefix
  std::string open_kfid;  // wecom-kf: the customer-service account it sends as
  Duration token_timeout = std::chrono::seconds(5);  // longest wait for the token actor
};

struct AccountTargetState {
  static inline const char* name = "account-target";
  AccountOptions options;
  std::shared_ptr<http::HttpClient> client;
  token_actor tokens;
  TargetMetrics* metrics = nullptr;
  // One Send being carried out.
  struct Job {
    caf::strong_actor_ptr reply_to;
    Send send;
    std::string token;       // the token it went out with
    bool refreshed = false;  // already sent again after a stale token
  };
  std::string token;
  Clock::time_point use_until{};
  bool asking = false;                               // a token request is outstanding
  std::vector<Job> needs_token;                      // waiting for the token actor
  std::unordered_map<std::uint64_t, Job> in_flight;  // by HTTP exchange number
  std::uint64_t next_job = 0;
  ResultOutbox results;
  bool flush_queued = false;
};

target_actor::behavior_type account_target(target_actor::stateful_pointer<AccountTargetState> self,
                                           AccountOptions options,
                                           std::shared_ptr<http::HttpClient> client,
                                           token_actor tokens, TargetMetrics* metrics);

}  // namespace botgate
