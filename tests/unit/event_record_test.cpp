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
