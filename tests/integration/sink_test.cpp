// bench/sink, the backend every benchmark figure is counted at: it answers pipelined
// requests in order (those already buffered together), counts and de-duplicates the
// POSTs, and writes --keys-file lines only for requests it answered. These tests hold
// the framing and the counts; that buffered answers share one write is a matter of
// cost, which the benchmarks show (docs/benchmarks.md), not of behaviour.
#include <catch2/catch.hpp>
#include <csignal>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/eventually.hpp"
#include "tests/support/process.hpp"
#include "tests/support/raw_conn.hpp"
#include "tests/support/temp_dir.hpp"

using namespace botgate::test;
using namespace std::chrono_literals;

namespace {

std::string sink_binary() {
  if (const char* env = std::getenv("BOTGATE_SINK"); env && *env) return env;
  return BOTGATE_SINK;
}

std::string post(const std::string& key, const std::string& body = R"({"id":"x"})") {
  return "POST /v1/deliver HTTP/1.1\r\nHost: 127.0.0.1\r\nIdempotency-Key: " + key +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

struct Sink {
  explicit Sink(const TempDir& dir, std::vector<std::string> extra = {})
      : keys(dir.path() / "keys.txt"),
        proc(
            [&] {
              std::vector<std::string> a{sink_binary(), "--keys-file", keys.string()};
              a.insert(a.end(), extra.begin(), extra.end());
              return a;
            }(),
            dir.path() / "sink.out", dir.path() / "sink.out") {
    static const std::regex listening(R"(listening port=(\d+))");
    REQUIRE(proc.wait_for_log(listening));
    std::smatch m;
    const std::string text = proc.stdout_text();
    REQUIRE(std::regex_search(text, m, listening));
    port = static_cast<std::uint16_t>(std::stoul(m[1].str()));
  }

  // The summary line "  NAME   VALUE" printed at exit.
  std::string summary(const std::string& name) const {
    std::smatch m;
    const std::string text = proc.stdout_text();
    const std::regex re("  " + name + R"( +(\d+))");
    return std::regex_search(text, m, re) ? m[1].str() : "?";
  }

  std::vector<std::string> key_lines() const {
    std::ifstream in(keys);
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);) out.push_back(line.substr(0, line.find(' ')));
    return out;
  }

  // The sink writes a batch's lines once the write of its answers has completed, which
  // may be a moment after the client has read them: waits for `n` lines (or 5 s).
  std::vector<std::string> key_lines(std::size_t n) const {
    eventually([&] { return key_lines().size() >= n; }, 5s);
    return key_lines();
  }

  std::filesystem::path keys;
  Process proc;
  std::uint16_t port = 0;
};

}  // namespace

TEST_CASE("sink answers pipelined requests in order, and waits for one only half sent", "[sink]") {
  TempDir dir;
  Sink sink(dir);
  RawConn c(sink.port);
  const std::string fourth = post("k3");
  const auto half = fourth.size() / 2;
  // Three whole requests (the third repeats a key) and half of a fourth, in one send.
  REQUIRE(c.send(post("k1") + post("k2") + post("k1") + fourth.substr(0, half)));
  for (int i = 0; i < 3; ++i) {
    auto r = c.read_response();
    INFO("answer " << i << ": " << describe(r));
    REQUIRE(r.complete);
    CHECK(r.status == 200);
    CHECK(r.body == "{}");
  }
  // Nothing for the half request yet, and the connection stays open.
  CHECK(!c.wait_closed(300ms).has_value());
  CHECK(c.leftover().empty());
  CHECK(sink.key_lines(3) == std::vector<std::string>{"k1", "k2", "k1"});

  REQUIRE(c.send(fourth.substr(half)));
  auto r = c.read_response();
  INFO(describe(r));
  REQUIRE(r.complete);
  CHECK(r.status == 200);
  CHECK(sink.key_lines(4) == std::vector<std::string>{"k1", "k2", "k1", "k3"});

  sink.proc.signal(SIGTERM);
  REQUIRE(sink.proc.wait_exit() == 0);
  CHECK(sink.summary("received") == "4");
  CHECK(sink.summary("unique") == "3");
  CHECK(sink.summary("duplicates") == "1");
}

TEST_CASE("sink answers the good requests before a malformed one, then 400 and close", "[sink]") {
  TempDir dir;
  Sink sink(dir);
  RawConn c(sink.port);
  REQUIRE(c.send(post("a") + post("b") + "NOT HTTP AT ALL\r\n\r\n"));
  for (const char* key : {"a", "b"}) {
    auto r = c.read_response();
    INFO(key << ": " << describe(r));
    REQUIRE(r.complete);
    CHECK(r.status == 200);
  }
  auto bad = c.read_response();
  INFO(describe(bad));
  REQUIRE(bad.complete);
  CHECK(bad.status == 400);
  CHECK(bad.header("connection") == "close");
  CHECK(c.wait_closed(3s).has_value());
  CHECK(sink.key_lines(2) == std::vector<std::string>{"a", "b"});
}

TEST_CASE("sink with --expect answers the last event, then exits with its summary", "[sink]") {
  TempDir dir;
  Sink sink(dir, {"--expect", "3"});
  RawConn c(sink.port);
  REQUIRE(c.send(post("e1") + post("e1") + post("e2") + post("e3") + post("e4")));
  // e3 completes --expect: everything up to it is answered before the sink stops.
  for (int i = 0; i < 4; ++i) {
    auto r = c.read_response();
    INFO("answer " << i << ": " << describe(r));
    REQUIRE(r.complete);
    CHECK(r.status == 200);
  }
  REQUIRE(sink.proc.wait_exit() == 0);
  // e4, if it was read with the rest, is answered too.
  const std::string unique = sink.summary("unique");
  CHECK((unique == "3" || unique == "4"));
  CHECK(sink.proc.stdout_text().find("stop=expect") != std::string::npos);
}
