// The WeChat Official Account and WeCom server APIs an account target calls: the access-token
// fetch and the customer-service send (OA `message/custom/send`, WeCom `kf/send_msg`). Builds
// request targets and JSON bodies, and reads the JSON answers. Pure: the HTTP exchange is the
// caller's, and nothing here throws on a bad answer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace botgate::wechat {

enum class AccountApi {
  official_account,  // api.weixin.qq.com: /cgi-bin/token, /cgi-bin/message/custom/send
  wecom_kf,          // qyapi.weixin.qq.com: /cgi-bin/gettoken, /cgi-bin/kf/send_msg
};

// `base_path` is the path part of the configured api_base ("" or e.g. "/wx"), no trailing '/'.
// The id and secret are percent-encoded. The result holds the secret: never log it.
std::string token_target(AccountApi api, std::string_view base_path, std::string_view id,
                         std::string_view secret);
std::string send_target(AccountApi api, std::string_view base_path, std::string_view access_token);

// The message body: for msgtype "text", `content` is the text; for any other msgtype it is that
// type's JSON object, sent as given ("msgtype":"image","image":{...}). `open_kfid` and `msgid`
// are for WeCom KF only (ignored otherwise).
std::string send_body(AccountApi api, std::string_view touser, std::string_view msgtype,
                      std::string_view content, std::string_view open_kfid, std::string_view msgid);

// WeCom KF's `msgid`: at most 32 characters of [0-9a-zA-Z_-]. Derived from the message's
// idempotency key (the first 32 hex digits of its SHA-256), so a message sent twice carries
// the same msgid and the platform takes it once.
std::string kf_msgid(std::string_view source, std::string_view id);

// An API answer: {"errcode":N,"errmsg":"..."} plus, for a token fetch, access_token and
// expires_in. The OA token endpoint leaves errcode out on success, so a token answer without
// one counts as errcode 0; a send's answer must carry it (has_errcode).
struct ApiAnswer {
  bool parsed = false;  // the body was a JSON object with fields of the expected types
  std::string problem;  // when not parsed: why ("the answer is not a JSON object", ...)
  bool has_errcode = false;
  long errcode = 0;
  std::string errmsg;
  std::string access_token;
  bool has_expires_in = false;
  // Seconds. Any JSON number is taken: a fraction is cut off (7200.0 is 7200) and one beyond
  // the int64 range (1e20) is clamped to it.
  std::int64_t expires_in = 0;
};

ApiAnswer parse_api_answer(std::string_view body);

// The longest access token taken: it goes into the query of every send, and a token of
// megabytes would be cached and make each of them fail (414). The platforms' are 512 at most.
inline constexpr std::size_t kMaxAccessToken = 2048;

// Why a token endpoint's answer without an errcode (or with 0) gives no token to use, or ""
// when it gives one: no access_token, one longer than kMaxAccessToken, no expires_in, or an
// expires_in not above 0.
std::string token_problem(const ApiAnswer& a);

// "errcode 45015: response out of time limit" (the platform's own words, for logs, dead
// letters and /v1/targets).
std::string describe(const ApiAnswer& a);

}  // namespace botgate::wechat
