#include "transport/generic_codec.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>

#include "tests/unit/in_child.hpp"
#include "transport/signature.hpp"

using namespace std::chrono_literals;
using botgate::CodecStatus;
using botgate::Event;
using botgate::parse_generic_event;
using botgate::verify_generic;

namespace {

constexpr long long kNow = 1700000000;  // injected "now", unix seconds
const std::chrono::system_clock::time_point kNowTp{std::chrono::seconds{kNow}};
const botgate::Duration kSkew = 300s;
const std::string kSecret = "s3cret-key";
const botgate::HmacSha256 kMac(kSecret);  // the source's key, as the gateway keeps it
const std::string kBody = R"({"id":"evt-1","conversation":"conv-1","text":"hello"})";

// Computed independently of generic_signature(): "v1=" + hex HMAC(secret, ts "." body).
std::string sign(const std::string& secret, const std::string& ts, const std::string& body) {
  return "v1=" + botgate::hmac_sha256_hex(secret, ts + "." + body);
}

CodecStatus verify_at(long long ts_seconds, const std::string& body = kBody) {
  const std::string ts = std::to_string(ts_seconds);
  return verify_generic(kMac, ts, sign(kSecret, ts, body), body, kNowTp, kSkew);
}

CodecStatus parse(std::string body, Event& ev) {
  std::string detail;
  return parse_generic_event(std::move(body), ev, detail);
}

CodecStatus parse(std::string body) {
  Event ev;
  return parse(std::move(body), ev);
}

int parse_in_child(const std::string& body) {
  return botgate::test::parse_in_child([&] {
    Event ev;
    std::string detail;
    return parse_generic_event(body, ev, detail);
  });
}

using botgate::test::describe;

}  // namespace

// ---------------------------------------------------------------------------
// verify_generic

TEST_CASE("verify_generic accepts a correctly signed fresh request", "[codec][signature]") {
  CHECK(verify_at(kNow) == CodecStatus::ok);
}

TEST_CASE("verify_generic rejects a signature made with another secret", "[codec][signature]") {
  const std::string ts = std::to_string(kNow);
  CHECK(verify_generic(kMac, ts, sign("other-secret", ts, kBody), kBody, kNowTp, kSkew) ==
        CodecStatus::bad_signature);
}

TEST_CASE("verify_generic rejects a tampered body", "[codec][signature]") {
  const std::string ts = std::to_string(kNow);
  const std::string sig = sign(kSecret, ts, kBody);
  std::string tampered = kBody;
  tampered[tampered.find("hello")] = 'j';
  CHECK(verify_generic(kMac, ts, sig, tampered, kNowTp, kSkew) == CodecStatus::bad_signature);
  CHECK(verify_generic(kMac, ts, sig, kBody + " ", kNowTp, kSkew) == CodecStatus::bad_signature);
}

TEST_CASE("verify_generic rejects a tampered timestamp", "[codec][signature]") {
  const std::string ts = std::to_string(kNow);
  const std::string sig = sign(kSecret, ts, kBody);
  // Still inside the window, so only the HMAC can catch it.
  CHECK(verify_generic(kMac, std::to_string(kNow + 1), sig, kBody, kNowTp, kSkew) ==
        CodecStatus::bad_signature);
  CHECK(verify_generic(kMac, std::to_string(kNow - 10), sig, kBody, kNowTp, kSkew) ==
        CodecStatus::bad_signature);
}

TEST_CASE("verify_generic rejects missing headers", "[codec][signature]") {
  const std::string ts = std::to_string(kNow);
  const std::string sig = sign(kSecret, ts, kBody);
  CHECK(verify_generic(kMac, "", sig, kBody, kNowTp, kSkew) == CodecStatus::bad_signature);
  CHECK(verify_generic(kMac, ts, "", kBody, kNowTp, kSkew) == CodecStatus::bad_signature);
  CHECK(verify_generic(kMac, "", "", kBody, kNowTp, kSkew) == CodecStatus::bad_signature);
}

TEST_CASE("verify_generic rejects a non-numeric timestamp", "[codec][signature]") {
  for (std::string ts : {"abc", "17000000x0", "1700000000 ", " 1700000000", "-1700000000",
                         "+1700000000", "1.7e9", "0x6553f100"}) {
    INFO("timestamp header: '" << ts << "'");
    CHECK(verify_generic(kMac, ts, sign(kSecret, ts, kBody), kBody, kNowTp, kSkew) ==
          CodecStatus::bad_signature);
  }
}

TEST_CASE("verify_generic rejects a signature without the v1= prefix", "[codec][signature]") {
  const std::string ts = std::to_string(kNow);
  const std::string hex = botgate::hmac_sha256_hex(kSecret, ts + "." + kBody);
  CHECK(verify_generic(kMac, ts, hex, kBody, kNowTp, kSkew) == CodecStatus::bad_signature);
  CHECK(verify_generic(kMac, ts, "v2=" + hex, kBody, kNowTp, kSkew) == CodecStatus::bad_signature);
  CHECK(verify_generic(kMac, ts, "V1=" + hex, kBody, kNowTp, kSkew) == CodecStatus::bad_signature);
}

TEST_CASE("verify_generic rejects a truncated or upper-cased signature", "[codec][signature]") {
  const std::string ts = std::to_string(kNow);
  const std::string sig = sign(kSecret, ts, kBody);
  CHECK(verify_generic(kMac, ts, sig.substr(0, sig.size() - 1), kBody, kNowTp, kSkew) ==
        CodecStatus::bad_signature);
  CHECK(verify_generic(kMac, ts, sig + "0", kBody, kNowTp, kSkew) == CodecStatus::bad_signature);
}

