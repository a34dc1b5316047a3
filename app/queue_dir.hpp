// Opens the durable queue at start-up: locks the directory (one botgate per queue), checks
// that it was written with the same shard count, then opens and recovers each shard's store,
// logging what recovery found. A new directory records its shard count only once every shard
// opened, so a failed first start does not pin a count that never held an event.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "app/config.hpp"
#include "storage/file_io.hpp"
#include "storage/shard_store.hpp"

namespace botgate {

struct OpenedShard {
  std::shared_ptr<storage::ShardStore> store;
  std::shared_ptr<storage::Recovered> recovered;
};

struct OpenedQueue {
  std::unique_ptr<storage::io::Fd> lock;  // flock on the directory: keep it while running
  std::vector<OpenedShard> shards;
};

// nullopt (after logging why) when the queue cannot be opened.
std::optional<OpenedQueue> open_queue(const QueueConfig& q);

}  // namespace botgate
