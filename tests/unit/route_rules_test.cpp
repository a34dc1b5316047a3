// The [[routes]] rule table and the built-in ding/dong heartbeat responder.
#include "policies/route_rules.hpp"

#include <catch2/catch.hpp>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "tests/unit/in_child.hpp"

using botgate::decide_route;
using botgate::dong_for;
using botgate::Event;
using botgate::RouteDecision;
using botgate::RouteRule;

namespace {

Event event(std::string source, std::string type, std::string text) {
  Event ev;
  ev.source = std::move(source);
  ev.id = "id-1";
  ev.conversation = "conv-1";
  ev.sender = "alice";
  ev.type = std::move(type);
  ev.text = std::move(text);
  return ev;
}

RouteRule rule(std::size_t index, std::string reply, std::string pool) {
  RouteRule r;
  r.index = index;
  r.reply = std::move(reply);
  r.pool = std::move(pool);
  return r;
}

RouteRule regex_rule(const std::string& pattern, std::string pool) {
  RouteRule r = rule(0, "", std::move(pool));
  r.text_regex = botgate::compile_text_regex(pattern);
  return r;
}

// The decision of the default route: no rule, no reply, no heartbeat.
void check_default(const RouteDecision& d, const std::string& pool) {
  CHECK(d.rule == nullptr);
  CHECK_FALSE(d.heartbeat);
  CHECK(d.reply.empty());
  CHECK(d.pool == pool);
}

}  // namespace

// ---------------------------------------------------------------------------
// RouteRule::matches

TEST_CASE("a rule without matchers matches every event", "[route_rules]") {
  const RouteRule r = rule(0, "", "p");
  CHECK(r.matches(event("wx", "text", "hello")));
  CHECK(r.matches(event("other", "event:CLICK", "")));
  CHECK(r.matches(event("", "", "")));
}

TEST_CASE("a rule's source must equal the event's source", "[route_rules]") {
  RouteRule r = rule(0, "", "p");
  r.source = "wx";
  CHECK(r.matches(event("wx", "text", "hello")));
  CHECK_FALSE(r.matches(event("wx2", "text", "hello")));
  CHECK_FALSE(r.matches(event("w", "text", "hello")));
  CHECK_FALSE(r.matches(event("WX", "text", "hello")));
}

TEST_CASE("a rule's type must equal the event's type", "[route_rules]") {
  RouteRule r = rule(0, "", "p");
  r.type = "event:CLICK";
  CHECK(r.matches(event("wx", "event:CLICK", "")));
  CHECK_FALSE(r.matches(event("wx", "text", "")));
  CHECK_FALSE(r.matches(event("wx", "event:CLICKED", "")));
}

TEST_CASE("a rule's exact text must equal the whole text", "[route_rules]") {
  RouteRule r = rule(0, "", "p");
  r.text = "help";
  CHECK(r.matches(event("wx", "text", "help")));
  CHECK_FALSE(r.matches(event("wx", "text", "help me")));
  CHECK_FALSE(r.matches(event("wx", "text", "Help")));
  CHECK_FALSE(r.matches(event("wx", "text", "")));
  SECTION("an empty exact text matches only an empty text") {
    r.text = "";
    CHECK(r.matches(event("wx", "event:subscribe", "")));
    CHECK_FALSE(r.matches(event("wx", "text", "x")));
  }
}

TEST_CASE("a rule's regex must match the whole text, not a part of it", "[route_rules]") {
  const RouteRule r = regex_rule("order [0-9]+", "p");
  CHECK(r.matches(event("wx", "text", "order 42")));
  CHECK(r.matches(event("wx", "text", "order 7")));
  // A search would find these; a whole-text match must not.
  CHECK_FALSE(r.matches(event("wx", "text", "my order 42")));
  CHECK_FALSE(r.matches(event("wx", "text", "order 42 please")));
  CHECK_FALSE(r.matches(event("wx", "text", "order x")));
  CHECK_FALSE(r.matches(event("wx", "text", "")));
  const RouteRule prefix = regex_rule("hel.*", "p");
  CHECK(prefix.matches(event("wx", "text", "hello")));
  CHECK(prefix.matches(event("wx", "text", "hel")));
  CHECK_FALSE(prefix.matches(event("wx", "text", "shell")));
}

