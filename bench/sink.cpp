// sink: a fast HTTP/1.1 backend for benchmarks. Answers 200 {} to every request,
// counts POSTed events, de-duplicates them by Idempotency-Key and measures end-to-end
// latency as CLOCK_MONOTONIC now - "sent_ns" from the body (set by bench/loadgen).
//
// Prints "listening port=N" once bound, and a summary on SIGTERM/SIGINT, after
// --expect N unique events, or after --idle-exit seconds without an event.
// --print adds one line per request (the demo backends of scripts/quickstart.sh);
// --name labels the lines. See bench/README.md.
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include "bench/common.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

using bench::mono_ns;
using bench::parse_num;
using bench::percentile;

struct Options {
  std::string host = "127.0.0.1";
  unsigned port = 0;
  unsigned threads = 1;
  std::uint64_t expect = 0;
  double idle_exit_s = 0;
  std::uint64_t max_body = 1 << 20;
  bool json = false;
  bool print = false;     // one line per request on stdout
  std::string name;       // label: lines start with "[name] "
  std::string keys_file;  // one line per POST answered 2xx, written as it is answered
  int keys_fd = -1;
};

void usage(std::FILE* out) {
  std::fputs(
      "usage: sink [options]\n"
      "  --port P           port to listen on, 0 for an ephemeral one (default 0)\n"
      "  --host ADDR        address to bind (default 127.0.0.1)\n"
      "  --threads N        io threads (default 1)\n"
      "  --expect N         exit after N unique events (default 0: no limit)\n"
      "  --idle-exit SEC    exit after SEC seconds without an event (default 0: never)\n"
      "  --max-body BYTES   largest request body accepted (default 1048576)\n"
      "  --json             print the summary as one JSON line\n"
      "  --print            print one line per request: method, target, Idempotency-Key,\n"
      "                     X-Botgate-Attempt, X-Botgate-Source, body (first 200 bytes)\n"
      "  --name NAME        start every printed line with [NAME] (not the --json line)\n"
      "  --keys-file PATH   append one line per POST once its 200 is written:\n"
      "                     KEY UNIX_US E2E_US (E2E_US -1 without sent_ns); one write(2)\n"
      "                     per write of answers, so the file is complete even after a\n"
      "                     SIGKILL\n",
      out);
}

std::optional<Options> parse_args(int argc, char** argv) {
  Options o;
  const bool parsed = bench::parse_flags(
      "sink", argc, argv, usage,
      [&](std::string_view a) {
        if (a == "--json") return o.json = true;
        if (a == "--print") return o.print = true;
        return false;
      },
      [&](std::string_view a, std::string_view val) {
        bool ok = true;
        if (a == "--port")
          ok = parse_num(val, o.port) && o.port < 65536;
        else if (a == "--host")
          o.host = val;
        else if (a == "--name")
          o.name = val;
        else if (a == "--keys-file")
          o.keys_file = val;
        else if (a == "--threads")
          ok = parse_num(val, o.threads) && o.threads > 0 && o.threads <= 64;
        else if (a == "--expect")
          ok = parse_num(val, o.expect);
        else if (a == "--max-body")
          ok = parse_num(val, o.max_body) && o.max_body > 0;
        else if (a == "--idle-exit") {
          try {
            std::size_t pos = 0;
            o.idle_exit_s = std::stod(std::string(val), &pos);
            ok = pos == val.size() && o.idle_exit_s >= 0 && o.idle_exit_s < 1e7;
          } catch (...) {
            ok = false;
          }
        } else {
          return bench::Flag::unknown;
        }
        return ok ? bench::Flag::ok : bench::Flag::bad;
      });
  if (!parsed) return std::nullopt;
  return o;
}

// ---------------------------------------------------------------- counting

// Per-thread counters, registered once and summed after the io_context has stopped.
struct ThreadStats {
  std::uint64_t received = 0;    // POSTs
  std::uint64_t duplicates = 0;  // POSTs whose Idempotency-Key was seen before
  std::uint64_t no_key = 0;      // POSTs without Idempotency-Key (keyed by the body "id")
  std::uint64_t other = 0;       // non-POST requests (probes etc.)
  std::uint64_t no_sent_ns = 0;  // first deliveries without a usable sent_ns
  std::vector<std::uint32_t> e2e_us;
};

