// The generic signed-JSON platform codec: verifies X-Botgate-Signature and parses
// the body into an Event with simdjson On Demand (one reused parser per thread).
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "core/event.hpp"
#include "core/units.hpp"
#include "transport/signature.hpp"

namespace botgate {

enum class CodecStatus { ok, bad_signature, stale_timestamp, malformed, missing_field };

const char* to_string(CodecStatus s);

// Longest id or conversation accepted; longer ones are malformed.
inline constexpr std::size_t kMaxKeyLength = 256;

// Checks the timestamp window first (cheap), then the HMAC under the source's keyed secret
// `mac`, in constant time.
CodecStatus verify_generic(const HmacSha256& mac, std::string_view timestamp_header,
                           std::string_view signature_header, std::string_view body,
                           std::chrono::system_clock::time_point now, Duration max_skew);

// Parses `body` (taken by value: it becomes Event::raw without a copy). The whole
// document is validated, including UTF-8 and trailing content, not just the fields
// read. On failure `detail` says why, in words safe to log.
CodecStatus parse_generic_event(std::string body, Event& out, std::string& detail);

// What an outbound message says: text, or a platform message of another type (image, voice,
// video, file, news, msgmenu, miniprogrampage, ...) whose JSON object goes to the platform as
// the sender gave it. botgate does not check such an object: the platform judges it, and an
// answer that refuses it dead-letters the message with the platform's reason.
struct MessageContent {
  std::string msgtype = "text";
  std::string body;  // text: the text; otherwise the msgtype's JSON object, verbatim
};

// Longest msgtype accepted: the platforms' longest is "miniprogrampage".
inline constexpr std::size_t kMaxMsgtypeLength = 32;

// An outbound message travels through the shards as an Event: of type `kind` ("reply",
// "message") with the text in Event::text, or of type "kind:msgtype" with the msgtype's object
// in Event::text. outbound_content() reads either back; an Event whose type has no ':' is text.
std::string outbound_type(std::string_view kind, const MessageContent& c);
struct OutboundContent {
  std::string_view msgtype;
  std::string_view body;
};
OutboundContent outbound_content(const Event& ev);

// The body of POST /v1/messages: {"pool":"...","to":"...","text":"...","id":"..."}, or
// "msgtype":"image","image":{...} in place of "text". `id` (optional) is the idempotency key:
// a message sent twice with one id goes out once.
struct OutboundMessage {
  std::string pool;
  std::string to;
  MessageContent content;
  std::string id;
};

// pool, to and the content are required (missing_field): a non-empty string "text", or a
// "msgtype" ([a-z][a-z_]*, not "text") and an object member of that name. to and id follow the
// id rules of generic events (at most kMaxKeyLength bytes, no control characters).
CodecStatus parse_outbound_message(std::string_view body, OutboundMessage& out,
                                   std::string& detail);

// A WXKF notification that reached botgate already decrypted (POST /callback/decrypted/{corpId},
// wxkf-manager's format): {"token":"...","openKfId":"..."}. token is the notification's
// kf/sync_msg token, openKfId the customer-service account.
struct KfNotification {
  std::string token;
  std::string open_kfid;
};

// Both members are required (missing_field when absent or empty) and follow the id rules of
// generic events, openKfId within kMaxOpenKfIdLength bytes (it heads the event id, which
// holds 44 bytes more); other members are ignored.
inline constexpr std::size_t kMaxOpenKfIdLength = 128;
CodecStatus parse_kf_notification(std::string_view body, KfNotification& out, std::string& detail);

// One reply a backend returned with its 2xx answer:
// {"replies":[{"text":"...","to":"..."}, {"msgtype":"image","image":{"media_id":"..."}}]}.
// `to` is optional (empty: the conversation the event came from).
struct BackendReply {
  MessageContent content;
  std::string to;
};

// At most this many replies are taken from one answer; more is malformed.
inline constexpr std::size_t kMaxReplies = 16;

// The replies in a backend's answer body. A body that is empty, not one whole valid JSON
// document, or has no "replies" holds none (ok). A "replies" that is not an array of objects
// with content as in parse_outbound_message (and an optional string "to") is malformed, with
// `detail` saying why.
CodecStatus parse_backend_replies(std::string_view body, std::vector<BackendReply>& out,
                                  std::string& detail);

}  // namespace botgate