TEST_CASE("a rule's regex handles a text of a whole body without exhausting the stack",
          "[route_rules]") {
  // Backtracking recursed once per character: ".*refund.*" crashed the io thread at ~30 KB.
  const int result = botgate::test::parse_in_child([] {
    const RouteRule any = regex_rule(".*refund.*", "p");
    const RouteRule alt = regex_rule("(a|b)*c", "p");
    std::string text(1u << 20, 'a');  // [server] max_body's default
    if (any.matches(event("wx", "text", text)) || alt.matches(event("wx", "text", text))) {
      return botgate::CodecStatus::malformed;
    }
    text += " refund";
    return any.matches(event("wx", "text", text)) ? botgate::CodecStatus::ok
                                                  : botgate::CodecStatus::malformed;
  });
  CHECK(botgate::test::describe(result) == "ok");
}

TEST_CASE("a rule's regex may not use backreferences", "[route_rules]") {
  CHECK_THROWS_AS(botgate::compile_text_regex("(a)\\1"), std::regex_error);
  CHECK_NOTHROW(botgate::compile_text_regex("(?:order|refund) [0-9]+"));
}

TEST_CASE("every matcher of a rule must hold", "[route_rules]") {
  RouteRule r = rule(0, "", "p");
  r.source = "wx";
  r.type = "text";
  r.text = "hi";
  CHECK(r.matches(event("wx", "text", "hi")));
  CHECK_FALSE(r.matches(event("other", "text", "hi")));
  CHECK_FALSE(r.matches(event("wx", "image", "hi")));
  CHECK_FALSE(r.matches(event("wx", "text", "hey")));
  RouteRule re = regex_rule("h.", "p");
  re.source = "wx";
  re.type = "text";
  CHECK(re.matches(event("wx", "text", "hi")));
  CHECK_FALSE(re.matches(event("wx", "voice", "hi")));
  CHECK_FALSE(re.matches(event("wy", "text", "hi")));
}

// ---------------------------------------------------------------------------
// decide_route: rules

TEST_CASE("the first matching rule wins, in order", "[route_rules]") {
  std::vector<RouteRule> rules;
  rules.push_back(rule(0, "", "never"));
  rules[0].text = "nope";
  rules.push_back(rule(1, "", "first"));
  rules.push_back(rule(2, "", "second"));  // also matches, but comes later
  const RouteDecision d = decide_route(rules, event("wx", "text", "hello"), true, "default");
  CHECK(d.rule == &rules[1]);
  REQUIRE(d.rule != nullptr);
  CHECK(d.rule->index == 1);
  CHECK(d.pool == "first");
  CHECK(d.reply.empty());
  CHECK_FALSE(d.heartbeat);

  SECTION("swapping the two catch-all rules swaps the winner") {
    std::swap(rules[1], rules[2]);
    const RouteDecision d2 = decide_route(rules, event("wx", "text", "hello"), true, "default");
    CHECK(d2.rule == &rules[1]);
    CHECK(d2.pool == "second");
  }
}

TEST_CASE("a rule that does not match is skipped for the next", "[route_rules]") {
  std::vector<RouteRule> rules;
  rules.push_back(rule(0, "", "a-pool"));
  rules[0].source = "a";
  rules.push_back(rule(1, "", "b-pool"));
  rules[1].source = "b";
  CHECK(decide_route(rules, event("a", "text", "x"), true, "").pool == "a-pool");
  CHECK(decide_route(rules, event("b", "text", "x"), true, "").pool == "b-pool");
  CHECK(decide_route(rules, event("b", "text", "x"), true, "").rule == &rules[1]);
}

TEST_CASE("a reply-only rule answers and does not forward", "[route_rules]") {
  const std::vector<RouteRule> rules{rule(0, "we are closed", "")};
  const RouteDecision d = decide_route(rules, event("wx", "text", "hello"), true, "default");
  CHECK(d.reply == "we are closed");
  CHECK(d.pool.empty());  // not the default pool either
  CHECK(d.rule == &rules[0]);
  CHECK_FALSE(d.heartbeat);
}

TEST_CASE("a pool-only rule forwards without a reply", "[route_rules]") {
  const std::vector<RouteRule> rules{rule(0, "", "support")};
  const RouteDecision d = decide_route(rules, event("wx", "text", "hello"), true, "default");
  CHECK(d.reply.empty());
  CHECK(d.pool == "support");
  CHECK(d.rule == &rules[0]);
}

