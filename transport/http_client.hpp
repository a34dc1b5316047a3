// Boost.Beast HTTP/1.1 client for one upstream host: a keep-alive connection pool
// with connect and response timeouts. All of its state lives on one strand, so
// callers on any thread may post() and no lock is taken.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/system/error_code.hpp>

#include "core/units.hpp"

namespace botgate::http {

struct ClientOptions {
  std::string host;
  std::uint16_t port = 80;
  Duration connect_timeout = std::chrono::seconds(1);
  Duration timeout = std::chrono::seconds(5);  // write + read of one exchange
  std::size_t max_connections = 32;
  std::uint64_t max_response_body = 1 << 20;
};

struct ClientResponse {
  enum class Error { none, connect, timeout, io };
  Error error = Error::none;
  unsigned status = 0;
  std::string body;
  std::string message;  // human-readable cause when error != none
};

using ClientCallback = std::function<void(ClientResponse&&)>;
using HeaderList = std::vector<std::pair<std::string, std::string>>;

class HttpClient : public std::enable_shared_from_this<HttpClient> {
 public:
  // Resolves the host once, synchronously: call at start-up, not from an actor.
  static std::shared_ptr<HttpClient> create(boost::asio::io_context& ioc, ClientOptions options);

  // Thread-safe. `done` runs exactly once, on the client's strand.
  void post(std::string target, std::string body, HeaderList headers, ClientCallback done);

  // Closes idle connections; in-flight exchanges finish.
  void shutdown();

  struct Connection;
  struct Job;

  HttpClient(boost::asio::io_context& ioc, ClientOptions options,
             boost::asio::ip::tcp::resolver::results_type endpoints);

 private:
  void start(std::shared_ptr<Job> job, bool fresh);
  void connect(std::shared_ptr<Connection> conn, std::shared_ptr<Job> job);
  void exchange(std::shared_ptr<Connection> conn, std::shared_ptr<Job> job);
  void fail(std::shared_ptr<Connection> conn, std::shared_ptr<Job> job,
            boost::system::error_code ec, const char* what);
  void finish(std::shared_ptr<Connection> conn, std::shared_ptr<Job> job, ClientResponse&& res,
              bool reusable);
  void discard(const std::shared_ptr<Connection>& conn);
  void next_waiting();

  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  ClientOptions options_;
  boost::asio::ip::tcp::resolver::results_type endpoints_;
  std::vector<std::shared_ptr<Connection>> idle_;
  std::deque<std::shared_ptr<Job>> waiting_;
  std::size_t open_ = 0;
  bool closed_ = false;
};

}  // namespace botgate::http
