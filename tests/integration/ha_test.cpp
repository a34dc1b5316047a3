// High availability of the real botgate binary (issue 4), with fault injection on real
// HTTP backends on 127.0.0.1: active http and dingdong probes, passive outlier ejection,
// re-routing of in-flight deliveries, waiting while no target is eligible, zero loss
// across kill/revive cycles, sticky routing, least-inflight, per-target concurrency and
// rate limits, GET /v1/targets and the HA metrics.
#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/support/client.hpp"
#include "tests/support/events.hpp"
#include "tests/support/fake_platform.hpp"
#include "tests/support/gateway.hpp"
#include "tests/support/process.hpp"
#include "tests/support/raw_conn.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/test_backend.hpp"

using namespace botgate::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Ms = std::chrono::milliseconds;

namespace {

const std::string kSource = "demo";
const std::string kSecret = "test-secret-0123456789";
const std::string kToken = "admin-token";
const std::string kPool = "main";

// ---------------------------------------------------------------------------
// Config

struct Base {
  int max_attempts = 100;  // failures are retried, never dead-lettered, during a test
  std::string max_age = "1h";
  std::string log_level = "info";
};

// Everything but the pools and targets: the demo source routes to the pool "main".
std::string base_toml(const Base& b = {}) {
  return fmt::format(R"([server]
listen = "127.0.0.1:0"
io_threads = 1
admin_token = "{token}"
drain_timeout = "2s"

[log]
level = "{level}"
format = "logfmt"

[actors]
threads = 2

[queue]
shards = 4
max_pending = 100000
max_attempts = {max_attempts}
max_age = "{max_age}"

[backoff]
base = "10ms"
cap = "200ms"

[[sources]]
name = "{source}"
kind = "generic"
secret = "{secret}"
route = "{pool}"
)",
                     fmt::arg("token", kToken), fmt::arg("level", b.log_level),
                     fmt::arg("max_attempts", b.max_attempts), fmt::arg("max_age", b.max_age),
                     fmt::arg("source", kSource), fmt::arg("secret", kSecret),
                     fmt::arg("pool", kPool));
}

// The pool "main"; `extra` holds more keys, e.g. an `outlier = {...}` inline table.
std::string pool_toml(const std::string& policy, const std::vector<std::string>& targets,
                      const std::string& extra = "") {
  std::string list;
  for (const auto& t : targets) list += (list.empty() ? "" : ", ") + ("\"" + t + "\"");
  return fmt::format("\n[[pools]]\nname = \"{}\"\npolicy = \"{}\"\ntargets = [{}]\n{}\n", kPool,
                     policy, list, extra);
}

// One http target; `extra` holds more keys (probe, limits).
std::string target_toml(const std::string& name, const std::string& url,
                        const std::string& extra = "", const std::string& timeout = "2s") {
  return fmt::format(
      "\n[[targets]]\nname = \"{}\"\nkind = \"http\"\nurl = \"{}\"\nconnect_timeout = "
      "\"500ms\"\ntimeout = \"{}\"\n{}\n",
      name, url, timeout, extra);
}

std::string http_probe(int interval_ms, int timeout_ms, int fall, int rise) {
  return fmt::format(
      "probe = {{ kind = \"http\", path = \"/healthz\", interval = \"{}ms\", timeout = \"{}ms\", "
      "jitter = 0.0, rise = {}, fall = {} }}",
      interval_ms, timeout_ms, rise, fall);
}

// Passive ejection off, so that only the probes move targets.
const std::string kNoEjection = "outlier = { max_ejection_percent = 0 }";

// ---------------------------------------------------------------------------
// GET /v1/targets

struct ProbeView {
  std::string kind;
  std::int64_t last_at_ms = 0;
  bool last_ok = false;
  std::string last_error;
};

struct TargetView {
  std::string name;
  bool healthy = false;
  bool ejected = false;
  std::int64_t ejected_for_ms = 0;
  std::int64_t ejections = 0;
  std::int64_t in_flight = 0;
  std::int64_t max_in_flight = 0;
  std::int64_t successes = 0;
  std::int64_t failures = 0;
  std::string last_error;
  ProbeView probe;
};

struct PoolView {
  std::string name;
  std::string policy;
  std::int64_t waiting = 0;
  std::vector<TargetView> targets;
};

struct TargetsView {
  int status = 0;
  std::string body;
  std::string error;  // why the body does not have the contract's shape; empty when it does
  std::vector<PoolView> pools;

  bool ok() const { return status == 200 && error.empty(); }
  const TargetView* target(const std::string& name) const {
    for (const auto& p : pools) {
      for (const auto& t : p.targets) {
        if (t.name == name) return &t;
      }
    }
    return nullptr;
  }
  const PoolView* pool(const std::string& name) const {
    for (const auto& p : pools) {
      if (p.name == name) return &p;
    }
    return nullptr;
  }
  std::string describe() const {
    return "GET /v1/targets -> " + std::to_string(status) +
           (error.empty() ? "" : " (" + error + ")") + " " + body;
  }
};

// Reads one required field of the right JSON type into `out`, or notes what is wrong.
bool read_field(simdjson::dom::object o, const char* key, std::string& out, std::string& err) {
  std::string_view v;
  if (o[key].get_string().get(v) != simdjson::SUCCESS) {
    err = std::string("\"") + key + "\" is missing or not a string";
    return false;
  }
  out = std::string(v);
  return true;
}
bool read_field(simdjson::dom::object o, const char* key, bool& out, std::string& err) {
  if (o[key].get_bool().get(out) != simdjson::SUCCESS) {
    err = std::string("\"") + key + "\" is missing or not a boolean";
    return false;
  }
  return true;
}
bool read_field(simdjson::dom::object o, const char* key, std::int64_t& out, std::string& err) {
  if (o[key].get_int64().get(out) != simdjson::SUCCESS) {
    err = std::string("\"") + key + "\" is missing or not an integer";
    return false;
  }
  return true;
}

// Parses the body strictly against the contract's shape.
void parse_targets(TargetsView& v) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(v.body).get(doc) != simdjson::SUCCESS) {
    v.error = "not JSON";
    return;
  }
  simdjson::dom::array pools;
  if (doc["pools"].get_array().get(pools) != simdjson::SUCCESS) {
    v.error = "\"pools\" is missing or not an array";
    return;
  }
  std::string& err = v.error;
  for (auto pe : pools) {
    simdjson::dom::object po;
    if (pe.get_object().get(po) != simdjson::SUCCESS) {
      err = "a pool is not an object";
      return;
    }
    PoolView p;
    if (!read_field(po, "name", p.name, err) || !read_field(po, "policy", p.policy, err) ||
        !read_field(po, "waiting", p.waiting, err)) {
      return;
    }
    simdjson::dom::array targets;
    if (po["targets"].get_array().get(targets) != simdjson::SUCCESS) {
      err = "pool \"targets\" is missing or not an array";
      return;
    }
    for (auto te : targets) {
      simdjson::dom::object to;
      if (te.get_object().get(to) != simdjson::SUCCESS) {
        err = "a target is not an object";
        return;
      }
      TargetView t;
      if (!read_field(to, "name", t.name, err) || !read_field(to, "healthy", t.healthy, err) ||
          !read_field(to, "ejected", t.ejected, err) ||
          !read_field(to, "ejected_for_ms", t.ejected_for_ms, err) ||
          !read_field(to, "ejections", t.ejections, err) ||
          !read_field(to, "in_flight", t.in_flight, err) ||
          !read_field(to, "max_in_flight", t.max_in_flight, err) ||
          !read_field(to, "successes", t.successes, err) ||
          !read_field(to, "failures", t.failures, err) ||
          !read_field(to, "last_error", t.last_error, err)) {
        err = "target: " + err;
        return;
      }
      simdjson::dom::object pr;
      if (to["probe"].get_object().get(pr) != simdjson::SUCCESS) {
        err = "target \"probe\" is missing or not an object";
        return;
      }
      if (!read_field(pr, "kind", t.probe.kind, err) ||
          !read_field(pr, "last_at_ms", t.probe.last_at_ms, err) ||
          !read_field(pr, "last_ok", t.probe.last_ok, err) ||
          !read_field(pr, "last_error", t.probe.last_error, err)) {
        err = "probe: " + err;
        return;
      }
      p.targets.push_back(std::move(t));
    }
    v.pools.push_back(std::move(p));
  }
}

TargetsView get_targets(std::uint16_t port) {
  TargetsView v;
  auto res = http_request(port, "GET", "/v1/targets", {{"Authorization", "Bearer " + kToken}});
  v.status = res.status;
  v.body = res.body;
  if (res.status != 200) {
    v.error = res.error.empty() ? "not 200" : res.error;
    return v;
  }
  parse_targets(v);
  return v;
}