TEST_CASE("verify_generic enforces the +-300 s timestamp window", "[codec][signature]") {
  CHECK(verify_at(kNow - 299) == CodecStatus::ok);
  CHECK(verify_at(kNow + 299) == CodecStatus::ok);
  CHECK(verify_at(kNow - 300) == CodecStatus::ok);
  CHECK(verify_at(kNow + 300) == CodecStatus::ok);
  CHECK(verify_at(kNow - 301) == CodecStatus::stale_timestamp);
  CHECK(verify_at(kNow + 301) == CodecStatus::stale_timestamp);
  CHECK(verify_at(0) == CodecStatus::stale_timestamp);
}

TEST_CASE("verify_generic reports a stale timestamp far in the future", "[codec][signature]") {
  // 18446744074 s is 2^64 ns rounded up to a second: converting this timestamp to
  // system_clock nanoseconds overflows and, if it wraps, lands 0.29 s from `now`.
  // It is ~585 years ahead and must be refused as stale.
  const long long far_future = kNow + 18446744074LL;
  CHECK(verify_at(far_future) == CodecStatus::stale_timestamp);
  CHECK(verify_at(99999999999LL) == CodecStatus::stale_timestamp);
}

TEST_CASE("verify_generic checks the window against the injected clock", "[codec][signature]") {
  const std::string ts = std::to_string(kNow);
  const std::string sig = sign(kSecret, ts, kBody);
  const auto later = kNowTp + 301s;
  CHECK(verify_generic(kMac, ts, sig, kBody, later, kSkew) == CodecStatus::stale_timestamp);
  CHECK(verify_generic(kMac, ts, sig, kBody, later, 302s) == CodecStatus::ok);
}

// ---------------------------------------------------------------------------
// parse_generic_event

TEST_CASE("parse_generic_event fills every known field and keeps the raw body", "[codec][parse]") {
  const std::string body =
      R"({"id":"evt-42","conversation":"room-7","sender":"alice","type":"text","text":"hi there"})";
  Event ev;
  std::string detail;
  REQUIRE(parse_generic_event(body, ev, detail) == CodecStatus::ok);
  CHECK(ev.id == "evt-42");
  CHECK(ev.conversation == "room-7");
  CHECK(ev.sender == "alice");
  CHECK(ev.type == "text");
  CHECK(ev.text == "hi there");
  CHECK(ev.raw == body);
}

TEST_CASE("parse_generic_event accepts a body with only id and conversation", "[codec][parse]") {
  Event ev;
  REQUIRE(parse(R"({"conversation":"c","id":"a"})", ev) == CodecStatus::ok);
  CHECK(ev.id == "a");
  CHECK(ev.conversation == "c");
  CHECK(ev.sender.empty());
  CHECK(ev.text.empty());
}

TEST_CASE("parse_generic_event accepts whitespace around the document", "[codec][parse]") {
  const std::string body = " \n\t{ \"id\" : \"a\" ,\r\n \"conversation\" : \"c\" }\n ";
  Event ev;
  REQUIRE(parse(body, ev) == CodecStatus::ok);
  CHECK(ev.id == "a");
  CHECK(ev.conversation == "c");
  CHECK(ev.raw == body);
}

TEST_CASE("parse_generic_event reports a missing or empty id or conversation", "[codec][parse]") {
  CHECK(parse(R"({"conversation":"c"})") == CodecStatus::missing_field);
  CHECK(parse(R"({"id":"","conversation":"c"})") == CodecStatus::missing_field);
  CHECK(parse(R"({"id":"a"})") == CodecStatus::missing_field);
  CHECK(parse(R"({"id":"a","conversation":""})") == CodecStatus::missing_field);
  CHECK(parse(R"({})") == CodecStatus::missing_field);
  CHECK(parse(R"({"sender":"s","text":"t"})") == CodecStatus::missing_field);
}

TEST_CASE("parse_generic_event rejects known fields that are not strings", "[codec][parse]") {
  CHECK(parse(R"({"id":42,"conversation":"c"})") == CodecStatus::malformed);
  CHECK(parse(R"({"id":null,"conversation":"c"})") == CodecStatus::malformed);
  CHECK(parse(R"({"id":["a"],"conversation":"c"})") == CodecStatus::malformed);
  CHECK(parse(R"({"id":{"v":"a"},"conversation":"c"})") == CodecStatus::malformed);
  CHECK(parse(R"({"id":"a","conversation":true})") == CodecStatus::malformed);
  CHECK(parse(R"({"id":"a","conversation":"c","text":1})") == CodecStatus::malformed);
}

TEST_CASE("parse_generic_event rejects malformed JSON", "[codec][parse]") {
  for (std::string body :
       {"", " ", "{", "}", "{\"id\"}", "{\"id\":}", "{\"id\":\"a\",}",
        "{\"id\":\"a\" \"conversation\":\"c\"}", "{id:\"a\"}", "{'id':'a','conversation':'c'}",
        "{\"id\":\"a\",\"conversation\":\"c\"", "{\"id\":\"a\",\"conversation\":\"c\",\"n\":01}",
        "{\"id\":\"a\",\"conversation\":\"c\",\"n\":tru}",
        "{\"id\":\"a\",\"conversation\":\"c\",\"n\":nul}",
        "{\"id\":\"a\",\"conversation\":\"c\",\"n\":1.}",
        "{\"id\":\"a\",\"conversation\":\"c\",\"n\":-}"}) {
    INFO("body: " << body);
    CHECK(parse(body) == CodecStatus::malformed);
  }
}

