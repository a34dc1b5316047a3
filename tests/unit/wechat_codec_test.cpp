#include "transport/wechat_codec.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <pugixml.hpp>
#include <string>

#include "tests/unit/in_child.hpp"
#include "tests/unit/wechat_samples.hpp"

using botgate::CodecStatus;
using botgate::Event;
using botgate::WechatEnvelope;
using botgate::WechatMessage;

// Fixtures are the sample messages published in the WeChat Official Account docs
// (developers.weixin.qq.com/doc/offiaccount/en/Message_Management/
// Receiving_standard_messages.html and .../Receiving_event_pushes.html), the WeChat
// Scan docs (.../WeChat_Scan/Scan_QR_Code_Events_Push.html), and the WeCom
// WXBizMsgCrypt sample (corp id wx5823bf96d3bd56c7, as reproduced in the tests of
// wechatpy, EasyWeChat and others). Values are the published ones; only the layout
// (one element per line) is normalised.
namespace {

using botgate::test::wecom_sample::kWecomEncrypt;
using botgate::test::wecom_sample::kWecomMsgPlain;

const std::string kText = R"(<xml>
<ToUserName><![CDATA[toUser]]></ToUserName>
<FromUserName><![CDATA[fromUser]]></FromUserName>
<CreateTime>1348831860</CreateTime>
<MsgType><![CDATA[text]]></MsgType>
<Content><![CDATA[this is a test]]></Content>
<MsgId>1234567890123456</MsgId>
</xml>)";

const std::string kImage = R"(<xml>
<ToUserName><![CDATA[toUser]]></ToUserName>
<FromUserName><![CDATA[fromUser]]></FromUserName>
<CreateTime>1348831860</CreateTime>
<MsgType><![CDATA[image]]></MsgType>
<PicUrl><![CDATA[this is a url]]></PicUrl>
<MediaId><![CDATA[media_id]]></MediaId>
<MsgId>1234567890123456</MsgId>
</xml>)";

const std::string kVoice = R"(<xml>
<ToUserName><![CDATA[toUser]]></ToUserName>
<FromUserName><![CDATA[fromUser]]></FromUserName>
<CreateTime>1357290913</CreateTime>
<MsgType><![CDATA[voice]]></MsgType>
<MediaId><![CDATA[media_id]]></MediaId>
<Format><![CDATA[Format]]></Format>
<MsgId>1234567890123456</MsgId>
</xml>)";

// The same, with speech recognition switched on for the account.
const std::string kVoiceRecognized = R"(<xml>
<ToUserName><![CDATA[toUser]]></ToUserName>
<FromUserName><![CDATA[fromUser]]></FromUserName>
<CreateTime>1357290913</CreateTime>
<MsgType><![CDATA[voice]]></MsgType>
<MediaId><![CDATA[media_id]]></MediaId>
<Format><![CDATA[Format]]></Format>
<Recognition><![CDATA[腾讯微信团队]]></Recognition>
<MsgId>1234567890123456</MsgId>
</xml>)";

const std::string kVideo = R"(<xml>
<ToUserName><![CDATA[toUser]]></ToUserName>
<FromUserName><![CDATA[fromUser]]></FromUserName>
<CreateTime>1357290913</CreateTime>
<MsgType><![CDATA[video]]></MsgType>
<MediaId><![CDATA[media_id]]></MediaId>
<ThumbMediaId><![CDATA[thumb_media_id]]></ThumbMediaId>
<MsgId>1234567890123456</MsgId>
</xml>)";

const std::string kShortVideo = R"(<xml>
<ToUserName><![CDATA[toUser]]></ToUserName>
<FromUserName><![CDATA[fromUser]]></FromUserName>
<CreateTime>1357290913</CreateTime>
<MsgType><![CDATA[shortvideo]]></MsgType>
<MediaId><![CDATA[media_id]]></MediaId>
<ThumbMediaId><![CDATA[thumb_media_id]]></ThumbMediaId>
<MsgId>1234567890123456</MsgId>
</xml>)";

const std::string kLocation = R"(<xml>
<ToUserName><![CDATA[toUser]]></ToUserName>
<FromUserName><![CDATA[fromUser]]></FromUserName>
<CreateTime>1351776360</CreateTime>
<MsgType><![CDATA[location]]></MsgType>
<Location_X>23.134521</Location_X>
<Location_Y>113.358803</Location_Y>
<Scale>20</Scale>
<Label><![CDATA[位置信息]]></Label>
<MsgId>1234567890123456</MsgId>
</xml>)";

const std::string kLink = R"(<xml>
<ToUserName><![CDATA[toUser]]></ToUserName>
<FromUserName><![CDATA[fromUser]]></FromUserName>
<CreateTime>1351776360</CreateTime>
<MsgType><![CDATA[link]]></MsgType>
<Title><![CDATA[公众平台官网链接]]></Title>
<Description><![CDATA[公众平台官网链接]]></Description>
<Url><![CDATA[url]]></Url>
<MsgId>1234567890123456</MsgId>
</xml>)";

const std::string kSubscribe = R"(<xml>
<ToUserName><![CDATA[toUser]]></ToUserName>
<FromUserName><![CDATA[FromUser]]></FromUserName>
<CreateTime>123456789</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[subscribe]]></Event>
</xml>)";

const std::string kUnsubscribe = R"(<xml>
<ToUserName><![CDATA[toUser]]></ToUserName>
<FromUserName><![CDATA[FromUser]]></FromUserName>
<CreateTime>123456789</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[unsubscribe]]></Event>
</xml>)";

// Scanning a parameterised QR code: not yet following, then already following.
const std::string kSubscribeQr = R"(<xml>
<ToUserName><![CDATA[toUser]]></ToUserName>
<FromUserName><![CDATA[FromUser]]></FromUserName>
<CreateTime>123456789</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[subscribe]]></Event>
<EventKey><![CDATA[qrscene_123123]]></EventKey>
<Ticket><![CDATA[TICKET]]></Ticket>
</xml>)";

const std::string kScan = R"(<xml>
<ToUserName><![CDATA[toUser]]></ToUserName>
<FromUserName><![CDATA[FromUser]]></FromUserName>
<CreateTime>123456789</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[SCAN]]></Event>
<EventKey><![CDATA[SCENE_VALUE]]></EventKey>
<Ticket><![CDATA[TICKET]]></Ticket>
</xml>)";

const std::string kLocationEvent = R"(<xml>
<ToUserName><![CDATA[toUser]]></ToUserName>
<FromUserName><![CDATA[fromUser]]></FromUserName>
<CreateTime>123456789</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[LOCATION]]></Event>
<Latitude>23.137466</Latitude>
<Longitude>113.352425</Longitude>
<Precision>119.385040</Precision>
</xml>)";

const std::string kClick = R"(<xml>
<ToUserName><![CDATA[toUser]]></ToUserName>
<FromUserName><![CDATA[FromUser]]></FromUserName>
<CreateTime>123456789</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[CLICK]]></Event>
<EventKey><![CDATA[EVENTKEY]]></EventKey>
</xml>)";

