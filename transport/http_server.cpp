#include "transport/http_server.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <optional>
#include <unordered_set>

#include "core/inbox.hpp"
#include "core/log.hpp"
#include "transport/lazy_timer.hpp"

namespace botgate::http {

namespace bhttp = beast::http;

constexpr std::size_t kReadBufferReserve = 4096;
// After a refusal, how long and how much of the rest of the request is read and dropped.
constexpr auto kLingerTime = std::chrono::seconds(5);
constexpr std::size_t kLingerBytes = 64u << 20;
// Beast reads at most 64 KiB at a time, and its parser takes the body out of the read buffer as
// it comes. The buffer holds at most a head (header_limit), one read, and a chunk header or
// trailer that is still coming: capped, so that a chunk extension or a trailer without end,
// which Beast only parses (and RequestParser only measures against max_header) once its end
// has come, cannot grow it without bound.
constexpr std::size_t kReadSize = 64u << 10;

std::size_t read_buffer_limit(const ServerOptions& o) {
  return std::size_t{o.max_header} + kReadSize + kReadBufferReserve;
}

// How often a connection waiting for a request looks whether its first byte has come: a
// request's read_timeout runs from the look that first sees it, so it gets between
// read_timeout and read_timeout + this from its first byte.
Duration look_step(const ServerOptions& o) {
  return std::clamp<Duration>(o.read_timeout / 4, std::chrono::milliseconds(1),
                              std::chrono::seconds(1));
}

// RFC 9112 3.2.2: a server must accept a request target in absolute form
// ("http://host/path?q"), which a client sends through a proxy; the handler routes on the
// origin form ("/path?q") either way.
void to_origin_form(Request& req) {
  const std::string_view target = req.target();
  std::size_t scheme = 0;
  if (beast::iequals(target.substr(0, 7), "http://")) {
    scheme = 7;
  } else if (beast::iequals(target.substr(0, 8), "https://")) {
    scheme = 8;
  } else {
    return;
  }
  const auto path = target.find_first_of("/?", scheme);
  std::string origin =
      path == std::string_view::npos ? std::string("/") : std::string(target.substr(path));
  if (origin.front() == '?') origin.insert(0, 1, '/');
  req.target(origin);
}

// "address:port" of the other end, or "" once it has gone.
std::string peer_of(const tcp::socket& socket) {
  beast::error_code ec;
  const auto ep = socket.remote_endpoint(ec);
  return ec ? std::string() : ep.address().to_string() + ":" + std::to_string(ep.port());
}

// Every Transfer-Encoding value of `req`, classified.
TransferCoding transfer_coding(const Request& req) {
  if (req.find(bhttp::field::transfer_encoding) == req.end()) return TransferCoding::none;
  std::vector<std::string_view> values;
  for (const auto& f : req) {
    if (f.name() == bhttp::field::transfer_encoding) {
      values.emplace_back(f.value().data(), f.value().size());
    }
  }
  return classify_transfer_encoding(values);
}

TransferCoding classify_transfer_encoding(const std::vector<std::string_view>& values) {
  // RFC 9112 6.1 and 6.3: a comma-separated list of codings over one or more fields, empty
  // elements allowed; a coding may carry parameters after ';'. Names are case-insensitive.
  if (values.empty()) return TransferCoding::none;
  std::size_t codings = 0;
  std::size_t chunked = 0;
  bool last_chunked = false;
  for (std::string_view value : values) {
    while (!value.empty()) {
      const auto comma = value.find(',');
      std::string_view item = value.substr(0, comma);
      value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
      const bool parameters = item.find(';') != std::string_view::npos;
      if (parameters) item = item.substr(0, item.find(';'));
      const auto first = item.find_first_not_of(" \t");
      if (first == std::string_view::npos) {
        if (parameters) return TransferCoding::bad_framing;  // ";x": parameters of no coding
        continue;                                            // an empty element
      }
      item = item.substr(first, item.find_last_not_of(" \t") - first + 1);
      ++codings;
      last_chunked = beast::iequals(item, "chunked");
      if (last_chunked) ++chunked;
    }
  }
  if (codings == 0 || !last_chunked || chunked != 1) return TransferCoding::bad_framing;
  return codings == 1 ? TransferCoding::chunked : TransferCoding::unsupported;
}

// Beast's request parser, told when a head is complete. A client that sent `Expect:
// 100-continue` (curl does for bodies over 1 KiB) waits for an interim answer, or a second,
// before it sends the body; over max_body it gets its 413 at once instead, from the parser.
// It also holds a chunk's extensions and the trailer to max_header, as the head is held:
// Beast counts neither against its header limit.
class RequestParser : public bhttp::request_parser<bhttp::string_body> {
 public:
  RequestParser(tcp::socket& socket, std::uint32_t max_header)
      : fd_(socket.native_handle()), max_header_(max_header) {}

