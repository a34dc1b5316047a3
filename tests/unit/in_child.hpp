// Runs a codec on hostile input in a forked child, so that a crash fails the calling test
// instead of ending the whole run.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <string>

#include "transport/generic_codec.hpp"

namespace botgate::test {

// Calls `parse()` (returning a CodecStatus) in a child process. Returns the status as an int,
// or -signal when the child crashed.
template <typename Parse>
int parse_in_child(Parse parse) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return -1000;
  if (pid == 0) {
    // Catch2's fatal-signal handlers would report from the child too.
    for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE}) std::signal(sig, SIG_DFL);
    ::_exit(static_cast<int>(parse()));
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1001;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return -1002;
}

inline std::string describe(int child_result) {
  if (child_result >= 0) return botgate::to_string(static_cast<CodecStatus>(child_result));
  return "crashed (signal " + std::to_string(-child_result) + ")";
}

}  // namespace botgate::test
