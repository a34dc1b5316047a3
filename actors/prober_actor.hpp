// One health prober per probed target. On an interval (with jitter) it runs one probe with a
// timeout: an http GET, or a dingdong round trip through the target (dingdong.hpp). The results
// go through HealthState's rise/fall thresholds; every result goes to each router that has the
// target (for GET /v1/targets), and a change of health is also logged and counted.
#pragma once

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "actors/dingdong.hpp"
#include "actors/messages.hpp"
#include "actors/probe_options.hpp"
#include "core/metrics.hpp"
#include "policies/health.hpp"

namespace botgate {

// What a probe kind needs: http, a client on the target's host; dingdong, the target actor the
// ding goes through and the registry where the dong comes back.
struct ProbeChannel {
  std::shared_ptr<http::HttpClient> client;
  target_actor via;
  std::shared_ptr<DingRegistry> registry;
};

struct ProberState {
  static inline const char* name = "prober";
  std::string target;
  ProbeOptions options;
  HealthState health;
  std::vector<router_actor> routers;
  TargetMetrics* metrics = nullptr;
  ProbeChannel channel;
  std::uint64_t round = 0;  // the probe being run, or the last one
  bool probing = false;
  Clock::time_point started{};
  std::string nonce;       // dingdong: the outstanding ding's
  bool ding_sent = false;  // dingdong: the target took the ding
  std::mt19937_64 rng{std::random_device{}()};
};

prober_actor::behavior_type prober(prober_actor::stateful_pointer<ProberState> self,
                                   std::string target, ProbeOptions options,
                                   std::vector<router_actor> routers, TargetMetrics* metrics,
                                   ProbeChannel channel);

}  // namespace botgate
