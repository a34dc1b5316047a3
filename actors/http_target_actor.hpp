// One HTTP backend as an actor: POSTs an event through the transport's keep-alive
// client and answers the sender with the Outcome. It never blocks; the socket work
// happens on the Asio side and comes back as a done message.
#pragma once

#include <boost/unordered/unordered_flat_map.hpp>
#include <memory>
#include <string>

#include "actors/messages.hpp"
#include "actors/outbox.hpp"
#include "core/log_throttle.hpp"
#include "core/metrics.hpp"

namespace botgate {

struct HttpTargetState {
  static inline const char* name = "http-target";
  std::string target_name;
  std::string path;
  std::shared_ptr<http::HttpClient> client;
  TargetMetrics* metrics = nullptr;
  std::uint64_t next_job = 0;
  // Who asked, and their ticket, per HTTP exchange in progress.
  struct Waiting {
    caf::strong_actor_ptr reply_to;
    std::uint64_t ticket = 0;
    std::uint64_t leg = 0;
  };
  boost::unordered_flat_map<std::uint64_t, Waiting> waiting;  // no allocation per exchange
  ResultOutbox results;                                       // answers of this burst, per asker
  bool flush_queued = false;
  log::Throttle body_dropped;  // "answer body over max_response_body" lines, one a second
};

target_actor::behavior_type http_target(target_actor::stateful_pointer<HttpTargetState> self,
                                        std::string name, std::string path,
                                        std::shared_ptr<http::HttpClient> client,
                                        TargetMetrics* metrics);

}  // namespace botgate
