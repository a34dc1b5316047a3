#include "transport/wechat_codec.hpp"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <bitset>
#include <boost/beast/core/string.hpp>
#include <boost/container/small_vector.hpp>
#include <charconv>
#include <forward_list>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <pugixml.hpp>

#include "core/hash.hpp"

namespace botgate {
namespace {

// No DTD is ever honoured. pugixml expands no entities beyond the five predefined ones
// and numeric references, and never loads external ones, so an entity bomb or XXE
// cannot expand; but without parse_doctype it skips a DOCTYPE silently. We turn
// parse_doctype on only so that the DOCTYPE becomes a node and the document can be
// refused outright (WeChat never sends one). parse_fragment keeps text outside the root
// as nodes, so trailing or leading junk is seen and refused too. parse_declaration makes
// the <?xml?> declaration a node, so that its encoding can be checked. Comments and
// processing instructions stay off and are skipped.
constexpr unsigned kParseOptions =
    pugi::parse_default | pugi::parse_doctype | pugi::parse_fragment | pugi::parse_declaration;

// Top-level fields whose meaning must not be ambiguous: a second copy is refused
// instead of guessing which one WeChat meant.
constexpr std::string_view kKeyFields[] = {"ToUserName", "FromUserName", "CreateTime", "MsgType",
                                           "MsgId",      "MsgID",        "Event",      "Content",
                                           "Encrypt",    "AgentID",      "OpenKfId"};

constexpr std::size_t kNotKey = std::size(kKeyFields);

// Index of `name` in kKeyFields, or kNotKey.
std::size_t key_index(std::string_view name) {
  for (std::size_t i = 0; i < std::size(kKeyFields); ++i) {
    if (kKeyFields[i] == name) return i;
  }
  return kNotKey;
}

// Visits the nodes under `root` in document order, iteratively (no recursion, whatever the
// nesting): enter(node, depth) for each, depth 2 for the children of the root; leave(node)
// once a node and everything under it were visited. Stops and returns false as soon as
// enter() returns false.
template <typename Enter, typename Leave>
bool walk(pugi::xml_node root, Enter enter, Leave leave) {
  std::size_t depth = 2;
  pugi::xml_node n = root.first_child();
  while (n) {
    if (!enter(n, depth)) return false;
    if (n.first_child()) {
      n = n.first_child();
      ++depth;
      continue;
    }
    leave(n);
    while (!n.next_sibling()) {
      n = n.parent();
      --depth;
      if (n == root) return true;
      leave(n);
    }
    n = n.next_sibling();
  }
  return true;
}

// Can XML 1.0 carry the character `c` at all (its Char production)?
bool xml_char(std::uint32_t c) {
  return c == 0x9 || c == 0xA || c == 0xD || (c >= 0x20 && c <= 0xD7FF) ||
         (c >= 0xE000 && c <= 0xFFFD) || (c >= 0x10000 && c <= 0x10FFFF);
}

// The value of `c` as a digit of a character reference, or -1.
int reference_digit(char c, bool hex) {
  if (c >= '0' && c <= '9') return c - '0';
  if (!hex) return -1;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

constexpr std::string_view kPredefinedEntities[] = {"&lt;", "&gt;", "&amp;", "&quot;", "&apos;"};

// The length of the reference `s` starts with (at its '&'), or 0 when it starts none that XML
// defines without a DTD: one of the five predefined entities, or a character reference
// (`&#65;`, `&#x41;`) to a character XML can carry.
std::size_t reference_length(std::string_view s) {
  for (std::string_view entity : kPredefinedEntities) {
    if (s.starts_with(entity)) return entity.size();
  }
  if (!s.starts_with("&#")) return 0;
  const bool hex = s.size() > 2 && s[2] == 'x';
  const std::size_t first = hex ? 3 : 2;
  std::uint32_t value = 0;
  std::size_t i = first;
  for (; i < s.size() && s[i] != ';'; ++i) {
    const int digit = reference_digit(s[i], hex);
    if (digit < 0) return 0;
    value = value * (hex ? 16 : 10) + static_cast<std::uint32_t>(digit);
    if (value > 0x10FFFF) return 0;  // past Unicode; and no digit count can overflow
  }
  if (i == first || i == s.size() || !xml_char(value)) return 0;
  return i + 1;
}

// Markup whose content is not parsed: an '&' in it is just a character.
struct Literal {
  std::string_view open;
  std::string_view close;
};
constexpr Literal kLiterals[] = {{"<![CDATA[", "]]>"}, {"<!--", "-->"}, {"<?", "?>"}};

// Steps `i` over the reference at xml[i] ('&'); false, with `detail`, if it is none.
bool skip_reference(std::string_view xml, std::size_t& i, std::string& detail) {
  const std::size_t n = reference_length(xml.substr(i));
  if (n == 0) {
    detail = "'&' at offset " + std::to_string(i) +
             " starts no predefined entity or character reference";
    return false;
  }
  i += n;
  return true;
}

// Steps `i` over the tag that starts at xml[i] ('<'), checking the references in it. A '<' in
// an attribute value, which pugixml takes, is refused: it could open what looks like a comment
// and hide a reference from references_well_formed().
bool skip_tag(std::string_view xml, std::size_t& i, std::string& detail) {
  char quote = 0;  // in an attribute value: its quote
  for (++i; i < xml.size();) {
    const char c = xml[i];
    if (c == '&') {
      if (!skip_reference(xml, i, detail)) return false;
      continue;
    }
    ++i;
    if (quote != 0) {
      if (c == '<') {
        detail = "'<' in an attribute value at offset " + std::to_string(i - 1);
        return false;
      }
      if (c == quote) quote = 0;
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '>') {
      break;
    }
  }
  return true;
}

// Every '&' outside CDATA sections, comments and processing instructions must start a reference
// reference_length() accepts. pugixml takes an undeclared entity (`&e;`), a bare '&' and one
// without its ';' as text, but backends get the XML as sent, and a strict parser there fails
// on it. One pass over `xml`, which pugixml has parsed (so every literal and tag is closed);
// nothing is copied. Text, most of a message, is skipped with memchr: the next '&' and the next
// '<' are each looked for again only once passed.
bool references_well_formed(std::string_view xml, std::string& detail) {
  std::size_t i = 0;
  std::size_t amp = xml.find('&');
  std::size_t lt = xml.find('<');
  while (true) {
    if (amp < i) amp = xml.find('&', i);
    if (lt < i) lt = xml.find('<', i);
    i = std::min(amp, lt);
    if (i == std::string_view::npos) return true;
    if (xml[i] == '&') {
      if (!skip_reference(xml, i, detail)) return false;
      continue;
    }
    const std::string_view rest = xml.substr(i);
    const auto literal = std::find_if(std::begin(kLiterals), std::end(kLiterals),
                                      [&](const Literal& l) { return rest.starts_with(l.open); });
    if (literal == std::end(kLiterals)) {
      if (!skip_tag(xml, i, detail)) return false;
      continue;
    }
    const std::size_t close = xml.find(literal->close, i + literal->open.size());
    if (close == std::string_view::npos) {
      detail = "unterminated " + std::string(literal->open) + " at offset " + std::to_string(i);
      return false;
    }
    i = close + literal->close.size();
  }
}

// The body is read as UTF-8 whatever it declares, and reaches backends with its declaration:
// one naming GBK would have them decode it as GBK. Without an encoding it is UTF-8. The name is
// matched in any case, but `utf8` is refused: XML knows no such name, and strict parsers (Go's
// encoding/xml) refuse it. pugixml keeps a repeated attribute, so every `encoding` counts.
bool declares_utf8(pugi::xml_node declaration) {
  for (pugi::xml_attribute a : declaration.attributes()) {
    if (std::string_view(a.name()) == "encoding" && !boost::beast::iequals(a.value(), "UTF-8")) {
      return false;
    }
  }
  return true;
}

// Checks size and encoding, parses, and finds the <xml> root; then checks references and walks
// the tree to bound depth and node count.
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
      case pugi::node_declaration:
        if (!declares_utf8(n)) {
          detail = "the XML declaration names an encoding other than UTF-8";
          return CodecStatus::malformed;
        }
        break;
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
        break;  // comments and PIs are not parsed into nodes
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
  if (!references_well_formed(xml, detail)) return CodecStatus::malformed;
  std::size_t nodes = 0;
  const bool within = walk(
      root,
      [&](pugi::xml_node n, std::size_t depth) {
        if (++nodes > kMaxWechatXmlNodes) {
          detail = "more than " + std::to_string(kMaxWechatXmlNodes) + " XML nodes";
          return false;
        }
        if (n.type() == pugi::node_element && depth > kMaxWechatXmlDepth) {
          detail = "XML nested deeper than " + std::to_string(kMaxWechatXmlDepth) + " levels";
          return false;
        }
        return true;
      },
      [](pugi::xml_node) {});
  return within ? CodecStatus::ok : CodecStatus::malformed;
}

// A digest of the whole message: element names and text in document order (CDATA or not,
// however split). The same callback sent again digests alike; two events of one user in one
// second differ in something: EventKey, a WXKF Token, a template job's MsgID, a nested JobId.
// (Two identical events of one user in one second, such as two clicks on one menu key, are
// byte for byte a resend, and count as one.)
std::uint64_t message_digest(pugi::xml_node root) {
  std::uint64_t h = fnv1a64("");
  walk(
      root,
      [&](pugi::xml_node n, std::size_t) {
        if (n.type() == pugi::node_element) {
          h = fnv1a64(">", fnv1a64(n.name(), fnv1a64("<", h)));
        } else if (n.type() == pugi::node_pcdata || n.type() == pugi::node_cdata) {
          h = fnv1a64(n.value(), h);
        }
        return true;
      },
      [&](pugi::xml_node n) {
        if (n.type() == pugi::node_element) h = fnv1a64("</>", h);
      });
  return fmix64(h);
}

// The simple children of <xml> (those holding only text or CDATA), name -> text, in
// document order. Both views point into the pugixml document, except a text made of
// several pieces, which is joined into `joined_`; so a Fields must not outlive the
// document it was collected from. Nothing is allocated for a typical callback (6 to 12
// fields); lookups are linear scans.
class Fields {
 public:
  // Enforces the document rules: no text directly inside <xml>; a key field holds
  // text, never elements, and appears at most once. A structured non-key field (e.g.
  // WeCom's BatchJob) is skipped: it stays in the raw body, unmapped.
  CodecStatus collect(pugi::xml_node root, std::string& detail) {
    std::bitset<std::size(kKeyFields)> seen;
    for (pugi::xml_node c : root.children()) {
      if (c.type() == pugi::node_pcdata || c.type() == pugi::node_cdata) {
        // Whitespace-only text is not kept by pugixml, so this is real stray text.
        detail = "text directly inside <xml>";
        return CodecStatus::malformed;
      }
      if (c.type() != pugi::node_element) continue;
      const std::string_view name = c.name();
      const std::size_t key = key_index(name);
      std::string_view text;
      if (!simple_text(c, text)) {
        if (key != kNotKey) {
          // fmt, not `"<" + std::string(name)`: GCC 12 -O3 misreports that (bug 105651).
          detail = fmt::format("<{}> must hold text, not elements", name);
          return CodecStatus::malformed;
        }
        continue;
      }
      if (key != kNotKey) {
        if (seen[key]) {
          detail = "repeated <" + std::string(name) + ">";
          return CodecStatus::malformed;
        }
        seen[key] = true;
      }
      // A repeated non-key name is kept too; find() returns the first occurrence.
      fields_.push_back({name, text});
    }
    return CodecStatus::ok;
  }

