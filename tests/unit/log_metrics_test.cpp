#include <simdjson.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <limits>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/log.hpp"
#include "core/metrics.hpp"

using namespace std::chrono_literals;
namespace blog = botgate::log;
using botgate::Metrics;

namespace {

// Parses one rendered JSON log line; fails the test if it is not valid JSON.
simdjson::dom::object parse_json_line(simdjson::dom::parser& parser, const std::string& line) {
  simdjson::dom::element doc;
  auto err = parser.parse(line).get(doc);
  INFO("line: " << line);
  REQUIRE(err == simdjson::SUCCESS);
  simdjson::dom::object obj;
  REQUIRE(doc.get_object().get(obj) == simdjson::SUCCESS);
  return obj;
}

std::string field(simdjson::dom::object obj, std::string_view key) {
  std::string_view v;
  if (obj[key].get_string().get(v) != simdjson::SUCCESS) return "<missing>";
  return std::string(v);
}

std::vector<std::string> json_keys(simdjson::dom::object obj) {
  std::vector<std::string> keys;
  for (auto kv : obj) keys.emplace_back(kv.key);
  return keys;
}

// The sample value of the first line that starts with `series` followed by a space.
std::string sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return line.substr(series.size() + 1);
    }
  }
  return "<absent>";
}

bool has_line(const std::string& text, const std::string& wanted) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line == wanted) return true;
  }
  return false;
}

}  // namespace

// ---------------------------------------------------------------------------
// blog::render, logfmt

TEST_CASE("logfmt line has ts, level, msg then fields in order", "[log]") {
  const std::string line =
      blog::render(blog::Format::logfmt, blog::Level::warn, "disk", {{"a", "1"}, {"b", "two"}});
  const std::regex shape(
      R"(^ts=\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z level=warn msg=disk a=1 b=two\n$)");
  INFO("line: " << line);
  CHECK(std::regex_match(line, shape));
}

TEST_CASE("logfmt renders numbers without quotes", "[log]") {
  const std::string line = blog::render(blog::Format::logfmt, blog::Level::info, "m",
                                        {{"n", 42}, {"neg", -7}, {"u", std::uint64_t{18}}});
  INFO("line: " << line);
  CHECK(line.find(" n=42 neg=-7 u=18\n") != std::string::npos);
}

