// Boost.Beast HTTP/1.1 server: a listener that accepts and one session per
// connection, each on its own strand. It knows nothing about routes: every parsed
// request goes to the Handler, which answers through a Responder from any thread.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/log_throttle.hpp"
#include "core/units.hpp"

namespace botgate::http {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = net::ip::tcp;

using Request = beast::http::request<beast::http::string_body>;
using Response = beast::http::response<beast::http::string_body>;

class Session;

// Hands one response back to the connection that waits for it. Safe to call from
// any thread; call it exactly once. Answers given in a burst (an actor answering a
// whole batch) reach the io threads with one post, which passes each to its
// session's strand.
class Responder {
 public:
  explicit Responder(std::shared_ptr<Session> s) : session_(std::move(s)) {}
  void operator()(Response&& res) const;

 private:
  std::shared_ptr<Session> session_;
};

using Handler = std::function<void(Request&&, Responder)>;

// Requests refused before a Handler sees them (over a limit, unparseable, framed in a way
// that cannot be trusted), and connections refused at max_connections. The transport answers
// them itself; the hook lets the application count and log. It gets the request's target
// (origin form) once the request line was read, empty before, so that the application can
// count the refusal under the request's route.
enum class Refusal {
  body_too_large,
  header_too_large,      // the head, or a chunk header or trailer, over its limit
  malformed,             // not HTTP, or a Transfer-Encoding without chunked last (400)
  unsupported_coding,    // a transfer coding besides chunked, such as gzip (501)
  too_many_connections,  // closed at accept: max_connections are open
  read_timeout,          // a request begun but not whole within read_timeout (408)
};
using RefusalHook = std::function<void(Refusal, const std::string& peer, std::string_view target)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::uint64_t max_body = 1 << 20;
  std::uint32_t max_header = 8 << 10;
  Duration read_timeout = std::chrono::seconds(15);
  Duration write_timeout = std::chrono::seconds(15);
  // Connections open at once; one more is closed as soon as it is accepted.
  std::size_t max_connections = 10000;
};

// What a request's Transfer-Encoding fields (every value, in order; none when it has no such
// field) say about its body.
enum class TransferCoding {
  none,         // no Transfer-Encoding: Content-Length frames the body, if any
  chunked,      // exactly "chunked"
  unsupported,  // chunked last, after another coding (gzip, ...): 501
  bad_framing,  // chunked not last, or not at all, or twice: the length is unknown (400)
};
TransferCoding classify_transfer_encoding(const std::vector<std::string_view>& values);

struct ServerState;

class HttpServer {
 public:
  HttpServer(net::io_context& ioc, ServerOptions options, Handler handler, RefusalHook hook);
  ~HttpServer();

  // Binds and starts accepting; returns the bound port. Throws on bind failure.
  std::uint16_t start();
  // Graceful drain, step 1: close the listening socket.
  void stop_accepting();
  // Step 2: close idle connections now; busy ones close after their response.
  void drain();
  std::size_t open_connections() const;

 private:
  void do_accept();

  net::io_context& ioc_;
  tcp::acceptor acceptor_;
  net::steady_timer accept_retry_;  // backs off after a failed accept
  log::Throttle accept_failures_;   // one line a second while accepts fail
  std::shared_ptr<ServerState> state_;
};

}  // namespace botgate::http