TEST_CASE("parse_generic_event rejects every truncation of a valid body", "[codec][parse]") {
  const std::string body =
      R"({"id":"evt-1","conversation":"conv-1","sender":"u1","type":"text",)"
      R"("text":"say \"hi\" \u00e9\n","extra":{"a":[1,-2.5,3e2,true,false,null,{"b":"c"}],)"
      R"("e":{},"f":[]},"n":0})";
  REQUIRE(parse(body) == CodecStatus::ok);
  for (std::size_t len = 0; len < body.size(); ++len) {
    INFO("prefix length " << len << ": " << body.substr(0, len));
    CHECK(parse(body.substr(0, len)) == CodecStatus::malformed);
  }
}

TEST_CASE("parse_generic_event rejects trailing content after the object", "[codec][parse]") {
  const std::string valid = R"({"id":"a","conversation":"c"})";
  for (std::string tail : {"x", " x", "{}", "]", "}", ",", ",1", "\"s\"", "0", "null", "[1]",
                           R"({"id":"b","conversation":"c"})"}) {
    INFO("tail: " << tail);
    CHECK(parse(valid + tail) == CodecStatus::malformed);
  }
}

TEST_CASE("parse_generic_event rejects a top-level value that is not an object", "[codec][parse]") {
  for (std::string body :
       {R"([{"id":"a","conversation":"c"}])", R"("id")", "42", "-1.5", "true", "null", "[]"}) {
    INFO("body: " << body);
    CHECK(parse(body) == CodecStatus::malformed);
  }
}

TEST_CASE("parse_generic_event rejects invalid UTF-8 anywhere in the document", "[codec][parse]") {
  // Inside a known field's value.
  CHECK(parse(R"({"id":"a","conversation":"c","text":")"
              "\xff"
              R"("})") == CodecStatus::malformed);
  // Inside an unknown field's value, which botgate never reads.
  CHECK(parse(R"({"id":"a","conversation":"c","x":")"
              "\xff"
              R"("})") == CodecStatus::malformed);
  // Nested deep in an unknown field.
  CHECK(parse(R"({"id":"a","conversation":"c","x":{"y":["ok",")"
              "\xc3\x28"
              R"("]}})") == CodecStatus::malformed);
  // In an unknown key.
  CHECK(parse(R"({"id":"a","conversation":"c",")"
              "\xfe"
              R"(":1})") == CodecStatus::malformed);
  // Overlong encoding of '/'.
  CHECK(parse(R"({"id":"a","conversation":"c","x":")"
              "\xc0\xaf"
              R"("})") == CodecStatus::malformed);
  // Valid multi-byte UTF-8 is fine.
  Event ev;
  REQUIRE(parse(R"({"id":"a","conversation":"c","text":"h\u00e9 )"
                "\xe4\xbd\xa0\xe5\xa5\xbd"
                R"("})",
                ev) == CodecStatus::ok);
  CHECK(ev.text == "h\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd");
}

TEST_CASE("parse_generic_event rejects bad escapes", "[codec][parse]") {
  CHECK(parse(R"({"id":"a","conversation":"c","text":"\x"})") == CodecStatus::malformed);
  CHECK(parse(R"({"id":"a\x","conversation":"c"})") == CodecStatus::malformed);
  CHECK(parse(R"({"id":"a","conversation":"c","other":"\x"})") == CodecStatus::malformed);
  CHECK(parse(R"({"id":"a","conversation":"c","other":["\q"]})") == CodecStatus::malformed);
  CHECK(parse(R"({"id":"a","conversation":"c","other":"\u12"})") == CodecStatus::malformed);
  CHECK(parse(R"({"id":"a","conversation":"c","\x":1})") == CodecStatus::malformed);
}

TEST_CASE("parse_generic_event rejects raw control characters inside strings", "[codec][parse]") {
  CHECK(parse("{\"id\":\"a\nb\",\"conversation\":\"c\"}") == CodecStatus::malformed);
  CHECK(parse("{\"id\":\"a\",\"conversation\":\"c\",\"x\":\"\t\"}") == CodecStatus::malformed);
  std::string with_nul = R"({"id":"a","conversation":"c","x":"?"})";
  with_nul[with_nul.find('?')] = '\0';
  CHECK(parse(with_nul) == CodecStatus::malformed);
}

TEST_CASE("parse_generic_event rejects deep nesting without crashing", "[codec][parse]") {
  constexpr std::size_t depth = 100000;
  const std::string open(depth, '['), close(depth, ']');
  const std::string head = R"({"id":"a","conversation":"c","x":)";
  const int malformed = static_cast<int>(CodecStatus::malformed);
  // Unbalanced and balanced, inside an unknown field.
  CHECK(describe(parse_in_child(head + open + "}")) == describe(malformed));
  CHECK(describe(parse_in_child(head + open + close + "}")) == describe(malformed));
  // As the whole body.
  CHECK(describe(parse_in_child(open)) == describe(malformed));
  CHECK(describe(parse_in_child(open + close)) == describe(malformed));
  // Deep objects too.
  std::string objs;
  for (std::size_t i = 0; i < depth; ++i) objs += R"({"k":)";
  CHECK(describe(parse_in_child(head + objs + "1" + std::string(depth, '}') + "}")) ==
        describe(malformed));
  // 400000 levels still fit in a 1 MiB body (the default server.max_body).
  const std::size_t big = 400000;
  CHECK(describe(parse_in_child(head + std::string(big, '[') + std::string(big, ']') + "}")) ==
        describe(malformed));
}

