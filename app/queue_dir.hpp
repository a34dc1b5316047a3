// Opens the durable queue at start-up: checks that the directory was written with the same
// shard count, then opens and recovers each shard's store, logging what recovery found.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "app/config.hpp"
#include "storage/shard_store.hpp"

namespace botgate {

struct OpenedShard {
  std::shared_ptr<storage::ShardStore> store;
  std::shared_ptr<storage::Recovered> recovered;
};

// nullopt (after logging why) when the queue cannot be opened.
std::optional<std::vector<OpenedShard>> open_queue(const QueueConfig& q);

}  // namespace botgate
