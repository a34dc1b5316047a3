#include "transport/http_server.hpp"

#include <optional>
#include <unordered_set>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>

#include "core/log.hpp"

namespace botgate::http {

namespace bhttp = beast::http;

struct ServerState {
  ServerOptions options;
  Handler handler;
  RefusalHook hook;
  std::atomic<bool> draining{false};
  std::atomic<std::size_t> open{0};
  // Only touched when a connection opens or closes, and at drain: never per request.
  std::mutex mutex;
  std::unordered_set<Session*> sessions;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, std::shared_ptr<ServerState> state)
      : stream_(std::move(socket)), state_(std::move(state)) {
    state_->open.fetch_add(1, std::memory_order_relaxed);
    beast::error_code ec;
    auto ep = stream_.socket().remote_endpoint(ec);
    if (!ec) peer_ = ep.address().to_string() + ":" + std::to_string(ep.port());
  }

  ~Session() {
    {
      std::lock_guard lock(state_->mutex);
      state_->sessions.erase(this);
    }
    state_->open.fetch_sub(1, std::memory_order_relaxed);
  }

  void run() {
    {
      std::lock_guard lock(state_->mutex);
      state_->sessions.insert(this);
    }
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
  }

  // Posted from any thread; runs on the strand.
  void respond(Response&& res) {
    net::post(stream_.get_executor(), [self = shared_from_this(), r = std::move(res)]() mutable {
      self->do_write(std::move(r));
    });
  }

  // Posted by the server at drain time. A connection waiting for a request it has
  // not begun to receive is closed; one in the middle of a request finishes it.
  void drain_from_outside(std::weak_ptr<Session> weak) {
    net::post(stream_.get_executor(), [weak] {
      if (auto self = weak.lock()) {
        if (self->reading_ && !(self->parser_ && self->parser_->got_some())) self->close();
      }
    });
  }

 private:
  void do_read() {
    if (state_->draining.load(std::memory_order_relaxed)) return close();
    parser_.emplace();
    parser_->body_limit(state_->options.max_body);
    parser_->header_limit(state_->options.max_header);
    stream_.expires_after(state_->options.read_timeout);
    reading_ = true;
    bhttp::async_read(stream_, buffer_, *parser_,
                      beast::bind_front_handler(&Session::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, std::size_t) {
    reading_ = false;
    if (ec) {
      if (ec == bhttp::error::body_limit) return refuse(Refusal::body_too_large, 413, "too large");
      if (ec == bhttp::error::header_limit) {
        return refuse(Refusal::header_too_large, 431, "headers too large");
      }
      if (ec == bhttp::error::end_of_stream || ec == beast::error::timeout ||
          ec == net::error::operation_aborted || ec == net::error::connection_reset ||
          ec == net::error::eof || ec == net::error::bad_descriptor) {
        return close();
      }
      if (ec.category() == bhttp::make_error_code(bhttp::error::end_of_stream).category()) {
        // Any other parse error: the peer sent something that is not HTTP.
        return refuse(Refusal::malformed, 400, "malformed request");
      }
      return close();
    }
    keep_alive_ = parser_->get().keep_alive();
    state_->handler(parser_->release(), Responder(shared_from_this()));
  }

  void refuse(Refusal why, unsigned status, const char* text) {
    if (state_->hook) state_->hook(why, peer_);
    Response res{static_cast<bhttp::status>(status), 11};
    res.set(bhttp::field::content_type, "application/json");
    res.body() = std::string("{\"error\":\"") + text + "\"}";
    keep_alive_ = false;  // the rest of the request was not read
    do_write(std::move(res));
  }

  void do_write(Response&& res) {
    const bool keep = keep_alive_ && !state_->draining.load(std::memory_order_relaxed);
    res_.emplace(std::move(res));
    res_->keep_alive(keep);
    res_->prepare_payload();
    stream_.expires_after(state_->options.write_timeout);
    bhttp::async_write(stream_, *res_,
                       beast::bind_front_handler(&Session::on_write, shared_from_this(), keep));
  }

  void on_write(bool keep, beast::error_code ec, std::size_t) {
    res_.reset();
    if (ec) return close();
    if (!keep) return close();
    do_read();
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.socket().close(ec);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::shared_ptr<ServerState> state_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::optional<Response> res_;
  std::string peer_;
  bool keep_alive_ = true;
  bool reading_ = false;
};

void Responder::operator()(Response&& res) const { session_->respond(std::move(res)); }

HttpServer::HttpServer(net::io_context& ioc, ServerOptions options, Handler handler,
                       RefusalHook hook)
    : ioc_(ioc), acceptor_(net::make_strand(ioc)), state_(std::make_shared<ServerState>()) {
  state_->options = std::move(options);
  state_->handler = std::move(handler);
  state_->hook = std::move(hook);
}

HttpServer::~HttpServer() = default;

std::uint16_t HttpServer::start() {
  const auto address = net::ip::make_address(state_->options.host);
  tcp::endpoint endpoint{address, state_->options.port};
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(net::socket_base::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen(net::socket_base::max_listen_connections);
  do_accept();
  return acceptor_.local_endpoint().port();
}

void HttpServer::do_accept() {
  acceptor_.async_accept(net::make_strand(ioc_), [this](beast::error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
      log::warn("accept failed", {{"error", ec.message()}});
    } else {
      socket.set_option(tcp::no_delay(true), ec);
      std::make_shared<Session>(std::move(socket), state_)->run();
    }
    if (acceptor_.is_open()) do_accept();
  });
}

void HttpServer::stop_accepting() {
  net::post(acceptor_.get_executor(), [this] {
    beast::error_code ec;
    acceptor_.close(ec);
  });
}

void HttpServer::drain() {
  state_->draining.store(true);
  std::vector<std::weak_ptr<Session>> sessions;
  {
    std::lock_guard lock(state_->mutex);
    for (Session* s : state_->sessions) {
      // weak_from_this is safe: a Session in the set has not finished destruction
      // (its destructor erases it under the same lock before anything else).
      auto weak = s->weak_from_this();
      if (!weak.expired()) sessions.push_back(std::move(weak));
    }
  }
  for (auto& weak : sessions) {
    if (auto s = weak.lock()) s->drain_from_outside(weak);
  }
}

std::size_t HttpServer::open_connections() const {
  return state_->open.load(std::memory_order_relaxed);
}

}  // namespace botgate::http
