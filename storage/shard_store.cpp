#include "storage/shard_store.hpp"

#include <algorithm>
#include <chrono>
#include <utility>

namespace botgate::storage {
namespace fs = std::filesystem;

namespace {

constexpr std::size_t kScanChunk = 4096;

// Calls fn(record) for every pending record of `log`, reading it back in chunks so a large
// backlog never sits in memory at once. Records found damaged (recovery has just skipped those it
// found: only damage since then) are added to `damaged`.
template <typename Fn>
void scan_pending(SegmentLog& log, std::vector<std::uint64_t>& damaged, Fn fn) {
  std::uint64_t after = 0;
  std::vector<DamagedRecord> bad;
  while (true) {
    bad.clear();
    auto chunk = log.read_pending(after, UINT64_MAX, kScanChunk, bad);
    if (chunk.empty() && bad.empty()) return;
    for (const auto& b : bad) damaged.push_back(b.seq);
    after = std::max(chunk.empty() ? 0 : chunk.back().seq, bad.empty() ? 0 : bad.back().seq);
    for (auto& rec : chunk) fn(rec);
  }
}

}  // namespace

std::unique_ptr<ShardStore> ShardStore::open(const fs::path& dir, const StoreOptions& o,
                                             Recovered& out) {
  out = Recovered{};
  std::unique_ptr<ShardStore> store(new ShardStore());
  store->mode_ = o.sync;
  Options log_opts;
  log_opts.segment_bytes = o.segment_bytes;
  log_opts.max_record_bytes = kMaxRecordBytes;
  log_opts.synced = o.sync != SyncMode::none;
  store->events_ = SegmentLog::open(dir / "events", log_opts, out.events_report);
  store->dead_ = SegmentLog::open(dir / "dead", log_opts, out.dead_report);
  const auto now_wall = std::chrono::system_clock::now();
  const auto now_steady = Clock::now();
  store->dedup_ = DedupJournal::open(dir / "dedup", o.dedup_window, to_unix_ms(now_wall),
                                     out.completed, out.dedup_report);

  std::vector<std::uint64_t> undecodable;
  scan_pending(*store->events_, undecodable, [&](Record& rec) {
    auto ev = decode_event(rec.payload, now_steady, now_wall);
    if (!ev) {
      undecodable.push_back(rec.seq);
      return;
    }
    ++out.pending;
    out.pending_ids.push_back(hash_id(ev->source, ev->id));
    if (out.window.size() < o.memory_window)
      out.window.push_back(StoredEvent{std::make_shared<const Event>(std::move(*ev)), rec.seq});
  });
  // A record that passed its CRC but does not decode comes from an incompatible version: it can
  // never be delivered, so it is completed rather than left to pin its segment forever. So is one
  // damaged since recovery.
  for (std::uint64_t seq : undecodable) store->events_->append_completion(seq);
  out.undecodable = undecodable.size();

  std::vector<std::uint64_t> dead_damaged;  // left as they are, like those that do not decode
  scan_pending(*store->dead_, dead_damaged, [&](Record& rec) {
    auto dl = decode_dead_letter(rec.payload, now_steady, now_wall);
    if (!dl) return;
    out.dead_letters.push_back(
        DeadLetterInfo::of(rec.seq, dl->event, dl->attempts, std::move(dl->error), dl->dead_at_ms));
  });
  if (!undecodable.empty()) store->commit();
  return store;
}

bool ShardStore::commit() {
  // Acks wait for new events; a dead letter's completion waits for the dead letter. A commit
  // of completions alone has neither, so it only writes: see the comment in the header.
  const bool sync =
      mode_ != SyncMode::none && (events_->has_unsynced_events() || !deferred_.empty());
  const auto settle = [sync](SegmentLog& log) { sync ? (void)log.sync() : log.flush(); };
  settle(*dead_);
  for (std::uint64_t seq : deferred_) events_->append_completion(seq);
  deferred_.clear();
  dedup_->flush();  // synced by collect(), at most a second later
  settle(*events_);
  dead_->mark_committed();
  events_->mark_committed();
  return sync;
}

bool ShardStore::sync_lazy() {
  if (mode_ == SyncMode::none) return false;
  dead_->sync();
  const bool synced = events_->sync();
  dedup_->sync();
  return synced;
}

void ShardStore::sync_all() {
  commit();
  sync_lazy();
}

bool ShardStore::collect(std::int64_t now_ms) {
  const bool synced = sync_lazy();
  events_->collect();
  dead_->collect();
  dedup_->expire(now_ms);
  return synced;
}

}  // namespace botgate::storage
