#include "transport/wechat_codec.hpp"

#include <fmt/format.h>
#include <simdjson.h>

#include <charconv>
#include <pugixml.hpp>

namespace botgate {
namespace {

// No DTD is ever honoured. pugixml expands no entities beyond the five predefined ones
// and numeric references, and never loads external ones, so an entity bomb or XXE
// cannot expand; but without parse_doctype it skips a DOCTYPE silently. We turn
// parse_doctype on only so that the DOCTYPE becomes a node and the document can be
// refused outright (WeChat never sends one). parse_fragment keeps text outside the root
// as nodes, so trailing or leading junk is seen and refused too. Comments, processing
// instructions and the <?xml?> declaration stay off and are skipped.
constexpr unsigned kParseOptions = pugi::parse_default | pugi::parse_doctype | pugi::parse_fragment;

// Top-level fields whose meaning must not be ambiguous: a second copy is refused
// instead of guessing which one WeChat meant.
constexpr std::string_view kKeyFields[] = {"ToUserName", "FromUserName", "CreateTime",
                                           "MsgType",    "MsgId",        "Event",
                                           "Content",    "Encrypt",      "AgentID"};

bool is_key_field(std::string_view name) {
  for (std::string_view k : kKeyFields) {
    if (k == name) return true;
  }
  return false;
}

using Fields = std::map<std::string, std::string, std::less<>>;

// Checks size and encoding, parses, and finds the <xml> root; then walks the tree
// iteratively (no recursion, whatever the nesting) to bound depth and node count.
CodecStatus load_root(std::string_view xml, pugi::xml_document& doc, pugi::xml_node& root,
                      std::string& detail) {
  if (xml.size() > kMaxWechatXmlBytes) {
    detail = "body larger than " + std::to_string(kMaxWechatXmlBytes) + " bytes";
    return CodecStatus::malformed;
  }
  if (xml.find('\0') != std::string_view::npos) {
    detail = "body contains a NUL byte";
    return CodecStatus::malformed;
  }
  if (!simdjson::validate_utf8(xml.data(), xml.size())) {
    detail = "body is not valid UTF-8";
    return CodecStatus::malformed;
  }
  const pugi::xml_parse_result r =
      doc.load_buffer(xml.data(), xml.size(), kParseOptions, pugi::encoding_utf8);
  if (!r) {
    detail =
        std::string("XML error: ") + r.description() + " at offset " + std::to_string(r.offset);
    return CodecStatus::malformed;
  }
  root = pugi::xml_node();
  for (pugi::xml_node n : doc.children()) {
    switch (n.type()) {
      case pugi::node_doctype:
        detail = "DOCTYPE is not allowed";
        return CodecStatus::malformed;
      case pugi::node_element:
        if (root) {
          detail = "more than one root element";
          return CodecStatus::malformed;
        }
        root = n;
        break;
      case pugi::node_pcdata:
      case pugi::node_cdata:
        detail = "content outside the root element";
        return CodecStatus::malformed;
      default:
        break;  // declaration, comments and PIs are not parsed into nodes
    }
  }
  if (!root) {
    detail = "no root element";
    return CodecStatus::malformed;
  }
  if (std::string_view(root.name()) != "xml") {
    detail = "root element is <" + std::string(root.name()) + ">, not <xml>";
    return CodecStatus::malformed;
  }
  std::size_t nodes = 0;
  std::size_t depth = 2;  // of n; the root is 1
  pugi::xml_node n = root.first_child();
  while (n) {
    if (++nodes > kMaxWechatXmlNodes) {
      detail = "more than " + std::to_string(kMaxWechatXmlNodes) + " XML nodes";
      return CodecStatus::malformed;
    }
    if (n.type() == pugi::node_element && depth > kMaxWechatXmlDepth) {
      detail = "XML nested deeper than " + std::to_string(kMaxWechatXmlDepth) + " levels";
      return CodecStatus::malformed;
    }
    if (n.first_child()) {
      n = n.first_child();
      ++depth;
      continue;
    }
    while (!n.next_sibling()) {
      n = n.parent();
      --depth;
      if (n == root) return CodecStatus::ok;
    }
    n = n.next_sibling();
  }
  return CodecStatus::ok;
}

// The text of an element made only of text and CDATA, concatenated: a value that held
// "]]>" arrives split over two CDATA sections. False if it has child elements.
bool simple_text(pugi::xml_node e, std::string& out) {
  out.clear();
  for (pugi::xml_node c : e.children()) {
    switch (c.type()) {
      case pugi::node_pcdata:
      case pugi::node_cdata:
        out += c.value();
        break;
      case pugi::node_element:
        return false;
      default:
        break;
    }
  }
  return true;
}

CodecStatus collect_fields(pugi::xml_node root, Fields& fields, std::string& detail) {
  std::string text;
  for (pugi::xml_node c : root.children()) {
    if (c.type() == pugi::node_pcdata || c.type() == pugi::node_cdata) {
      // Whitespace-only text is not kept by pugixml, so this is real stray text.
      detail = "text directly inside <xml>";
      return CodecStatus::malformed;
    }
    if (c.type() != pugi::node_element) continue;
    const std::string_view name = c.name();
    const bool key = is_key_field(name);
    if (!simple_text(c, text)) {
      if (key) {
        // fmt, not `"<" + std::string(name)`: GCC 12 -O3 misreports that (bug 105651).
        detail = fmt::format("<{}> must hold text, not elements", name);
        return CodecStatus::malformed;
      }
      continue;  // a structured field such as BatchJob: left in raw, not mapped
    }
    const bool inserted = fields.emplace(std::string(name), text).second;
    if (!inserted && key) {
      detail = "repeated <" + std::string(name) + ">";
      return CodecStatus::malformed;
    }
  }
  return CodecStatus::ok;
}

const std::string* find(const Fields& f, std::string_view name) {
  auto it = f.find(name);
  return it == f.end() ? nullptr : &it->second;
}

// Non-empty value of `name`, or nullptr.
const std::string* find_non_empty(const Fields& f, std::string_view name) {
  const std::string* v = find(f, name);
  return v != nullptr && !v->empty() ? v : nullptr;
}

// Keys travel in headers and logs: bounded and free of control characters.
bool check_key(std::string_view what, const std::string& v, std::string& detail) {
  if (v.size() > kMaxKeyLength) {
    detail = std::string(what) + " longer than " + std::to_string(kMaxKeyLength) + " bytes";
    return false;
  }
  for (unsigned char c : v) {
    if (c < 0x20 || c == 0x7f) {
      detail = std::string(what) + " contains a control character";
      return false;
    }
  }
  return true;
}

// Candidate fields for Event::text, in order of preference, per MsgType.
struct Summary {
  std::string_view msg_type;
  std::string_view first;
  std::string_view second;
};

constexpr Summary kSummaries[] = {
    {"image", "PicUrl", "MediaId"}, {"voice", "Recognition", "MediaId"}, {"video", "MediaId", ""},
    {"shortvideo", "MediaId", ""},  {"location", "Label", ""},           {"link", "Url", ""}};

std::string summary_text(const Fields& f, const std::string& msg_type, const std::string& event) {
  if (msg_type == "text") return *find(f, "Content");  // presence checked by the caller
  if (msg_type == "event") {
    if (const std::string* key = find_non_empty(f, "EventKey")) return *key;
    const std::string* lat = find_non_empty(f, "Latitude");
    const std::string* lon = find_non_empty(f, "Longitude");
    if (event == "LOCATION" && lat != nullptr && lon != nullptr) return *lat + "," + *lon;
    return {};
  }
  for (const Summary& s : kSummaries) {
    if (s.msg_type != msg_type) continue;
    if (const std::string* v = find_non_empty(f, s.first)) return *v;
    if (!s.second.empty()) {
      if (const std::string* v = find_non_empty(f, s.second)) return *v;
    }
    return {};
  }
  return {};
}

bool parse_create_time(const std::string& s, std::int64_t& out) {
  if (s.empty() || s.size() > 18) return false;  // 18 digits cannot overflow int64
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size();
}

// XML 1.0 cannot carry C0 controls other than tab, LF and CR, not even in CDATA.
bool xml_allowed(unsigned char c) {
  return c >= 0x20 || c == '\t' || c == '\n' || c == '\r';
}

void append_cdata(std::string& out, std::string_view s) {
  out += "<![CDATA[";
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s.compare(i, 3, "]]>") == 0) {
      // End this section after "]]" and start a new one with ">".
      out += "]]]]><![CDATA[>";
      i += 2;
      continue;
    }
    if (xml_allowed(static_cast<unsigned char>(s[i]))) out += s[i];
  }
  out += "]]>";
}

