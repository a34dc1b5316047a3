// A shard's log: a detached actor (its own thread) that owns the shard's ShardStore and does
// all of its blocking disk I/O, so the shard actor never waits on a disk.
//
// Group commit: an append is buffered and, if no commit is scheduled yet, a `commit` message
// is sent to self. It queues behind every message already in the mailbox, and while a commit
// (write + fdatasync) runs, new appends pile up in the mailbox. So each commit covers every
// append that arrived before it ran, and one fdatasync covers the whole batch. After the
// commit the shard gets one `stored` message with the batch's sequence numbers, in order.
// Under sustained load, commits of events sync at most once per [queue] commit_interval: one due
// sooner sleeps out the rest and queues itself again, behind the appends that came meanwhile.
// fsync = always commits after each append; fsync = none commits with write(2) only.
//
// Completions (delivered or dead-lettered events) ride along in the next commit; nobody waits
// for them. After an I/O error the store is unusable: every later append is answered with the
// error, so the shard refuses events instead of acking what it cannot store. A record found
// damaged when read back is not such an error: it is logged, counted
// (botgate_log_records_damaged_total) and completed, and costs that event (or dead letter) only.
//
// Disk space: while the queue's filesystem has less than [queue] min_free left, new events are
// refused (their seq in the commit is 0, with no error) and everything else is still written, so
// the backlog's completions free the disk again (storage/disk_room.hpp).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

#include "actors/messages.hpp"
#include "core/log_throttle.hpp"
#include "core/metrics.hpp"
#include "storage/disk_room.hpp"
#include "storage/shard_store.hpp"

namespace botgate {

struct ShardLogOptions {
  Duration commit_interval{};  // [queue] commit_interval; only batch mode holds (hold_commit)
  std::uint64_t min_free = 0;  // [queue] min_free: no new events below it (storage/disk_room.hpp)
  // Called once, on the log's thread, when the log has probed the disk and published its state
  // (botgate_queue_disk_full): /readyz waits for every shard's.
  std::function<void()> started;
};

struct ShardLogState {
  static inline const char* name = "shard-log";
  std::shared_ptr<storage::ShardStore> store;
  shard_actor shard;
  Metrics* metrics = nullptr;
  std::size_t index = 0;
  std::vector<std::uint64_t> batch;  // seqs of the appends since the last commit (0: not stored)
  // Dead letters taken for a replay: by the replayed event's id, until its append; then
  // `replayed` until the commit that makes that append durable. One id can have several dead
  // letters (sent again after the dedup window), replayed at once: each append retires one.
  std::unordered_multimap<storage::IdHash, std::uint64_t, storage::IdHashHasher> replaying;
  std::vector<std::uint64_t> replayed;
  bool commit_scheduled = false;
  Duration commit_interval{};             // as configured; only batch mode holds (hold_commit)
  std::optional<storage::DiskRoom> room;  // room for new events on the queue's filesystem
  bool disk_full = false;                 // refusing new events for want of space
  Clock::time_point last_sync_start;      // of the latest commit that synced
  std::string failure;                    // set once the store failed
  std::uint64_t last_seq = 0;             // highest event seq appended
  std::uint64_t committed_seq = 0;        // highest event seq a finished commit covered
  std::map<std::uint64_t, DeadLetterInfo> dead;  // by seq in the dead-letter log
  std::string scratch;                           // reused encoding buffer
  log::Throttle read_put_off;                    // "read back put off" lines, one a second
  caf::error exit_reason;                        // set by an exit signal; see `stop`
};

shard_log_actor::behavior_type shard_log(shard_log_actor::stateful_pointer<ShardLogState> self,
                                         std::shared_ptr<storage::ShardStore> store,
                                         shard_actor shard, Metrics* metrics, std::size_t index,
                                         ShardLogOptions options, DeadLetterList dead);

}  // namespace botgate
