// The pools' routers, as the admin API sees them.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "actors/gather.hpp"
#include "actors/messages.hpp"

namespace botgate {

class RouterSet {
 public:
  RouterSet(caf::actor_system& sys, std::vector<router_actor> routers)
      : sys_(sys), routers_(std::move(routers)) {}

  // Every pool's status, in no particular order; `done` runs once, on an actor thread. A
  // non-empty error names a router that did not answer.
  void status(std::function<void(PoolStatuses, std::string)> done) const {
    gather<PoolStatus>(sys_, routers_, std::move(done), status_atom::value);
  }

  const std::vector<router_actor>& routers() const noexcept { return routers_; }

 private:
  caf::actor_system& sys_;
  std::vector<router_actor> routers_;
};

}  // namespace botgate