void append_escaped(std::string& out, std::string_view s) {
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      default:
        if (xml_allowed(static_cast<unsigned char>(c))) out += c;
    }
  }
}

void append_cdata_element(std::string& out, std::string_view name, std::string_view value) {
  out += '<';
  out += name;
  out += '>';
  append_cdata(out, value);
  out += "</";
  out += name;
  out += '>';
}

}  // namespace

CodecStatus parse_wechat_message(std::string xml, Event& out, WechatMessage& msg,
                                 std::string& detail) {
  pugi::xml_document doc;
  pugi::xml_node root;
  if (auto st = load_root(xml, doc, root, detail); st != CodecStatus::ok) return st;
  WechatMessage m;
  if (auto st = collect_fields(root, m.fields, detail); st != CodecStatus::ok) return st;

  for (std::string_view name : {"ToUserName", "FromUserName", "CreateTime", "MsgType"}) {
    if (find_non_empty(m.fields, name) == nullptr) {
      detail = "missing or empty <" + std::string(name) + ">";
      return CodecStatus::missing_field;
    }
  }
  m.to_user = *find(m.fields, "ToUserName");
  m.from_user = *find(m.fields, "FromUserName");
  m.msg_type = *find(m.fields, "MsgType");
  if (!check_key("<ToUserName>", m.to_user, detail) ||
      !check_key("<FromUserName>", m.from_user, detail) ||
      !check_key("<MsgType>", m.msg_type, detail)) {
    return CodecStatus::malformed;
  }
  const std::string& create_time = *find(m.fields, "CreateTime");
  if (!parse_create_time(create_time, m.create_time)) {
    detail = "<CreateTime> is not a decimal integer";
    return CodecStatus::malformed;
  }
  if (m.msg_type == "event") {
    const std::string* ev = find_non_empty(m.fields, "Event");
    if (ev == nullptr) {
      detail = "missing or empty <Event> in an event";
      return CodecStatus::missing_field;
    }
    m.event = *ev;
  }
  if (m.msg_type == "text" && find(m.fields, "Content") == nullptr) {
    detail = "missing <Content> in a text message";
    return CodecStatus::missing_field;
  }
  if (const std::string* id = find(m.fields, "MsgId")) m.msg_id = *id;
  if (const std::string* agent = find(m.fields, "AgentID")) m.agent_id = *agent;

  std::string id = !m.msg_id.empty() ? m.msg_id
                                     : m.from_user + "-" + create_time + "-" +
                                           (m.msg_type == "event" ? m.event : m.msg_type);
  if (!check_key("message id", id, detail)) return CodecStatus::malformed;

  out.id = std::move(id);
  out.conversation = m.from_user;
  out.sender = m.from_user;
  out.type = m.msg_type == "event" ? "event:" + m.event : m.msg_type;
  out.text = summary_text(m.fields, m.msg_type, m.event);
  out.raw = std::move(xml);
  msg = std::move(m);
  return CodecStatus::ok;
}

