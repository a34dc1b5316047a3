#include "tests/support/test_backend.hpp"

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
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <condition_variable>
#include <future>
#include <mutex>
#include <optional>
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

std::atomic<std::uint64_t> g_arrival_order{0};

constexpr auto kTuple = net::as_tuple(net::use_awaitable);

}  // namespace

std::string BackendRequest::header(const std::string& lower_name) const {
  return header_value(headers, lower_name);
}

struct TestBackend::Impl {
  // Coroutines hold a raw Impl*: they all live in `ioc`, which dies with the Impl.
  // Shared with the test thread, under `mu`.
  mutable std::mutex mu;
  mutable std::condition_variable cv;
  std::vector<BackendRequest> reqs;
  FaultMode mode = FaultMode::ok;
  int status = 200;
  std::chrono::milliseconds delay{0};
  std::function<std::string(const BackendRequest&)> answer_body;  // empty: "{}"
  std::string retry_after;  // on every answer that is not 2xx, when set
  bool running = false;
  std::uint64_t accepted = 0;
  std::atomic<std::uint16_t> port{0};

  // Owned by the io thread.
  net::io_context ioc;
  net::executor_work_guard<net::io_context::executor_type> guard{ioc.get_executor()};
  std::shared_ptr<tcp::acceptor> acceptor;
  std::set<std::shared_ptr<tcp::socket>> conns;
  std::thread thread;

  // Runs `fn` on the io thread and waits for it.
  template <typename F>
  void run_on_io(F fn) {
    std::promise<void> done;
    auto fut = done.get_future();
    net::post(ioc, [&] {
      try {
        fn();
        done.set_value();
      } catch (...) {
        done.set_exception(std::current_exception());
      }
    });
    fut.get();
  }

  void open_acceptor() {  // io thread
    tcp::endpoint ep(net::ip::make_address("127.0.0.1"), port.load());
    acceptor = std::make_shared<tcp::acceptor>(ioc);
    acceptor->open(ep.protocol());
    acceptor->set_option(net::socket_base::reuse_address(true));
    acceptor->bind(ep);
    acceptor->listen(net::socket_base::max_listen_connections);
    port.store(acceptor->local_endpoint().port());
    net::co_spawn(ioc, accept_loop(this, acceptor), net::detached);
  }

  void close_all() {  // io thread
    boost::system::error_code ec;
    if (acceptor) {
      acceptor->close(ec);
      acceptor.reset();
    }
    for (auto& s : conns) {
      // Linger 0: the peer sees a reset, like a backend that was killed.
      s->set_option(net::socket_base::linger(true, 0), ec);
      s->close(ec);
    }
    conns.clear();
  }

  // Holds on to the acceptor it was started for: a later restart opens a new one.
  static net::awaitable<void> accept_loop(Impl* self, std::shared_ptr<tcp::acceptor> acc) {
    for (;;) {
      auto [ec, sock] = co_await acc->async_accept(kTuple);
      if (ec) co_return;  // closed by stop()
      auto s = std::make_shared<tcp::socket>(std::move(sock));
      s->set_option(tcp::no_delay(true), ec);
      std::uint64_t id;
      {
        std::lock_guard lk(self->mu);
        id = ++self->accepted;
      }
      self->conns.insert(s);
      net::co_spawn(self->ioc, session(self, s, id), net::detached);
    }
  }

  static net::awaitable<void> session(Impl* self, std::shared_ptr<tcp::socket> s,
                                      std::uint64_t conn_id) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(64 * 1024 * 1024);
      auto [rec, rn] = co_await http::async_read(*s, buffer, parser, kTuple);
      if (rec) break;
      auto req = parser.release();

      BackendRequest r;
      r.at = std::chrono::steady_clock::now();
      r.connection = conn_id;
      r.method = std::string(req.method_string());
      r.target = std::string(req.target());
      for (const auto& f : req) r.headers[lower(f.name_string())] = std::string(f.value());
      r.body = req.body();

      FaultMode mode;
      int status;
      std::chrono::milliseconds delay;
      std::size_t idx;
      std::string ok_body = "{}";
      std::string retry_after;
      {
        std::lock_guard lk(self->mu);
        if (self->answer_body) ok_body = self->answer_body(r);
        mode = self->mode;
        status = mode == FaultMode::status ? self->status
                 : (mode == FaultMode::ok || mode == FaultMode::slow ||
                    mode == FaultMode::close_after_answer)
                     ? 200
                     : 0;
        delay = self->delay;
        retry_after = self->retry_after;
        r.order = g_arrival_order.fetch_add(1) + 1;
        r.status = status;
        idx = self->reqs.size();
        self->reqs.push_back(std::move(r));
      }
      self->cv.notify_all();

      if (mode == FaultMode::hang) {
        // Never answer; wait for the peer (or stop()) to close the connection.
        char sink[1024];
        for (;;) {
          auto [ec, n] = co_await s->async_read_some(net::buffer(sink), kTuple);
          if (ec) break;
        }
        break;
      }
      if (mode == FaultMode::close_unanswered) break;  // taken, then the server died
      if (mode == FaultMode::close_mid_response) {
        static constexpr std::string_view partial =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            "{\"replies\":[";
        auto [ec, n] = co_await net::async_write(*s, net::buffer(partial), kTuple);
        (void)ec;
        (void)n;
        break;
      }
      if (mode == FaultMode::slow) {
        net::steady_timer timer(self->ioc, delay);
        auto [ec] = co_await timer.async_wait(kTuple);
        (void)ec;
        if (!s->is_open()) break;
      }

