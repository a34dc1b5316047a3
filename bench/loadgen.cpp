// loadgen: closed-loop HTTP/1.1 load generator for POST /v1/events/{source}, or (with
// --wechat-source) for encrypted WeChat Official Account callbacks, POST /wechat/{source}.
//
// Every event is prepared before the timed phase: its body (all but the trailing
// "sent_ns" value) and its HMAC midstate over "key^ipad || ts || '.' || body-prefix".
// Sending an event only has to print sent_ns, finish two SHA-256 blocks and copy a
// few hundred bytes, so the signing cost stays off the hot path while sent_ns still
// is the CLOCK_MONOTONIC time at send (the sink measures end-to-end latency from it).
// At start-up the midstate signer is checked against botgate::generic_signature.
//
// WeChat mode prepares each request whole (query signatures, AES envelope, headers) with
// the gateway's own crypto (transport/wechat_crypto.hpp); sending it is one copy. sent_ns
// cannot go into a ciphertext made ahead of time, so the sink has no end-to-end latency.
//
// One io_context, --threads threads, --connections keep-alive connections, each with
// up to --pipeline requests outstanding. Bounded by --events and --duration (+ --drain).
// See bench/README.md.
#include <fmt/format.h>
#include <signal.h>
#include <time.h>

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
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench/common.hpp"
#include "transport/signature.hpp"
#include "transport/wechat_crypto.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

using bench::mono_ns;
using bench::parse_num;
using bench::percentile;

std::int64_t unix_s() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec);
}

// ---------------------------------------------------------------- options

struct Options {
  std::string host = "127.0.0.1";
  unsigned port = 0;
  std::string source = "bench";
  std::string secret = "bench-secret";
  std::string run_id;
  std::string ids_file;
  std::string text = "hello";
  std::uint64_t events = 200000;
  unsigned connections = 64;
  unsigned threads = 1;
  unsigned pipeline = 1;
  unsigned conversations = 1000;
  double duration_s = 120;
  double drain_s = 5;
  double rate = 0;  // events per second over all connections; 0: as fast as answers allow
  bool json = false;
  // WeChat mode, on when wechat_source is set: safe-mode callbacks to /wechat/{wechat_source}.
  std::string wechat_source;
  std::string wechat_token = "bench-token";
  std::string wechat_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
  std::string wechat_app_id = "wxbench0000000001";

  bool wechat() const { return !wechat_source.empty(); }
};

void usage(std::FILE* out) {
  std::fputs(
      "usage: loadgen --port P [options]\n"
      "  --host ADDR          IPv4/IPv6 literal to connect to (default 127.0.0.1)\n"
      "  --port P             target port (required)\n"
      "  --source NAME        POST /v1/events/NAME (default bench)\n"
      "  --secret S           HMAC secret for X-Botgate-Signature (default bench-secret)\n"
      "  --events N           events to send, pre-signed before the run (default 200000)\n"
      "  --duration SEC       stop sending after SEC seconds (default 120)\n"
      "  --drain SEC          then wait at most SEC for outstanding answers (default 5)\n"
      "  --connections N      keep-alive connections (default 64)\n"
      "  --pipeline N         requests outstanding per connection (default 1)\n"
      "  --threads N          threads running the io_context (default 1)\n"
      "  --rate R             send at most R events/s in total, evenly paced (default 0: closed\n"
      "                       loop, as fast as the answers come back)\n"
      "  --conversations N    conversations c0..c{N-1} (default 1000)\n"
      "  --run-id ID          event id prefix, ids are ID-<n> (default random)\n"
      "  --text T             the event text (default hello)\n"
      "  --ids-file PATH      write the id of every event answered 2xx, one per line\n"
      "  --json               print the summary as one JSON line\n"
      "WeChat mode: encrypted Official Account callbacks instead of generic events\n"
      "  --wechat-source NAME POST /wechat/NAME?signature=..&timestamp=..&nonce=..\n"
      "                       &encrypt_type=aes&msg_signature=.. with a safe-mode <Encrypt>\n"
      "                       envelope around a text message (MsgId unique per event). Only\n"
      "                       200 \"success\" counts as accepted. --source and --secret are\n"
      "                       unused; --ids-file gets MsgIds\n"
      "  --wechat-token T     the source's token (default bench-token)\n"
      "  --wechat-aes-key K   the source's 43-character encoding_aes_key\n"
      "                       (default abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG)\n"
      "  --wechat-app-id A    the source's app_id, the receiver id in every ciphertext\n"
      "                       (default wxbench0000000001)\n",
      out);
}

bool plain_token(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

// Text goes into a JSON string unescaped: allow printable ASCII without quote/backslash.
bool plain_text(std::string_view s) {
  if (s.size() > 4096) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; });
}

