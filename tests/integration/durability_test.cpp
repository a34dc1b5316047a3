// The durable shard queue of the real botgate binary (issue 3): an acknowledged event
// survives kill -9 and a graceful stop, duplicates are acked but not delivered twice,
// dead letters are listed and replayed through the admin API, a torn log tail is cut
// off, and a backlog larger than the in-memory window is delivered from disk.
#include <signal.h>
#include <simdjson.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/client.hpp"
#include "tests/support/events.hpp"
#include "tests/support/gateway.hpp"
#include "tests/support/process.hpp"
#include "tests/support/small_disk.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/test_backend.hpp"

using namespace botgate::test;
using namespace std::chrono_literals;

namespace {

// A gateway on a fixed port (so a restart comes back on it) whose backend may stay
// down for most of the test: retries never run out, and resume quickly once the
// backend is back.
GatewayOptions durable_options(const TestBackend& backend) {
  GatewayOptions o;
  o.backend_ports = {backend.port()};
  o.listen_port = free_listen_port();
  o.max_attempts = 1000000;
  o.max_age = "1h";
  o.backoff_base = "10ms";
  o.backoff_cap = "200ms";
  o.connect_timeout = "500ms";
  o.target_timeout = "2s";
  o.drain_timeout = "1s";
  return o;
}

struct Sent {
  std::string id;
  std::string conversation;
  int seq = 0;
  std::string body;
};

// The "status" of an ingest answer such as {"status":"accepted","id":"x"}, with "/<id>"
// appended when the id differs from `id`; "" when the body is not such an object.
std::string ack_status(const Response& res, const std::string& id) {
  simdjson::dom::parser parser;
  simdjson::dom::object obj;
  if (parser.parse(res.body).get_object().get(obj) != simdjson::SUCCESS) return {};
  std::string_view status, got_id;
  if (obj["status"].get_string().get(status) != simdjson::SUCCESS) return {};
  if (obj["id"].get_string().get(got_id) != simdjson::SUCCESS) return {};
  std::string out(status);
  if (got_id != id) out += "/" + std::string(got_id);
  return out;
}

// Sends `count` events on one keep-alive connection: event i is <prefix>-<i> in
// conversation <prefix>-conv-<i % convs> with seq i / convs. Each must be answered
// 200 "accepted".
std::vector<Sent> send_accepted(std::uint16_t port, const GatewayOptions& o,
                                const std::string& prefix, int count, int convs) {
  std::vector<Sent> sent;
  auto conn = std::make_unique<HttpConnection>(port);
  for (int i = 0; i < count; ++i) {
    if (!conn->is_open()) conn = std::make_unique<HttpConnection>(port);
    Sent s;
    s.id = prefix + "-" + std::to_string(i);
    s.conversation = prefix + "-conv-" + std::to_string(i % convs);
    s.seq = i / convs;
    s.body = event_json(s.id, s.conversation, s.seq);
    auto res = send_event(*conn, o.source, o.secret, s.body);
    INFO(s.id << ": " << res.describe());
    REQUIRE(res.status == 200);
    REQUIRE(ack_status(res, s.id) == "accepted");
    sent.push_back(std::move(s));
  }
  return sent;
}

std::vector<std::string> ids_of(const std::vector<Sent>& sent) {
  std::vector<std::string> ids;
  for (const auto& s : sent) ids.push_back(s.id);
  return ids;
}

std::vector<BackendRequest> by_arrival(const TestBackend& backend) {
  auto all = backend.requests();
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.order < b.order; });
  return all;
}

// How many requests the backend answered 2xx, per Idempotency-Key.
std::map<std::string, int> deliveries(const TestBackend& backend) {
  std::map<std::string, int> n;
  for (const auto& r : backend.requests()) {
    if (r.delivered()) ++n[r.idempotency_key()];
  }
  return n;
}

// Waits until every id was delivered at least once; returns those that never were.
std::vector<std::string> wait_delivered(const TestBackend& backend,
                                        const std::vector<std::string>& ids,
                                        std::chrono::milliseconds timeout = 30s) {
  std::vector<std::string> missing;
  eventually(
      [&] {
        auto got = deliveries(backend);
        missing.clear();
        for (const auto& id : ids) {
          if (!got.count(id)) missing.push_back(id);
        }
        return missing.empty();
      },
      timeout);
  return missing;
}

// Every sent event reached the backend intact, and within each conversation the first
// deliveries came in the order the events were sent.
void check_delivered_in_order(const TestBackend& backend, const std::vector<Sent>& sent) {
  std::map<std::string, const Sent*> by_id;
  for (const auto& s : sent) by_id[s.id] = &s;
  std::set<std::string> seen;
  std::map<std::string, std::vector<int>> seqs;  // per conversation, in first-delivery order
  for (const auto& r : by_arrival(backend)) {
    if (!r.delivered()) continue;
    auto it = by_id.find(r.idempotency_key());
    if (it == by_id.end() || !seen.insert(it->first).second) continue;
    INFO("delivered " << it->first);
    CHECK(r.body == it->second->body);
    CHECK(r.method == "POST");
    seqs[it->second->conversation].push_back(it->second->seq);
  }
  CHECK(seen.size() == sent.size());
  for (const auto& [conv, s] : seqs) {
    std::ostringstream got;
    for (int v : s) got << v << ' ';
    INFO("conversation " << conv << ": seqs in first-delivery order: " << got.str());
    bool in_order =
        std::is_sorted(s.begin(), s.end()) && std::adjacent_find(s.begin(), s.end()) == s.end();
    CHECK(in_order);
  }
}

// Stops the gateway with SIGKILL and reaps it.
void crash(Gateway& gw) {
  gw.process().kill();
  auto code = gw.process().wait_exit(10s);
  REQUIRE(code == 128 + SIGKILL);
}

Headers admin(const GatewayOptions& o) {
  return {{"Authorization", "Bearer " + o.admin_token}};
}

struct DeadLetter {
  std::string id, source, conversation, error;
  std::int64_t attempts = -1, received_at_ms = -1, dead_at_ms = -1;
};

struct DeadLetterList {
  bool parsed = false;
  std::int64_t count = -1;
  std::vector<DeadLetter> items;