  // The text of the first field called `name`; nullopt if there is none.
  std::optional<std::string_view> find(std::string_view name) const {
    for (const Field& f : fields_) {
      if (f.name == name) return f.text;
    }
    return std::nullopt;
  }

  // Non-empty text of `name`, or nullopt.
  std::optional<std::string_view> find_non_empty(std::string_view name) const {
    std::optional<std::string_view> v = find(name);
    return v && !v->empty() ? v : std::nullopt;
  }

 private:
  struct Field {
    std::string_view name;
    std::string_view text;
  };

  // The text of an element made only of text and CDATA, concatenated: a value that
  // held "]]>" arrives split over two CDATA sections. False if it has child elements.
  bool simple_text(pugi::xml_node e, std::string_view& out) {
    pugi::xml_node first;
    std::size_t pieces = 0;
    for (pugi::xml_node c : e.children()) {
      switch (c.type()) {
        case pugi::node_pcdata:
        case pugi::node_cdata:
          if (pieces++ == 0) first = c;
          break;
        case pugi::node_element:
          return false;
        default:
          break;
      }
    }
    if (pieces <= 1) {
      out = pieces == 0 ? std::string_view() : std::string_view(first.value());
      return true;
    }
    std::string& joined = joined_.emplace_front();
    for (pugi::xml_node c : e.children()) {
      if (c.type() == pugi::node_pcdata || c.type() == pugi::node_cdata) joined += c.value();
    }
    out = joined;
    return true;
  }

