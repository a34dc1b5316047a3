// The crash test of issue 3: the bench load generator drives the real botgate binary
// while the test SIGKILLs it at random moments and restarts it on the same port and
// queue dir. Every event that got a 2xx ack must reach the sink, and the sink,
// de-duplicating by Idempotency-Key, must see each of them once and nothing else.
#include <signal.h>
#include <simdjson.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/client.hpp"
#include "tests/support/events.hpp"
#include "tests/support/gateway.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/test_backend.hpp"

using namespace botgate::test;
using namespace std::chrono_literals;

namespace {

// $BOTGATE_CRASH_SEED to repeat a run, else a fresh one.
std::uint64_t crash_seed() {
  if (const char* env = std::getenv("BOTGATE_CRASH_SEED"); env && *env) {
    return std::strtoull(env, nullptr, 10);
  }
  std::random_device rd;
  return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
}

// The event number n of an id "<run_id>-<n>", or -1 when it is not of that form.
std::int64_t event_number(const std::string& id, const std::string& run_id) {
  const std::string prefix = run_id + "-";
  if (id.size() <= prefix.size() || id.compare(0, prefix.size(), prefix) != 0) return -1;
  std::int64_t n = -1;
  const char* first = id.data() + prefix.size();
  const char* last = id.data() + id.size();
  auto [ptr, ec] = std::from_chars(first, last, n);
  if (ec != std::errc() || ptr != last || n < 0) return -1;
  return n;
}

std::vector<std::string> read_lines(const std::filesystem::path& p) {
  std::vector<std::string> out;
  std::istringstream in(read_file(p));
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

}  // namespace

TEST_CASE("SIGKILL at random moments under load loses no acknowledged event",
          "[integration][crash]") {
  const auto seed = crash_seed();
  std::cout << "[crash] seed " << seed << " (BOTGATE_CRASH_SEED=" << seed << " repeats it)"
            << std::endl;
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);

  TempDir dir("botgate-crash");
  TestBackend sink;
  GatewayOptions o;
  o.backend_ports = {sink.port()};
  o.listen_port = free_listen_port();
  o.max_attempts = 1000000;  // the sink never refuses: nothing may be dead-lettered
  o.max_age = "1h";
  o.backoff_base = "10ms";
  o.backoff_cap = "200ms";
  o.connect_timeout = "500ms";
  o.target_timeout = "2s";
  // Bounds the backlog (503 beyond it), so the sink catches up soon after the load.
  o.max_pending = 2000;
  auto gw = std::make_unique<Gateway>(botgate_binary(), dir, make_config(o));

  // The load: a closed loop on 8 connections for 20 s (kEvents is only a cap, well above
  // what this machine acks in that time, so the kills fall while events flow). loadgen
  // reconnects after every kill; an event whose connection broke before its answer is
  // never sent again.
  constexpr std::uint64_t kEvents = 120000;
  constexpr int kLoadSeconds = 20;
  constexpr int kMinKills = 10;
  const std::string run_id = "crash" + std::to_string(seed % 1000000);
  const auto ids_file = dir / "acked.ids";
  std::vector<std::string> args{loadgen_binary(), "--json"};
  auto flag = [&](const std::string& name, const std::string& value) {
    args.push_back(name);
    args.push_back(value);
  };
  flag("--port", std::to_string(o.listen_port));
  flag("--source", o.source);
  flag("--secret", o.secret);
  flag("--events", std::to_string(kEvents));
  flag("--duration", std::to_string(kLoadSeconds));
  flag("--drain", "3");
  flag("--connections", "8");
  flag("--conversations", "64");
  flag("--run-id", run_id);
  flag("--ids-file", ids_file.string());
  Process loadgen(args, dir / "loadgen.out", dir / "loadgen.err");

