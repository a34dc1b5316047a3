// The route rule table (`[[routes]]`): what happens to an inbound event. Rules are tried in
// the order of the config file and the first match wins. A rule matches on source, type and
// text (exact or a regular expression, each optional); its action is a static reply (sent
// back synchronously, e.g. as a WeChat passive reply), forwarding to a backend pool, or both.
// No rule matching means the source's own `route` pool.
//
// The heartbeat responder comes before every rule: a text "ding" (or "ding <nonce>") is
// answered "dong" (or "dong <nonce>") and not forwarded, so one botgate can be the
// dingdong peer of another.
//
// Pure: no actors, no I/O.
#pragma once

#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "core/event.hpp"

namespace botgate {

// A rule's text_regex: ECMAScript, matched against the whole text. libstdc++ matches
// ECMAScript by backtracking, recursing once per character of the text, so a long text
// (tens of KB) against ".*x.*" overflows the stack of the io thread. Its polynomial mode
// (a Thompson NFA: stack depth bounded by the pattern, time text size times pattern size
// except for a lookahead inside a repetition, which stays quadratic in the text) has no such
// limit; it has no backreferences, which are refused here with a std::regex_error like any
// other invalid expression.
inline std::regex compile_text_regex(const std::string& pattern) {
  return std::regex(
      pattern, std::regex::ECMAScript | std::regex::optimize | std::regex_constants::__polynomial);
}

struct RouteRule {
  std::string source;               // empty: any source
  std::string type;                 // empty: any type (Event::type, e.g. "text", "event:CLICK")
  std::optional<std::string> text;  // exact text
  std::optional<std::regex> text_regex;  // from compile_text_regex; matches the whole text
  std::string reply;                     // empty: no static reply
  std::string pool;                      // empty: not forwarded
  std::size_t index = 0;                 // position in the config, for logs and metrics

  bool matches(const Event& ev) const {
    if (!source.empty() && source != ev.source) return false;
    if (!type.empty() && type != ev.type) return false;
    if (text && *text != ev.text) return false;
    if (text_regex && !std::regex_match(ev.text, *text_regex)) return false;
    return true;
  }
};

struct RouteDecision {
  std::string reply;                // a synchronous reply, or empty
  std::string pool;                 // the pool to forward to, or empty (not stored, not forwarded)
  const RouteRule* rule = nullptr;  // the rule that matched; null for the responder or default
  bool heartbeat = false;           // the built-in ding responder answered
};

inline constexpr std::string_view kDing = "ding";
inline constexpr std::string_view kDong = "dong";

// "ding" -> "dong", "ding <x>" -> "dong <x>"; nullopt for anything else.
inline std::optional<std::string> dong_for(std::string_view text) {
  if (!text.starts_with(kDing)) return std::nullopt;
  const std::string_view rest = text.substr(kDing.size());
  if (!rest.empty() && rest.front() != ' ') return std::nullopt;
  return std::string(kDong) + std::string(rest);
}

// `answer_ding`: the source's built-in heartbeat responder is on. `default_pool`: the source's
// `route` (may be empty).
inline RouteDecision decide_route(const std::vector<RouteRule>& rules, const Event& ev,
                                  bool answer_ding, const std::string& default_pool) {
  RouteDecision d;
  if (answer_ding && ev.type == "text") {
    if (auto dong = dong_for(ev.text)) {
      d.reply = std::move(*dong);
      d.heartbeat = true;
      return d;
    }
  }
  for (const auto& r : rules) {
    if (!r.matches(ev)) continue;
    d.reply = r.reply;
    d.pool = r.pool;
    d.rule = &r;
    return d;
  }
  d.pool = default_pool;
  return d;
}

}  // namespace botgate
