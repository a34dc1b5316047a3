// When the shard logs make an append durable: [queue] fsync.
#pragma once

#include <optional>
#include <string_view>

namespace botgate::storage {

// batch: one fdatasync per group commit; always: one per append; none: write(2) only.
enum class SyncMode { batch, always, none };

constexpr std::optional<SyncMode> parse_sync_mode(std::string_view s) noexcept {
  if (s == "batch") return SyncMode::batch;
  if (s == "always") return SyncMode::always;
  if (s == "none") return SyncMode::none;
  return std::nullopt;
}

constexpr std::string_view to_string(SyncMode m) noexcept {
  switch (m) {
    case SyncMode::always:
      return "always";
    case SyncMode::none:
      return "none";
    case SyncMode::batch:
      break;
  }
  return "batch";
}

}  // namespace botgate::storage
