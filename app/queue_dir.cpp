#include "app/queue_dir.hpp"

#include <chrono>
#include <fstream>
#include <string>
#include <system_error>

#include "core/log.hpp"

namespace botgate {
namespace {

namespace fs = std::filesystem;

constexpr const char* kLayoutFile = "botgate-queue";

storage::SyncMode sync_mode(FsyncMode m) {
  switch (m) {
    case FsyncMode::always:
      return storage::SyncMode::always;
    case FsyncMode::none:
      return storage::SyncMode::none;
    case FsyncMode::batch:
      break;
  }
  return storage::SyncMode::batch;
}

// Events are placed by hash(conversation) % shards, so reopening a queue with another shard
// count would break per-conversation order: refuse it.
bool check_layout(const fs::path& dir, int shards) {
  const fs::path file = dir / kLayoutFile;
  const std::string want = "shards=" + std::to_string(shards);
  std::ifstream in(file);
  if (in) {
    std::string have;
    std::getline(in, have);
    if (have == want) return true;
    log::error("queue.shards differs from the queue directory's",
               {{"dir", dir.string()},
                {"config", want},
                {"directory", have},
                {"hint", "deliver the backlog with the old shard count first, or use a new dir"}});
    return false;
  }
  std::ofstream out(file, std::ios::trunc);
  out << want << '\n';
  out.close();
  if (!out) {
    log::error("cannot write the queue directory", {{"file", file.string()}});
    return false;
  }
  return true;
}

void log_truncation(std::size_t shard, std::string_view part, const storage::RecoveryReport& r) {
  if (!r.truncated()) return;
  log::warn("log tail truncated during recovery", {{"shard", shard},
                                                   {"log", part},
                                                   {"reason", storage::to_string(r.reason)},
                                                   {"segment", r.segment.string()},
                                                   {"truncated_at", r.truncated_at},
                                                   {"truncated_bytes", r.truncated_bytes},
                                                   {"segments_deleted", r.segments_deleted}});
}

}  // namespace

std::optional<std::vector<OpenedShard>> open_queue(const QueueConfig& q) {
  const fs::path root(q.dir);
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) {
    log::error("cannot create the queue directory", {{"dir", q.dir}, {"error", ec.message()}});
    return std::nullopt;
  }
  if (!check_layout(root, q.shards)) return std::nullopt;

  storage::StoreOptions opts;
  opts.sync = sync_mode(q.fsync);
  opts.dedup_window = std::chrono::duration_cast<std::chrono::milliseconds>(q.dedup_window);
  opts.segment_bytes = q.segment_bytes;
  opts.memory_window = q.memory_window;

  std::vector<OpenedShard> out;
  for (int i = 0; i < q.shards; ++i) {
    const auto index = static_cast<std::size_t>(i);
    const fs::path dir = root / ("shard-" + std::to_string(i));
    const auto t0 = std::chrono::steady_clock::now();
    auto rec = std::make_shared<storage::Recovered>();
    try {
      out.push_back(OpenedShard{
          std::shared_ptr<storage::ShardStore>(storage::ShardStore::open(dir, opts, *rec)), rec});
    } catch (const std::exception& e) {
      log::error("cannot open the shard log",
                 {{"shard", index}, {"dir", dir.string()}, {"error", e.what()}});
      return std::nullopt;
    }
    log_truncation(index, "events", rec->events_report);
    log_truncation(index, "dead", rec->dead_report);
    if (rec->dedup_report.entries_corrupt > 0) {
      log::warn("dedup journal records skipped during recovery",
                {{"shard", index}, {"corrupt", rec->dedup_report.entries_corrupt}});
    }
    if (rec->undecodable > 0) {
      log::error("undecodable event records dropped during recovery",
                 {{"shard", index}, {"records", rec->undecodable}});
    }
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    log::info("shard log recovered", {{"shard", index},
                                      {"pending", rec->pending},
                                      {"dead_letters", rec->dead_letters.size()},
                                      {"dedup_ids", rec->completed.size()},
                                      {"records", rec->events_report.records_scanned},
                                      {"ms", ms}});
  }
  return out;
}

}  // namespace botgate
