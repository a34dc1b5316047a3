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
#include <vector>

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

// Requests refused before a Handler sees them (over a limit, unparseable). The
// transport answers them itself; the hook lets the application count and log.
enum class Refusal { body_too_large, header_too_large, malformed };
using RefusalHook = std::function<void(Refusal, const std::string& peer)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::uint64_t max_body = 1 << 20;
  std::uint32_t max_header = 8 << 10;
  Duration read_timeout = std::chrono::seconds(15);
  Duration write_timeout = std::chrono::seconds(15);
};

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
  std::shared_ptr<ServerState> state_;
};

}  // namespace botgate::http
