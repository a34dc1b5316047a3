#include "transport/generic_codec.hpp"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <initializer_list>
#include <string>
#include <utility>

#include "transport/signature.hpp"

namespace botgate {
namespace {

namespace od = simdjson::ondemand;

// Nesting deeper than this is refused: real events are shallow, and the walk
// below must stay far from both the stack's and simdjson's depth limits.
constexpr int kMaxDepth = 128;

// JSON number grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? . Checked on
// the token itself, so valid numbers too large for a double or an int64 pass.
bool is_json_number(std::string_view t) {
  while (!t.empty() &&
         (t.back() == ' ' || t.back() == '\t' || t.back() == '\n' || t.back() == '\r')) {
    t.remove_suffix(1);
  }
  std::size_t i = 0;
  auto digits = [&] {
    const std::size_t from = i;
    while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i;
    return i > from;
  };
  if (i < t.size() && t[i] == '-') ++i;
  if (i < t.size() && t[i] == '0') {
    ++i;
  } else if (!digits()) {
    return false;
  }
  if (i < t.size() && t[i] == '.') {
    ++i;
    if (!digits()) return false;
  }
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
    if (!digits()) return false;
  }
  return i == t.size();
}

// Walks a value completely so that malformed input anywhere in the document is
// rejected, not only in the fields botgate reads.
simdjson::error_code validate(od::value v, int depth) {
  if (depth > kMaxDepth) return simdjson::DEPTH_ERROR;
  od::json_type t;
  if (auto e = v.type().get(t)) return e;
  switch (t) {
    case od::json_type::object: {
      od::object o;
      if (auto e = v.get_object().get(o)) return e;
      for (auto field : o) {
        std::string_view key;
        if (auto e = field.unescaped_key().get(key)) return e;
        od::value inner;
        if (auto e = field.value().get(inner)) return e;
        if (auto e = validate(inner, depth + 1)) return e;
      }
      return simdjson::SUCCESS;
    }
    case od::json_type::array: {
      od::array a;
      if (auto e = v.get_array().get(a)) return e;
      for (auto element : a) {
        od::value inner;
        if (auto e = element.get(inner)) return e;
        if (auto e = validate(inner, depth + 1)) return e;
      }
      return simdjson::SUCCESS;
    }
    case od::json_type::string: {
      std::string_view s;
      return v.get_string().get(s);
    }
    case od::json_type::number:
      return is_json_number(v.raw_json_token()) ? simdjson::SUCCESS : simdjson::NUMBER_ERROR;
    case od::json_type::boolean: {
      bool b;
      return v.get_bool().get(b);
    }
    case od::json_type::null: {
      bool is_null = false;
      if (auto e = v.is_null().get(is_null)) return e;
      return is_null ? simdjson::SUCCESS : simdjson::N_ATOM_ERROR;
    }
  }
  return simdjson::INCORRECT_TYPE;
}

struct KnownField {
  std::string_view name;
  std::string Event::*member;
};

constexpr KnownField kFields[] = {{"id", &Event::id},
                                  {"conversation", &Event::conversation},
                                  {"sender", &Event::sender},
                                  {"type", &Event::type},
                                  {"text", &Event::text}};

// The id rules: what may travel as an Idempotency-Key header or a platform user id (at most
// kMaxKeyLength bytes, no control characters).
bool valid_key(std::string_view v, const char* name, std::string& detail) {
  if (v.size() > kMaxKeyLength) {
    detail = std::string("\"") + name + "\" longer than 256 bytes";
    return false;
  }
  for (unsigned char c : v) {
    if (c < 0x20 || c == 0x7f) {
      detail = std::string("\"") + name + "\" contains a control character";
      return false;
    }
  }
  return true;
}

// Whether `padded` is one whole valid JSON object: every value in it walked, nothing after it.
// A document that is not an object is INCORRECT_TYPE.
simdjson::error_code validate_object_document(od::parser& parser,
                                              const simdjson::padded_string& padded) {
  const std::string_view text(padded.data(), padded.size());
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos || text[first] != '{') return simdjson::INCORRECT_TYPE;
  od::document doc;
  od::value root;
  if (auto e = parser.iterate(padded).get(doc)) return e;
  if (auto e = doc.get_value().get(root)) return e;
  if (auto e = validate(root, 1)) return e;
  if (doc.current_location().error() != simdjson::OUT_OF_BOUNDS) {
    return simdjson::TRAILING_CONTENT;
  }
  return simdjson::SUCCESS;
}

