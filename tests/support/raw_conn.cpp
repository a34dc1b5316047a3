#include "tests/support/raw_conn.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>

#include "tests/support/headers.hpp"

namespace botgate::test {

namespace {

int millis_until(RawConn::Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - RawConn::Clock::now());
  return static_cast<int>(left.count());
}

}  // namespace

std::string RawResponse::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

std::string describe(const RawResponse& r) {
  return "complete=" + std::to_string(r.complete) + " head=[" + r.head +
         "] body=" + r.body.substr(0, 200);
}

RawConn::RawConn(std::uint16_t port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  started_ = Clock::now();
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd_);
    throw std::runtime_error("connect failed");
  }
  connected_ = Clock::now();
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

RawConn::~RawConn() {
  ::close(fd_);
}

bool RawConn::send(const std::string& bytes) {
  std::size_t off = 0;
  while (off < bytes.size()) {
    auto n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

RawResponse RawConn::read_response(std::chrono::milliseconds timeout, bool to_head) {
  RawResponse r;
  const auto deadline = Clock::now() + timeout;
  std::size_t end;
  while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
    if (!fill(deadline)) return r;
  }
  r.head = buf_.substr(0, end + 2);
  buf_.erase(0, end + 4);
  if (r.head.rfind("HTTP/1.1 ", 0) == 0) r.status = std::atoi(r.head.c_str() + 9);
  std::size_t pos = r.head.find("\r\n") + 2;
  while (pos < r.head.size()) {
    auto eol = r.head.find("\r\n", pos);
    auto line = r.head.substr(pos, eol - pos);
    pos = eol + 2;
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    auto value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    r.headers.emplace(lower(line.substr(0, colon)), value);
  }
  if (to_head) {
    r.complete = true;
    return r;
  }
  if (r.count("content-length") != 1) return r;
  const auto cl = std::stoul(r.header("content-length"));
  while (buf_.size() < cl) {
    if (!fill(deadline)) return r;
  }
  r.body = buf_.substr(0, cl);
  buf_.erase(0, cl);
  r.complete = true;
  return r;
}

std::optional<RawConn::Clock::time_point> RawConn::wait_closed(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const int left = millis_until(deadline);
    if (left <= 0) return std::nullopt;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, left) <= 0) continue;
    char tmp[4096];
    auto n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) return Clock::now();
    buf_.append(tmp, static_cast<std::size_t>(n));
  }
}

bool RawConn::fill(Clock::time_point deadline) {
  const int left = millis_until(deadline);
  if (left <= 0) return false;
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, left) <= 0) return false;
  char tmp[65536];
  auto n = ::recv(fd_, tmp, sizeof tmp, 0);
  if (n <= 0) return false;
  buf_.append(tmp, static_cast<std::size_t>(n));
  return true;
}

}  // namespace botgate::test
