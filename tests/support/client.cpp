#include "tests/support/client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <cmath>
#include <ctime>
#include <sstream>

#include "tests/support/eventually.hpp"
#include "tests/support/headers.hpp"
#include "transport/signature.hpp"

namespace botgate::test {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

std::string Response::header(const std::string& lower_name) const {
  return header_value(headers, lower_name);
}

std::string Response::describe() const {
  std::ostringstream os;
  os << "status=" << status;
  if (!error.empty()) os << " error=\"" << error << "\"";
  os << " body=\"" << (body.size() > 300 ? body.substr(0, 300) + "..." : body) << "\"";
  return os.str();
}

struct HttpConnection::Impl {
  net::io_context ioc;
  tcp::socket socket{ioc};
  beast::flat_buffer buffer;
  std::chrono::milliseconds timeout;
  std::uint16_t port;
  std::string connect_error;

  // Runs the io_context until `done()` or the deadline; on timeout closes the
  // socket and lets the aborted handlers finish. Returns false on timeout.
  template <typename Done>
  bool run_until(Done done, std::chrono::steady_clock::time_point deadline) {
    ioc.restart();
    while (!done()) {
      if (ioc.run_one_until(deadline) == 0 && !done()) {
        boost::system::error_code ec;
        socket.close(ec);
        ioc.restart();
        ioc.run();
        return false;
      }
    }
    return true;
  }
};

HttpConnection::HttpConnection(std::uint16_t port, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()) {
  impl_->timeout = timeout;
  impl_->port = port;
  tcp::endpoint ep(net::ip::make_address("127.0.0.1"), port);
  bool done = false;
  boost::system::error_code cec;
  impl_->socket.async_connect(ep, [&](boost::system::error_code ec) {
    cec = ec;
    done = true;
  });
  if (!impl_->run_until([&] { return done; }, std::chrono::steady_clock::now() + timeout)) {
    impl_->connect_error = "connect: timeout";
    return;
  }
  if (cec) {
    impl_->connect_error = "connect: " + cec.message();
    boost::system::error_code ec;
    impl_->socket.close(ec);
    return;
  }
  boost::system::error_code ec;
  impl_->socket.set_option(tcp::no_delay(true), ec);
}

HttpConnection::~HttpConnection() {
  close();
}

bool HttpConnection::is_open() const {
  return impl_->socket.is_open();
}

const std::string& HttpConnection::connect_error() const {
  return impl_->connect_error;
}

std::uint16_t HttpConnection::local_port() const {
  boost::system::error_code ec;
  auto ep = impl_->socket.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

void HttpConnection::close() {
  boost::system::error_code ec;
  if (impl_ && impl_->socket.is_open()) {
    impl_->socket.shutdown(tcp::socket::shutdown_both, ec);
    impl_->socket.close(ec);
  }
}

Response HttpConnection::request(const std::string& method, const std::string& target,
                                 const Headers& headers, const std::string& body) {
  Response out;
  if (!impl_->socket.is_open()) {
    out.error = impl_->connect_error.empty() ? "not connected" : impl_->connect_error;
    return out;
  }

  http::request<http::string_body> req;
  auto verb = http::string_to_verb(method);
  if (verb == http::verb::unknown) {
    req.method_string(method);
  } else {
    req.method(verb);
  }
  req.target(target);
  req.version(11);
  req.set(http::field::host, "127.0.0.1:" + std::to_string(impl_->port));
  req.set(http::field::user_agent, "botgate-integration-test");
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  if (!body.empty() || method == "POST" || method == "PUT") req.prepare_payload();

  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  parser.header_limit(64 * 1024);

  bool wrote = false, read = false;
  boost::system::error_code wec, rec;
  http::async_write(impl_->socket, req, [&](boost::system::error_code ec, std::size_t) {
    wec = ec;
    wrote = true;
  });
  http::async_read(impl_->socket, impl_->buffer, parser,
                   [&](boost::system::error_code ec, std::size_t) {
                     rec = ec;
                     read = true;
                   });
  auto deadline = std::chrono::steady_clock::now() + impl_->timeout;
  bool in_time = impl_->run_until([&] { return read; }, deadline);
  if (in_time && !wrote) {
    // Answered before the whole request was taken: the connection is unusable.
    boost::system::error_code ec;
    impl_->socket.close(ec);
    impl_->run_until([&] { return wrote; }, std::chrono::steady_clock::now() + 1s);
  }
  if (!in_time) {
    out.error = "timeout after " + std::to_string(impl_->timeout.count()) + "ms";
    close();
    return out;
  }
  if (rec) {
    out.error = "read: " + rec.message();
    if (wec) out.error += "; write: " + wec.message();
    close();
    return out;
  }
  auto res = parser.release();
  out.status = static_cast<int>(res.result_int());
  for (const auto& f : res) out.headers[lower(f.name_string())] = std::string(f.value());
  out.body = std::move(res.body());
  out.keep_alive = res.keep_alive();
  if (!out.keep_alive || wec) close();
  return out;
}

Response http_request(std::uint16_t port, const std::string& method, const std::string& target,
                      const Headers& headers, const std::string& body,
                      std::chrono::milliseconds timeout) {
  HttpConnection conn(port, timeout);
  return conn.request(method, target, headers, body);
}

std::string unix_now(std::int64_t offset_seconds) {
  return std::to_string(static_cast<std::int64_t>(std::time(nullptr)) + offset_seconds);
}

Headers signed_headers(const std::string& secret, const std::string& body,
                       const std::string& timestamp) {
  return {
      {"Content-Type", "application/json"},
      {"X-Botgate-Timestamp", timestamp},
      {"X-Botgate-Signature", botgate::generic_signature(secret, timestamp, body)},
  };
}

Response send_event(std::uint16_t port, const std::string& source, const std::string& secret,
                    const std::string& json_body) {
  return http_request(port, "POST", "/v1/events/" + source, signed_headers(secret, json_body),
                      json_body);
}

Response send_event(HttpConnection& conn, const std::string& source, const std::string& secret,
                    const std::string& json_body) {
  return conn.request("POST", "/v1/events/" + source, signed_headers(secret, json_body), json_body);
}

namespace {

// Value of a sample line `series value [timestamp]` if it is exactly `series`.
std::optional<double> sample_value(const std::string& line, std::size_t series_len) {
  if (line.size() <= series_len || line[series_len] != ' ') return std::nullopt;
  std::istringstream is(line.substr(series_len + 1));
  std::string v;
  is >> v;
  try {
    std::size_t used = 0;
    double d = std::stod(v, &used);
    if (used != v.size()) return std::nullopt;
    return d;
  } catch (...) {
    if (v == "+Inf") return HUGE_VAL;
    return std::nullopt;
  }
}

}  // namespace

std::optional<double> metric_value(const std::string& exposition, const std::string& series) {
  std::istringstream lines(exposition);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(series, 0) != 0) continue;
    if (auto v = sample_value(line, series.size())) return v;
  }
  return std::nullopt;
}

double metric_sum(const std::string& exposition, const std::string& name) {
  double sum = 0;
  std::istringstream lines(exposition);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#' || line.rfind(name, 0) != 0) continue;
    std::size_t end = name.size();
    if (end < line.size() && line[end] == '{') {
      end = line.find('}', end);
      if (end == std::string::npos) continue;
      ++end;
    }
    if (auto v = sample_value(line, end)) sum += *v;
  }
  return sum;
}

std::string metrics_once(std::uint16_t port, const std::string& series, double at_least,
                         std::chrono::milliseconds timeout) {
  std::string metrics;
  eventually(
      [&] {
        metrics = http_request(port, "GET", "/metrics").body;
        return metric_value(metrics, series).value_or(0) >= at_least;
      },
      timeout);
  return metrics;
}

}  // namespace botgate::test