TEST_CASE("parse_generic_event accepts modest nesting in unknown fields", "[codec][parse]") {
  const std::string head = R"({"id":"a","conversation":"c","x":)";
  CHECK(parse(head + std::string(100, '[') + std::string(100, ']') + "}") == CodecStatus::ok);
}

TEST_CASE("parse_generic_event parses a 5 MB text field", "[codec][parse]") {
  const std::string text(5 * 1024 * 1024, 'a');
  const std::string body = R"({"id":"big","conversation":"c","text":")" + text + R"("})";
  Event ev;
  REQUIRE(parse(body, ev) == CodecStatus::ok);
  CHECK(ev.text.size() == text.size());
  CHECK(ev.text == text);
  CHECK(ev.raw == body);
  // The reused per-thread parser still handles a small body afterwards.
  Event small;
  REQUIRE(parse(R"({"id":"s","conversation":"c"})", small) == CodecStatus::ok);
  CHECK(small.id == "s");
}

TEST_CASE("parse_generic_event accepts unknown fields of every JSON type", "[codec][parse]") {
  const std::string body =
      R"({"meta":{"n":[1,-2.5e3,0.1,{"d":null}],"t":true,"f":false,"s":"x","e":{},"a":[]},)"
      R"("id":"a","z":null,"arr":[[],[[1]],{"k":[{}]}],"num":-0,"exp":1E+2,)"
      R"("conversation":"c","b":true,"u":"\u00e9\ud83d\ude00"})";
  Event ev;
  REQUIRE(parse(body, ev) == CodecStatus::ok);
  CHECK(ev.id == "a");
  CHECK(ev.conversation == "c");
}

TEST_CASE("parse_generic_event accepts an unknown integer beyond 64 bits", "[codec][parse]") {
  // Valid JSON; botgate never reads the field, so it must not refuse the event.
  CHECK(parse(R"({"id":"a","conversation":"c","big":123456789012345678901234567890})") ==
        CodecStatus::ok);
}

TEST_CASE("parse_generic_event rejects a malformed value inside an unknown field",
          "[codec][parse]") {
  CHECK(parse(R"({"id":"a","conversation":"c","x":[1,2,}})") == CodecStatus::malformed);
  CHECK(parse(R"({"id":"a","conversation":"c","x":[1,2,]})") == CodecStatus::malformed);
  CHECK(parse(R"({"id":"a","conversation":"c","x":{"k":}})") == CodecStatus::malformed);
  CHECK(parse(R"({"id":"a","conversation":"c","x":{"k" 1}})") == CodecStatus::malformed);
  CHECK(parse(R"({"id":"a","conversation":"c","x":[1 2]})") == CodecStatus::malformed);
  CHECK(parse(R"({"x":[1,2,],"id":"a","conversation":"c"})") == CodecStatus::malformed);
  CHECK(parse(R"({"id":"a","conversation":"c","x":truex})") == CodecStatus::malformed);
}

TEST_CASE("parse_generic_event rejects duplicate known fields", "[codec][parse]") {
  CHECK(parse(R"({"id":"a","conversation":"c","id":"b"})") == CodecStatus::malformed);
  CHECK(parse(R"({"id":"a","id":"a","conversation":"c"})") == CodecStatus::malformed);
  CHECK(parse(R"({"id":"a","conversation":"c","conversation":"d"})") == CodecStatus::malformed);
  // An escaped spelling of the same key is the same key.
  CHECK(parse(R"({"id":"a","conversation":"c","\u0069d":"b"})") == CodecStatus::malformed);
}

TEST_CASE("parse_generic_event limits id and conversation to 256 bytes", "[codec][parse]") {
  const std::string k256(256, 'k'), k257(257, 'k');
  Event ev;
  CHECK(parse(R"({"id":")" + k256 + R"(","conversation":"c"})", ev) == CodecStatus::ok);
  CHECK(ev.id == k256);
  CHECK(parse(R"({"id":")" + k257 + R"(","conversation":"c"})") == CodecStatus::malformed);
  CHECK(parse(R"({"id":"a","conversation":")" + k256 + R"("})") == CodecStatus::ok);
  CHECK(parse(R"({"id":"a","conversation":")" + k257 + R"("})") == CodecStatus::malformed);
}

TEST_CASE("parse_generic_event refuses escaped control characters in id and conversation",
          "[codec][parse]") {
  // The id becomes the Idempotency-Key header: a CR LF in it would inject headers.
  CHECK(parse(R"({"id":"a\r\nX-Evil: 1","conversation":"c"})") == CodecStatus::malformed);
  CHECK(parse(R"({"id":"a\u0000","conversation":"c"})") == CodecStatus::malformed);
  CHECK(parse(R"({"id":"a","conversation":"c\u007f"})") == CodecStatus::malformed);
  CHECK(parse(R"({"id":"a","conversation":"c\td"})") == CodecStatus::malformed);
  // Other fields may hold them.
  CHECK(parse(R"({"id":"a","conversation":"c","text":"l1\r\nl2"})") == CodecStatus::ok);
}

TEST_CASE("parse_generic_event unescapes string values", "[codec][parse]") {
  Event ev;
  REQUIRE(parse(R"({"id":"a\"b","conversation":"c\\d\/e","text":"l1\nl2\tt\u00e9\ud83d\ude00"})",
                ev) == CodecStatus::ok);
  CHECK(ev.id == "a\"b");
  CHECK(ev.conversation == "c\\d/e");
  CHECK(ev.text == "l1\nl2\tt\xc3\xa9\xf0\x9f\x98\x80");
}

