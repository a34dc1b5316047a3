// The unit of work that flows from a platform codec through a shard to a target.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace botgate {

using Clock = std::chrono::steady_clock;

struct Event {
  std::string source;        // name of the [[sources]] entry it arrived on
  std::string id;            // idempotency key, unique per source
  std::string conversation;  // ordering key: events of one conversation are delivered in order
  std::string sender;
  std::string type;
  std::string text;
  std::string raw;  // the body exactly as received; this is what backends get
  // The pool it is delivered through, chosen at ingest (route rules, a reply's account pool);
  // empty: its source's `route`.
  std::string route;
  Clock::time_point received_at{};
  std::chrono::system_clock::time_point received_wall{};
};

// The media type of Event::raw as a backend gets it: a WeChat or WeCom callback's raw is its
// (decrypted) XML, labelled as the platforms label their own callbacks; every other raw is a
// JSON object, which cannot start with '<' (nor with a byte-order mark, which XML may).
inline std::string_view raw_content_type(const Event& ev) {
  std::string_view raw = ev.raw;
  if (raw.starts_with("\xEF\xBB\xBF")) raw.remove_prefix(3);
  const auto first = raw.find_first_not_of(" \t\r\n");
  return first != std::string_view::npos && raw[first] == '<' ? "text/xml" : "application/json";
}

// The sources of botgate's own events, which no [[sources]] entry may be named: messages sent
// with POST /v1/messages (their ids are deduplicated apart from every platform's), and a
// dingdong probe's dings (the X-Botgate-Source backends see on them).
inline constexpr std::string_view kApiSource = "api";
inline constexpr std::string_view kProbeSource = "botgate-probe";

// Events are immutable once parsed and shared between actors without copies.
using EventPtr = std::shared_ptr<const Event>;

}  // namespace botgate