// A msgtype names its object in the platform's request body, next to the envelope's own
// members: it must not be one of them.
bool valid_msgtype(std::string_view t) {
  if (t.empty() || t.size() > kMaxMsgtypeLength || t.front() < 'a' || t.front() > 'z') {
    return false;
  }
  for (std::string_view envelope : {"touser", "msgid", "open_kfid", "msgtype", "customservice"}) {
    if (t == envelope) return false;
  }
  return std::all_of(t.begin(), t.end(), [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; });
}

// The content of one outbound message object, gathered while its members are walked: "text"
// and "msgtype" (strings), and every object-valued member (one of them is msgtype's). The
// views point into the document being parsed (already validated whole).
class ContentFields {
 public:
  enum class Took { no, yes, error };

  // Takes the member `key` when it is content. A "text" or "msgtype" that is not a string, or
  // given twice, is an error, said in `detail` (`what` names the message: "reply", "field").
  Took take(std::string_view key, od::value value, const char* what, std::string& detail) {
    if (key == "text" || key == "msgtype") {
      std::string_view s;
      if (value.get_string().get(s)) {
        detail = std::string(what) + " \"" + std::string(key) + "\" must be a string";
        return Took::error;
      }
      if (key == "text" ? has_text_ : has_msgtype_) {
        detail = "duplicate field \"" + std::string(key) + "\"";
        return Took::error;
      }
      (key == "text" ? text_ : msgtype_) = s;
      (key == "text" ? has_text_ : has_msgtype_) = true;
      return Took::yes;
    }
    od::json_type type;
    od::object object;
    std::string_view raw;
    if (value.type().get(type) || type != od::json_type::object) {
      others_.push_back(key);  // not content, unless msgtype names it (then of the wrong type)
      return Took::no;
    }
    if (value.get_object().get(object) || object.raw_json().get(raw)) {
      detail = std::string(what) + " \"" + std::string(key) + "\" is not valid JSON";
      return Took::error;
    }
    objects_.emplace_back(key, raw);
    return Took::yes;
  }

  // The message's content: text, or msgtype and its object.
  CodecStatus finish(MessageContent& out, std::string& detail) const {
    if (!has_msgtype_ || msgtype_ == "text") {
      if (text_.empty()) {
        detail = "missing or empty \"text\"";
        return CodecStatus::missing_field;
      }
      out.msgtype = "text";
      out.body = std::string(text_);
      return CodecStatus::ok;
    }
    const std::string type(msgtype_);
    if (!valid_msgtype(msgtype_)) {
      detail =
          "\"msgtype\" must be 1 to 32 of a-z and '_', starting with a letter, and not a "
          "member of the request (touser, msgid, open_kfid, customservice)";
      return CodecStatus::malformed;
    }
    if (has_text_) {
      detail = "\"text\" goes with msgtype \"text\" only, not \"" + type + "\"";
      return CodecStatus::malformed;
    }
    const std::string_view* found = nullptr;
    for (const auto& [name, raw] : objects_) {
      if (name != msgtype_) continue;
      if (found != nullptr) {
        detail = "duplicate field \"" + type + "\"";
        return CodecStatus::malformed;
      }
      found = &raw;
    }
    if (found == nullptr) {
      if (std::find(others_.begin(), others_.end(), msgtype_) != others_.end()) {
        detail = "field \"" + type + "\" must be an object";
        return CodecStatus::malformed;
      }
      detail = "msgtype \"" + type + "\" without an object \"" + type + "\"";
      return CodecStatus::missing_field;
    }
    out.msgtype = type;
    out.body = std::string(*found);
    return CodecStatus::ok;
  }

