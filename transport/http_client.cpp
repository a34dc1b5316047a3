#include "transport/http_client.hpp"

#include <optional>

#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace botgate::http {

namespace beast = boost::beast;
namespace net = boost::asio;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;

struct HttpClient::Connection {
  explicit Connection(net::strand<net::io_context::executor_type> ex) : stream(ex) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  bool used = false;  // has completed an exchange before: the peer may have closed it
};

struct HttpClient::Job {
  bhttp::request<bhttp::string_body> req;
  ClientCallback done;
  std::optional<bhttp::response_parser<bhttp::string_body>> parser;
  bool retried = false;
};

std::shared_ptr<HttpClient> HttpClient::create(net::io_context& ioc, ClientOptions options) {
  tcp::resolver resolver(ioc);
  auto endpoints = resolver.resolve(options.host, std::to_string(options.port));
  return std::make_shared<HttpClient>(ioc, std::move(options), std::move(endpoints));
}

HttpClient::HttpClient(net::io_context& ioc, ClientOptions options,
                       tcp::resolver::results_type endpoints)
    : strand_(net::make_strand(ioc)),
      options_(std::move(options)),
      endpoints_(std::move(endpoints)) {}

void HttpClient::post(std::string target, std::string body, HeaderList headers,
                      ClientCallback done) {
  auto job = std::make_shared<Job>();
  job->req.method(bhttp::verb::post);
  job->req.target(target);
  job->req.version(11);
  job->req.set(bhttp::field::host, options_.host + ":" + std::to_string(options_.port));
  job->req.set(bhttp::field::content_type, "application/json");
  for (auto& [name, value] : headers) job->req.set(name, value);
  job->req.body() = std::move(body);
  job->req.keep_alive(true);
  job->req.prepare_payload();
  job->done = std::move(done);
  net::post(strand_, [self = shared_from_this(), job] { self->start(job, false); });
}

void HttpClient::shutdown() {
  net::post(strand_, [self = shared_from_this()] {
    self->closed_ = true;
    for (auto& c : self->idle_) {
      beast::error_code ec;
      c->stream.socket().close(ec);
    }
    self->open_ -= self->idle_.size();
    self->idle_.clear();
  });
}

// Runs on the strand. `fresh` forces a new connection (used for the one silent
// retry after a kept-alive connection turned out to be closed by the peer).
void HttpClient::start(std::shared_ptr<Job> job, bool fresh) {
  if (!fresh && !idle_.empty()) {
    auto conn = std::move(idle_.back());
    idle_.pop_back();
    return exchange(std::move(conn), std::move(job));
  }
  if (open_ >= options_.max_connections) {
    if (fresh && !idle_.empty()) {
      // At the limit: replace an idle connection rather than wait behind others.
      discard(idle_.back());
      idle_.pop_back();
    } else {
      waiting_.push_back(std::move(job));
      return;
    }
  }
  ++open_;
  connect(std::make_shared<Connection>(strand_), std::move(job));
}

void HttpClient::connect(std::shared_ptr<Connection> conn, std::shared_ptr<Job> job) {
  conn->stream.expires_after(options_.connect_timeout);
  conn->stream.async_connect(
      endpoints_, [self = shared_from_this(), conn, job](beast::error_code ec,
                                                         const tcp::endpoint&) mutable {
        if (ec) {
          ClientResponse res;
          res.error = ec == beast::error::timeout ? ClientResponse::Error::timeout
                                                  : ClientResponse::Error::connect;
          res.message = "connect: " + ec.message();
          return self->finish(std::move(conn), std::move(job), std::move(res), false);
        }
        beast::error_code ignored;
        conn->stream.socket().set_option(tcp::no_delay(true), ignored);
        self->exchange(std::move(conn), std::move(job));
      });
}

void HttpClient::exchange(std::shared_ptr<Connection> conn, std::shared_ptr<Job> job) {
  conn->stream.expires_after(options_.timeout);
  bhttp::async_write(
      conn->stream, job->req,
      [self = shared_from_this(), conn, job](beast::error_code ec, std::size_t) mutable {
        if (ec) return self->fail(std::move(conn), std::move(job), ec, "write");
        job->parser.emplace();
        job->parser->body_limit(self->options_.max_response_body);
        bhttp::async_read(conn->stream, conn->buffer, *job->parser,
                          [self, conn, job](beast::error_code ec2, std::size_t) mutable {
                            if (ec2) return self->fail(std::move(conn), std::move(job), ec2, "read");
                            auto msg = job->parser->release();
                            ClientResponse res;
                            res.status = msg.result_int();
                            res.body = std::move(msg.body());
                            const bool keep = msg.keep_alive();
                            self->finish(std::move(conn), std::move(job), std::move(res), keep);
                          });
      });
}

void HttpClient::fail(std::shared_ptr<Connection> conn, std::shared_ptr<Job> job,
                      beast::error_code ec, const char* what) {
  // A kept-alive connection that the peer already closed fails on write, or on
  // read before any byte of an answer: retry once on a new connection, invisibly.
  // Once part of an answer arrived the request was seen, so it is never resent here.
  const bool nothing_read = !job->parser || !job->parser->got_some();
  if (conn->used && !job->retried && nothing_read && ec != beast::error::timeout) {
    job->retried = true;
    discard(conn);
    return start(std::move(job), true);
  }
  ClientResponse res;
  res.error =
      ec == beast::error::timeout ? ClientResponse::Error::timeout : ClientResponse::Error::io;
  res.message = std::string(what) + ": " + ec.message();
  finish(std::move(conn), std::move(job), std::move(res), false);
}

void HttpClient::finish(std::shared_ptr<Connection> conn, std::shared_ptr<Job> job,
                        ClientResponse&& res, bool reusable) {
  if (reusable && !closed_) {
    conn->used = true;
    conn->stream.expires_never();
    idle_.push_back(std::move(conn));
  } else {
    discard(conn);
  }
  auto done = std::move(job->done);
  job.reset();
  done(std::move(res));
  next_waiting();
}

void HttpClient::discard(const std::shared_ptr<Connection>& conn) {
  beast::error_code ec;
  conn->stream.socket().close(ec);
  --open_;
}

void HttpClient::next_waiting() {
  while (!waiting_.empty() && (!idle_.empty() || open_ < options_.max_connections)) {
    auto job = std::move(waiting_.front());
    waiting_.pop_front();
    start(std::move(job), false);
  }
}

}  // namespace botgate::http
