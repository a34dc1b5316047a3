// The usual integration-test rig: a temp dir, one real backend, and botgate on make_config(o)
// with that backend as its target, after `change` has set the options the test is about.
#pragma once

#include <memory>

#include "tests/support/gateway.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/test_backend.hpp"

namespace botgate::test {

struct OneBackendGateway {
  template <typename Change>
  explicit OneBackendGateway(Change change) {
    o.backend_ports = {backend.port()};
    change(o);
    gw = std::make_unique<Gateway>(botgate_binary(), dir, make_config(o));
  }
  std::uint16_t port() { return gw->port(); }

  TempDir dir;
  TestBackend backend;
  GatewayOptions o;
  std::unique_ptr<Gateway> gw;
};

}  // namespace botgate::test
