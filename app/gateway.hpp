// Builds the running gateway from a Config: Asio threads, the CAF actor system,
// targets, routers, shards and the HTTP server; runs until SIGTERM/SIGINT, then
// drains. Returns the process exit code.
#pragma once

#include "app/config.hpp"

namespace botgate {

int run_gateway(const Config& config);

}  // namespace botgate
