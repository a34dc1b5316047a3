#include "tests/support/gateway.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <system_error>

namespace botgate::test {

Gateway::Gateway(const std::string& binary, const TempDir& dir, const std::string& config_text,
                 const std::string& name)
    : Gateway(binary, dir.write(name + ".toml", config_text), dir / (name + ".log")) {}

Gateway::Gateway(std::string binary, std::filesystem::path config_path,
                 const std::filesystem::path& log_path)
    : binary_(std::move(binary)), config_path_(std::move(config_path)) {
  process_ = std::make_unique<Process>(
      std::vector<std::string>{binary_, "--config", config_path_.string()}, log_path, log_path);
  process_->port();  // throws, with the log, if botgate never listens
}

std::unique_ptr<Gateway> Gateway::restart(const std::string& log_name) const {
  if (process_->running()) {
    throw std::logic_error("Gateway::restart: pid " + std::to_string(process_->pid()) +
                           " still runs");
  }
  auto log_path = config_path_.parent_path() / (log_name + ".log");
  return std::unique_ptr<Gateway>(new Gateway(binary_, config_path_, log_path));
}

namespace {

// Binds 127.0.0.1:port (0: any) without SO_REUSEADDR and returns the bound port, or 0.
std::uint16_t try_bind(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  std::uint16_t bound = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    socklen_t len = sizeof addr;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      bound = ntohs(addr.sin_port);
    }
  }
  ::close(fd);
  return bound;
}

}  // namespace

std::uint16_t free_listen_port() {
  unsigned low = 32768;
  {
    std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
    unsigned lo = 0, hi = 0;
    if (range >> lo >> hi && lo > 0) low = lo;
  }
  constexpr unsigned kFirst = 10000;
  if (low > kFirst + 1000) {
    std::mt19937 rng(std::random_device{}());
    std::uniform_int_distribution<unsigned> pick(kFirst, low - 1);
    for (int i = 0; i < 200; ++i) {
      auto port = static_cast<std::uint16_t>(pick(rng));
      if (try_bind(port) == port) return port;
    }
  }
  // No room below the range (or all taken): any port the kernel hands out.
  if (auto port = try_bind(0)) return port;
  throw std::runtime_error("free_listen_port: cannot bind 127.0.0.1");
}

std::string limited_binary(const TempDir& dir, const std::string& binary,
                           const std::string& limits) {
  if (std::system("command -v prlimit >/dev/null 2>&1") != 0) {
    throw std::runtime_error("prlimit(1) not found: install util-linux");
  }
  const auto script = dir.write(
      "botgate-limited.sh", "#!/bin/sh\nexec prlimit " + limits + " -- " + binary + " \"$@\"\n");
  std::filesystem::permissions(script, std::filesystem::perms::owner_exec,
                               std::filesystem::perm_options::add);
  return script.string();
}

std::vector<std::string> lines_with(const std::string& text, const std::string& needle) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) != std::string::npos) out.push_back(line);
  }
  return out;
}

}  // namespace botgate::test