// Polls GET /v1/targets until `pred` holds for target `name`; the last view is kept in `last`.
bool wait_target(std::uint16_t port, const std::string& name,
                 const std::function<bool(const TargetView&)>& pred, Ms timeout,
                 TargetsView* last = nullptr) {
  TargetsView v;
  bool ok = eventually(
      [&] {
        v = get_targets(port);
        const auto* t = v.ok() ? v.target(name) : nullptr;
        return t != nullptr && pred(*t);
      },
      timeout);
  if (last) *last = v;
  return ok;
}

bool is_healthy(const TargetView& t) {
  return t.healthy;
}
bool is_unhealthy(const TargetView& t) {
  return !t.healthy;
}

std::int64_t unix_ms_now() {
  return std::chrono::duration_cast<Ms>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---------------------------------------------------------------------------
// Log

// Lines of `log` with msg="<msg>" and every key=value of `fields` (values as logged: plain
// tokens without quotes).
std::vector<std::string> log_lines(const std::string& log, const std::string& msg,
                                   const std::vector<std::pair<std::string, std::string>>& fields) {
  std::vector<std::string> out;
  std::istringstream in(log);
  const std::string want_msg = "msg=\"" + msg + "\"";
  for (std::string line; std::getline(in, line);) {
    if (line.find(want_msg) == std::string::npos) continue;
    bool all = true;
    for (const auto& [k, v] : fields) {
      const std::string token = " " + k + "=" + v;
      auto pos = line.find(token + " ");
      if (pos == std::string::npos &&
          !(line.size() >= token.size() &&
            line.compare(line.size() - token.size(), token.size(), token) == 0)) {
        all = false;
        break;
      }
    }
    if (all) out.push_back(line);
  }
  return out;
}

bool wait_log_lines(Gateway& gw, const std::string& msg,
                    const std::vector<std::pair<std::string, std::string>>& fields,
                    std::size_t n = 1, Ms timeout = 5s) {
  return eventually([&] { return log_lines(gw.log(), msg, fields).size() >= n; }, timeout);
}

bool has_key(const std::string& line, const std::string& key) {
  return line.find(" " + key + "=") != std::string::npos;
}

// ---------------------------------------------------------------------------
// Events and what the backends saw

bool is_event(const BackendRequest& r) {
  return r.method == "POST" && r.target == "/events";
}
bool is_probe(const BackendRequest& r) {
  return r.method == "GET" && r.target == "/healthz";
}
bool has_prefix(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// Event requests whose Idempotency-Key starts with `prefix`.
std::vector<BackendRequest> events_with(const TestBackend& b, const std::string& prefix = "") {
  std::vector<BackendRequest> out;
  for (const auto& r : b.requests()) {
    if (is_event(r) && has_prefix(r.idempotency_key(), prefix)) out.push_back(r);
  }
  return out;
}

// Ids delivered (2xx) by any of `backends`, with how often.
std::map<std::string, int> delivered_counts(const std::vector<const TestBackend*>& backends) {
  std::map<std::string, int> out;
  for (const auto* b : backends) {
    for (const auto& r : b->requests()) {
      if (is_event(r) && r.delivered()) ++out[r.idempotency_key()];
    }
  }
  return out;
}

bool all_delivered(const std::vector<const TestBackend*>& backends,
                   const std::vector<std::string>& ids) {
  auto got = delivered_counts(backends);
  return std::all_of(ids.begin(), ids.end(), [&](const auto& id) { return got.count(id) > 0; });
}

std::vector<std::string> missing_ids(const std::vector<const TestBackend*>& backends,
                                     const std::vector<std::string>& ids) {
  auto got = delivered_counts(backends);
  std::vector<std::string> out;
  for (const auto& id : ids) {
    if (!got.count(id)) out.push_back(id);
  }
  return out;
}

// Sends `count` events over `convs` conversations on one keep-alive connection; every one
// must be acknowledged. Event i has id "<prefix>-<i>" and conversation "<prefix>-c<i % convs>".
std::vector<std::string> send_batch(std::uint16_t port, const std::string& prefix, int count,
                                    int convs) {
  std::vector<std::string> ids;
  auto conn = std::make_unique<HttpConnection>(port);
  for (int i = 0; i < count; ++i) {
    if (!conn->is_open()) conn = std::make_unique<HttpConnection>(port);
    auto id = prefix + "-" + std::to_string(i);
    auto res = send_event(*conn, kSource, kSecret,
                          event_json(id, prefix + "-c" + std::to_string(i % convs), i / convs));
    INFO(id << ": " << res.describe());
    REQUIRE(res.status == 200);
    ids.push_back(id);
  }
  return ids;
}

// Sends `count` events, one conversation each, from `threads` client threads at once.
std::vector<std::string> send_parallel(std::uint16_t port, const std::string& prefix, int count,
                                       int threads) {
  std::vector<Response> acks(static_cast<std::size_t>(count));
  std::vector<std::string> ids(static_cast<std::size_t>(count));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      HttpConnection conn(port);
      for (int i = t; i < count; i += threads) {
        auto id = prefix + "-" + std::to_string(i);
        ids[static_cast<std::size_t>(i)] = id;
        acks[static_cast<std::size_t>(i)] = send_event(
            conn, kSource, kSecret, event_json(id, prefix + "-c" + std::to_string(i), 0));
      }
    });
  }
  for (auto& th : pool) th.join();
  for (std::size_t i = 0; i < acks.size(); ++i) {
    INFO(ids[i] << ": " << acks[i].describe());
    REQUIRE(acks[i].status == 200);
  }
  return ids;
}

std::string get_metrics(std::uint16_t port) {
  auto res = http_request(port, "GET", "/metrics");
  return res.status == 200 ? res.body : std::string();
}

// The largest number of requests the backend was serving at once, each taken to be served
// from its arrival for `service` (a slow backend's delay); `slack` absorbs timer jitter.
int max_concurrency(std::vector<BackendRequest> reqs, Ms service, Ms slack) {
  std::sort(reqs.begin(), reqs.end(), [](const auto& a, const auto& b) { return a.at < b.at; });
  int best = 0;
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    int n = 1;
    for (std::size_t j = i + 1; j < reqs.size(); ++j) {
      if (reqs[j].at < reqs[i].at + service - slack) ++n;
    }
    best = std::max(best, n);
  }
  return best;
}

// Milliseconds since `t0`.
long long ms_since(Clock::time_point t0) {
  return std::chrono::duration_cast<Ms>(Clock::now() - t0).count();
}

}  // namespace

// ---------------------------------------------------------------------------
// Active http probe

