// Process lifecycle of the real botgate binary: graceful drain on a stop signal and the
// command-line interface (check-config, --version, --help).
#include <signal.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
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

// Whether the main thread of process `pid` blocks `sig` (SigBlk in /proc/PID/status).
bool blocks_signal(pid_t pid, int sig) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("SigBlk:", 0) == 0) {
      return ((std::stoull(line.substr(7), nullptr, 16) >> (sig - 1)) & 1) != 0;
    }
  }
  return false;
}

// A gateway that listens on a port chosen here (it is started by hand, not by Gateway), with a
// backend nothing listens on.
GatewayOptions on_fixed_port() {
  GatewayOptions o;
  o.backend_ports = {free_listen_port()};
  o.listen_port = free_listen_port();
  return o;
}

}  // namespace

TEST_CASE("SIGTERM or SIGHUP drains acknowledged events and exits 0", "[integration][lifecycle]") {
  const int sig = GENERATE(SIGTERM, SIGHUP);
  CAPTURE(sig);
  TempDir dir;
  TestBackend backend;
  backend.set_slow(300ms);
  GatewayOptions o;
  o.backend_ports = {backend.port()};
  o.drain_timeout = "10s";
  o.target_timeout = "5s";
  Gateway gw(botgate_binary(), dir, make_config(o));

  // 4 conversations x 5 events: deliveries of one conversation are serial, so the
  // slow backend needs at least 5 x 300 ms to take them all.
  constexpr int kEvents = 20, kConvs = 4;
  std::set<std::string> acked;
  {
    HttpConnection conn(gw.port());
    for (int i = 0; i < kEvents; ++i) {
      auto id = "drain-" + std::to_string(i);
      auto res = send_event(conn, o.source, o.secret,
                            event_json(id, "drain-conv-" + std::to_string(i % kConvs), i / kConvs));
      INFO(id << ": " << res.describe());
      CHECK(res.status == 200);
      if (res.status == 200) acked.insert(id);
    }
  }
  REQUIRE(acked.size() == static_cast<std::size_t>(kEvents));
  // The drain has work to do: not everything is delivered yet.
  auto delivered_before = backend.delivered_count();
  REQUIRE(delivered_before < static_cast<std::size_t>(kEvents));

  auto t0 = std::chrono::steady_clock::now();
  gw.process().signal(sig);

  // New connections are refused (or fail) while the process is still draining.
  bool refused_while_running = false;
  std::string last;
  auto deadline = t0 + 3s;
  while (std::chrono::steady_clock::now() < deadline && gw.process().running()) {
    auto res = http_request(gw.port(), "GET", "/healthz", {}, {}, 1s);
    last = res.describe();
    if (res.status == 0 || res.status == 503) {
      refused_while_running = gw.process().running();
      break;
    }
    std::this_thread::sleep_for(20ms);
  }

  auto code = gw.process().wait_exit(15s);
  auto took = std::chrono::steady_clock::now() - t0;
  INFO("last answer to a new connection after the signal: " << last);
  INFO("delivered before the signal: "
       << delivered_before << ", exit after "
       << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  CHECK(refused_while_running);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(took < 12s);  // drain_timeout (10 s) plus slack
  CHECK(gw.process().log().find("msg=draining signal=" + std::to_string(sig)) != std::string::npos);

  std::vector<std::string> lost;
  std::set<std::string> delivered;
  for (const auto& r : backend.requests()) {
    if (r.delivered()) delivered.insert(r.idempotency_key());
  }
  for (const auto& id : acked) {
    if (!delivered.count(id)) lost.push_back(id);
  }
  std::ostringstream ex;
  for (const auto& id : lost) ex << id << ' ';
  INFO("acked but not delivered before exit: " << ex.str());
  CHECK(lost.empty());

  auto after = http_request(gw.port(), "GET", "/healthz", {}, {}, 1s);
  CHECK(after.status == 0);
}

TEST_CASE("SIGTERM during start-up (recovering a backlog) still stops gracefully with 0",
          "[integration][lifecycle]") {
  TempDir dir;
  GatewayOptions o;
  o.backend_ports = {free_listen_port()};  // nothing listens: the events stay queued
  o.fsync = "none";
  o.drain_timeout = "1s";
  o.backoff_base = "10s";
  o.backoff_cap = "10s";
  Gateway gw(botgate_binary(), dir, make_config(o));
  // A backlog whose recovery takes a while (a few hundred ms here).
  std::vector<std::string> args{loadgen_binary(),
                                "--port",
                                std::to_string(gw.port()),
                                "--source",
                                o.source,
                                "--secret",
                                o.secret,
                                "--events",
                                "60000",
                                "--connections",
                                "16",
                                "--conversations",
                                "200"};
  Process load(args, dir.path() / "loadgen.out", dir.path() / "loadgen.err");
  REQUIRE(load.wait_exit(60s) == std::optional<int>(0));
  gw.process().signal(SIGTERM);
  REQUIRE(gw.process().wait_exit(20s) == std::optional<int>(0));

  Process again({botgate_binary(), "--config", gw.config_path().string()}, dir.path() / "again.log",
                dir.path() / "again.log");
  // The moment it holds the stop signals back, it is starting up (recovery takes tens of ms
  // here, the rest of the start a few): a SIGTERM then must wait for the handler, not kill.
  const auto holds_sigterm = [&] { return blocks_signal(again.pid(), SIGTERM); };
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (!holds_sigterm() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(200us);
  }
  REQUIRE(holds_sigterm());
  CHECK(blocks_signal(again.pid(), SIGHUP));
  again.signal(SIGTERM);
  const auto code = again.wait_exit(30s);
  INFO(again.log());
  CHECK(code == std::optional<int>(0));
  CHECK(again.log().find("msg=stopped") != std::string::npos);
}

TEST_CASE("SIGTERM while the config is being read still stops gracefully with 0",
          "[integration][lifecycle]") {
  TempDir dir;
  const GatewayOptions o = on_fixed_port();
  // A FIFO holds the config read open until the test writes it: the signal comes mid-read.
  const auto config = dir.path() / "config.fifo";
  REQUIRE(::mkfifo(config.c_str(), 0600) == 0);
  Process gw({botgate_binary(), "--config", config.string()}, dir.path() / "fifo.log",
             dir.path() / "fifo.log");
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (!blocks_signal(gw.pid(), SIGTERM) && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(1ms);
  }
  gw.signal(SIGTERM);  // blocked in the FIFO's open by now, whether it holds the signal or not
  std::this_thread::sleep_for(50ms);
  REQUIRE(gw.running());
  { std::ofstream(config) << make_config(o); }
  const auto code = gw.wait_exit(30s);
  INFO(gw.log());
  CHECK(code == std::optional<int>(0));
  CHECK(gw.log().find("msg=listening") != std::string::npos);
  CHECK(gw.log().find("msg=stopped") != std::string::npos);
}

TEST_CASE("a gateway started with hang-ups ignored keeps running on SIGHUP",
          "[integration][lifecycle]") {
  TempDir dir;
  const GatewayOptions o = on_fixed_port();
  const auto config = dir.path() / "nohup.toml";
  { std::ofstream(config) << make_config(o); }
  // As nohup starts it: SIGHUP ignored before exec, which botgate must leave so.
  Process gw(
      {"/bin/sh", "-c", "trap '' HUP; exec " + botgate_binary() + " --config " + config.string()},
      dir.path() / "nohup.log", dir.path() / "nohup.log");
  REQUIRE(gw.wait_for_log("msg=listening"));
  gw.signal(SIGHUP);
  std::this_thread::sleep_for(300ms);
  CHECK(gw.running());
  CHECK(http_request(o.listen_port, "GET", "/healthz", {}, {}, 1s).status == 200);
  gw.signal(SIGTERM);
  CHECK(gw.wait_exit(15s) == std::optional<int>(0));
  CHECK(gw.log().find("msg=draining signal=15") != std::string::npos);
}

TEST_CASE("a log reader that went away does not kill the gateway", "[integration][lifecycle]") {
  TempDir dir;
  TestBackend backend;
  GatewayOptions o;
  o.backend_ports = {backend.port()};
  o.listen_port = free_listen_port();
  const auto config = dir.path() / "pipe.toml";
  { std::ofstream(config) << make_config(o); }
  // stderr into a pipe whose reader quits after the first byte: later log lines get EPIPE.
  Process gw(
      {"/bin/bash", "-c",
       "exec " + botgate_binary() + " --config " + config.string() + " 2> >(head -c 1 >/dev/null)"},
      dir.path() / "pipe.out", dir.path() / "pipe.err");
  bool up = false;
  for (int i = 0; i < 100 && !up; ++i) {
    up = http_request(o.listen_port, "GET", "/healthz", {}, {}, 1s).status == 200;
    if (!up) std::this_thread::sleep_for(50ms);
  }
  REQUIRE(up);
  for (int i = 0; i < 5; ++i) {  // each logs a warning line
    CHECK(http_request(o.listen_port, "GET", "/no/such/route", {}, {}, 1s).status == 404);
  }
  CHECK(http_request(o.listen_port, "GET", "/healthz", {}, {}, 1s).status == 200);
  CHECK(gw.running());
  gw.signal(SIGTERM);
  CHECK(gw.wait_exit(15s) == std::optional<int>(0));
}

namespace {

// The 1-based line of the first line of `text` containing `needle`.
int line_of(const std::string& text, const std::string& needle) {
  std::istringstream in(text);
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.find(needle) != std::string::npos) return n;
  }
  return 0;
}