 private:
  void on_chunk_header_impl(std::uint64_t, beast::string_view extensions,
                            beast::error_code& ec) override {
    if (extensions.size() > max_header_) ec = bhttp::error::header_limit;
  }

  // Every field of the head and, once the head is done, of the trailer. (Beast's own keeps
  // them in the message the same way.)
  void on_field_impl(bhttp::field name, beast::string_view name_string, beast::string_view value,
                     beast::error_code& ec) override {
    if (is_header_done()) {
      trailer_size_ += name_string.size() + value.size() + 4;  // "name: value\r\n"
      if (trailer_size_ > max_header_) {
        ec = bhttp::error::header_limit;
        return;
      }
    }
    get().insert(name, name_string, value);
  }

  void on_header_impl(beast::error_code& ec) override {
    ec = {};
    // The cheap tests first: this runs for every request.
    if (!chunked() && content_length().value_or(0) == 0) return;  // no body to wait for
    const auto& req = get();
    if (req.version() < 11 || !beast::iequals(req[bhttp::field::expect], "100-continue")) return;
    // One request is read at a time and its answer is not written yet: nothing else is being
    // sent. Never blocks: a full send buffer leaves the client to its own wait.
    constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
    const auto sent = ::send(fd_, k100.data(), k100.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent > 0 && static_cast<std::size_t>(sent) < k100.size()) {
      ec = net::error::connection_aborted;  // half an interim answer: the stream is lost
    }
  }

  int fd_;
  const std::uint32_t max_header_;
  std::size_t trailer_size_ = 0;
};

struct ServerState : std::enable_shared_from_this<ServerState> {
  explicit ServerState(net::io_context& io) : ioc(io) {}

  // Queues an answer for its session. Answers usually come from an actor thread, a
  // batch at a time (every event of one log commit): the first of a batch posts one
  // hand-out to the io threads, the rest only join the vector. One cross-thread post
  // and wake-up per batch, not per answer.
  void reply(std::shared_ptr<Session> session, Response&& res);
  // On an io thread: passes each queued answer to its session's strand.
  void hand_out();

  net::io_context& ioc;
  ServerOptions options;
  Handler handler;
  RefusalHook hook;
  std::atomic<bool> draining{false};
  std::atomic<std::size_t> open{0};
  // Only touched when a connection opens or closes, and at drain: never per request.
  std::mutex mutex;
  std::unordered_set<Session*> sessions;
  using Reply = std::pair<std::shared_ptr<Session>, Response>;
  Inbox<Reply> replies;  // answered from other threads, not yet handed out
};

// One connection. Reads with a Beast parser; writes a response serialized by hand
// into one buffer (one send, no per-field buffer walking). Read and write
// deadlines share one timer that is only re-armed when it fires, at most a look step
// ahead: never per request.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, std::shared_ptr<ServerState> state)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        buffer_(read_buffer_limit(state->options)),
        look_step_(look_step(state->options)),
        state_(std::move(state)) {
    state_->open.fetch_add(1, std::memory_order_relaxed);
    // Room for a whole typical request (a WeChat callback is about 1.2 KB), so that
    // one receive usually reads one request; Beast would start at 512 bytes.
    buffer_.reserve(kReadBufferReserve);
    peer_ = peer_of(socket_);
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
    net::dispatch(socket_.get_executor(), [self = shared_from_this()] { self->do_read(); });
  }

  // On an io thread (from ServerState::hand_out or a Responder); writes on the strand.
  void respond(Response&& res) {
    net::post(socket_.get_executor(), [self = shared_from_this(), r = std::move(res)]() mutable {
      self->do_write(std::move(r));
    });
  }

