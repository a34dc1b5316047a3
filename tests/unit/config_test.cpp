#include "app/config.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <variant>
#include <vector>

#include "app/gateway.hpp"

using namespace std::chrono_literals;
using botgate::Config;
using botgate::ConfigError;
using botgate::ConfigResult;
using botgate::Duration;

namespace {

// The smallest valid config; tests append or replace sections.
const std::string kSources = R"(
[[sources]]
name = "demo"
secret = "s3cret-value"
route = "backends"
)";
const std::string kPools = R"(
[[pools]]
name = "backends"
targets = ["b1"]
)";
const std::string kTargets = R"(
[[targets]]
name = "b1"
url = "http://127.0.0.1:9001/events"
)";
const std::string kMinimal = kSources + kPools + kTargets;

ConfigResult parse(const std::string& text, const char* env = nullptr) {
  return botgate::parse_config(text, "test.toml", env);
}

Config expect_ok(const std::string& text, const char* env = nullptr) {
  auto r = parse(text, env);
  if (auto* errs = std::get_if<std::vector<ConfigError>>(&r)) {
    for (const auto& e : *errs) UNSCOPED_INFO(botgate::format_error("test.toml", e));
    FAIL("expected the config to be valid");
  }
  return std::get<Config>(std::move(r));
}

std::vector<ConfigError> expect_errors(const std::string& text) {
  auto r = parse(text);
  REQUIRE(std::holds_alternative<std::vector<ConfigError>>(r));
  auto errs = std::get<std::vector<ConfigError>>(std::move(r));
  for (const auto& e : errs) UNSCOPED_INFO(botgate::format_error("test.toml", e));
  return errs;
}

// Exactly one error, at `key`, whose message contains `fragment`.
ConfigError expect_one(const std::string& text, const std::string& key,
                       const std::string& fragment) {
  auto errs = expect_errors(text);
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].key == key);
  CHECK_THAT(errs[0].message, Catch::Contains(fragment));
  CHECK(errs[0].line > 0);
  return errs[0];
}

bool has_error(const std::vector<ConfigError>& errs, const std::string& key,
               const std::string& fragment) {
  for (const auto& e : errs) {
    if (e.key == key && e.message.find(fragment) != std::string::npos) return true;
  }
  return false;
}

// Restores an environment variable when it goes out of scope.
struct EnvGuard {
  std::string name;
  std::string old;
  bool had;
  explicit EnvGuard(std::string n) : name(std::move(n)) {
    const char* v = std::getenv(name.c_str());
    had = v != nullptr;
    if (had) old = v;
  }
  ~EnvGuard() {
    if (had) {
      setenv(name.c_str(), old.c_str(), 1);
    } else {
      unsetenv(name.c_str());
    }
  }
};

std::string temp_file(const std::string& content) {
  char path[] = "/tmp/botgate-config-test-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  std::ofstream(path) << content;
  return path;
}

}  // namespace

TEST_CASE("minimal config gets every default", "[config]") {
  Config c = expect_ok(kMinimal);

  CHECK(c.server.listen_host == "127.0.0.1");
  CHECK(c.server.listen_port == 8080);
  CHECK(c.server.io_threads == 1);
  CHECK(c.server.admin_token.empty());
  CHECK(c.server.max_body == 1024u * 1024u);
  CHECK(c.server.max_header == 8u * 1024u);
  CHECK(c.server.read_timeout == Duration(15s));
  CHECK(c.server.write_timeout == Duration(15s));
  CHECK(c.server.drain_timeout == Duration(10s));
  CHECK(c.server.max_connections == 10000u);

  CHECK(c.log.level == botgate::log::Level::info);
  CHECK(c.log.format == botgate::log::Format::logfmt);
  CHECK(c.actors.threads == 1);

  CHECK(c.queue.dir == "data");
  CHECK(c.queue.fsync == botgate::FsyncMode::batch);
  CHECK(c.queue.dedup_window == Duration(10min));
  CHECK(c.queue.commit_interval == Duration(1ms));
  CHECK(c.queue.memory_window == 10000u);
  CHECK(c.queue.segment_bytes == 64u << 20);
  CHECK(c.queue.min_free == 64u << 20);
  CHECK(c.queue.shards == 4);
  CHECK(c.queue.max_pending == 100000u);
  CHECK(c.queue.max_attempts == 8u);
  CHECK(c.queue.max_age == Duration(48h));

  CHECK(c.backoff.base == Duration(100ms));
  CHECK(c.backoff.cap == Duration(30s));

  REQUIRE(c.sources.size() == 1);
  CHECK(c.sources[0].name == "demo");
  CHECK(c.sources[0].kind == botgate::SourceKind::generic);
  CHECK(c.sources[0].secret == "s3cret-value");
  CHECK(c.sources[0].route == "backends");
  CHECK(c.sources[0].max_skew == Duration(300s));

  REQUIRE(c.pools.size() == 1);
  CHECK(c.pools[0].name == "backends");
  CHECK(c.pools[0].policy == botgate::PolicyKind::round_robin);
  CHECK(c.pools[0].targets == std::vector<std::string>{"b1"});

  REQUIRE(c.targets.size() == 1);
  const auto& t = c.targets[0];
  CHECK(t.name == "b1");
  CHECK(t.kind == botgate::TargetKind::http);
  CHECK(t.url == "http://127.0.0.1:9001/events");
  CHECK(t.host == "127.0.0.1");
  CHECK(t.port == 9001);
  CHECK(t.path == "/events");
  CHECK(t.weight == 1u);
  CHECK(t.connect_timeout == Duration(1s));
  CHECK(t.timeout == Duration(5s));
  CHECK(t.max_connections == 32u);
  CHECK(t.pipeline == 1u);
}

TEST_CASE("full config with every key set", "[config]") {
  const std::string text = R"(
[server]
listen = "0.0.0.0:0"
io_threads = 4
admin_token = "tok"
max_body = "2MiB"
max_header = 16384
read_timeout = "250ms"
write_timeout = "2s"
drain_timeout = "1h30m"
max_connections = 500

[log]
level = "debug"
format = "json"

[actors]
threads = 8

[queue]
dir = "/var/lib/botgate"
fsync = "always"
commit_interval = "250us"
dedup_window = "30m"
memory_window = 500
segment_bytes = "8MiB"
min_free = "1GiB"
shards = 16
max_pending = 5000
max_attempts = 3
max_age = "48h"

[backoff]
base = "50ms"
cap = "1m"

[[sources]]
name = "alpha"
kind = "generic"
secret = "a"
route = "p1"
max_skew = "60s"

[[sources]]
name = "beta.v2_x-y"
secret = "b"
route = "p2"

[[pools]]
name = "p1"
policy = "round-robin"
targets = ["t1", "t2"]

[[pools]]
name = "p2"
targets = ["t2"]

[[targets]]
name = "t1"
kind = "http"
url = "http://localhost"
weight = 3
connect_timeout = "500ms"
timeout = "10s"
max_connections = 1024
pipeline = 16

[[targets]]
name = "t2"
url = "http://backend.internal:8443/hooks/in?x=1"
)";
  Config c = expect_ok(text);
  CHECK(c.server.listen_host == "0.0.0.0");
  CHECK(c.server.listen_port == 0);
  CHECK(c.server.io_threads == 4);
  CHECK(c.server.max_connections == 500u);
  CHECK(c.server.admin_token == "tok");
  CHECK(c.server.max_body == 2u << 20);
  CHECK(c.server.max_header == 16384u);
  CHECK(c.server.read_timeout == Duration(250ms));
  CHECK(c.server.write_timeout == Duration(2s));
  CHECK(c.server.drain_timeout == Duration(90min));
  CHECK(c.log.level == botgate::log::Level::debug);
  CHECK(c.log.format == botgate::log::Format::json);
  CHECK(c.actors.threads == 8);
  CHECK(c.queue.dir == "/var/lib/botgate");
  CHECK(c.queue.fsync == botgate::FsyncMode::always);
  CHECK(c.queue.dedup_window == Duration(30min));
  CHECK(c.queue.commit_interval == Duration(250us));
  CHECK(c.queue.memory_window == 500u);
  CHECK(c.queue.segment_bytes == 8u << 20);
  CHECK(c.queue.min_free == 1u << 30);
  CHECK(c.queue.shards == 16);
  CHECK(c.queue.max_pending == 5000u);
  CHECK(c.queue.max_attempts == 3u);
  CHECK(c.queue.max_age == Duration(48h));
  CHECK(c.backoff.base == Duration(50ms));
  CHECK(c.backoff.cap == Duration(60s));

  REQUIRE(c.sources.size() == 2);
  CHECK(c.sources[0].max_skew == Duration(60s));
  CHECK(c.sources[1].name == "beta.v2_x-y");
  CHECK(c.sources[1].route == "p2");

  REQUIRE(c.pools.size() == 2);
  CHECK(c.pools[0].targets == std::vector<std::string>{"t1", "t2"});

  REQUIRE(c.targets.size() == 2);
  CHECK(c.targets[0].host == "localhost");
  CHECK(c.targets[0].port == 80);
  CHECK(c.targets[0].path == "/");
  CHECK(c.targets[0].weight == 3u);
  CHECK(c.targets[0].connect_timeout == Duration(500ms));
  CHECK(c.targets[0].timeout == Duration(10s));
  CHECK(c.targets[0].max_connections == 1024u);
  CHECK(c.targets[0].pipeline == 16u);
  CHECK(c.targets[1].host == "backend.internal");
  CHECK(c.targets[1].port == 8443);
  CHECK(c.targets[1].path == "/hooks/in?x=1");
}

TEST_CASE("listen accepts localhost and IPv4 literals", "[config]") {
  auto listen = [](const std::string& v) {
    return "[server]\nlisten = \"" + v + "\"\n" + kMinimal;
  };
  Config c = expect_ok(listen("localhost:9000"));
  CHECK(c.server.listen_host == "127.0.0.1");
  CHECK(c.server.listen_port == 9000);
  c = expect_ok(listen("10.1.2.3:65535"));
  CHECK(c.server.listen_host == "10.1.2.3");
  CHECK(c.server.listen_port == 65535);
  c = expect_ok(listen("127.0.0.1:0"));
  CHECK(c.server.listen_port == 0);
}

TEST_CASE("listen rejects bad values", "[config]") {
  auto listen = [](const std::string& v) {
    return "[server]\nlisten = \"" + v + "\"\n" + kMinimal;
  };
  for (const char* bad : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
                          "127.0.0.1:http", ":8080", "example.com:80", "[::1]:80", "256.0.0.1:80",
                          "1.2.3:80", "1.2.3.4.5:80", "01.2.3.4:80", ""}) {
    INFO(bad);
    auto e = expect_one(listen(bad), "server.listen", "");
    CHECK(e.line == 2);
  }
  expect_one("[server]\nlisten = 8080\n" + kMinimal, "server.listen", "expected a string");
}

