// A minimal HTTP/1.1 server for fake platforms in integration tests: Boost.Beast on
// 127.0.0.1, an ephemeral port, keep-alive, one io thread joined in the destructor. Every
// request goes to a handler that runs on the io thread and returns the answer (with an
// optional delay, waited on a timer so other connections keep being served).
//
// Also the URL query helpers the fakes and the callback builders share.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace botgate::test {

struct MiniRequest {
  std::chrono::steady_clock::time_point at{};
  std::uint64_t connection = 0;  // which accepted connection carried it
  std::string method;
  std::string target;                          // as sent, path and query
  std::string path;                            // target up to '?'
  std::map<std::string, std::string> query;    // percent-decoded; first occurrence wins
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;

  // The query value, or "" when absent.
  std::string param(const std::string& name) const;
  bool has_param(const std::string& name) const;
};

struct MiniReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // Wait this long before answering (the request is already handled).
  std::chrono::milliseconds delay{0};
  // Called on the io thread once the answer is written (not if the write failed).
  std::function<void()> after_write;
};

class MiniServer {
 public:
  // Called on the io thread, one request at a time. It must not block for long, and must
  // not call back into this server synchronously.
  using Handler = std::function<MiniReply(const MiniRequest&)>;

  // Binds 127.0.0.1 on an ephemeral port and serves at once. Throws on bind failure.
  explicit MiniServer(Handler handler, std::string server_name = "botgate-mini-server");
  // Closes the listener and every connection, then joins the io thread. The handler is
  // never called after the destructor returns.
  ~MiniServer();
  MiniServer(const MiniServer&) = delete;
  MiniServer& operator=(const MiniServer&) = delete;

  std::uint16_t port() const;
  // "http://127.0.0.1:PORT" + path.
  std::string url(const std::string& path = "") const;
  std::uint64_t connections_accepted() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// RFC 3986 percent-encoding of a query value: everything but A-Z a-z 0-9 - _ . ~ is %XX
// (so base64's + / = survive).
std::string url_encode(std::string_view s);
// Decodes %XX and '+' (as a space). Malformed escapes are kept literally.
std::string url_decode(std::string_view s);
// "a=1&b=2" -> {a:1, b:2}, decoded; the first occurrence of a name wins.
std::map<std::string, std::string> parse_query(std::string_view query);
// "name=value&..." from pairs, values encoded (names are taken as they are).
std::string build_query(const std::vector<std::pair<std::string, std::string>>& kv);

}  // namespace botgate::test