TEST_CASE("parse_generic_event explains a failure in its detail", "[codec][parse]") {
  Event ev;
  std::string detail;
  CHECK(parse_generic_event(R"({"id":"a"})", ev, detail) == CodecStatus::missing_field);
  CHECK_FALSE(detail.empty());
  detail.clear();
  CHECK(parse_generic_event(R"({"id":"a","conversation":"c"} x)", ev, detail) ==
        CodecStatus::malformed);
  CHECK_FALSE(detail.empty());
}

TEST_CASE("CodecStatus has a readable name for every value", "[codec]") {
  CHECK(std::string(botgate::to_string(CodecStatus::ok)) == "ok");
  CHECK(std::string(botgate::to_string(CodecStatus::bad_signature)) == "bad_signature");
  CHECK(std::string(botgate::to_string(CodecStatus::stale_timestamp)) == "stale_timestamp");
  CHECK(std::string(botgate::to_string(CodecStatus::malformed)) == "malformed");
  CHECK(std::string(botgate::to_string(CodecStatus::missing_field)) == "missing_field");
}

// ---------------------------------------------------------------------------
// parse_backend_replies

namespace {

using botgate::BackendReply;
using botgate::kMaxReplies;
using botgate::OutboundMessage;
using botgate::parse_backend_replies;
using botgate::parse_outbound_message;

// Starts from a non-empty list, so that a result of "none" is seen to clear it.
CodecStatus replies_of(const std::string& body, std::vector<BackendReply>& out,
                       std::string& detail) {
  out.assign(2, BackendReply{{"text", "stale"}, "stale"});
  detail.clear();
  return parse_backend_replies(body, out, detail);
}

std::string reply_items(std::size_t n) {
  std::string body = R"({"replies":[)";
  for (std::size_t i = 0; i < n; ++i) {
    if (i != 0) body += ",";
    body += R"({"text":"r)" + std::to_string(i) + R"("})";
  }
  return body + "]}";
}

}  // namespace

TEST_CASE("parse_backend_replies finds none in an empty or non-JSON body", "[replies]") {
  for (std::string body : {"", " ", "\r\n", "OK", "accepted\n", "<html><body>ok</body></html>",
                           "200 OK {\"replies\":[{\"text\":\"x\"}]}"}) {
    INFO("body: '" << body << "'");
    std::vector<BackendReply> out;
    std::string detail;
    CHECK(replies_of(body, out, detail) == CodecStatus::ok);
    CHECK(out.empty());
  }
}

TEST_CASE("parse_backend_replies finds none in JSON without replies", "[replies]") {
  for (std::string body :
       {"{}", R"({"status":"ok"})", R"({"reply":[{"text":"x"}],"Replies":[{"text":"y"}]})",
        R"([{"replies":[{"text":"x"}]}])", R"("replies")", "42", "null", R"({"replies":[]})",
        // Keys match as written: an escaped spelling is another key, a value is no key.
        R"({"repl\u0069es":[{"text":"x"}]})", R"({"note":"\"replies\""})"}) {
    INFO("body: " << body);
    std::vector<BackendReply> out;
    std::string detail;
    CHECK(replies_of(body, out, detail) == CodecStatus::ok);
    CHECK(out.empty());
  }
}

TEST_CASE("parse_backend_replies reads one reply", "[replies]") {
  std::vector<BackendReply> out;
  std::string detail;
  REQUIRE(replies_of(R"({"status":"ok","replies":[{"text":"hello back"}]})", out, detail) ==
          CodecStatus::ok);
  REQUIRE(out.size() == 1);
  CHECK(out[0].content.body == "hello back");
  CHECK(out[0].to.empty());
}

TEST_CASE("parse_backend_replies reads several replies in order, with optional to", "[replies]") {
  std::vector<BackendReply> out;
  std::string detail;
  REQUIRE(replies_of(R"({"replies":[{"text":"one"},{"to":"user-2","text":"two"},)"
                     R"({"text":"th\"ree\n\u4f60","to":"u3","extra":[1,{"x":null}]}]})",
                     out, detail) == CodecStatus::ok);
  REQUIRE(out.size() == 3);
  CHECK(out[0].content.body == "one");
  CHECK(out[0].to.empty());
  CHECK(out[1].content.body == "two");
  CHECK(out[1].to == "user-2");
  CHECK(out[2].content.body == "th\"ree\n\xe4\xbd\xa0");
  CHECK(out[2].to == "u3");
}

TEST_CASE("parse_backend_replies refuses replies that are not an array", "[replies]") {
  for (std::string body : {R"({"replies":"hi"})", R"({"replies":{"text":"hi"}})",
                           R"({"replies":null})", R"({"replies":5})", R"({"replies":true})"}) {
    INFO("body: " << body);
    std::vector<BackendReply> out;
    std::string detail;
    CHECK(replies_of(body, out, detail) == CodecStatus::malformed);
    CHECK(out.empty());
    CHECK_FALSE(detail.empty());
  }
}

TEST_CASE("parse_backend_replies refuses a reply that is not an object", "[replies]") {
  for (std::string body : {R"({"replies":["hi"]})", R"({"replies":[{"text":"a"},1]})",
                           R"({"replies":[[{"text":"a"}]]})", R"({"replies":[null]})"}) {
    INFO("body: " << body);
    std::vector<BackendReply> out;
    std::string detail;
    CHECK(replies_of(body, out, detail) == CodecStatus::malformed);
    CHECK(out.empty());
    CHECK_FALSE(detail.empty());
  }
}

