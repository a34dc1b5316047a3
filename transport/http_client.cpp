#include "transport/http_client.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <chrono>
#include <optional>
#include <stdexcept>

#include "transport/lazy_timer.hpp"
#include "transport/retry_after.hpp"

namespace botgate::http {

namespace beast = boost::beast;
namespace net = boost::asio;
namespace bhttp = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using TlsStream = ssl::stream<tcp::socket&>;  // TLS over the connection's own socket
using SteadyClock = std::chrono::steady_clock;
using Strand = net::strand<net::io_context::executor_type>;

struct HttpClient::Job {
  std::string wire;  // the whole serialized request
  ClientCallback done;
  SteadyClock::time_point deadline{};  // set when written
  // Not assigned to a connection after this (connect_timeout + timeout after submit), it fails
  // unsent: the caller's own deadline for the exchange is running meanwhile.
  SteadyClock::time_point send_by{};
  bool written = false;    // put on the wire at least once
  bool resent = false;     // already written once on a connection that broke
  bool resendable = true;  // may go out again after its connection broke (see resend_posts)
};

struct HttpClient::Connection {
  // Pipelined answers arrive several to a segment; read them in one receive.
  static constexpr std::size_t kReadBufferReserve = 16384;
  explicit Connection(const Strand& ex) : socket(ex), timer(ex) {
    buffer.reserve(kReadBufferReserve);
  }
  tcp::socket socket;
  std::optional<TlsStream> tls;  // https only: the TLS layer over `socket`
  LazyTimer timer;               // the nearest deadline: connect, or the oldest written request
  beast::flat_buffer buffer;
  std::optional<bhttp::response_parser<bhttp::string_body>> parser;  // the answer being read
  std::deque<JobPtr> queue;  // assigned, in order; queue[0, written) are on the wire
  std::size_t written = 0;
  std::string out;  // bytes of the write in progress
  SteadyClock::time_point connect_deadline{};
  bool connected = false;  // and, with TLS, handshaken
  bool handshaking = false;
  bool writing = false;
  bool reading = false;
  bool dead = false;
  bool used = false;  // an answer was read on it: the peer may since have closed it
};

namespace {

void append_header_value(std::string& out, std::string_view value) {
  for (char c : value) out.push_back(c == '\r' || c == '\n' ? ' ' : c);
}

// A 429 or 503 answer's Retry-After (delta-seconds or an HTTP-date; 0 when absent or unreadable).
template <typename Message>
std::chrono::seconds retry_after_of(const Message& msg) {
  const unsigned status = msg.result_int();
  if (status != 429 && status != 503) return std::chrono::seconds{0};
  const auto it = msg.find(bhttp::field::retry_after);
  if (it == msg.end()) return std::chrono::seconds{0};
  return parse_retry_after(it->value(), std::chrono::system_clock::now());
}

ClientResponse failure(ClientResponse::Error error, std::string message) {
  ClientResponse res;
  res.error = error;
  res.message = std::move(message);
  return res;
}

// Runs `op` on the connection's stream: the TLS stream when there is one, else the
// socket itself. One branch per I/O operation, no type erasure, no allocation.
template <typename Op>
void with_stream(HttpClient::Connection& conn, Op&& op) {
  if (conn.tls) {
    op(*conn.tls);
  } else {
    op(conn.socket);
  }
}

// Has the peer closed (or broken) this idle connection? Nothing is due on an idle connection,
// so anything readable (an end of stream, a reset, a 408 or a TLS alert before the close)
// says it is not to be used.
bool peer_closed(tcp::socket& socket) {
  char byte;
  const ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
}

// The OpenSSL error queue's first entry, for messages about the TLS set-up.
std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// The client-wide TLS context: TLS 1.2 or later, the server's chain verified
// against `ca_file` (or the system's CAs) and its certificate checked for `host`
// by OpenSSL during the handshake, so a mismatch has its own verify error.
std::unique_ptr<ssl::context> make_tls_context(const ClientOptions& o, bool host_is_ip) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  SSL_CTX* native = ctx->native_handle();
  if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1) {
    throw std::runtime_error("TLS: cannot require TLS 1.2: " + openssl_error());
  }
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression);
  if (!o.verify_peer) {
    ctx->set_verify_mode(ssl::verify_none);
    return ctx;
  }
  ctx->set_verify_mode(ssl::verify_peer);
  boost::system::error_code ec;
  if (o.ca_file.empty()) {
    ctx->set_default_verify_paths(ec);
    if (ec) throw std::runtime_error("TLS: cannot load the system CA paths: " + ec.message());
  } else {
    ctx->load_verify_file(o.ca_file, ec);
    if (ec) throw std::runtime_error("TLS: cannot load CA file " + o.ca_file + ": " + ec.message());
  }
  X509_VERIFY_PARAM* param = SSL_CTX_get0_param(native);
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  const int ok = host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, o.host.c_str())
                            : X509_VERIFY_PARAM_set1_host(param, o.host.data(), o.host.size());
  if (ok != 1) throw std::runtime_error("TLS: cannot verify against host " + o.host);
  return ctx;
}

}  // namespace