TEST_CASE("http probe: a failing target leaves rotation after fall probes and returns after rise",
          "[integration][ha]") {
  TempDir dir;
  TestBackend alpha, bravo, charlie;
  constexpr int kInterval = 150, kTimeout = 100, kFall = 2, kRise = 3;
  const auto probe = http_probe(kInterval, kTimeout, kFall, kRise);
  const auto config =
      base_toml() + pool_toml("round-robin", {"alpha", "bravo", "charlie"}, kNoEjection) +
      target_toml("alpha", alpha.url(), probe) + target_toml("bravo", bravo.url(), probe) +
      target_toml("charlie", charlie.url(), probe);
  Gateway gw(botgate_binary(), dir, config);
  // Detection takes fall probes, at most about fall x interval plus a probe timeout; the
  // rest is slack for a loaded 2-core machine.
  const auto leave_bound = Ms(kFall * kInterval + kTimeout + 1000);

  // Probes run on every target (GET /healthz) and each reports a good result.
  for (const auto* b : {&alpha, &bravo, &charlie}) {
    CHECK(b->wait_until(
        [](const auto& rs) {
          return std::count_if(rs.begin(), rs.end(),
                               [](const auto& r) { return is_probe(r) && r.delivered(); }) >= 2;
        },
        5s));
  }
  TargetsView view;
  for (const char* name : {"alpha", "bravo", "charlie"}) {
    INFO(name);
    CHECK(wait_target(
        gw.port(), name,
        [](const TargetView& t) {
          return t.healthy && t.probe.kind == "http" && t.probe.last_ok && t.probe.last_at_ms > 0;
        },
        5s, &view));
    INFO(view.describe());
  }

  // 1. alpha answers 500 on every path, /healthz included: it leaves rotation.
  auto t0 = Clock::now();
  alpha.set_status(500);
  bool down = wait_target(gw.port(), "alpha", is_unhealthy, 5s, &view);
  auto took = Clock::now() - t0;
  const auto seen_down = alpha.requests();
  auto failed_probes = std::count_if(seen_down.begin(), seen_down.end(), [&](const auto& r) {
    return is_probe(r) && r.at >= t0 && r.status == 500;
  });
  {
    INFO(view.describe());
    REQUIRE(down);
    INFO("unhealthy after " << std::chrono::duration_cast<Ms>(took).count() << " ms and "
                            << failed_probes << " failed probes");
    CHECK(took <= leave_bound);
    CHECK(failed_probes >= kFall);
    const auto* a = view.target("alpha");
    REQUIRE(a != nullptr);
    CHECK_FALSE(a->probe.last_ok);
    CHECK_FALSE(a->probe.last_error.empty());
    CHECK(a->probe.last_at_ms > 0);
    CHECK(view.target("bravo")->healthy);
    CHECK(view.target("charlie")->healthy);
  }
  {
    CHECK(wait_log_lines(gw, "target unhealthy", {{"target", "alpha"}}, 1, 2s));
    auto log = gw.log();
    INFO(log);
    auto lines = log_lines(log, "target unhealthy", {{"target", "alpha"}});
    CHECK(lines.size() == 1);
    for (const auto& l : lines) CHECK(has_key(l, "reason"));
  }

  // 2. New events go only to bravo and charlie.
  auto ids = send_batch(gw.port(), "down", 30, 10);
  CHECK(eventually([&] { return all_delivered({&bravo, &charlie}, ids); }, 10s));
  CHECK(events_with(alpha, "down-").empty());
  CHECK_FALSE(events_with(bravo, "down-").empty());
  CHECK_FALSE(events_with(charlie, "down-").empty());

  // 3. alpha recovers: it is back after rise good probes, and gets traffic again.
  auto t1 = Clock::now();
  alpha.set_ok();
  bool up = wait_target(gw.port(), "alpha", is_healthy, 5s, &view);
  const auto seen_up = alpha.requests();
  auto good_probes = std::count_if(seen_up.begin(), seen_up.end(), [&](const auto& r) {
    return is_probe(r) && r.at >= t1 && r.status == 200;
  });
  {
    INFO(view.describe());
    REQUIRE(up);
    INFO("healthy after " << ms_since(t1) << " ms and " << good_probes << " good probes");
    CHECK(good_probes >= kRise);
    CHECK(view.target("alpha")->probe.last_ok);
  }
  CHECK(wait_log_lines(gw, "target healthy", {{"target", "alpha"}}, 1, 2s));
  auto ids2 = send_batch(gw.port(), "up", 30, 10);
  CHECK(eventually([&] { return all_delivered({&alpha, &bravo, &charlie}, ids2); }, 10s));
  CHECK(events_with(alpha, "up-").size() >= 5);  // round-robin: about 10 of 30

  // 4. Refused connections fail the probe too; listening again brings alpha back.
  t0 = Clock::now();
  alpha.stop();
  down = wait_target(gw.port(), "alpha", is_unhealthy, 5s, &view);
  took = Clock::now() - t0;
  {
    INFO(view.describe());
    CHECK(down);
    CHECK(took <= leave_bound);
  }
  alpha.start();
  CHECK(wait_target(gw.port(), "alpha", is_healthy, 5s, &view));
  CHECK(wait_log_lines(gw, "target unhealthy", {{"target", "alpha"}}, 2, 2s));
  CHECK(wait_log_lines(gw, "target healthy", {{"target", "alpha"}}, 2, 2s));
  // bravo and charlie never changed state.
  auto log = gw.log();
  CHECK(log_lines(log, "target unhealthy", {{"target", "bravo"}}).empty());
  CHECK(log_lines(log, "target unhealthy", {{"target", "charlie"}}).empty());
  CHECK(gw.process().running());
}

TEST_CASE("http probe: a /healthz that hangs past the probe timeout counts as a failure",
          "[integration][ha]") {
  TempDir dir;
  TestBackend alpha, bravo;
  const auto probe = http_probe(150, 100, 2, 2);
  Gateway gw(botgate_binary(), dir,
             base_toml() + pool_toml("round-robin", {"alpha", "bravo"}, kNoEjection) +
                 target_toml("alpha", alpha.url(), probe) +
                 target_toml("bravo", bravo.url(), probe));
  TargetsView view;
  REQUIRE(wait_target(
      gw.port(), "alpha", [](const TargetView& t) { return t.probe.last_ok; }, 5s, &view));
  auto t0 = Clock::now();
  alpha.set_hang();
  bool down = wait_target(gw.port(), "alpha", is_unhealthy, 5s, &view);
  INFO(view.describe() << "\nafter " << ms_since(t0) << " ms");
  REQUIRE(down);
  CHECK(ms_since(t0) <= 2 * 150 + 100 + 1000);
  CHECK_FALSE(view.target("alpha")->probe.last_error.empty());
  CHECK(view.target("bravo")->healthy);
}

// ---------------------------------------------------------------------------
// Passive outlier ejection

namespace {

// `bad` misbehaves as `fault` sets it up (probe kind none): after consecutive_failures = 3
// retryable failures it is ejected for base_ejection_time = 3 s, during which it gets no
// new delivery; every event still reaches `good` exactly once; `heal` fixes `bad`, which
// returns when the ejection ends and gets traffic again. `bad_records` says whether `bad`
// sees the failed requests (not when it refuses connections).
void check_passive_ejection(const std::function<void(TestBackend&)>& fault,
                            const std::function<void(TestBackend&)>& heal,
                            const std::string& target_timeout, const std::string& prefix,
                            bool bad_records) {
  TempDir dir;
  TestBackend bad, good;
  fault(bad);
  const auto config =
      base_toml() +
      pool_toml("round-robin", {"bad", "good"},
                "outlier = { consecutive_failures = 3, base_ejection_time = \"3s\", "
                "max_ejection_time = \"30s\", max_ejection_percent = 50 }") +
      target_toml("bad", bad.url(), "", target_timeout) +
      target_toml("good", good.url(), "", target_timeout);
  Gateway gw(botgate_binary(), dir, config);

  // Batch 1: bad fails its share until it is ejected.
  auto ids1 = send_batch(gw.port(), prefix + "1", 20, 5);
  TargetsView view;
  bool ejected = wait_target(
      gw.port(), "bad", [](const TargetView& t) { return t.ejected; }, 10s, &view);
  const auto ejected_at = Clock::now();
  {
    INFO(view.describe());
    REQUIRE(ejected);
    const auto* b = view.target("bad");
    CHECK(b->ejections >= 1);
    CHECK(b->ejected_for_ms > 0);
    CHECK(b->ejected_for_ms <= 3000);
    CHECK(b->failures >= 3);
    CHECK_FALSE(b->last_error.empty());
    CHECK(b->successes == 0);
    CHECK_FALSE(view.target("good")->ejected);
  }
  {
    CHECK(wait_log_lines(gw, "target ejected", {{"target", "bad"}, {"pool", kPool}}, 1, 2s));
    auto lines = log_lines(gw.log(), "target ejected", {{"target", "bad"}});
    INFO(gw.log());
    REQUIRE_FALSE(lines.empty());
    // How long, in milliseconds, a number (JSON logs write it bare).
    const auto at = lines.front().find(" for_ms=");
    REQUIRE(at != std::string::npos);
    const long for_ms = std::stol(lines.front().substr(at + 8));
    CHECK(for_ms > 0);
    CHECK(for_ms <= 3000);
  }
  {
    auto m = get_metrics(gw.port());
    INFO(m);
    CHECK(metric_value(m, "botgate_target_ejections_total{target=\"bad\"}").value_or(0) >= 1);
    CHECK(metric_value(m, "botgate_target_ejected{target=\"bad\"}") == 1.0);
    CHECK(metric_value(m, "botgate_target_ejected{target=\"good\"}") == 0.0);
  }
  if (bad_records) {
    // It took consecutive_failures failures to eject it, no fewer.
    CHECK(events_with(bad, prefix + "1-").size() >= 3);
  }

  // Batch 2, during the ejection: nothing reaches bad, every event goes to good at once.
  auto ids2 = send_batch(gw.port(), prefix + "2", 20, 5);
  bool delivered2 = eventually([&] { return all_delivered({&good}, ids2); }, 10s);
  const auto batch2_ms = ms_since(ejected_at);
  CHECK(delivered2);
  REQUIRE(batch2_ms < 3000);  // else the ejection may have ended: this run proves nothing
  CHECK(events_with(bad, prefix + "2-").empty());
  for (const auto& r : events_with(good, prefix + "2-")) {
    INFO(r.idempotency_key() << " attempt " << r.attempt());
    CHECK(r.attempt() == "1");
  }

  // Every event of both batches reached good exactly once; bad delivered none.
  CHECK(eventually([&] { return all_delivered({&good}, ids1); }, 10s));
  std::this_thread::sleep_for(200ms);  // let a duplicate show up
  auto counts = delivered_counts({&good});
  for (const auto* ids : {&ids1, &ids2}) {
    for (const auto& id : *ids) {
      INFO(id);
      CHECK(counts[id] == 1);
    }
  }
  CHECK(delivered_counts({&bad}).empty());

  // Healed, bad returns when the ejection ends and takes its share again.
  heal(bad);
  CHECK(wait_log_lines(gw, "target returned", {{"target", "bad"}}, 1, 6s));
  CHECK(wait_target(
      gw.port(), "bad", [](const TargetView& t) { return !t.ejected; }, 2s, &view));
  auto ids3 = send_batch(gw.port(), prefix + "3", 20, 5);
  CHECK(eventually([&] { return all_delivered({&good, &bad}, ids3); }, 10s));
  INFO("bad delivered " << delivered_counts({&bad}).size() << " of batch 3");
  CHECK(delivered_counts({&bad}).size() >= 5);
  CHECK(gw.process().running());
}

}  // namespace