      http::response<http::string_body> res{static_cast<http::status>(status), req.version()};
      res.set(http::field::server, "botgate-test-backend");
      res.set(http::field::content_type, "application/json");
      res.body() = status >= 200 && status < 300 ? ok_body : "{\"error\":\"injected\"}";
      if (!retry_after.empty() && (status < 200 || status >= 300)) {
        res.set(http::field::retry_after, retry_after);
      }
      res.keep_alive(req.keep_alive() && mode != FaultMode::close_after_answer);
      res.prepare_payload();
      auto [wec, wn] = co_await http::async_write(*s, res, kTuple);
      if (wec) break;
      {
        std::lock_guard lk(self->mu);
        if (idx < self->reqs.size()) self->reqs[idx].answered = true;
      }
      self->cv.notify_all();
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

TestBackend::TestBackend() : impl_(std::make_shared<Impl>()) {
  impl_->thread = std::thread([impl = impl_.get()] { impl->ioc.run(); });
  start();
}

TestBackend::~TestBackend() {
  try {
    stop();
  } catch (...) {
  }
  impl_->guard.reset();
  impl_->ioc.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  // Coroutines still suspended (slow timers) are destroyed with the io_context.
}

void TestBackend::start() {
  {
    std::lock_guard lk(impl_->mu);
    if (impl_->running) return;
  }
  impl_->run_on_io([impl = impl_.get()] { impl->open_acceptor(); });
  std::lock_guard lk(impl_->mu);
  impl_->running = true;
}

void TestBackend::stop() {
  {
    std::lock_guard lk(impl_->mu);
    if (!impl_->running) return;
    impl_->running = false;
  }
  impl_->run_on_io([impl = impl_.get()] { impl->close_all(); });
}

bool TestBackend::running() const {
  std::lock_guard lk(impl_->mu);
  return impl_->running;
}

std::uint16_t TestBackend::port() const {
  return impl_->port.load();
}

std::string TestBackend::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port()) + path;
}

void TestBackend::set_answer_body(std::function<std::string(const BackendRequest&)> body) {
  std::lock_guard lk(impl_->mu);
  impl_->answer_body = std::move(body);
}

void TestBackend::set_ok() {
  std::lock_guard lk(impl_->mu);
  impl_->mode = FaultMode::ok;
}

void TestBackend::set_status(int status) {
  if (status < 100 || status > 599) throw std::invalid_argument("bad status");
  std::lock_guard lk(impl_->mu);
  impl_->mode = FaultMode::status;
  impl_->status = status;
}

void TestBackend::set_retry_after(std::string value) {
  std::lock_guard lk(impl_->mu);
  impl_->retry_after = std::move(value);
}

void TestBackend::set_hang() {
  std::lock_guard lk(impl_->mu);
  impl_->mode = FaultMode::hang;
}

void TestBackend::set_close_mid_response() {
  std::lock_guard lk(impl_->mu);
  impl_->mode = FaultMode::close_mid_response;
}

void TestBackend::set_slow(std::chrono::milliseconds delay) {
  std::lock_guard lk(impl_->mu);
  impl_->mode = FaultMode::slow;
  impl_->delay = delay;
}

void TestBackend::set_close_unanswered() {
  std::lock_guard lk(impl_->mu);
  impl_->mode = FaultMode::close_unanswered;
}

void TestBackend::set_close_after_answer() {
  std::lock_guard lk(impl_->mu);
  impl_->mode = FaultMode::close_after_answer;
}

FaultMode TestBackend::mode() const {
  std::lock_guard lk(impl_->mu);
  return impl_->mode;
}

std::vector<BackendRequest> TestBackend::requests() const {
  std::lock_guard lk(impl_->mu);
  return impl_->reqs;
}

std::size_t TestBackend::count() const {
  std::lock_guard lk(impl_->mu);
  return impl_->reqs.size();
}

std::size_t TestBackend::delivered_count() const {
  std::lock_guard lk(impl_->mu);
  return static_cast<std::size_t>(std::count_if(impl_->reqs.begin(), impl_->reqs.end(),
                                                [](const auto& r) { return r.delivered(); }));
}

std::uint64_t TestBackend::connections_accepted() const {
  std::lock_guard lk(impl_->mu);
  return impl_->accepted;
}

void TestBackend::clear() {
  std::lock_guard lk(impl_->mu);
  impl_->reqs.clear();
}

bool TestBackend::wait_for_count(std::size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lk(impl_->mu);
  return impl_->cv.wait_for(lk, timeout, [&] { return impl_->reqs.size() >= n; });
}

bool TestBackend::wait_for_delivered(std::size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lk(impl_->mu);
  return impl_->cv.wait_for(lk, timeout, [&] {
    return static_cast<std::size_t>(std::count_if(impl_->reqs.begin(), impl_->reqs.end(),
                                                  [](const auto& r) { return r.delivered(); })) >=
           n;
  });
}

bool TestBackend::wait_until(const std::function<bool(const std::vector<BackendRequest>&)>& pred,
                             std::chrono::milliseconds timeout) const {
  std::unique_lock lk(impl_->mu);
  return impl_->cv.wait_for(lk, timeout, [&] { return pred(impl_->reqs); });
}

}  // namespace botgate::test
