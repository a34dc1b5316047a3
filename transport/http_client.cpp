#include "transport/http_client.hpp"

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <optional>

#include "transport/lazy_timer.hpp"

namespace botgate::http {

namespace beast = boost::beast;
namespace net = boost::asio;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;
using SteadyClock = std::chrono::steady_clock;
using Strand = net::strand<net::io_context::executor_type>;

struct HttpClient::Job {
  std::string wire;  // the whole serialized request
  ClientCallback done;
  SteadyClock::time_point deadline{};  // set when written
  bool resent = false;                 // already written once on a connection that broke
};

struct HttpClient::Connection {
  explicit Connection(const Strand& ex) : socket(ex), timer(ex) {}
  tcp::socket socket;
  LazyTimer timer;  // the nearest deadline: connect, or the oldest written request
  beast::flat_buffer buffer;
  std::optional<bhttp::response_parser<bhttp::string_body>> parser;  // the answer being read
  std::deque<JobPtr> queue;  // assigned, in order; queue[0, written) are on the wire
  std::size_t written = 0;
  std::string out;  // bytes of the write in progress
  SteadyClock::time_point connect_deadline{};
  bool connected = false;
  bool writing = false;
  bool reading = false;
  bool dead = false;
  bool used = false;  // an answer was read on it: the peer may since have closed it
};

namespace {

void append_header_value(std::string& out, const std::string& value) {
  for (char c : value) out.push_back(c == '\r' || c == '\n' ? ' ' : c);
}

ClientResponse failure(ClientResponse::Error error, std::string message) {
  ClientResponse res;
  res.error = error;
  res.message = std::move(message);
  return res;
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
}

void HttpClient::post(const std::string& target, const std::string& body, const HeaderList& headers,
                      ClientCallback done) {
  submit("POST", target, body, headers, std::move(done));
}

void HttpClient::get(const std::string& target, const HeaderList& headers, ClientCallback done) {
  submit("GET", target, {}, headers, std::move(done));
}

void HttpClient::submit(std::string_view method, const std::string& target, std::string_view body,
                        const HeaderList& headers, ClientCallback done) {
  auto job = std::make_shared<Job>();
  auto& w = job->wire;
  w.reserve(body.size() + 256);
  w.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: ").append(host_header_);
  if (!body.empty()) w.append("\r\nContent-Type: application/json");
  w.append("\r\nContent-Length: ").append(std::to_string(body.size())).append("\r\n");
  for (const auto& [name, value] : headers) {
    w.append(name).append(": ");
    append_header_value(w, value);
    w.append("\r\n");
  }
  w.append("\r\n").append(body);
  job->done = std::move(done);
  bool first = false;
  {
    std::lock_guard lock(inbox_mutex_);
    first = inbox_.empty();
    inbox_.push_back(std::move(job));
  }
  if (first) net::post(strand_, [self = shared_from_this()] { self->drain_inbox(); });
}

void HttpClient::shutdown() {
  net::post(strand_, [self = shared_from_this()] {
    self->closed_ = true;
    auto idle = self->idle_;
    for (auto& c : idle) self->close(c);
  });
}

void HttpClient::drain_inbox() {
  std::vector<JobPtr> jobs;
  {
    std::lock_guard lock(inbox_mutex_);
    jobs.swap(inbox_);
  }
  for (auto& job : jobs) assign(std::move(job));
}

// An idle connection, else a new one, else a pipelining slot, else wait.
bool HttpClient::try_assign(JobPtr& job) {
  if (!idle_.empty()) {
    auto conn = std::move(idle_.back());
    idle_.pop_back();
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
  if (!try_assign(job)) waiting_.push_back(std::move(job));
}

void HttpClient::next_waiting() {
  while (!waiting_.empty() && try_assign(waiting_.front())) waiting_.pop_front();
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
  net::async_connect(
      conn->socket, endpoints_,
      [self = shared_from_this(), conn](boost::system::error_code ec, const tcp::endpoint&) {
        if (conn->dead) return;
        if (ec) return self->broken(conn, ec, "connect");
        conn->connected = true;
        boost::system::error_code ignored;
        conn->socket.set_option(tcp::no_delay(true), ignored);
        self->flush(conn);
        self->next_waiting();  // pipeline what queued up while connecting
      });
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
  }
  conn->written = conn->queue.size();
  conn->writing = true;
  arm_timer(conn);
  net::async_write(conn->socket, net::buffer(conn->out),
                   [self = shared_from_this(), conn](boost::system::error_code ec, std::size_t) {
                     conn->writing = false;
                     conn->out.clear();
                     if (conn->dead) return;
                     if (ec) return self->broken(conn, ec, "write");
                     self->flush(conn);
                     self->become_idle(conn);  // answered before its write ended
                   });
  // Read while writing: a server may answer (and close) before taking the whole body.
  read(conn);
}

void HttpClient::read(const ConnPtr& conn) {
  if (conn->reading || conn->dead || conn->written == 0) return;
  conn->reading = true;
  conn->parser.emplace();
  conn->parser->body_limit(options_.max_response_body);
  bhttp::async_read(conn->socket, conn->buffer, *conn->parser,
                    [self = shared_from_this(), conn](boost::system::error_code ec, std::size_t) {
                      conn->reading = false;
                      if (conn->dead) return;
                      if (ec) return self->broken(conn, ec, "read");
                      const unsigned status = conn->parser->get().result_int();
                      if (status >= 100 && status < 200 && status != 101) {
                        return self->read(conn);  // interim answer: the final one follows
                      }
                      auto msg = conn->parser->release();
                      conn->parser.reset();
                      self->on_answer(conn, msg.result_int(), std::move(msg.body()),
                                      msg.keep_alive());
                    });
}

void HttpClient::on_answer(const ConnPtr& conn, unsigned status, std::string&& body,
                           bool keep_alive) {
  auto job = std::move(conn->queue.front());
  conn->queue.pop_front();
  --conn->written;
  conn->used = true;
  if (!keep_alive) {
    // The server closes after this answer: whatever follows goes elsewhere.
    broken(conn, net::error::connection_aborted, "closed by the server");
  } else if (conn->queue.empty()) {
    become_idle(conn);
  } else {
    read(conn);
    flush(conn);
  }
  ClientResponse res;
  res.status = status;
  res.body = std::move(body);
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
    if (now >= conn->connect_deadline) return broken(conn, net::error::timed_out, "connect");
  } else if (conn->written > 0 && now >= conn->queue.front()->deadline) {
    return broken(conn, net::error::timed_out, "exchange");
  }
  arm_timer(conn);
}

// The connection is unusable. Its requests fail, or go out once more on another
// connection when no byte of their answer was read and the failure says nothing
// about them: behind the front of a pipeline, or at the front of a kept-alive
// connection that the peer had already closed.
void HttpClient::broken(const ConnPtr& conn, boost::system::error_code ec, const char* what) {
  if (conn->dead) return;
  close(conn);
  const bool timed_out = ec == net::error::timed_out;
  const std::string message = std::string(what) + ": " + (timed_out ? "timed out" : ec.message());
  const bool front_answering = conn->parser && conn->parser->got_some();
  std::vector<JobPtr> again;
  std::vector<JobPtr> failed;
  for (std::size_t i = 0; i < conn->queue.size(); ++i) {
    auto& job = conn->queue[i];
    if (!conn->connected) {
      failed.push_back(std::move(job));
    } else if (i >= conn->written) {
      again.push_back(std::move(job));  // never written
    } else if (job->resent || (i == 0 && (timed_out || front_answering || !conn->used))) {
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
  if (conn->used && !timed_out && ec != net::error::connection_aborted) {
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