std::mutex g_stats_mu;
std::vector<std::unique_ptr<ThreadStats>> g_all_stats;

ThreadStats& thread_stats() {
  thread_local ThreadStats* mine = [] {
    std::lock_guard lock(g_stats_mu);
    g_all_stats.push_back(std::make_unique<ThreadStats>());
    g_all_stats.back()->e2e_us.reserve(1 << 16);
    return g_all_stats.back().get();
  }();
  return *mine;
}

// Idempotency keys, split over shards so that threads rarely meet on one lock.
class Dedup {
 public:
  bool insert(std::string_view key) {
    const std::size_t h = std::hash<std::string_view>{}(key);
    Shard& s = shards_[h % shards_.size()];
    std::lock_guard lock(s.mu);
    return s.keys.emplace(key).second;
  }

 private:
  struct Shard {
    std::mutex mu;
    std::unordered_set<std::string> keys;
  };
  std::array<Shard, 64> shards_;
};

Dedup g_dedup;
std::atomic<std::uint64_t> g_unique{0};
std::atomic<std::uint64_t> g_first_event_ns{0};
std::atomic<std::uint64_t> g_last_event_ns{0};
std::atomic<bool> g_expect_reached{false};

// Finds "sent_ns":<digits> in the body.
bool find_sent_ns(std::string_view body, std::uint64_t& out) {
  static constexpr std::string_view kKey = "\"sent_ns\":";
  const auto pos = body.find(kKey);
  if (pos == std::string_view::npos) return false;
  const char* p = body.data() + pos + kKey.size();
  const char* end = body.data() + body.size();
  while (p < end && (*p == ' ' || *p == '\t')) ++p;
  auto [q, ec] = std::from_chars(p, end, out);
  return ec == std::errc{} && q != p;
}

// Finds "id":"<value>" in the body: the key when a request has no Idempotency-Key
// (loadgen pointed straight at the sink). Empty when absent or escaped.
std::string_view find_body_id(std::string_view body) {
  static constexpr std::string_view kKey = "\"id\":\"";
  const auto pos = body.find(kKey);
  if (pos == std::string_view::npos) return {};
  const auto start = pos + kKey.size();
  const auto end = body.find_first_of("\"\\", start);
  if (end == std::string_view::npos || body[end] != '"') return {};
  return body.substr(start, end - start);
}

// ---------------------------------------------------------------- --print

// "[name] " when --name was given, else "".
std::string g_label;

constexpr std::size_t kPrintBodyMax = 200;

// Appends s with control characters and backslashes escaped (\n, \t, \x01, \\), so
// that a request always prints as exactly one line. Other bytes, UTF-8 included, pass
// through. When s is longer than max: its first max bytes (cut back to a UTF-8 character
// boundary), then "...(N bytes)".
void append_escaped(std::string& out, std::string_view s,
                    std::size_t max = std::string_view::npos) {
  std::size_t n = std::min(s.size(), max);
  if (n < s.size()) {
    for (int back = 0; back < 3 && n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80;
         ++back)
      --n;
  }
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\\') {
      out += "\\\\";
    } else if (c >= 0x20 && c != 0x7f) {
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      fmt::format_to(std::back_inserter(out), "\\x{:02x}", c);
    }
  }
  if (n < s.size()) fmt::format_to(std::back_inserter(out), "...({} bytes)", s.size());
}