std::shared_ptr<HttpClient> HttpClient::create(net::io_context& ioc, ClientOptions options) {
  tcp::resolver resolver(ioc);
  auto endpoints = resolver.resolve(options.host, std::to_string(options.port));
  return std::make_shared<HttpClient>(ioc, std::move(options), std::move(endpoints));
}

HttpClient::HttpClient(net::io_context& ioc, ClientOptions options,
                       tcp::resolver::results_type endpoints)
    : strand_(net::make_strand(ioc)),
      options_(std::move(options)),
      host_header_(options_.host + ":" + std::to_string(options_.port)),
      endpoints_(std::move(endpoints)) {
  options_.pipeline = std::max<std::size_t>(options_.pipeline, 1);
  if (options_.tls) {
    boost::system::error_code ec;
    net::ip::make_address(options_.host, ec);
    host_is_ip_ = !ec;
    // RFC 6066: SNI carries DNS names only, of at most 255 bytes.
    if (!host_is_ip_ && (options_.host.empty() || options_.host.size() > 255)) {
      throw std::runtime_error("TLS: host name not usable for SNI: " + options_.host);
    }
    tls_ = make_tls_context(options_, host_is_ip_);
    if (options_.port == 443) host_header_ = options_.host;  // the https default port
  }
}

HttpClient::~HttpClient() = default;

void HttpClient::post(const std::string& target, std::string_view content_type,
                      std::string_view body, HeaderList headers, ClientCallback done) {
  submit("POST", target, content_type, body, headers, std::move(done));
}

void HttpClient::get(const std::string& target, HeaderList headers, ClientCallback done) {
  submit("GET", target, {}, {}, headers, std::move(done));
}

void HttpClient::submit(std::string_view method, const std::string& target,
                        std::string_view content_type, std::string_view body, HeaderList headers,
                        ClientCallback done) {
  auto job = std::make_shared<Job>();
  job->resendable = options_.resend_posts || method != "POST";
  job->send_by = SteadyClock::now() + options_.connect_timeout + options_.timeout;
  auto& w = job->wire;
  w.reserve(body.size() + 256);
  w.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: ").append(host_header_);
  if (!body.empty()) {
    w.append("\r\nContent-Type: ");
    append_header_value(w, content_type);
  }
  w.append("\r\nContent-Length: ").append(std::to_string(body.size())).append("\r\n");
  for (const auto& [name, value] : headers) {
    w.append(name).append(": ");
    append_header_value(w, value);
    w.append("\r\n");
  }
  w.append("\r\n").append(body);
  job->done = std::move(done);
  if (inbox_.push(std::move(job))) {
    net::post(strand_, [self = shared_from_this()] { self->drain_inbox(); });
  }
}

void HttpClient::shutdown() {
  net::post(strand_, [self = shared_from_this()] {
    self->closed_ = true;
    auto idle = self->idle_;
    for (auto& c : idle) self->close(c);
  });
}

void HttpClient::drain_inbox() {
  inbox_.take(drained_);
  for (auto& job : drained_) assign(std::move(job));
}