TEST_CASE("parse_backend_replies refuses a reply without a non-empty string text", "[replies]") {
  for (std::string body :
       {R"({"replies":[{"to":"u1"}]})", R"({"replies":[{}]})", R"({"replies":[{"text":""}]})",
        R"({"replies":[{"text":"ok"},{"text":""}]})", R"({"replies":[{"text":5}]})",
        R"({"replies":[{"text":null}]})", R"({"replies":[{"text":["a"]}]})",
        R"({"replies":[{"text":{"content":"a"}}]})", R"({"replies":[{"text":"a","to":7}]})",
        R"({"replies":[{"text":"a","to":null}]})"}) {
    INFO("body: " << body);
    std::vector<BackendReply> out;
    std::string detail;
    CHECK(replies_of(body, out, detail) == CodecStatus::malformed);
    CHECK(out.empty());
    CHECK_FALSE(detail.empty());
  }
}

TEST_CASE("parse_backend_replies takes at most kMaxReplies replies", "[replies]") {
  REQUIRE(kMaxReplies == 16);
  std::vector<BackendReply> out;
  std::string detail;
  REQUIRE(replies_of(reply_items(kMaxReplies), out, detail) == CodecStatus::ok);
  REQUIRE(out.size() == kMaxReplies);
  CHECK(out.front().content.body == "r0");
  CHECK(out.back().content.body == "r15");
  CHECK(replies_of(reply_items(kMaxReplies + 1), out, detail) == CodecStatus::malformed);
  CHECK(out.empty());
  CHECK_FALSE(detail.empty());
  CHECK(replies_of(reply_items(1000), out, detail) == CodecStatus::malformed);
  CHECK(out.empty());
}