TEST_CASE("unknown keys are errors at every level", "[config]") {
  SECTION("top-level key") {
    auto e = expect_one("verbose = true\n" + kMinimal, "verbose", "unknown key");
    CHECK(e.line == 1);
  }
  SECTION("top-level table") {
    auto e = expect_one(kMinimal + "\n[metrics]\nport = 9090\n", "metrics", "unknown key");
    CHECK(e.line == 15);
  }
  SECTION("nested in [server]") {
    auto e = expect_one("[server]\nlisten = \"127.0.0.1:1\"\nbacklog = 5\n" + kMinimal,
                        "server.backlog", "unknown key");
    CHECK(e.line == 3);
  }
  SECTION("nested in [queue]") {
    auto e = expect_one("[queue]\ndir = \"./data\"\nfsync_mode = \"batch\"\n" + kMinimal,
                        "queue.fsync_mode", "unknown key");
    CHECK(e.line == 3);
  }
  SECTION("in each of log, actors, backoff") {
    auto errs =
        expect_errors("[log]\ncolor = 1\n[actors]\nx = 1\n[backoff]\njitter = 1\n" + kMinimal);
    REQUIRE(errs.size() == 3);
    CHECK(errs[0].key == "log.color");
    CHECK(errs[0].line == 2);
    CHECK(errs[1].key == "actors.x");
    CHECK(errs[1].line == 4);
    CHECK(errs[2].key == "backoff.jitter");
    CHECK(errs[2].line == 6);
  }
  SECTION("inside an array-of-tables entry") {
    auto e = expect_one(kSources + kPools + kTargets + "health_check = { kind = \"http\" }\n",
                        "targets[0].health_check", "unknown key");
    CHECK(e.line == 14);
  }
  SECTION("inside sources and pools") {
    auto errs = expect_errors(R"(
[[sources]]
name = "demo"
secret = "x"
route = "backends"
rules = []
[[pools]]
name = "backends"
targets = ["b1"]
health = "on"
)" + kTargets);
    REQUIRE(errs.size() == 2);
    CHECK(errs[0].key == "sources[0].rules");
    CHECK(errs[0].line == 6);
    CHECK(errs[1].key == "pools[0].health");
    CHECK(errs[1].line == 10);
  }
  SECTION("quoted keys are shown quoted") {
    expect_one("[server]\n\"a.b\" = 1\n" + kMinimal, "server.\"a.b\"", "unknown key");
  }
}

TEST_CASE("wrong types are reported", "[config]") {
  auto server = [](const std::string& kv) { return "[server]\n" + kv + "\n" + kMinimal; };
  expect_one(server("io_threads = \"4\""), "server.io_threads", "expected an integer");
  expect_one(server("io_threads = 1.5"), "server.io_threads", "expected an integer");
  expect_one(server("io_threads = true"), "server.io_threads", "expected an integer");
  expect_one(server("admin_token = 42"), "server.admin_token", "expected a string");
  expect_one(server("max_body = 1.5"), "server.max_body", "expected a size");
  expect_one(server("read_timeout = 15"), "server.read_timeout", "expected a string");
  expect_one(server("write_timeout = [\"1s\"]"), "server.write_timeout", "expected a string");
  expect_one("[log]\nlevel = 1\n" + kMinimal, "log.level", "expected a string");
  expect_one("[actors]\nthreads = \"2\"\n" + kMinimal, "actors.threads", "expected an integer");
  expect_one("[queue]\nmax_age = 3600\n" + kMinimal, "queue.max_age", "expected a string");
  expect_one("[backoff]\nbase = 100\n" + kMinimal, "backoff.base", "expected a string");
  expect_one("server = 1\n" + kMinimal, "server", "expected a table");
  expect_one("log = \"debug\"\n" + kMinimal, "log", "expected a table");
  expect_one("sources = \"demo\"\n" + kPools + kTargets, "sources", "expected an array of tables");
  expect_one("sources = [1]\n" + kPools + kTargets, "sources[0]", "expected a table");
  expect_one("[sources]\nname = \"x\"\n" + kPools + kTargets, "sources",
             "expected an array of tables");
  expect_one(kSources + "[[pools]]\nname = \"backends\"\ntargets = \"b1\"\n" + kTargets,
             "pools[0].targets", "expected an array");
  expect_one(kSources + "[[pools]]\nname = \"backends\"\ntargets = [\"b1\", 2]\n" + kTargets,
             "pools[0].targets[1]", "expected a string");
  expect_one(kSources + kPools + kTargets + "weight = \"1\"\n", "targets[0].weight",
             "expected an integer");
  expect_one(kSources + kPools + kTargets + "timeout = 5\n", "targets[0].timeout",
             "expected a string");
  expect_one(R"([[sources]]
name = 7
secret = "x"
route = "backends"
)" + kPools + kTargets,
             "sources[0].name", "expected a string");
}

TEST_CASE("durations", "[config]") {
  auto read_timeout = [](const std::string& v) {
    return "[server]\nread_timeout = \"" + v + "\"\n" + kMinimal;
  };
  SECTION("valid spellings") {
    CHECK(expect_ok(read_timeout("250ms")).server.read_timeout == Duration(250ms));
    CHECK(expect_ok(read_timeout("2s")).server.read_timeout == Duration(2s));
    CHECK(expect_ok(read_timeout("48h")).server.read_timeout == Duration(48h));
    CHECK(expect_ok(read_timeout("1h30m")).server.read_timeout == Duration(90min));
  }
  SECTION("invalid spellings") {
    for (const char* bad : {"5 parsecs", "10", "", "-1s", "1.5s", "s", "99999999999999999999h"}) {
      INFO(bad);
      auto e = expect_one(read_timeout(bad), "server.read_timeout", "invalid duration");
      CHECK(e.line == 2);
    }
  }
  SECTION("more than a year is rejected: deadlines added up from it must not overflow") {
    CHECK(expect_ok(read_timeout("365d")).server.read_timeout == Duration(24h * 365));
    expect_one(read_timeout("366d"), "server.read_timeout", "must be at most 365d");
    expect_one(read_timeout("60000d"), "server.read_timeout", "must be at most");
    expect_one(kMinimal + "timeout = \"60000d\"\n", "targets[0].timeout", "must be at most");
  }
  SECTION("zero is rejected") {
    expect_one(read_timeout("0s"), "server.read_timeout", "greater than zero");
    expect_one(read_timeout("0ms0s"), "server.read_timeout", "greater than zero");
  }
  SECTION("every duration key is validated") {
    auto errs = expect_errors(R"(
[server]
read_timeout = "x"
write_timeout = "x"
drain_timeout = "x"
[queue]
max_age = "x"
[backoff]
base = "x"
cap = "x"
[[sources]]
name = "demo"
secret = "s"
route = "backends"
max_skew = "x"
)" + kPools + kTargets + "connect_timeout = \"x\"\ntimeout = \"x\"\n");
    CHECK(errs.size() == 9);
    for (const char* key : {"server.read_timeout", "server.write_timeout", "server.drain_timeout",
                            "queue.max_age", "backoff.base", "backoff.cap", "sources[0].max_skew",
                            "targets[0].connect_timeout", "targets[0].timeout"}) {
      INFO(key);
      CHECK(has_error(errs, key, "invalid duration"));
    }
  }
}

TEST_CASE("backoff cap must not be below base", "[config]") {
  CHECK(expect_ok("[backoff]\nbase = \"1s\"\ncap = \"1s\"\n" + kMinimal).backoff.cap ==
        Duration(1s));
  auto e = expect_one("[backoff]\nbase = \"2s\"\ncap = \"1s\"\n" + kMinimal, "backoff.cap",
                      "greater than or equal");
  CHECK(e.line == 3);
  // Against the default base (100ms).
  expect_one("[backoff]\ncap = \"50ms\"\n" + kMinimal, "backoff.cap", "greater than or equal");
  // No extra comparison error when base itself is invalid.
  expect_one("[backoff]\nbase = \"nope\"\ncap = \"50ms\"\n" + kMinimal, "backoff.base",
             "invalid duration");
}

TEST_CASE("sizes", "[config]") {
  auto server = [](const std::string& kv) { return "[server]\n" + kv + "\n" + kMinimal; };
  CHECK(expect_ok(server("max_body = \"64MiB\"")).server.max_body == 64u << 20);
  CHECK(expect_ok(server("max_body = 1")).server.max_body == 1u);
  CHECK(expect_ok(server("max_body = \"512KB\"")).server.max_body == 512000u);
  CHECK(expect_ok(server("max_body = \"4096\"")).server.max_body == 4096u);
  CHECK(expect_ok(server("max_header = \"1KiB\"")).server.max_header == 1024u);
  CHECK(expect_ok(server("max_header = \"1MiB\"")).server.max_header == 1u << 20);

  expect_one(server("max_body = 0"), "server.max_body", "between");
  expect_one(server("max_body = \"0MiB\""), "server.max_body", "between");
  expect_one(server("max_body = \"65MiB\""), "server.max_body", "between");
  expect_one(server("max_body = 67108865"), "server.max_body", "between");
  expect_one(server("max_body = -1"), "server.max_body", "negative");
  expect_one(server("max_body = \"1 MiB\""), "server.max_body", "invalid size");
  expect_one(server("max_body = \"1TB\""), "server.max_body", "invalid size");
  expect_one(server("max_body = \"\""), "server.max_body", "invalid size");
  expect_one(server("max_header = \"1023B\""), "server.max_header", "between");
  expect_one(server("max_header = \"2MiB\""), "server.max_header", "between");
}

TEST_CASE("integer ranges", "[config]") {
  auto server = [](const std::string& kv) { return "[server]\n" + kv + "\n" + kMinimal; };
  CHECK(expect_ok(server("io_threads = 64")).server.io_threads == 64);
  expect_one(server("io_threads = 0"), "server.io_threads", "between 1 and 64");
  expect_one(server("io_threads = 65"), "server.io_threads", "between 1 and 64");
  CHECK(expect_ok(server("max_connections = 1")).server.max_connections == 1u);
  expect_one(server("max_connections = 0"), "server.max_connections", "between 1 and 1000000");
  expect_one(server("max_connections = 1000001"), "server.max_connections",
             "between 1 and 1000000");
  expect_one("[actors]\nthreads = 0\n" + kMinimal, "actors.threads", "between 1 and 64");
  expect_one("[actors]\nthreads = 65\n" + kMinimal, "actors.threads", "between 1 and 64");
  CHECK(expect_ok("[queue]\nshards = 1024\n" + kMinimal).queue.shards == 1024);
  expect_one("[queue]\nshards = 0\n" + kMinimal, "queue.shards", "between 1 and 1024");
  expect_one("[queue]\nshards = 1025\n" + kMinimal, "queue.shards", "between 1 and 1024");
  expect_one("[queue]\nmax_pending = 0\n" + kMinimal, "queue.max_pending", "at least 1");
  expect_one("[queue]\nmax_attempts = 0\n" + kMinimal, "queue.max_attempts", "between 1 and");
  expect_one("[queue]\nmax_attempts = 4294967296\n" + kMinimal, "queue.max_attempts",
             "between 1 and");
  CHECK(expect_ok("[queue]\nmax_attempts = 1\n" + kMinimal).queue.max_attempts == 1u);
  expect_one(kMinimal + "weight = 0\n", "targets[0].weight", "between 1 and");
  expect_one(kMinimal + "max_connections = 0\n", "targets[0].max_connections",
             "between 1 and 1024");
  expect_one(kMinimal + "max_connections = 1025\n", "targets[0].max_connections",
             "between 1 and 1024");
  expect_one(kMinimal + "pipeline = 0\n", "targets[0].pipeline", "between 1 and 128");
  expect_one(kMinimal + "pipeline = 129\n", "targets[0].pipeline", "between 1 and 128");
}

