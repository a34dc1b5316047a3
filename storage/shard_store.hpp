// Everything one queue shard keeps on disk, under <queue dir>/shard-N/:
//
//   events/   SegmentLog: one event record per accepted event, one completion record once it
//             was delivered or dead-lettered
//   dead/     SegmentLog: one record per dead letter (event, attempts, last error); a completion
//             record once it was replayed
//   dedup/    DedupJournal: (id hash, time) of every completed event, for the dedup window
//
// open() recovers all three (torn or corrupt tails are cut, never fatal) and returns what the
// shard needs to resume: the first events not completed, the ids it must treat as duplicates,
// and the dead letters.
//
// commit() writes everything appended so far, and makes it durable under the fsync mode when
// something waits for that: new events (their acks) or a dead letter. It syncs the dead
// letters first, then the event log, so that an event's completion is never on disk before
// its dead letter. A commit of plain completions alone is only written (write(2)), and synced
// by the next commit that syncs or by collect(), about once a second; the dedup journal is
// written in every commit and synced by collect() only. On a busy shard that saves about half the
// fdatasyncs for the dedup journal and a fifth more for completion-only commits. A kill -9 loses
// none of it (the kernel has it); a power loss can lose the last second of completions and dedup
// entries: those events are delivered again after the restart (same Idempotency-Key), and a
// platform's resend of one of them within the window is too. A duplicate, never a loss.
//
// Not thread-safe: one actor owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "storage/dedup_journal.hpp"
#include "storage/event_record.hpp"
#include "storage/segment_log.hpp"
#include "storage/sync_mode.hpp"

namespace botgate::storage {

// The longest record the logs accept: a body of the largest [server] max_body (64 MiB) twice
// (raw body and extracted text) plus the other fields. Also the sanity limit recovery applies.
inline constexpr std::uint32_t kMaxRecordBytes = 160u << 20;

struct StoreOptions {
  SyncMode sync = SyncMode::batch;
  std::chrono::milliseconds dedup_window{std::chrono::minutes(10)};
  std::uint64_t segment_bytes = 64ull << 20;
  std::uint64_t memory_window = 10000;  // events decoded into Recovered::window at most
};

struct Recovered {
  RecoveryReport events_report;
  RecoveryReport dead_report;
  DedupRecovery dedup_report;
  std::vector<StoredEvent> window;    // the oldest pending events, in sequence order
  std::uint64_t pending = 0;          // every event not completed, including `window`
  std::uint64_t undecodable = 0;      // pending records undecodable or damaged, completed at open
  std::vector<IdHash> pending_ids;    // of every pending event
  std::vector<DedupEntry> completed;  // within the dedup window, oldest first
  std::vector<DeadLetterInfo> dead_letters;  // in the order they were dead-lettered
};

class ShardStore {
 public:
  // Throws std::system_error on I/O errors (including a directory locked by another process).
  static std::unique_ptr<ShardStore> open(const std::filesystem::path& dir, const StoreOptions& o,
                                          Recovered& out);

  SegmentLog& events() noexcept { return *events_; }
  SegmentLog& dead() noexcept { return *dead_; }
  DedupJournal& dedup() noexcept { return *dedup_; }
  SyncMode mode() const noexcept { return mode_; }

  // The completion of an event that was dead-lettered: appended to the event log only in the
  // next commit, after the dead-letter log is synced, so that no early flush of the event log
  // (a full buffer, a read, a collect) can put the completion on disk without its dead letter.
  void complete_dead_letter(std::uint64_t event_seq) { deferred_.push_back(event_seq); }

  // Writes what was appended and syncs it when new events or dead letters are among it
  // (never in mode none); returns whether it synced.
  bool commit();

  // commit(), then sync all three logs whatever commit() left (on the way out).
  void sync_all();

  // After a failure in any of the three logs: none of them writes again, not even what is
  // buffered when they close, and the event and dead-letter logs are cut back to the end of the
  // last commit (SegmentLog::abandon), so events answered "not stored" stay unstored after a
  // restart, even those an early flush (a full buffer, a new segment, a read) had written.
  // Completions and dedup entries lost with it make those events be delivered again after the
  // restart: a duplicate, never a loss.
  void abandon() noexcept {
    events_->abandon();
    dead_->abandon();
    dedup_->abandon();
  }

  // Periodic housekeeping (about once a second): syncs what commits left unsynced
  // (completions, dedup entries), deletes completed segments and expired dedup files.
  // Returns whether it synced the event log.
  bool collect(std::int64_t now_ms);

 private:
  ShardStore() = default;
  bool sync_lazy();  // every log, unless the mode is none; whether the event log synced
  std::unique_ptr<SegmentLog> events_;
  std::unique_ptr<SegmentLog> dead_;
  std::unique_ptr<DedupJournal> dedup_;
  SyncMode mode_ = SyncMode::batch;
  std::vector<std::uint64_t> deferred_;  // see complete_dead_letter
};

}  // namespace botgate::storage
