// The WeChat Official Account / WeCom callback codec: parses the plaintext message XML
// into an Event, reads the safe-mode envelope, and writes passive-reply XML. No crypto
// here (see wechat_crypto.hpp); every function is pure and never throws on bad input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/event.hpp"
#include "transport/generic_codec.hpp"  // CodecStatus, kMaxKeyLength

namespace botgate {

// Limits on a callback document. Real messages are a few hundred bytes and at most
// five levels deep (WeCom's SendPicsInfo/PicList/item/PicMd5Sum); anything past these
// is refused as malformed rather than walked.
inline constexpr std::size_t kMaxWechatXmlBytes = 256 * 1024;
inline constexpr std::size_t kMaxWechatXmlDepth = 16;  // <xml> itself is depth 1
inline constexpr std::size_t kMaxWechatXmlNodes = 4096;

// What a reply or a router needs beyond the Event. Every other field (Location_X,
// ThumbMediaId, WeCom's BatchJob, ...) is left in Event::raw, which backends get whole.
struct WechatMessage {
  std::string to_user;    // ToUserName: the account (OA original id "gh_...", or WeCom corp id)
  std::string from_user;  // FromUserName: the user's openid (OA) or userid (WeCom); empty
                          // for an event from no user (a WXKF kf_msg_or_event notification)
  std::int64_t create_time = 0;  // CreateTime, unix seconds
  std::string msg_type;          // MsgType as sent, e.g. "text", "event"
  std::string event;             // Event, only for MsgType "event"
  std::string msg_id;            // MsgId, empty when absent (events)
  std::string agent_id;          // AgentID (WeCom application messages), empty when absent
};

// Parses a decrypted callback body. `xml` is taken by value: it becomes Event::raw
// unchanged. On success fills out.id / conversation / sender / type / text / raw and
// `msg`; out.source and the receive times are the caller's. On failure `out` and `msg`
// are untouched and `detail` says why, in words safe to log.
//
// Mapping:
//   sender = FromUserName. Events may come from no user (WXKF's kf_msg_or_event carries
//          only Token and OpenKfId): sender is then empty.
//   conversation = FromUserName, else OpenKfId, else ToUserName.
//   type = MsgType, or "event:" + Event for events ("event:subscribe", "event:CLICK")
//   text = Content (text; required), Recognition or else MediaId (voice), PicUrl or
//          else MediaId (image), MediaId (video, shortvideo), Label (location),
//          Url (link), EventKey (events; "Latitude,Longitude" for LOCATION); empty for
//          types botgate does not know, which are passed through, not refused.
//   id   = MsgId when present and non-empty. Otherwise (events carry no MsgId)
//          conversation + "-" + CreateTime + "-" + Event + "-" + 16 hex digits of a digest
//          of the whole message (element names and text). WeChat recommends
//          FromUserName + CreateTime; a retry repeats the message, so retries still dedup,
//          while one second can hold several different events of one user (a subscribe
//          via a QR code and its LOCATION report, clicks on two menu keys, two template-send
//          reports with their own MsgID) or of the system (WXKF notifications, each with
//          its own Token), which must not collapse into one. A non-event without MsgId
//          (not in the docs, but refusing it would make WeChat retry and then tell the
//          user the account is broken) falls back the same way with MsgType for Event.
//
// Refused: invalid UTF-8 or NUL bytes, more than kMaxWechatXmlBytes, XML syntax
// errors, a DOCTYPE (see the .cpp), an '&' outside CDATA and comments that starts no
// predefined entity or character reference (pugixml would take it as text, a backend's
// strict parser would not), an XML declaration naming an encoding other than UTF-8 (the
// body is read as UTF-8, and a backend would read it as declared), content outside the
// root, a root other than <xml>,
// nesting or node counts past the limits, a repeated key field -> malformed; a missing
// or empty ToUserName / MsgType / CreateTime, FromUserName outside events, Event for an
// event, or Content for a text message -> missing_field. A CreateTime that is not a decimal
// integer, or an id or FromUserName longer than kMaxKeyLength or holding control
// characters, is malformed.
CodecStatus parse_wechat_message(std::string xml, Event& out, WechatMessage& msg,
                                 std::string& detail);

// The safe-mode outer document, <xml><ToUserName/><Encrypt/>[<AgentID/>]</xml>.
struct WechatEnvelope {
  std::string to_user;   // ToUserName; empty when absent (some envelopes carry AppId instead)
  std::string encrypt;   // Encrypt: the base64 ciphertext, as sent
  std::string agent_id;  // AgentID (WeCom), empty when absent
};

// Only a non-empty Encrypt is required. Same document rules as parse_wechat_message.
CodecStatus parse_wechat_envelope(std::string_view xml, WechatEnvelope& out, std::string& detail);

// The decrypted XML of a WXKF notification (Event kf_msg_or_event) as WeCom sends it, for one
// that reached botgate already decrypted: backends get one format whichever way it came.
std::string build_kf_notification_xml(std::string_view corp_id, std::int64_t create_time,
                                      std::string_view token, std::string_view open_kfid);

// The passive text reply. `to_user` is the user's openid (the callback's FromUserName),
// `from_user` the account (the callback's ToUserName). Strings are written as CDATA,
// with any "]]>" split across two sections; characters XML 1.0 cannot carry at all
// (control characters other than tab, LF and CR) are dropped.
std::string build_wechat_text_reply(std::string_view to_user, std::string_view from_user,
                                    std::int64_t create_time, std::string_view content);

// The encrypted-reply envelope from values already computed by the crypto layer.
// `timestamp` is written as text (escaped), the others as CDATA.
std::string build_wechat_encrypted_reply(std::string_view encrypt, std::string_view msg_signature,
                                         std::string_view timestamp, std::string_view nonce);

}  // namespace botgate