const std::string kView = R"(<xml>
<ToUserName><![CDATA[toUser]]></ToUserName>
<FromUserName><![CDATA[FromUser]]></FromUserName>
<CreateTime>123456789</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[VIEW]]></Event>
<EventKey><![CDATA[www.qq.com]]></EventKey>
</xml>)";

// WeChat Scan "open a product homepage" push: an event botgate has no mapping for.
const std::string kUserScanProduct = R"(<xml>
<ToUserName><![CDATA[gh_4e47c9c9ecad]]></ToUserName>
<FromUserName><![CDATA[okkeXs1nI-xU4ql8-5BXkv1f0gDo]]></FromUserName>
<CreateTime>1438250110</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[user_scan_product]]></Event>
<KeyStandard><![CDATA[ean13]]></KeyStandard>
<KeyStr><![CDATA[6901481811083]]></KeyStr>
<Country><![CDATA[中国]]></Country>
<Province><![CDATA[广东]]></Province>
<City><![CDATA[揭阳]]></City>
<Sex>1</Sex>
<Scene>2</Scene>
<ExtInfo><![CDATA[123]]></ExtInfo>
</xml>)";

// WeCom batch_job_result: an unknown event with a nested element.
const std::string kWecomBatchJob = R"(<xml>
<ToUserName><![CDATA[wx28dbb14e3720FAKE]]></ToUserName>
<FromUserName><![CDATA[FromUser]]></FromUserName>
<CreateTime>1425284517</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[batch_job_result]]></Event>
<BatchJob>
<JobId><![CDATA[jobid_S0MrnndvRG5fadSlLwiBqiDDbM143UqTmKP3152FZk4]]></JobId>
<JobType><![CDATA[export_user]]></JobType>
<ErrCode>0</ErrCode>
<ErrMsg><![CDATA[ok]]></ErrMsg>
</BatchJob>
</xml>)";

const std::string kWecomEnvelope =
    "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>"
    "<Encrypt><![CDATA[" +
    kWecomEncrypt +
    "]]></Encrypt>"
    "<AgentID><![CDATA[218]]></AgentID></xml>";

struct Parsed {
  CodecStatus status = CodecStatus::ok;
  Event ev;
  WechatMessage msg;
  std::string detail;
};

Parsed parse(const std::string& xml) {
  Parsed p;
  p.status = botgate::parse_wechat_message(xml, p.ev, p.msg, p.detail);
  return p;
}

// Builds a message from the common header plus `tail` (the type-specific elements).
std::string message(const std::string& msg_type, const std::string& tail,
                    const std::string& from = "fromUser") {
  return "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[" + from +
         "]]></FromUserName><CreateTime>1348831860</CreateTime><MsgType><![CDATA[" + msg_type +
         "]]></MsgType>" + tail + "</xml>";
}

// An id made without MsgId: `prefix` (conversation-CreateTime-Event), "-", 16 hex digits.
bool fallback_id(const std::string& id, const std::string& prefix) {
  if (id.size() != prefix.size() + 17 || !id.starts_with(prefix + "-")) return false;
  return std::all_of(id.end() - 16, id.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f');
  });
}

std::string text_message(const std::string& content_element) {
  return message("text", content_element + "<MsgId>1234567890123456</MsgId>");
}

int parse_in_child(const std::string& xml) {
  return botgate::test::parse_in_child([&] {
    Event ev;
    WechatMessage msg;
    std::string detail;
    return botgate::parse_wechat_message(xml, ev, msg, detail);
  });
}

using botgate::test::describe;

// The fields every message maps the same way.
struct Mapped {
  std::string id;    // without MsgId: the prefix of the fallback id (see fallback_id)
  std::string from;  // FromUserName: the sender and the conversation
  std::string to;    // ToUserName: the account
  std::string type;  // Event::type: MsgType, or "event:" + Event
  std::string text;
  std::string msg_id;  // empty for events
};

// Checks that `xml` parsed, into `want` and with the document as Event::raw.
void check_mapped(const Parsed& p, const std::string& xml, const Mapped& want) {
  INFO(want.type << ": " << p.detail);
  REQUIRE(p.status == CodecStatus::ok);
  if (want.msg_id.empty()) {
    CHECK(fallback_id(p.ev.id, want.id));
  } else {
    CHECK(p.ev.id == want.id);
  }
  CHECK(p.ev.conversation == want.from);
  CHECK(p.ev.sender == want.from);
  CHECK(p.ev.type == want.type);
  CHECK(p.ev.text == want.text);
  CHECK(p.ev.raw == xml);
  CHECK(p.msg.from_user == want.from);
  CHECK(p.msg.to_user == want.to);
  const auto colon = want.type.find(':');
  CHECK(p.msg.msg_type == want.type.substr(0, colon));
  CHECK(p.msg.event == (colon == std::string::npos ? "" : want.type.substr(colon + 1)));
  CHECK(p.msg.msg_id == want.msg_id);
}

// Text of `name` under the root of a document that must parse.
std::string child_text(const pugi::xml_document& doc, const char* name) {
  return doc.child("xml").child(name).text().get();
}

}  // namespace

// ---------------------------------------------------------------------------
// Normal messages

TEST_CASE("wechat: the official text sample maps to an Event", "[wechat][codec]") {
  const Parsed p = parse(kText);
  check_mapped(
      p, kText,
      {"1234567890123456", "fromUser", "toUser", "text", "this is a test", "1234567890123456"});
  CHECK(p.msg.create_time == 1348831860);
  CHECK(p.msg.agent_id.empty());
}

TEST_CASE("wechat: the WeCom WXBizMsgCrypt plaintext keeps its AgentID", "[wechat][codec]") {
  const Parsed p = parse(kWecomMsgPlain);
  check_mapped(p, kWecomMsgPlain,
               {"4561255354251345929", "mycreate", "wx5823bf96d3bd56c7", "text", "hello",
                "4561255354251345929"});
  CHECK(p.msg.create_time == 1409659813);
  CHECK(p.msg.agent_id == "218");
}

TEST_CASE("wechat: every normal message type gets its type and summary text", "[wechat][codec]") {
  struct Case {
    const std::string* xml;
    const char* type;
    const char* text;
    std::int64_t create_time;
  };
  const Case cases[] = {
      {&kImage, "image", "this is a url", 1348831860},
      {&kVoice, "voice", "media_id", 1357290913},
      {&kVoiceRecognized, "voice", "腾讯微信团队", 1357290913},
      {&kVideo, "video", "media_id", 1357290913},
      {&kShortVideo, "shortvideo", "media_id", 1357290913},
      {&kLocation, "location", "位置信息", 1351776360},
      {&kLink, "link", "url", 1351776360},
  };
  for (const Case& c : cases) {
    const Parsed p = parse(*c.xml);
    check_mapped(p, *c.xml,
                 {"1234567890123456", "fromUser", "toUser", c.type, c.text, "1234567890123456"});
    CHECK(p.msg.create_time == c.create_time);
  }
}