TEST_CASE("a reply-and-pool rule answers and forwards", "[route_rules]") {
  const std::vector<RouteRule> rules{rule(0, "got it", "support")};
  const RouteDecision d = decide_route(rules, event("wx", "text", "hello"), true, "default");
  CHECK(d.reply == "got it");
  CHECK(d.pool == "support");
  CHECK(d.rule == &rules[0]);
  CHECK_FALSE(d.heartbeat);
}

TEST_CASE("no matching rule means the source's default pool", "[route_rules]") {
  std::vector<RouteRule> rules{rule(0, "r", "p")};
  rules[0].source = "other";
  check_default(decide_route(rules, event("wx", "text", "hello"), true, "backends"), "backends");
  SECTION("which may be empty") {
    check_default(decide_route(rules, event("wx", "text", "hello"), true, ""), "");
  }
  SECTION("also without any rule") {
    check_default(decide_route({}, event("wx", "text", "hello"), true, "backends"), "backends");
    check_default(decide_route({}, event("wx", "image", ""), false, "x"), "x");
  }
}

// ---------------------------------------------------------------------------
// The heartbeat responder

TEST_CASE("dong_for answers ding and ding with a nonce", "[route_rules]") {
  CHECK(dong_for("ding") == std::optional<std::string>("dong"));
  CHECK(dong_for("ding 0123abcd") == std::optional<std::string>("dong 0123abcd"));
  CHECK(dong_for("ding a b") == std::optional<std::string>("dong a b"));
  for (const char* text : {"dingo", "Ding", "DING", " ding", "din", "", "dong", "ding\t1",
                           "dingding", "xding", "ding-1"}) {
    INFO("text: '" << text << "'");
    CHECK_FALSE(dong_for(text).has_value());
  }
}

TEST_CASE("a text ding is answered dong and not forwarded", "[route_rules]") {
  const std::vector<RouteRule> rules{rule(0, "", "catch-all")};
  const RouteDecision d = decide_route(rules, event("wx", "text", "ding"), true, "backends");
  CHECK(d.heartbeat);
  CHECK(d.reply == "dong");
  CHECK(d.pool.empty());
  CHECK(d.rule == nullptr);
}

TEST_CASE("a ding with a nonce is answered with the same nonce", "[route_rules]") {
  const RouteDecision d = decide_route({}, event("wx", "text", "ding 0123abcd"), true, "backends");
  CHECK(d.heartbeat);
  CHECK(d.reply == "dong 0123abcd");
  CHECK(d.pool.empty());
  CHECK(d.rule == nullptr);
}

TEST_CASE("texts that only look like ding are routed normally", "[route_rules]") {
  for (const char* text : {"dingo", "Ding", " ding", "ding\n", "dong"}) {
    INFO("text: '" << text << "'");
    check_default(decide_route({}, event("wx", "text", text), true, "backends"), "backends");
  }
}

TEST_CASE("only a text event is answered by the heartbeat", "[route_rules]") {
  for (const char* type : {"event:CLICK", "image", "", "Text"}) {
    INFO("type: '" << type << "'");
    check_default(decide_route({}, event("wx", type, "ding"), true, "backends"), "backends");
  }
}

TEST_CASE("answer_ding false turns the heartbeat off", "[route_rules]") {
  check_default(decide_route({}, event("wx", "text", "ding"), false, "backends"), "backends");
  const std::vector<RouteRule> rules{rule(0, "", "peers")};
  const RouteDecision d = decide_route(rules, event("wx", "text", "ding 1"), false, "backends");
  CHECK_FALSE(d.heartbeat);
  CHECK(d.rule == &rules[0]);
  CHECK(d.pool == "peers");
  CHECK(d.reply.empty());
}

TEST_CASE("the heartbeat comes before a rule that matches ding", "[route_rules]") {
  std::vector<RouteRule> rules{rule(0, "rule says hi", "rule-pool")};
  rules[0].text = "ding";
  rules[0].type = "text";
  const RouteDecision d = decide_route(rules, event("wx", "text", "ding"), true, "backends");
  CHECK(d.heartbeat);
  CHECK(d.reply == "dong");
  CHECK(d.pool.empty());
  CHECK(d.rule == nullptr);
  SECTION("with the heartbeat off, the rule answers") {
    const RouteDecision off = decide_route(rules, event("wx", "text", "ding"), false, "backends");
    CHECK_FALSE(off.heartbeat);
    CHECK(off.rule == &rules[0]);
    CHECK(off.reply == "rule says hi");
    CHECK(off.pool == "rule-pool");
  }
}