  std::vector<std::string> ids() const {
    std::vector<std::string> out;
    for (const auto& d : items) out.push_back(d.id + "@" + d.source);
    return out;
  }
  const DeadLetter* find(const std::string& id, const std::string& source) const {
    for (const auto& d : items) {
      if (d.id == id && d.source == source) return &d;
    }
    return nullptr;
  }
};

// Parses {"count":N,"dead_letters":[{"id":..,"source":..,...}, ...]}.
DeadLetterList parse_dead_letters(const std::string& body) {
  DeadLetterList out;
  simdjson::dom::parser parser;
  simdjson::dom::object obj;
  if (parser.parse(body).get_object().get(obj) != simdjson::SUCCESS) return out;
  simdjson::dom::array arr;
  if (obj["count"].get_int64().get(out.count) != simdjson::SUCCESS) return out;
  if (obj["dead_letters"].get_array().get(arr) != simdjson::SUCCESS) return out;
  for (auto el : arr) {
    simdjson::dom::object d;
    if (el.get_object().get(d) != simdjson::SUCCESS) return out;
    DeadLetter dl;
    std::string_view sv;
    if (d["id"].get_string().get(sv) == simdjson::SUCCESS) dl.id = sv;
    if (d["source"].get_string().get(sv) == simdjson::SUCCESS) dl.source = sv;
    if (d["conversation"].get_string().get(sv) == simdjson::SUCCESS) dl.conversation = sv;
    if (d["error"].get_string().get(sv) == simdjson::SUCCESS) dl.error = sv;
    if (d["attempts"].get_int64().get(dl.attempts) != simdjson::SUCCESS) dl.attempts = -1;
    if (d["received_at_ms"].get_int64().get(dl.received_at_ms) != simdjson::SUCCESS)
      dl.received_at_ms = -1;
    if (d["dead_at_ms"].get_int64().get(dl.dead_at_ms) != simdjson::SUCCESS) dl.dead_at_ms = -1;
    out.items.push_back(std::move(dl));
  }
  out.parsed = true;
  return out;
}

DeadLetterList get_dead_letters(std::uint16_t port, const GatewayOptions& o,
                                const std::string& query = "") {
  auto res = http_request(port, "GET", "/v1/dead-letters" + query, admin(o));
  INFO("GET /v1/dead-letters" << query << ": " << res.describe());
  REQUIRE(res.status == 200);
  auto list = parse_dead_letters(res.body);
  REQUIRE(list.parsed);
  return list;
}

// Sends event `id` in `convs` conversations (the backend must refuse it with a 4xx): each
// shard dedups it once, so it is taken once per shard those conversations map to, and
// dead-lettered there. Returns how many were taken, once all of them are dead letters.
std::int64_t dead_letter_copies(std::uint16_t port, const GatewayOptions& o, const std::string& id,
                                int convs) {
  std::int64_t accepted = 0;
  for (int c = 0; c < convs; ++c) {
    auto res = send_event(port, o.source, o.secret, event_json(id, "conv-" + std::to_string(c), c));
    REQUIRE(res.status == 200);
    if (ack_status(res, id) == "accepted") ++accepted;
  }
  REQUIRE(eventually([&] { return get_dead_letters(port, o).count == accepted; }, 10s));
  return accepted;
}

