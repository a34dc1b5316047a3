// A fake chat platform for the dingdong probe: a real HTTP/1.1 server on 127.0.0.1 that
// takes the gateway's "ding" (an event POSTed to an account target) and, like the peer on
// the other end of a real platform, answers it with a signed generic "dong" event POSTed
// to the gateway's /v1/events/<source>. How it answers can be switched at run time.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/client.hpp"

namespace botgate::test {

using namespace std::chrono_literals;

// One POST the platform received: a ding, or an ordinary event routed to this target.
struct PlatformRequest {
  std::chrono::steady_clock::time_point at{};
  std::string method;
  std::string target;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  // For a ding: the nonce of its text "ding <nonce>", else empty.
  std::string ding_nonce;
  // The body's "id" and "text" ("" when absent or not JSON).
  std::string id;
  std::string text;
  int status = 0;  // what the platform answered

  std::string header(const std::string& lower_name) const;
  bool is_ding() const { return !ding_nonce.empty(); }
};

// One dong the platform sent back to the gateway.
struct DongSent {
  std::string ding_nonce;  // the ding it answers
  std::string nonce;       // the nonce in its text "dong <nonce>" (differs when stale/wrong)
  std::string id;          // its event id
  std::chrono::steady_clock::time_point ding_at{};
  std::chrono::steady_clock::time_point sent_at{};
  Response response;  // the gateway's answer
};

enum class PeerMode {
  reply,        // answer every ding at once with its own nonce
  silent,       // never answer
  stale_nonce,  // answer with the nonce of an earlier ding (already answered or expired)
  wrong_nonce,  // answer with a nonce the gateway never sent
  late,         // answer with the right nonce, but only after `late_delay`
};

class FakePlatform {
 public:
  // Binds 127.0.0.1 on an ephemeral port and serves. Dongs are held until set_gateway().
  FakePlatform();
  ~FakePlatform();
  FakePlatform(const FakePlatform&) = delete;
  FakePlatform& operator=(const FakePlatform&) = delete;

  std::uint16_t port() const;
  std::string url(const std::string& path = "/send") const;

  // Where dongs go: POST /v1/events/<source> on 127.0.0.1:<port>, signed with `secret`.
  void set_gateway(std::uint16_t port, std::string source, std::string secret);
  // The conversation and sender of the dongs.
  void set_peer(std::string conversation, std::string sender = "peer");

  void set_mode(PeerMode mode, std::chrono::milliseconds late_delay = 0ms);
  PeerMode mode() const;
  // Status for every POST (dings included); default 200.
  void set_status(int status);

  std::vector<PlatformRequest> requests() const;
  std::vector<PlatformRequest> dings() const;
  std::vector<DongSent> dongs() const;
  std::size_t ding_count() const;
  std::size_t dong_count() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace botgate::test
