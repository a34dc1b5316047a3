// Boost.Beast HTTP/1.1 client for one upstream host: a keep-alive connection pool
// with connect and response timeouts and optional pipelining. All connection
// state lives on one strand; callers on any thread may post().
//
// post() serializes the request on the caller's thread and drops it into an
// inbox; the strand drains the whole inbox in one go, so a burst of posts costs
// one hand-off, not one per request.
//
// A request goes to an idle connection, else to a new one (up to
// max_connections), else, when pipeline > 1, behind the requests already written
// on the least busy connection (up to `pipeline` outstanding), else it waits.
// Pipelined requests are written together in one write, and their answers are
// read in order. When a connection breaks, a request of which no answer byte was
// read is sent once more on another connection; it may then reach the server
// twice, which the Idempotency-Key header makes harmless.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/system/error_code.hpp>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/units.hpp"

namespace botgate::http {

struct ClientOptions {
  std::string host;
  std::uint16_t port = 80;
  Duration connect_timeout = std::chrono::seconds(1);
  Duration timeout = std::chrono::seconds(5);  // from writing a request to its whole answer
  std::size_t max_connections = 32;
  std::size_t pipeline = 1;  // requests outstanding per connection; 1 = no pipelining
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

  // Thread-safe. POSTs `body` as application/json. `done` runs exactly once, on
  // the client's strand. CR and LF in header values are replaced by spaces.
  void post(const std::string& target, const std::string& body, const HeaderList& headers,
            ClientCallback done);
  // Thread-safe. GETs `target` (a health check); otherwise as post().
  void get(const std::string& target, const HeaderList& headers, ClientCallback done);

  // Closes idle connections; in-flight exchanges finish.
  void shutdown();

  struct Connection;
  struct Job;
  using ConnPtr = std::shared_ptr<Connection>;
  using JobPtr = std::shared_ptr<Job>;

  HttpClient(boost::asio::io_context& ioc, ClientOptions options,
             boost::asio::ip::tcp::resolver::results_type endpoints);

 private:
  void submit(std::string_view method, const std::string& target, std::string_view body,
              const HeaderList& headers, ClientCallback done);
  void drain_inbox();
  bool try_assign(JobPtr& job);
  void assign(JobPtr job);
  void enqueue(const ConnPtr& conn, JobPtr job);
  void open(JobPtr first);
  void flush(const ConnPtr& conn);
  void read(const ConnPtr& conn);
  void become_idle(const ConnPtr& conn);
  void arm_timer(const ConnPtr& conn);
  void on_timer(const ConnPtr& conn);
  void on_answer(const ConnPtr& conn, unsigned status, std::string&& body, bool keep_alive);
  void broken(const ConnPtr& conn, boost::system::error_code ec, const char* what);
  void close(const ConnPtr& conn);
  void next_waiting();

  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  ClientOptions options_;
  std::string host_header_;
  boost::asio::ip::tcp::resolver::results_type endpoints_;

  std::mutex inbox_mutex_;
  std::vector<JobPtr> inbox_;  // guarded by inbox_mutex_

  std::vector<ConnPtr> conns_;  // open or connecting
  std::vector<ConnPtr> idle_;   // connected, nothing outstanding
  std::deque<JobPtr> waiting_;  // no connection could take them yet
  std::size_t cursor_ = 0;      // where the search for a pipelining slot starts
  bool closed_ = false;
};

}  // namespace botgate::http