  ServerState& state() const { return *state_; }

  // Posted by the server at drain time. A connection waiting for a request it has
  // not begun to receive is closed, and so is one dropping the rest of a refused request;
  // one in the middle of a request finishes it.
  void drain_from_outside(std::weak_ptr<Session> weak) {
    net::post(socket_.get_executor(), [weak] {
      if (auto self = weak.lock()) {
        const bool idle = self->reading_ && !(self->parser_ && self->parser_->got_some());
        if (idle || self->lingering_) self->close();
      }
    });
  }

 private:
  void do_read() {
    if (state_->draining.load(std::memory_order_relaxed)) return close();
    parser_.emplace(socket_, state_->options.max_header);
    parser_->body_limit(state_->options.max_body);
    parser_->header_limit(state_->options.max_header);
    // Until the timer sees a first byte, the deadline is the idle one: no request, a close.
    set_deadline(state_->options.read_timeout);
    reading_ = true;
    awaiting_ = true;
    bhttp::async_read(socket_, buffer_, *parser_,
                      beast::bind_front_handler(&Session::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, std::size_t) {
    reading_ = false;
    awaiting_ = false;
    if (timed_out_) return;  // answered 408 by on_timer
    // Closed (drain, read timeout) while the completion was queued: the client
    // never gets an answer, so the request must not be acted on.
    if (!socket_.is_open()) return;
    if (ec) {
      if (ec == bhttp::error::body_limit) return refuse(Refusal::body_too_large, 413, "too_large");
      // header_limit: the head, a chunk's extensions or the trailer over max_header;
      // buffer_overflow: a chunk header or a trailer whose end has not come by the time the read
      // buffer is full.
      if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow) {
        return refuse(Refusal::header_too_large, 413, "headers_too_large");
      }
      if (ec == bhttp::error::end_of_stream || ec == net::error::operation_aborted ||
          ec == net::error::connection_reset || ec == net::error::eof ||
          ec == net::error::bad_descriptor) {
        return close();
      }
      if (ec.category() == bhttp::make_error_code(bhttp::error::end_of_stream).category()) {
        // RFC 9112 2.2: empty lines before a request line are ignored (some clients end a POST
        // body with one more CRLF). Only before a head, whose bytes the parser has not taken
        // from the buffer, never inside a body; once a request, so that empty lines alone do
        // not keep a connection.
        if (!parser_->is_header_done() && !skipped_empty_lines_ && skip_empty_lines()) {
          skipped_empty_lines_ = true;
          return do_read();
        }
        // Any other parse error: the peer sent something that is not HTTP.
        return refuse(Refusal::malformed, 400, "malformed");
      }
      return close();
    }
    skipped_empty_lines_ = false;
    // A body framed by anything but Content-Length or a final chunked is refused: read as
    // having no body, its bytes would be taken for the next request (request smuggling).
    // So is one whose chunked Beast did not read as chunked, and any Transfer-Encoding in
    // HTTP/1.0, which has none (RFC 9112 6.1: faulty framing).
    if (const auto coding = transfer_coding(parser_->get()); coding != TransferCoding::none) {
      if (coding == TransferCoding::unsupported) {
        return refuse(Refusal::unsupported_coding, 501, "unsupported_transfer_coding");
      }
      if (coding != TransferCoding::chunked || !parser_->chunked() ||
          parser_->get().version() < 11) {
        return refuse(Refusal::malformed, 400, "malformed");
      }
    }
    // RFC 9112 3.2: an HTTP/1.1 request has exactly one Host.
    if (parser_->get().version() >= 11 && parser_->get().count(bhttp::field::host) != 1) {
      return refuse(Refusal::malformed, 400, "malformed");
    }
    to_origin_form(parser_->get());
    keep_alive_ = parser_->get().keep_alive();
    head_ = parser_->get().method() == bhttp::verb::head;
    http10_ = parser_->get().version() == 10;
    deadline_.reset();  // the handler has the request; no clock runs until the answer
    state_->handler(parser_->release(), Responder(shared_from_this()));
  }

  // `linger`: read and drop the rest of the request after the answer, before the close.
  void refuse(Refusal why, unsigned status, const char* text, bool linger = true) {
    if (state_->hook) state_->hook(why, peer_, refused_target());
    Response res{static_cast<bhttp::status>(status), 11};
    res.set(bhttp::field::content_type, "application/json");
    res.body() = std::string("{\"error\":\"") + text + "\"}";
    keep_alive_ = false;  // the rest of the request was not read
    linger_ = linger;
    head_ = false;
    do_write(std::move(res));
  }

  // The target of the request being refused, once its request line was read; empty before.
  // (Not is_header_done(): a Content-Length over max_body fails the head itself.)
  std::string_view refused_target() {
    if (!parser_) return {};
    to_origin_form(parser_->get());
    return parser_->get().target();
  }

  void do_write(Response&& res) {
    if (!socket_.is_open()) return;
    const bool keep = keep_alive_ && !state_->draining.load(std::memory_order_relaxed);
    out_.clear();
    out_.append("HTTP/1.1 ").append(std::to_string(res.result_int())).append(" ");
    const auto reason = res.reason();
    out_.append(reason.data(), reason.size()).append("\r\n");
    for (const auto& field : res) {
      if (field.name() == bhttp::field::content_length ||
          field.name() == bhttp::field::connection) {
        continue;
      }
      const auto name = field.name_string();
      const auto value = field.value();
      out_.append(name.data(), name.size()).append(": ").append(value.data(), value.size());
      out_.append("\r\n");
    }
    out_.append("Content-Length: ").append(std::to_string(res.body().size())).append("\r\n");
    if (!keep) {
      out_.append("Connection: close\r\n");
    } else if (http10_) {
      out_.append("Connection: keep-alive\r\n");  // HTTP/1.0 closes unless told otherwise
    }
    out_.append("\r\n");
    if (!head_) out_.append(res.body());
    set_deadline(state_->options.write_timeout);
    net::async_write(socket_, net::buffer(out_),
                     beast::bind_front_handler(&Session::on_write, shared_from_this(), keep));
  }

  void on_write(bool keep, beast::error_code ec, std::size_t) {
    if (!ec && linger_) return linger();
    if (ec || !keep) return close();
    do_read();
  }

  // After a refusal the rest of the request may still be on its way. Closing with unread
  // bytes makes the kernel answer with a reset, and a client still sending (most send the
  // whole body before they read) would get that reset instead of the answer. So the answer
  // goes out, the sending side is shut, and what comes in is read and dropped until the
  // client closes, kLingerBytes have come, or kLingerTime is over.
  void linger() {
    if (state_->draining.load(std::memory_order_relaxed)) return close();
    lingering_ = true;
    // Unparsed bytes (a head or trailer cut at its limit) are dropped with the rest, so the
    // buffer has room for the reads below.
    buffer_.consume(buffer_.size());
    beast::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    set_deadline(std::min<Duration>(kLingerTime, state_->options.read_timeout));
    drop_input();
  }

  void drop_input() {
    socket_.async_read_some(buffer_.prepare(64u << 10),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                              self->lingered_ += n;
                              if (ec || self->lingered_ >= kLingerBytes) return self->close();
                              self->drop_input();
                            });
  }

