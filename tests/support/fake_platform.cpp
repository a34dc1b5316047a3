#include "tests/support/fake_platform.hpp"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>

#include "tests/support/headers.hpp"

namespace botgate::test {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

constexpr auto kTuple = net::as_tuple(net::use_awaitable);

// The body's "id" and "text" strings, empty when absent or not JSON.
void read_id_and_text(simdjson::dom::parser& parser, const std::string& body, std::string& id,
                      std::string& text) {
  simdjson::dom::element doc;
  if (parser.parse(body).get(doc) != simdjson::SUCCESS) return;
  std::string_view v;
  if (doc["id"].get_string().get(v) == simdjson::SUCCESS) id = std::string(v);
  if (doc["text"].get_string().get(v) == simdjson::SUCCESS) text = std::string(v);
}

std::string random_nonce() {
  static std::mt19937_64 rng(std::random_device{}());
  static std::mutex mu;
  std::lock_guard lk(mu);
  return fmt::format("{:016x}", rng());
}

}  // namespace

std::string PlatformRequest::header(const std::string& lower_name) const {
  return header_value(headers, lower_name);
}

struct FakePlatform::Impl {
  struct Pending {
    std::chrono::steady_clock::time_point due;
    std::string ding_nonce;
    std::string nonce;
    std::chrono::steady_clock::time_point ding_at;
  };

  // Shared with the test thread and the reply thread, under `mu`.
  mutable std::mutex mu;
  std::condition_variable cv;
  std::vector<PlatformRequest> reqs;
  std::vector<DongSent> dongs;
  std::deque<Pending> pending;
  PeerMode mode = PeerMode::reply;
  std::chrono::milliseconds late_delay{0};
  int status = 200;
  std::uint16_t gateway_port = 0;
  std::string source;
  std::string secret;
  std::string peer = "peer";
  std::string peer_sender = "peer";
  std::string previous_ding_nonce;
  std::uint64_t dong_seq = 0;
  bool stopping = false;

  // Owned by the io thread.
  net::io_context ioc;
  net::executor_work_guard<net::io_context::executor_type> guard{ioc.get_executor()};
  tcp::acceptor acceptor{ioc};
  std::set<std::shared_ptr<tcp::socket>> conns;
  simdjson::dom::parser parser;
  std::thread io_thread;
  std::thread reply_thread;
  std::atomic<std::uint16_t> port{0};

  static net::awaitable<void> accept_loop(Impl* self) {
    for (;;) {
      auto [ec, sock] = co_await self->acceptor.async_accept(kTuple);
      if (ec) co_return;
      auto s = std::make_shared<tcp::socket>(std::move(sock));
      s->set_option(tcp::no_delay(true), ec);
      self->conns.insert(s);
      net::co_spawn(self->ioc, session(self, s), net::detached);
    }
  }

  static net::awaitable<void> session(Impl* self, std::shared_ptr<tcp::socket> s) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(1024 * 1024);
      auto [rec, rn] = co_await http::async_read(*s, buffer, parser, kTuple);
      if (rec) break;
      auto req = parser.release();

      PlatformRequest r;
      r.at = std::chrono::steady_clock::now();
      r.method = std::string(req.method_string());
      r.target = std::string(req.target());
      for (const auto& f : req) r.headers[lower(f.name_string())] = std::string(f.value());
      r.body = req.body();
      read_id_and_text(self->parser, r.body, r.id, r.text);
      if (r.method == "POST" && r.text.rfind("ding ", 0) == 0) r.ding_nonce = r.text.substr(5);

      int status;
      {
        std::lock_guard lk(self->mu);
        status = self->status;
        r.status = status;
        self->reqs.push_back(r);
      }

      http::response<http::string_body> res{static_cast<http::status>(status), req.version()};
      res.set(http::field::server, "botgate-fake-platform");
      res.set(http::field::content_type, "application/json");
      res.body() = status >= 200 && status < 300 ? R"({"errcode":0})" : R"({"errcode":1})";
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      auto [wec, wn] = co_await http::async_write(*s, res, kTuple);
      if (wec) break;
      // Like a real peer, the dong comes after the platform took the ding.
      if (r.is_ding() && status >= 200 && status < 300) self->on_ding(r);
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

  // Schedules the dong for a ding, as the current mode says.
  void on_ding(const PlatformRequest& ding) {
    {
      std::lock_guard lk(mu);
      Pending p;
      p.ding_nonce = ding.ding_nonce;
      p.ding_at = ding.at;
      p.due = ding.at;
      const std::string previous = previous_ding_nonce;
      previous_ding_nonce = ding.ding_nonce;
      switch (mode) {
        case PeerMode::silent:
          return;
        case PeerMode::reply:
          p.nonce = ding.ding_nonce;
          break;
        case PeerMode::stale_nonce:
          p.nonce = previous.empty() ? random_nonce() : previous;
          break;
        case PeerMode::wrong_nonce:
          p.nonce = random_nonce();
          break;
        case PeerMode::late:
          p.nonce = ding.ding_nonce;
          p.due = ding.at + late_delay;
          break;
      }
      auto pos = std::find_if(pending.begin(), pending.end(),
                              [&](const Pending& q) { return q.due > p.due; });
      pending.insert(pos, std::move(p));
    }
    cv.notify_all();
  }