TEST_CASE("log level and format", "[config]") {
  CHECK(expect_ok("[log]\nlevel = \"warn\"\n" + kMinimal).log.level == botgate::log::Level::warn);
  CHECK(expect_ok("[log]\nlevel = \"error\"\n" + kMinimal).log.level == botgate::log::Level::error);
  expect_one("[log]\nlevel = \"verbose\"\n" + kMinimal, "log.level", "unknown log level");
  expect_one("[log]\nformat = \"xml\"\n" + kMinimal, "log.format", "unknown log format");
}

TEST_CASE("source validation", "[config]") {
  auto source = [](const std::string& body) {
    return "[[sources]]\n" + body + "\n" + kPools + kTargets;
  };
  SECTION("unsupported and unknown kinds") {
    expect_one(source("name = \"a\"\nsecret = \"x\"\nroute = \"backends\"\nkind = \"slack\""),
               "sources[0].kind", "source kind 'slack' is not supported yet");
    expect_one(source("name = \"a\"\nsecret = \"x\"\nroute = \"backends\"\nkind = \"irc\""),
               "sources[0].kind", "unknown source kind");
  }
  SECTION("missing required keys use the table's line") {
    auto errs = expect_errors("\n\n" + source("kind = \"generic\""));
    REQUIRE(errs.size() == 3);
    for (const auto& e : errs) {
      CHECK(e.line == 3);
      CHECK(e.message == "missing required key");
    }
    CHECK(has_error(errs, "sources[0].name", "missing"));
    CHECK(has_error(errs, "sources[0].secret", "missing"));
    CHECK(has_error(errs, "sources[0].route", "missing"));
  }
  SECTION("empty values") {
    auto errs = expect_errors(source("name = \"\"\nsecret = \"\"\nroute = \"\""));
    REQUIRE(errs.size() == 3);
    CHECK(has_error(errs, "sources[0].name", "must not be empty"));
    CHECK(has_error(errs, "sources[0].secret", "must not be empty"));
    CHECK(has_error(errs, "sources[0].route", "must not be empty"));
  }
  SECTION("bad name characters") {
    expect_one(source("name = \"a b\"\nsecret = \"x\"\nroute = \"backends\""), "sources[0].name",
               "invalid source name");
    expect_one(source("name = \"a/b\"\nsecret = \"x\"\nroute = \"backends\""), "sources[0].name",
               "invalid source name");
  }
  SECTION("duplicate names") {
    auto e = expect_one(kSources + kSources + kPools + kTargets, "sources[1].name",
                        "duplicate source name 'demo'");
    CHECK(e.line == 8);
    CHECK_THAT(e.message, Catch::Contains("line 3"));
  }
  SECTION("dangling route") {
    auto e = expect_one(source("name = \"a\"\nsecret = \"x\"\nroute = \"nowhere\""),
                        "sources[0].route", "unknown pool 'nowhere'");
    CHECK(e.line == 4);
  }
  SECTION("at least one source") {
    auto e = expect_one(kPools + kTargets, "sources", "at least one");
    CHECK(e.line == 1);
    expect_one("sources = []\n" + kPools + kTargets, "sources", "at least one");
  }
}

TEST_CASE("pool validation", "[config]") {
  auto pool = [](const std::string& body) {
    return kSources + "[[pools]]\n" + body + "\n" + kTargets;
  };
  SECTION("policies") {
    for (const auto& [name, kind] : botgate::kPolicyNames) {
      INFO(name);
      auto c = expect_ok(
          pool("name = \"backends\"\ntargets = [\"b1\"]\npolicy = \"" + std::string(name) + "\""));
      CHECK(c.pools[0].policy == kind);
    }
    auto e = expect_one(pool("name = \"backends\"\ntargets = [\"b1\"]\npolicy = \"random\""),
                        "pools[0].policy", "unknown policy");
    CHECK(e.line == 9);
  }
  SECTION("missing and empty targets") {
    auto e = expect_one(pool("name = \"backends\""), "pools[0].targets", "missing required key");
    CHECK(e.line == 6);
    expect_one(pool("name = \"backends\"\ntargets = []"), "pools[0].targets", "at least one");
    auto errs = expect_errors(pool("targets = [\"b1\"]"));
    CHECK(has_error(errs, "pools[0].name", "missing required key"));
  }
  SECTION("dangling and duplicate target names, one per line") {
    auto errs = expect_errors(pool(R"(name = "backends"
targets = [
  "b1",
  "ghost",
  "b1",
]
)"));
    REQUIRE(errs.size() == 2);
    CHECK(errs[0].key == "pools[0].targets[1]");
    CHECK(errs[0].message == "unknown target 'ghost'");
    CHECK(errs[0].line == 10);
    CHECK(errs[1].key == "pools[0].targets[2]");
    CHECK_THAT(errs[1].message, Catch::Contains("duplicate target 'b1'"));
    CHECK(errs[1].line == 11);
  }
  SECTION("duplicate pool names") {
    expect_one(kSources + kPools + kPools + kTargets, "pools[1].name",
               "duplicate pool name 'backends'");
  }
  SECTION("at least one pool") {
    auto errs = expect_errors(kSources + kTargets);
    CHECK(has_error(errs, "pools", "at least one"));
    CHECK(has_error(errs, "sources[0].route", "unknown pool 'backends'"));
  }
}

TEST_CASE("target validation", "[config]") {
  auto url = [](const std::string& u) {
    return kSources + kPools + "[[targets]]\nname = \"b1\"\nurl = \"" + u + "\"\n";
  };
  SECTION("a bad name is one error, not one more where a pool names it") {
    expect_one(kSources +
                   "[[pools]]\nname = \"backends\"\ntargets = [\"b 1\"]\n"
                   "[[targets]]\nname = \"b 1\"\nurl = \"http://127.0.0.1:9001/\"\n",
               "targets[0].name", "invalid target name 'b 1'");
  }
  SECTION("url forms") {
    Config c = expect_ok(url("http://10.0.0.1"));
    CHECK(c.targets[0].host == "10.0.0.1");
    CHECK(c.targets[0].port == 80);
    CHECK(c.targets[0].path == "/");
    c = expect_ok(url("http://localhost:8080"));
    CHECK(c.targets[0].host == "localhost");
    CHECK(c.targets[0].port == 8080);
    CHECK(c.targets[0].path == "/");
    c = expect_ok(url("http://api-1.example.com/v1/hook"));
    CHECK(c.targets[0].host == "api-1.example.com");
    CHECK(c.targets[0].port == 80);
    CHECK(c.targets[0].path == "/v1/hook");
  }
  SECTION("https uses TLS, on port 443 unless given") {
    auto c = expect_ok(url("https://example.com/x"));
    CHECK(c.targets[0].tls);
    CHECK(c.targets[0].port == 443);
    CHECK(c.targets[0].path == "/x");
    c = expect_ok(url("HTTPS://example.com:8443/"));
    CHECK(c.targets[0].tls);
    CHECK(c.targets[0].port == 8443);
    CHECK_FALSE(expect_ok(url("http://example.com/")).targets[0].tls);
  }
  SECTION("bad urls") {
    for (const char* bad :
         {"ftp://host/", "127.0.0.1:80", "http://", "http:///path", "http://host:0/",
          "http://host:65536/", "http://host:/", "http://host:abc/", "http://-bad-.com/",
          "http://under_score.com/", "http://user@host/", "http://999.1.1.1/", "http://[::1]:80/",
          "http://host/a b", "http://host/#frag"}) {
      INFO(bad);
      expect_one(url(bad), "targets[0].url", "invalid url");
    }
  }
  SECTION("kinds") {
    expect_one(kMinimal + "kind = \"slack\"\n", "targets[0].kind", "not supported yet");
    expect_one(kMinimal + "kind = \"grpc\"\n", "targets[0].kind", "unknown target kind");
  }
  SECTION("missing url and name") {
    auto errs = expect_errors(kSources + kPools + "[[targets]]\nweight = 2\n");
    REQUIRE(errs.size() == 3);
    CHECK(has_error(errs, "targets[0].name", "missing required key"));
    CHECK(has_error(errs, "targets[0].url", "missing required key"));
    CHECK(has_error(errs, "pools[0].targets[0]", "unknown target 'b1'"));
    CHECK(errs[0].line == 9);   // sorted by line: the pool's targets array first
    CHECK(errs[1].line == 10);  // then missing keys at the [[targets]] header
    CHECK(errs[2].line == 10);
  }
  SECTION("duplicate target names") {
    expect_one(kMinimal + kTargets, "targets[1].name", "duplicate target name 'b1'");
  }
  SECTION("at least one target") {
    auto errs = expect_errors(kSources + kPools);
    CHECK(has_error(errs, "targets", "at least one"));
    CHECK(has_error(errs, "pools[0].targets[0]", "unknown target 'b1'"));
  }
}

TEST_CASE("many errors are collected with their lines", "[config]") {
  const std::string text = R"([server]
listen = "nowhere"
io_threads = 0
bogus = 1

[log]
level = "loud"

[queue]
max_age = "5 parsecs"

[[sources]]
name = "demo"
kind = "slack"
secret = "hunter2-very-secret"
route = "missing-pool"

[[pools]]
name = "backends"
policy = "stikcy"
targets = ["b1", "nope"]

[[targets]]
name = "b1"
url = "ftp://secure.example.com/"
)";
  auto errs = expect_errors(text);
  REQUIRE(errs.size() == 10);
  struct Want {
    std::uint32_t line;
    const char* key;
    const char* fragment;
  };
  const Want want[] = {
      {2, "server.listen", "host"},
      {3, "server.io_threads", "between 1 and 64"},
      {4, "server.bogus", "unknown key"},
      {7, "log.level", "unknown log level"},
      {10, "queue.max_age", "invalid duration"},
      {14, "sources[0].kind", "not supported yet"},
      {16, "sources[0].route", "unknown pool 'missing-pool'"},
      {20, "pools[0].policy", "unknown policy 'stikcy'"},
      {21, "pools[0].targets[1]", "unknown target 'nope'"},
      {25, "targets[0].url", "invalid url"},
  };
  for (std::size_t i = 0; i < errs.size(); ++i) {
    INFO(i);
    CHECK(errs[i].line == want[i].line);
    CHECK(errs[i].key == want[i].key);
    CHECK_THAT(errs[i].message, Catch::Contains(want[i].fragment));
  }
  for (const auto& e : errs) CHECK(e.message.find("hunter2") == std::string::npos);
}

TEST_CASE("secrets never appear in error messages", "[config]") {
  auto errs = expect_errors(R"([server]
admin_token = ["admin-secret-token"]
[[sources]]
name = "demo"
secret = ["source-secret-value"]
route = "backends"
)" + kPools + kTargets);
  REQUIRE(errs.size() == 2);
  for (const auto& e : errs) {
    const std::string line = botgate::format_error("f.toml", e);
    CHECK(line.find("admin-secret-token") == std::string::npos);
    CHECK(line.find("source-secret-value") == std::string::npos);
  }
}