std::optional<Options> parse_args(int argc, char** argv) {
  Options o;
  const bool parsed = bench::parse_flags(
      "loadgen", argc, argv, usage,
      [&](std::string_view a) {
        if (a != "--json") return false;
        o.json = true;
        return true;
      },
      [&](std::string_view a, std::string_view val) {
        bool ok = true;
        if (a == "--host")
          o.host = val;
        else if (a == "--port")
          ok = parse_num(val, o.port) && o.port > 0 && o.port < 65536;
        else if (a == "--source")
          o.source = val, ok = plain_token(val);
        else if (a == "--secret")
          o.secret = val;
        else if (a == "--run-id")
          o.run_id = val, ok = plain_token(val);
        else if (a == "--ids-file")
          o.ids_file = val;
        else if (a == "--text")
          o.text = val, ok = plain_text(val);
        else if (a == "--events")
          ok = parse_num(val, o.events) && o.events > 0 && o.events < (1ULL << 32);
        else if (a == "--connections")
          ok = parse_num(val, o.connections) && o.connections > 0 && o.connections <= 10000;
        else if (a == "--threads")
          ok = parse_num(val, o.threads) && o.threads > 0 && o.threads <= 64;
        else if (a == "--pipeline")
          ok = parse_num(val, o.pipeline) && o.pipeline > 0 && o.pipeline <= 1024;
        else if (a == "--conversations")
          ok = parse_num(val, o.conversations) && o.conversations > 0;
        else if (a == "--duration")
          ok = bench::parse_decimal(val, o.duration_s) && o.duration_s > 0;
        else if (a == "--drain")
          ok = bench::parse_decimal(val, o.drain_s);
        else if (a == "--rate")
          ok = bench::parse_decimal(val, o.rate);
        else if (a == "--wechat-source")
          o.wechat_source = val, ok = plain_token(val);
        else if (a == "--wechat-token")
          o.wechat_token = val, ok = !val.empty();
        else if (a == "--wechat-aes-key")
          o.wechat_aes_key = val;
        else if (a == "--wechat-app-id")
          o.wechat_app_id = val, ok = plain_token(val);
        else
          return bench::Flag::unknown;
        return ok ? bench::Flag::ok : bench::Flag::bad;
      });
  if (!parsed) return std::nullopt;
  if (o.port == 0) {
    fmt::print(stderr, "loadgen: --port is required\n");
    usage(stderr);
    return std::nullopt;
  }
  if (o.wechat()) {
    std::string why;
    if (!botgate::wechat::AesKey::parse(o.wechat_aes_key, why)) {
      fmt::print(stderr, "loadgen: bad --wechat-aes-key: {}\n", why);
      return std::nullopt;
    }
    if (o.text.find("]]>") != std::string::npos) {
      fmt::print(stderr, "loadgen: --text must not contain ]]> in WeChat mode (it is CDATA)\n");
      return std::nullopt;
    }
  }
  if (o.run_id.empty()) {
    std::random_device rd;
    std::uint64_t r = (static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^ mono_ns();
    o.run_id = fmt::format("r{:012x}", r & 0xffffffffffffULL);
  }
  return o;
}

// ---------------------------------------------------------------- signing

// HMAC-SHA256 split at a midstate (see botgate::HmacSha256): the inner hash over key^ipad
// and a prepared prefix is computed ahead of time; at send time only the tail is absorbed.
using Signer = botgate::HmacSha256;

// ---------------------------------------------------------------- events

struct Event {
  Signer::State mid;       // inner HMAC state after key^ipad || ts || "." || body prefix
  std::int64_t ts;         // X-Botgate-Timestamp it was signed with
  std::uint32_t body_off;  // body prefix in Events::arena (WeChat mode: the whole request)
  std::uint32_t body_len;
};

struct Events {
  std::string arena;  // every body prefix, back to back
  std::vector<Event> list;
  std::string run_id;

  std::string_view body_prefix(const Event& e) const {
    return {arena.data() + e.body_off, e.body_len};
  }
};

// ---------------------------------------------------------------- WeChat callbacks

std::uint64_t mix64(std::uint64_t x) {  // splitmix64's finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Builds whole safe-mode callback requests with the gateway's own crypto:
//   POST /wechat/{source}?signature=S&timestamp=T&nonce=N&encrypt_type=aes&msg_signature=M
//   <xml><ToUserName><![CDATA[gh_bench]]></ToUserName><Encrypt><![CDATA[...]]></Encrypt></xml>
// around a text message from user-c<n mod conversations> whose MsgId is msg_id(n).
class WechatBuilder {
 public:
  WechatBuilder(const Options& o, botgate::wechat::AesKey key, std::string host)
      : opt_(o), key_(std::move(key)), host_(std::move(host)) {
    // MsgIds are 64-bit integers on the platform: 30 bits from the run id, then n (< 2^32),
    // so two runs never share ids.
    std::uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a
    for (unsigned char c : o.run_id) h = (h ^ c) * 0x100000001b3ULL;
    id_base_ = (h & 0x3fffffffULL) << 32;
  }

  std::uint64_t msg_id(std::uint64_t n) const { return id_base_ | n; }

  // Appends the request for event n, signed and encrypted at unix time ts, to out.
  void append(std::string& out, std::uint64_t n, std::int64_t ts) const {
    namespace wx = botgate::wechat;
    const std::uint64_t id = msg_id(n);
    std::string plain;
    fmt::format_to(std::back_inserter(plain),
                   "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>"
                   "<FromUserName><![CDATA[user-c{}]]></FromUserName><CreateTime>{}</CreateTime>"
                   "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{}]]></Content>"
                   "<MsgId>{}</MsgId></xml>",
                   n % opt_.conversations, ts, opt_.text, id);
    std::string encrypted;
    if (const auto st = wx::encrypt(key_, plain, opt_.wechat_app_id, encrypted);
        st != wx::CryptoStatus::ok) {
      throw std::runtime_error(std::string("wechat::encrypt: ") + wx::to_string(st));
    }
    const std::string tss = std::to_string(ts);
    const std::string nonce = std::to_string(1'000'000'000 + mix64(id) % 9'000'000'000ULL);
    const std::string body = fmt::format(
        "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt></xml>",
        encrypted);
    fmt::format_to(std::back_inserter(out),
                   "POST /wechat/{}?signature={}&timestamp={}&nonce={}&encrypt_type=aes"
                   "&msg_signature={} HTTP/1.1\r\nHost: {}\r\nUser-Agent: botgate-loadgen\r\n"
                   "Content-Type: text/xml\r\nContent-Length: {}\r\n\r\n{}",
                   opt_.wechat_source, wx::signature(opt_.wechat_token, tss, nonce), tss, nonce,
                   wx::msg_signature(opt_.wechat_token, tss, nonce, encrypted), host_, body.size(),
                   body);
  }

  // Round trip of event 0 through the gateway's checks: msg_signature, decrypt, app id.
  bool self_check(std::string& why) const {
    namespace wx = botgate::wechat;
    std::string req;
    append(req, 0, unix_s());
    auto param = [&](std::string_view name) {
      const std::string_view line(req.data(), req.find(' ', 5));
      const auto at = line.find(fmt::format("{}=", name));
      if (at == std::string_view::npos) return std::string_view();
      auto v = line.substr(at + name.size() + 1);
      return v.substr(0, v.find('&'));
    };
    const auto b = req.find("<![CDATA[", req.find("<Encrypt>")) + 9;
    const std::string_view enc(req.data() + b, req.find("]]>", b) - b);
    if (!wx::verify_msg_signature(param("msg_signature"), opt_.wechat_token, param("timestamp"),
                                  param("nonce"), enc)) {
      why = "msg_signature does not verify";
      return false;
    }
    std::string plain;
    if (const auto st = wx::decrypt(key_, enc, opt_.wechat_app_id, plain);
        st != wx::CryptoStatus::ok) {
      why = std::string("decrypt: ") + wx::to_string(st);
      return false;
    }
    if (plain.find(fmt::format("<MsgId>{}</MsgId>", msg_id(0))) == std::string::npos) {
      why = "decrypted message lacks its MsgId";
      return false;
    }
    return true;
  }

 private:
  const Options& opt_;
  botgate::wechat::AesKey key_;
  std::string host_;
  std::uint64_t id_base_ = 0;
};

// Every request whole, with the timestamp of the preparation.
Events prepare_wechat(const Options& o, const WechatBuilder& wx) {
  Events evs;
  evs.run_id = o.run_id;
  evs.list.resize(o.events);
  evs.arena.reserve(o.events * (900 + o.text.size() * 4 / 3));
  const std::int64_t ts = unix_s();
  for (std::uint64_t n = 0; n < o.events; ++n) {
    Event& e = evs.list[n];
    e.ts = ts;
    e.body_off = static_cast<std::uint32_t>(evs.arena.size());
    wx.append(evs.arena, n, ts);
    e.body_len = static_cast<std::uint32_t>(evs.arena.size() - e.body_off);
    if (evs.arena.size() > 0xffffffffULL) throw std::runtime_error("too many events for one arena");
  }
  return evs;
}

// The body is {"id":...,"text":"...","sent_ns":<ns>}; sent_ns comes last so that only
// "<ns>}" has to be hashed at send time.
void sign_prefix(const Signer& signer, const Events& evs, Event& e, std::int64_t ts) {
  char tsbuf[24];
  auto r = std::to_chars(tsbuf, tsbuf + sizeof tsbuf, ts);
  e.ts = ts;
  e.mid = signer.begin();
  Signer::absorb(e.mid, std::string_view(tsbuf, static_cast<std::size_t>(r.ptr - tsbuf)));
  Signer::absorb(e.mid, ".");
  Signer::absorb(e.mid, evs.body_prefix(e));
}

Events prepare(const Options& o, const Signer& signer) {
  Events evs;
  evs.run_id = o.run_id;
  evs.list.resize(o.events);
  evs.arena.reserve(o.events * (80 + o.run_id.size() + o.text.size()));
  const std::int64_t ts = unix_s();
  for (std::uint64_t n = 0; n < o.events; ++n) {
    Event& e = evs.list[n];
    e.body_off = static_cast<std::uint32_t>(evs.arena.size());
    fmt::format_to(
        std::back_inserter(evs.arena),
        R"({{"id":"{}-{}","conversation":"c{}","sender":"bench","type":"text","text":"{}","sent_ns":)",
        o.run_id, n, n % o.conversations, o.text);
    e.body_len = static_cast<std::uint32_t>(evs.arena.size() - e.body_off);
    if (evs.arena.size() > 0xffffffffULL) throw std::runtime_error("too many events for one arena");
  }
  for (auto& e : evs.list) sign_prefix(signer, evs, e, ts);
  return evs;
}

// ---------------------------------------------------------------- run state

struct Stats {
  std::uint64_t sent = 0;
  std::uint64_t responses = 0;
  std::uint64_t ok = 0;              // 2xx; WeChat mode: 200 with the body "success"
  std::uint64_t not_success = 0;     // WeChat mode: 2xx whose body was not "success"
  std::uint64_t connect_errors = 0;  // failed connection attempts
  std::uint64_t io_errors = 0;       // established connection broke (reset, EOF, bad response)
  std::uint64_t server_closes = 0;   // response said Connection: close
  std::uint64_t unanswered = 0;      // sent but no response (connection lost or drain timeout)
  std::uint64_t resigned = 0;        // timestamp refreshed at send time (run longer than ~4 min)
  std::uint64_t last_response_ns = 0;
  std::array<std::uint64_t, 600> status{};
  std::vector<std::uint32_t> lat_us;     // send -> response complete, every response
  std::vector<std::uint32_t> ok_events;  // event numbers answered 2xx
};

class Conn;

struct Run {
  const Options& opt;
  const Signer& signer;
  const WechatBuilder* wechat;  // WeChat mode, else null
  Events& evs;
  asio::io_context& ioc;
  std::string head;  // request line + fixed headers, up to the timestamp value
  std::atomic<std::uint64_t> next{0};
  std::atomic<bool> stopping{false};
  std::atomic<unsigned> active{0};
  std::atomic<unsigned> pacers{0};  // --rate: connections waiting for a slot
  std::uint64_t start_ns = 0;
  std::vector<std::unique_ptr<Conn>> conns;

  // Claims the next event number, or returns false when there is nothing left to send (or,
  // with --rate, nothing due yet: see pace_wait_ns).
  bool take(std::uint64_t& n) {
    if (stopping.load(std::memory_order_relaxed)) return false;
    if (next.load(std::memory_order_relaxed) >= evs.list.size()) return false;
    if (opt.rate > 0 && pace_wait_ns() > 0) return false;
    n = next.fetch_add(1, std::memory_order_relaxed);
    return n < evs.list.size();
  }
  // --rate: event n is due at start + n / rate. Nanoseconds until the next one plus `ahead`
  // is due (0: now).
  std::uint64_t pace_wait_ns(std::uint64_t ahead = 0) const {
    const auto n = static_cast<double>(next.load(std::memory_order_relaxed) + ahead);
    const auto due = start_ns + static_cast<std::uint64_t>(n * 1e9 / opt.rate);
    const std::uint64_t now = mono_ns();
    return due > now ? due - now : 0;
  }
  bool exhausted() const {
    return stopping.load(std::memory_order_relaxed) ||
           next.load(std::memory_order_relaxed) >= evs.list.size();
  }
  void conn_done() {
    if (active.fetch_sub(1) == 1) ioc.stop();
  }
};

class Conn {
 public:
  Conn(Run& run, tcp::endpoint ep)
      : run_(run), ep_(ep), strand_(asio::make_strand(run.ioc)), sock_(strand_), timer_(strand_) {
    stats.lat_us.reserve(run.evs.list.size() / run.opt.connections + 16);
  }

  void start() {
    asio::post(strand_, [this] { connect(); });
  }

  // Duration is over: stop waiting for a reconnect; in-flight requests may still finish.
  void stop_sending() {
    asio::post(strand_, [this] {
      timer_.cancel();
      if (connected_ && !broken_ && inflight_.empty() && !writing_) finish();
    });
  }

  // Drain is over: drop whatever is still outstanding.
  void abort() {
    asio::post(strand_, [this] {
      aborted_ = true;
      timer_.cancel();
      if (connected_ && !broken_) fail(IoKind::abort);
    });
  }

  Stats stats;

 private:
  enum class IoKind { io, server_close, abort };
  struct Inflight {
    std::uint32_t n;
    std::uint64_t sent_ns;
  };

  void connect() {
    if (done_) return;
    if (run_.exhausted() || aborted_) return finish();
    sock_.async_connect(ep_, [this](beast::error_code ec) {
      if (done_) return;
      if (ec) {
        ++stats.connect_errors;
        boost::system::error_code ignored;
        sock_.close(ignored);
        backoff_ms_ = std::min(500u, std::max(10u, backoff_ms_ * 2));
        return reconnect_later();
      }
      backoff_ms_ = 0;
      sock_.set_option(tcp::no_delay(true));
      connected_ = true;
      broken_ = false;
      rbuf_.clear();
      pump();
    });
  }

  void reconnect_later() {
    if (run_.exhausted() || aborted_) return finish();
    if (backoff_ms_ == 0) return connect();
    timer_.expires_after(std::chrono::milliseconds(backoff_ms_));
    timer_.async_wait([this](beast::error_code) { connect(); });
  }

  // Writes as many new requests as the pipeline allows, in one write.
  void pump() {
    if (!connected_ || broken_ || writing_ || done_) return;
    wbuf_.clear();
    std::uint64_t n = 0;
    const std::int64_t now_s = unix_s();
    while (inflight_.size() < run_.opt.pipeline && run_.take(n)) {
      append_request(static_cast<std::uint32_t>(n), now_s);
    }
    if (wbuf_.empty()) {
      if (inflight_.empty() && run_.exhausted()) return finish();
      // --rate: room on this connection but the next event is not due yet.
      if (run_.opt.rate > 0 && !pacing_ && !run_.exhausted() &&
          inflight_.size() < run_.opt.pipeline) {
        // Each waiting connection aims at its own slot (the next, the one after, ...), so that
        // they do not all wake for the same event.
        pacing_ = true;
        const unsigned ahead = run_.pacers.fetch_add(1, std::memory_order_relaxed);
        timer_.expires_after(std::chrono::nanoseconds(run_.pace_wait_ns(ahead)));
        timer_.async_wait([this](beast::error_code ec) {
          pacing_ = false;
          run_.pacers.fetch_sub(1, std::memory_order_relaxed);
          if (!ec) pump();
        });
      }
      return;
    }
    writing_ = true;
    asio::async_write(sock_, asio::buffer(wbuf_), [this](beast::error_code ec, std::size_t) {
      writing_ = false;
      if (broken_) return after_break();
      if (ec) return fail(IoKind::io);
      pump();
    });
    if (!reading_) read_one();
  }

  void append_request(std::uint32_t n, std::int64_t now_s) {
    Event& e = run_.evs.list[n];
    const bool stale = now_s - e.ts > 240 || e.ts - now_s > 240;  // server accepts +-300 s
    if (run_.wechat != nullptr) {
      // The prepared request as it is, or one signed and encrypted afresh.
      if (stale) {
        run_.wechat->append(wbuf_, n, now_s);
        ++stats.resigned;
      } else {
        wbuf_.append(run_.evs.body_prefix(e));
      }
      inflight_.push_back({n, mono_ns()});
      ++stats.sent;
      return;
    }
    if (stale) {
      sign_prefix(run_.signer, run_.evs, e, now_s);
      ++stats.resigned;
    }
    const std::string_view prefix = run_.evs.body_prefix(e);
    const std::uint64_t sent = mono_ns();
    char tail[32];
    char* p = std::to_chars(tail, tail + 30, sent).ptr;
    *p++ = '}';
    const std::string_view tailv(tail, static_cast<std::size_t>(p - tail));
    char sig[Signer::kHexLength];
    Signer::State st = e.mid;
    Signer::absorb(st, tailv);
    run_.signer.finish(st, sig);

    // head ends with "X-Botgate-Timestamp: "
    wbuf_.append(run_.head);
    char num[24];
    wbuf_.append(num, std::to_chars(num, num + sizeof num, e.ts).ptr);
    wbuf_.append("\r\nX-Botgate-Signature: v1=");
    wbuf_.append(sig, sizeof sig);
    wbuf_.append("\r\nContent-Length: ");
    wbuf_.append(num, std::to_chars(num, num + sizeof num, prefix.size() + tailv.size()).ptr);
    wbuf_.append("\r\n\r\n");
    wbuf_.append(prefix);
    wbuf_.append(tailv);

    inflight_.push_back({n, sent});
    ++stats.sent;
  }

  void read_one() {
    reading_ = true;
    parser_.emplace();
    parser_->body_limit(1 << 20);
    http::async_read(sock_, rbuf_, *parser_, [this](beast::error_code ec, std::size_t) {
      reading_ = false;
      if (broken_) return after_break();
      if (ec || inflight_.empty()) return fail(IoKind::io);
      on_response();
    });
  }

  void on_response() {
    const std::uint64_t now = mono_ns();
    const Inflight f = inflight_.front();
    inflight_.pop_front();
    const auto& res = parser_->get();
    const unsigned code = res.result_int();
    ++stats.responses;
    stats.last_response_ns = now;
    stats.lat_us.push_back(
        static_cast<std::uint32_t>(std::min<std::uint64_t>((now - f.sent_ns) / 1000, 0xffffffffu)));
    ++stats.status[code < stats.status.size() ? code : 0];
    if (code >= 200 && code < 300) {
      if (run_.wechat != nullptr && (code != 200 || res.body() != "success")) {
        ++stats.not_success;  // e.g. a passive reply: the event was not forwarded
      } else {
        ++stats.ok;
        if (!run_.opt.ids_file.empty()) stats.ok_events.push_back(f.n);
      }
    }
    if (!res.keep_alive()) return fail(IoKind::server_close);
    if (!inflight_.empty()) read_one();
    pump();
  }

  // The connection is unusable: count it, forget outstanding requests, and reconnect
  // once the pending read and write have come back.
  void fail(IoKind kind) {
    if (broken_) return;
    broken_ = true;
    connected_ = false;
    if (kind == IoKind::io) ++stats.io_errors;
    if (kind == IoKind::server_close) ++stats.server_closes;
    stats.unanswered += inflight_.size();
    inflight_.clear();
    boost::system::error_code ignored;
    sock_.shutdown(tcp::socket::shutdown_both, ignored);
    sock_.close(ignored);
    after_break();
  }

  void after_break() {
    if (reading_ || writing_) return;  // their handlers call back here
    rbuf_.clear();
    parser_.reset();
    broken_ = false;
    reconnect_later();
  }

  void finish() {
    if (done_) return;
    done_ = true;
    stats.unanswered += inflight_.size();
    inflight_.clear();
    boost::system::error_code ignored;
    timer_.cancel();
    sock_.shutdown(tcp::socket::shutdown_both, ignored);
    sock_.close(ignored);
    run_.conn_done();
  }

  Run& run_;
  tcp::endpoint ep_;
  asio::strand<asio::io_context::executor_type> strand_;
  tcp::socket sock_;
  asio::steady_timer timer_;
  beast::flat_buffer rbuf_;
  std::optional<http::response_parser<http::string_body>> parser_;
  std::string wbuf_;
  std::deque<Inflight> inflight_;
  unsigned backoff_ms_ = 0;
  bool connected_ = false;
  bool broken_ = false;
  bool reading_ = false;
  bool writing_ = false;
  bool aborted_ = false;
  bool done_ = false;
  bool pacing_ = false;  // timer_ waits for the next --rate slot
};

// ---------------------------------------------------------------- report

}  // namespace

int main(int argc, char** argv) {
  auto parsed = parse_args(argc, argv);
  if (!parsed) return 2;
  const Options& opt = *parsed;

  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(opt.host, ec);
  if (ec) {
    fmt::print(stderr, "loadgen: --host must be an IP address literal, got '{}'\n", opt.host);
    return 2;
  }
  const tcp::endpoint ep(addr, static_cast<unsigned short>(opt.port));

  const Signer signer(opt.secret);
  std::string host_hdr = addr.is_v6() ? fmt::format("[{}]:{}", opt.host, opt.port)
                                      : fmt::format("{}:{}", opt.host, opt.port);
  std::optional<WechatBuilder> wechat;
  if (opt.wechat()) {
    std::string why;
    wechat.emplace(opt, *botgate::wechat::AesKey::parse(opt.wechat_aes_key, why), host_hdr);
    if (!wechat->self_check(why)) {
      fmt::print(stderr, "loadgen: internal error: WeChat request self-check: {}\n", why);
      return 1;
    }
  }

  // Signals are caught from here on: one that arrives while events are being prepared is
  // queued and ends the run as soon as it starts, with a summary.
  asio::io_context ioc(static_cast<int>(opt.threads));
  asio::signal_set signals(ioc, SIGINT, SIGTERM);

  const std::uint64_t prep_start = mono_ns();
  Events evs = wechat ? prepare_wechat(opt, *wechat) : prepare(opt, signer);
  const double prep_s = static_cast<double>(mono_ns() - prep_start) / 1e9;

  // The midstate signer must agree with the gateway's own definition of the signature.
  if (!wechat) {
    const Event& e = evs.list[0];
    const std::string body = std::string(evs.body_prefix(e)) + "123456789}";
    char sig[Signer::kHexLength];
    Signer::State st = e.mid;
    Signer::absorb(st, "123456789}");
    signer.finish(st, sig);
    const std::string want = botgate::generic_signature(opt.secret, std::to_string(e.ts), body);
    if (want != "v1=" + std::string(sig, sizeof sig)) {
      fmt::print(stderr, "loadgen: internal error: midstate signature {} != {}\n",
                 std::string_view(sig, 64), want);
      return 1;
    }
  }

  Run run{opt, signer, wechat ? &*wechat : nullptr, evs, ioc, {}, {}, {}, {}, {}, 0, {}};
  run.head = fmt::format(
      "POST /v1/events/{} HTTP/1.1\r\nHost: {}\r\nUser-Agent: botgate-loadgen\r\n"
      "Content-Type: application/json\r\nX-Botgate-Timestamp: ",
      opt.source, host_hdr);

  const unsigned nconn =
      static_cast<unsigned>(std::min<std::uint64_t>(opt.connections, opt.events));
  fmt::print(stderr,
             "loadgen: prepared {} {} in {:.3f}s; target={} source={} connections={} pipeline={} "
             "threads={} run_id={}\n",
             opt.events, wechat ? "encrypted WeChat callbacks" : "events", prep_s, host_hdr,
             wechat ? "/wechat/" + opt.wechat_source : opt.source, nconn, opt.pipeline, opt.threads,
             opt.run_id);
  for (unsigned i = 0; i < nconn; ++i) run.conns.push_back(std::make_unique<Conn>(run, ep));
  run.active = nconn;

  // Duration (or the first SIGINT/SIGTERM), then drain, then a hard stop: the run ends on
  // its own whatever the server does. A second signal skips the drain.
  asio::steady_timer duration_timer(ioc);
  asio::steady_timer drain_timer(ioc);
  asio::steady_timer hard_timer(ioc);
  const auto dur = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(opt.duration_s));
  const auto drain = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(opt.drain_s));
  std::atomic<bool> timed_out{false};
  auto abort_all = [&] {
    for (auto& c : run.conns) c->abort();
  };
  auto begin_drain = [&] {
    if (timed_out.exchange(true)) return;  // once, whichever comes first
    run.stopping = true;
    for (auto& c : run.conns) c->stop_sending();
    drain_timer.expires_after(drain);
    drain_timer.async_wait([&](beast::error_code e) {
      if (!e) abort_all();
    });
    hard_timer.expires_after(drain + std::chrono::seconds(2));
    hard_timer.async_wait([&](beast::error_code e) {
      if (!e) ioc.stop();
    });
  };
  duration_timer.expires_after(dur);
  duration_timer.async_wait([&](beast::error_code e) {
    if (!e) begin_drain();
  });

  std::function<void()> on_signal;
  on_signal = [&] {
    signals.async_wait([&](beast::error_code e, int) {
      if (e) return;
      if (timed_out.load()) return abort_all();
      asio::post(ioc, begin_drain);
      on_signal();
    });
  };
  on_signal();

  run.start_ns = mono_ns();
  for (auto& c : run.conns) c->start();
  std::vector<std::thread> workers;
  for (unsigned i = 1; i < opt.threads; ++i) workers.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (auto& t : workers) t.join();
  const std::uint64_t end_ns = mono_ns();

  // ---- aggregate
  Stats total;
  std::vector<std::uint32_t> lat;
  for (auto& c : run.conns) {
    const Stats& s = c->stats;
    total.sent += s.sent;
    total.responses += s.responses;
    total.ok += s.ok;
    total.not_success += s.not_success;
    total.connect_errors += s.connect_errors;
    total.io_errors += s.io_errors;
    total.server_closes += s.server_closes;
    total.unanswered += s.unanswered;
    total.resigned += s.resigned;
    total.last_response_ns = std::max(total.last_response_ns, s.last_response_ns);
    for (std::size_t i = 0; i < s.status.size(); ++i) total.status[i] += s.status[i];
    lat.insert(lat.end(), s.lat_us.begin(), s.lat_us.end());
  }
  std::sort(lat.begin(), lat.end());
  // Elapsed runs to the last answer, so a drain wait or a stalled connection at the end
  // does not dilute the rate; with no answer at all it is the whole run.
  const std::uint64_t stop_ns = total.last_response_ns ? total.last_response_ns : end_ns;
  const double elapsed = std::max(1e-9, static_cast<double>(stop_ns - run.start_ns) / 1e9);
  const double accepted_per_s = static_cast<double>(total.ok) / elapsed;
  const double responses_per_s = static_cast<double>(total.responses) / elapsed;
  std::map<unsigned, std::uint64_t> non2xx;
  std::uint64_t non2xx_total = 0;
  for (unsigned i = 0; i < total.status.size(); ++i) {
    if (total.status[i] == 0 || (i >= 200 && i < 300)) continue;
    non2xx[i] = total.status[i];
    non2xx_total += total.status[i];
  }
  const std::uint64_t errors = total.connect_errors + total.io_errors + total.server_closes;
  const std::uint32_t p50 = percentile(lat, 0.50), p99 = percentile(lat, 0.99),
                      p999 = percentile(lat, 0.999), pmax = lat.empty() ? 0 : lat.back();

  int rc = 0;
  if (!opt.ids_file.empty()) {
    std::FILE* f = std::fopen(opt.ids_file.c_str(), "w");
    if (!f) {
      fmt::print(stderr, "loadgen: cannot write {}: {}\n", opt.ids_file, std::strerror(errno));
      rc = 1;
    } else {
      std::string line;
      for (auto& c : run.conns) {
        for (std::uint32_t n : c->stats.ok_events) {
          line.clear();
          if (wechat) {
            fmt::format_to(std::back_inserter(line), "{}\n", wechat->msg_id(n));
          } else {
            fmt::format_to(std::back_inserter(line), "{}-{}\n", opt.run_id, n);
          }
          std::fwrite(line.data(), 1, line.size(), f);
        }
      }
      if (std::fclose(f) != 0) rc = 1;
    }
  }

  if (opt.json) {
    std::string codes;
    for (auto& [code, count] : non2xx) {
      fmt::format_to(std::back_inserter(codes), "{}\"{}\":{}", codes.empty() ? "" : ",", code,
                     count);
    }
    fmt::print(
        "{{\"run_id\":\"{}\",\"events\":{},\"connections\":{},\"pipeline\":{},\"threads\":{},"
        "\"sent\":{},\"responses\":{},\"ok_2xx\":{},\"non_2xx\":{},\"non_2xx_by_status\":{{{}}},"
        "\"errors\":{},\"connect_errors\":{},\"io_errors\":{},\"server_closes\":{},\"unanswered\":{"
        "},"
        "\"timed_out\":{},\"elapsed_s\":{:.6f},\"accepted_per_s\":{:.1f},\"responses_per_s\":{:.1f}"
        ","
        "\"ack_p50_us\":{},\"ack_p99_us\":{},\"ack_p999_us\":{},\"ack_max_us\":{}{}}}\n",
        opt.run_id, opt.events, nconn, opt.pipeline, opt.threads, total.sent, total.responses,
        total.ok, non2xx_total, codes, errors, total.connect_errors, total.io_errors,
        total.server_closes, total.unanswered, timed_out ? "true" : "false", elapsed,
        accepted_per_s, responses_per_s, p50, p99, p999, pmax,
        wechat ? fmt::format(",\"mode\":\"wechat\",\"not_success\":{}", total.not_success)
               : std::string());
  } else {
    std::string codes;
    for (auto& [code, count] : non2xx)
      fmt::format_to(std::back_inserter(codes), " {}={}", code, count);
    fmt::print("loadgen summary ({}run_id={}, connections={}, pipeline={}, threads={})\n",
               wechat ? "wechat, " : "", opt.run_id, nconn, opt.pipeline, opt.threads);
    fmt::print("  sent            {}\n", total.sent);
    if (wechat) {
      fmt::print("  200 success     {}\n", total.ok);
      fmt::print("  2xx otherwise   {} (not \"success\": not accepted)\n", total.not_success);
    } else {
      fmt::print("  2xx             {}\n", total.ok);
    }
    fmt::print("  non-2xx         {}{}\n", non2xx_total,
               codes.empty() ? "" : " (" + codes.substr(1) + ")");
    fmt::print("  errors          {} (connect={} io={} server_close={})\n", errors,
               total.connect_errors, total.io_errors, total.server_closes);
    fmt::print("  unanswered      {}\n", total.unanswered);
    fmt::print("  elapsed_s       {:.3f}{}\n", elapsed,
               timed_out ? " (stopped by --duration or a signal)" : "");
    fmt::print("  accepted/s      {:.0f}\n", accepted_per_s);
    fmt::print("  ack latency us  p50={} p99={} p999={} max={}\n", p50, p99, p999, pmax);
    if (total.resigned) fmt::print("  re-signed       {} (timestamp refreshed)\n", total.resigned);
  }
  std::fflush(stdout);
  return rc;
}