  boost::container::small_vector<Field, 16> fields_;
  std::forward_list<std::string> joined_;  // node-based: views into it stay valid
};

// The parts, concatenated with a single allocation.
std::string concat(std::initializer_list<std::string_view> parts) {
  std::size_t size = 0;
  for (std::string_view p : parts) size += p.size();
  std::string s;
  s.reserve(size);
  for (std::string_view p : parts) s += p;
  return s;
}

// Keys travel in headers and logs: bounded and free of control characters.
bool check_key(std::string_view what, std::string_view v, std::string& detail) {
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

std::string summary_text(const Fields& f, std::string_view msg_type, std::string_view event) {
  if (msg_type == "text") return std::string(*f.find("Content"));  // presence checked by the caller
  if (msg_type == "event") {
    if (auto key = f.find_non_empty("EventKey")) return std::string(*key);
    const auto lat = f.find_non_empty("Latitude");
    const auto lon = f.find_non_empty("Longitude");
    if (event == "LOCATION" && lat && lon) return concat({*lat, ",", *lon});
    return {};
  }
  for (const Summary& s : kSummaries) {
    if (s.msg_type != msg_type) continue;
    if (auto v = f.find_non_empty(s.first)) return std::string(*v);
    if (!s.second.empty()) {
      if (auto v = f.find_non_empty(s.second)) return std::string(*v);
    }
    return {};
  }
  return {};
}

bool parse_create_time(std::string_view s, std::int64_t& out) {
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
  Fields f;
  if (auto st = f.collect(root, detail); st != CodecStatus::ok) return st;

  // Everything is checked on views into the document; strings are made only for what
  // the outputs hold, once the message is known to be good.
  constexpr std::string_view kRequired[] = {"ToUserName", "CreateTime", "MsgType"};
  std::string_view required[std::size(kRequired)];
  for (std::size_t i = 0; i < std::size(kRequired); ++i) {
    const auto v = f.find_non_empty(kRequired[i]);
    if (!v) {
      detail = "missing or empty <" + std::string(kRequired[i]) + ">";
      return CodecStatus::missing_field;
    }
    required[i] = *v;
  }
  const auto [to_user, create_time, msg_type] = required;
  const bool is_event = msg_type == "event";
  // A user's message always names the user. Some events come from no user: the WXKF
  // notification (kf_msg_or_event) carries only the customer-service account, OpenKfId.
  const std::string_view from_user = f.find_non_empty("FromUserName").value_or("");
  if (from_user.empty() && !is_event) {
    detail = "missing or empty <FromUserName>";
    return CodecStatus::missing_field;
  }
  if (!check_key("<ToUserName>", to_user, detail) ||
      !check_key("<FromUserName>", from_user, detail) ||
      !check_key("<MsgType>", msg_type, detail)) {
    return CodecStatus::malformed;
  }
  std::int64_t create_time_value = 0;
  if (!parse_create_time(create_time, create_time_value)) {
    detail = "<CreateTime> is not a decimal integer";
    return CodecStatus::malformed;
  }
  std::string_view event;
  if (is_event) {
    const auto ev = f.find_non_empty("Event");
    if (!ev) {
      detail = "missing or empty <Event> in an event";
      return CodecStatus::missing_field;
    }
    event = *ev;
  }
  if (msg_type == "text" && !f.find("Content")) {
    detail = "missing <Content> in a text message";
    return CodecStatus::missing_field;
  }
  // Without a user, events queue (and are ordered) per customer-service account, else per
  // receiving account.
  std::string_view who = from_user;
  if (who.empty()) {
    const auto kf = f.find_non_empty("OpenKfId");
    if (kf && !check_key("<OpenKfId>", *kf, detail)) return CodecStatus::malformed;
    who = kf.value_or(to_user);
  }
  const std::string_view msg_id = f.find("MsgId").value_or("");
  std::string id;
  if (!msg_id.empty()) {
    id = msg_id;
  } else {
    // WeChat's advice for events is FromUserName + CreateTime; the digest keeps apart events
    // of one user (or of the system) in one second, and a resend has the same digest.
    char digest[16];
    fmt::format_to(digest, "{:016x}", message_digest(root));
    id = concat({who, "-", create_time, "-", is_event ? event : msg_type, "-",
                 std::string_view(digest, sizeof digest)});
  }
  if (!check_key("message id", id, detail)) return CodecStatus::malformed;

  WechatMessage m;
  m.to_user = to_user;
  m.from_user = from_user;
  m.create_time = create_time_value;
  m.msg_type = msg_type;
  m.event = event;
  m.msg_id = msg_id;
  m.agent_id = f.find("AgentID").value_or("");

  out.id = std::move(id);
  out.conversation = who;
  out.sender = from_user;
  out.type = is_event ? concat({"event:", event}) : std::string(msg_type);
  out.text = summary_text(f, msg_type, event);
  out.raw = std::move(xml);
  msg = std::move(m);
  return CodecStatus::ok;
}

CodecStatus parse_wechat_envelope(std::string_view xml, WechatEnvelope& out, std::string& detail) {
  pugi::xml_document doc;
  pugi::xml_node root;
  if (auto st = load_root(xml, doc, root, detail); st != CodecStatus::ok) return st;
  Fields f;
  if (auto st = f.collect(root, detail); st != CodecStatus::ok) return st;
  const auto encrypt = f.find_non_empty("Encrypt");
  if (!encrypt) {
    detail = "missing or empty <Encrypt>";
    return CodecStatus::missing_field;
  }
  WechatEnvelope e;
  e.encrypt = *encrypt;
  e.to_user = f.find("ToUserName").value_or("");
  e.agent_id = f.find("AgentID").value_or("");
  out = std::move(e);
  return CodecStatus::ok;
}

namespace {

// The head every message shares: <xml>, ToUserName, FromUserName (left out when empty: a
// notification from no user), CreateTime and MsgType. The caller adds the rest and </xml>.
void open_message(std::string& out, std::string_view to_user, std::string_view from_user,
                  std::int64_t create_time, std::string_view msg_type) {
  out += "<xml>";
  append_cdata_element(out, "ToUserName", to_user);
  if (!from_user.empty()) append_cdata_element(out, "FromUserName", from_user);
  out += "<CreateTime>";
  out += std::to_string(create_time);
  out += "</CreateTime>";
  append_cdata_element(out, "MsgType", msg_type);
}

}  // namespace

std::string build_wechat_text_reply(std::string_view to_user, std::string_view from_user,
                                    std::int64_t create_time, std::string_view content) {
  std::string out;
  out.reserve(160 + to_user.size() + from_user.size() + content.size());
  open_message(out, to_user, from_user, create_time, "text");
  append_cdata_element(out, "Content", content);
  out += "</xml>";
  return out;
}

std::string build_kf_notification_xml(std::string_view corp_id, std::int64_t create_time,
                                      std::string_view token, std::string_view open_kfid) {
  std::string out;
  out.reserve(200 + corp_id.size() + token.size() + open_kfid.size());
  open_message(out, corp_id, {}, create_time, "event");
  append_cdata_element(out, "Event", "kf_msg_or_event");
  append_cdata_element(out, "Token", token);
  append_cdata_element(out, "OpenKfId", open_kfid);
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