// An idle connection, else a new one, else a pipelining slot, else wait.
bool HttpClient::try_assign(JobPtr& job) {
  while (!idle_.empty()) {
    auto conn = std::move(idle_.back());
    idle_.pop_back();
    // A request that may not go out twice is not written into a connection the peer has
    // already closed (its idle timeout): that would fail it for nothing.
    if (!job->resendable && peer_closed(conn->socket)) {
      close(conn);
      continue;
    }
    enqueue(conn, std::move(job));
    return true;
  }
  if (conns_.size() < options_.max_connections) {
    open(std::move(job));
    return true;
  }
  if (options_.pipeline > 1) {
    ConnPtr best;
    for (std::size_t i = 0; i < conns_.size(); ++i) {
      const auto& c = conns_[(cursor_ + i) % conns_.size()];
      if (!c->connected || c->queue.size() >= options_.pipeline) continue;
      if (!best || c->queue.size() < best->queue.size()) best = c;
    }
    ++cursor_;
    if (best) {
      enqueue(best, std::move(job));
      return true;
    }
  }
  return false;
}

void HttpClient::assign(JobPtr job) {
  if (late(job)) return;
  if (!try_assign(job)) waiting_.push_back(std::move(job));
}

void HttpClient::next_waiting() {
  while (!waiting_.empty() && (late(waiting_.front()) || try_assign(waiting_.front()))) {
    waiting_.pop_front();
  }
}

// A request that found no connection by its send_by (connect_timeout + timeout after it was
// submitted) is not sent, nor sent again after its connection broke. Whoever submitted it
// gives up on it about then (a router's attempt deadline is two exchanges and a second), and
// sending it after its caller retried it elsewhere would deliver it twice. Requests wait when
// every connection is busy: a target shared by several pools, or sends still in flight after
// a re-route.
bool HttpClient::late(JobPtr& job) {
  if (SteadyClock::now() <= job->send_by) return false;
  auto done = std::move(job->done);
  if (job->written) {
    done(failure(ClientResponse::Error::io,
                 "the connection broke after the request was sent, too late to send it again"));
  } else {
    done(failure(ClientResponse::Error::timeout,
                 "no free connection within connect_timeout + timeout: not sent"));
  }
  return true;
}

void HttpClient::enqueue(const ConnPtr& conn, JobPtr job) {
  conn->queue.push_back(std::move(job));
  flush(conn);
}

void HttpClient::open(JobPtr first) {
  auto conn = std::make_shared<Connection>(strand_);
  conns_.push_back(conn);
  conn->queue.push_back(std::move(first));
  conn->connect_deadline = SteadyClock::now() + options_.connect_timeout;
  arm_timer(conn);
  if (tls_) conn->tls.emplace(conn->socket, *tls_);
  net::async_connect(
      conn->socket, endpoints_,
      [self = shared_from_this(), conn](boost::system::error_code ec, const tcp::endpoint&) {
        if (conn->dead) return;
        if (ec) return self->broken(conn, ec, "connect");
        boost::system::error_code ignored;
        conn->socket.set_option(tcp::no_delay(true), ignored);
        if (conn->tls) return self->handshake(conn);
        self->on_connected(conn);
      });
}

// The TLS handshake, under the connect deadline that is already armed.
void HttpClient::handshake(const ConnPtr& conn) {
  SSL* native = conn->tls->native_handle();
  if (!host_is_ip_ && SSL_set_tlsext_host_name(native, options_.host.c_str()) != 1) {
    return broken(conn, net::error::invalid_argument, "TLS handshake",
                  "TLS handshake: cannot set SNI: " + openssl_error());
  }
  conn->handshaking = true;
  conn->tls->async_handshake(
      ssl::stream_base::client, [self = shared_from_this(), conn](boost::system::error_code ec) {
        conn->handshaking = false;
        if (conn->dead) return;
        if (!ec) return self->on_connected(conn);
        std::string message = "TLS handshake with " + self->host_header_ + " failed: ";
        message += ec.message();
        const long verify = SSL_get_verify_result(conn->tls->native_handle());
        if (self->options_.verify_peer && verify != X509_V_OK) {
          message += "; certificate verify error: ";
          message += X509_verify_cert_error_string(verify);
        }
        self->broken(conn, ec, "TLS handshake", std::move(message));
      });
}