// Writes one whole line to stdout and flushes it, so that lines from several io threads
// never interleave and a reader (a terminal, a pipe, a file) sees each request at once.
void emit_line(const std::string& line) {
  static std::mutex mu;
  std::lock_guard lock(mu);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

// Only called with --print, off the fast path.
[[gnu::noinline, gnu::cold]] void print_request(const http::request<http::string_body>& req,
                                                std::string_view note) {
  std::string line = g_label;
  line.reserve(line.size() + 128 + std::min(req.body().size(), kPrintBodyMax));
  append_escaped(line, req.method_string());
  line += ' ';
  append_escaped(line, req.target());
  for (std::string_view h : {"Idempotency-Key", "X-Botgate-Attempt", "X-Botgate-Source"}) {
    if (auto it = req.find(h); it != req.end()) {
      line += ' ';
      line += h;
      line += '=';
      append_escaped(line, it->value(), kPrintBodyMax);
    }
  }
  if (!note.empty()) {
    line += ' ';
    line += note;
  } else if (!req.body().empty()) {
    line += " body=";
    append_escaped(line, req.body(), kPrintBodyMax);
  }
  line += '\n';
  emit_line(line);
}

// ---------------------------------------------------------------- HTTP

constexpr std::string_view kOk =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
constexpr std::string_view kOkClose =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: "
    "close\r\n\r\n{}";
constexpr std::string_view kTooLarge =
    "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
constexpr std::string_view kBad =
    "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

// One connection. Requests a client pipelined that are already buffered are answered
// together in one write, as nginx does; a client that waits for each answer gets one
// write per answer.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket sock, const Options& opt, std::function<void()> on_expect)
      : sock_(std::move(sock)), opt_(opt), on_expect_(std::move(on_expect)) {}

  void start() { read(); }

 private:
  void new_parser() {
    parser_.emplace();
    parser_->body_limit(opt_.max_body);
    parser_->header_limit(64 * 1024);
  }

  // Continues a request that parse_buffered() began, if any.
  void read() {
    if (!parser_) new_parser();
    http::async_read(
        sock_, buf_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == asio::error::connection_reset || ec == asio::error::operation_aborted) {
      return close();
    }
    if (ec == http::error::body_limit) {
      if (opt_.print) print_request(parser_->get(), "-> 413 (body larger than --max-body)");
      return refuse(kTooLarge);
    }
    if (ec) {
      if (opt_.print) emit_line(fmt::format("{}bad request -> 400 ({})\n", g_label, ec.message()));
      return refuse(kBad);
    }
    answer();
    while (keep_alive_ && parse_buffered(deferred_)) answer();
    flush();
  }

  // Parses the next request from what is already buffered, without reading the socket.
  // False when it is not all there yet (read() goes on with it) or on an error, which
  // is left in ec for after the answers owed so far are written.
  bool parse_buffered(beast::error_code& ec) {
    if (buf_.size() == 0) return false;
    new_parser();
    while (buf_.size() > 0 && !parser_->is_done()) {
      const std::size_t n = parser_->put(buf_.data(), ec);
      buf_.consume(n);
      if (ec == http::error::need_more) {
        ec = {};
        break;
      }
      if (ec || n == 0) break;
    }
    return !ec && parser_->is_done();
  }

  void refuse(std::string_view wire) {
    out_.append(wire);
    keep_alive_ = false;
    flush();
  }

  // Counts the parsed request and appends its answer to out_.
  void answer() {
    const auto& req = parser_->get();
    if (opt_.print) print_request(req, {});
    ThreadStats& st = thread_stats();
    if (req.method() == http::verb::post) {
      const std::uint64_t now = mono_ns();
      ++st.received;
      bool first = true;
      std::string_view key;
      if (auto h = req.find("Idempotency-Key"); h != req.end()) {
        key = h->value();
      } else {
        ++st.no_key;
        key = find_body_id(req.body());
      }
      if (!key.empty()) {
        first = g_dedup.insert(key);
        if (!first) ++st.duplicates;
      }
      if (opt_.keys_fd >= 0) keys_line(key, req.body(), now);
      if (first) {
        std::uint64_t sent = 0;
        if (find_sent_ns(req.body(), sent) && sent <= now) {
          st.e2e_us.push_back(static_cast<std::uint32_t>(
              std::min<std::uint64_t>((now - sent) / 1000, 0xffffffffu)));
        } else {
          ++st.no_sent_ns;
        }
        const std::uint64_t u = g_unique.fetch_add(1, std::memory_order_relaxed) + 1;
        if (opt_.expect != 0 && u == opt_.expect) last_ = true;
      }
      if (g_first_event_ns.load(std::memory_order_relaxed) == 0) {
        std::uint64_t zero = 0;
        g_first_event_ns.compare_exchange_strong(zero, now, std::memory_order_relaxed);
      }
      g_last_event_ns.store(now, std::memory_order_relaxed);
    } else {
      ++st.other;
    }
    keep_alive_ = req.keep_alive();
    out_.append(keep_alive_ ? kOk : kOkClose);
    parser_.reset();
  }

  void flush() {
    asio::async_write(sock_, asio::buffer(out_),
                      [self = shared_from_this()](beast::error_code ec, std::size_t) {
                        self->out_.clear();
                        // --keys-file: only what was answered counts as received.
                        if (!ec && !self->key_line_.empty()) self->write_key_line();
                        // The event that completes --expect is answered before we stop.
                        if (std::exchange(self->last_, false)) self->on_expect_();
                        if (ec || !self->keep_alive_) return self->close();
                        if (self->deferred_)
                          return self->on_read(std::exchange(self->deferred_, {}));
                        self->read();
                      });
  }

  // --keys-file: "KEY UNIX_US E2E_US\n" for this request, written once its answer is.
  [[gnu::noinline]] void keys_line(std::string_view key, std::string_view body,
                                   std::uint64_t now_mono) {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    const auto unix_us = static_cast<std::int64_t>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
    std::uint64_t sent = 0;
    const std::int64_t e2e = find_sent_ns(body, sent) && sent <= now_mono
                                 ? static_cast<std::int64_t>((now_mono - sent) / 1000)
                                 : -1;
    fmt::format_to(std::back_inserter(key_line_), "{} {} {}\n", key.empty() ? "-" : key, unix_us,
                   e2e);
  }

  void write_key_line() {
    // O_APPEND: lines from several threads never overlap; short writes are not expected on a
    // regular file, and a failed one only makes the event look lost (the safe side).
    [[maybe_unused]] auto n = ::write(opt_.keys_fd, key_line_.data(), key_line_.size());
    key_line_.clear();
  }

  void close() {
    beast::error_code ignored;
    sock_.shutdown(tcp::socket::shutdown_send, ignored);
    sock_.close(ignored);
  }

  tcp::socket sock_;
  const Options& opt_;
  std::function<void()> on_expect_;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::string out_;             // answers not yet written
  bool keep_alive_ = true;      // of the last request answered
  bool last_ = false;           // out_ holds the answer that reached --expect
  beast::error_code deferred_;  // a parse error met after answers still owed
  std::string key_line_;        // --keys-file: the lines to write once their answers are out
};

}  // namespace

