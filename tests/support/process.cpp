#include "tests/support/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "tests/support/failure.hpp"
#include "tests/support/temp_dir.hpp"

namespace botgate::test {

namespace {

int open_output(const std::filesystem::path& p) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + p.string());
  return fd;
}

// Async-signal-safe: only raw syscalls between fork and exec.
void close_inherited_fds() {
#ifdef SYS_close_range
  if (::syscall(SYS_close_range, 3U, ~0U, 0U) == 0) return;
#endif
  struct rlimit rl {};
  long max_fd = 4096;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    max_fd = static_cast<long>(rl.rlim_cur);
  }
  for (long fd = 3; fd < max_fd; ++fd) ::close(static_cast<int>(fd));
}

}  // namespace

Process::Process(std::vector<std::string> argv, std::filesystem::path stdout_path,
                 std::filesystem::path stderr_path)
    : argv_(std::move(argv)),
      stdout_path_(std::move(stdout_path)),
      stderr_path_(std::move(stderr_path)) {
  if (argv_.empty()) throw std::invalid_argument("Process: empty argv");
  int out_fd = open_output(stdout_path_);
  int err_fd = stdout_path_ == stderr_path_ ? out_fd : open_output(stderr_path_);

  std::vector<char*> cargv;
  cargv.reserve(argv_.size() + 1);
  for (auto& a : argv_) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  const char* path = argv_[0].c_str();
  pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    ::close(out_fd);
    if (err_fd != out_fd) ::close(err_fd);
    throw std::system_error(e, std::generic_category(), "fork");
  }
  if (pid == 0) {
    // Child. Die with the test process, whatever happens to it.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    ::dup2(out_fd, STDOUT_FILENO);
    ::dup2(err_fd, STDERR_FILENO);
    close_inherited_fds();
    ::execv(path, cargv.data());
    static const char msg[] = "botgate-it: execv failed\n";
    [[maybe_unused]] auto n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    ::_exit(127);
  }
  pid_ = pid;
  ::close(out_fd);
  if (err_fd != out_fd) ::close(err_fd);
}

Process::~Process() {
  if (current_test_failed()) dump("test failed");
  if (pid_ > 0 && !reaped_) {
    ::kill(pid_, SIGKILL);
    try_reap(true);
  }
}

bool Process::try_reap(bool block) {
  if (reaped_) return true;
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) {
    reaped_ = true;
    if (WIFEXITED(status)) {
      exit_code_ = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
      exit_code_ = 128 + WTERMSIG(status);
    } else {
      exit_code_ = -1;
    }
    return true;
  }
  if (r < 0) {  // ECHILD: somebody else reaped it; treat as gone
    reaped_ = true;
    exit_code_ = -1;
    return true;
  }
  return false;
}

bool Process::running() {
  return !try_reap(false);
}

std::string Process::log() const {
  return read_file(stderr_path_);
}
std::string Process::stdout_text() const {
  return read_file(stdout_path_);
}

bool Process::poll_log(std::chrono::milliseconds timeout,
                       const std::function<bool(const std::string&)>& found) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    bool alive = running();  // before reading: a line logged just before exit still counts
    if (found(log())) return true;
    if (!alive || std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
}

bool Process::wait_for_log(const std::regex& re, std::chrono::milliseconds timeout) {
  return poll_log(timeout, [&](const std::string& text) {
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      if (std::regex_search(line, re)) return true;
    }
    return false;
  });
}

bool Process::wait_for_log(const std::string& substring, std::chrono::milliseconds timeout) {
  return poll_log(
      timeout, [&](const std::string& text) { return text.find(substring) != std::string::npos; });
}

std::uint16_t Process::port(std::chrono::milliseconds timeout) {
  if (port_) return *port_;
  // logfmt: `msg=listening ... port=NNNNN`; json: `"msg":"listening",... "port":NNNNN`.
  static const std::regex listening(
      R"((?:msg=\"?listening\"?\b|"msg":"listening").*(?:\bport=|"port":"?)(\d+))");
  const bool found = poll_log(timeout, [&](const std::string& text) {
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      std::smatch m;
      if (!std::regex_search(line, m, listening)) continue;
      unsigned long p = std::stoul(m[1].str());
      if (p == 0 || p > 65535) throw std::runtime_error("bad port in log line: " + line);
      port_ = static_cast<std::uint16_t>(p);
      return true;
    }
    return false;
  });
  if (found) return *port_;
  if (!running()) {
    throw std::runtime_error("botgate exited (code " + std::to_string(exit_code_.value_or(-1)) +
                             ") before logging msg=listening; log:\n" + log());
  }
  throw std::runtime_error("no msg=listening line within timeout; log:\n" + log());
}

void Process::signal(int sig) {
  if (pid_ > 0 && !reaped_) ::kill(pid_, sig);
}

void Process::kill() {
  signal(SIGKILL);
}

std::optional<int> Process::wait_exit(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!try_reap(false)) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(10ms);
  }
  return exit_code_;
}

void Process::dump(const std::string& why) const {
  std::ostringstream os;
  os << "\n===== " << argv_[0] << " (pid " << pid_ << ", " << why
     << ") stderr: " << stderr_path_.string() << " =====\n";
  auto text = log();
  constexpr std::size_t kMax = 64 * 1024;
  if (text.size() > kMax) {
    os << "[... " << (text.size() - kMax) << " bytes omitted ...]\n";
    text = text.substr(text.size() - kMax);
  }
  os << text;
  if (stdout_path_ != stderr_path_) {
    auto out = stdout_text();
    if (!out.empty()) os << "----- stdout -----\n" << out.substr(0, kMax);
  }
  os << "===== end of " << argv_[0] << " output =====\n";
  std::cerr << os.str() << std::flush;
}

RunResult run_command(std::vector<std::string> argv, const std::filesystem::path& dir,
                      std::chrono::milliseconds timeout) {
  static std::atomic<int> counter{0};
  int n = counter.fetch_add(1);
  auto out_path = dir / ("cmd" + std::to_string(n) + ".out");
  auto err_path = dir / ("cmd" + std::to_string(n) + ".err");
  RunResult r;
  {
    Process p(std::move(argv), out_path, err_path);
    r.exit_code = p.wait_exit(timeout);
    if (!r.exit_code) {
      p.kill();
      p.wait_exit(5s);
    }
  }
  r.out = read_file(out_path);
  r.err = read_file(err_path);
  return r;
}

}  // namespace botgate::test