  // Kill and restart botgate, 300-1500 ms apart, for as long as loadgen runs.
  std::uniform_int_distribution<int> pause_ms(300, 1500);
  int kills = 0;
  std::vector<std::string> schedule;
  const auto t0 = std::chrono::steady_clock::now();
  while (loadgen.running()) {
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(pause_ms(rng));
    while (std::chrono::steady_clock::now() < until && loadgen.running()) {
      std::this_thread::sleep_for(10ms);
    }
    if (!loadgen.running()) break;
    gw->process().kill();
    auto code = gw->process().wait_exit(10s);
    REQUIRE(code == 128 + SIGKILL);  // it was still running: it did not die on its own
    ++kills;
    schedule.push_back(std::to_string(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count()));
    gw = gw->restart("botgate-" + std::to_string(kills));
  }
  auto load_code = loadgen.wait_exit(10s);
  INFO("loadgen stdout: " << loadgen.stdout_text() << "\nloadgen stderr: " << loadgen.log());
  INFO("kills at ms: " << head(schedule, 100));
  REQUIRE(load_code == 0);
  CHECK(kills >= kMinKills);

  // What loadgen sent and what got a 2xx.
  std::int64_t sent = -1, ok_2xx = -1, non_2xx = -1, unanswered = -1;
  {
    simdjson::dom::parser parser;
    simdjson::dom::object summary;
    REQUIRE(parser.parse(loadgen.stdout_text()).get_object().get(summary) == simdjson::SUCCESS);
    REQUIRE(summary["sent"].get_int64().get(sent) == simdjson::SUCCESS);
    REQUIRE(summary["ok_2xx"].get_int64().get(ok_2xx) == simdjson::SUCCESS);
    REQUIRE(summary["non_2xx"].get_int64().get(non_2xx) == simdjson::SUCCESS);
    REQUIRE(summary["unanswered"].get_int64().get(unanswered) == simdjson::SUCCESS);
  }
  const auto acked_list = read_lines(ids_file);
  const std::set<std::string> acked(acked_list.begin(), acked_list.end());
  REQUIRE(acked_list.size() == static_cast<std::size_t>(ok_2xx));
  REQUIRE(acked.size() == acked_list.size());  // loadgen never sends an event twice
  // The load really ran through the kills.
  REQUIRE(acked.size() >= 1000);

  // botgate keeps running until the sink has every acknowledged event.
  std::set<std::string> got;
  std::vector<std::string> missing;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  for (;;) {
    got.clear();
    for (const auto& r : sink.requests()) {
      if (r.delivered()) got.insert(r.idempotency_key());
    }
    missing.clear();
    for (const auto& id : acked) {
      if (!got.count(id)) missing.push_back(id);
    }
    if (missing.empty() || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(250ms);
  }
  std::this_thread::sleep_for(500ms);  // let late duplicates arrive before counting
  CHECK(gw->process().running());

  std::size_t raw = 0, unknown = 0, wrong_body = 0;
  std::map<std::string, int> per_id;
  std::vector<std::string> unknown_ids, wrong_bodies;
  for (const auto& r : sink.requests()) {
    if (!r.delivered()) continue;
    ++raw;
    const auto key = r.idempotency_key();
    ++per_id[key];
    auto n = event_number(key, run_id);
    if (n < 0 || n >= sent) {
      ++unknown;
      unknown_ids.push_back("'" + key + "'");
    }
    if (r.body.find("\"id\":\"" + key + "\"") == std::string::npos) {
      ++wrong_body;
      wrong_bodies.push_back(key + ": " + r.body.substr(0, 120));
    }
  }
  std::size_t stored_unacked = 0;  // stored, but the answer was lost to a kill
  for (const auto& [id, n] : per_id) {
    if (!acked.count(id)) ++stored_unacked;
  }
  const std::size_t duplicates = raw - per_id.size();
  std::cout << "[crash] seed " << seed << ": " << kills << " kills; loadgen sent " << sent
            << ", acked " << acked.size() << ", non-2xx " << non_2xx << ", unanswered "
            << unanswered << "; sink: " << raw << " deliveries of " << per_id.size()
            << " distinct ids, " << duplicates << " raw duplicates, " << stored_unacked
            << " delivered without an ack (answer lost to a kill)" << std::endl;

  // De-duplicated by Idempotency-Key, the sink holds every acknowledged event (once, as
  // a set does) and nothing loadgen did not send.
  INFO("acked but never delivered: " << head(missing));
  CHECK(missing.empty());
  INFO("delivered ids loadgen never sent: " << head(unknown_ids));
  CHECK(unknown == 0);
  INFO("bodies that do not carry their Idempotency-Key as id: " << head(wrong_bodies, 3));
  CHECK(wrong_body == 0);
}
