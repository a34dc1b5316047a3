// A child process (normally the real botgate binary) started with fork/execv, its
// output captured in files, and always reaped.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace botgate::test {

using namespace std::chrono_literals;

#ifdef BOTGATE_BINARY
// Path of the botgate executable under test: $BOTGATE_BINARY when set, else the
// BOTGATE_BINARY definition the integration tests are compiled with.
inline std::string botgate_binary() {
  if (const char* env = std::getenv("BOTGATE_BINARY"); env && *env) return env;
  return BOTGATE_BINARY;
}
#endif

#ifdef BOTGATE_LOADGEN
// Path of the bench load generator (bench/loadgen.cpp): $BOTGATE_LOADGEN when set,
// else the BOTGATE_LOADGEN definition the integration tests are compiled with.
inline std::string loadgen_binary() {
  if (const char* env = std::getenv("BOTGATE_LOADGEN"); env && *env) return env;
  return BOTGATE_LOADGEN;
}
#endif

class Process {
 public:
  // Starts `argv[0]` with `argv`. stdout goes to `stdout_path`, stderr to
  // `stderr_path` (they may be the same file: then both share one descriptor).
  // The child gets no other inherited descriptors and is SIGKILLed if the thread
  // that started it exits (PR_SET_PDEATHSIG): start processes from the test thread.
  Process(std::vector<std::string> argv, std::filesystem::path stdout_path,
          std::filesystem::path stderr_path);
  // SIGKILLs the child if it still runs and reaps it. If the current test failed,
  // prints the captured output to stderr first.
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }

  // True until the child has exited (reaps it when it has).
  bool running();

  // Captured output so far.
  std::string log() const;          // stderr file (botgate logs to stderr)
  std::string stdout_text() const;  // stdout file
  const std::filesystem::path& log_path() const { return stderr_path_; }

  // Polls the log until a line matches; false on timeout or when the child exits
  // first (after one last look at the log).
  bool wait_for_log(const std::regex& re, std::chrono::milliseconds timeout = 10s);
  bool wait_for_log(const std::string& substring, std::chrono::milliseconds timeout = 10s);

  // Port from the line `... msg=listening address=127.0.0.1 port=NNNNN` (or its
  // log.format = "json" form `{... "msg":"listening",... "port":NNNNN}`). Waits
  // for it (up to `timeout`) the first time; throws if it never comes.
  std::uint16_t port(std::chrono::milliseconds timeout = 15s);

  void signal(int sig);
  void kill();  // SIGKILL

  // Exit code, 128 + signal number when killed by a signal, or nullopt on timeout.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout = 10s);
  std::optional<int> exit_code() const { return exit_code_; }

  // Prints the captured output to stderr with a header (for failing tests).
  void dump(const std::string& why) const;

 private:
  bool try_reap(bool block);
  // Polls the log until `found(text)` holds (true), or the child exited or `timeout` passed
  // (false, after one last look).
  bool poll_log(std::chrono::milliseconds timeout,
                const std::function<bool(const std::string&)>& found);

  std::vector<std::string> argv_;
  std::filesystem::path stdout_path_;
  std::filesystem::path stderr_path_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  std::optional<int> exit_code_;
  std::optional<std::uint16_t> port_;
};

// Runs a command to completion (killing it after `timeout`) and captures output.
struct RunResult {
  std::optional<int> exit_code;  // nullopt: timed out (and was killed)
  std::string out;
  std::string err;
};
RunResult run_command(std::vector<std::string> argv, const std::filesystem::path& dir,
                      std::chrono::milliseconds timeout = 20s);

}  // namespace botgate::test