TEST_CASE("TOML syntax errors become one error with a line", "[config]") {
  auto errs = expect_errors("[server]\nlisten = \"127.0.0.1:1\"\nio_threads = \n" + kMinimal);
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].line == 3);
  CHECK(errs[0].key.empty());
  CHECK_FALSE(errs[0].message.empty());

  errs = expect_errors("[server]\nio_threads = 1\nio_threads = 2\n" + kMinimal);
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].line == 3);
}

TEST_CASE("admin token from the environment", "[config]") {
  SECTION("overrides the file") {
    Config c = expect_ok("[server]\nadmin_token = \"from-file\"\n" + kMinimal, "from-env");
    CHECK(c.server.admin_token == "from-env");
  }
  SECTION("sets it when the file has none") {
    CHECK(expect_ok(kMinimal, "from-env").server.admin_token == "from-env");
  }
  SECTION("empty or unset env keeps the file value") {
    CHECK(expect_ok("[server]\nadmin_token = \"from-file\"\n" + kMinimal, "").server.admin_token ==
          "from-file");
    CHECK(expect_ok("[server]\nadmin_token = \"from-file\"\n" + kMinimal, nullptr)
              .server.admin_token == "from-file");
  }
}

TEST_CASE("load_config reads a file and applies BOTGATE_ADMIN_TOKEN", "[config]") {
  EnvGuard guard("BOTGATE_ADMIN_TOKEN");
  const std::string path = temp_file("[server]\nadmin_token = \"file-token\"\n" + kMinimal);

  unsetenv("BOTGATE_ADMIN_TOKEN");
  auto r = botgate::load_config(path);
  REQUIRE(std::holds_alternative<Config>(r));
  CHECK(std::get<Config>(r).server.admin_token == "file-token");

  setenv("BOTGATE_ADMIN_TOKEN", "env-token", 1);
  r = botgate::load_config(path);
  REQUIRE(std::holds_alternative<Config>(r));
  CHECK(std::get<Config>(r).server.admin_token == "env-token");

  setenv("BOTGATE_ADMIN_TOKEN", "", 1);
  r = botgate::load_config(path);
  REQUIRE(std::holds_alternative<Config>(r));
  CHECK(std::get<Config>(r).server.admin_token == "file-token");

  std::remove(path.c_str());
}

TEST_CASE("queue keys are validated", "[config]") {
  auto errs = expect_errors(
      "[queue]\ndir = \"\"\nfsync = \"sometimes\"\nmemory_window = 1\n"
      "segment_bytes = \"1KiB\"\ndedup_window = \"0s\"\nmin_free = \"2000GiB\"\n" +
      kMinimal);
  CHECK(has_error(errs, "queue.dir", "must not be empty"));
  CHECK(has_error(errs, "queue.fsync", "unknown fsync mode 'sometimes'"));
  CHECK(has_error(errs, "queue.memory_window", "must be at least 16"));
  CHECK(has_error(errs, "queue.segment_bytes", "between 1MiB and 4GiB"));
  CHECK(has_error(errs, "queue.dedup_window", "greater than zero"));
  CHECK(has_error(errs, "queue.min_free", "between 0 and 1024GiB"));
  CHECK(errs.size() == 6);
  auto none = expect_ok("[queue]\nfsync = \"none\"\nmin_free = 0\n" + kMinimal);
  CHECK(none.queue.fsync == botgate::FsyncMode::none);
  CHECK(none.queue.min_free == 0);

  // commit_interval may be 0 (off), and at most 100ms.
  CHECK(expect_ok("[queue]\ncommit_interval = \"0s\"\n" + kMinimal).queue.commit_interval ==
        Duration::zero());
  CHECK(expect_ok("[queue]\ncommit_interval = \"100ms\"\n" + kMinimal).queue.commit_interval ==
        Duration(100ms));
  auto long_interval = expect_errors("[queue]\ncommit_interval = \"101ms\"\n" + kMinimal);
  CHECK(has_error(long_interval, "queue.commit_interval", "must be at most 100ms"));
  CHECK(long_interval.size() == 1);
  auto not_duration = expect_errors("[queue]\ncommit_interval = 5\n" + kMinimal);
  CHECK(has_error(not_duration, "queue.commit_interval", "expected a string"));
}

TEST_CASE("target limits and probe keys default sanely", "[config][ha]") {
  auto c = expect_ok(kMinimal);
  const auto& t = c.targets.at(0);
  CHECK(t.max_in_flight == 32);  // max_connections * pipeline
  CHECK(t.rate_limit == 0.0);
  CHECK(t.burst == 1.0);
  CHECK(t.probe.kind == botgate::ProbeKind::none);
  CHECK(t.probe.interval == std::chrono::seconds(5));
  CHECK(t.probe.timeout == std::chrono::seconds(2));
  CHECK(t.probe.thresholds.rise == 2);
  CHECK(t.probe.thresholds.fall == 3);
  const auto& o = c.pools.at(0).outlier;
  CHECK(o.consecutive_failures == 5);
  CHECK(o.base_ejection_time == std::chrono::seconds(30));
  CHECK(o.max_ejection_time == std::chrono::seconds(300));
  CHECK(o.max_ejection_percent == 10);
  auto piped = expect_ok(kSources + kPools + kTargets + "max_connections = 4\npipeline = 8\n");
  CHECK(piped.targets.at(0).max_in_flight == 32);
}

TEST_CASE("target limits, probes and outlier settings are read", "[config][ha]") {
  auto c = expect_ok(kSources + R"(
[[pools]]
name = "backends"
policy = "sticky"
targets = ["b1"]
[pools.outlier]
consecutive_failures = 3
base_ejection_time = "2s"
max_ejection_time = "10s"
max_ejection_percent = 50
[[targets]]
name = "b1"
url = "http://127.0.0.1:9001/events"
max_in_flight = 4
rate_limit = 2.5
[targets.probe]
kind = "http"
path = "/health"
interval = "200ms"
timeout = "100ms"
jitter = 0.2
rise = 1
fall = 4
)");
  const auto& t = c.targets.at(0);
  CHECK(t.max_in_flight == 4);
  CHECK(t.rate_limit == 2.5);
  CHECK(t.burst == 3.0);  // one second's worth, rounded up
  CHECK(t.probe.kind == botgate::ProbeKind::http);
  CHECK(t.probe.path == "/health");
  CHECK(t.probe.interval == std::chrono::milliseconds(200));
  CHECK(t.probe.timeout == std::chrono::milliseconds(100));
  CHECK(t.probe.jitter == 0.2);
  CHECK(t.probe.thresholds.rise == 1);
  CHECK(t.probe.thresholds.fall == 4);
  const auto& o = c.pools.at(0).outlier;
  CHECK(o.consecutive_failures == 3);
  CHECK(o.base_ejection_time == std::chrono::seconds(2));
  CHECK(o.max_ejection_time == std::chrono::seconds(10));
  CHECK(o.max_ejection_percent == 50);

  auto ding = expect_ok(kSources + kPools + kTargets +
                        "[targets.probe]\nkind = \"dingdong\"\npeer = \"wx-peer\"\n"
                        "source = \"demo\"\n");
  CHECK(ding.targets.at(0).probe.kind == botgate::ProbeKind::dingdong);
  CHECK(ding.targets.at(0).probe.peer == "wx-peer");
  CHECK(ding.targets.at(0).probe.source == "demo");
}

TEST_CASE("bad probe, limit and outlier settings are errors with their key", "[config][ha]") {
  const std::string probe = kSources + kPools + kTargets + "[targets.probe]\n";
  expect_one(probe + "kind = \"tcp\"\n", "targets[0].probe.kind", "unknown probe kind 'tcp'");
  expect_one(probe + "kind = \"http\"\ninterval = \"1s\"\ntimeout = \"2s\"\n",
             "targets[0].probe.timeout", "must not be longer than probe.interval (1s)");
  expect_one(probe + "kind = \"http\"\npath = \"healthz\"\n", "targets[0].probe.path",
             "must start with '/'");
  expect_one(probe + "kind = \"http\"\njitter = 0.9\n", "targets[0].probe.jitter",
             "between 0 and 0.5");
  expect_one(probe + "kind = \"http\"\nfall = 0\n", "targets[0].probe.fall", "between 1 and 1000");
  expect_one(probe + "kind = \"dingdong\"\nsource = \"demo\"\n", "targets[0].probe.peer",
             "missing required key");
  expect_one(probe + "kind = \"dingdong\"\npeer = \"p\"\n", "targets[0].probe.source",
             "missing required key");
  expect_one(probe + "kind = \"dingdong\"\npeer = \"p\"\nsource = \"nope\"\n",
             "targets[0].probe.source", "unknown source 'nope'");
  expect_one(probe + "kind = \"http\"\npeer = \"p\"\n", "targets[0].probe.peer",
             "only a dingdong probe");
  expect_one(probe + "colour = \"red\"\n", "targets[0].probe.colour", "unknown key");
  expect_one(kSources + kPools + kTargets + "probe = \"http\"\n", "targets[0].probe",
             "expected a table");
  expect_one(
      kSources + kPools + kTargets + "max_connections = 2\npipeline = 2\nmax_in_flight = 5\n",
      "targets[0].max_in_flight", "must not exceed max_connections * pipeline (4)");
  // Far over it: the same message, not a range of its own.
  expect_one(kSources + kPools + kTargets + "max_in_flight = 2000000\n", "targets[0].max_in_flight",
             "must not exceed max_connections * pipeline (32)");
  expect_one(kSources + kPools + kTargets + "rate_limit = \"fast\"\n", "targets[0].rate_limit",
             "expected a number");
  expect_one(kSources + kPools + kTargets + "rate_limit = -1\n", "targets[0].rate_limit",
             "between 0 and");
  const std::string outlier = kSources + kPools + "[pools.outlier]\n";
  expect_one(outlier + "base_ejection_time = \"1m\"\nmax_ejection_time = \"30s\"\n" + kTargets,
             "pools[0].outlier.max_ejection_time", "greater than or equal to base_ejection_time");
  expect_one(outlier + "max_ejection_percent = 101\n" + kTargets,
             "pools[0].outlier.max_ejection_percent", "between 0 and 100");
  expect_one(outlier + "consecutive_failures = 0\n" + kTargets,
             "pools[0].outlier.consecutive_failures", "between 1 and");
}

TEST_CASE("a probe's timeout left out is at most its interval", "[config][ha]") {
  const std::string probe = kSources + kPools + kTargets + "[targets.probe]\nkind = \"http\"\n";
  CHECK(expect_ok(probe).targets[0].probe.timeout == 2s);
  CHECK(expect_ok(probe + "interval = \"3s\"\n").targets[0].probe.timeout == 2s);
  CHECK(expect_ok(probe + "interval = \"1s\"\n").targets[0].probe.timeout == 1s);
  CHECK(expect_ok(probe + "interval = \"500ms\"\n").targets[0].probe.timeout == 500ms);
  // Set explicitly, it must still fit in the interval.
  expect_one(probe + "interval = \"1s\"\ntimeout = \"1001ms\"\n", "targets[0].probe.timeout",
             "must not be longer than probe.interval (1s)");
}