void HttpClient::on_connected(const ConnPtr& conn) {
  conn->connected = true;
  flush(conn);
  next_waiting();  // pipeline what queued up while connecting
}

// Writes every assigned request not yet written, in one write.
void HttpClient::flush(const ConnPtr& conn) {
  if (conn->writing || conn->dead || !conn->connected || conn->written == conn->queue.size()) {
    return;
  }
  const auto deadline = SteadyClock::now() + options_.timeout;
  for (auto i = conn->written; i < conn->queue.size(); ++i) {
    conn->out.append(conn->queue[i]->wire);
    conn->queue[i]->deadline = deadline;
    conn->queue[i]->written = true;
  }
  conn->written = conn->queue.size();
  conn->writing = true;
  arm_timer(conn);
  with_stream(*conn, [&](auto& stream) {
    net::async_write(stream, net::buffer(conn->out),
                     [self = shared_from_this(), conn](boost::system::error_code ec, std::size_t) {
                       conn->writing = false;
                       conn->out.clear();
                       if (conn->dead) return;
                       if (ec) return self->broken(conn, ec, "write");
                       self->flush(conn);
                       self->become_idle(conn);  // answered before its write ended
                       self->next_waiting();
                     });
  });
  // Read while writing: a server may answer (and close) before taking the whole body.
  read(conn);
}

void HttpClient::read(const ConnPtr& conn) {
  if (conn->reading || conn->dead || conn->written == 0) return;
  conn->reading = true;
  conn->parser.emplace();
  conn->parser->body_limit(options_.max_response_body);
  with_stream(*conn, [&](auto& stream) {
    bhttp::async_read(stream, conn->buffer, *conn->parser,
                      [self = shared_from_this(), conn](boost::system::error_code ec, std::size_t) {
                        conn->reading = false;
                        if (conn->dead) return;
                        if (ec == bhttp::error::body_limit && conn->parser->is_header_done()) {
                          // The answer stands: a backend that took an event and said so at
                          // length has still taken it. Its body is dropped, and the rest of
                          // it is not read: the connection goes.
                          const unsigned status = conn->parser->get().result_int();
                          const auto retry_after = retry_after_of(conn->parser->get());
                          conn->parser.reset();
                          return self->on_answer(conn, status, {}, false, true, retry_after);
                        }
                        if (ec) return self->broken(conn, ec, "read");
                        const unsigned status = conn->parser->get().result_int();
                        if (status >= 100 && status < 200 && status != 101) {
                          return self->read(conn);  // interim answer: the final one follows
                        }
                        auto msg = conn->parser->release();
                        conn->parser.reset();
                        self->on_answer(conn, msg.result_int(), std::move(msg.body()),
                                        msg.keep_alive(), false, retry_after_of(msg));
                      });
  });
}

void HttpClient::on_answer(const ConnPtr& conn, unsigned status, std::string&& body,
                           bool keep_alive, bool body_dropped, std::chrono::seconds retry_after) {
  auto job = std::move(conn->queue.front());
  conn->queue.pop_front();
  --conn->written;
  conn->used = true;
  if (body_dropped) {
    // Closed by this client, not in order: requests written behind it may have been taken.
    broken(conn, bhttp::error::body_limit, "read",
           "closed after an answer over the body limit, with requests behind it");
  } else if (!keep_alive) {
    // The server closes after this answer: whatever follows goes elsewhere.
    broken(conn, net::error::connection_aborted, "closed by the server", "closed by the server",
           true);
  } else if (conn->queue.empty()) {
    become_idle(conn);
  } else {
    read(conn);
    flush(conn);
  }
  ClientResponse res;
  res.status = status;
  res.body = std::move(body);
  res.body_dropped = body_dropped;
  res.retry_after = retry_after;
  job->done(std::move(res));
  next_waiting();
}

// A connection with nothing outstanding goes back to the pool, but only once its
// last write ended: a server may answer before it has read the whole request.
void HttpClient::become_idle(const ConnPtr& conn) {
  if (conn->dead || !conn->connected || conn->writing || !conn->queue.empty()) return;
  if (closed_) return close(conn);
  if (std::find(idle_.begin(), idle_.end(), conn) == idle_.end()) idle_.push_back(conn);
}

