#include "tests/support/fake_platform.hpp"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

#include "tests/support/headers.hpp"
#include "tests/support/mini_server.hpp"

namespace botgate::test {

namespace {

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

  simdjson::dom::parser parser;  // used on the server's io thread only
  std::thread reply_thread;
  std::unique_ptr<MiniServer> server;  // made last, stopped first: handle() uses the above

  // Runs on the server's io thread for every request.
  MiniReply handle(const MiniRequest& m) {
    PlatformRequest r;
    r.at = m.at;
    r.method = m.method;
    r.target = m.target;
    r.headers = m.headers;
    r.body = m.body;
    read_id_and_text(parser, r.body, r.id, r.text);
    if (r.method == "POST" && r.text.rfind("ding ", 0) == 0) r.ding_nonce = r.text.substr(5);
    {
      std::lock_guard lk(mu);
      r.status = status;
      reqs.push_back(r);
    }
    const bool ok = r.status >= 200 && r.status < 300;
    MiniReply reply{
        r.status, "application/json", ok ? R"({"errcode":0})" : R"({"errcode":1})", {}, {}};
    // Like a real peer, the dong comes after the platform took the ding.
    if (r.is_ding() && ok) reply.after_write = [this, r] { on_ding(r); };
    return reply;
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
  impl_->reply_thread = std::thread([impl = impl_.get()] { impl->reply_loop(); });
  impl_->server = std::make_unique<MiniServer>(
      [impl = impl_.get()](const MiniRequest& m) { return impl->handle(m); },
      "botgate-fake-platform");
}

FakePlatform::~FakePlatform() {
  impl_->server.reset();  // no request is handled, and no ding scheduled, after this
  {
    std::lock_guard lk(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->reply_thread.joinable()) impl_->reply_thread.join();
}

std::uint16_t FakePlatform::port() const {
  return impl_->server->port();
}

std::string FakePlatform::url(const std::string& path) const {
  return impl_->server->url(path);
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
