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

  CHECK(c.log.level == botgate::log::Level::info);
  CHECK(c.log.format == botgate::log::Format::logfmt);
  CHECK(c.actors.threads == 1);

  CHECK(c.queue.dir == "data");
  CHECK(c.queue.fsync == botgate::FsyncMode::batch);
  CHECK(c.queue.dedup_window == Duration(10min));
  CHECK(c.queue.memory_window == 10000u);
  CHECK(c.queue.segment_bytes == 64u << 20);
  CHECK(c.queue.shards == 4);
  CHECK(c.queue.max_pending == 100000u);
  CHECK(c.queue.max_attempts == 8u);
  CHECK(c.queue.max_age == Duration(48h));

  CHECK(c.backoff.base == Duration(100ms));
  CHECK(c.backoff.cap == Duration(30s));

  REQUIRE(c.sources.size() == 1);
  CHECK(c.sources[0].name == "demo");
  CHECK(c.sources[0].kind == "generic");
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
  CHECK(t.kind == "http");
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

[log]
level = "debug"
format = "json"

[actors]
threads = 8

[queue]
dir = "/var/lib/botgate"
fsync = "always"
dedup_window = "30m"
memory_window = 500
segment_bytes = "8MiB"
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
  CHECK(c.queue.memory_window == 500u);
  CHECK(c.queue.segment_bytes == 8u << 20);
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
    for (const char* kind : {"wechat", "wecom", "slack"}) {
      INFO(kind);
      expect_one(source("name = \"a\"\nsecret = \"x\"\nroute = \"backends\"\nkind = \"" +
                        std::string(kind) + "\""),
                 "sources[0].kind", "source kind '" + std::string(kind) + "' is not supported yet");
    }
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
  SECTION("https is not supported yet") {
    auto e = expect_one(url("https://example.com/x"), "targets[0].url",
                        "https targets are not supported yet");
    CHECK(e.line == 12);
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
url = "https://secure.example.com/"
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
      {25, "targets[0].url", "https targets are not supported yet"},
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
      "segment_bytes = \"1KiB\"\ndedup_window = \"0s\"\n" +
      kMinimal);
  CHECK(has_error(errs, "queue.dir", "must not be empty"));
  CHECK(has_error(errs, "queue.fsync", "unknown fsync mode 'sometimes'"));
  CHECK(has_error(errs, "queue.memory_window", "must be at least 16"));
  CHECK(has_error(errs, "queue.segment_bytes", "between 1MiB and 4GiB"));
  CHECK(has_error(errs, "queue.dedup_window", "greater than zero"));
  CHECK(errs.size() == 5);
  auto none = expect_ok("[queue]\nfsync = \"none\"\n" + kMinimal);
  CHECK(none.queue.fsync == botgate::FsyncMode::none);
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
  expect_one(probe + "jitter = 0.9\n", "targets[0].probe.jitter", "between 0 and 0.5");
  expect_one(probe + "fall = 0\n", "targets[0].probe.fall", "between 1 and 1000");
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

TEST_CASE("format_error", "[config]") {
  CHECK(botgate::format_error("a.toml", ConfigError{3, "server.listen", "bad"}) ==
        "a.toml:3: server.listen: bad");
  CHECK(botgate::format_error("a.toml", ConfigError{0, "", "cannot read"}) ==
        "a.toml: cannot read");
  CHECK(botgate::format_error("a.toml", ConfigError{7, "", "syntax"}) == "a.toml:7: syntax");
  CHECK(botgate::format_error("a.toml", ConfigError{0, "sources", "missing"}) ==
        "a.toml: sources: missing");
}