TEST_CASE("wechat: type-specific fields reach backends through Event::raw", "[wechat][codec]") {
  // Only the documented field becomes Event::text; the rest is in the raw body, as sent.
  const Parsed loc = parse(kLocation);
  REQUIRE(loc.status == CodecStatus::ok);
  CHECK(loc.ev.text == "位置信息");
  CHECK(loc.ev.raw == kLocation);
  CHECK(loc.ev.raw.find("<Location_X>23.134521</Location_X>") != std::string::npos);
  CHECK(loc.ev.raw.find("<Location_Y>113.358803</Location_Y>") != std::string::npos);
  CHECK(loc.ev.raw.find("<Scale>20</Scale>") != std::string::npos);

  const Parsed link = parse(kLink);
  REQUIRE(link.status == CodecStatus::ok);
  CHECK(link.ev.text == "url");
  CHECK(link.ev.raw == kLink);
  CHECK(link.ev.raw.find("<Title><![CDATA[公众平台官网链接]]></Title>") != std::string::npos);
  CHECK(link.ev.raw.find("<Description><![CDATA[公众平台官网链接]]></Description>") !=
        std::string::npos);

  const Parsed video = parse(kVideo);
  REQUIRE(video.status == CodecStatus::ok);
  CHECK(video.ev.text == "media_id");
  CHECK(video.ev.raw == kVideo);
  CHECK(video.ev.raw.find("<ThumbMediaId><![CDATA[thumb_media_id]]></ThumbMediaId>") !=
        std::string::npos);
}

TEST_CASE("wechat: an image without PicUrl falls back to MediaId", "[wechat][codec]") {
  const Parsed p = parse(message("image", "<MediaId><![CDATA[m1]]></MediaId><MsgId>7</MsgId>"));
  REQUIRE(p.status == CodecStatus::ok);
  CHECK(p.ev.text == "m1");
}

TEST_CASE("wechat: an unknown message type is passed through, not refused", "[wechat][codec]") {
  const std::string xml =
      message("miniprogrampage", "<Title><![CDATA[t]]></Title><MsgId>9</MsgId>");
  const Parsed p = parse(xml);
  INFO(p.detail);
  REQUIRE(p.status == CodecStatus::ok);
  CHECK(p.ev.type == "miniprogrampage");
  CHECK(p.ev.text.empty());
  CHECK(p.ev.id == "9");
  CHECK(p.ev.raw == xml);
}

// ---------------------------------------------------------------------------
// Events

TEST_CASE("wechat: events are typed event:<Event> with EventKey as text", "[wechat][codec]") {
  struct Case {
    const std::string* xml;
    const char* type;
    const char* text;
    const char* from;
  };
  const Case cases[] = {
      {&kSubscribe, "event:subscribe", "", "FromUser"},
      {&kUnsubscribe, "event:unsubscribe", "", "FromUser"},
      {&kSubscribeQr, "event:subscribe", "qrscene_123123", "FromUser"},
      {&kScan, "event:SCAN", "SCENE_VALUE", "FromUser"},
      {&kLocationEvent, "event:LOCATION", "23.137466,113.352425", "fromUser"},
      {&kClick, "event:CLICK", "EVENTKEY", "FromUser"},
      {&kView, "event:VIEW", "www.qq.com", "FromUser"},
  };
  for (const Case& c : cases) {
    const Parsed p = parse(*c.xml);
    const std::string event = std::string(c.type).substr(6);
    check_mapped(
        p, *c.xml,
        {std::string(c.from) + "-123456789-" + event, c.from, "toUser", c.type, c.text, ""});
    CHECK(p.msg.create_time == 123456789);
  }
  // The fields not summarised stay in raw for the backend.
  const Parsed qr = parse(kSubscribeQr);
  CHECK(qr.ev.raw.find("<Ticket><![CDATA[TICKET]]></Ticket>") != std::string::npos);
  const Parsed loc = parse(kLocationEvent);
  CHECK(loc.ev.raw.find("<Precision>119.385040</Precision>") != std::string::npos);
}

TEST_CASE("wechat: unknown events pass through, their fields in raw", "[wechat][codec]") {
  const Parsed p = parse(kUserScanProduct);
  INFO(p.detail);
  REQUIRE(p.status == CodecStatus::ok);
  CHECK(p.ev.type == "event:user_scan_product");
  CHECK(p.ev.conversation == "okkeXs1nI-xU4ql8-5BXkv1f0gDo");
  CHECK(fallback_id(p.ev.id, "okkeXs1nI-xU4ql8-5BXkv1f0gDo-1438250110-user_scan_product"));
  CHECK(p.msg.to_user == "gh_4e47c9c9ecad");
  CHECK(p.ev.text.empty());  // no EventKey
  CHECK(p.ev.raw == kUserScanProduct);
  CHECK(p.ev.raw.find("<KeyStr><![CDATA[6901481811083]]></KeyStr>") != std::string::npos);
  CHECK(p.ev.raw.find("<Country><![CDATA[中国]]></Country>") != std::string::npos);
  CHECK(p.ev.raw.find("<City><![CDATA[揭阳]]></City>") != std::string::npos);
  CHECK(p.ev.raw.find("<Sex>1</Sex>") != std::string::npos);
}

TEST_CASE("wechat: nested elements are not mapped but kept in raw", "[wechat][codec]") {
  const Parsed p = parse(kWecomBatchJob);
  INFO(p.detail);
  REQUIRE(p.status == CodecStatus::ok);
  CHECK(p.ev.type == "event:batch_job_result");
  CHECK(p.ev.text.empty());
  CHECK(fallback_id(p.ev.id, "FromUser-1425284517-batch_job_result"));
  CHECK(p.ev.raw == kWecomBatchJob);
  CHECK(p.ev.raw.find("jobid_S0MrnndvRG5fadSlLwiBqiDDbM143UqTmKP3152FZk4") != std::string::npos);
}

TEST_CASE("wechat: a structured non-key field is skipped, not read as text", "[wechat][codec]") {
  // EventKey is not a key field: holding elements, it is ignored rather than refused,
  // and a later simple EventKey is the one used.
  const Parsed nested =
      parse(message("event", "<Event>CLICK</Event><EventKey><k>v</k></EventKey>"));
  INFO(nested.detail);
  REQUIRE(nested.status == CodecStatus::ok);
  CHECK(nested.ev.text.empty());
  const Parsed then_simple = parse(
      message("event", "<Event>CLICK</Event><EventKey><k>v</k></EventKey><EventKey>K2</EventKey>"));
  INFO(then_simple.detail);
  REQUIRE(then_simple.status == CodecStatus::ok);
  CHECK(then_simple.ev.text == "K2");
}