// Whether some line of `text` mentions both `key` and the line number `line`.
bool reports(const std::string& text, const std::string& key, int line) {
  std::regex number("(^|[^0-9])" + std::to_string(line) + "([^0-9]|$)");
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (l.find(key) != std::string::npos && std::regex_search(l, number)) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("check-config, --version and --help", "[integration][cli]") {
  TempDir dir;
  const auto bin = botgate_binary();

  GatewayOptions o;
  o.backend_ports = {9, 10};
  auto good = dir.write("good.toml", make_config(o));
  auto ok = run_command({bin, "check-config", good.string()}, dir.path());
  INFO("check-config good.toml stdout: " << ok.out << "\nstderr: " << ok.err);
  CHECK(ok.exit_code == 0);

  const std::string bad_text =
      "[server]\n"
      "listen = \"127.0.0.1:0\"\n"
      "no_such_key = 1\n"
      "\n"
      "[[sources]]\n"
      "name = \"demo\"\n"
      "kind = \"generic\"\n"
      "secret = \"s3cret\"\n"
      "route = \"missing-pool\"\n"
      "\n"
      "[[pools]]\n"
      "name = \"backends\"\n"
      "policy = \"round-robin\"\n"
      "targets = [\"b1\"]\n"
      "\n"
      "[[targets]]\n"
      "name = \"b1\"\n"
      "kind = \"http\"\n"
      "url = \"http://127.0.0.1:9/events\"\n";
  auto bad = dir.write("bad.toml", bad_text);
  auto r = run_command({bin, "check-config", bad.string()}, dir.path());
  INFO("check-config bad.toml exit " << r.exit_code.value_or(-1) << "\nstdout: " << r.out
                                     << "\nstderr: " << r.err);
  REQUIRE(r.exit_code.has_value());
  CHECK(*r.exit_code != 0);
  const int unknown_line = line_of(bad_text, "no_such_key");
  const int route_line = line_of(bad_text, "route =");
  REQUIRE(unknown_line == 3);
  REQUIRE(route_line == 9);
  CHECK(reports(r.err, "no_such_key", unknown_line));
  CHECK(reports(r.err, "route", route_line));
  // A secret never shows up in diagnostics.
  CHECK(r.err.find("s3cret") == std::string::npos);

  auto missing =
      run_command({bin, "check-config", (dir / "does-not-exist.toml").string()}, dir.path());
  INFO("check-config missing file stderr: " << missing.err);
  REQUIRE(missing.exit_code.has_value());
  CHECK(*missing.exit_code != 0);
  CHECK_FALSE(missing.err.empty());

  auto version = run_command({bin, "--version"}, dir.path());
  INFO("--version stdout: " << version.out << " stderr: " << version.err);
  CHECK(version.exit_code == 0);
  CHECK(std::regex_search(version.out + version.err, std::regex(R"(\b\d+\.\d+\.\d+\b)")));

  auto help = run_command({bin, "--help"}, dir.path());
  INFO("--help stdout: " << help.out << " stderr: " << help.err);
  CHECK(help.exit_code == 0);
  CHECK((help.out + help.err).find("check-config") != std::string::npos);
  CHECK((help.out + help.err).find("--config") != std::string::npos);

  // A config that does not validate never starts the gateway.
  auto run_bad = run_command({bin, "--config", bad.string()}, dir.path(), 10s);
  REQUIRE(run_bad.exit_code.has_value());
  CHECK(*run_bad.exit_code != 0);
}

TEST_CASE("check-config on a device that never ends reports its size and no exception",
          "[integration][cli]") {
  TempDir dir;
  auto r = run_command({botgate_binary(), "check-config", "/dev/zero"}, dir.path());
  INFO("exit " << r.exit_code.value_or(-1) << "\nstderr: " << r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.rfind("/dev/zero: config file larger than 4MiB", 0) == 0);
  CHECK(r.err.find("bad_alloc") == std::string::npos);
  CHECK(r.err.find("terminate") == std::string::npos);
}

TEST_CASE("a wrong command line says what is wrong before the usage and exits 2",
          "[integration][cli]") {
  TempDir dir;
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--bogus"}, "botgate: unknown option '--bogus'"},
      {{"--config"}, "botgate: --config needs a file"},
      {{"check-config"}, "botgate: check-config needs a file"},
      {{"--config=/x"}, "botgate: unknown option '--config=/x' (write '--config FILE')"},
      {{"frobnicate"}, "botgate: unknown command 'frobnicate'"},
      {{"--version", "now"}, "botgate: unexpected argument 'now'"},
      {{"check-config", "a.toml", "b.toml"}, "botgate: unexpected argument 'b.toml'"},
      {{}, "botgate: no command given"},
  };
  for (const auto& [args, first_line] : cases) {
    std::vector<std::string> argv{botgate_binary()};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run_command(argv, dir.path());
    INFO("args: " << (args.empty() ? "(none)" : args.front()) << "\nexit "
                  << r.exit_code.value_or(-1) << "\nstderr: " << r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.substr(0, r.err.find('\n')) == first_line);
    CHECK(r.err.find("usage:") != std::string::npos);
  }
}
