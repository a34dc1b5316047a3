// The payload formats of event and dead-letter records.
#include "storage/event_record.hpp"

#include <catch2/catch.hpp>
#include <chrono>

using namespace std::chrono_literals;
using botgate::Clock;
using botgate::Event;
namespace storage = botgate::storage;

namespace {

Event sample() {
  Event ev;
  ev.source = "demo";
  ev.id = "id-1";
  ev.conversation = "conv\x01";
  ev.sender = "alice";
  ev.type = "message";
  ev.text = std::string("h\0i", 3);
  ev.raw = R"({"id":"id-1","conversation":"c"})";
  ev.received_wall = std::chrono::system_clock::time_point(1700000000123ms);
  return ev;
}

void check_same(const Event& a, const Event& b) {
  CHECK(a.source == b.source);
  CHECK(a.id == b.id);
  CHECK(a.conversation == b.conversation);
  CHECK(a.sender == b.sender);
  CHECK(a.type == b.type);
  CHECK(a.text == b.text);
  CHECK(a.raw == b.raw);
  CHECK(a.received_wall == b.received_wall);
}

}  // namespace

TEST_CASE("an event survives encode and decode, and keeps its age", "[storage][record]") {
  const Event ev = sample();
  const auto payload = storage::encode_event(ev);
  const auto now_wall = ev.received_wall + 90s;
  const auto now_steady = Clock::now();
  auto back = storage::decode_event(payload, now_steady, now_wall);
  REQUIRE(back);
  check_same(ev, *back);
  // 90 s old when it was stored: still 90 s old after decoding.
  CHECK(now_steady - back->received_at == std::chrono::duration_cast<Clock::duration>(90s));
}

TEST_CASE("a payload that does not parse decodes to nothing", "[storage][record]") {
  const auto payload = storage::encode_event(sample());
  const auto now = std::chrono::system_clock::now();
  for (std::size_t cut = 0; cut < payload.size(); ++cut) {
    INFO("cut at " << cut);
    CHECK_FALSE(storage::decode_event(payload.substr(0, cut), Clock::now(), now));
  }
  CHECK_FALSE(storage::decode_event(payload + "x", Clock::now(), now));
  auto wrong_version = payload;
  wrong_version[0] = 9;
  CHECK_FALSE(storage::decode_event(wrong_version, Clock::now(), now));
}

TEST_CASE("a dead letter keeps its event, attempts, time and error", "[storage][record]") {
  const Event ev = sample();
  const auto payload = storage::encode_dead_letter(ev, 7, 1700000009999, "b1: HTTP 400");
  auto dl = storage::decode_dead_letter(payload, Clock::now(), std::chrono::system_clock::now());
  REQUIRE(dl);
  CHECK(dl->attempts == 7);
  CHECK(dl->dead_at_ms == 1700000009999);
  CHECK(dl->error == "b1: HTTP 400");
  check_same(ev, dl->event);
  CHECK_FALSE(storage::decode_dead_letter(payload.substr(0, payload.size() - 1), Clock::now(),
                                          std::chrono::system_clock::now()));
}

namespace {

void put_u32_le(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void put_u64_le(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// A version-1 event payload, as written before routes existed.
std::string version1_payload(const Event& ev) {
  std::string out;
  out.push_back(1);
  put_u64_le(out, static_cast<std::uint64_t>(storage::to_unix_ms(ev.received_wall)));
  for (const std::string* s :
       {&ev.source, &ev.id, &ev.conversation, &ev.sender, &ev.type, &ev.text, &ev.raw}) {
    put_u32_le(out, static_cast<std::uint32_t>(s->size()));
    out += *s;
  }
  return out;
}

}  // namespace

TEST_CASE("an event's route survives encode and decode", "[storage][record][event_record]") {
  Event ev = sample();
  ev.route = "wx-accounts";
  const auto payload = storage::encode_event(ev);
  auto back = storage::decode_event(payload, Clock::now(), ev.received_wall + 1s);
  REQUIRE(back);
  check_same(ev, *back);
  CHECK(back->route == "wx-accounts");
  // An empty route stays empty and is not confused with the raw body.
  Event plain = sample();
  auto plain_back =
      storage::decode_event(storage::encode_event(plain), Clock::now(), plain.received_wall);
  REQUIRE(plain_back);
  check_same(plain, *plain_back);
  CHECK(plain_back->route.empty());
  // The route is part of the payload: dropping its last byte breaks it.
  CHECK_FALSE(
      storage::decode_event(payload.substr(0, payload.size() - 1), Clock::now(), ev.received_wall));
}

TEST_CASE("a version-1 payload decodes with an empty route", "[storage][record][event_record]") {
  const Event ev = sample();
  const std::string payload = version1_payload(ev);
  const auto now_wall = ev.received_wall + 30s;
  const auto now_steady = Clock::now();
  auto back = storage::decode_event(payload, now_steady, now_wall);
  REQUIRE(back);
  check_same(ev, *back);
  CHECK(back->route.empty());
  CHECK(now_steady - back->received_at == std::chrono::duration_cast<Clock::duration>(30s));
  // Version 1 has no route field: an extra byte is trailing garbage, a cut one is missing.
  CHECK_FALSE(storage::decode_event(payload + "x", now_steady, now_wall));
  CHECK_FALSE(storage::decode_event(payload.substr(0, payload.size() - 1), now_steady, now_wall));
  // A version-2 payload of the same event differs from the version-1 one.
  CHECK(storage::encode_event(ev) != payload);
}

TEST_CASE("a version-1 payload inside a dead letter decodes", "[storage][record][event_record]") {
  const Event ev = sample();
  std::string payload;
  payload.push_back(1);
  put_u32_le(payload, 3);
  put_u64_le(payload, 1700000001234);
  const std::string error = "errcode 45015: response out of time limit";
  put_u32_le(payload, static_cast<std::uint32_t>(error.size()));
  payload += error;
  payload += version1_payload(ev);
  auto dl = storage::decode_dead_letter(payload, Clock::now(), std::chrono::system_clock::now());
  REQUIRE(dl);
  CHECK(dl->attempts == 3);
  CHECK(dl->dead_at_ms == 1700000001234);
  CHECK(dl->error == error);
  check_same(ev, dl->event);
  CHECK(dl->event.route.empty());
}

TEST_CASE("a dead letter of a routed event keeps its route", "[storage][record][event_record]") {
  Event ev = sample();
  ev.route = "support-pool";
  const auto payload =
      storage::encode_dead_letter(ev, 2, 1700000005555, "errcode 45047: out of send limit");
  auto dl = storage::decode_dead_letter(payload, Clock::now(), std::chrono::system_clock::now());
  REQUIRE(dl);
  CHECK(dl->attempts == 2);
  CHECK(dl->dead_at_ms == 1700000005555);
  CHECK(dl->error == "errcode 45047: out of send limit");
  check_same(ev, dl->event);
  CHECK(dl->event.route == "support-pool");
}