TEST_CASE("wechat: for a repeated non-key field the first occurrence wins", "[wechat][codec]") {
  // Unlike the key fields (Content, MsgId, ...), these may repeat without being refused.
  const Parsed image = parse(
      message("image",
              "<PicUrl>first</PicUrl><MediaId>m</MediaId><PicUrl>second</PicUrl><MsgId>1</MsgId>"));
  INFO(image.detail);
  REQUIRE(image.status == CodecStatus::ok);
  CHECK(image.ev.text == "first");
  const Parsed click =
      parse(message("event", "<Event>CLICK</Event><EventKey>A</EventKey><EventKey>B</EventKey>"));
  INFO(click.detail);
  REQUIRE(click.status == CodecStatus::ok);
  CHECK(click.ev.text == "A");
  // An empty first occurrence still wins: a voice with an empty Recognition falls
  // back to MediaId, not to a later Recognition.
  const Parsed voice = parse(message("voice",
                                     "<MediaId>m</MediaId><Recognition></Recognition>"
                                     "<Recognition>later</Recognition><MsgId>1</MsgId>"));
  INFO(voice.detail);
  REQUIRE(voice.status == CodecStatus::ok);
  CHECK(voice.ev.text == "m");
}

// ---------------------------------------------------------------------------
// Dedup ids

TEST_CASE("wechat: event ids are FromUserName-CreateTime-Event-digest", "[wechat][codec]") {
  CHECK(fallback_id(parse(kSubscribe).ev.id, "FromUser-123456789-subscribe"));
  CHECK(fallback_id(parse(kClick).ev.id, "FromUser-123456789-CLICK"));
  CHECK(fallback_id(parse(kLocationEvent).ev.id, "fromUser-123456789-LOCATION"));
}

TEST_CASE(
    "wechat: a retried event gets the same id, a different event in the same second "
    "does not",
    "[wechat][codec]") {
  // WeChat retries with the identical body.
  CHECK(parse(kScan).ev.id == parse(std::string(kScan)).ev.id);
  // A subscribe and a LOCATION report from one user in one second are two events.
  const std::string location_same_second = message(
      "event", "<Event><![CDATA[LOCATION]]></Event><Latitude>1</Latitude><Longitude>2</Longitude>",
      "FromUser");
  const std::string subscribe_same_second =
      message("event", "<Event><![CDATA[subscribe]]></Event>", "FromUser");
  const Parsed a = parse(location_same_second);
  const Parsed b = parse(subscribe_same_second);
  REQUIRE(a.status == CodecStatus::ok);
  REQUIRE(b.status == CodecStatus::ok);
  CHECK(a.ev.id != b.ev.id);
  // Different users at the same time never collide.
  CHECK(parse(message("event", "<Event>subscribe</Event>", "u1")).ev.id !=
        parse(message("event", "<Event>subscribe</Event>", "u2")).ev.id);
}

TEST_CASE("wechat: events of one user in one second differ by their fields", "[wechat][codec]") {
  // Two menu clicks, and two template-send reports (MsgID, capital D) in one second.
  const auto click = [](const std::string& key) {
    return message("event", "<Event><![CDATA[CLICK]]></Event><EventKey>" + key + "</EventKey>");
  };
  CHECK(parse(click("V1001")).ev.id != parse(click("V1002")).ev.id);
  const auto job = [](const std::string& msg_id) {
    return message("event", "<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>" + msg_id +
                                "</MsgID><Status><![CDATA[success]]></Status>");
  };
  const Parsed a = parse(job("200163836"));
  const Parsed b = parse(job("200163840"));
  REQUIRE(a.status == CodecStatus::ok);
  REQUIRE(b.status == CodecStatus::ok);
  CHECK(a.ev.id != b.ev.id);
  CHECK(parse(job("200163836")).ev.id == a.ev.id);  // a resend dedups
  // MsgID names the message like MsgId: twice is ambiguous.
  CHECK(parse(message("event", "<Event>x</Event><MsgID>1</MsgID><MsgID>2</MsgID>")).status ==
        CodecStatus::malformed);
}

TEST_CASE("wechat: an event's id does not depend on how its text is written", "[wechat][codec]") {
  const Parsed cdata = parse(
      message("event", "<Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[a&b]]></EventKey>"));
  const Parsed plain = parse(message("event", "<Event>CLICK</Event><EventKey>a&amp;b</EventKey>"));
  const Parsed split = parse(
      message("event", "<Event>CLI<![CDATA[CK]]></Event><EventKey>a<![CDATA[&b]]></EventKey>"));
  REQUIRE(cdata.status == CodecStatus::ok);
  CHECK(plain.ev.id == cdata.ev.id);
  CHECK(split.ev.id == cdata.ev.id);
}

// The notification WeCom's customer service (WXKF) sends, as documented (path/94670): no
// FromUserName; the messages themselves are pulled with kf/sync_msg and this Token.
std::string kf_notification(const std::string& token, const std::string& open_kfid) {
  return "<xml><ToUserName><![CDATA[ww12345678910]]></ToUserName>"
         "<CreateTime>1348831860</CreateTime><MsgType><![CDATA[event]]></MsgType>"
         "<Event><![CDATA[kf_msg_or_event]]></Event><Token><![CDATA[" +
         token + "]]></Token><OpenKfId><![CDATA[" + open_kfid + "]]></OpenKfId></xml>";
}

TEST_CASE("wechat: a WXKF notification has no user and queues per customer-service account",
          "[wechat][codec][wecom]") {
  const Parsed p = parse(kf_notification("ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR", "wkA"));
  INFO(p.detail);
  REQUIRE(p.status == CodecStatus::ok);
  CHECK(p.ev.type == "event:kf_msg_or_event");
  CHECK(p.ev.conversation == "wkA");
  CHECK(p.ev.sender.empty());
  CHECK(p.msg.from_user.empty());
  CHECK(fallback_id(p.ev.id, "wkA-1348831860-kf_msg_or_event"));
  CHECK(p.ev.raw.find("<Token><![CDATA[ENCApHx") != std::string::npos);
  // Two in one second, for one account or two, are two notifications; a resend is one.
  CHECK(parse(kf_notification("T1", "wkA")).ev.id != parse(kf_notification("T2", "wkA")).ev.id);
  CHECK(parse(kf_notification("T1", "wkA")).ev.id != parse(kf_notification("T1", "wkB")).ev.id);
  CHECK(parse(kf_notification("T1", "wkA")).ev.id == parse(kf_notification("T1", "wkA")).ev.id);
}

TEST_CASE("wechat: only events may come without FromUserName", "[wechat][codec]") {
  const std::string text =
      "<xml><ToUserName>gh</ToUserName><CreateTime>1</CreateTime>"
      "<MsgType>text</MsgType><Content>hi</Content><MsgId>1</MsgId></xml>";
  const Parsed p = parse(text);
  CHECK(p.status == CodecStatus::missing_field);
  CHECK(p.detail == "missing or empty <FromUserName>");
  // An event from nobody and no customer-service account queues per receiving account.
  const Parsed ev = parse(
      "<xml><ToUserName>ww1</ToUserName><CreateTime>1</CreateTime>"
      "<MsgType>event</MsgType><Event>change_external_tag</Event></xml>");
  REQUIRE(ev.status == CodecStatus::ok);
  CHECK(ev.ev.conversation == "ww1");
}