TEST_CASE("passive ejection: a target answering 500 is ejected after consecutive failures",
          "[integration][ha]") {
  check_passive_ejection([](TestBackend& b) { b.set_status(500); },
                         [](TestBackend& b) { b.set_ok(); }, "2s", "e500", true);
}

TEST_CASE("passive ejection: a target that hangs past the timeout is ejected",
          "[integration][ha]") {
  check_passive_ejection([](TestBackend& b) { b.set_hang(); }, [](TestBackend& b) { b.set_ok(); },
                         "300ms", "ehang", true);
}

TEST_CASE("passive ejection: a target that closes mid-response is ejected", "[integration][ha]") {
  check_passive_ejection([](TestBackend& b) { b.set_close_mid_response(); },
                         [](TestBackend& b) { b.set_ok(); }, "2s", "eclose", true);
}

TEST_CASE("passive ejection: a target refusing connections is ejected", "[integration][ha]") {
  check_passive_ejection([](TestBackend& b) { b.stop(); }, [](TestBackend& b) { b.start(); }, "2s",
                         "erefused", false);
}

// ---------------------------------------------------------------------------
// Re-routing in-flight deliveries

TEST_CASE(
    "deliveries in flight to a target marked down are re-routed without waiting for the "
    "timeout",
    "[integration][ha]") {
  TempDir dir;
  TestBackend alpha, bravo;
  const auto probe = http_probe(200, 100, 3, 2);
  // A 20 s delivery timeout: only re-routing can bring a hung event to bravo in time.
  const auto config = base_toml() + pool_toml("round-robin", {"alpha", "bravo"}, kNoEjection) +
                      target_toml("alpha", alpha.url(), probe, "20s") +
                      target_toml("bravo", bravo.url(), probe, "20s");
  Gateway gw(botgate_binary(), dir, config);
  REQUIRE(wait_target(
      gw.port(), "alpha", [](const TargetView& t) { return t.probe.last_ok; }, 5s));

  alpha.set_hang();  // events and probes alike: fall probes take about 0.5 s to fail
  const auto t0 = Clock::now();
  auto ids = send_batch(gw.port(), "rr", 10, 10);
  // Some of them really are stuck on alpha.
  REQUIRE(alpha.wait_until(
      [](const auto& rs) {
        return std::any_of(rs.begin(), rs.end(), [](const auto& r) { return is_event(r); });
      },
      2s));
  bool all = eventually([&] { return all_delivered({&bravo}, ids); }, 5s);
  const auto took = ms_since(t0);
  auto stuck = events_with(alpha, "rr-");
  INFO("alpha took " << stuck.size() << " events; all on bravo after " << took << " ms");
  INFO(gw.log());
  REQUIRE(all);
  CHECK_FALSE(stuck.empty());
  for (const auto& r : stuck) CHECK_FALSE(r.answered);
  CHECK(wait_log_lines(gw, "target unhealthy", {{"target", "alpha"}}, 1, 1s));
  CHECK(wait_log_lines(gw, "in-flight deliveries re-routed", {}, 1, 1s));
  auto m = get_metrics(gw.port());
  INFO(m);
  CHECK(metric_value(m, "botgate_router_reroutes_total{pool=\"main\"}").value_or(0) >= 1);
  CHECK(delivered_counts({&bravo}).size() == ids.size());
}

// ---------------------------------------------------------------------------
// No eligible target

TEST_CASE(
    "with no healthy target events are acked and wait, then all go to the first that "
    "recovers",
    "[integration][ha]") {
  TempDir dir;
  TestBackend alpha, bravo;
  const auto probe = http_probe(150, 100, 2, 2);
  Base base;
  base.max_attempts = 2;  // an event tried while nothing is eligible would soon be dead
  const auto config = base_toml(base) + pool_toml("round-robin", {"alpha", "bravo"}, kNoEjection) +
                      target_toml("alpha", alpha.url(), probe) +
                      target_toml("bravo", bravo.url(), probe);
  Gateway gw(botgate_binary(), dir, config);

  alpha.stop();
  bravo.stop();
  TargetsView view;
  CHECK(wait_target(gw.port(), "alpha", is_unhealthy, 5s, &view));
  CHECK(wait_target(gw.port(), "bravo", is_unhealthy, 5s, &view));

  auto ids = send_batch(gw.port(), "wait", 20, 5);  // each acked with 200
  // They wait: not dropped, not dead-lettered, while time passes with nothing eligible.
  std::this_thread::sleep_for(1500ms);
  view = get_targets(gw.port());
  auto m = get_metrics(gw.port());
  {
    INFO(view.describe() << "\n" << m);
    REQUIRE(view.ok());
    const auto* pool = view.pool(kPool);
    REQUIRE(pool != nullptr);
    const double depth = metric_sum(m, "botgate_queue_depth");
    INFO("router waiting " << pool->waiting << ", queue depth " << depth);
    CHECK((pool->waiting > 0 || depth > 0));
    CHECK(metric_value(m, "botgate_events_dead_lettered_total").value_or(-1) == 0.0);
    auto dl =
        http_request(gw.port(), "GET", "/v1/dead-letters", {{"Authorization", "Bearer " + kToken}});
    INFO(dl.describe());
    CHECK(dl.status == 200);
    CHECK(dl.body.find("\"count\":0") != std::string::npos);
  }

  // alpha comes back: after rise good probes every waiting event goes to it.
  alpha.start();
  CHECK(eventually([&] { return all_delivered({&alpha}, ids); }, 10s));
  CHECK(events_with(bravo, "wait-").empty());
  for (const auto& r : events_with(alpha, "wait-")) {
    INFO(r.idempotency_key() << " attempt " << r.attempt());
    CHECK(r.attempt() == "1");  // waiting is not an attempt
  }
  m = get_metrics(gw.port());
  CHECK(metric_value(m, "botgate_events_dead_lettered_total").value_or(-1) == 0.0);
  view = get_targets(gw.port());
  INFO(view.describe());
  REQUIRE(view.ok());
  CHECK(view.pool(kPool)->waiting == 0);
}

// ---------------------------------------------------------------------------
// Zero loss under load