TEST_CASE("a probe that sets keys but no kind is an error: it would never run", "[config][ha]") {
  const std::string probe = kSources + kPools + kTargets + "[targets.probe]\n";
  auto e = expect_one(probe + "path = \"/health\"\ninterval = \"1s\"\n", "targets[0].probe.kind",
                      "needs a kind (http or dingdong)");
  CHECK(e.line == 14);  // the [targets.probe] line
  e = expect_one(probe + "kind = \"none\"\nrise = 1\n", "targets[0].probe.kind",
                 "needs a kind (http or dingdong)");
  CHECK(e.line == 15);  // the kind line
  // No check asked for, nothing set: fine.
  CHECK(expect_ok(probe).targets[0].probe.kind == botgate::ProbeKind::none);
  CHECK(expect_ok(probe + "kind = \"none\"\n").targets[0].probe.kind == botgate::ProbeKind::none);
}

TEST_CASE("load_config resolves a relative queue.dir against the config file", "[config]") {
  const std::string path = temp_file("[queue]\ndir = \"q/data\"\n" + kMinimal);
  auto r = botgate::load_config(path);
  REQUIRE(std::holds_alternative<Config>(r));
  const auto want = (std::filesystem::path(path).parent_path() / "q/data").lexically_normal();
  CHECK(std::get<Config>(r).queue.dir == want.string());
  std::remove(path.c_str());

  const std::string abs = temp_file("[queue]\ndir = \"/srv/q\"\n" + kMinimal);
  r = botgate::load_config(abs);
  REQUIRE(std::holds_alternative<Config>(r));
  CHECK(std::get<Config>(r).queue.dir == "/srv/q");
  std::remove(abs.c_str());
}

TEST_CASE("load_config reports errors from the file", "[config]") {
  const std::string path = temp_file("[server]\nio_threads = 0\n" + kMinimal);
  auto r = botgate::load_config(path);
  REQUIRE(std::holds_alternative<std::vector<ConfigError>>(r));
  const auto& errs = std::get<std::vector<ConfigError>>(r);
  REQUIRE(errs.size() == 1);
  CHECK(botgate::format_error(path, errs[0]) ==
        path + ":2: server.io_threads: must be between 1 and 64");
  std::remove(path.c_str());
}

TEST_CASE("load_config on a missing file", "[config]") {
  auto r = botgate::load_config("/nonexistent/botgate.toml");
  REQUIRE(std::holds_alternative<std::vector<ConfigError>>(r));
  const auto& errs = std::get<std::vector<ConfigError>>(r);
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].line == 0);
  CHECK(errs[0].key.empty());
  CHECK_THAT(errs[0].message, Catch::Contains("No such file"));
}

TEST_CASE("load_config reads at most 4MiB so a huge file is an error and no crash", "[config]") {
  // Valid TOML of exactly the cap, then one byte more: a comment line pads it.
  constexpr std::size_t kCap = 4 << 20;
  const auto padded = [&](std::size_t size) {
    std::string text = kMinimal + "#";
    text.append(size - text.size() - 1, 'x');
    return text + "\n";
  };
  const std::string fits = temp_file(padded(kCap));
  CHECK(std::holds_alternative<Config>(botgate::load_config(fits)));
  std::remove(fits.c_str());

  const std::string big = temp_file(padded(kCap + 1));
  auto r = botgate::load_config(big);
  std::remove(big.c_str());
  REQUIRE(std::holds_alternative<std::vector<ConfigError>>(r));
  const auto& errs = std::get<std::vector<ConfigError>>(r);
  REQUIRE(errs.size() == 1);
  CHECK(botgate::format_error("big.toml", errs[0]) ==
        "big.toml: config file larger than 4MiB (the most botgate reads)");
}

TEST_CASE("format_error", "[config]") {
  CHECK(botgate::format_error("a.toml", ConfigError{3, "server.listen", "bad"}) ==
        "a.toml:3: server.listen: bad");
  CHECK(botgate::format_error("a.toml", ConfigError{0, "", "cannot read"}) ==
        "a.toml: cannot read");
  CHECK(botgate::format_error("a.toml", ConfigError{7, "", "syntax"}) == "a.toml:7: syntax");
  CHECK(botgate::format_error("a.toml", ConfigError{0, "sources", "missing"}) ==
        "a.toml: sources: missing");
}

// ---------------------------------------------------------------------------
// WeChat / WeCom sources, [[routes]] and account targets

namespace {
namespace wxcfg {

const std::string kAesKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";  // 43 characters

// A WeChat Official Account source in safe mode, replying through the pool of OA accounts.
const std::string kWechatSource = R"(
[[sources]]
name = "wx"
kind = "wechat"
token = "wx-callback-token"
encoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
app_id = "wx1234567890abcdef"
accounts = "wx-accounts"
)";

// "backends" holds http target b1; "wx-accounts" and "kf-accounts" hold account targets.
const std::string kPoolsAll = R"(
[[pools]]
name = "backends"
targets = ["b1"]

[[pools]]
name = "wx-accounts"
targets = ["oa1"]

[[pools]]
name = "kf-accounts"
targets = ["kf1"]
)";

const std::string kOaTarget = R"(
[[targets]]
name = "oa1"
kind = "wechat-oa"
app_id = "wx1234567890abcdef"
app_secret = "oa-app-secret-value"
)";

const std::string kKfTarget = R"(
[[targets]]
name = "kf1"
kind = "wecom-kf"
corp_id = "ww0123456789"
corp_secret = "kf-corp-secret-value"
open_kfid = "wkAbCdEf0123"
)";

const std::string kTargetsAll = kTargets + kOaTarget + kKfTarget;

// `sources` (and any [[routes]]) followed by every pool and target.
std::string config(const std::string& sources) {
  return sources + kPoolsAll + kTargetsAll;
}

// One [[sources]] entry of kind `kind` made of `body`, then every pool and target.
std::string source(const std::string& kind, const std::string& body) {
  return config("[[sources]]\nkind = \"" + kind + "\"\n" + body + "\n");
}

// Every pool, then one account target made of `body` (after kTargets' b1): targets[1].
std::string account_target(const std::string& body) {
  return kSources + kPoolsAll + kTargets + "\n[[targets]]\n" + body + "\n" + kOaTarget + kKfTarget;
}

}  // namespace wxcfg
}  // namespace

TEST_CASE("a wechat source parses with its defaults", "[config][wechat]") {
  const Config c = expect_ok(wxcfg::config(wxcfg::kWechatSource));
  REQUIRE(c.sources.size() == 1);
  const auto& s = c.sources[0];
  CHECK(s.name == "wx");
  CHECK(s.kind == botgate::SourceKind::wechat);
  CHECK(s.token == "wx-callback-token");
  CHECK(s.encoding_aes_key == wxcfg::kAesKey);
  CHECK(s.app_id == "wx1234567890abcdef");
  CHECK(s.accounts == "wx-accounts");
  CHECK(s.route.empty());  // optional for wechat
  CHECK(s.secret.empty());
  CHECK(s.corp_id.empty());
  CHECK(s.answer_ding);
  CHECK_FALSE(s.allow_plaintext);  // a source with a key takes safe mode only
  CHECK(s.ack_deadline == Duration(4500ms));
  CHECK(s.max_skew == Duration(300s));
  CHECK(c.routes.empty());
}

TEST_CASE("a wechat source reads route, answer_ding and ack_deadline", "[config][wechat]") {
  const Config c =
      expect_ok(wxcfg::config(wxcfg::kWechatSource + "route = \"backends\"\nanswer_ding = false\n"
                                                     "ack_deadline = \"2s\"\n"
                                                     "allow_plaintext = true\n"));
  const auto& s = c.sources.at(0);
  CHECK(s.route == "backends");
  CHECK_FALSE(s.answer_ding);
  CHECK(s.allow_plaintext);
  CHECK(s.ack_deadline == Duration(2s));
  CHECK(expect_ok(wxcfg::config(wxcfg::kWechatSource + "ack_deadline = \"4500ms\"\n"))
            .sources.at(0)
            .ack_deadline == Duration(4500ms));
}

TEST_CASE("a wechat source without encoding_aes_key is plaintext mode", "[config][wechat]") {
  Config c = expect_ok(wxcfg::source("wechat", "name = \"wx\"\ntoken = \"tok\""));
  const auto& s = c.sources.at(0);
  CHECK(s.kind == botgate::SourceKind::wechat);
  CHECK(s.token == "tok");
  CHECK(s.encoding_aes_key.empty());
  CHECK(s.app_id.empty());
  CHECK(s.accounts.empty());
  // An app id without a key is fine too.
  c = expect_ok(wxcfg::source("wechat", "name = \"wx\"\ntoken = \"tok\"\napp_id = \"wxA\""));
  CHECK(c.sources.at(0).app_id == "wxA");
}

TEST_CASE("a wechat source needs a token", "[config][wechat]") {
  expect_one(wxcfg::source("wechat", "name = \"wx\""), "sources[0].token", "missing required key");
  expect_one(wxcfg::source("wechat", "name = \"wx\"\ntoken = \"\""), "sources[0].token",
             "must not be empty");
}

TEST_CASE("a wechat source with a key needs an app_id", "[config][wechat]") {
  expect_one(wxcfg::source("wechat", "name = \"wx\"\ntoken = \"tok\"\nencoding_aes_key = \"" +
                                         wxcfg::kAesKey + "\""),
             "sources[0].app_id", "missing required key");
}

TEST_CASE("a bad encoding_aes_key is reported without echoing it", "[config][wechat]") {
  const std::string key42 = wxcfg::kAesKey.substr(0, 42);
  const std::string bad_chars = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF!";  // 43, not base64
  for (const std::string& key : {key42, bad_chars}) {
    INFO("key: " << key);
    for (const std::string kind : {"wechat", "wecom"}) {
      INFO("kind: " << kind);
      const std::string body = "name = \"s\"\ntoken = \"tok\"\nencoding_aes_key = \"" + key +
                               "\"\n" +
                               (kind == "wechat" ? "app_id = \"wxA\"" : "corp_id = \"ww1\"");
      const ConfigError e =
          expect_one(wxcfg::source(kind, body), "sources[0].encoding_aes_key", "EncodingAESKey");
      const std::string line = botgate::format_error("test.toml", e);
      CHECK(line.find(key) == std::string::npos);
      CHECK(line.find("abcdefghij") == std::string::npos);
    }
  }
  const ConfigError e = expect_one(
      wxcfg::source(
          "wechat",
          "name = \"s\"\ntoken = \"tok\"\napp_id = \"wxA\"\nencoding_aes_key = \"" + key42 + "\""),
      "sources[0].encoding_aes_key", "43");
  CHECK(e.line == 6);
}