TEST_CASE("wechat: MsgId wins over the fallback, and an empty MsgId falls back",
          "[wechat][codec]") {
  CHECK(parse(kText).ev.id == "1234567890123456");
  const Parsed empty_id = parse(message("text", "<Content>x</Content><MsgId></MsgId>"));
  REQUIRE(empty_id.status == CodecStatus::ok);
  CHECK(fallback_id(empty_id.ev.id, "fromUser-1348831860-text"));
  // An event that does carry MsgId (as some do) is keyed by it.
  const Parsed ev_with_id = parse(message("event", "<Event>x</Event><MsgId>42</MsgId>"));
  REQUIRE(ev_with_id.status == CodecStatus::ok);
  CHECK(ev_with_id.ev.id == "42");
}

// ---------------------------------------------------------------------------
// Text nodes, CDATA and Unicode

TEST_CASE("wechat: plain text nodes and CDATA read the same", "[wechat][codec]") {
  const Parsed plain = parse(
      "<xml><ToUserName>toUser</ToUserName><FromUserName>fromUser</FromUserName>"
      "<CreateTime>1348831860</CreateTime><MsgType>text</MsgType>"
      "<Content>this is a test</Content><MsgId>1234567890123456</MsgId></xml>");
  INFO(plain.detail);
  REQUIRE(plain.status == CodecStatus::ok);
  const Parsed cdata = parse(kText);
  CHECK(plain.ev.text == cdata.ev.text);
  CHECK(plain.ev.id == cdata.ev.id);
  CHECK(plain.ev.conversation == cdata.ev.conversation);
  CHECK(plain.msg.to_user == cdata.msg.to_user);
}

TEST_CASE("wechat: escapes are decoded, CDATA is literal, split CDATA is joined",
          "[wechat][codec]") {
  CHECK(parse(text_message("<Content>a &amp; b &lt;c&gt; &#x4e2d;</Content>")).ev.text ==
        "a & b <c> 中");
  CHECK(parse(text_message("<Content><![CDATA[<b>&amp;</b>]]></Content>")).ev.text ==
        "<b>&amp;</b>");
  // What a sender (our own reply builder included) writes for "a]]>b".
  CHECK(parse(text_message("<Content><![CDATA[a]]]]><![CDATA[>b]]></Content>")).ev.text == "a]]>b");
  CHECK(parse(text_message("<Content>x<![CDATA[y]]>z</Content>")).ev.text == "xyz");
}

TEST_CASE("wechat: values split over several CDATA sections arrive whole", "[wechat][codec]") {
  // Every value of the document split, as a sender escaping "]]>" writes it: each output
  // gets the joined text, however many split values there are.
  const std::string split_from = "<FromUserName><![CDATA[u]]]]><![CDATA[>1]]></FromUserName>";
  const std::string xml =
      "<xml><ToUserName><![CDATA[gh]]]]><![CDATA[>a]]></ToUserName>" + split_from +
      "<CreateTime>1348831860</CreateTime><MsgType><![CDATA[te]]><![CDATA[xt]]></MsgType>"
      "<Content><![CDATA[a]]]]><![CDATA[>b]]]]><![CDATA[>c]]></Content>"
      "<MsgId>12<![CDATA[34]]></MsgId></xml>";
  check_mapped(parse(xml), xml, {"1234", "u]]>1", "gh]]>a", "text", "a]]>b]]>c", "1234"});
  // A summary field other than Content, and the fallback id built from split values.
  const Parsed ev =
      parse("<xml><ToUserName>t</ToUserName>" + split_from +
            "<CreateTime>1</CreateTime><MsgType>event</MsgType><Event><![CDATA[CL]]>ICK</Event>"
            "<EventKey><![CDATA[k]]]]><![CDATA[>ey]]></EventKey></xml>");
  INFO(ev.detail);
  REQUIRE(ev.status == CodecStatus::ok);
  CHECK(ev.ev.text == "k]]>ey");
  CHECK(ev.ev.type == "event:CLICK");
  CHECK(fallback_id(ev.ev.id, "u]]>1-1-CLICK"));
  CHECK(ev.msg.event == "CLICK");
}

TEST_CASE("wechat: UTF-8 Chinese text survives byte for byte", "[wechat][codec]") {
  const std::string hello = "你好，世界！🙂 换行\n第二行";
  const Parsed p = parse(text_message("<Content><![CDATA[" + hello + "]]></Content>"));
  INFO(p.detail);
  REQUIRE(p.status == CodecStatus::ok);
  CHECK(p.ev.text == hello);
  const Parsed from = parse(message("text", "<Content>x</Content><MsgId>1</MsgId>", "用户甲"));
  REQUIRE(from.status == CodecStatus::ok);
  CHECK(from.ev.conversation == "用户甲");
}

TEST_CASE("wechat: an empty Content is a valid text message", "[wechat][codec]") {
  const Parsed p = parse(text_message("<Content><![CDATA[]]></Content>"));
  REQUIRE(p.status == CodecStatus::ok);
  CHECK(p.ev.text.empty());
}

TEST_CASE("wechat: an XML declaration and comments are accepted", "[wechat][codec]") {
  const std::string xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<!-- c -->" + kText + "\n";
  const Parsed p = parse(xml);
  INFO(p.detail);
  REQUIRE(p.status == CodecStatus::ok);
  CHECK(p.ev.raw == xml);
  CHECK(p.ev.text == "this is a test");
}

TEST_CASE("wechat: a declaration naming UTF-8 in any case or no encoding is accepted",
          "[wechat][codec]") {
  const std::string declarations[] = {
      "<?xml version=\"1.0\"?>", "<?xml version='1.0' encoding='UTF-8'?>",
      "<?xml version=\"1.0\" encoding=\"Utf-8\" standalone=\"yes\"?>"};
  for (const std::string& decl : declarations) {
    const Parsed p = parse(decl + kText);
    INFO(decl << " -> " << p.detail);
    CHECK(p.status == CodecStatus::ok);
  }
}

TEST_CASE("wechat: a declared encoding other than UTF-8 is malformed", "[wechat][codec]") {
  // The body is read as UTF-8 whatever it declares, and goes to backends with its declaration:
  // a GBK one would make them read it as GBK. `utf8` is no name XML knows (Go's encoding/xml
  // refuses it), and WeChat sends no declaration at all.
  for (const std::string_view encoding : {"GBK", "gb2312", "ISO-8859-1", "UTF-16", "utf8", ""}) {
    const std::string decl = "<?xml version='1.0' encoding='" + std::string(encoding) + "'?>";
    const Parsed p = parse(decl + kText);
    INFO(decl << " -> " << p.detail);
    CHECK(p.status == CodecStatus::malformed);
    CHECK(p.detail.find("encoding") != std::string::npos);
    WechatEnvelope env;
    std::string detail;
    CHECK(botgate::parse_wechat_envelope(decl + "<xml><Encrypt>a</Encrypt></xml>", env, detail) ==
          CodecStatus::malformed);
  }
  // However it hides: a second encoding after a good one.
  const Parsed twice = parse("<?xml version='1.0' encoding='UTF-8' encoding='GBK'?>" + kText);
  CHECK(twice.status == CodecStatus::malformed);
}

// ---------------------------------------------------------------------------
// Bad input