TEST_CASE("no acked event is lost across repeated kill and revive cycles of each backend",
          "[integration][ha]") {
  TempDir dir;
  std::array<TestBackend, 3> backends;
  const std::array<std::string, 3> names{"alpha", "bravo", "charlie"};
  const auto probe = http_probe(200, 150, 2, 2);
  Base base;
  base.max_attempts = 1000000;  // the backends always come back: nothing may be dead-lettered
  std::string config =
      base_toml(base) +
      pool_toml("round-robin", {names[0], names[1], names[2]},
                "outlier = { consecutive_failures = 3, base_ejection_time = \"500ms\", "
                "max_ejection_time = \"2s\", max_ejection_percent = 34 }");
  for (std::size_t i = 0; i < 3; ++i) config += target_toml(names[i], backends[i].url(), probe);
  Gateway gw(botgate_binary(), dir, config);

  // The load: 2 client threads, each on its own keep-alive connection, for as long as the
  // cycles last. Only ids answered 200 count as acked.
  constexpr int kThreads = 2;
  std::atomic<bool> stop{false};
  std::atomic<std::size_t> acked_count{0};
  std::vector<std::vector<std::string>> acked(kThreads);
  std::vector<int> refused(kThreads, 0);
  std::vector<std::thread> load;
  const auto port = gw.port();
  for (int t = 0; t < kThreads; ++t) {
    load.emplace_back([&, t] {
      auto conn = std::make_unique<HttpConnection>(port);
      for (int n = 0; !stop.load(); ++n) {
        if (!conn->is_open()) conn = std::make_unique<HttpConnection>(port);
        auto id = "z" + std::to_string(t) + "-" + std::to_string(n);
        auto res = send_event(
            *conn, kSource, kSecret,
            event_json(id, "zc-" + std::to_string(t) + "-" + std::to_string(n % 32), n / 32));
        if (res.status == 200) {
          acked[static_cast<std::size_t>(t)].push_back(id);
          acked_count.fetch_add(1);
        } else {
          ++refused[static_cast<std::size_t>(t)];
        }
      }
    });
  }
  auto join_load = [&] {
    stop.store(true);
    for (auto& th : load) {
      if (th.joinable()) th.join();
    }
  };
  struct JoinOnExit {
    std::function<void()> join;
    ~JoinOnExit() { join(); }
  } join_on_exit{join_load};  // also when an assertion throws

  // Each backend is killed twice, 500 ms each time, while events flow.
  std::array<Clock::time_point, 3> last_start{};
  std::vector<std::string> stalls;
  for (int cycle = 0; cycle < 2; ++cycle) {
    for (std::size_t i = 0; i < 3; ++i) {
      const auto before = acked_count.load();
      backends[i].stop();
      std::this_thread::sleep_for(500ms);
      if (acked_count.load() == before) stalls.push_back(names[i]);
      backends[i].start();
      last_start[i] = Clock::now();
      std::this_thread::sleep_for(300ms);
    }
  }
  std::this_thread::sleep_for(1500ms);  // the last revived backend gets back into rotation
  join_load();

  std::vector<std::string> all_acked;
  for (const auto& v : acked) all_acked.insert(all_acked.end(), v.begin(), v.end());
  INFO("acked " << all_acked.size() << ", refused " << refused[0] + refused[1]);
  INFO("no ack while killed: " << head(stalls));
  REQUIRE(all_acked.size() >= 500);
  CHECK(stalls.empty());

  const std::vector<const TestBackend*> all{&backends[0], &backends[1], &backends[2]};
  std::vector<std::string> missing;
  eventually(
      [&] {
        missing = missing_ids(all, all_acked);
        return missing.empty();
      },
      30s);
  INFO("acked but never delivered: " << head(missing));
  CHECK(missing.empty());

  // Every backend took deliveries again after its last revival.
  for (std::size_t i = 0; i < 3; ++i) {
    auto reqs = backends[i].requests();
    auto after = std::count_if(reqs.begin(), reqs.end(), [&](const auto& r) {
      return is_event(r) && r.delivered() && r.at > last_start[i];
    });
    INFO(names[i] << " delivered " << after << " events after its last revival");
    CHECK(after > 0);
  }
  auto m = get_metrics(gw.port());
  INFO(m);
  CHECK(metric_value(m, "botgate_events_dead_lettered_total").value_or(-1) == 0.0);
  CHECK(gw.process().running());
}

// ---------------------------------------------------------------------------
// Policies end to end

TEST_CASE("sticky: a target going down moves only its own conversations, and they come back",
          "[integration][ha]") {
  TempDir dir;
  TestBackend alpha, bravo, charlie;
  const auto probe = http_probe(150, 100, 2, 2);
  const auto config =
      base_toml() + pool_toml("sticky", {"alpha", "bravo", "charlie"}, kNoEjection) +
      target_toml("alpha", alpha.url(), probe) + target_toml("bravo", bravo.url(), probe) +
      target_toml("charlie", charlie.url(), probe);
  Gateway gw(botgate_binary(), dir, config);
  const std::vector<std::pair<std::string, const TestBackend*>> named{
      {"alpha", &alpha}, {"bravo", &bravo}, {"charlie", &charlie}};
  constexpr int kConvs = 30;

  // One event per conversation; returns conversation -> the backend that took it.
  std::map<int, std::string> trail;  // conversation -> every request of the last round
  auto round = [&](const std::string& tag) {
    std::vector<std::string> ids;
    HttpConnection conn(gw.port());
    for (int c = 0; c < kConvs; ++c) {
      auto id = tag + "-" + std::to_string(c);
      auto res =
          send_event(conn, kSource, kSecret, event_json(id, "sticky-conv-" + std::to_string(c), 0));
      INFO(id << ": " << res.describe());
      REQUIRE(res.status == 200);
      ids.push_back(id);
    }
    REQUIRE(eventually([&] { return all_delivered({&alpha, &bravo, &charlie}, ids); }, 10s));
    std::map<int, std::string> owner;
    trail.clear();
    for (const auto& [name, b] : named) {
      for (const auto& r : events_with(*b, tag + "-")) {
        int c = std::stoi(r.idempotency_key().substr(tag.size() + 1));
        trail[c] += fmt::format("{} attempt {} status {}{}; ", name, r.attempt(), r.status,
                                r.answered ? "" : " (unanswered)");
        if (!r.delivered()) continue;
        owner[c] = owner.count(c) && owner[c] != name ? "several" : name;
      }
    }
    return owner;
  };
  // Every conversation went where `want` says.
  auto check_same = [&](const std::string& what, const std::map<int, std::string>& want,
                        const std::map<int, std::string>& got) {
    for (int c = 0; c < kConvs; ++c) {
      INFO(what << ", conversation " << c << ": " << trail[c]);
      CHECK(got.at(c) == want.at(c));
    }
  };

  auto before = round("s1");
  std::map<std::string, int> share;
  for (const auto& [c, name] : before) ++share[name];
  INFO("conversations per backend: alpha " << share["alpha"] << ", bravo " << share["bravo"]
                                           << ", charlie " << share["charlie"]);
  REQUIRE(share["alpha"] > 0);
  REQUIRE(share["bravo"] > 0);
  REQUIRE(share["charlie"] > 0);
  // Sticky: the same conversation goes to the same backend every time.
  check_same("again", before, round("s1b"));

  charlie.stop();
  REQUIRE(wait_target(gw.port(), "charlie", is_unhealthy, 5s));
  auto during = round("s2");
  for (int c = 0; c < kConvs; ++c) {
    INFO("conversation " << c << ": " << before[c] << " -> " << during[c] << ": " << trail[c]);
    if (before[c] == "charlie") {
      CHECK((during[c] == "alpha" || during[c] == "bravo"));
    } else {
      CHECK(during[c] == before[c]);
    }
  }

  // Back in rotation, charlie gets its own conversations back.
  charlie.start();
  REQUIRE(wait_target(gw.port(), "charlie", is_healthy, 5s));
  check_same("after charlie's return", before, round("s3"));
}

TEST_CASE("least-inflight sends clearly fewer events to a slow backend", "[integration][ha]") {
  TempDir dir;
  TestBackend fast, slow;
  slow.set_slow(300ms);
  const auto config = base_toml() + pool_toml("least-inflight", {"fast", "slow"}, kNoEjection) +
                      target_toml("fast", fast.url()) + target_toml("slow", slow.url());
  Gateway gw(botgate_binary(), dir, config);

  constexpr int kEvents = 60;
  auto ids = send_parallel(gw.port(), "li", kEvents, 4);
  REQUIRE(eventually([&] { return all_delivered({&fast, &slow}, ids); }, 20s));
  const auto on_slow = events_with(slow, "li-").size();
  const auto on_fast = events_with(fast, "li-").size();
  INFO("fast got " << on_fast << ", slow got " << on_slow << " (round-robin would give 30/30)");
  CHECK(on_slow * 4 <= kEvents);  // at most a quarter
  CHECK(on_fast >= 45);
}

TEST_CASE("rate_limit: a target gets at most rate x elapsed + burst deliveries",
          "[integration][ha]") {
  TempDir dir;
  TestBackend only;
  constexpr double kRate = 20;
  constexpr int kBurst = 1, kEvents = 30;
  const auto config = base_toml() + pool_toml("round-robin", {"only"}) +
                      target_toml("only", only.url(), "rate_limit = 20\nburst = 1");
  Gateway gw(botgate_binary(), dir, config);

  auto ids = send_parallel(gw.port(), "rl", kEvents, 3);
  REQUIRE(eventually([&] { return all_delivered({&only}, ids); }, 10s));
  auto reqs = events_with(only, "rl-");
  std::sort(reqs.begin(), reqs.end(), [](const auto& a, const auto& b) { return a.at < b.at; });
  REQUIRE(reqs.size() >= static_cast<std::size_t>(kEvents));
  const auto t0 = reqs.front().at;
  double worst = -1e9;
  std::string worst_at;
  for (std::size_t k = 0; k < reqs.size(); ++k) {
    const double secs = std::chrono::duration<double>(reqs[k].at - t0).count();
    // k + 1 deliveries by then; one extra for timer rounding and one for the arrival times
    // (t0 is the first arrival, which also paid for a new connection).
    const double excess = static_cast<double>(k + 1) - (kBurst + kRate * secs + 2);
    if (excess > worst) {
      worst = excess;
      worst_at = fmt::format("delivery {} at {:.3f} s", k + 1, secs);
    }
  }
  const double span = std::chrono::duration<double>(reqs.back().at - t0).count();
  INFO("largest excess over the bucket: " << worst << " (" << worst_at << "); " << reqs.size()
                                          << " deliveries over " << span << " s");
  CHECK(worst <= 0);
  CHECK(span >= (kEvents - kBurst) / kRate - 0.15);
  // A target at its limit is waited for, not failed: every delivery is a first attempt.
  for (const auto& r : reqs) CHECK(r.attempt() == "1");
  auto m = get_metrics(gw.port());
  CHECK(metric_value(m, "botgate_events_dead_lettered_total").value_or(-1) == 0.0);
}