CodecStatus parse_wechat_envelope(std::string_view xml, WechatEnvelope& out, std::string& detail) {
  pugi::xml_document doc;
  pugi::xml_node root;
  if (auto st = load_root(xml, doc, root, detail); st != CodecStatus::ok) return st;
  Fields fields;
  if (auto st = collect_fields(root, fields, detail); st != CodecStatus::ok) return st;
  const std::string* encrypt = find_non_empty(fields, "Encrypt");
  if (encrypt == nullptr) {
    detail = "missing or empty <Encrypt>";
    return CodecStatus::missing_field;
  }
  WechatEnvelope e;
  e.encrypt = *encrypt;
  if (const std::string* to = find(fields, "ToUserName")) e.to_user = *to;
  if (const std::string* agent = find(fields, "AgentID")) e.agent_id = *agent;
  out = std::move(e);
  return CodecStatus::ok;
}

std::string build_wechat_text_reply(std::string_view to_user, std::string_view from_user,
                                    std::int64_t create_time, std::string_view content) {
  std::string out;
  out.reserve(160 + to_user.size() + from_user.size() + content.size());
  out += "<xml>";
  append_cdata_element(out, "ToUserName", to_user);
  append_cdata_element(out, "FromUserName", from_user);
  out += "<CreateTime>";
  out += std::to_string(create_time);
  out += "</CreateTime>";
  append_cdata_element(out, "MsgType", "text");
  append_cdata_element(out, "Content", content);
  out += "</xml>";
  return out;
}

std::string build_wechat_encrypted_reply(std::string_view encrypt, std::string_view msg_signature,
                                         std::string_view timestamp, std::string_view nonce) {
  std::string out;
  out.reserve(160 + encrypt.size() + msg_signature.size() + timestamp.size() + nonce.size());
  out += "<xml>";
  append_cdata_element(out, "Encrypt", encrypt);
  append_cdata_element(out, "MsgSignature", msg_signature);
  out += "<TimeStamp>";
  append_escaped(out, timestamp);
  out += "</TimeStamp>";
  append_cdata_element(out, "Nonce", nonce);
  out += "</xml>";
  return out;
}

}  // namespace botgate
