// Builds the running gateway from a Config: Asio threads, the CAF actor system,
// targets, routers, shards and the HTTP server; runs until SIGTERM/SIGINT/SIGHUP, then
// drains. Returns the process exit code.
#pragma once

#include <signal.h>

#include <cstdint>
#include <vector>

#include "app/config.hpp"

namespace botgate {

// SIGINT, SIGTERM, and SIGHUP unless it was ignored when botgate started (nohup).
std::vector<int> stop_signals();

// Blocks the stop signals in the calling thread and returns them. Called before the
// config is read, so a stop signal that comes while the gateway starts waits for its handler (a
// graceful stop, exit 0) instead of killing the process; run_gateway lifts the block once the
// handler is installed. Threads started after the call inherit the block.
sigset_t block_stop_signals();

int run_gateway(const Config& config);

// Descriptors kept for everything but inbound connections: the process's own (standard
// streams, the listening socket, epoll, wake-up pipes), about a dozen a shard (segments,
// dead-letter log, dedup journal, directories, files closed but not yet synced), and each
// target's max_connections plus one for its probe and one for its access tokens.
std::uint64_t connection_reserve(const Config& config);

// The inbound connection cap: [server] max_connections, lowered to what `open_files` (the
// RLIMIT_NOFILE soft limit) leaves after connection_reserve; 0 when it leaves nothing.
std::uint64_t connection_cap(const Config& config, std::uint64_t open_files);

}  // namespace botgate