TEST_CASE("max_in_flight = 1: a slow target never serves two deliveries at once",
          "[integration][ha]") {
  TempDir dir;
  TestBackend only;
  only.set_slow(150ms);
  const auto config =
      base_toml() + pool_toml("round-robin", {"only"}) +
      target_toml("only", only.url(), "max_in_flight = 1\nmax_connections = 4", "5s");
  Gateway gw(botgate_binary(), dir, config);

  auto ids = send_parallel(gw.port(), "mif", 8, 4);  // 8 conversations: could go in parallel
  REQUIRE(eventually([&] { return all_delivered({&only}, ids); }, 10s));
  auto reqs = events_with(only, "mif-");
  const int conc = max_concurrency(reqs, 150ms, 25ms);
  std::ostringstream arrivals;
  for (const auto& r : reqs) {
    arrivals << std::chrono::duration_cast<Ms>(r.at - reqs.front().at).count() << "ms ";
  }
  INFO("arrivals: " << arrivals.str() << "on " << only.connections_accepted() << " connections");
  CHECK(conc == 1);
  for (const auto& r : reqs) CHECK(r.attempt() == "1");
  TargetsView view = get_targets(gw.port());
  INFO(view.describe());
  REQUIRE(view.ok());
  CHECK(view.target("only")->max_in_flight == 1);
}

TEST_CASE("max_in_flight: a target at its limit is skipped for another", "[integration][ha]") {
  TempDir dir;
  TestBackend lim, other;
  lim.set_slow(300ms);
  const auto config = base_toml() + pool_toml("round-robin", {"lim", "other"}, kNoEjection) +
                      target_toml("lim", lim.url(), "max_in_flight = 1", "5s") +
                      target_toml("other", other.url());
  Gateway gw(botgate_binary(), dir, config);

  constexpr int kEvents = 20;
  auto ids = send_parallel(gw.port(), "skip", kEvents, 4);
  const auto t0 = Clock::now();
  REQUIRE(eventually([&] { return all_delivered({&lim, &other}, ids); }, 10s));
  const auto took = ms_since(t0);
  const auto on_lim = events_with(lim, "skip-");
  const auto on_other = events_with(other, "skip-");
  INFO("lim got " << on_lim.size() << ", other " << on_other.size() << "; all delivered " << took
                  << " ms after the last ack");
  CHECK(max_concurrency(on_lim, 300ms, 40ms) == 1);
  // Round-robin alone would queue 10 on lim (3 s at 300 ms each).
  CHECK(on_other.size() >= 14);
  CHECK(took < 2000);
}

TEST_CASE(
    "a backend killed and revived behind kept-alive connections takes the next deliveries "
    "at the first attempt, and is not ejected for them",
    "[integration][ha]") {
  TempDir dir;
  TestBackend revived, other;
  // 16 deliveries at once open 8 connections to each, which then idle in the pool.
  revived.set_slow(100ms);
  other.set_slow(100ms);
  const auto config =
      base_toml() +
      pool_toml("round-robin", {"revived", "other"},
                "outlier = { consecutive_failures = 3, base_ejection_time = \"30s\", "
                "max_ejection_percent = 50 }") +
      target_toml("revived", revived.url(), "max_connections = 8") +
      target_toml("other", other.url(), "max_connections = 8");
  Gateway gw(botgate_binary(), dir, config);
  auto ids = send_parallel(gw.port(), "warm", 16, 16);
  REQUIRE(eventually([&] { return all_delivered({&revived, &other}, ids); }, 10s));
  INFO("connections to revived before the kill: " << revived.connections_accepted());
  REQUIRE(revived.connections_accepted() >= 6);

  // Killed and revived between two deliveries (a quick restart): every connection the
  // gateway keeps to it is dead now, though the backend is fine.
  revived.stop();
  revived.start();
  revived.set_ok();
  other.set_ok();
  auto after = send_batch(gw.port(), "after", 16, 16);
  REQUIRE(eventually([&] { return all_delivered({&revived, &other}, after); }, 10s));
  std::ostringstream arrivals;
  for (const auto& [name, b] : std::vector<std::pair<std::string, const TestBackend*>>{
           {"revived", &revived}, {"other", &other}}) {
    for (const auto& r : events_with(*b, "after-")) {
      arrivals << r.idempotency_key() << "@" << name << "#" << r.attempt() << " ";
    }
  }
  auto m = get_metrics(gw.port());
  std::ostringstream outcomes;
  std::istringstream lines(m);
  for (std::string line; std::getline(lines, line);) {
    if (has_prefix(line, "botgate_deliveries_total{target=\"revived\"")) outcomes << line << "\n";
  }
  TargetsView view = get_targets(gw.port());
  INFO("arrivals (id@backend#attempt): " << arrivals.str() << "\n" << outcomes.str());
  INFO(view.describe());
  REQUIRE(view.ok());
  // A kept-alive connection the peer closed while idle says nothing about the backend: the
  // request goes out again on a fresh connection, so no attempt fails and none is counted
  // against the target.
  for (const auto* b : {&revived, &other}) {
    for (const auto& r : events_with(*b, "after-")) {
      INFO(r.idempotency_key());
      CHECK(r.attempt() == "1");
    }
  }
  CHECK(view.target("revived")->failures == 0);
  CHECK_FALSE(view.target("revived")->ejected);
  CHECK(log_lines(gw.log(), "target ejected", {{"target", "revived"}}).empty());
}

// ---------------------------------------------------------------------------
// Status endpoint and metrics

TEST_CASE("GET /v1/targets: admin only, GET only, and the contract's JSON shape",
          "[integration][ha]") {
  TempDir dir;
  TestBackend alpha, bravo;
  const auto config =
      base_toml() + pool_toml("round-robin", {"alpha", "bravo"}) +
      target_toml("alpha", alpha.url(), http_probe(100, 80, 3, 2) + "\nmax_in_flight = 7") +
      target_toml("bravo", bravo.url(), "max_connections = 4\npipeline = 2");
  Gateway gw(botgate_binary(), dir, config);

  auto no_token = http_request(gw.port(), "GET", "/v1/targets");
  INFO(no_token.describe());
  CHECK(no_token.status == 401);
  auto wrong = http_request(gw.port(), "GET", "/v1/targets", {{"Authorization", "Bearer nope"}});
  INFO(wrong.describe());
  CHECK(wrong.status == 401);
  CHECK(wrong.body.find("alpha") == std::string::npos);
  auto post =
      http_request(gw.port(), "POST", "/v1/targets", {{"Authorization", "Bearer " + kToken}}, "{}");
  INFO(post.describe());
  CHECK(post.status == 405);
  CHECK(post.header("allow") == "GET, HEAD");
  // HEAD is GET without the body, as on /healthz.
  RawConn head(gw.port());
  REQUIRE(head.send("HEAD /v1/targets HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + kToken +
                    "\r\n\r\n"));
  const RawResponse head_res = head.read_response(3s, true);
  INFO(describe(head_res));
  CHECK(head_res.status == 200);
  CHECK(std::stoul(head_res.header("content-length")) > 0);

  auto ids = send_batch(gw.port(), "tv", 6, 6);
  REQUIRE(eventually([&] { return all_delivered({&alpha, &bravo}, ids); }, 10s));
  TargetsView view;
  // in_flight drops back to 0 once the answers are in; a probe result is recorded.
  bool settled = eventually(
      [&] {
        view = get_targets(gw.port());
        const auto* a = view.ok() ? view.target("alpha") : nullptr;
        const auto* b = view.ok() ? view.target("bravo") : nullptr;
        return a && b && a->in_flight == 0 && b->in_flight == 0 && a->probe.last_at_ms > 0 &&
               a->successes + b->successes == 6;
      },
      5s);
  INFO(view.describe());
  REQUIRE(view.ok());
  CHECK(settled);
  REQUIRE(view.pools.size() == 1);
  const auto& pool = view.pools[0];
  CHECK(pool.name == kPool);
  CHECK(pool.policy == "round-robin");
  CHECK(pool.waiting == 0);
  REQUIRE(pool.targets.size() == 2);
  const auto* a = view.target("alpha");
  const auto* b = view.target("bravo");
  REQUIRE(a != nullptr);
  REQUIRE(b != nullptr);
  for (const auto* t : {a, b}) {
    INFO(t->name);
    CHECK(t->healthy);
    CHECK_FALSE(t->ejected);
    CHECK(t->ejected_for_ms == 0);
    CHECK(t->ejections == 0);
    CHECK(t->failures == 0);
    CHECK(t->last_error.empty());
    CHECK(t->successes >= 1);
  }
  CHECK(a->successes + b->successes == 6);  // deliveries, not probes
  CHECK(a->max_in_flight == 7);
  CHECK(b->max_in_flight == 8);  // default: max_connections x pipeline
  CHECK(a->probe.kind == "http");
  CHECK(a->probe.last_ok);
  CHECK(a->probe.last_error.empty());
  CHECK(std::llabs(a->probe.last_at_ms - unix_ms_now()) < 60000);  // unix ms, recent
  CHECK(b->probe.kind == "none");
  CHECK(b->probe.last_at_ms == 0);

  // A failed delivery shows up in failures and last_error.
  bravo.set_status(503);
  auto more = send_batch(gw.port(), "tv2", 4, 4);
  CHECK(eventually([&] { return all_delivered({&alpha}, more); }, 10s));
  view = get_targets(gw.port());
  INFO(view.describe());
  REQUIRE(view.ok());
  CHECK(view.target("bravo")->failures >= 1);
  CHECK_FALSE(view.target("bravo")->last_error.empty());
}

