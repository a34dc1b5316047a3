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
// twice, which the Idempotency-Key header makes harmless. A client for a server
// that has no such key (a chat platform's send API) turns that off for POSTs
// (`resend_posts`): a POST already written fails instead, for the caller to retry
// or not, and an idle connection the peer has closed is noticed before it is
// reused, so such a request is not written into it.
//
// With `tls` set the client speaks https: one OpenSSL context per client (TLS 1.2
// or later), and on every new connection SNI, then a handshake that verifies the
// server's certificate chain (against `ca_file`, else the system's default CA
// paths) and that it names `host` (a DNS name, or an IP address in its
// subjectAltName), all within connect_timeout. A connection that fails its
// handshake fails as Error::connect, with the verification error in the message.
// Each connection then carries the TLS stream over its socket, and each I/O
// operation picks the stream with one branch: plain http gets no extra allocation
// or virtual call. Over TLS the Host header leaves out the default port 443.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/inbox.hpp"
#include "core/units.hpp"

namespace boost::asio::ssl {
class context;
}

namespace botgate::http {

struct ClientOptions {
  std::string host;
  std::uint16_t port = 80;
  Duration connect_timeout = std::chrono::seconds(1);
  Duration timeout = std::chrono::seconds(5);  // from writing a request to its whole answer
  std::size_t max_connections = 32;
  std::size_t pipeline = 1;  // requests outstanding per connection; 1 = no pipelining
  std::uint64_t max_response_body = 1 << 20;
  bool tls = false;         // https; `port` is not changed by it (set 443 yourself)
  std::string ca_file;      // PEM file of trusted CAs; empty: the system's default paths
  bool verify_peer = true;  // false: accept any certificate (tests only)
  // false: a POST written on a connection that then broke without an answer is not sent again
  // (it may have been acted on, and has no idempotency key): it fails with Error::io. Requests
  // never written, or written behind an answer that closed the connection in order (which
  // the server does not process), still go out again, and so do GETs.
  bool resend_posts = true;
};

struct ClientResponse {
  enum class Error { none, connect, timeout, io };
  Error error = Error::none;
  unsigned status = 0;
  std::string body;
  std::string message;  // human-readable cause when error != none
  // The answer's body was over ClientOptions::max_response_body: `body` is empty, the status
  // stands (the server did answer it), and the connection was closed rather than read on.
  bool body_dropped = false;
  // A 429 or 503 answer's Retry-After, in seconds (delta-seconds only; 0 when absent).
  std::chrono::seconds retry_after{0};
};

using ClientCallback = std::function<void(ClientResponse&&)>;
// Extra request headers, e.g. {{"Idempotency-Key", id}}. post() and get() serialize the
// request before they return, so the views only need to outlive the call.
using Header = std::pair<std::string_view, std::string_view>;
using HeaderList = std::initializer_list<Header>;

class HttpClient : public std::enable_shared_from_this<HttpClient> {
 public:
  // Resolves the host once, synchronously: call at start-up, not from an actor.
  // With `tls`, also sets up the TLS context; throws std::runtime_error when the
  // CA file cannot be loaded.
  static std::shared_ptr<HttpClient> create(boost::asio::io_context& ioc, ClientOptions options);

  // Thread-safe. POSTs `body` with the Content-Type `content_type`. `done` runs exactly
  // once, on the client's strand. CR and LF in header values are replaced by spaces.
  void post(const std::string& target, std::string_view content_type, std::string_view body,
            HeaderList headers, ClientCallback done);
  // The same, as application/json.
  void post(const std::string& target, std::string_view body, HeaderList headers,
            ClientCallback done) {
    post(target, "application/json", body, headers, std::move(done));
  }
  // Thread-safe. GETs `target` (a health check); otherwise as post().
  void get(const std::string& target, HeaderList headers, ClientCallback done);

  // Closes idle connections; in-flight exchanges finish.
  void shutdown();

  struct Connection;
  struct Job;
  using ConnPtr = std::shared_ptr<Connection>;
  using JobPtr = std::shared_ptr<Job>;

  HttpClient(boost::asio::io_context& ioc, ClientOptions options,
             boost::asio::ip::tcp::resolver::results_type endpoints);
  ~HttpClient();

 private:
  void submit(std::string_view method, const std::string& target, std::string_view content_type,
              std::string_view body, HeaderList headers, ClientCallback done);
  void drain_inbox();
  bool try_assign(JobPtr& job);
  void assign(JobPtr job);
  bool late(JobPtr& job);
  void enqueue(const ConnPtr& conn, JobPtr job);
  void open(JobPtr first);
  void handshake(const ConnPtr& conn);
  void on_connected(const ConnPtr& conn);
  void flush(const ConnPtr& conn);
  void read(const ConnPtr& conn);
  void become_idle(const ConnPtr& conn);
  void arm_timer(const ConnPtr& conn);
  void on_timer(const ConnPtr& conn);
  void on_answer(const ConnPtr& conn, unsigned status, std::string&& body, bool keep_alive,
                 bool body_dropped = false, std::chrono::seconds retry_after = {});
  // `closed_in_order`: the server answered with `Connection: close` (not an error).
  void broken(const ConnPtr& conn, boost::system::error_code ec, const char* what,
              std::string detail = {}, bool closed_in_order = false);
  void close(const ConnPtr& conn);
  void next_waiting();

  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  ClientOptions options_;
  std::string host_header_;
  boost::asio::ip::tcp::resolver::results_type endpoints_;
  std::unique_ptr<boost::asio::ssl::context> tls_;  // set when options_.tls
  bool host_is_ip_ = false;                         // no SNI for an IP address

  Inbox<JobPtr> inbox_;  // submitted from any thread, not yet assigned
  // On the strand: the last batch taken from inbox_. assign() must never run
  // drain_inbox() or a job's callback inline, or this would change under its loop.
  std::vector<JobPtr> drained_;

  std::vector<ConnPtr> conns_;  // open or connecting
  std::vector<ConnPtr> idle_;   // connected, nothing outstanding
  std::deque<JobPtr> waiting_;  // no connection could take them yet
  std::size_t cursor_ = 0;      // where the search for a pipelining slot starts
  bool closed_ = false;
};

}  // namespace botgate::http