 private:
  std::string_view text_, msgtype_;
  bool has_text_ = false, has_msgtype_ = false;
  std::vector<std::pair<std::string_view, std::string_view>> objects_;
  std::vector<std::string_view> others_;  // the keys of the other members
};

// The key and value of one member of an object being walked (`field` as the iteration gives
// it: a simdjson_result<od::field>); false, with `detail`, when the document breaks there.
template <typename Field>
bool read_member(Field& field, std::string_view& key, od::value& value, std::string& detail) {
  if (auto e = field.unescaped_key().get(key)) {
    detail = simdjson::error_message(e);
    return false;
  }
  if (auto e = field.value().get(value)) {
    detail = simdjson::error_message(e);
    return false;
  }
  return true;
}

}  // namespace

const char* to_string(CodecStatus s) {
  switch (s) {
    case CodecStatus::ok:
      return "ok";
    case CodecStatus::bad_signature:
      return "bad_signature";
    case CodecStatus::stale_timestamp:
      return "stale_timestamp";
    case CodecStatus::malformed:
      return "malformed";
    case CodecStatus::missing_field:
      return "missing_field";
  }
  return "unknown";
}

CodecStatus verify_generic(const HmacSha256& mac, std::string_view timestamp_header,
                           std::string_view signature_header, std::string_view body,
                           std::chrono::system_clock::time_point now, Duration max_skew) {
  if (timestamp_header.empty() || signature_header.empty() || timestamp_header.size() > 12) {
    return CodecStatus::bad_signature;
  }
  long long ts = 0;
  auto [end, ec] = std::from_chars(timestamp_header.data(),
                                   timestamp_header.data() + timestamp_header.size(), ts);
  if (ec != std::errc{} || end != timestamp_header.data() + timestamp_header.size() || ts < 0) {
    return CodecStatus::bad_signature;
  }
  // Compare in whole seconds: ts has at most 12 digits, so nothing can overflow.
  const long long now_s =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  const long long skew = now_s > ts ? now_s - ts : ts - now_s;
  if (skew > std::chrono::duration_cast<std::chrono::seconds>(max_skew).count()) {
    return CodecStatus::stale_timestamp;
  }
  // Checked on the stack: the prefix is public, only the digits are compared in constant time.
  if (!signature_header.starts_with(kGenericSignaturePrefix)) return CodecStatus::bad_signature;
  const HmacSha256::Hex expected = mac.hex({timestamp_header, ".", body});
  if (!constant_time_equal({expected.data(), expected.size()},
                           signature_header.substr(kGenericSignaturePrefix.size()))) {
    return CodecStatus::bad_signature;
  }
  return CodecStatus::ok;
}

CodecStatus parse_generic_event(std::string body, Event& out, std::string& detail) {
  // One parser per thread, reused: its buffers grow to the largest body seen.
  thread_local od::parser parser;
  const std::size_t len = body.size();
  body.reserve(len + simdjson::SIMDJSON_PADDING);
  od::document doc;
  if (auto e = parser.iterate(simdjson::padded_string_view(body.data(), len, body.capacity()))
                   .get(doc)) {
    detail = simdjson::error_message(e);
    return CodecStatus::malformed;
  }
  od::object obj;
  if (auto e = doc.get_object().get(obj)) {
    detail =
        e == simdjson::INCORRECT_TYPE ? "body is not a JSON object" : simdjson::error_message(e);
    return CodecStatus::malformed;
  }
  bool seen[std::size(kFields)] = {};
  for (auto field : obj) {
    std::string_view key;
    od::value value;
    if (!read_member(field, key, value, detail)) return CodecStatus::malformed;
    const KnownField* known = nullptr;
    std::size_t index = 0;
    for (; index < std::size(kFields); ++index) {
      if (kFields[index].name == key) {
        known = &kFields[index];
        break;
      }
    }
    if (known == nullptr) {
      if (auto e = validate(value, 2)) {
        detail = simdjson::error_message(e);
        return CodecStatus::malformed;
      }
      continue;
    }
    if (seen[index]) {
      detail = "duplicate field \"" + std::string(known->name) + "\"";
      return CodecStatus::malformed;
    }
    seen[index] = true;
    std::string_view s;
    if (value.get_string().get(s) != simdjson::SUCCESS) {
      detail = "field \"" + std::string(known->name) + "\" must be a string";
      return CodecStatus::malformed;
    }
    out.*(known->member) = std::string(s);  // copy: the view dies at the next parse
  }
  // At the end of the input, current_location() reports OUT_OF_BOUNDS.
  if (doc.current_location().error() != simdjson::OUT_OF_BOUNDS) {
    detail = "trailing content after the JSON document";
    return CodecStatus::malformed;
  }
  for (std::string Event::*required : {&Event::id, &Event::conversation}) {
    const std::string& v = out.*required;
    const char* name = required == &Event::id ? "id" : "conversation";
    if (v.empty()) {
      detail = std::string("missing or empty \"") + name + "\"";
      return CodecStatus::missing_field;
    }
    if (!valid_key(v, name, detail)) return CodecStatus::malformed;
  }
  out.raw = std::move(body);
  return CodecStatus::ok;
}

