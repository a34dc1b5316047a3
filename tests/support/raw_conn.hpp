// A blocking client socket on 127.0.0.1 with exact control over the bytes on the
// wire, and the Content-Length-framed responses read from it: for tests of HTTP
// framing (pipelining, partial requests, Connection: close).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace botgate::test {

struct RawResponse {
  bool complete = false;  // a whole head and Content-Length body were read
  int status = 0;
  std::string head;
  std::multimap<std::string, std::string> headers;  // lower-case names, every occurrence
  std::string body;

  std::size_t count(const std::string& name) const { return headers.count(name); }
  std::string header(const std::string& name) const;
};

// "complete=... head=[...] body=<first 200 bytes>", for test failure messages.
std::string describe(const RawResponse& r);

class RawConn {
 public:
  using Clock = std::chrono::steady_clock;

  // Connects (blocking) with TCP_NODELAY; throws when the connect fails.
  explicit RawConn(std::uint16_t port);
  ~RawConn();
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  Clock::time_point started() const { return started_; }
  Clock::time_point connected() const { return connected_; }

  // Sends all of `bytes`; false when the peer is gone.
  bool send(const std::string& bytes);

  // Reads one response framed by its Content-Length; `to_head`: an answer to HEAD,
  // which has no body whatever its Content-Length says.
  RawResponse read_response(std::chrono::milliseconds timeout = std::chrono::seconds(3),
                            bool to_head = false);

  // Waits for the peer to close (EOF or reset). The time it was seen, or nothing on
  // timeout. Bytes received meanwhile land in leftover().
  std::optional<Clock::time_point> wait_closed(std::chrono::milliseconds timeout);

  const std::string& leftover() const { return buf_; }

 private:
  bool fill(Clock::time_point deadline);

  int fd_ = -1;
  std::string buf_;
  Clock::time_point started_{};
  Clock::time_point connected_{};
};

}  // namespace botgate::test