  // The reply thread: sends each pending dong when it is due (and the gateway is known).
  void reply_loop() {
    std::unique_lock lk(mu);
    for (;;) {
      if (stopping) return;
      if (pending.empty() || gateway_port == 0) {
        cv.wait(lk);
        continue;
      }
      auto due = pending.front().due;
      if (std::chrono::steady_clock::now() < due) {
        cv.wait_until(lk, due);
        continue;
      }
      Pending p = std::move(pending.front());
      pending.pop_front();
      DongSent d;
      d.ding_nonce = p.ding_nonce;
      d.nonce = p.nonce;
      d.ding_at = p.ding_at;
      d.id = fmt::format("dong-{}-{}", p.nonce, ++dong_seq);
      const auto port_copy = gateway_port;
      const auto source_copy = source;
      const auto secret_copy = secret;
      const auto body = fmt::format(
          R"({{"id":"{}","conversation":"{}","sender":"{}","type":"text","text":"dong {}"}})", d.id,
          peer, peer_sender, p.nonce);
      lk.unlock();
      d.sent_at = std::chrono::steady_clock::now();
      d.response = send_event(port_copy, source_copy, secret_copy, body);
      lk.lock();
      dongs.push_back(std::move(d));
    }
  }
};

FakePlatform::FakePlatform() : impl_(std::make_shared<Impl>()) {
  tcp::endpoint ep(net::ip::make_address("127.0.0.1"), 0);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(net::socket_base::reuse_address(true));
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen(net::socket_base::max_listen_connections);
  impl_->port.store(impl_->acceptor.local_endpoint().port());
  net::co_spawn(impl_->ioc, Impl::accept_loop(impl_.get()), net::detached);
  impl_->io_thread = std::thread([impl = impl_.get()] { impl->ioc.run(); });
  impl_->reply_thread = std::thread([impl = impl_.get()] { impl->reply_loop(); });
}

FakePlatform::~FakePlatform() {
  {
    std::lock_guard lk(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->reply_thread.joinable()) impl_->reply_thread.join();
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
  if (impl_->io_thread.joinable()) impl_->io_thread.join();
}

std::uint16_t FakePlatform::port() const {
  return impl_->port.load();
}

std::string FakePlatform::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port()) + path;
}

void FakePlatform::set_gateway(std::uint16_t port, std::string source, std::string secret) {
  {
    std::lock_guard lk(impl_->mu);
    impl_->gateway_port = port;
    impl_->source = std::move(source);
    impl_->secret = std::move(secret);
  }
  impl_->cv.notify_all();
}

void FakePlatform::set_peer(std::string conversation, std::string sender) {
  std::lock_guard lk(impl_->mu);
  impl_->peer = std::move(conversation);
  impl_->peer_sender = std::move(sender);
}

void FakePlatform::set_mode(PeerMode mode, std::chrono::milliseconds late_delay) {
  std::lock_guard lk(impl_->mu);
  impl_->mode = mode;
  impl_->late_delay = late_delay;
}

PeerMode FakePlatform::mode() const {
  std::lock_guard lk(impl_->mu);
  return impl_->mode;
}

void FakePlatform::set_status(int status) {
  if (status < 100 || status > 599) throw std::invalid_argument("bad status");
  std::lock_guard lk(impl_->mu);
  impl_->status = status;
}

std::vector<PlatformRequest> FakePlatform::requests() const {
  std::lock_guard lk(impl_->mu);
  return impl_->reqs;
}

std::vector<PlatformRequest> FakePlatform::dings() const {
  std::lock_guard lk(impl_->mu);
  std::vector<PlatformRequest> out;
  for (const auto& r : impl_->reqs) {
    if (r.is_ding()) out.push_back(r);
  }
  return out;
}

std::vector<DongSent> FakePlatform::dongs() const {
  std::lock_guard lk(impl_->mu);
  return impl_->dongs;
}

std::size_t FakePlatform::ding_count() const {
  std::lock_guard lk(impl_->mu);
  return static_cast<std::size_t>(std::count_if(impl_->reqs.begin(), impl_->reqs.end(),
                                                [](const auto& r) { return r.is_ding(); }));
}

std::size_t FakePlatform::dong_count() const {
  std::lock_guard lk(impl_->mu);
  return impl_->dongs.size();
}

}  // namespace botgate::test