std::string outbound_type(std::string_view kind, const MessageContent& c) {
  std::string type(kind);
  if (c.msgtype != "text") type.append(":").append(c.msgtype);
  return type;
}

OutboundContent outbound_content(const Event& ev) {
  const auto colon = ev.type.find(':');
  if (colon == std::string::npos) return {"text", ev.text};
  return {std::string_view(ev.type).substr(colon + 1), ev.text};
}

CodecStatus parse_backend_replies(std::string_view body, std::vector<BackendReply>& out,
                                  std::string& detail) {
  out.clear();
  const auto first = body.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos || body[first] != '{') return CodecStatus::ok;
  // Most backends answer {} or a status: without the key there is nothing to copy or parse.
  // On Demand matches a key as written, so an escaped spelling of it is not the key either.
  if (body.find("\"replies\"") == std::string_view::npos) return CodecStatus::ok;
  thread_local od::parser parser;
  simdjson::padded_string padded(body);
  // Only a whole, valid JSON document can carry replies: anything else is a body that merely
  // starts with '{', and holds none.
  if (validate_object_document(parser, padded)) return CodecStatus::ok;
  od::document doc;
  od::object obj;
  if (parser.iterate(padded).get(doc) || doc.get_object().get(obj)) return CodecStatus::ok;
  od::value replies;
  const auto found = obj.find_field_unordered("replies").get(replies);
  if (found == simdjson::NO_SUCH_FIELD) return CodecStatus::ok;
  auto fail = [&](std::string why) {
    out.clear();
    detail = std::move(why);
    return CodecStatus::malformed;
  };
  od::array arr;
  if (found != simdjson::SUCCESS || replies.get_array().get(arr)) {
    return fail("\"replies\" is not an array");
  }
  for (auto element : arr) {
    od::object item;
    if (element.get_object().get(item)) return fail("a reply is not an object");
    BackendReply r;
    ContentFields content;
    for (auto field : item) {
      std::string_view key, value;
      od::value v;
      if (field.unescaped_key().get(key) || field.value().get(v)) {
        return fail("a reply is not valid JSON");
      }
      if (key == "to") {
        if (v.get_string().get(value)) return fail("reply \"to\" must be a string");
        r.to = std::string(value);
        continue;
      }
      if (content.take(key, v, "reply", detail) == ContentFields::Took::error) {
        return fail(std::move(detail));
      }
    }
    if (content.finish(r.content, detail) != CodecStatus::ok) {
      return fail("a reply: " + detail);
    }
    if (out.size() == kMaxReplies) {
      return fail("more than " + std::to_string(kMaxReplies) + " replies");
    }
    out.push_back(std::move(r));
  }
  return CodecStatus::ok;
}