TEST_CASE("wechat: missing required fields are missing_field", "[wechat][codec]") {
  const std::string head_to = "<ToUserName>t</ToUserName>";
  const std::string head_from = "<FromUserName>f</FromUserName>";
  const std::string head_time = "<CreateTime>1</CreateTime>";
  const std::string head_type = "<MsgType>text</MsgType>";
  const std::string body = "<Content>c</Content><MsgId>1</MsgId>";
  struct Case {
    std::string xml;
    const char* mentions;
  };
  const Case cases[] = {
      {"<xml>" + head_from + head_time + head_type + body + "</xml>", "ToUserName"},
      {"<xml>" + head_to + head_time + head_type + body + "</xml>", "FromUserName"},
      {"<xml>" + head_to + head_from + head_type + body + "</xml>", "CreateTime"},
      {"<xml>" + head_to + head_from + head_time + body + "</xml>", "MsgType"},
      {"<xml><ToUserName></ToUserName>" + head_from + head_time + head_type + body + "</xml>",
       "ToUserName"},
      {"<xml>" + head_to + "<FromUserName><![CDATA[]]></FromUserName>" + head_time + head_type +
           body + "</xml>",
       "FromUserName"},
      {"<xml>" + head_to + head_from + head_time + head_type + "<MsgId>1</MsgId></xml>", "Content"},
      {"<xml>" + head_to + head_from + head_time + "<MsgType>event</MsgType></xml>", "Event"},
      {"<xml>" + head_to + head_from + head_time + "<MsgType>event</MsgType><Event></Event></xml>",
       "Event"},
  };
  for (const Case& c : cases) {
    Parsed p = parse(c.xml);
    INFO(c.xml << " -> " << p.detail);
    CHECK(p.status == CodecStatus::missing_field);
    CHECK(p.detail.find(c.mentions) != std::string::npos);
  }
}

TEST_CASE("wechat: malformed documents are malformed, with a detail", "[wechat][codec]") {
  const std::string cases[] = {
      "",
      "   ",
      "not xml at all",
      "{\"MsgType\":\"text\"}",
      "<xml><ToUserName>t</ToUserName>",                        // unclosed
      "<xml><Content><![CDATA[x</Content></xml>",               // unterminated CDATA
      "<xml><Content>a</Contnet></xml>",                        // mismatched tag
      "<msg>" + kText.substr(5, kText.size() - 11) + "</msg>",  // wrong root
      kText + "<xml></xml>",                                    // two roots
      kText + "trailing junk",
      "junk" + kText,
      text_message("<Content>x</Content><Content>y</Content>"),  // repeated key field
      text_message("<Content>x</Content><Content></Content>"),   // even when empty
      message("text", "<Content>x</Content><MsgId>1</MsgId><MsgId>1</MsgId>"),  // or identical
      message("text", "<Content>x</Content><MsgId>1</MsgId>") + "<!-- unclosed",
      text_message("<Content><b>bold</b></Content>"),  // key field with elements
      "<xml>stray text" + kText.substr(5),             // text directly in <xml>
      "<xml><![CDATA[stray]]>" + kText.substr(5),      // CDATA directly in <xml>
  };
  for (const std::string& xml : cases) {
    Parsed p = parse(xml);
    INFO("input: " << xml << "\ndetail: " << p.detail);
    CHECK(p.status == CodecStatus::malformed);
    CHECK_FALSE(p.detail.empty());
  }
}

TEST_CASE("wechat: key values are checked", "[wechat][codec]") {
  const std::string cases[] = {
      message("text", "<Content>x</Content><MsgId>1</MsgId>", std::string(300, 'u')),
      message("text", "<Content>x</Content><MsgId>1</MsgId>", "a\tb"),  // inside CDATA
      message("text", "<Content>x</Content><MsgId>" + std::string(300, '1') + "</MsgId>"),
      message("text", "<Content>x</Content><MsgId>1&#10;2</MsgId>"),
      "<xml><ToUserName>t</ToUserName><FromUserName>f</FromUserName>"
      "<CreateTime>12a</CreateTime><MsgType>text</MsgType><Content>c</Content></xml>",
      "<xml><ToUserName>t</ToUserName><FromUserName>f</FromUserName>"
      "<CreateTime>-1</CreateTime><MsgType>text</MsgType><Content>c</Content></xml>",
      "<xml><ToUserName>t</ToUserName><FromUserName>f</FromUserName>"
      "<CreateTime>99999999999999999999999</CreateTime><MsgType>text</MsgType>"
      "<Content>c</Content></xml>",
  };
  for (const std::string& xml : cases) {
    Parsed p = parse(xml);
    INFO("input: " << xml.substr(0, 200) << "\ndetail: " << p.detail);
    CHECK(p.status == CodecStatus::malformed);
  }
}

TEST_CASE("wechat: bad bytes are refused before parsing", "[wechat][codec]") {
  std::string nul = kText;
  nul.insert(nul.find("this is"), 1, '\0');
  const Parsed a = parse(nul);
  CHECK(a.status == CodecStatus::malformed);
  CHECK(a.detail.find("NUL") != std::string::npos);

  const Parsed b = parse(text_message("<Content>\xC3\x28 \xFF</Content>"));
  CHECK(b.status == CodecStatus::malformed);
  CHECK(b.detail.find("UTF-8") != std::string::npos);
}

TEST_CASE("wechat: a failed parse leaves the outputs untouched", "[wechat][codec]") {
  Event ev;
  ev.id = "before";
  WechatMessage msg;
  msg.from_user = "before";
  std::string detail;
  CHECK(botgate::parse_wechat_message(text_message(""), ev, msg, detail) ==
        CodecStatus::missing_field);
  CHECK(ev.id == "before");
  CHECK(ev.raw.empty());
  CHECK(msg.from_user == "before");
}

TEST_CASE("wechat: a DOCTYPE is refused, so no entity can expand", "[wechat][codec]") {
  // The classic billion-laughs bomb, an external entity, and an innocent-looking DTD.
  std::string bomb = "<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY lol \"lol\">";
  bomb += "<!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">";
  for (int i = 2; i <= 9; ++i) {
    bomb += "<!ENTITY lol" + std::to_string(i) + " \"";
    for (int j = 0; j < 10; ++j) bomb += "&lol" + std::to_string(i - 1) + ";";
    bomb += "\">";
  }
  bomb += "]>" + text_message("<Content>&lol9;</Content>");
  const std::string xxe = "<!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>" +
                          text_message("<Content>&x;</Content>");
  const std::string plain_dtd = "<!DOCTYPE xml>" + kText;
  for (const std::string& xml : {bomb, xxe, plain_dtd}) {
    Parsed p = parse(xml);
    INFO(xml.substr(0, 120) << " -> " << p.detail);
    CHECK(p.status == CodecStatus::malformed);
    CHECK(p.detail.find("DOCTYPE") != std::string::npos);
  }
  // Without a DTD an entity is undeclared: refused, never resolved nor passed on as text.
  const Parsed lit = parse(text_message("<Content>&lol9;</Content>"));
  CHECK(lit.status == CodecStatus::malformed);
}