TEST_CASE("a wecom source without name takes its corp_id as name", "[config][wechat]") {
  const Config c = expect_ok(wxcfg::config(R"(
[[sources]]
kind = "wecom"
token = "wc-token"
encoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
corp_id = "ww0123456789"
accounts = "kf-accounts"

[[routes]]
source = "ww0123456789"
text = "help"
reply = "see the manual"
)"));
  const auto& s = c.sources.at(0);
  CHECK(s.kind == botgate::SourceKind::wecom);
  CHECK(s.name == "ww0123456789");
  CHECK(s.corp_id == "ww0123456789");
  CHECK(s.token == "wc-token");
  CHECK(s.encoding_aes_key == wxcfg::kAesKey);
  CHECK(s.accounts == "kf-accounts");
  CHECK(s.route.empty());
  CHECK(s.answer_ding);
  CHECK(s.ack_deadline == Duration(4500ms));
  REQUIRE(c.routes.size() == 1);
  CHECK(c.routes[0].source == "ww0123456789");
  // A name given explicitly wins.
  const Config named = expect_ok(wxcfg::source(
      "wecom", "name = \"corp\"\ntoken = \"t\"\ncorp_id = \"ww1\"\nencoding_aes_key = \"" +
                   wxcfg::kAesKey + "\""));
  CHECK(named.sources.at(0).name == "corp");
  CHECK(named.sources.at(0).corp_id == "ww1");
}

TEST_CASE("a wecom source needs a key, a token and a corp_id", "[config][wechat]") {
  expect_one(wxcfg::source("wecom", "token = \"t\"\ncorp_id = \"ww1\""),
             "sources[0].encoding_aes_key", "missing required key");
  expect_one(
      wxcfg::source("wecom", "corp_id = \"ww1\"\nencoding_aes_key = \"" + wxcfg::kAesKey + "\""),
      "sources[0].token", "missing required key");
  auto errs = expect_errors(
      wxcfg::source("wecom", "token = \"t\"\nencoding_aes_key = \"" + wxcfg::kAesKey + "\""));
  CHECK(has_error(errs, "sources[0].corp_id", "missing required key"));
  expect_one(wxcfg::source("wecom",
                           "name = \"n\"\ntoken = \"t\"\ncorp_id = \"w w\"\nencoding_aes_key = \"" +
                               wxcfg::kAesKey + "\""),
             "sources[0].corp_id", "invalid corp id");
  // Unnamed, the source is named by its corp id: one mistake, still one error.
  expect_one(wxcfg::source("wecom", "token = \"t\"\ncorp_id = \"bad/corp\"\nencoding_aes_key = \"" +
                                        wxcfg::kAesKey + "\""),
             "sources[0].corp_id", "invalid corp id");
}

TEST_CASE("a wecom source's decrypted_token opens its decrypted door", "[config][wechat]") {
  const std::string wc =
      "token = \"t\"\ncorp_id = \"ww1\"\nencoding_aes_key = \"" + wxcfg::kAesKey + "\"\n";
  CHECK(expect_ok(wxcfg::source("wecom", wc)).sources.at(0).decrypted_token.empty());
  CHECK(expect_ok(wxcfg::source("wecom", wc + "decrypted_token = \"front-door\""))
            .sources.at(0)
            .decrypted_token == "front-door");
  const ConfigError e = expect_one(wxcfg::source("wecom", wc + "decrypted_token = \"with space\""),
                                   "sources[0].decrypted_token", "printable ASCII without spaces");
  CHECK_THAT(e.message, !Catch::Contains("with space"));  // a secret is never echoed
  expect_one(wxcfg::source("wecom", wc + "decrypted_token = \"\""), "sources[0].decrypted_token",
             "must not be empty");
  expect_one(wxcfg::source("wecom", wc + "decrypted_token = 7"), "sources[0].decrypted_token",
             "expected a string");
  expect_one(wxcfg::source("wechat", "name = \"wx\"\ntoken = \"tok\"\ndecrypted_token = \"x\""),
             "sources[0].decrypted_token", "not a key of a wechat source");
  expect_one(wxcfg::source("generic",
                           "name = \"g\"\nsecret = \"s\"\nroute = \"backends\"\n"
                           "decrypted_token = \"x\""),
             "sources[0].decrypted_token", "not a key of a generic source");
}

TEST_CASE("two wecom sources may not share a corp id", "[config][wechat]") {
  const std::string wecom = "kind = \"wecom\"\ntoken = \"t\"\nencoding_aes_key = \"" +
                            wxcfg::kAesKey + "\"\ncorp_id = \"ww1\"\n";
  const ConfigError e = expect_one(
      wxcfg::config("[[sources]]\nname = \"a\"\n" + wecom + "[[sources]]\nname = \"b\"\n" + wecom),
      "sources[1].corp_id", "duplicate corp id");
  CHECK_THAT(e.message, Catch::Contains("line 6"));
  // Unnamed (named by the corp id), the same one error, not a second one for the name.
  expect_one(wxcfg::config("[[sources]]\n" + wecom + "[[sources]]\n" + wecom), "sources[1].corp_id",
             "duplicate corp id");
  // Different corp ids are fine.
  const std::string other = "kind = \"wecom\"\ntoken = \"t\"\nencoding_aes_key = \"" +
                            wxcfg::kAesKey + "\"\ncorp_id = \"ww2\"\n";
  CHECK(
      expect_ok(wxcfg::config("[[sources]]\n" + wecom + "[[sources]]\n" + other)).sources.size() ==
      2);
}

TEST_CASE("keys of another source kind are refused", "[config][wechat]") {
  const std::string wx = "name = \"wx\"\ntoken = \"tok\"\n";
  expect_one(wxcfg::source("wechat", wx + "secret = \"s3cret\""), "sources[0].secret",
             "not a key of a wechat source");
  expect_one(wxcfg::source("wechat", wx + "corp_id = \"ww1\""), "sources[0].corp_id",
             "not a key of a wechat source");
  const std::string wc =
      "token = \"t\"\ncorp_id = \"ww1\"\nencoding_aes_key = \"" + wxcfg::kAesKey + "\"\n";
  expect_one(wxcfg::source("wecom", wc + "secret = \"s3cret\""), "sources[0].secret",
             "not a key of a wecom source");
  expect_one(wxcfg::source("wecom", wc + "app_id = \"wxA\""), "sources[0].app_id",
             "not a key of a wecom source");
  expect_one(wxcfg::source("wecom", wc + "allow_plaintext = true"), "sources[0].allow_plaintext",
             "not a key of a wecom source");
  expect_one(wxcfg::source("generic",
                           "name = \"g\"\nsecret = \"s\"\nroute = \"backends\"\n"
                           "allow_plaintext = true"),
             "sources[0].allow_plaintext", "not a key of a generic source");
  expect_one(wxcfg::source("generic",
                           "name = \"g\"\nsecret = \"s\"\nroute = \"backends\"\n"
                           "answer_ding = false"),
             "sources[0].answer_ding", "not a key of a generic source");
  const std::string generic = "name = \"g\"\nsecret = \"s\"\nroute = \"backends\"\n";
  for (const std::string key : {"token", "app_id", "corp_id", "ack_deadline"}) {
    INFO(key);
    expect_one(wxcfg::source("generic", generic + key + " = \"1s\""), "sources[0]." + key,
               "not a key of a generic source");
  }
}

TEST_CASE("ack_deadline must be at most 4500ms", "[config][wechat]") {
  for (const std::string d : {"5s", "4501ms", "1m"}) {
    INFO(d);
    expect_one(wxcfg::config(wxcfg::kWechatSource + "ack_deadline = \"" + d + "\"\n"),
               "sources[0].ack_deadline", "at most 4500ms");
  }
  expect_one(wxcfg::config(wxcfg::kWechatSource + "ack_deadline = \"soon\"\n"),
             "sources[0].ack_deadline", "invalid duration");
  expect_one(wxcfg::config(wxcfg::kWechatSource + "answer_ding = \"yes\"\n"),
             "sources[0].answer_ding", "expected true or false");
  expect_one(wxcfg::config(wxcfg::kWechatSource + "allow_plaintext = 1\n"),
             "sources[0].allow_plaintext", "expected true or false");
}

TEST_CASE("[[routes]] rules are read in order", "[config][wechat]") {
  const Config c = expect_ok(wxcfg::config(wxcfg::kWechatSource + R"(
[[routes]]
source = "wx"
type = "text"
text = "help"
reply = "see the manual"

[[routes]]
text_regex = "order [0-9]+"
pool = "backends"

[[routes]]
type = "event:subscribe"
reply = "welcome"
pool = "backends"
)"));
  REQUIRE(c.routes.size() == 3);
  const auto& r0 = c.routes[0];
  CHECK(r0.index == 0);
  CHECK(r0.source == "wx");
  CHECK(r0.type == "text");
  REQUIRE(r0.text.has_value());
  CHECK(*r0.text == "help");
  CHECK_FALSE(r0.text_regex.has_value());
  CHECK(r0.reply == "see the manual");
  CHECK(r0.pool.empty());

  const auto& r1 = c.routes[1];
  CHECK(r1.index == 1);
  CHECK(r1.source.empty());
  CHECK(r1.type.empty());
  CHECK_FALSE(r1.text.has_value());
  REQUIRE(r1.text_regex.has_value());
  CHECK(r1.reply.empty());
  CHECK(r1.pool == "backends");
  botgate::Event ev;
  ev.source = "wx";
  ev.type = "text";
  ev.text = "order 42";
  CHECK(r1.matches(ev));
  ev.text = "my order 42";
  CHECK_FALSE(r1.matches(ev));

  const auto& r2 = c.routes[2];
  CHECK(r2.index == 2);
  CHECK(r2.type == "event:subscribe");
  CHECK(r2.reply == "welcome");
  CHECK(r2.pool == "backends");
}

TEST_CASE("bad [[routes]] rules are errors with their key", "[config][wechat]") {
  const auto rules = [](const std::string& body) {
    return wxcfg::config(wxcfg::kWechatSource + "\n[[routes]]\n" + body + "\n");
  };
  expect_one(rules("text = \"a\"\ntext_regex = \"a+\"\nreply = \"r\""), "routes[0].text_regex",
             "not both");
  expect_one(rules("text_regex = \"(unclosed\"\nreply = \"r\""), "routes[0].text_regex",
             "invalid regular expression");
  expect_one(rules("text_regex = \"[z-a]\"\npool = \"backends\""), "routes[0].text_regex",
             "invalid regular expression");
  expect_one(rules("text_regex = '(a)\\1'\npool = \"backends\""), "routes[0].text_regex",
             "invalid regular expression");  // no backreferences
  auto e = expect_one(rules("source = \"wx\"\ntext = \"a\""), "routes[0]",
                      "a rule needs a reply, a pool, or both");
  CHECK(e.line == 10);
  expect_one(rules("source = \"nope\"\nreply = \"r\""), "routes[0].source",
             "unknown source 'nope'");
  expect_one(rules("pool = \"nowhere\""), "routes[0].pool", "unknown pool 'nowhere'");
  expect_one(rules("pool = \"wx-accounts\""), "routes[0].pool",
             "events are forwarded to http targets");
  expect_one(rules("reply = \"r\"\ncolour = \"red\""), "routes[0].colour", "unknown key");
  expect_one(rules("reply = \"\""), "routes[0].reply", "must not be empty");
  expect_one(wxcfg::config("routes = \"all\"\n" + wxcfg::kWechatSource), "routes",
             "expected an array of tables");
}

TEST_CASE("a route type no callback carries is an error naming the valid ones",
          "[config][wechat]") {
  const auto rule = [](const std::string& type) {
    return wxcfg::config(wxcfg::kWechatSource + "\n[[routes]]\ntype = \"" + type +
                         "\"\nreply = \"r\"\n");
  };
  for (const char* type :
       {"text", "image", "voice", "video", "shortvideo", "location", "link", "file",
        "miniprogrampage", "device_text", "device_event", "device_status", "event:subscribe",
        "event:CLICK", "event:kf_msg_or_event", "event:TEMPLATESENDJOBFINISH"}) {
    INFO(type);
    CHECK(expect_ok(rule(type)).routes.at(0).type == type);
  }
  auto e = expect_one(rule("txt"), "routes[0].type", "unknown type 'txt' (expected text, image,");
  CHECK_THAT(e.message, Catch::Contains("event:<Event>"));
  CHECK(e.line == 11);
  for (const char* type : {"Text", "event", "event:", "event:sub scribe", "subscribe"}) {
    INFO(type);
    expect_one(rule(type), "routes[0].type", "event:<Event>");
  }
}

TEST_CASE("a route rule for a generic source is an error: rules never see its events",
          "[config][wechat]") {
  const auto e = expect_one(wxcfg::config(wxcfg::kWechatSource + kSources +
                                          "\n[[routes]]\nsource = \"demo\"\nreply = \"r\"\n"),
                            "routes[0].source", "'demo' is a generic source");
  CHECK(e.line == 16);
}

TEST_CASE("a pool mixing http and account targets is an error even when nothing uses it",
          "[config][wechat]") {
  const std::string pool = "\n[[pools]]\nname = \"mixed\"\ntargets = [\"b1\", \"kf1\", \"oa1\"]\n";
  const auto e = expect_one(wxcfg::config(wxcfg::kWechatSource + pool), "pools[0].targets[1]",
                            "pool 'mixed' holds http target 'b1' and wecom-kf target 'kf1'");
  CHECK_THAT(e.message, Catch::Contains("either http targets or account targets"));
  CHECK(e.line == 12);
  // Account targets of both platforms may share a pool.
  expect_ok(wxcfg::config(wxcfg::kWechatSource +
                          "\n[[pools]]\nname = \"both\"\ntargets = [\"kf1\", \"oa1\"]\n"));
}

TEST_CASE("account targets default to the platforms' API hosts", "[config][wechat]") {
  const Config c = expect_ok(wxcfg::config(wxcfg::kWechatSource));
  REQUIRE(c.targets.size() == 3);
  const auto& oa = c.targets[1];
  CHECK(oa.name == "oa1");
  CHECK(oa.kind == botgate::TargetKind::wechat_oa);
  CHECK(oa.url == "https://api.weixin.qq.com");
  CHECK(oa.tls);
  CHECK(oa.host == "api.weixin.qq.com");
  CHECK(oa.port == 443);
  CHECK(oa.path == "");
  CHECK(oa.app_id == "wx1234567890abcdef");
  CHECK(oa.app_secret == "oa-app-secret-value");
  CHECK(oa.token_margin == Duration(5min));
  CHECK(oa.token_min_life == Duration(60s));

  const auto& kf = c.targets[2];
  CHECK(kf.name == "kf1");
  CHECK(kf.kind == botgate::TargetKind::wecom_kf);
  CHECK(kf.url == "https://qyapi.weixin.qq.com");
  CHECK(kf.tls);
  CHECK(kf.host == "qyapi.weixin.qq.com");
  CHECK(kf.port == 443);
  CHECK(kf.path == "");
  CHECK(kf.corp_id == "ww0123456789");
  CHECK(kf.corp_secret == "kf-corp-secret-value");
  CHECK(kf.open_kfid == "wkAbCdEf0123");
}

TEST_CASE("an account target's api_base sets host, port and path prefix", "[config][wechat]") {
  Config c = expect_ok(wxcfg::account_target(
      "name = \"oa2\"\nkind = \"wechat-oa\"\napp_id = \"a\"\napp_secret = \"s\"\n"
      "api_base = \"http://127.0.0.1:9000/wx/\"\ntoken_margin = \"1m\"\n"
      "token_min_life = \"5s\""));
  const auto& t = c.targets.at(1);
  CHECK(t.name == "oa2");
  CHECK_FALSE(t.tls);
  CHECK(t.host == "127.0.0.1");
  CHECK(t.port == 9000);
  CHECK(t.path == "/wx");
  CHECK(t.token_margin == Duration(1min));
  CHECK(t.token_min_life == Duration(5s));
  c = expect_ok(wxcfg::account_target(
      "name = \"kf2\"\nkind = \"wecom-kf\"\ncorp_id = \"c\"\ncorp_secret = \"s\"\n"
      "open_kfid = \"k\"\napi_base = \"http://localhost:8081\""));
  CHECK_FALSE(c.targets.at(1).tls);
  CHECK(c.targets.at(1).host == "localhost");
  CHECK(c.targets.at(1).port == 8081);
  CHECK(c.targets.at(1).path == "");
  expect_one(wxcfg::account_target("name = \"oa2\"\nkind = \"wechat-oa\"\napp_id = \"a\"\n"
                                   "app_secret = \"s\"\napi_base = \"ftp://example.com\""),
             "targets[1].api_base", "invalid url");
}

TEST_CASE("accounts sharing credentials must agree on the token settings", "[config][wechat]") {
  // oa1 (targets[2]) has these credentials too, and the default token settings.
  const std::string same =
      "name = \"oa2\"\nkind = \"wechat-oa\"\napp_id = \"wx1234567890abcdef\"\n"
      "app_secret = \"oa-app-secret-value\"\n";
  expect_ok(wxcfg::account_target(same));
  expect_ok(wxcfg::account_target(same + "token_margin = \"5m\"\ntoken_min_life = \"1m\""));
  const auto e = expect_one(wxcfg::account_target(same + "token_margin = \"1m\""),
                            "targets[2].token_margin", "differs from target 'oa2' (1m)");
  CHECK_THAT(e.message, Catch::Contains("shares its access token"));
  const auto errs = expect_errors(
      wxcfg::account_target(same + "token_margin = \"2m\"\ntoken_min_life = \"10s\""));
  CHECK(errs.size() == 2);
  CHECK(has_error(errs, "targets[2].token_min_life", "1m differs from target 'oa2' (10s)"));
  // Another platform (api_base) or another secret is another token.
  expect_ok(
      wxcfg::account_target(same + "token_margin = \"1m\"\napi_base = \"http://127.0.0.1:9/\""));
  expect_ok(wxcfg::account_target(
      "name = \"oa2\"\nkind = \"wechat-oa\"\napp_id = \"wx1234567890abcdef\"\n"
      "app_secret = \"another-secret\"\ntoken_margin = \"1m\""));
}

TEST_CASE("account targets need their credentials", "[config][wechat]") {
  expect_one(wxcfg::account_target("name = \"oa2\"\nkind = \"wechat-oa\"\napp_id = \"a\""),
             "targets[1].app_secret", "missing required key");
  expect_one(wxcfg::account_target("name = \"oa2\"\nkind = \"wechat-oa\"\napp_secret = \"s\""),
             "targets[1].app_id", "missing required key");
  expect_one(wxcfg::account_target(
                 "name = \"kf2\"\nkind = \"wecom-kf\"\ncorp_id = \"c\"\ncorp_secret = \"s\""),
             "targets[1].open_kfid", "missing required key");
  expect_one(wxcfg::account_target(
                 "name = \"kf2\"\nkind = \"wecom-kf\"\ncorp_id = \"c\"\nopen_kfid = \"k\""),
             "targets[1].corp_secret", "missing required key");
  expect_one(wxcfg::account_target(
                 "name = \"kf2\"\nkind = \"wecom-kf\"\ncorp_secret = \"s\"\nopen_kfid = \"k\""),
             "targets[1].corp_id", "missing required key");
}

TEST_CASE("account targets refuse url and the other kind's keys", "[config][wechat]") {
  const std::string oa =
      "name = \"oa2\"\nkind = \"wechat-oa\"\napp_id = \"a\"\napp_secret = \"s\"\n";
  expect_one(wxcfg::account_target(oa + "url = \"http://127.0.0.1:9000/\""), "targets[1].url",
             "not a key of an account target");
  expect_one(wxcfg::account_target(oa + "open_kfid = \"k\""), "targets[1].open_kfid",
             "not a key of a wechat-oa target");
  const std::string kf =
      "name = \"kf2\"\nkind = \"wecom-kf\"\ncorp_id = \"c\"\n"
      "corp_secret = \"s\"\nopen_kfid = \"k\"\n";
  expect_one(wxcfg::account_target(kf + "url = \"http://127.0.0.1:9000/\""), "targets[1].url",
             "not a key of an account target");
  expect_one(wxcfg::account_target(kf + "app_secret = \"s\""), "targets[1].app_secret",
             "not a key of a wecom-kf target");
  expect_one(kSources + kPools + kTargets + "api_base = \"http://127.0.0.1:1/\"\n",
             "targets[0].api_base", "not a key of an http target");
  expect_one(kSources + kPools + kTargets + "app_secret = \"s\"\n", "targets[0].app_secret",
             "not a key of an http target");
  expect_one(kSources + kPools + kTargets + "token_min_life = \"1m\"\n",
             "targets[0].token_min_life", "not a key of an http target");
}

TEST_CASE("an account target is probed by dingdong, not http", "[config][wechat]") {
  const std::string oa =
      "name = \"oa2\"\nkind = \"wechat-oa\"\napp_id = \"a\"\napp_secret = \"s\"\n";
  const auto errs = expect_errors(wxcfg::account_target(oa + "[targets.probe]\nkind = \"http\""));
  REQUIRE(errs.size() == 1);
  CHECK_THAT(errs[0].message, Catch::Contains("probed by dingdong"));
  CHECK(errs[0].key == "targets[1].probe.kind");
  CHECK(errs[0].line > 0);
  const Config c = expect_ok(wxcfg::account_target(
      oa + "[targets.probe]\nkind = \"dingdong\"\npeer = \"oPeer\"\nsource = \"demo\""));
  CHECK(c.targets.at(1).probe.kind == botgate::ProbeKind::dingdong);
  CHECK(c.targets.at(1).probe.peer == "oPeer");
}

TEST_CASE("pools are checked for the family of targets they are used for", "[config][wechat]") {
  // accounts must name a pool of account targets.
  auto e = expect_one(wxcfg::config(R"(
[[sources]]
name = "wx"
kind = "wechat"
token = "tok"
accounts = "backends"
)"),
                      "sources[0].accounts", "pool 'backends' holds http target 'b1'");
  CHECK_THAT(e.message, Catch::Contains("account targets"));
  CHECK(e.line == 6);
  // route must name a pool of http targets.
  e = expect_one(wxcfg::config(R"(
[[sources]]
name = "wx"
kind = "wechat"
token = "tok"
route = "wx-accounts"
)"),
                 "sources[0].route", "pool 'wx-accounts' holds wechat-oa target 'oa1'");
  CHECK_THAT(e.message, Catch::Contains("http targets"));
  expect_one(wxcfg::config(R"(
[[sources]]
name = "g"
secret = "s"
route = "kf-accounts"
)"),
             "sources[0].route", "holds wecom-kf target 'kf1'");
  expect_one(wxcfg::config(wxcfg::kWechatSource + "route = \"missing\"\n"), "sources[0].route",
             "unknown pool 'missing'");
  expect_one(wxcfg::config(R"(
[[sources]]
name = "wx"
kind = "wechat"
token = "tok"
accounts = "nowhere"
)"),
             "sources[0].accounts", "unknown pool 'nowhere'");
  // A pool mixing both families fits neither use.
  const std::string mixed = R"(
[[sources]]
name = "wx"
kind = "wechat"
token = "tok"
accounts = "mixed"

[[pools]]
name = "mixed"
targets = ["oa1", "b1"]
)";
  expect_one(wxcfg::config(mixed), "pools[0].targets[1]",
             "pool 'mixed' holds wechat-oa target 'oa1' and http target 'b1'");
}

TEST_CASE("secrets of wechat sources and account targets never appear in errors",
          "[config][wechat]") {
  const std::vector<std::string> secrets{
      "wx-token-secret-1", "wx-generic-secret-2",
      "wc-token-secret-3", "g-token-secret-4",
      "oa-app-secret-5",   "oa-corp-secret-6",
      "kf-corp-secret-7",  "kf-app-secret-8",
      "http-app-secret-9", "http-corp-secret-10",
      "oa-list-secret-11", "kf-list-secret-12",
      "wx-list-token-13",  "abcdefghijklmnopqrstuvwxyz0123456789ABCDE"};
  const auto errs = expect_errors(R"(
[[sources]]
name = "wx"
kind = "wechat"
token = "wx-token-secret-1"
encoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDE"
secret = "wx-generic-secret-2"

[[sources]]
name = "wc"
kind = "wecom"
token = "wc-token-secret-3"
corp_id = "ww1"
ack_deadline = "9s"

[[sources]]
name = "g"
secret = "s"
route = "backends"
token = "g-token-secret-4"

[[sources]]
name = "wx2"
kind = "wechat"
token = ["wx-list-token-13"]
)" + wxcfg::kPoolsAll +
                                  R"(
[[targets]]
name = "b1"
url = "http://127.0.0.1:9001/events"
app_secret = "http-app-secret-9"
corp_secret = "http-corp-secret-10"

[[targets]]
name = "oa1"
kind = "wechat-oa"
app_secret = "oa-app-secret-5"
corp_secret = "oa-corp-secret-6"

[[targets]]
name = "kf1"
kind = "wecom-kf"
corp_secret = "kf-corp-secret-7"
app_secret = "kf-app-secret-8"

[[targets]]
name = "oa3"
kind = "wechat-oa"
app_id = "a"
app_secret = ["oa-list-secret-11"]

[[targets]]
name = "kf3"
kind = "wecom-kf"
corp_id = "c"
open_kfid = "k"
corp_secret = { value = "kf-list-secret-12" }
)");
  // Every entry above is wrong somewhere; make sure those errors were reported.
  CHECK(has_error(errs, "sources[0].encoding_aes_key", "43"));
  CHECK(has_error(errs, "sources[0].secret", "not a key of"));
  CHECK(has_error(errs, "sources[1].encoding_aes_key", "missing required key"));
  CHECK(has_error(errs, "sources[1].ack_deadline", "at most 4500ms"));
  CHECK(has_error(errs, "sources[2].token", "not a key of"));
  CHECK(has_error(errs, "sources[3].token", "expected a string"));
  CHECK(has_error(errs, "targets[0].app_secret", "not a key of"));
  CHECK(has_error(errs, "targets[1].app_id", "missing required key"));
  CHECK(has_error(errs, "targets[1].corp_secret", "not a key of"));
  CHECK(has_error(errs, "targets[2].open_kfid", "missing required key"));
  CHECK(has_error(errs, "targets[2].app_secret", "not a key of"));
  CHECK(has_error(errs, "targets[3].app_secret", "expected a string"));
  CHECK(has_error(errs, "targets[4].corp_secret", "expected a string"));
  for (const auto& e : errs) {
    const std::string line = botgate::format_error("f.toml", e);
    for (const auto& secret : secrets) {
      INFO(line);
      CHECK(line.find(secret) == std::string::npos);
    }
  }
}