// Opens `padded` for a walk over the members of its one object, once it is known to be one
// whole valid JSON object; else malformed, with `detail` saying why.
CodecStatus open_object(od::parser& parser, const simdjson::padded_string& padded,
                        od::document& doc, od::object& obj, std::string& detail) {
  if (auto e = validate_object_document(parser, padded)) {
    detail = e == simdjson::INCORRECT_TYPE     ? "body is not a JSON object"
             : e == simdjson::TRAILING_CONTENT ? "trailing content after the JSON document"
                                               : simdjson::error_message(e);
    return CodecStatus::malformed;
  }
  if (auto e = parser.iterate(padded).get(doc)) {
    detail = simdjson::error_message(e);
    return CodecStatus::malformed;
  }
  if (auto e = doc.get_object().get(obj)) {
    detail = simdjson::error_message(e);
    return CodecStatus::malformed;
  }
  return CodecStatus::ok;
}

// Copies the string `value` of member `key` into `target`; false, with `detail`, when it is
// not a string.
bool take_string(od::value value, std::string_view key, std::string& target, std::string& detail) {
  std::string_view s;
  if (value.get_string().get(s)) {
    detail = "field \"" + std::string(key) + "\" must be a string";
    return false;
  }
  target = std::string(s);
  return true;
}

// missing_field, with `detail`, for the first of `fields` (value, name) that is empty.
CodecStatus require_non_empty(
    std::initializer_list<std::pair<const std::string*, const char*>> fields, std::string& detail) {
  for (auto [v, name] : fields) {
    if (v->empty()) {
      detail = std::string("missing or empty \"") + name + "\"";
      return CodecStatus::missing_field;
    }
  }
  return CodecStatus::ok;
}

CodecStatus parse_outbound_message(std::string_view body, OutboundMessage& out,
                                   std::string& detail) {
  thread_local od::parser parser;
  simdjson::padded_string padded(body);
  od::document doc;
  od::object obj;
  if (auto st = open_object(parser, padded, doc, obj, detail); st != CodecStatus::ok) return st;
  ContentFields content;
  for (auto field : obj) {
    std::string_view key;
    od::value value;
    if (!read_member(field, key, value, detail)) return CodecStatus::malformed;
    std::string* target = key == "pool" ? &out.pool
                          : key == "to" ? &out.to
                          : key == "id" ? &out.id
                                        : nullptr;
    if (target == nullptr) {
      if (content.take(key, value, "field", detail) == ContentFields::Took::error) {
        return CodecStatus::malformed;
      }
      continue;
    }
    if (!take_string(value, key, *target, detail)) return CodecStatus::malformed;
  }
  if (auto st = require_non_empty({{&out.pool, "pool"}, {&out.to, "to"}}, detail);
      st != CodecStatus::ok) {
    return st;
  }
  if (auto st = content.finish(out.content, detail); st != CodecStatus::ok) return st;
  if (!valid_key(out.to, "to", detail) || !valid_key(out.id, "id", detail)) {
    return CodecStatus::malformed;
  }
  return CodecStatus::ok;
}

CodecStatus parse_kf_notification(std::string_view body, KfNotification& out, std::string& detail) {
  thread_local od::parser parser;
  simdjson::padded_string padded(body);
  od::document doc;
  od::object obj;
  if (auto st = open_object(parser, padded, doc, obj, detail); st != CodecStatus::ok) return st;
  for (auto field : obj) {
    std::string_view key;
    od::value value;
    if (!read_member(field, key, value, detail)) return CodecStatus::malformed;
    std::string* target = key == "token"      ? &out.token
                          : key == "openKfId" ? &out.open_kfid
                                              : nullptr;
    if (target == nullptr) continue;
    if (!take_string(value, key, *target, detail)) return CodecStatus::malformed;
  }
  if (auto st = require_non_empty({{&out.token, "token"}, {&out.open_kfid, "openKfId"}}, detail);
      st != CodecStatus::ok) {
    return st;
  }
  if (!valid_key(out.token, "token", detail) || !valid_key(out.open_kfid, "openKfId", detail)) {
    return CodecStatus::malformed;
  }
  if (out.open_kfid.size() > kMaxOpenKfIdLength) {
    detail = "\"openKfId\" longer than " + std::to_string(kMaxOpenKfIdLength) + " bytes";
    return CodecStatus::malformed;
  }
  return CodecStatus::ok;
}

}  // namespace botgate