  // Drops the CRLFs the read buffer starts with; false when it starts with none.
  bool skip_empty_lines() {
    const auto* p = static_cast<const char*>(buffer_.data().data());
    const std::size_t size = buffer_.size();
    std::size_t n = 0;
    while (n + 1 < size && p[n] == '\r' && p[n + 1] == '\n') n += 2;
    buffer_.consume(n);
    return n > 0;
  }

  void set_deadline(Duration d) {
    const auto now = std::chrono::steady_clock::now();
    deadline_ = now + d;
    arm(now);
  }

  // Wakes on_timer by the deadline, and a look step from `now` at the latest. The timer is
  // lazy: a connection whose timer is armed (a step ahead at most) arms nothing per request.
  void arm(std::chrono::steady_clock::time_point now) {
    timer_.ensure(std::min(*deadline_, now + look_step_),
                  [self = shared_from_this()] { self->on_timer(); });
  }

  void on_timer() {
    if (!socket_.is_open() || !deadline_) return;
    const auto now = std::chrono::steady_clock::now();
    // A request's read_timeout runs from its first byte, not from the wait before it (the
    // kept-alive idle time): the first look that sees a byte gives it its whole deadline.
    if (awaiting_ && parser_ && parser_->got_some()) {
      awaiting_ = false;
      deadline_ = now + state_->options.read_timeout;
    }
    if (now < *deadline_) return arm(now);
    // A request begun and not whole within read_timeout gets a 408 before the close; an idle
    // keep-alive connection, a write that timed out, or a linger is just closed.
    if (reading_ && !timed_out_ && parser_ && parser_->got_some()) {
      timed_out_ = true;
      beast::error_code ec;
      socket_.cancel(ec);  // the pending read ends (on_read ignores it) before the answer
      return refuse(Refusal::read_timeout, 408, "request_timeout", false);
    }
    close();
  }