int main(int argc, char** argv) {
  auto parsed = parse_args(argc, argv);
  if (!parsed) return 2;
  Options& opt = *parsed;
  if (!opt.name.empty()) g_label = "[" + opt.name + "] ";
  if (!opt.keys_file.empty()) {
    opt.keys_fd = ::open(opt.keys_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (opt.keys_fd < 0) {
      fmt::print(stderr, "sink: cannot open {}: {}\n", opt.keys_file, std::strerror(errno));
      return 2;
    }
  }

  beast::error_code ec;
  const auto addr = asio::ip::make_address(opt.host, ec);
  if (ec) {
    fmt::print(stderr, "sink: --host must be an IP address literal, got '{}'\n", opt.host);
    return 2;
  }

  asio::io_context ioc(static_cast<int>(opt.threads));
  tcp::acceptor acceptor(ioc);
  const tcp::endpoint ep(addr, static_cast<unsigned short>(opt.port));
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    fmt::print(stderr, "sink: {}cannot listen on {}:{}: {}\n", g_label, opt.host, opt.port,
               ec.message());
    return 1;
  }

  std::string stop_reason = "signal";
  std::atomic<bool> stopping{false};
  auto stop = [&](const char* why) {
    if (stopping.exchange(true)) return;
    stop_reason = why;
    ioc.stop();
  };
  auto on_expect = [&] {
    g_expect_reached = true;
    asio::post(ioc, [&] { stop("expect"); });
  };

  std::function<void()> accept;
  accept = [&] {
    acceptor.async_accept(asio::make_strand(ioc), [&](beast::error_code aec, tcp::socket sock) {
      if (!aec) {
        sock.set_option(tcp::no_delay(true), aec);
        std::make_shared<Session>(std::move(sock), opt, on_expect)->start();
      } else if (aec == asio::error::operation_aborted) {
        return;
      }
      accept();
    });
  };
  accept();

  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](beast::error_code sec, int) {
    if (!sec) stop("signal");
  });

  const std::uint64_t start_ns = mono_ns();
  asio::steady_timer idle_timer(ioc);
  std::function<void()> idle_check;
  if (opt.idle_exit_s > 0) {
    const auto idle_ns = static_cast<std::uint64_t>(opt.idle_exit_s * 1e9);
    idle_check = [&, idle_ns] {
      idle_timer.expires_after(std::chrono::milliseconds(100));
      idle_timer.async_wait([&, idle_ns](beast::error_code tec) {
        if (tec) return;
        const std::uint64_t last =
            std::max(start_ns, g_last_event_ns.load(std::memory_order_relaxed));
        if (mono_ns() - last >= idle_ns) return stop("idle");
        idle_check();
      });
    };
    idle_check();
  }

  fmt::print("{}listening port={}\n", g_label, acceptor.local_endpoint().port());
  std::fflush(stdout);

  std::vector<std::thread> workers;
  for (unsigned i = 1; i < opt.threads; ++i) workers.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (auto& t : workers) t.join();

  ThreadStats total;
  std::vector<std::uint32_t> lat;
  {
    std::lock_guard lock(g_stats_mu);
    for (auto& s : g_all_stats) {
      total.received += s->received;
      total.duplicates += s->duplicates;
      total.no_key += s->no_key;
      total.other += s->other;
      total.no_sent_ns += s->no_sent_ns;
      lat.insert(lat.end(), s->e2e_us.begin(), s->e2e_us.end());
    }
  }
  std::sort(lat.begin(), lat.end());
  const std::uint64_t unique = g_unique.load();
  const double elapsed = static_cast<double>(mono_ns() - start_ns) / 1e9;
  // Unique events per second between the first and the last POST received.
  const std::uint64_t first = g_first_event_ns.load(), last = g_last_event_ns.load();
  const double window = last > first ? static_cast<double>(last - first) / 1e9 : 0.0;
  const double rate = window > 0 ? static_cast<double>(unique) / window : 0.0;
  const std::uint32_t p50 = percentile(lat, 0.50), p99 = percentile(lat, 0.99),
                      p999 = percentile(lat, 0.999), pmax = lat.empty() ? 0 : lat.back();
  if (opt.json) {
    fmt::print(
        "{{\"received\":{},\"unique\":{},\"duplicates\":{},\"no_key\":{},\"other_requests\":{},"
        "\"expect\":{},\"expect_reached\":{},\"stop\":\"{}\",\"e2e_samples\":{},\"e2e_p50_us\":{},"
        "\"e2e_p99_us\":{},\"e2e_p999_us\":{},\"e2e_max_us\":{},\"window_s\":{:.6f},"
        "\"unique_per_s\":{:.1f},\"uptime_s\":{:.3f}}}\n",
        total.received, unique, total.duplicates, total.no_key, total.other, opt.expect,
        g_expect_reached.load() ? "true" : "false", stop_reason, lat.size(), p50, p99, p999, pmax,
        window, rate, elapsed);
  } else {
    fmt::print("{}sink summary (stop={}{})\n", g_label, stop_reason,
               opt.expect ? fmt::format(", expect={}", opt.expect) : std::string());
    fmt::print("{}  received        {}\n", g_label, total.received);
    fmt::print("{}  unique          {}\n", g_label, unique);
    fmt::print("{}  duplicates      {}\n", g_label, total.duplicates);
    fmt::print("{}  unique/s        {:.0f} (first to last event, {:.3f}s)\n", g_label, rate,
               window);
    if (total.no_key)
      fmt::print("{}  without key     {} (de-duplicated by body \"id\" instead)\n", g_label,
                 total.no_key);
    if (total.other) fmt::print("{}  other requests  {} (not POST)\n", g_label, total.other);
    fmt::print("{}  e2e latency us  p50={} p99={} p999={} max={} (samples={})\n", g_label, p50, p99,
               p999, pmax, lat.size());
  }
  std::fflush(stdout);
  return 0;
}
