#include "tests/support/mini_server.hpp"

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <future>
#include <set>
#include <thread>

#include "tests/support/headers.hpp"

namespace botgate::test {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

constexpr auto kTuple = net::as_tuple(net::use_awaitable);

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string MiniRequest::param(const std::string& name) const {
  auto it = query.find(name);
  return it == query.end() ? std::string() : it->second;
}

bool MiniRequest::has_param(const std::string& name) const {
  return query.count(name) != 0;
}

std::string url_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~') {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

std::string url_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 &&
               hex_value(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::map<std::string, std::string> parse_query(std::string_view query) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    auto amp = query.find('&');
    auto part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (part.empty()) continue;
    auto eq = part.find('=');
    auto name = url_decode(part.substr(0, eq));
    auto value = eq == std::string_view::npos ? std::string() : url_decode(part.substr(eq + 1));
    out.emplace(std::move(name), std::move(value));  // first occurrence wins
  }
  return out;
}

std::string build_query(const std::vector<std::pair<std::string, std::string>>& kv) {
  std::string out;
  for (const auto& [k, v] : kv) {
    if (!out.empty()) out.push_back('&');
    out += k;
    out.push_back('=');
    out += url_encode(v);
  }
  return out;
}

struct MiniServer::Impl {
  // Coroutines hold a raw Impl*: they all live in `ioc`, which dies with the Impl.
  Handler handler;
  std::string server_name;
  std::atomic<std::uint16_t> port{0};
  std::atomic<std::uint64_t> accepted{0};

  // Owned by the io thread.
  net::io_context ioc;
  net::executor_work_guard<net::io_context::executor_type> guard{ioc.get_executor()};
  tcp::acceptor acceptor{ioc};
  std::set<std::shared_ptr<tcp::socket>> conns;
  std::thread thread;

  static net::awaitable<void> accept_loop(Impl* self) {
    for (;;) {
      auto [ec, sock] = co_await self->acceptor.async_accept(kTuple);
      if (ec) co_return;  // closed by the destructor
      auto s = std::make_shared<tcp::socket>(std::move(sock));
      s->set_option(tcp::no_delay(true), ec);
      const auto id = self->accepted.fetch_add(1) + 1;
      self->conns.insert(s);
      net::co_spawn(self->ioc, session(self, s, id), net::detached);
    }
  }

  static net::awaitable<void> session(Impl* self, std::shared_ptr<tcp::socket> s,
                                      std::uint64_t conn_id) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(8 * 1024 * 1024);
      auto [rec, rn] = co_await http::async_read(*s, buffer, parser, kTuple);
      if (rec) break;
      auto req = parser.release();

      MiniRequest r;
      r.at = std::chrono::steady_clock::now();
      r.connection = conn_id;
      r.method = std::string(req.method_string());
      r.target = std::string(req.target());
      auto q = r.target.find('?');
      r.path = r.target.substr(0, q);
      if (q != std::string::npos) r.query = parse_query(std::string_view(r.target).substr(q + 1));
      for (const auto& f : req) r.headers[lower(f.name_string())] = std::string(f.value());
      r.body = std::move(req.body());

      MiniReply reply;
      try {
        reply = self->handler(r);
      } catch (const std::exception& e) {
        reply = MiniReply{500, "text/plain", std::string("handler threw: ") + e.what(), {}, {}};
      }
      if (reply.delay.count() > 0) {
        net::steady_timer timer(self->ioc, reply.delay);
        auto [ec] = co_await timer.async_wait(kTuple);
        (void)ec;
        if (!s->is_open()) break;
      }

      http::response<http::string_body> res{static_cast<http::status>(reply.status), req.version()};
      res.set(http::field::server, self->server_name);
      res.set(http::field::content_type, reply.content_type);
      res.body() = std::move(reply.body);
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      auto [wec, wn] = co_await http::async_write(*s, res, kTuple);
      if (wec) break;
      if (reply.after_write) reply.after_write();
      if (!res.keep_alive()) {
        boost::system::error_code ec;
        s->shutdown(tcp::socket::shutdown_send, ec);
        break;
      }
    }
    boost::system::error_code ec;
    s->close(ec);
    self->conns.erase(s);
  }
};

MiniServer::MiniServer(Handler handler, std::string server_name) : impl_(std::make_shared<Impl>()) {
  impl_->handler = std::move(handler);
  impl_->server_name = std::move(server_name);
  tcp::endpoint ep(net::ip::make_address("127.0.0.1"), 0);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(net::socket_base::reuse_address(true));
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen(net::socket_base::max_listen_connections);
  impl_->port.store(impl_->acceptor.local_endpoint().port());
  net::co_spawn(impl_->ioc, Impl::accept_loop(impl_.get()), net::detached);
  impl_->thread = std::thread([impl = impl_.get()] { impl->ioc.run(); });
}

MiniServer::~MiniServer() {
  std::promise<void> closed;
  net::post(impl_->ioc, [impl = impl_.get(), &closed] {
    boost::system::error_code ec;
    impl->acceptor.close(ec);
    for (auto& s : impl->conns) s->close(ec);
    closed.set_value();
  });
  closed.get_future().wait();
  impl_->guard.reset();
  impl_->ioc.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  // Coroutines still suspended (delay timers) are destroyed with the io_context.
}

std::uint16_t MiniServer::port() const {
  return impl_->port.load();
}

std::string MiniServer::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port()) + path;
}

std::uint64_t MiniServer::connections_accepted() const {
  return impl_->accepted.load();
}

}  // namespace botgate::test