void HttpClient::arm_timer(const ConnPtr& conn) {
  if (conn->dead) return;
  SteadyClock::time_point at;
  if (!conn->connected) {
    at = conn->connect_deadline;
  } else if (conn->written > 0) {
    at = conn->queue.front()->deadline;
  } else {
    return;
  }
  conn->timer.ensure(at, [self = shared_from_this(), conn] {
    if (!conn->dead) self->on_timer(conn);
  });
}

// The timer is left running when the request it was set for is answered; when
// it fires it re-arms for whatever is now the oldest request.
void HttpClient::on_timer(const ConnPtr& conn) {
  const auto now = SteadyClock::now();
  if (!conn->connected) {
    if (now >= conn->connect_deadline) {
      return broken(conn, net::error::timed_out, conn->handshaking ? "TLS handshake" : "connect");
    }
  } else if (conn->written > 0 && now >= conn->queue.front()->deadline) {
    return broken(conn, net::error::timed_out, "exchange");
  }
  arm_timer(conn);
}

// The connection is unusable. Its requests fail, or go out once more on another
// connection when no byte of their answer was read and the failure says nothing
// about them: behind the front of a pipeline, or at the front of a kept-alive
// connection that the peer had already closed. Requests behind an answer that closed
// the connection in order go out again in any case. A written POST of a client without
// `resend_posts` never goes out again: it fails.
// `detail`, when given, is the whole message.
void HttpClient::broken(const ConnPtr& conn, boost::system::error_code ec, const char* what,
                        std::string detail, bool closed_in_order) {
  if (conn->dead) return;
  close(conn);
  const bool timed_out = ec == net::error::timed_out;
  const std::string message =
      !detail.empty() ? std::move(detail)
                      : std::string(what) + ": " + (timed_out ? "timed out" : ec.message());
  const bool front_answering = conn->parser && conn->parser->got_some();
  // After `Connection: close` the server processes nothing written behind that answer
  // (RFC 9112, 9.6): those requests go out again without using up their one resend. Each
  // such close answered a request, so this cannot loop. (A socket error, whatever its code,
  // says nothing of the kind.)
  std::vector<JobPtr> again;
  std::vector<JobPtr> failed;
  for (std::size_t i = 0; i < conn->queue.size(); ++i) {
    auto& job = conn->queue[i];
    if (!conn->connected) {
      failed.push_back(std::move(job));
    } else if (i >= conn->written || closed_in_order) {
      again.push_back(std::move(job));  // never written, or not taken by the server
    } else if (!job->resendable || job->resent ||
               (i == 0 && (timed_out || front_answering || !conn->used))) {
      failed.push_back(std::move(job));
    } else {
      job->resent = true;
      again.push_back(std::move(job));
    }
  }
  conn->queue.clear();
  conn->written = 0;
  // conn->parser stays: a read completion may already be queued and still use it.
  // A kept-alive connection that broke (not a timeout, not the server's orderly
  // `Connection: close`) says the server may have restarted and reset every connection it
  // had: the idle ones are suspect too. Drop them, so the requests sent again go out on fresh
  // connections instead of failing on the next dead one.
  if (conn->used && !timed_out && !closed_in_order) {
    const auto suspects = idle_;
    for (const auto& c : suspects) close(c);
  }
  const auto error = !conn->connected ? (timed_out ? ClientResponse::Error::timeout
                                                   : ClientResponse::Error::connect)
                     : timed_out      ? ClientResponse::Error::timeout
                                      : ClientResponse::Error::io;
  for (auto& job : again) assign(std::move(job));
  for (auto& job : failed) {
    // Only the front of a timed-out connection timed out; the rest were cut off.
    auto done = std::move(job->done);
    done(failure(error, message));
  }
  next_waiting();
}

void HttpClient::close(const ConnPtr& c) {
  const ConnPtr conn = c;  // `c` may be an element of the vectors erased below
  conn->dead = true;
  boost::system::error_code ignored;
  conn->socket.close(ignored);
  conn->timer.cancel();
  std::erase(conns_, conn);
  std::erase(idle_, conn);
}

}  // namespace botgate::http