TEST_CASE("an api_base with a query is an error: the API paths would land in it",
          "[config][wechat]") {
  expect_one(wxcfg::account_target("name = \"oa9\"\nkind = \"wechat-oa\"\napp_id = \"wxa\"\n"
                                   "app_secret = \"s\"\napi_base = \"http://127.0.0.1:9/wx?t=1\""),
             "targets[1].api_base", "must not have a query");
}

TEST_CASE("a url with user info is an error that does not echo it", "[config]") {
  const std::string text =
      kSources + kPools +
      "[[targets]]\nname = \"b1\"\nurl = \"http://alice:HUNTER2pass@127.0.0.1:9/events\"\n";
  const auto e = expect_one(text, "targets[0].url", "user info");
  CHECK(e.message.find("HUNTER2") == std::string::npos);
  // Nor does any other url error show a query, which may carry a key.
  const auto q =
      expect_one(kSources + kPools +
                     "[[targets]]\nname = \"b1\"\nurl = \"http://127.0.0.1:0/e?key=SECRET9\"\n",
                 "targets[0].url", "port");
  CHECK(q.message.find("SECRET9") == std::string::npos);
}

TEST_CASE("a listen address that can take no connection is an error", "[config]") {
  for (const char* host : {"224.0.0.1", "239.1.2.3", "240.0.0.1", "255.255.255.255", "0.0.0.1"}) {
    INFO(host);
    expect_one(std::string("[server]\nlisten = \"") + host + ":0\"\n" + kMinimal, "server.listen",
               "cannot take connections");
  }
  for (const char* host : {"0.0.0.0", "127.0.0.1", "10.1.2.3", "223.255.255.254"}) {
    INFO(host);
    CHECK(expect_ok(std::string("[server]\nlisten = \"") + host + ":0\"\n" + kMinimal)
              .server.listen_host == host);
  }
}

