// What a WeChat / WeCom API error code means for a message being sent through an account.
// Pure: the account target (actors/account_target_actor.hpp) acts on the answer.
#pragma once

namespace botgate {

enum class PlatformVerdict {
  sent,           // errcode 0
  refresh_token,  // the access token is stale: fetch a new one and send once more
  retry,          // transient: retry after backoff, possibly through another account
  dead_letter,    // this message cannot be sent: keep it with the reason
};

// 40001 invalid credential, 40014 invalid access_token, 42001 access_token expired: the token
// went stale (expired, or replaced by a fetch elsewhere). -1 system busy, 45009 frequency
// limit, 45011 api minute-quota: transient. 45015 outside the 48 h reply window, 45047 out of
// the reply count: the platform will never take this message. Any other code is a request
// the platform refuses (bad openid, content, permission), which retrying does not fix.
constexpr PlatformVerdict classify_platform_error(long errcode) noexcept {
  switch (errcode) {
    case 0:
      return PlatformVerdict::sent;
    case 40001:
    case 40014:
    case 42001:
      return PlatformVerdict::refresh_token;
    case -1:
    case 45009:
    case 45011:
      return PlatformVerdict::retry;
    default:
      return PlatformVerdict::dead_letter;
  }
}

// A token fetch that failed with this code: transient (try again later), or the credentials
// are refused (the account is unhealthy until a fetch succeeds).
constexpr bool token_error_is_transient(long errcode) noexcept {
  return errcode == -1 || errcode == 45009 || errcode == 45011;
}

}  // namespace botgate
