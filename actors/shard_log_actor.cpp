#include "actors/shard_log_actor.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <optional>
#include <thread>

#include "core/log.hpp"
#include "storage/file_io.hpp"

namespace botgate {
namespace {

using Self = shard_log_actor::stateful_pointer<ShardLogState>;

// The store is unusable from now on (see SegmentLog: a failed write or fdatasync leaves the
// tail unknown). Logged once; every later append is answered with the error.
void fail(Self self, const std::exception& e) {
  auto& st = self->state;
  st.metrics->log_errors().inc();
  if (st.failure.empty()) {
    st.failure = e.what();
    st.store->abandon();  // what the failed commit buffered is answered "not stored"
    log::error("shard log failed: refusing events", {{"shard", st.index}, {"error", st.failure}});
  }
}

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// Enters or leaves the state of refusing new events for want of disk space: one line each way.
void note_disk_full(Self self, bool full) {
  auto& st = self->state;
  if (full == st.disk_full) return;
  st.disk_full = full;
  st.metrics->shards_disk_full().add(full ? 1 : -1);
  const std::uint64_t free = st.room->free_bytes();
  if (full) {
    log::warn("queue disk low: refusing new events",
              {{"shard", st.index}, {"free_bytes", free}, {"min_free", st.room->min_free()}});
  } else {
    log::info("queue disk has room again: taking events",
              {{"shard", st.index}, {"free_bytes", free}, {"min_free", st.room->min_free()}});
  }
}

// Queues a `commit` behind the mailbox unless one is queued already.
void request_commit(Self self) {
  auto& st = self->state;
  if (st.commit_scheduled) return;
  st.commit_scheduled = true;
  self->send(self, commit_atom::value);
}

bool being_replayed(const ShardLogState& st, std::uint64_t dseq) {
  return std::any_of(st.replaying.begin(), st.replaying.end(),
                     [&](const auto& kv) { return kv.second == dseq; }) ||
         std::find(st.replayed.begin(), st.replayed.end(), dseq) != st.replayed.end();
}

// fsync = batch under sustained load: a commit of new events due less than `commit_interval`
// after the previous sync started waits out the rest (this is the log's own thread), then
// queues itself again behind the appends that arrived meanwhile, so one fdatasync covers them
// too. Each fdatasync costs this VM about 70 us of CPU and a few interrupts and wake-ups
// whatever it carries, so bigger batches leave more CPU for the events. A commit after a
// quiet spell is not held: the interval only spaces syncs that would follow each other.
// Nothing is held in the other modes, with no test for them here: `always` commits each append
// at once, so a queued commit finds no batch, and `none` never syncs, so no sync is recent.
bool hold_commit(Self self) {
  auto& st = self->state;
  if (st.batch.empty() || !st.failure.empty()) return false;
  const auto due = st.last_sync_start + st.commit_interval;
  if (Clock::now() >= due) return false;
  std::this_thread::sleep_until(due);
  self->send(self, commit_atom::value);  // commit_scheduled stays set
  return true;
}

void commit(Self self) {
  auto& st = self->state;
  st.commit_scheduled = false;
  if (st.failure.empty()) {
    const auto t0 = Clock::now();
    try {
      if (st.store->commit()) {
        st.last_sync_start = t0;
        st.metrics->log_syncs().inc();
      }
      st.metrics->log_commits().inc();
      const auto refused = std::count(st.batch.begin(), st.batch.end(), std::uint64_t{0});
      const auto stored = st.batch.size() - static_cast<std::size_t>(refused);
      if (stored > 0) st.metrics->log_event_commits().inc();
      st.metrics->log_committed_events().inc(stored);
      st.metrics->log_commit_latency().observe(Clock::now() - t0);
      st.committed_seq = st.last_seq;
    } catch (const std::exception& e) {
      fail(self, e);
    }
  }
  if (!st.batch.empty()) {
    self->send(st.shard, stored_atom::value, Commit{std::move(st.batch), st.failure});
    st.batch.clear();
  }
  // Dead letters whose events this commit made durable leave the dead-letter log (synced by
  // the next commit that syncs, or within a second by housekeeping: a power loss before that
  // replays them again, a duplicate, never a loss).
  if (!st.replayed.empty() && st.failure.empty()) {
    auto done = std::move(st.replayed);
    st.replayed.clear();
    try {
      for (std::uint64_t dseq : done) {
        st.store->dead().append_completion(dseq);
        if (st.dead.erase(dseq) > 0) st.metrics->dead_letters().add(-1);
      }
    } catch (const std::exception& e) {
      fail(self, e);
    }
    request_commit(self);
  }
}

void schedule_commit(Self self) {
  auto& st = self->state;
  if (st.store->mode() == storage::SyncMode::always) return commit(self);
  request_commit(self);
}

void append(Self self, const EventPtr& ev, bool headroom) {
  auto& st = self->state;
  std::uint64_t seq = 0;
  if (st.failure.empty()) {
    try {
      st.scratch.clear();
      storage::encode_event(*ev, st.scratch);
      const bool room =
          headroom || st.room->admit(st.scratch.size() + storage::kRecordHeaderBytes, steady_ns());
      // Below min_free is a state (one line each way); one event too big for what is left above
      // it is only refused.
      note_disk_full(self, st.room->full());
      // A replayed dead letter leaves `replaying` here: once its append is durable it retires
      // (`replayed`), and when refused it is a dead letter as before, listed and replayable.
      std::optional<std::uint64_t> replayed;
      if (!st.replaying.empty()) {
        if (auto r = st.replaying.find(storage::hash_id(ev->source, ev->id));
            r != st.replaying.end()) {
          replayed = r->second;
          st.replaying.erase(r);
        }
      }
      if (!room) {
        st.batch.push_back(0);  // refused, with no error: the shard answers "disk full"
        return schedule_commit(self);
      }
      seq = st.store->events().append_event(st.scratch);
      st.last_seq = seq;
      if (replayed) st.replayed.push_back(*replayed);
    } catch (const std::exception& e) {
      fail(self, e);
    }
  }
  st.batch.push_back(st.failure.empty() ? seq : 0);
  schedule_commit(self);
}

void complete(Self self, const Completion& c) {
  auto& st = self->state;
  if (!st.failure.empty()) return;
  try {
    if (c.dead) {
      const auto payload = storage::encode_dead_letter(*c.dead, c.attempts, c.at_ms, c.error);
      const std::uint64_t dseq = st.store->dead().append_event(payload);
      auto info = DeadLetterInfo::of(dseq, *c.dead, c.attempts, c.error, c.at_ms);
      info.shard = st.index;
      st.dead.emplace(dseq, std::move(info));
      st.metrics->dead_letters().add(1);
    }
    st.store->dedup().append(storage::DedupEntry{c.id, c.at_ms});
    if (c.dead) {
      st.store->complete_dead_letter(c.seq);
    } else {
      st.store->events().append_completion(c.seq);
    }
  } catch (const std::exception& e) {
    fail(self, e);
  }
  request_commit(self);
}

// A pending record of `log` found damaged on disk when read back: one line and a count each.
void note_damaged(Self self, std::string_view which, const storage::DamagedRecord& d) {
  auto& st = self->state;
  st.metrics->log_records_damaged().inc();
  log::error(
      "damaged log record skipped",
      {{"shard", st.index}, {"log", which}, {"seq", d.seq}, {"segment", d.segment.string()}});
}

// Event `seq` read back can never be delivered (damaged, or it does not decode): it is completed,
// so it is not read again and its segment can go, and the shard gets it as an entry without an
// event, so it stops counting it.
void drop_read_back(Self self, std::uint64_t seq, StoredEvents& out) {
  self->state.store->events().append_completion(seq);
  out.push_back(StoredEvent{nullptr, seq});
  request_commit(self);
}

// Reads committed events back with `read_records` (a SegmentLog read, reporting the records it
// found damaged), decoded.
template <typename ReadRecords>
StoredEvents read_back(Self self, ReadRecords read_records) {
  auto& st = self->state;
  StoredEvents out;
  if (!st.failure.empty()) return out;
  try {
    const auto now_wall = std::chrono::system_clock::now();
    const auto now_steady = Clock::now();
    std::vector<storage::DamagedRecord> damaged;
    for (auto& rec : read_records(st.store->events(), damaged)) {
      if (auto ev = storage::decode_event(rec.payload, now_steady, now_wall)) {
        out.push_back(StoredEvent{std::make_shared<const Event>(std::move(*ev)), rec.seq});
      } else {
        log::error("undecodable event record skipped", {{"shard", st.index}, {"seq", rec.seq}});
        drop_read_back(self, rec.seq, out);
      }
    }
    // Damage found at run time costs the record only, as at recovery: the log goes on.
    for (const auto& d : damaged) {
      note_damaged(self, "events", d);
      drop_read_back(self, d.seq, out);
    }
    // In sequence order, the damaged among the others: the shard takes a conversation's
    // events back in its order.
    if (!damaged.empty()) {
      std::sort(out.begin(), out.end(),
                [](const StoredEvent& a, const StoredEvent& b) { return a.seq < b.seq; });
    }
  } catch (const std::exception& e) {
    // A read leaves the log as it was: out of descriptors, the shard asks again on its tick.
    if (!storage::io::out_of_descriptors(e)) {
      fail(self, e);
    } else {
      log::warn_throttled(st.read_put_off, "read back put off: out of file descriptors",
                          {{"shard", st.index}});
    }
  }
  return out;
}

StoredEvents read(Self self, std::uint64_t after, std::uint64_t max) {
  const std::uint64_t upto = self->state.committed_seq;
  return read_back(self, [&](storage::SegmentLog& log, std::vector<storage::DamagedRecord>& bad) {
    return log.read_pending(after, upto, max, bad);
  });
}

// The listed events (a conversation's, in increasing order), committed and not completed.
StoredEvents read(Self self, const SeqList& list) {
  const std::uint64_t upto = self->state.committed_seq;
  return read_back(self, [&](storage::SegmentLog& log, std::vector<storage::DamagedRecord>& bad) {
    std::vector<storage::Record> out;
    for (std::uint64_t seq : list.seqs) {
      if (seq > upto) break;
      for (auto& r : log.read_pending(seq - 1, seq, 1, bad)) out.push_back(std::move(r));
    }
    return out;
  });
}

// Reads dead letter (source, id) back for a replay. Nothing is written here: the shard
// appends the event like a new one, and the dead letter is retired once that append is
// durable (see append and commit). A dead letter already being replayed is not found; a
// failed log is an error (the caller answers 503), not "not found".
caf::result<StoredEvent> take(Self self, const std::string& source, const std::string& id) {
  auto& st = self->state;
  if (!st.failure.empty()) return caf::make_error(caf::sec::runtime_error, st.failure);
  auto it = std::find_if(st.dead.begin(), st.dead.end(), [&](const auto& kv) {
    return kv.second.id == id && (source.empty() || kv.second.source == source) &&
           !being_replayed(st, kv.first);
  });
  if (it == st.dead.end()) return StoredEvent{};
  const std::uint64_t dseq = it->first;
  std::optional<storage::DeadLetter> dl;
  try {
    std::vector<storage::DamagedRecord> damaged;  // then unreadable, like one that does not decode
    auto recs = st.store->dead().read_pending(dseq - 1, dseq, 1, damaged);
    for (const auto& d : damaged) note_damaged(self, "dead", d);
    if (!recs.empty()) {
      dl = storage::decode_dead_letter(recs.front().payload, Clock::now(),
                                       std::chrono::system_clock::now());
    }
  } catch (const std::exception& e) {
    if (storage::io::out_of_descriptors(e)) {
      return caf::make_error(caf::sec::runtime_error, std::string("out of file descriptors"));
    }
    fail(self, e);
    return caf::make_error(caf::sec::runtime_error, st.failure);
  }
  if (!dl) {
    log::error("dead letter unreadable", {{"shard", st.index}, {"id", id}});
    return StoredEvent{};
  }
  // A replay is a fresh start: its age (for max_age) counts from now.
  dl->event.received_at = Clock::now();
  dl->event.received_wall = std::chrono::system_clock::now();
  auto ev = std::make_shared<const Event>(std::move(dl->event));
  st.replaying.emplace(storage::hash_id(ev->source, ev->id), dseq);
  return StoredEvent{std::move(ev), 0};
}

}  // namespace

shard_log_actor::behavior_type shard_log(Self self, std::shared_ptr<storage::ShardStore> store,
                                         shard_actor shard, Metrics* metrics, std::size_t index,
                                         ShardLogOptions options, DeadLetterList dead) {
  auto& st = self->state;
  st.commit_interval = options.commit_interval;
  st.store = std::move(store);
  st.shard = std::move(shard);
  st.metrics = metrics;
  st.index = index;
  st.room.emplace(options.min_free,
                  [dir = st.store->events().dir()] { return storage::io::free_bytes(dir); });
  st.room->probe(steady_ns());
  note_disk_full(self, st.room->full());
  st.last_seq = st.committed_seq = st.store->events().next_seq() - 1;
  for (auto& d : dead) {
    d.shard = index;
    st.dead.emplace(d.seq, std::move(d));
  }
  metrics->dead_letters().add(static_cast<std::int64_t>(st.dead.size()));
  // An exit signal (the linked shard stopped) jumps the mailbox queue. Appends and
  // completions the shard sent before it stopped are still in the mailbox: handle them,
  // commit, and only then quit, so a graceful stop forgets no completion.
  self->set_exit_handler([self](caf::exit_msg& msg) {
    self->state.exit_reason = std::move(msg.reason);
    self->send(self, stop_atom::value);
  });
  self->delayed_send(self, kHousekeepingInterval, tick_atom::value);
  if (options.started) options.started();
  return {
      [self](append_atom, EventBatch& events) {
        for (const auto& a : events) append(self, a.ev, a.headroom);
      },
      [self](done_atom, Completions& done) {
        for (const auto& c : done) complete(self, c);
      },
      [self](commit_atom) {
        if (!hold_commit(self)) commit(self);
      },
      [self](stop_atom) {
        commit(self);
        if (self->state.failure.empty()) {
          try {
            self->state.store->sync_all();
          } catch (const std::exception& e) {
            fail(self, e);
          }
        }
        self->quit(self->state.exit_reason);
      },
      [self](tick_atom) {
        if (self->state.failure.empty()) {
          try {
            // What commits left unsynced (completions alone) is synced here.
            if (self->state.store->collect(storage::unix_now_ms()))
              self->state.metrics->log_syncs().inc();
          } catch (const std::exception& e) {
            fail(self, e);
          }
          // Space freed by that collect, or taken by anyone else, is taken into account.
          self->state.room->probe(steady_ns());
          note_disk_full(self, self->state.room->full());
        }
        self->delayed_send(self, kHousekeepingInterval, tick_atom::value);
      },
      [self](read_atom, std::uint64_t after, std::uint64_t max) { return read(self, after, max); },
      [self](read_atom, const SeqList& seqs) { return read(self, seqs); },
      [self](take_atom, const std::string& source, const std::string& id) {
        return take(self, source, id);
      },
      [self](list_atom, std::uint64_t limit) {
        // A dead letter taken for replay is an event again, even before its retirement
        // is durable: listing it would offer it to a second replay, which cannot take it.
        // Once the log has failed no replay completes, and every copy on disk is listed.
        const auto& st = self->state;
        DeadLetterList out;
        for (const auto& [dseq, d] : st.dead) {
          if (out.size() >= limit) break;
          if (!st.failure.empty() || !being_replayed(st, dseq)) out.push_back(d);
        }
        return out;
      },
  };
}

}  // namespace botgate