TEST_CASE("botgate's own source names are refused", "[config]") {
  for (const char* name : {"api", "botgate-probe"}) {
    INFO(name);
    std::string text = kMinimal;
    text.replace(text.find("\"demo\""), 6, std::string("\"") + name + "\"");
    expect_one(text, "sources[0].name", "botgate's own");
  }
}

TEST_CASE("probe intervals and timeouts too short for a timer are errors", "[config]") {
  const auto with_probe = [](const std::string& probe) {
    return kSources + kPools + kTargets + "probe = { kind = \"http\", " + probe + " }\n";
  };
  expect_one(with_probe("interval = \"99ms\", timeout = \"50ms\""), "targets[0].probe.interval",
             "at least 100ms");
  expect_one(with_probe("interval = \"1s\", timeout = \"9ms\""), "targets[0].probe.timeout",
             "at least 10ms");
  CHECK(
      expect_ok(with_probe("interval = \"100ms\", timeout = \"10ms\"")).targets[0].probe.interval ==
      100ms);
}

TEST_CASE("an admin token with spaces or control characters is refused, from file or env",
          "[config]") {
  for (const char* token : {"tok ", " tok", "to k", "tok\\t"}) {
    INFO(token);
    const auto e = expect_one(std::string("[server]\nadmin_token = \"") + token + "\"\n" + kMinimal,
                              "server.admin_token", "printable ASCII");
    CHECK(e.message.find("tok") == std::string::npos);
  }
  auto r = parse(kMinimal, "secret tok");
  REQUIRE(std::holds_alternative<std::vector<ConfigError>>(r));
  const auto& errs = std::get<std::vector<ConfigError>>(r);
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].key == "BOTGATE_ADMIN_TOKEN");
  CHECK(errs[0].message.find("secret") == std::string::npos);
  CHECK(expect_ok(kMinimal, "A-zA-Z0-9._~+/=").server.admin_token == "A-zA-Z0-9._~+/=");
}

TEST_CASE("an invalid BOTGATE_ADMIN_TOKEN is reported with the file's own errors", "[config]") {
  auto r = parse("[server]\nio_threads = 0\n" + kMinimal, "secret tok");
  REQUIRE(std::holds_alternative<std::vector<ConfigError>>(r));
  auto errs = std::get<std::vector<ConfigError>>(r);
  REQUIRE(errs.size() == 2);
  CHECK(has_error(errs, "BOTGATE_ADMIN_TOKEN", "printable ASCII"));
  CHECK(has_error(errs, "server.io_threads", "between 1 and 64"));
  // Even next to a syntax error, which stops the file's checks.
  r = parse("[server\n" + kMinimal, "secret tok");
  REQUIRE(std::holds_alternative<std::vector<ConfigError>>(r));
  errs = std::get<std::vector<ConfigError>>(r);
  REQUIRE(errs.size() == 2);
  CHECK(has_error(errs, "BOTGATE_ADMIN_TOKEN", "printable ASCII"));
}

TEST_CASE("a key nested tens of thousands of levels deep is an error, not a crash", "[config]") {
  std::string deep;
  for (int i = 0; i < 50000; ++i) deep += i == 0 ? "a" : ".a";
  auto errs = expect_errors(deep + " = 1\n" + kMinimal);
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].line == 1);
  CHECK_THAT(errs[0].message, Catch::Contains("dots in one line"));
  // A deep key after a multi-line string and a line-ending backslash: counted on its own
  // line, and reported there.
  errs =
      expect_errors("[server]\nadmin_token = \"\"\"\nx\\\ny\"\"\"\n" + deep + " = 1\n" + kMinimal);
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].line == 5);
  // Dots inside strings (one-line or multi-line, basic or literal) and comments do not count.
  const std::string dots(5000, '.');
  for (const std::string& quoted :
       {R"(""")"
        "\n" +
            dots +
            "\n"
            R"(""")",
        "'''\n" + dots + "\n'''", "'" + dots + "'", R"("\")" + dots + "\""}) {
    INFO(quoted.substr(0, 8));
    expect_ok("[[routes]]\nreply = " + quoted + "\n" + kMinimal);
  }
  CHECK(expect_ok("# " + dots + "\n[server]\nadmin_token = \"" + dots + "\"\n" + kMinimal)
            .server.admin_token == dots);
}

TEST_CASE("the connection cap leaves the shards and targets their descriptors", "[config]") {
  // 4 shards and one target with 32 connections: 64 + 4 * 12 + 32 + 2 = 146 reserved.
  Config c = expect_ok(kMinimal);
  CHECK(botgate::connection_reserve(c) == 146u);
  CHECK(botgate::connection_cap(c, 1u << 20) == 10000u);  // the configured cap fits
  CHECK(botgate::connection_cap(c, 1024) == 1024u - 146u);
  CHECK(botgate::connection_cap(c, 147) == 1u);
  CHECK(botgate::connection_cap(c, 146) == 0u);  // nothing left: botgate does not start
  CHECK(botgate::connection_cap(c, 10) == 0u);
  c.server.max_connections = 100;
  CHECK(botgate::connection_cap(c, 1024) == 100u);
  // Each target's own connections count.
  Config more = expect_ok(kMinimal + R"(
[[targets]]
name = "b2"
url = "http://127.0.0.1:9002/events"
max_connections = 500
)");
  CHECK(botgate::connection_reserve(more) == 146u + 502u);
}