TEST_CASE("metrics: target health, probes, transitions, ejections and the router",
          "[integration][ha]") {
  TempDir dir;
  TestBackend alpha, bravo;
  const auto probe = http_probe(100, 80, 2, 2);
  const auto config = base_toml() + pool_toml("round-robin", {"alpha", "bravo"}, kNoEjection) +
                      target_toml("alpha", alpha.url(), probe) +
                      target_toml("bravo", bravo.url(), probe);
  Gateway gw(botgate_binary(), dir, config);

  std::string m;
  bool probed = eventually(
      [&] {
        m = get_metrics(gw.port());
        return metric_value(m, "botgate_probes_total{target=\"alpha\",result=\"ok\"}")
                       .value_or(0) >= 2 &&
               metric_value(m, "botgate_probes_total{target=\"bravo\",result=\"ok\"}")
                       .value_or(0) >= 2;
      },
      5s);
  {
    INFO(m);
    REQUIRE(probed);
    for (const char* t : {"alpha", "bravo"}) {
      const std::string label = std::string("{target=\"") + t + "\"}";
      INFO(t);
      CHECK(metric_value(m, "botgate_target_healthy" + label) == 1.0);
      CHECK(metric_value(m, "botgate_target_ejected" + label) == 0.0);
      CHECK(metric_value(m, "botgate_target_ejections_total" + label) == 0.0);
      CHECK(metric_value(m, "botgate_target_in_flight" + label).has_value());
    }
    CHECK(metric_value(m, "botgate_router_waiting{pool=\"main\"}") == 0.0);
    CHECK(metric_value(m, "botgate_router_reroutes_total{pool=\"main\"}").has_value());
  }

  bravo.stop();
  bool down = eventually(
      [&] {
        m = get_metrics(gw.port());
        return metric_value(m, "botgate_target_healthy{target=\"bravo\"}") == 0.0;
      },
      5s);
  INFO(m);
  REQUIRE(down);
  CHECK(metric_value(m, "botgate_probes_total{target=\"bravo\",result=\"fail\"}").value_or(0) >= 2);
  CHECK(metric_value(
            m, "botgate_target_health_transitions_total{target=\"bravo\",to=\"unhealthy\"}") ==
        1.0);
  CHECK(metric_value(m, "botgate_target_healthy{target=\"alpha\"}") == 1.0);
  // Bravo's failures are counted on bravo alone. (Alpha may miss a probe when the machine is
  // loaded, with an 80 ms timeout; it stays healthy, which is what matters.)
  CHECK(metric_value(m, "botgate_probes_total{target=\"alpha\",result=\"fail\"}").value_or(0) <
        metric_value(m, "botgate_probes_total{target=\"bravo\",result=\"fail\"}").value_or(0));
  bravo.start();
  CHECK(eventually(
      [&] {
        m = get_metrics(gw.port());
        return metric_value(m,
                            "botgate_target_health_transitions_total{target=\"bravo\",to="
                            "\"healthy\"}") == 1.0 &&
               metric_value(m, "botgate_target_healthy{target=\"bravo\"}") == 1.0;
      },
      5s));
}

// ---------------------------------------------------------------------------
// Dingdong probe over a fake platform

namespace {

const std::string kPlatformSource = "platform";
const std::string kPlatformSecret = "platform-secret-0123456789";
const std::string kPeer = "peer-conv";
constexpr int kDingInterval = 200, kDingTimeout = 150, kDingFall = 2, kDingRise = 2;

// acct is an account target on the fake platform, probed by dingdong; b1 a plain backend.
// Both are in the pool the demo and platform sources route to, so a dong that leaked into
// the queue would be delivered to one of them.
std::string dingdong_config(const FakePlatform& platform, const TestBackend& b1) {
  const auto probe = fmt::format(
      "probe = {{ kind = \"dingdong\", interval = \"{}ms\", timeout = \"{}ms\", jitter = 0.0, "
      "rise = {}, fall = {}, peer = \"{}\", source = \"{}\" }}",
      kDingInterval, kDingTimeout, kDingRise, kDingFall, kPeer, kPlatformSource);
  return base_toml() +
         fmt::format(
             "\n[[sources]]\nname = \"{}\"\nkind = \"generic\"\nsecret = \"{}\"\nroute = "
             "\"{}\"\n",
             kPlatformSource, kPlatformSecret, kPool) +
         pool_toml("round-robin", {"acct", "b1"}, kNoEjection) +
         target_toml("acct", platform.url("/send"), probe, "1s") + target_toml("b1", b1.url());
}

// The "status" of a gateway answer to a dong, "" when it is not JSON with one.
std::string answer_status(const Response& r) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(r.body).get(doc) != simdjson::SUCCESS) return "";
  std::string_view s;
  if (doc["status"].get_string().get(s) != simdjson::SUCCESS) return "";
  return std::string(s);
}

std::size_t dongs_answered(const FakePlatform& p, const std::string& status,
                           Clock::time_point since = {}) {
  auto ds = p.dongs();
  return static_cast<std::size_t>(std::count_if(ds.begin(), ds.end(), [&](const auto& d) {
    return d.sent_at >= since && d.response.status == 200 && answer_status(d.response) == status;
  }));
}

// No dong ever reached a backend, and no ding went anywhere but the probed target.
void check_no_probe_traffic_delivered(const FakePlatform& platform, const TestBackend& b1) {
  for (const auto& r : b1.requests()) {
    INFO("b1 got " << r.method << " " << r.target << " " << r.body);
    CHECK(r.body.find("\"dong ") == std::string::npos);
    CHECK(r.body.find("\"ding ") == std::string::npos);
  }
  for (const auto& r : platform.requests()) {
    INFO("platform got " << r.method << " " << r.target << " " << r.body);
    CHECK(r.body.find("\"dong ") == std::string::npos);
  }
}

// Distinct ids with `prefix` delivered to b1 or taken by the platform (as an ordinary event).
std::size_t routed_count(const FakePlatform& platform, const TestBackend& b1,
                         const std::string& prefix) {
  std::set<std::string> ids;
  for (const auto& [id, n] : delivered_counts({&b1})) {
    if (has_prefix(id, prefix)) ids.insert(id);
  }
  for (const auto& r : platform.requests()) {
    if (!r.is_ding() && has_prefix(r.id, prefix) && r.status == 200) ids.insert(r.id);
  }
  return ids.size();
}

// Every dong that did not carry its own ding's nonce was answered as stale.
void check_mismatched_dongs_stale(const FakePlatform& platform) {
  for (const auto& d : platform.dongs()) {
    if (d.nonce == d.ding_nonce) continue;
    INFO("dong " << d.nonce << " for ding " << d.ding_nonce << ": " << d.response.describe());
    CHECK(d.response.status == 200);
    CHECK(answer_status(d.response) == "stale_probe");
  }
}

std::string dong_body(const std::string& id, const std::string& nonce) {
  return fmt::format(
      R"({{"id":"{}","conversation":"{}","sender":"peer","type":"text","text":"dong {}"}})", id,
      kPeer, nonce);
}

}  // namespace

