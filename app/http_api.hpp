// The HTTP endpoints: maps each request to its handler (health, metrics, signed
// events) and turns codec and shard answers into status codes. Transport-free
// logic lives here so transport/ stays about bytes and connections.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>

#include "actors/dingdong.hpp"
#include "actors/router_set.hpp"
#include "actors/shard_set.hpp"
#include "app/callback_api.hpp"
#include "app/config.hpp"
#include "app/http_util.hpp"
#include "core/hash.hpp"
#include "core/metrics.hpp"
#include "transport/http_server.hpp"
#include "transport/signature.hpp"

namespace botgate {

class HttpApi {
 public:
  // `dings` may be null (no dingdong probe configured).
  HttpApi(const Config& config, Metrics& metrics, const ShardSet& shards, const RouterSet& routers,
          DingRegistry* dings, const std::atomic<bool>& ready, boost::asio::io_context& ioc);

  void handle(http::Request&& req, http::Responder respond) const;
  // A request (or connection) the server refused before handle(): counted under the route of
  // its `target` (empty before the request line was read, or for a connection: "unknown").
  void on_refusal(http::Refusal why, const std::string& peer, std::string_view target) const;

 private:
  void ingest(http::Request&& req, std::string_view source, http::Responder respond) const;
  // Counts the request by route and status, then answers.
  void send(HttpRoute route, unsigned status, std::string body, const http::Responder& respond,
            std::string_view type = "application/json") const;
  void method_not_allowed(HttpRoute route, std::string_view allow, std::string_view path,
                          const http::Responder& respond) const;
  void admin(http::Request&& req, std::string_view path, http::Responder respond) const;
  void list_dead_letters(const http::Request& req, http::Responder respond) const;
  void list_targets(http::Responder respond) const;
  // POST /v1/messages: queue a message for sending through an account pool.
  void send_message(http::Request&& req, http::Responder respond) const;
  // An inbound dong answers a dingdong probe and is not queued; true when `ev` was one.
  bool claim_probe_answer(const Event& ev, const http::Responder& respond) const;
  void replay_dead_letter(const http::Request& req, std::string id, http::Responder respond) const;
  // Lists the dead letters, picks the oldest copy of `id` and replays it; if a concurrent
  // replay took that copy first, goes round again. `rounds_left` counts this round; 0 on
  // the first call, which sets it to the number of copies listed.
  using Finish = std::function<void(unsigned status, std::string body)>;
  void replay_oldest(std::string id, std::string source, Finish finish,
                     std::size_t rounds_left) const;
  void reject(RejectReason why, unsigned status, std::string_view source, std::string_view detail,
              const http::Responder& respond) const;

  // Generic sources by name, each with its secret keyed once for HMAC.
  struct GenericSource {
    const SourceConfig* config;
    HmacSha256 mac;
  };
  std::unordered_map<std::string, GenericSource, StringHash, std::equal_to<>> sources_;
  std::unordered_map<std::string, bool> pools_;  // pool name -> holds account targets
  CallbackApi callbacks_;
  BearerToken admin_token_;  // empty: every admin request is refused
  Metrics& metrics_;
  const ShardSet& shards_;
  const RouterSet& routers_;
  DingRegistry* dings_;
  const std::atomic<bool>& ready_;
};

}  // namespace botgate