TEST_CASE("logfmt quotes values with spaces, quotes, equals and newlines", "[log]") {
  const std::string line = blog::render(blog::Format::logfmt, blog::Level::error, "two words",
                                        {{"space", "a b"},
                                         {"quote", "say \"hi\""},
                                         {"nl", "l1\nl2"},
                                         {"eq", "k=v"},
                                         {"empty", ""},
                                         {"bs", "a\\b"},
                                         {"plain", "ok"}});
  INFO("line: " << line);
  CHECK(line.find(" level=error msg=\"two words\" ") != std::string::npos);
  CHECK(line.find(" space=\"a b\"") != std::string::npos);
  CHECK(line.find(R"( quote="say \"hi\"")") != std::string::npos);
  CHECK(line.find(R"( nl="l1\nl2")") != std::string::npos);
  CHECK(line.find(R"( eq="k=v")") != std::string::npos);
  CHECK(line.find(R"( empty="")") != std::string::npos);
  CHECK(line.find(R"( bs="a\\b")") != std::string::npos);
  CHECK(line.find(" plain=ok\n") != std::string::npos);
}

TEST_CASE("logfmt line is exactly one line whatever the values hold", "[log]") {
  const std::string line = blog::render(blog::Format::logfmt, blog::Level::info, "m\nx",
                                        {{"v", "a\r\nb\n\nc"}, {"tab", "a\tb"}, {"ctl", "\x01"}});
  INFO("line: " << line);
  REQUIRE_FALSE(line.empty());
  CHECK(line.back() == '\n');
  CHECK(line.find('\n') == line.size() - 1);
  CHECK(line.find('\r') == std::string::npos);
  CHECK(line.find('\x01') == std::string::npos);
}

TEST_CASE("logfmt level names", "[log]") {
  CHECK(blog::render(blog::Format::logfmt, blog::Level::debug, "m", {}).find(" level=debug ") !=
        std::string::npos);
  CHECK(blog::render(blog::Format::logfmt, blog::Level::info, "m", {}).find(" level=info ") !=
        std::string::npos);
  CHECK(blog::render(blog::Format::logfmt, blog::Level::warn, "m", {}).find(" level=warn ") !=
        std::string::npos);
  CHECK(blog::render(blog::Format::logfmt, blog::Level::error, "m", {}).find(" level=error ") !=
        std::string::npos);
}

// ---------------------------------------------------------------------------
// blog::render, JSON

TEST_CASE("JSON log line is a valid object with ts, level, msg then fields in order", "[log]") {
  const std::string line = blog::render(blog::Format::json, blog::Level::info, "started",
                                        {{"port", 8080}, {"host", "h"}});
  REQUIRE_FALSE(line.empty());
  CHECK(line.back() == '\n');
  CHECK(line.find('\n') == line.size() - 1);
  simdjson::dom::parser parser;
  auto obj = parse_json_line(parser, line);
  CHECK(json_keys(obj) == std::vector<std::string>{"ts", "level", "msg", "port", "host"});
  CHECK(field(obj, "level") == "info");
  CHECK(field(obj, "msg") == "started");
  CHECK(field(obj, "host") == "h");
  std::int64_t port = 0;
  CHECK(obj["port"].get_int64().get(port) == simdjson::SUCCESS);  // a number, not a string
  CHECK(port == 8080);
  CHECK(std::regex_match(field(obj, "ts"),
                         std::regex(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)")));
}

TEST_CASE("JSON log line writes numbers and booleans bare, and a non-finite one as a string",
          "[log]") {
  const std::string line = blog::render(blog::Format::json, blog::Level::warn, "m",
                                        {{"n", -3},
                                         {"u", std::uint64_t{18446744073709551615u}},
                                         {"ms", 2.5},
                                         {"ok", true},
                                         {"inf", std::numeric_limits<double>::infinity()},
                                         {"s", "7"}});
  simdjson::dom::parser parser;
  auto obj = parse_json_line(parser, line);
  std::int64_t n = 0;
  std::uint64_t u = 0;
  double ms = 0;
  bool ok = false;
  CHECK(obj["n"].get_int64().get(n) == simdjson::SUCCESS);
  CHECK(n == -3);
  CHECK(obj["u"].get_uint64().get(u) == simdjson::SUCCESS);
  CHECK(u == 18446744073709551615u);
  CHECK(obj["ms"].get_double().get(ms) == simdjson::SUCCESS);
  CHECK(ms == 2.5);
  CHECK(obj["ok"].get_bool().get(ok) == simdjson::SUCCESS);
  CHECK(ok);
  CHECK(field(obj, "inf") == "inf");
  CHECK(field(obj, "s") == "7");  // a string stays one
}

TEST_CASE("JSON log line escapes quotes, backslashes and control characters", "[log]") {
  const std::string tricky = std::string("q\"b\\n\nr\rt\tz\x01\x1f") + '\0' + "end";
  const std::string line = blog::render(blog::Format::json, blog::Level::warn, "m \"x\"",
                                        {{"v", tricky}, {"u", "h\xc3\xa9"}});
  INFO("line: " << line);
  CHECK(line.find(R"("v":"q\"b\\n\nr\rt\tz\u0001\u001f\u0000end")") != std::string::npos);
  simdjson::dom::parser parser;
  auto obj = parse_json_line(parser, line);
  // Round trip: what a log shipper reads back is exactly what was logged.
  CHECK(field(obj, "v") == tricky);
  CHECK(field(obj, "msg") == "m \"x\"");
  CHECK(field(obj, "u") == "h\xc3\xa9");
  CHECK(field(obj, "level") == "warn");
}

TEST_CASE("JSON log line stays valid JSON when a value holds invalid UTF-8", "[log]") {
  // Values such as a request path come from the network and may hold any byte.
  const std::string line = blog::render(blog::Format::json, blog::Level::info, "unknown route",
                                        {{"path", "/x\xff\xfe/y"}, {"after", "ok"}});
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  INFO("line: " << line);
  CHECK(parser.parse(line).get(doc) == simdjson::SUCCESS);
}

TEST_CASE("log parse_level and parse_format accept only known names", "[log]") {
  CHECK(blog::parse_level("debug") == blog::Level::debug);
  CHECK(blog::parse_level("info") == blog::Level::info);
  CHECK(blog::parse_level("warn") == blog::Level::warn);
  CHECK(blog::parse_level("error") == blog::Level::error);
  CHECK_FALSE(blog::parse_level("INFO"));
  CHECK_FALSE(blog::parse_level("trace"));
  CHECK_FALSE(blog::parse_level(""));
  CHECK(blog::parse_format("logfmt") == blog::Format::logfmt);
  CHECK(blog::parse_format("json") == blog::Format::json);
  CHECK_FALSE(blog::parse_format("text"));
}

// ---------------------------------------------------------------------------
// Metrics::render

TEST_CASE("metrics exposition declares every family with HELP and TYPE", "[metrics]") {
  Metrics m(2, {"t1", "t2"});
  const std::string text = m.render();
  for (const char* family :
       {"botgate_http_requests_total counter", "botgate_events_accepted_total counter",
        "botgate_events_rejected_total counter", "botgate_events_delivered_total counter",
        "botgate_events_dead_lettered_total counter", "botgate_delivery_retries_total counter",
        "botgate_queue_depth gauge", "botgate_deliveries_total counter",
        "botgate_target_in_flight gauge", "botgate_ingest_to_ack_seconds histogram",
        "botgate_end_to_end_seconds histogram"}) {
    INFO("family: " << family);
    CHECK(has_line(text, std::string("# TYPE ") + family));
    const std::string name = std::string(family).substr(0, std::string(family).find(' '));
    CHECK(text.find("# HELP " + name + " ") != std::string::npos);
  }
  // Every line is a comment or "series value"; the text ends with a newline.
  REQUIRE_FALSE(text.empty());
  CHECK(text.back() == '\n');
  std::istringstream in(text);
  std::string line;
  const std::regex sample_line(R"(^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? \S+$)");
  while (std::getline(in, line)) {
    if (line.rfind("# ", 0) == 0) continue;
    INFO("line: " << line);
    CHECK(std::regex_match(line, sample_line));
  }
}

TEST_CASE("metrics counters move after they are counted", "[metrics]") {
  Metrics m(1, {"t1"});
  CHECK(sample(m.render(), "botgate_events_accepted_total") == "0");
  CHECK(sample(m.render(), R"(botgate_events_rejected_total{reason="malformed"})") == "0");
  CHECK(sample(m.render(), R"(botgate_http_requests_total{route="events",status="200"})") ==
        "<absent>");

  m.count_request(botgate::HttpRoute::events, 200);
  m.count_request(botgate::HttpRoute::events, 200);
  m.count_request(botgate::HttpRoute::events, 401);
  m.count_request(botgate::HttpRoute::healthz, 418);  // not a tracked status
  m.count_rejected(botgate::RejectReason::malformed);
  m.count_rejected(botgate::RejectReason::shards_full);
  m.count_rejected(botgate::RejectReason::shards_full);
  m.events_accepted().inc();
  m.events_accepted().inc(4);
  m.events_delivered().inc();
  m.events_dead_lettered().inc(2);
  m.delivery_retries().inc(3);
  m.target(0).count(botgate::DeliveryOutcome::server_error);
  m.target(0).in_flight.add(2);

  const std::string text = m.render();
  INFO(text);
  CHECK(sample(text, R"(botgate_http_requests_total{route="events",status="200"})") == "2");
  CHECK(sample(text, R"(botgate_http_requests_total{route="events",status="401"})") == "1");
  CHECK(sample(text, R"(botgate_http_requests_total{route="healthz",status="other"})") == "1");
  CHECK(sample(text, R"(botgate_events_rejected_total{reason="malformed"})") == "1");
  CHECK(sample(text, R"(botgate_events_rejected_total{reason="shards_full"})") == "2");
  CHECK(sample(text, R"(botgate_events_rejected_total{reason="bad_signature"})") == "0");
  CHECK(m.rejected(botgate::RejectReason::shards_full) == 2);
  CHECK(sample(text, "botgate_events_accepted_total") == "5");
  CHECK(sample(text, "botgate_events_delivered_total") == "1");
  CHECK(sample(text, "botgate_events_dead_lettered_total") == "2");
  CHECK(sample(text, "botgate_delivery_retries_total") == "3");
  CHECK(sample(text, R"(botgate_deliveries_total{target="t1",outcome="server_error"})") == "1");
  CHECK(sample(text, R"(botgate_deliveries_total{target="t1",outcome="success"})") == "0");
  CHECK(sample(text, R"(botgate_target_in_flight{target="t1"})") == "2");
}

// A status botgate answers that had no series of its own was exported as status="other", and a
// dashboard could not tell a 501 from a teapot.
TEST_CASE("metrics count every status botgate answers under its own code", "[metrics]") {
  Metrics m(1, {});
  // Every final status the server or the handlers answer (README's status table, the admin
  // API's 409, and the transport's 408, 413 and 501).
  const unsigned answered[] = {200, 400, 401, 404, 405, 408, 409, 413, 501, 503};
  for (const unsigned status : answered) m.count_request(botgate::HttpRoute::readyz, status);
  const std::string text = m.render();
  INFO(text);
  for (const unsigned status : answered) {
    INFO("status " << status);
    const std::string series =
        R"(botgate_http_requests_total{route="readyz",status=")" + std::to_string(status) + R"("})";
    CHECK(sample(text, series) == "1");
  }
  CHECK(sample(text, R"(botgate_http_requests_total{route="readyz",status="other"})") ==
        "<absent>");
}

TEST_CASE("metrics histogram buckets are cumulative and _count matches observations", "[metrics]") {
  Metrics m(1, {});
  auto& h = m.end_to_end();
  h.observe(30us);  // <= 5e-05
  h.observe(1ms);   // exactly on the 0.001 bound: le is inclusive
  h.observe(2ms);   // <= 0.0025
  h.observe(3s);    // <= 5
  h.observe(100s);  // only +Inf
  CHECK(h.count() == 5);
  const std::string text = m.render();
  INFO(text);
  const std::string b = "botgate_end_to_end_seconds_bucket";
  CHECK(sample(text, b + R"({le="5e-05"})") == "1");
  CHECK(sample(text, b + R"({le="0.0001"})") == "1");
  CHECK(sample(text, b + R"({le="0.0005"})") == "1");
  CHECK(sample(text, b + R"({le="0.001"})") == "2");
  CHECK(sample(text, b + R"({le="0.0025"})") == "3");
  CHECK(sample(text, b + R"({le="2.5"})") == "3");
  CHECK(sample(text, b + R"({le="5"})") == "4");
  CHECK(sample(text, b + R"({le="60"})") == "4");
  CHECK(sample(text, b + R"({le="+Inf"})") == "5");
  CHECK(sample(text, "botgate_end_to_end_seconds_count") == "5");
  const double sum = std::stod(sample(text, "botgate_end_to_end_seconds_sum"));
  CHECK(sum == Approx(103.00303).epsilon(1e-9));
  // The other histogram is untouched.
  CHECK(sample(text, R"(botgate_ingest_to_ack_seconds_bucket{le="+Inf"})") == "0");
  CHECK(sample(text, "botgate_ingest_to_ack_seconds_count") == "0");
}

TEST_CASE("metrics histogram buckets never decrease and end at _count", "[metrics]") {
  Metrics m(1, {});
  auto& h = m.ingest_to_ack();
  for (int i = 0; i < 200; ++i) h.observe(std::chrono::microseconds(i * i * 37));
  const std::string text = m.render();
  std::istringstream in(text);
  std::string line;
  const std::string prefix = "botgate_ingest_to_ack_seconds_bucket{le=\"";
  std::uint64_t previous = 0;
  int buckets = 0;
  std::string last;
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    const auto v = std::stoull(line.substr(line.rfind(' ') + 1));
    INFO("line: " << line);
    CHECK(v >= previous);
    previous = v;
    last = line;
    ++buckets;
  }
  CHECK(buckets == static_cast<int>(botgate::Histogram::kBounds.size()) + 1);
  CHECK(last.find("le=\"+Inf\"") != std::string::npos);
  CHECK(previous == 200);
  CHECK(sample(text, "botgate_ingest_to_ack_seconds_count") == "200");
}

TEST_CASE("metrics histogram _count equals its +Inf bucket while other threads observe",
          "[metrics]") {
  Metrics m(1, {});
  auto& h = m.end_to_end();
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < 2; ++t) {
    writers.emplace_back([&, t] {
      for (std::uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        h.observe(std::chrono::microseconds(50 + (i * 37 + t) % 200000));
      }
    });
  }
  int mismatches = 0;
  std::string example;
  for (int r = 0; r < 300; ++r) {
    const std::string text = m.render();
    const auto inf = sample(text, R"(botgate_end_to_end_seconds_bucket{le="+Inf"})");
    const auto count = sample(text, "botgate_end_to_end_seconds_count");
    if (inf != count) {
      ++mismatches;
      example = "+Inf " + inf + ", _count " + count;
    }
  }
  stop = true;
  for (auto& w : writers) w.join();
  INFO(example);
  CHECK(mismatches == 0);
}

TEST_CASE("metrics render one queue_depth series per shard", "[metrics]") {
  Metrics m(3, {});
  m.queue_depth(0).set(5);
  m.queue_depth(2).set(7);
  m.queue_depth(2).add(-2);
  const std::string text = m.render();
  INFO(text);
  CHECK(sample(text, R"(botgate_queue_depth{shard="0"})") == "5");
  CHECK(sample(text, R"(botgate_queue_depth{shard="1"})") == "0");
  CHECK(sample(text, R"(botgate_queue_depth{shard="2"})") == "5");
  CHECK(sample(text, R"(botgate_queue_depth{shard="3"})") == "<absent>");
}

TEST_CASE("metrics render every target and outcome", "[metrics]") {
  Metrics m(1, {"alpha", "beta"});
  REQUIRE(m.find_target("beta") != nullptr);
  CHECK(m.find_target("beta")->name == "beta");
  CHECK(m.find_target("gamma") == nullptr);
  m.find_target("beta")->count(botgate::DeliveryOutcome::timeout);
  const std::string text = m.render();
  for (const char* t : {"alpha", "beta"}) {
    for (const char* o : {"success", "server_error", "timeout", "connect_error", "rejected"}) {
      const std::string series =
          std::string("botgate_deliveries_total{target=\"") + t + "\",outcome=\"" + o + "\"}";
      INFO(series);
      CHECK(sample(text, series) != "<absent>");
    }
  }
  CHECK(sample(text, R"(botgate_deliveries_total{target="beta",outcome="timeout"})") == "1");
  CHECK(sample(text, R"(botgate_deliveries_total{target="alpha",outcome="timeout"})") == "0");
}

TEST_CASE("metrics export token fetches and platform errors for account targets only",
          "[metrics]") {
  Metrics m(1, {"be", "acct"});
  m.find_target("acct")->account = true;
  m.find_target("acct")->token_fetches_failed.inc();
  const std::string text = m.render();
  CHECK(sample(text, R"(botgate_token_fetches_total{target="acct",result="ok"})") == "0");
  CHECK(sample(text, R"(botgate_token_fetches_total{target="acct",result="fail"})") == "1");
  CHECK(sample(text, R"(botgate_platform_errors_total{target="acct"})") == "0");
  CHECK(sample(text, R"(botgate_token_fetches_total{target="be",result="ok"})") == "<absent>");
  CHECK(sample(text, R"(botgate_token_fetches_total{target="be",result="fail"})") == "<absent>");
  CHECK(sample(text, R"(botgate_platform_errors_total{target="be"})") == "<absent>");
  // The http target's delivery series stay.
  CHECK(sample(text, R"(botgate_deliveries_total{target="be",outcome="success"})") == "0");
}