  void close() {
    beast::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    socket_.close(ec);
    timer_.cancel();
    deadline_.reset();
  }

  tcp::socket socket_;
  LazyTimer timer_;
  beast::flat_buffer buffer_;
  const Duration look_step_;
  std::shared_ptr<ServerState> state_;
  std::optional<RequestParser> parser_;
  std::optional<std::chrono::steady_clock::time_point> deadline_;  // none while the handler works
  std::string out_;
  std::string peer_;
  bool keep_alive_ = true;
  bool reading_ = false;
  // Reading, and no byte of the request seen at the timer's last look: the deadline is the
  // idle one.
  bool awaiting_ = false;
  bool timed_out_ = false;            // a request's read timed out: answered 408, then closed
  bool skipped_empty_lines_ = false;  // empty lines before this request's head were dropped
  bool linger_ = false;               // refused: drop the rest of the request before closing
  bool lingering_ = false;            // dropping it now
  std::size_t lingered_ = 0;          // bytes dropped so far
  bool head_ = false;                 // the request was HEAD: the answer has no body
  bool http10_ = false;               // the request was HTTP/1.0
};

void Responder::operator()(Response&& res) const {
  ServerState& state = session_->state();
  // Answered on an io thread (a refusal, a static reply): straight to the strand.
  if (state.ioc.get_executor().running_in_this_thread()) return session_->respond(std::move(res));
  state.reply(session_, std::move(res));
}

void ServerState::reply(std::shared_ptr<Session> session, Response&& res) {
  if (replies.push({std::move(session), std::move(res)})) {
    net::post(ioc, [self = shared_from_this()] { self->hand_out(); });
  }
}

void ServerState::hand_out() {
  // Per thread: with several io threads, two hand-outs may run at once.
  thread_local std::vector<Reply> batch;
  replies.take(batch);
  for (auto& [session, res] : batch) session->respond(std::move(res));
  batch.clear();
}

HttpServer::HttpServer(net::io_context& ioc, ServerOptions options, Handler handler,
                       RefusalHook hook)
    : ioc_(ioc),
      acceptor_(net::make_strand(ioc)),
      accept_retry_(acceptor_.get_executor()),
      state_(std::make_shared<ServerState>(ioc)) {
  state_->options = std::move(options);
  state_->handler = std::move(handler);
  state_->hook = std::move(hook);
}

HttpServer::~HttpServer() {
  // Answers still queued when the io_context stopped hold their sessions, which hold
  // the state: let them go.
  std::vector<ServerState::Reply> left;
  state_->replies.take(left);
}

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
      // Out of descriptors and the like: retrying at once would spin, and a line per retry
      // would flood the log; one line a second says how many were left out.
      log::warn_throttled(accept_failures_, "accept failed, retrying in 100ms",
                          {{"error", ec.message()}});
      accept_retry_.expires_after(std::chrono::milliseconds(100));
      accept_retry_.async_wait([this](beast::error_code wait_ec) {
        if (!wait_ec && acceptor_.is_open()) do_accept();
      });
      return;
    } else if (state_->open.load(std::memory_order_relaxed) >= state_->options.max_connections) {
      // Descriptors are kept for the logs and the backends: at the cap a new connection is
      // closed at once, before it holds anything.
      if (state_->hook) state_->hook(Refusal::too_many_connections, peer_of(socket), {});
      socket.close(ec);
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
    accept_retry_.cancel();
    if (const auto left_out = accept_failures_.take_left_out(); left_out > 0) {
      log::warn("accept failed", {{"left_out", left_out}, {"detail", "not logged one by one"}});
    }
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