TEST_CASE("parse_backend_replies reads a reply of another msgtype with its object verbatim",
          "[replies]") {
  std::vector<BackendReply> out;
  std::string detail;
  REQUIRE(replies_of(R"({"replies":[{"msgtype":"image","image":{"media_id":"M1"}},)"
                     R"({"news":{"articles":[{"title":"\u4f60","url":"http://x/"}]},)"
                     R"("to":"u2","msgtype":"news","extra":{"a":1}},)"
                     R"({"msgtype":"text","text":"plain"}]})",
                     out, detail) == CodecStatus::ok);
  REQUIRE(out.size() == 3);
  CHECK(out[0].content.msgtype == "image");
  CHECK(out[0].content.body == R"({"media_id":"M1"})");
  CHECK(out[0].to.empty());
  // The object may come before msgtype; other objects are not it; escapes stay as sent.
  CHECK(out[1].content.msgtype == "news");
  CHECK(out[1].content.body == R"({"articles":[{"title":"\u4f60","url":"http://x/"}]})");
  CHECK(out[1].to == "u2");
  CHECK(out[2].content.msgtype == "text");
  CHECK(out[2].content.body == "plain");
}

TEST_CASE("parse_backend_replies refuses a msgtype that is bad or lacks its object", "[replies]") {
  for (
      std::string body : {
          R"({"replies":[{"msgtype":5,"image":{"media_id":"M"}}]})",
          R"({"replies":[{"msgtype":"Image","Image":{"media_id":"M"}}]})",
          R"({"replies":[{"msgtype":"im-age","im-age":{"media_id":"M"}}]})",
          R"({"replies":[{"msgtype":"","text":"a"}]})",
          R"({"replies":[{"msgtype":"1x","1x":{}}]})",
          R"({"replies":[{"msgtype":"abcdefghijklmnopqrstuvwxyzabcdefg","abcdefghijklmnopqrstuvwxyzabcdefg":{}}]})",
          R"({"replies":[{"msgtype":"image"}]})",
          R"({"replies":[{"msgtype":"image","video":{"media_id":"M"}}]})",
          R"({"replies":[{"msgtype":"image","image":"M"}]})",
          R"({"replies":[{"msgtype":"image","image":["M"]}]})",
          R"({"replies":[{"msgtype":"image","image":{"media_id":"M"},"text":"caption"}]})",
          // Given twice: which one would go out is anybody's guess.
          R"({"replies":[{"msgtype":"image","image":{"media_id":"A"},"image":{"media_id":"B"}}]})",
          R"({"replies":[{"msgtype":"image","msgtype":"image","image":{"media_id":"A"}}]})",
          R"({"replies":[{"text":"a","text":"b"}]})",
          // A member of the platform's request body around the object.
          R"({"replies":[{"msgtype":"msgid","msgid":{"x":1}}]})",
          R"({"replies":[{"msgtype":"touser","touser":{}}]})",
          R"({"replies":[{"msgtype":"open_kfid","open_kfid":{}}]})",
          R"({"replies":[{"msgtype":"customservice","customservice":{"kf_account":"a@b"}}]})",
      }) {
    INFO("body: " << body);
    std::vector<BackendReply> out;
    std::string detail;
    CHECK(replies_of(body, out, detail) == CodecStatus::malformed);
    CHECK(out.empty());
    CHECK_FALSE(detail.empty());
  }
}

TEST_CASE("an event's raw goes to backends as text/xml when it is XML, else application/json",
          "[replies]") {
  botgate::Event ev;
  for (const char* xml : {"<xml><MsgId>1</MsgId></xml>", " \r\n<?xml version=\"1.0\"?><xml/>",
                          "\xEF\xBB\xBF<xml/>"}) {
    ev.raw = xml;
    CHECK(botgate::raw_content_type(ev) == "text/xml");
  }
  for (const char* json : {R"({"id":"1"})", " {}", ""}) {
    ev.raw = json;
    CHECK(botgate::raw_content_type(ev) == "application/json");
  }
}

TEST_CASE("an outbound event's type carries its msgtype, and its text the content", "[replies]") {
  using botgate::MessageContent;
  using botgate::outbound_content;
  using botgate::outbound_type;
  CHECK(outbound_type("reply", MessageContent{"text", "hi"}) == "reply");
  CHECK(outbound_type("message", MessageContent{"image", "{}"}) == "message:image");
  botgate::Event ev;
  ev.type = "reply:msgmenu";
  ev.text = R"({"list":[]})";
  CHECK(outbound_content(ev).msgtype == "msgmenu");
  CHECK(outbound_content(ev).body == R"({"list":[]})");
  // No ':' is text: replies, admin messages, and a dingdong probe's "text" event.
  for (const char* type : {"reply", "message", "text"}) {
    ev.type = type;
    ev.text = "ding 1";
    CHECK(outbound_content(ev).msgtype == "text");
    CHECK(outbound_content(ev).body == "ding 1");
  }
}

// ---------------------------------------------------------------------------
// parse_outbound_message

namespace {

CodecStatus outbound(const std::string& body, OutboundMessage& m) {
  std::string detail;
  return parse_outbound_message(body, m, detail);
}

CodecStatus outbound(const std::string& body) {
  OutboundMessage m;
  return outbound(body, m);
}

}  // namespace

TEST_CASE("parse_outbound_message reads pool, to, text and id", "[replies]") {
  OutboundMessage m;
  REQUIRE(outbound(R"({"pool":"wx-accounts","to":"oUser-1","text":"hello\n\u4f60","id":"m-1"})",
                   m) == CodecStatus::ok);
  CHECK(m.pool == "wx-accounts");
  CHECK(m.to == "oUser-1");
  CHECK(m.content.body == "hello\n\xe4\xbd\xa0");
  CHECK(m.id == "m-1");
}

TEST_CASE("parse_outbound_message takes a message without id", "[replies]") {
  OutboundMessage m;
  REQUIRE(outbound(R"({"text":"hi","to":"u","pool":"p"})", m) == CodecStatus::ok);
  CHECK(m.pool == "p");
  CHECK(m.to == "u");
  CHECK(m.content.body == "hi");
  CHECK(m.id.empty());
}

TEST_CASE("parse_outbound_message ignores unknown fields", "[replies]") {
  OutboundMessage m;
  REQUIRE(outbound(R"({"meta":{"a":[1,null,true]},"pool":"p","to":"u","text":"t","n":-1.5e3})",
                   m) == CodecStatus::ok);
  CHECK(m.pool == "p");
  CHECK(m.to == "u");
  CHECK(m.content.body == "t");
}

TEST_CASE("parse_outbound_message needs pool, to and text", "[replies]") {
  for (std::string body :
       {R"({"to":"u","text":"t"})", R"({"pool":"p","text":"t"})", R"({"pool":"p","to":"u"})",
        R"({"pool":"","to":"u","text":"t"})", R"({"pool":"p","to":"","text":"t"})",
        R"({"pool":"p","to":"u","text":""})", R"({})", R"({"id":"m"})"}) {
    INFO("body: " << body);
    OutboundMessage m;
    std::string detail;
    CHECK(parse_outbound_message(body, m, detail) == CodecStatus::missing_field);
    CHECK_FALSE(detail.empty());
  }
}

TEST_CASE("parse_outbound_message refuses fields that are not strings", "[replies]") {
  for (std::string body :
       {R"({"pool":1,"to":"u","text":"t"})", R"({"pool":"p","to":null,"text":"t"})",
        R"({"pool":"p","to":"u","text":["t"]})", R"({"pool":"p","to":"u","text":"t","id":5})",
        R"({"pool":"p","to":{"id":"u"},"text":"t"})"}) {
    INFO("body: " << body);
    CHECK(outbound(body) == CodecStatus::malformed);
  }
}

TEST_CASE("parse_outbound_message refuses bodies that are not one JSON object", "[replies]") {
  const std::string valid = R"({"pool":"p","to":"u","text":"t"})";
  REQUIRE(outbound(valid) == CodecStatus::ok);
  for (std::string body : {valid + "x", valid + " {}", valid + valid, valid + ",", std::string(""),
                           std::string("not json"), "[" + valid + "]", std::string(R"("p")"),
                           valid.substr(0, valid.size() - 1),
                           std::string(R"({"pool":"p","to":"u","text":"t","x":[1,]})")}) {
    INFO("body: " << body);
    OutboundMessage m;
    std::string detail;
    CHECK(parse_outbound_message(body, m, detail) == CodecStatus::malformed);
    CHECK_FALSE(detail.empty());
  }
}

TEST_CASE("parse_outbound_message refuses control characters in to and id", "[replies]") {
  CHECK(outbound(R"({"pool":"p","to":"u\r\nX: 1","text":"t"})") == CodecStatus::malformed);
  CHECK(outbound(R"({"pool":"p","to":"u\u0000","text":"t"})") == CodecStatus::malformed);
  CHECK(outbound(R"({"pool":"p","to":"u\u007f","text":"t"})") == CodecStatus::malformed);
  CHECK(outbound(R"({"pool":"p","to":"u","text":"t","id":"m\n"})") == CodecStatus::malformed);
  CHECK(outbound(R"({"pool":"p","to":"u","text":"t","id":"m\t1"})") == CodecStatus::malformed);
  // The text may hold them.
  CHECK(outbound(R"({"pool":"p","to":"u","text":"l1\r\nl2\t"})") == CodecStatus::ok);
}

TEST_CASE("parse_outbound_message limits to and id to 256 bytes", "[replies]") {
  const std::string k256(256, 'k'), k257(257, 'k');
  OutboundMessage m;
  REQUIRE(outbound(R"({"pool":"p","to":")" + k256 + R"(","text":"t","id":")" + k256 + R"("})", m) ==
          CodecStatus::ok);
  CHECK(m.to == k256);
  CHECK(m.id == k256);
  CHECK(outbound(R"({"pool":"p","to":")" + k257 + R"(","text":"t"})") == CodecStatus::malformed);
  CHECK(outbound(R"({"pool":"p","to":"u","text":"t","id":")" + k257 + R"("})") ==
        CodecStatus::malformed);
  // The text has no such limit.
  CHECK(outbound(R"({"pool":"p","to":"u","text":")" + std::string(10000, 't') + R"("})") ==
        CodecStatus::ok);
}

TEST_CASE("a body that is not one whole valid JSON document carries no replies", "[replies]") {
  for (const char* body :
       {R"({"replies":[{"text":"a"}]} x)", R"({"replies":[{"text":"a"}],"x":tru})",
        R"({"replies":[{"text":"a"}]}{})", R"({"replies":[{"text":"a"})",
        R"({"replies":[{"text":"a"},]})"}) {
    INFO(body);
    std::vector<botgate::BackendReply> out{{{"text", "stale"}, ""}};
    std::string detail;
    CHECK(botgate::parse_backend_replies(body, out, detail) == botgate::CodecStatus::ok);
    CHECK(out.empty());
  }
}

TEST_CASE("parse_outbound_message takes a msgtype and its object instead of text", "[replies]") {
  OutboundMessage m;
  REQUIRE(outbound(R"({"pool":"p","to":"u","msgtype":"image","image":{"media_id":"M"}})", m) ==
          CodecStatus::ok);
  CHECK(m.content.msgtype == "image");
  CHECK(m.content.body == R"({"media_id":"M"})");
  std::string detail;
  // Its object is checked as JSON like the rest of the body.
  CHECK(parse_outbound_message(R"({"pool":"p","to":"u","msgtype":"image","image":{"n":01}})", m,
                               detail) == CodecStatus::malformed);
  CHECK(parse_outbound_message(R"({"pool":"p","to":"u","msgtype":"image"})", m, detail) ==
        CodecStatus::missing_field);
  // Given, but not as an object: a field of the wrong type, not a missing one.
  for (const char* body : {R"({"pool":"p","to":"u","msgtype":"image","image":"MID"})",
                           R"({"pool":"p","to":"u","image":["MID"],"msgtype":"image"})",
                           R"({"pool":"p","to":"u","msgtype":"image","image":null})"}) {
    INFO(body);
    detail.clear();
    CHECK(parse_outbound_message(body, m, detail) == CodecStatus::malformed);
    CHECK(detail == R"(field "image" must be an object)");
  }
  CHECK(parse_outbound_message(R"({"pool":"p","to":"u","msgtype":"a b","a b":{}})", m, detail) ==
        CodecStatus::malformed);
}

TEST_CASE("parse_kf_notification reads token and openKfId, as wxkf-manager posts them", "[wecom]") {
  using botgate::KfNotification;
  using botgate::parse_kf_notification;
  KfNotification n;
  std::string detail;
  REQUIRE(parse_kf_notification(R"({"token":"ENCApHxn","openKfId":"wkAJ2G","other":[1,{"a":2}]})",
                                n, detail) == CodecStatus::ok);
  CHECK(n.token == "ENCApHxn");
  CHECK(n.open_kfid == "wkAJ2G");

  auto status = [](const std::string& body) {
    KfNotification out;
    std::string why;
    auto st = parse_kf_notification(body, out, why);
    INFO(body << " -> " << why);
    CHECK_FALSE(why.empty());
    return st;
  };
  CHECK(status(R"({"token":"T"})") == CodecStatus::missing_field);
  CHECK(status(R"({"token":"","openKfId":"wk"})") == CodecStatus::missing_field);
  CHECK(status(R"({"token":"T","openKfId":1})") == CodecStatus::malformed);
  CHECK(status(R"({"token":"T","openKfId":"wk\u0001"})") == CodecStatus::malformed);
  CHECK(status(R"(["token","openKfId"])") == CodecStatus::malformed);
  CHECK(status(R"({"token":"T","openKfId":"wk"} {})") == CodecStatus::malformed);
  CHECK(status("") == CodecStatus::malformed);
  // openKfId heads the event id, which may hold kMaxKeyLength bytes: 44 go to the rest.
  const std::string longest(botgate::kMaxOpenKfIdLength, 'k');
  CHECK(parse_kf_notification(R"({"token":"T","openKfId":")" + longest + R"("})", n, detail) ==
        CodecStatus::ok);
  CHECK(status(R"({"token":"T","openKfId":")" + longest + R"(k"})") == CodecStatus::malformed);
  CHECK(botgate::kMaxOpenKfIdLength + 44 <= botgate::kMaxKeyLength);
}