TEST_CASE("wechat: an '&' that starts no predefined entity or character reference is malformed",
          "[wechat][codec]") {
  // pugixml reads all of these as text; a strict parser at the backend would not.
  const std::string contents[] = {
      "&e;x",                     // an undeclared entity
      "AT&T",                     // a bare ampersand
      "a &amp b",                 // a predefined entity without its ';'
      "&",                        // at the very end of a text
      "&;",                       // no name
      "&AMP;",                    // the names are case-sensitive
      "&#;",                      // no digits
      "&#x;",                     // no hex digits
      "&#X41;",                   // the x is lower case
      "&#65",                     // no ';'
      "&#6a;",                    // not decimal
      "&#xZ;",                    // not hex
      "&#0;",                     // NUL is no XML character
      "&#x1F;",                   // nor is a C0 control other than tab, LF and CR
      "&#xD800;",                 // nor a surrogate
      "&#xFFFE;",                 // nor U+FFFE
      "&#x110000;",               // past Unicode
      "&#99999999999999999999;",  // past Unicode, however many digits
  };
  for (const std::string& content : contents) {
    const Parsed p = parse(text_message("<Content>" + content + "</Content>"));
    INFO(content << " -> " << p.detail);
    CHECK(p.status == CodecStatus::malformed);
    CHECK(p.detail.find("reference") != std::string::npos);
  }
  // In an attribute value too; and a '<' there, which pugixml takes, could hide one behind
  // what looks like a comment.
  for (const std::string& xml :
       {message("text", "<Content a=\"AT&T\">x</Content>"),
        message("text", "<Content a='&e;'>x</Content>"),
        text_message("<Content>x</Content><A a=\"<!--\"/><B>&e;</B><C c=\"-->\"/>")}) {
    const Parsed p = parse(xml);
    INFO(xml << " -> " << p.detail);
    CHECK(p.status == CodecStatus::malformed);
  }
}

TEST_CASE("wechat: references XML defines without a DTD are accepted anywhere", "[wechat][codec]") {
  const Parsed p = parse(text_message(
      "<Content a=\"&quot;&#65;\">&lt;&gt;&amp;&quot;&apos; &#65;&#x42;&#x4e2d;&#0000067; "
      "&#9;&#xA;&#13;&#xD7FF;&#xE000;&#xFFFD;&#x10000;&#x10FFFF;</Content>"));
  INFO(p.detail);
  REQUIRE(p.status == CodecStatus::ok);
  CHECK(p.ev.text.starts_with("<>&\"' AB中C \t\n"));
  // Where an '&' is not markup: CDATA sections, comments, processing instructions.
  const Parsed literal =
      parse("<?pi AT&T?><!-- AT&T &e; -->" +
            text_message("<Content><![CDATA[AT&T &e; a &amp b]]></Content><!-- & --><?pi & ?>"));
  INFO(literal.detail);
  REQUIRE(literal.status == CodecStatus::ok);
  CHECK(literal.ev.text == "AT&T &e; a &amp b");
}

TEST_CASE("wechat: oversized, deep and wide documents are refused without crashing",
          "[wechat][codec]") {
  const std::string huge =
      text_message("<Content>" + std::string(botgate::kMaxWechatXmlBytes, 'a') + "</Content>");
  std::string deep;
  for (int i = 0; i < 30000; ++i) deep += "<a>";
  for (int i = 0; i < 30000; ++i) deep += "</a>";
  std::string wide;
  for (int i = 0; i < 10000; ++i) wide += "<n/>";
  std::string just_too_deep;
  for (std::size_t i = 1; i < botgate::kMaxWechatXmlDepth; ++i) just_too_deep += "<d>";
  just_too_deep += "<leaf/>";
  for (std::size_t i = 1; i < botgate::kMaxWechatXmlDepth; ++i) just_too_deep += "</d>";
  const std::string cases[] = {
      huge,
      message("text", "<Content>x</Content>" + deep),
      deep,
      message("text", "<Content>x</Content>" + wide),
      message("text", "<Content>x</Content>" + just_too_deep),
  };
  for (const std::string& xml : cases) {
    const int r = parse_in_child(xml);
    INFO("size " << xml.size() << " -> " << describe(r));
    CHECK(r == static_cast<int>(CodecStatus::malformed));
  }
  // One level shallower is fine: the limit is where it says it is.
  std::string deepest_ok;
  for (std::size_t i = 2; i < botgate::kMaxWechatXmlDepth; ++i) deepest_ok += "<d>";
  deepest_ok += "<leaf/>";
  for (std::size_t i = 2; i < botgate::kMaxWechatXmlDepth; ++i) deepest_ok += "</d>";
  const Parsed ok = parse(message("text", "<Content>x</Content><MsgId>1</MsgId>" + deepest_ok));
  INFO(ok.detail);
  CHECK(ok.status == CodecStatus::ok);
}

TEST_CASE("wechat: truncations of a valid message never crash or pass", "[wechat][codec]") {
  // Every proper prefix of the sample is incomplete: none may parse as ok.
  for (std::size_t n = 0; n < kText.size(); ++n) {
    const Parsed p = parse(kText.substr(0, n));
    INFO("prefix of " << n << " bytes: " << p.detail);
    CHECK(p.status != CodecStatus::ok);
  }
}

// ---------------------------------------------------------------------------
// Safe-mode envelope

TEST_CASE("wechat: the WeCom sample envelope yields Encrypt, ToUserName and AgentID",
          "[wechat][codec]") {
  WechatEnvelope env;
  std::string detail;
  REQUIRE(botgate::parse_wechat_envelope(kWecomEnvelope, env, detail) == CodecStatus::ok);
  CHECK(env.encrypt == kWecomEncrypt);
  CHECK(env.to_user == "wx5823bf96d3bd56c7");
  CHECK(env.agent_id == "218");
}

TEST_CASE("wechat: an Official Account envelope has no AgentID", "[wechat][codec]") {
  const std::string xml =
      "<xml>\n  <ToUserName><![CDATA[gh_b629c48b653e]]></ToUserName>\n"
      "  <Encrypt><![CDATA[abc+/=]]></Encrypt>\n</xml>";
  WechatEnvelope env;
  std::string detail;
  REQUIRE(botgate::parse_wechat_envelope(xml, env, detail) == CodecStatus::ok);
  CHECK(env.encrypt == "abc+/=");
  CHECK(env.to_user == "gh_b629c48b653e");
  CHECK(env.agent_id.empty());
}

TEST_CASE("wechat: an envelope value split over CDATA sections is joined", "[wechat][codec]") {
  WechatEnvelope env;
  std::string detail;
  REQUIRE(botgate::parse_wechat_envelope(
              "<xml><ToUserName><![CDATA[g]]>h</ToUserName><Encrypt><![CDATA[ab]]>c<![CDATA[d]]>"
              "</Encrypt><AgentID>2<![CDATA[18]]></AgentID></xml>",
              env, detail) == CodecStatus::ok);
  CHECK(env.encrypt == "abcd");
  CHECK(env.to_user == "gh");
  CHECK(env.agent_id == "218");
}