TEST_CASE(
    "dingdong probe: dongs keep the target healthy, silence takes it out, and probe "
    "traffic is never delivered",
    "[integration][ha][dingdong]") {
  TempDir dir;
  FakePlatform platform;
  TestBackend b1;
  platform.set_peer(kPeer);
  Gateway gw(botgate_binary(), dir, dingdong_config(platform, b1));
  platform.set_gateway(gw.port(), kPlatformSource, kPlatformSecret);

  // Dings arrive, each answered by a dong the gateway takes as a probe answer.
  bool answered = eventually([&] { return dongs_answered(platform, "probe") >= 3; }, 5s);
  {
    std::ostringstream os;
    for (const auto& d : platform.dongs()) os << d.nonce << " -> " << d.response.describe() << "\n";
    INFO("dongs:\n" << os.str());
    REQUIRE(answered);
  }
  auto dings = platform.dings();
  REQUIRE(dings.size() >= 3);
  std::set<std::string> nonces;
  for (const auto& d : dings) {
    INFO("ding " << d.body);
    CHECK(std::regex_match(d.ding_nonce, std::regex("[0-9a-f]{16}")));
    nonces.insert(d.ding_nonce);
    CHECK(d.method == "POST");
    CHECK(d.target == "/send");
    CHECK(d.id == "ding-" + d.ding_nonce);
    CHECK(d.header("idempotency-key") == "ding-" + d.ding_nonce);
    CHECK(d.header("x-botgate-attempt") == "1");
    CHECK(d.header("x-botgate-source") == "botgate-probe");
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    REQUIRE(parser.parse(d.body).get(doc) == simdjson::SUCCESS);
    std::string_view conv, sender, type;
    CHECK(doc["conversation"].get_string().get(conv) == simdjson::SUCCESS);
    CHECK(conv == kPeer);
    CHECK(doc["sender"].get_string().get(sender) == simdjson::SUCCESS);
    CHECK(sender == "botgate");
    CHECK(doc["type"].get_string().get(type) == simdjson::SUCCESS);
    CHECK(type == "text");
  }
  CHECK(nonces.size() == dings.size());  // a fresh nonce every time
  for (std::size_t i = 1; i < dings.size(); ++i) {
    auto gap = std::chrono::duration_cast<Ms>(dings[i].at - dings[i - 1].at).count();
    INFO("ding " << i << " came " << gap << " ms after the one before");
    // One per interval, not a flood. Measured on arrival, so transit jitter counts against it.
    CHECK(gap >= kDingInterval / 2);
  }
  for (const auto& d : platform.dongs()) {
    if (d.response.status == 200 && answer_status(d.response) == "probe") {
      CHECK(d.response.body.find(d.id) != std::string::npos);  // {"status":"probe","id":...}
    }
  }
  TargetsView view;
  CHECK(wait_target(
      gw.port(), "acct",
      [](const TargetView& t) {
        return t.healthy && t.probe.kind == "dingdong" && t.probe.last_ok && t.probe.last_at_ms > 0;
      },
      3s, &view));
  INFO(view.describe());
  auto m = get_metrics(gw.port());
  CHECK(metric_value(m, "botgate_probes_total{target=\"acct\",result=\"ok\"}").value_or(0) >= 2);

  // Ordinary events are routed over both targets.
  auto ids = send_batch(gw.port(), "dd", 10, 10);
  CHECK(eventually([&] { return routed_count(platform, b1, "dd-") >= ids.size(); }, 10s));
  CHECK_FALSE(events_with(b1, "dd-").empty());

  // The peer goes silent: after fall probes acct leaves rotation.
  auto t0 = Clock::now();
  platform.set_mode(PeerMode::silent);
  bool down = wait_target(gw.port(), "acct", is_unhealthy, 5s, &view);
  {
    INFO(view.describe() << "\nafter " << ms_since(t0) << " ms");
    REQUIRE(down);
    CHECK(ms_since(t0) <= kDingFall * kDingInterval + kDingTimeout + 1000);
    CHECK_FALSE(view.target("acct")->probe.last_ok);
    CHECK_FALSE(view.target("acct")->probe.last_error.empty());
  }
  CHECK(wait_log_lines(gw, "target unhealthy", {{"target", "acct"}}, 1, 2s));
  auto quiet = send_batch(gw.port(), "quiet", 10, 10);
  CHECK(eventually([&] { return all_delivered({&b1}, quiet); }, 10s));
  for (const auto& r : platform.requests()) {
    INFO(r.id);
    CHECK_FALSE(has_prefix(r.id, "quiet-"));
  }

  // The peer answers again: back after rise good probes.
  auto t1 = Clock::now();
  platform.set_mode(PeerMode::reply);
  bool up = wait_target(gw.port(), "acct", is_healthy, 5s, &view);
  INFO(view.describe());
  REQUIRE(up);
  CHECK(dongs_answered(platform, "probe", t1) >= kDingRise);
  CHECK(wait_log_lines(gw, "target healthy", {{"target", "acct"}}, 1, 2s));

  // A dong with a nonce never sent, or one already answered, is consumed as stale.
  auto wrong = send_event(gw.port(), kPlatformSource, kPlatformSecret,
                          dong_body("dong-made-up", "0123456789abcdef"));
  INFO(wrong.describe());
  CHECK(wrong.status == 200);
  CHECK(answer_status(wrong) == "stale_probe");
  std::string answered_nonce;
  for (const auto& d : platform.dongs()) {
    if (answer_status(d.response) == "probe") answered_nonce = d.nonce;
  }
  REQUIRE_FALSE(answered_nonce.empty());
  auto again = send_event(gw.port(), kPlatformSource, kPlatformSecret,
                          dong_body("dong-again", answered_nonce));
  INFO(again.describe());
  CHECK(again.status == 200);
  CHECK(answer_status(again) == "stale_probe");

  // Events sent after the dongs are delivered: anything that leaked into the queue would
  // have been delivered by now too.
  auto last = send_batch(gw.port(), "last", 6, 6);
  CHECK(eventually([&] { return routed_count(platform, b1, "last-") >= last.size(); }, 10s));
  std::this_thread::sleep_for(300ms);
  check_no_probe_traffic_delivered(platform, b1);
  CHECK(gw.process().running());
}

TEST_CASE("dingdong probe: a dong with a stale nonce or one that comes too late does not count",
          "[integration][ha][dingdong]") {
  TempDir dir;
  FakePlatform platform;
  TestBackend b1;
  platform.set_peer(kPeer);
  Gateway gw(botgate_binary(), dir, dingdong_config(platform, b1));
  platform.set_gateway(gw.port(), kPlatformSource, kPlatformSecret);
  REQUIRE(eventually([&] { return dongs_answered(platform, "probe") >= 2; }, 5s));
  TargetsView view;
  REQUIRE(wait_target(gw.port(), "acct", is_healthy, 2s, &view));

  // Stale: every dong carries the nonce of the ding before.
  auto t0 = Clock::now();
  platform.set_mode(PeerMode::stale_nonce);
  bool down = wait_target(gw.port(), "acct", is_unhealthy, 5s, &view);
  {
    INFO(view.describe());
    REQUIRE(down);
  }
  CHECK(dongs_answered(platform, "stale_probe", t0) >= 1);
  check_mismatched_dongs_stale(platform);

  platform.set_mode(PeerMode::reply);
  REQUIRE(wait_target(gw.port(), "acct", is_healthy, 5s, &view));

  // Wrong: a nonce the gateway never sent.
  platform.set_mode(PeerMode::wrong_nonce);
  down = wait_target(gw.port(), "acct", is_unhealthy, 5s, &view);
  {
    INFO(view.describe());
    REQUIRE(down);
  }

  check_mismatched_dongs_stale(platform);

  platform.set_mode(PeerMode::reply);
  REQUIRE(wait_target(gw.port(), "acct", is_healthy, 5s, &view));

  // Late: the right nonce, but after the probe timeout.
  auto t2 = Clock::now();
  platform.set_mode(PeerMode::late, Ms(kDingTimeout + 250));
  down = wait_target(gw.port(), "acct", is_unhealthy, 5s, &view);
  {
    INFO(view.describe());
    REQUIRE(down);
  }
  CHECK(eventually([&] { return dongs_answered(platform, "stale_probe", t2) >= 2; }, 3s));
  {
    // Each late dong arrived after its ding's timeout, and none counted.
    for (const auto& d : platform.dongs()) {
      if (d.sent_at < t2 + 50ms) continue;
      INFO("late dong " << d.nonce << " sent "
                        << std::chrono::duration_cast<Ms>(d.sent_at - d.ding_at).count()
                        << " ms after its ding: " << d.response.describe());
      CHECK(d.sent_at - d.ding_at > Ms(kDingTimeout));
      CHECK(answer_status(d.response) == "stale_probe");
    }
  }

  platform.set_mode(PeerMode::reply);
  CHECK(wait_target(gw.port(), "acct", is_healthy, 5s, &view));
  CHECK(wait_log_lines(gw, "target unhealthy", {{"target", "acct"}}, 3, 2s));
  check_no_probe_traffic_delivered(platform, b1);
}