// The event log segments of a shard (named by their first sequence number), oldest
// first. They live in <shard dir>/events/ (next to dead/ and dedup/).
std::vector<std::filesystem::path> segments(const std::filesystem::path& shard_dir) {
  static const std::regex segment_name(R"(^[0-9]+\.log$)");
  std::vector<std::filesystem::path> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(shard_dir / "events", ec)) {
    if (e.is_regular_file() && std::regex_match(e.path().filename().string(), segment_name)) {
      out.push_back(e.path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("acknowledged events survive kill -9 and are delivered in order after a restart",
          "[integration][durability]") {
  // Each mode keeps what it acked across a crash of the process: even "none" has
  // handed the record to the kernel before the ack.
  const std::string fsync = GENERATE(as<std::string>{}, "batch", "always", "none");
  INFO("fsync = " << fsync);
  TempDir dir;
  TestBackend backend;
  auto o = durable_options(backend);
  o.fsync = fsync;
  bool hanging = false;
  SECTION("while the backend refuses connections") {
    backend.stop();
  }
  SECTION("while the backend hangs on the events in flight") {
    backend.set_hang();
    hanging = true;
  }
  auto gw = std::make_unique<Gateway>(botgate_binary(), dir, make_config(o));

  constexpr int kEvents = 50, kConvs = 5;
  auto sent = send_accepted(gw->port(), o, "k9", kEvents, kConvs);
  // Hanging: events are in flight when botgate dies.
  if (hanging) REQUIRE(backend.wait_for_count(1, 10s));
  CHECK(backend.delivered_count() == 0);

  crash(*gw);
  backend.set_ok();
  backend.start();
  gw = gw->restart("botgate-2");
  REQUIRE(gw->port() == o.listen_port);

  auto missing = wait_delivered(backend, ids_of(sent));
  INFO("acked before the crash, never delivered after the restart: " << head(missing));
  REQUIRE(missing.empty());
  check_delivered_in_order(backend, sent);
  CHECK(gw->process().running());
}

TEST_CASE("events still pending at a graceful stop are delivered after the restart",
          "[integration][durability]") {
  TempDir dir;
  TestBackend backend;
  backend.stop();
  auto o = durable_options(backend);
  o.drain_timeout = "1s";
  auto gw = std::make_unique<Gateway>(botgate_binary(), dir, make_config(o));

  auto sent = send_accepted(gw->port(), o, "term", 30, 3);
  auto t0 = std::chrono::steady_clock::now();
  gw->process().signal(SIGTERM);
  // The drain cannot finish with the backend down: it gives up after drain_timeout.
  auto code = gw->process().wait_exit(15s);
  auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  INFO("exit code " << code.value_or(-1) << " after " << took.count() << " ms");
  REQUIRE(code.has_value());
  CHECK(*code != 128 + SIGKILL);
  CHECK(took < 8s);
  CHECK(backend.count() == 0);

  backend.start();
  gw = gw->restart("botgate-2");
  auto missing = wait_delivered(backend, ids_of(sent));
  INFO("acked before SIGTERM, never delivered after the restart: " << head(missing));
  REQUIRE(missing.empty());
  check_delivered_in_order(backend, sent);
}

TEST_CASE("an event id sent again is acked as a duplicate and delivered once, across restarts",
          "[integration][durability]") {
  TempDir dir;
  TestBackend backend;
  auto o = durable_options(backend);
  auto gw = std::make_unique<Gateway>(botgate_binary(), dir, make_config(o));

  auto send = [&](const std::string& id, int seq) {
    auto res = send_event(gw->port(), o.source, o.secret, event_json(id, "dup-conv", seq));
    INFO(id << ": " << res.describe());
    REQUIRE(res.status == 200);
    return ack_status(res, id);
  };

  // Still queued: the backend is down.
  backend.stop();
  CHECK(send("dup-queued", 0) == "accepted");
  CHECK(send("dup-queued", 0) == "duplicate");
  backend.start();
  REQUIRE(wait_delivered(backend, {"dup-queued"}).empty());

  // Completed (delivered) a moment ago.
  CHECK(send("dup-done", 1) == "accepted");
  REQUIRE(wait_delivered(backend, {"dup-done"}).empty());
  CHECK(send("dup-done", 1) == "duplicate");
  CHECK(send("dup-queued", 0) == "duplicate");
  std::this_thread::sleep_for(500ms);  // a wrongly enqueued copy would show up by now
  CHECK(backend.count() == 2);

  // A graceful restart keeps the dedup window.
  gw->process().signal(SIGTERM);
  REQUIRE(gw->process().wait_exit(15s) == 0);
  gw = gw->restart("botgate-2");
  CHECK(send("dup-done", 1) == "duplicate");
  CHECK(send("dup-queued", 0) == "duplicate");

  // So does kill -9, once the completions are stored (the graceful stop stored them).
  crash(*gw);
  gw = gw->restart("botgate-3");
  CHECK(send("dup-done", 1) == "duplicate");
  CHECK(send("dup-queued", 0) == "duplicate");
  std::this_thread::sleep_for(500ms);
  auto n = deliveries(backend);
  CHECK(n["dup-queued"] == 1);
  CHECK(n["dup-done"] == 1);
  CHECK(backend.count() == 2);

  // A new id is still accepted. Killed right after its delivery it is a duplicate
  // after the restart too, whether its completion made it to disk (completed) or not
  // (queued again, and maybe delivered again: at least once).
  CHECK(send("dup-new", 2) == "accepted");
  REQUIRE(wait_delivered(backend, {"dup-new"}).empty());
  crash(*gw);
  gw = gw->restart("botgate-4");
  CHECK(send("dup-new", 2) == "duplicate");
  std::this_thread::sleep_for(500ms);
  n = deliveries(backend);
  CHECK(n["dup-queued"] == 1);
  CHECK(n["dup-done"] == 1);
  CHECK(n["dup-new"] >= 1);
}

TEST_CASE("an id completed longer ago than dedup_window is accepted and delivered again",
          "[integration][durability]") {
  TempDir dir;
  TestBackend backend;
  auto o = durable_options(backend);
  o.dedup_window = "1s";
  Gateway gw(botgate_binary(), dir, make_config(o));

  auto body = event_json("win-1", "win-conv", 0);
  auto send = [&] {
    auto res = send_event(gw.port(), o.source, o.secret, body);
    INFO(res.describe());
    REQUIRE(res.status == 200);
    return ack_status(res, "win-1");
  };
  CHECK(send() == "accepted");
  REQUIRE(backend.wait_for_delivered(1, 10s));
  CHECK(send() == "duplicate");  // completed a moment ago: within the window

  std::this_thread::sleep_for(2500ms);  // well past the 1 s window
  CHECK(send() == "accepted");
  REQUIRE(backend.wait_for_delivered(2, 10s));
  auto reqs = by_arrival(backend);
  REQUIRE(reqs.size() == 2);
  CHECK(reqs[1].idempotency_key() == "win-1");
  CHECK(reqs[1].attempt() == "1");
  CHECK(reqs[1].body == body);
}

TEST_CASE("dead letters are listed, survive restarts and are replayed through the admin API",
          "[integration][durability]") {
  TempDir dir;
  TestBackend backend;
  backend.set_status(400);
  auto o = durable_options(backend);
  o.max_attempts = 3;
  // A second source, to dead-letter the same id twice.
  const std::string other_secret = "other-secret-0123456789";
  o.extra = "[[sources]]\nname = \"other\"\nkind = \"generic\"\nsecret = \"" + other_secret +
            "\"\nroute = \"" + o.pool + "\"\n";
  auto gw = std::make_unique<Gateway>(botgate_binary(), dir, make_config(o));

  auto dead_letter = [&](const std::string& source, const std::string& secret,
                         const std::string& id, std::size_t requests_after) {
    auto res = send_event(gw->port(), source, secret, event_json(id, id + "-conv", 0));
    INFO(id << " from " << source << ": " << res.describe());
    REQUIRE(res.status == 200);
    REQUIRE(backend.wait_for_count(requests_after, 10s));
    REQUIRE(eventually([&] { return get_dead_letters(gw->port(), o).find(id, source) != nullptr; },
                       10s));
  };
  // Refused for good (400): dead-lettered after one attempt.
  dead_letter(o.source, o.secret, "dl-1", 1);
  dead_letter(o.source, o.secret, "dl-2", 2);
  // 503 is worth retrying: dead-lettered once max_attempts (3) are used up.
  backend.set_status(503);
  dead_letter(o.source, o.secret, "dl-3", 5);
  backend.set_status(400);
  dead_letter(o.source, o.secret, "dl-x", 6);
  dead_letter("other", other_secret, "dl-x", 7);
  std::this_thread::sleep_for(300ms);
  CHECK(backend.count() == 7);  // nothing refused for good was retried
  CHECK(backend.delivered_count() == 0);

  // Admin only.
  CHECK(http_request(gw->port(), "GET", "/v1/dead-letters").status == 401);
  CHECK(http_request(gw->port(), "GET", "/v1/dead-letters",
                     {{"Authorization", "Bearer not-the-token"}})
            .status == 401);
  CHECK(http_request(gw->port(), "POST", "/v1/dead-letters/dl-1/replay").status == 401);

  auto check_initial_list = [&](const DeadLetterList& list) {
    INFO("dead letters: " << head(list.ids()));
    CHECK(list.count == 5);
    REQUIRE(list.items.size() == 5);
    // Oldest first.
    CHECK(list.items[0].id == "dl-1");
    CHECK(list.items[1].id == "dl-2");
    CHECK(list.items[2].id == "dl-3");
    const auto* d1 = list.find("dl-1", o.source);
    REQUIRE(d1 != nullptr);
    CHECK(d1->conversation == "dl-1-conv");
    CHECK(d1->attempts == 1);
    CHECK(d1->error.find("400") != std::string::npos);
    CHECK(d1->received_at_ms > 1'600'000'000'000);
    CHECK(d1->dead_at_ms >= d1->received_at_ms);
    const auto* d3 = list.find("dl-3", o.source);
    REQUIRE(d3 != nullptr);
    CHECK(d3->attempts == 3);
    CHECK(d3->error.find("503") != std::string::npos);
    CHECK(list.find("dl-x", o.source) != nullptr);
    CHECK(list.find("dl-x", "other") != nullptr);
  };
  auto before = get_dead_letters(gw->port(), o);
  check_initial_list(before);
  auto limited = get_dead_letters(gw->port(), o, "?limit=1");
  REQUIRE(limited.items.size() == 1);
  CHECK(limited.items[0].id == "dl-1");

  // Dead letters survive a graceful restart and a kill -9.
  gw->process().signal(SIGTERM);
  REQUIRE(gw->process().wait_exit(15s) == 0);
  gw = gw->restart("botgate-2");
  check_initial_list(get_dead_letters(gw->port(), o));
  crash(*gw);
  gw = gw->restart("botgate-3");
  check_initial_list(get_dead_letters(gw->port(), o));
  std::this_thread::sleep_for(300ms);
  CHECK(backend.count() == 7);  // a restart does not retry a dead letter

  backend.set_ok();
  auto replay = [&](const std::string& id, const std::string& query = "") {
    return http_request(gw->port(), "POST", "/v1/dead-letters/" + id + "/replay" + query, admin(o));
  };
  {
    auto res = replay("dl-1");
    INFO(res.describe());
    REQUIRE(res.status == 200);
    CHECK(ack_status(res, "dl-1") == "replayed");
  }
  REQUIRE(wait_delivered(backend, {"dl-1"}, 10s).empty());
  for (const auto& r : backend.requests()) {
    if (r.idempotency_key() == "dl-1" && r.delivered()) {
      CHECK(r.attempt() == "1");  // the attempt counter starts again
      CHECK(r.body == event_json("dl-1", "dl-1-conv", 0));
    }
  }
  CHECK(replay("dl-1").status == 404);  // no longer a dead letter
  CHECK(replay("no-such-id").status == 404);

  // The same id from two sources needs ?source=.
  CHECK(replay("dl-x").status == 409);
  {
    auto res = replay("dl-x", "?source=other");
    INFO(res.describe());
    CHECK(res.status == 200);
  }
  REQUIRE(wait_delivered(backend, {"dl-x"}, 10s).empty());
  // The id is percent-decoded, as every name in a path is; an empty ?source= names no source.
  CHECK(replay("dl%2D%zz").status == 400);
  CHECK(replay("dl-2/x").status == 404);
  {
    auto res = replay("dl%2D2", "?source=");
    INFO(res.describe());
    CHECK(res.status == 200);
  }
  REQUIRE(wait_delivered(backend, {"dl-2"}, 10s).empty());

  auto after = get_dead_letters(gw->port(), o);
  INFO("dead letters after the replays: " << head(after.ids()));
  CHECK(after.count == 2);
  CHECK(after.find("dl-1", o.source) == nullptr);
  CHECK(after.find("dl-x", "other") == nullptr);
  CHECK(after.find("dl-2", o.source) == nullptr);
  CHECK(after.find("dl-3", o.source) != nullptr);
  CHECK(after.find("dl-x", o.source) != nullptr);

  // Replays are kept across a restart too.
  gw->process().signal(SIGTERM);
  REQUIRE(gw->process().wait_exit(15s) == 0);
  gw = gw->restart("botgate-4");
  auto restarted = get_dead_letters(gw->port(), o);
  INFO("dead letters after the last restart: " << head(restarted.ids()));
  CHECK(restarted.count == 2);
  CHECK(restarted.find("dl-1", o.source) == nullptr);
  std::this_thread::sleep_for(300ms);
  auto n = deliveries(backend);
  CHECK(n["dl-1"] == 1);
  CHECK(n["dl-x"] == 1);
  CHECK(n["dl-2"] == 1);
  CHECK(n.size() == 3);
}

namespace {

// Event `id` sent in `convs` conversations to a gateway of `shards` shards whose backend
// refuses it (400): each shard it reaches holds a copy as a dead letter. Then the backend
// takes events again, for the replays.
struct SpreadDeadLetter {
  SpreadDeadLetter(int shards, const std::string& id, int convs)
      : o(options(backend, shards)),
        gw(botgate_binary(), dir, make_config(o)),
        copies(dead_letter_copies(gw.port(), o, id, convs)),
        path("/v1/dead-letters/" + id + "/replay") {
    backend.set_ok();
  }
  static GatewayOptions options(TestBackend& backend, int shards) {
    backend.set_status(400);
    auto o = durable_options(backend);
    o.shards = shards;
    return o;
  }
  // Every copy was replayed: none is left to replay, and the backend took each once.
  void check_all_replayed() {
    CHECK(http_request(gw.port(), "POST", path, admin(o)).status == 404);
    REQUIRE(eventually(
        [&] { return static_cast<std::int64_t>(backend.delivered_count()) == copies; }, 10s));
  }

  TempDir dir;
  TestBackend backend;
  GatewayOptions o;
  Gateway gw;
  std::int64_t copies;
  std::string path;
};

}  // namespace

TEST_CASE("one id dead-lettered in several shards is replayed a call each, oldest first",
          "[integration][durability]") {
  SpreadDeadLetter d(4, "same-id", 8);
  auto& gw = d.gw;
  const auto& o = d.o;
  const auto& path = d.path;
  const std::int64_t accepted = d.copies;
  REQUIRE(accepted >= 2);
  const auto listed = get_dead_letters(gw.port(), o);

  // Admin auth takes the Bearer scheme in any case, and any number of spaces after it.
  CHECK(http_request(gw.port(), "POST", path, {{"Authorization", "bearer  wrong-token"}}).status ==
        401);
  // A wrong method is 405 whatever the id, even one that is not valid percent-encoding.
  CHECK(http_request(gw.port(), "GET", "/v1/dead-letters/%zz/replay", admin(o)).status == 405);
  for (std::int64_t k = 0; k < accepted; ++k) {
    const Headers auth = {
        {"Authorization", (k % 2 == 0 ? "BEARER   " : "bearer ") + o.admin_token}};
    auto res = http_request(gw.port(), "POST", path, auth);
    INFO("replay " << k << ": " << res.describe());
    REQUIRE(res.status == 200);
    // The oldest of those left went.
    const auto now = get_dead_letters(gw.port(), o);
    CHECK(now.count == accepted - k - 1);
    for (const auto& item : now.items) {
      CHECK(item.dead_at_ms >= listed.items[static_cast<std::size_t>(k)].dead_at_ms);
    }
  }
  d.check_all_replayed();
  const auto conversations = [&] {
    std::set<std::string> out;
    for (const auto& r : d.backend.requests()) {
      if (r.delivered()) out.insert(r.body);
    }
    return out;
  }();
  CHECK(static_cast<std::int64_t>(conversations.size()) == accepted);  // each shard's own, once
}

TEST_CASE("concurrent replays of an id dead-lettered in several shards each take a copy",
          "[integration][durability]") {
  // Enough conversations to reach most of the 8 shards: more copies than a small fixed
  // number of retry rounds would cover.
  SpreadDeadLetter d(8, "twin-id", 48);
  auto& gw = d.gw;
  const auto& o = d.o;
  const auto& path = d.path;
  REQUIRE(d.copies >= 6);

  // As many replays as copies, all at once: each picks the oldest copy it lists, so several
  // pick the same one; those that lose it must go on to another copy, not answer 404.
  std::vector<int> statuses(static_cast<std::size_t>(d.copies), 0);
  std::vector<std::thread> callers;
  for (std::size_t k = 0; k < statuses.size(); ++k) {
    callers.emplace_back(
        [&, k] { statuses[k] = http_request(gw.port(), "POST", path, admin(o)).status; });
  }
  for (auto& t : callers) t.join();
  for (std::size_t k = 0; k < statuses.size(); ++k) {
    INFO("replay " << k);
    CHECK(statuses[k] == 200);
  }
  CHECK(get_dead_letters(gw.port(), o).count == 0);
  d.check_all_replayed();
}

TEST_CASE("a dead letter whose event is queued again is not replayed as a second copy",
          "[integration][durability]") {
  TempDir dir;
  TestBackend backend;
  backend.set_status(400);
  auto o = durable_options(backend);
  o.dedup_window = "1s";
  Gateway gw(botgate_binary(), dir, make_config(o));
  const std::string path = "/v1/dead-letters/again/replay";

  REQUIRE(send_event(gw.port(), o.source, o.secret, event_json("again", "again-conv", 0)).status ==
          200);
  REQUIRE(eventually([&] { return get_dead_letters(gw.port(), o).count == 1; }, 10s));
  // Once the dedup window is over, the platform's resend is a new copy, queued while the
  // backend fails.
  backend.set_status(503);
  REQUIRE(eventually(
      [&] {
        const auto res =
            send_event(gw.port(), o.source, o.secret, event_json("again", "again-conv", 0));
        return ack_status(res, "again") == "accepted";
      },
      5s, 200ms));
  {
    const auto res = http_request(gw.port(), "POST", path, admin(o));
    INFO(res.describe());
    CHECK(res.status == 409);
    CHECK(res.body.find("\"queued\"") != std::string::npos);
  }
  CHECK(get_dead_letters(gw.port(), o).count == 1);  // kept, for a replay later if wanted

  backend.set_ok();
  REQUIRE(wait_delivered(backend, {"again"}, 10s).empty());
  std::this_thread::sleep_for(500ms);
  CHECK(deliveries(backend)["again"] == 1);
}

TEST_CASE("a replay refused for want of disk leaves its id known as a duplicate",
          "[integration][durability]") {
  TempDir dir;
  TestBackend backend;
  backend.set_status(400);
  auto o = durable_options(backend);
  const auto resend = [&](Gateway& gw) {
    return ack_status(send_event(gw.port(), o.source, o.secret, event_json("low", "low-conv", 0)),
                      "low");
  };
  {
    Gateway gw(botgate_binary(), dir, make_config(o));
    REQUIRE(resend(gw) == "accepted");
    REQUIRE(eventually([&] { return get_dead_letters(gw.port(), o).count == 1; }, 10s));
    gw.process().signal(SIGTERM);
    REQUIRE(gw.process().wait_exit(15s) == 0);
  }
  o.min_free = "1024GiB";  // more than any test machine has free
  Gateway gw(botgate_binary(), dir, make_config(o), "botgate-low");
  CHECK(resend(gw) == "duplicate");  // dead-lettered within dedup_window
  const auto res = http_request(gw.port(), "POST", "/v1/dead-letters/low/replay", admin(o));
  INFO(res.describe());
  CHECK(res.status == 503);
  CHECK(res.body.find("disk_full") != std::string::npos);
  // The refused replay changed nothing: the platform's resend is still a duplicate, and the
  // dead letter is still there.
  CHECK(resend(gw) == "duplicate");
  CHECK(get_dead_letters(gw.port(), o).count == 1);
}

namespace {

// Two shards logging under <dir>/queue while the backend is down, and 40 events over 8
// conversations acknowledged into them: a log for a test to damage before a restart.
struct LoggedEvents {
  explicit LoggedEvents(const std::string& prefix)
      : o(options(backend)),
        gw(std::make_unique<Gateway>(botgate_binary(), dir, make_config(o))),
        sent(send_accepted(gw->port(), o, prefix, 40, 8)) {}
  static GatewayOptions options(TestBackend& backend) {
    backend.stop();
    auto o = durable_options(backend);
    o.shards = 2;
    o.queue_dir = "queue";  // relative: resolved against the config file's directory
    return o;
  }
  // The oldest (or newest) non-empty event segment of the first shard that has one.
  std::filesystem::path segment(bool newest) const {
    for (int shard = 0; shard < o.shards; ++shard) {
      auto segs = segments(dir.path() / "queue" / ("shard-" + std::to_string(shard)));
      if (segs.empty()) continue;
      const auto& seg = newest ? segs.back() : segs.front();
      if (std::filesystem::file_size(seg) > 0) return seg;
    }
    return {};
  }
  // Writes `bytes` into the segment (appended, or in place of what it held).
  static void write_segment(const std::filesystem::path& seg, const std::string& bytes,
                            std::ios::openmode mode) {
    std::ofstream out(seg, std::ios::binary | mode);
    out << bytes;
    REQUIRE(out.good());
  }
  // Flips a bit of the last payload byte of record `index` (0-based) of `seg`, an event with
  // an intact record after it: a bit flipped on disk. Returns the id of that event in `sent`.
  static std::string damage_record(const std::filesystem::path& seg, int index,
                                   const std::vector<Sent>& sent) {
    // Records are u32 length, u32 crc, u64 seq, u8 type (1: event), payload
    // (storage/segment_log.hpp).
    std::string bytes = read_file(seg);
    auto u32_at = [&](std::size_t at) {
      std::uint32_t v = 0;
      for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(bytes[at + i]);
      return v;
    };
    constexpr std::size_t kHeader = 17;
    std::size_t off = 0;
    for (int r = 0; r < index; ++r) off += kHeader + u32_at(off);
    const std::size_t len = u32_at(off);
    REQUIRE(off + kHeader + len < bytes.size());  // an intact record follows it
    REQUIRE(static_cast<unsigned char>(bytes[off + 16]) == 1);
    const std::string payload = bytes.substr(off + kHeader, len);
    std::string damaged;
    for (const auto& s : sent) {
      if (payload.find("\"" + s.id + "\"") != std::string::npos) damaged = s.id;
    }
    INFO("segment " << seg.string() << ", record at " << off);
    REQUIRE(!damaged.empty());
    bytes[off + kHeader + len - 1] ^= 0x01;
    write_segment(seg, bytes, std::ios::trunc);
    return damaged;
  }
  // The backend back, botgate started again on the damaged log, and `line` seen in its log.
  void restart_expecting(const std::string& line) {
    backend.start();
    gw = gw->restart("botgate-2");
    REQUIRE(gw->process().wait_for_log(line, 10s));
  }

  TempDir dir;
  TestBackend backend;
  GatewayOptions o;
  std::unique_ptr<Gateway> gw;
  std::vector<Sent> sent;
};

}  // namespace

TEST_CASE("a torn log tail is truncated with a warning, and the intact events are delivered",
          "[integration][durability]") {
  LoggedEvents l("torn");
  auto& [dir, backend, o, gw, sent] = l;
  crash(*gw);

  // Garbage after the last record of one shard's newest segment, as a crash in the
  // middle of a write, or a flipped byte, would leave it.
  const std::filesystem::path torn = l.segment(true);
  INFO("no event segment under " << (dir.path() / "queue").string() << "/shard-N/events/");
  REQUIRE(!torn.empty());
  std::string garbage;
  SECTION("random bytes") {
    std::mt19937 rng(42);
    std::uniform_int_distribution<int> byte(1, 255);
    garbage.resize(77);
    for (auto& c : garbage) c = static_cast<char>(byte(rng));
  }
  SECTION("a whole record whose CRC does not match") {
    // u32 length, u32 crc, u64 seq, u8 type (1: event), payload; little-endian, as
    // storage/segment_log.hpp lays a record out.
    const std::string payload = event_json("forged", "forged-conv", 0);
    auto le = [&](std::uint64_t v, int bytes) {
      for (int i = 0; i < bytes; ++i) garbage.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    };
    le(payload.size(), 4);
    le(0xdeadbeef, 4);
    le(1'000'000, 8);
    le(1, 1);
    garbage += payload;
  }
  LoggedEvents::write_segment(torn, garbage, std::ios::app);
  l.restart_expecting("truncated");
  auto warned = lines_with(gw->log(), "truncated");
  INFO("log lines about the truncation:\n" << head(warned));
  CHECK(std::any_of(warned.begin(), warned.end(),
                    [](const auto& l) { return l.find("level=warn") != std::string::npos; }));
  auto missing = wait_delivered(backend, ids_of(sent));
  INFO("intact events never delivered: " << head(missing));
  REQUIRE(missing.empty());
  check_delivered_in_order(backend, sent);
  CHECK(deliveries(backend).count("forged") == 0);

  // The log goes on after the cut: events appended now survive the next crash.
  backend.stop();
  auto later = send_accepted(gw->port(), o, "after", 10, 2);
  crash(*gw);
  backend.start();
  gw = gw->restart("botgate-3");
  missing = wait_delivered(backend, ids_of(later));
  INFO("acked after the truncation, lost by the next crash: " << head(missing));
  CHECK(missing.empty());
  CHECK(gw->process().running());
}

TEST_CASE("a record damaged in the middle of the log costs that event only",
          "[integration][durability]") {
  LoggedEvents l("mid");
  auto& [dir, backend, o, gw, sent] = l;
  gw->process().signal(SIGTERM);
  REQUIRE(gw->process().wait_exit(15s) == 0);

  // The third record of a shard's first segment.
  const std::filesystem::path seg = l.segment(false);
  REQUIRE(!seg.empty());
  const std::string damaged = LoggedEvents::damage_record(seg, 2, sent);
  l.restart_expecting("damaged log records skipped");
  CHECK(lines_with(gw->log(), "truncated").empty());  // nothing after it was cut
  std::vector<Sent> kept;
  for (const auto& s : sent) {
    if (s.id != damaged) kept.push_back(s);
  }
  auto missing = wait_delivered(backend, ids_of(kept));
  INFO("events after the damaged one, never delivered: " << head(missing));
  CHECK(missing.empty());
  check_delivered_in_order(backend, kept);
  CHECK(deliveries(backend).count(damaged) == 0);
}

TEST_CASE("a backlog far beyond memory_window is delivered once each, in conversation order",
          "[integration][durability]") {
  TempDir dir;
  TestBackend backend;
  backend.stop();
  auto o = durable_options(backend);
  o.shards = 2;
  o.memory_window = 16;  // the smallest botgate accepts
  Gateway gw(botgate_binary(), dir, make_config(o));

  constexpr int kEvents = 300, kConvs = 6;  // ~150 per shard, ~50 per conversation
  auto sent = send_accepted(gw.port(), o, "mw", kEvents, kConvs);
  backend.start();

  auto missing = wait_delivered(backend, ids_of(sent), 60s);
  INFO("never delivered: " << head(missing));
  REQUIRE(missing.empty());
  std::this_thread::sleep_for(500ms);  // let a second copy show up before counting

  std::vector<std::string> twice;
  for (const auto& [id, n] : deliveries(backend)) {
    if (n != 1) twice.push_back(id + " x" + std::to_string(n));
  }
  INFO("delivered more than once: " << head(twice));
  CHECK(twice.empty());
  CHECK(backend.delivered_count() == static_cast<std::size_t>(kEvents));
  check_delivered_in_order(backend, sent);
}

TEST_CASE("a backlog record damaged while botgate runs costs that event only",
          "[integration][durability]") {
  TempDir dir;
  TestBackend backend;
  backend.stop();
  auto o = durable_options(backend);
  o.shards = 1;
  o.memory_window = 16;  // the 60th event waits on disk until it is read back
  o.queue_dir = "queue";
  Gateway gw(botgate_binary(), dir, make_config(o));
  const auto sent = send_accepted(gw.port(), o, "rb", 100, 4);
  const auto segs = segments(dir.path() / "queue" / "shard-0");
  REQUIRE(segs.size() == 1);
  const std::string damaged = LoggedEvents::damage_record(segs.front(), 59, sent);
  backend.start();

  std::vector<Sent> kept;
  for (const auto& s : sent) {
    if (s.id != damaged) kept.push_back(s);
  }
  auto missing = wait_delivered(backend, ids_of(kept), 30s);
  INFO("botgate log:\n" << gw.log());
  INFO("events other than the damaged one, never delivered: " << head(missing));
  REQUIRE(missing.empty());
  check_delivered_in_order(backend, kept);
  CHECK(deliveries(backend).count(damaged) == 0);
  // The shard goes on: it takes and delivers new events, and stays ready.
  CHECK(send_event(gw.port(), o.source, o.secret, event_json("rb-new", "rb-conv-new", 0)).status ==
        200);
  CHECK(wait_delivered(backend, {"rb-new"}, 10s).empty());
  CHECK(http_request(gw.port(), "GET", "/readyz").status == 200);
  const auto metrics = http_request(gw.port(), "GET", "/metrics").body;
  CHECK(metric_sum(metrics, "botgate_queue_depth") == 0);
  CHECK(metric_sum(metrics, "botgate_log_records_damaged_total") == 1);
  CHECK(metric_sum(metrics, "botgate_log_errors_total") == 0);
  const auto lines = lines_with(gw.log(), "damaged log record skipped");
  REQUIRE(lines.size() == 1);
  CHECK(lines.front().find("level=error") != std::string::npos);
  CHECK(lines.front().find("seq=60") != std::string::npos);
  CHECK(lines.front().find("00000000000000000001.log") != std::string::npos);
  CHECK(lines_with(gw.log(), "shard log failed").empty());
}

// A write past the process's file-size limit (RLIMIT_FSIZE, `ulimit -f`) fails with EFBIG,
// a disk error like any other: the shard's log stops and the gateway keeps running.
namespace {

struct Filled {
  std::vector<std::string> acked;  // ids answered 200 "accepted"
  Response refused;                // the first 503 (status 0 if none came)
  std::string refused_id;
};

// Sends events `<prefix><n>` with `text_bytes` of text, over `conversations` conversations,
// until one is refused with 503 or `max` went; every answer must be 200 or 503.
Filled send_until_refused(std::uint16_t port, const GatewayOptions& o, const std::string& prefix,
                          int conversations, std::size_t text_bytes, int max) {
  Filled out;
  auto conn = std::make_unique<HttpConnection>(port);
  for (int i = 0; i < max && out.refused.status == 0; ++i) {
    if (!conn->is_open()) conn = std::make_unique<HttpConnection>(port);
    const std::string id = prefix + std::to_string(i);
    auto res = send_event(*conn, o.source, o.secret,
                          event_json(id, "conv-" + std::to_string(i % conversations),
                                     i / conversations, std::string(text_bytes, 'x')));
    INFO(id << ": " << res.describe());
    REQUIRE((res.status == 200 || res.status == 503));
    if (res.status == 200) {
      REQUIRE(ack_status(res, id) == "accepted");
      out.acked.push_back(id);
    } else {
      out.refused = res;
      out.refused_id = id;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("a shard log that cannot write refuses events, is not ready, and loses no ack",
          "[integration][durability]") {
  TempDir dir;
  TestBackend backend;
  backend.set_status(400);  // the first event becomes a dead letter
  auto o = durable_options(backend);
  o.shards = 1;
  o.max_attempts = 1;
  const std::string config = make_config(o);
  // 64 KiB per file: a few hundred events fill the first segment.
  auto gw = std::make_unique<Gateway>(limited_binary(dir, botgate_binary(), "--fsize=65536"), dir,
                                      config);

  REQUIRE(send_event(gw->port(), o.source, o.secret, event_json("dl-1", "dl-conv", 0)).status ==
          200);
  REQUIRE(eventually([&] { return get_dead_letters(gw->port(), o).find("dl-1", o.source); }, 10s));
  backend.set_status(200);

  auto [acked, refused, refused_id] = send_until_refused(gw->port(), o, "ev-", 7, 200, 5000);
  INFO("botgate log:\n" << gw->log());
  REQUIRE(refused.status == 503);
  CHECK(refused.body.find("storage_error") != std::string::npos);
  CHECK(refused.header("retry-after") == "1");
  CHECK(acked.size() > 50);
  REQUIRE(gw->process().running());  // EFBIG, not death by SIGXFSZ

  // From now on: every event refused, not ready, replay refused, one error line.
  CHECK(send_event(gw->port(), o.source, o.secret, event_json("late", "conv-late", 0)).status ==
        503);
  auto ready = http_request(gw->port(), "GET", "/readyz");
  CHECK(ready.status == 503);
  CHECK(ready.body.find("storage_failed") != std::string::npos);
  CHECK(http_request(gw->port(), "POST", "/v1/dead-letters/dl-1/replay", admin(o)).status == 503);
  CHECK(get_dead_letters(gw->port(), o).find("dl-1", o.source) != nullptr);
  auto metrics = http_request(gw->port(), "GET", "/metrics").body;
  CHECK(metric_sum(metrics, "botgate_log_errors_total") >= 1);
  CHECK(lines_with(gw->log(), "shard log failed: refusing events").size() == 1);
  CHECK(gw->process().running());

  // Every acknowledged event reaches the backend, after a restart without the limit if not
  // before: the ack meant "stored".
  gw->process().signal(SIGTERM);
  REQUIRE(gw->process().wait_exit(15s).has_value());
  auto again = std::make_unique<Gateway>(botgate_binary(), dir, config, "botgate-after");
  auto missing = wait_delivered(backend, acked);
  INFO("acknowledged but never delivered: " << head(missing));
  CHECK(missing.empty());
  CHECK(http_request(again->port(), "GET", "/readyz").status == 200);
  CHECK(http_request(again->port(), "POST", "/v1/dead-letters/dl-1/replay", admin(o)).status ==
        200);
  for (const auto& r : backend.requests()) {  // nothing that was never sent, or refused
    INFO("delivered " << r.idempotency_key());
    CHECK((r.idempotency_key().rfind("ev-", 0) == 0 || r.idempotency_key() == "dl-1"));
    CHECK(r.idempotency_key() != refused_id);
  }
}

TEST_CASE("a disk filled by the backlog refuses new events and takes them again once delivered",
          "[integration][durability]") {
  TempDir dir;
  SmallDisk disk(dir.path() / "disk", "4m");
  if (!disk.mounted()) {
    WARN("cannot mount a tmpfs here (not root?): the full-disk path is not exercised");
    return;
  }
  TestBackend backend;
  backend.set_status(400);  // the first event becomes a dead letter
  auto o = durable_options(backend);
  o.shards = 1;
  o.queue_dir = "disk/q";
  o.segment_bytes = "1MiB";
  o.min_free = "1MiB";
  o.max_body = "64KiB";
  auto gw = std::make_unique<Gateway>(botgate_binary(), dir, make_config(o));
  REQUIRE(send_event(gw->port(), o.source, o.secret, event_json("dl-low", "dl-conv", 0)).status ==
          200);
  REQUIRE(eventually([&] { return get_dead_letters(gw->port(), o).find("dl-low", o.source); }));
  backend.set_status(503);  // the backlog stays on disk

  // 20 KB events (40 KB stored: the raw body and its text) until the disk is down to min_free.
  auto [acked, refused, refused_id] = send_until_refused(gw->port(), o, "fill-", 5, 20000, 400);
  INFO("botgate log:\n" << gw->log());
  REQUIRE(refused.status == 503);
  CHECK(refused.body.find("disk_full") != std::string::npos);
  CHECK(refused.header("retry-after") == "1");
  CHECK(acked.size() > 60);  // 3 MiB above min_free
  auto ready = http_request(gw->port(), "GET", "/readyz");
  CHECK(ready.status == 503);
  CHECK(ready.body.find("disk_full") != std::string::npos);
  auto metrics = http_request(gw->port(), "GET", "/metrics").body;
  CHECK(metric_value(metrics, "botgate_queue_disk_full") == std::optional<double>(1));
  CHECK(metric_sum(metrics, "botgate_log_errors_total") == 0);  // refused, not failed
  // A replay is refused like any new event, and the dead letter stays, listed and replayable.
  auto replay = http_request(gw->port(), "POST", "/v1/dead-letters/dl-low/replay", admin(o));
  CHECK(replay.status == 503);
  CHECK(replay.body.find("disk_full") != std::string::npos);
  CHECK(replay.header("retry-after") == "1");
  CHECK(get_dead_letters(gw->port(), o).find("dl-low", o.source) != nullptr);

  // The backend takes the backlog: completions are written into the headroom, the completed
  // segments go, and new events are taken again, all without a restart.
  backend.set_status(200);
  auto missing = wait_delivered(backend, acked);
  INFO("acknowledged but never delivered: " << head(missing));
  CHECK(missing.empty());
  CHECK(eventually([&] { return http_request(gw->port(), "GET", "/readyz").status == 200; }, 15s));
  auto late = send_event(gw->port(), o.source, o.secret,
                         event_json("after-room", "conv-late", 0, std::string(20000, 'x')));
  CHECK(late.status == 200);
  CHECK(wait_delivered(backend, {"after-room"}).empty());
  CHECK(http_request(gw->port(), "POST", "/v1/dead-letters/dl-low/replay", admin(o)).status == 200);
  CHECK(wait_delivered(backend, {"dl-low"}).empty());
  CHECK(lines_with(gw->log(), "queue disk low: refusing new events").size() == 1);
  CHECK(lines_with(gw->log(), "queue disk has room again").size() == 1);
  CHECK(lines_with(gw->log(), "shard log failed").empty());
  for (const auto& r : backend.requests()) CHECK(r.idempotency_key() != refused_id);
}

TEST_CASE("a gateway started below min_free says so at once and refuses events",
          "[integration][durability]") {
  TempDir dir;
  TestBackend backend;
  auto o = durable_options(backend);
  o.min_free = "1024GiB";  // more than any test machine has free
  Gateway gw(botgate_binary(), dir, make_config(o));

  // Never ready, not even in the moment after the listener opened, before each shard's log
  // (on its own thread) has probed the disk; then disk_full before any event was refused: the
  // state comes from the disk, not a refusal.
  int ready_answers = 0;
  CHECK(eventually(
      [&] {
        const auto ready = http_request(gw.port(), "GET", "/readyz");
        if (ready.status != 503) ++ready_answers;
        return ready.body.find("disk_full") != std::string::npos;
      },
      2s, 1ms));
  CHECK(ready_answers == 0);
  CHECK(metric_value(http_request(gw.port(), "GET", "/metrics").body, "botgate_queue_disk_full") ==
        std::optional<double>(o.shards));

  for (int i = 0; i < 3; ++i) {
    auto res = send_event(gw.port(), o.source, o.secret,
                          event_json("low-" + std::to_string(i), "low-conv", i));
    CHECK(res.status == 503);
    CHECK(res.body.find("disk_full") != std::string::npos);
  }
  CHECK(gw.process().running());
  // One line per shard entering the state; refusals are logged apart, at most once a second.
  CHECK(lines_with(gw.log(), "queue disk low: refusing new events").size() ==
        static_cast<std::size_t>(o.shards));
  std::this_thread::sleep_for(300ms);
  CHECK(backend.count() == 0);
}