TEST_CASE("wechat: bad envelopes are refused", "[wechat][codec]") {
  struct Case {
    std::string xml;
    CodecStatus status;
  };
  const Case cases[] = {
      {"<xml><ToUserName>t</ToUserName></xml>", CodecStatus::missing_field},
      {"<xml><ToUserName>t</ToUserName><Encrypt></Encrypt></xml>", CodecStatus::missing_field},
      {"<xml><Encrypt>a</Encrypt><Encrypt>b</Encrypt></xml>", CodecStatus::malformed},
      {"<xml><Encrypt>a</Encrypt>", CodecStatus::malformed},
      {"<!DOCTYPE xml><xml><Encrypt>a</Encrypt></xml>", CodecStatus::malformed},
      {"<foo><Encrypt>a</Encrypt></foo>", CodecStatus::malformed},
      {"", CodecStatus::malformed},
  };
  for (const Case& c : cases) {
    WechatEnvelope env;
    env.encrypt = "before";
    std::string detail;
    const CodecStatus st = botgate::parse_wechat_envelope(c.xml, env, detail);
    INFO(c.xml << " -> " << detail);
    CHECK(st == c.status);
    CHECK_FALSE(detail.empty());
    CHECK(env.encrypt == "before");
  }
}

// ---------------------------------------------------------------------------
// Replies

TEST_CASE("wechat: the text reply matches the documented layout", "[wechat][codec]") {
  // The passive-reply sample from the Official Account docs, without its whitespace.
  CHECK(botgate::build_wechat_text_reply("toUser", "fromUser", 12345678, "你好") ==
        "<xml><ToUserName><![CDATA[toUser]]></ToUserName>"
        "<FromUserName><![CDATA[fromUser]]></FromUserName>"
        "<CreateTime>12345678</CreateTime>"
        "<MsgType><![CDATA[text]]></MsgType>"
        "<Content><![CDATA[你好]]></Content></xml>");
}

TEST_CASE("wechat: a reply to a parsed message parses back with the roles swapped",
          "[wechat][codec]") {
  const Parsed in = parse(kText);
  REQUIRE(in.status == CodecStatus::ok);
  const std::string reply =
      botgate::build_wechat_text_reply(in.msg.from_user, in.msg.to_user, 1700000000, "dong");
  pugi::xml_document doc;
  REQUIRE(doc.load_string(reply.c_str()));
  CHECK(child_text(doc, "ToUserName") == "fromUser");
  CHECK(child_text(doc, "FromUserName") == "toUser");
  CHECK(child_text(doc, "CreateTime") == "1700000000");
  CHECK(child_text(doc, "MsgType") == "text");
  CHECK(child_text(doc, "Content") == "dong");
  // And our own parser reads it as a text message from the account.
  const Parsed back = parse(reply);
  INFO(back.detail);
  REQUIRE(back.status == CodecStatus::ok);
  CHECK(back.ev.text == "dong");
  CHECK(back.ev.sender == "toUser");
}

TEST_CASE("wechat: the CDATA end marker in reply content is split across CDATA sections",
          "[wechat][codec]") {
  const std::string tricky[] = {
      "]]>",         "a]]>b", "]]>]]>",
      "]]]>>",       "x]]",   "<![CDATA[ inner ]]> &amp; </Content></xml>",
      "中文]]>内容",
  };
  for (const std::string& content : tricky) {
    const std::string reply = botgate::build_wechat_text_reply("u", "a", 1, content);
    INFO(content << " -> " << reply);
    // One terminator per section (four), plus one per "]]>" in the content.
    std::size_t closers = 0;
    for (std::size_t p = reply.find("]]>"); p != std::string::npos; p = reply.find("]]>", p + 1)) {
      ++closers;
    }
    std::size_t in_content = 0;
    for (std::size_t p = content.find("]]>"); p != std::string::npos;
         p = content.find("]]>", p + 1)) {
      ++in_content;
    }
    CHECK(closers == 4 + in_content);
    pugi::xml_document doc;
    const pugi::xml_parse_result r = doc.load_string(reply.c_str());
    INFO(r.description());
    REQUIRE(r);
    std::string joined;
    for (pugi::xml_node c : doc.child("xml").child("Content").children()) joined += c.value();
    CHECK(joined == content);
    CHECK(parse(reply).ev.text == content);
  }
  CHECK(botgate::build_wechat_text_reply("u", "a", 1, "a]]>b")
            .find("<Content><![CDATA[a]]]]><![CDATA[>b]]></Content>") != std::string::npos);
}

TEST_CASE("wechat: reply ids are CDATA-safe too, and XML-illegal controls are dropped",
          "[wechat][codec]") {
  const std::string reply =
      botgate::build_wechat_text_reply("open]]>id", "gh_1", 1, std::string("a\x01\x1f\tb\n", 6));
  pugi::xml_document doc;
  REQUIRE(doc.load_string(reply.c_str()));
  std::string to;
  for (pugi::xml_node c : doc.child("xml").child("ToUserName").children()) to += c.value();
  CHECK(to == "open]]>id");
  CHECK(child_text(doc, "Content") == "a\tb\n");
}

TEST_CASE("wechat: the encrypted reply envelope carries the given values", "[wechat][codec]") {
  const std::string reply = botgate::build_wechat_encrypted_reply(
      kWecomEncrypt, "477715d11cdb4164915debcba66cb864d751f3e6", "1409659813", "1372623149");
  CHECK(reply ==
        "<xml><Encrypt><![CDATA[" + kWecomEncrypt +
            "]]></Encrypt><MsgSignature><![CDATA[477715d11cdb4164915debcba66cb864d751f3e6]]>"
            "</MsgSignature><TimeStamp>1409659813</TimeStamp>"
            "<Nonce><![CDATA[1372623149]]></Nonce></xml>");
  pugi::xml_document doc;
  REQUIRE(doc.load_string(reply.c_str()));
  CHECK(child_text(doc, "Encrypt") == kWecomEncrypt);
  CHECK(child_text(doc, "MsgSignature") == "477715d11cdb4164915debcba66cb864d751f3e6");
  CHECK(child_text(doc, "TimeStamp") == "1409659813");
  CHECK(child_text(doc, "Nonce") == "1372623149");
  // Our own envelope parser reads the Encrypt back.
  WechatEnvelope env;
  std::string detail;
  REQUIRE(botgate::parse_wechat_envelope(reply, env, detail) == CodecStatus::ok);
  CHECK(env.encrypt == kWecomEncrypt);
}

TEST_CASE("wechat: hostile envelope values cannot break the reply XML", "[wechat][codec]") {
  const std::string reply =
      botgate::build_wechat_encrypted_reply("e]]>x", "s", "1<2&3>", "n]]><Evil/>");
  pugi::xml_document doc;
  REQUIRE(doc.load_string(reply.c_str()));
  CHECK(child_text(doc, "TimeStamp") == "1<2&3>");
  CHECK_FALSE(doc.child("xml").child("Evil"));
  std::string nonce;
  for (pugi::xml_node c : doc.child("xml").child("Nonce").children()) nonce += c.value();
  CHECK(nonce == "n]]><Evil/>");
}
