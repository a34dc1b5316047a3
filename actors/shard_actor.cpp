#include "actors/shard_actor.hpp"

#include <algorithm>

#include "actors/shard_log_actor.hpp"
#include "core/hash.hpp"
#include "core/json.hpp"
#include "core/log.hpp"
#include "policies/delivery_rules.hpp"
#include "transport/generic_codec.hpp"

namespace botgate {
namespace {

using Self = shard_actor::stateful_pointer<ShardState>;
// A conversation's queue. Found once per event or answer and passed along: nothing below
// inserts into `conversations` synchronously (new events reach it only once stored), so
// an iterator stays valid through a handler.
using ConvIt = decltype(ShardState::conversations)::iterator;

void dispatch(Self self, ConvIt it);
void maybe_read(Self self);
void pull(Self self, ConvIt it);
void serve_pulls(Self self);
void enqueue(Self self, EventPtr ev, storage::IdHash id, AckFn ack, bool headroom = false);
void queue_replies(Self self, const Event& ev, const std::string& body);

// Events queue per (destination pool, conversation): replies to a user never wait behind that
// user's inbound events stuck on a failing backend, and order holds per destination. Events
// without a route of their own (generic sources) queue by conversation alone.
QueueKey queue_key(const Event& ev) {
  return QueueKey{ev.route, ev.conversation};
}

void update_depth(Self self) {
  auto& st = self->state;
  st.metrics->queue_depth(st.options.index).set(static_cast<std::int64_t>(st.pending));
}

// An event read back that the log found damaged (or undecodable) and completed: gone, as at
// recovery. Its id, in the damaged bytes, stays known (a resend is a duplicate) until a restart.
void drop_lost(Self self) {
  --self->state.pending;
  update_depth(self);
}

// One replayed copy of `id` less queued (delivered, given up, or not stored).
void forget_replay(ShardState& st, const storage::IdHash& id) {
  if (st.replays_queued.empty()) return;  // the usual case: no lookup per completion
  if (auto r = st.replays_queued.find(id); r != st.replays_queued.end() && --r->second == 0)
    st.replays_queued.erase(r);
}

// Window room not taken by events in memory or being read back.
std::uint64_t room(const ShardState& st) {
  const std::uint64_t used = st.in_memory + st.pull_reserved;
  return used < st.options.memory_window ? st.options.memory_window - used : 0;
}

// A stored event waits unread on disk while events not read yet do (they may be older ones
// of its conversation): `force` (an event read back from the log, in sequence order) is
// placed. It enters memory if the window has room and its conversation has nothing on disk;
// otherwise it waits on disk, spilled, behind its conversation's.
void place(Self self, StoredEvent stored, storage::IdHash id, bool force = false) {
  auto& st = self->state;
  if (!force && st.on_disk > 0) {
    ++st.on_disk;
    return;
  }
  const QueueKey key = queue_key(*stored.ev);
  auto it = st.conversations.find(key);
  if (it == st.conversations.end()) {
    it = st.conversations.try_emplace(key.flat()).first;
  } else if (it->second.idle()) {
    --st.idle_conversations;
  }
  auto& conv = it->second;
  st.loaded_upto = std::max(st.loaded_upto, stored.seq);
  if (!conv.spilled.empty() || room(st) == 0) {
    conv.spilled.push_back(stored.seq);
    return pull(self, it);
  }
  ++st.in_memory;
  conv.events.push_back(QueuedEvent{std::move(stored.ev), stored.seq, id});
  if (!conv.busy) dispatch(self, it);
}

// The conversation whose head is `head`, or end() when `head` is no longer a head here.
ConvIt find_head(ShardState& st, const EventPtr& head) {
  auto it = st.conversations.find(queue_key(*head));
  if (it != st.conversations.end() &&
      (it->second.events.empty() || it->second.events.front().ev != head)) {
    return st.conversations.end();
  }
  return it;
}

// The head of `it` is finished (delivered or given up): records it. Returns false when that
// emptied the conversation and it was dropped (`it` is gone).
bool complete_head(Self self, ConvIt it, Completion c) {
  auto& st = self->state;
  auto& conv = it->second;
  const QueuedEvent head = std::move(conv.events.front());
  conv.events.pop_front();
  conv.attempts = 0;
  conv.last_target.clear();
  conv.last_error.clear();
  conv.busy = false;
  --st.pending;
  --st.in_memory;
  update_depth(self);

  forget_replay(st, head.id);
  c.seq = head.seq;
  c.id = head.id;
  c.at_ms = storage::unix_now_ms();
  st.ids[head.id] = c.at_ms;
  st.expiry.push_back(storage::DedupEntry{head.id, c.at_ms});
  st.finished.push_back(std::move(c));
  request_flush(self, self->state.flush_queued);

  if (!conv.idle()) return true;
  if (st.idle_conversations < kMaxIdleConversations) {
    ++st.idle_conversations;
    return true;
  }
  st.conversations.erase(it);
  return false;
}

// The head of `it` is finished: record it and go on with the next.
void finish(Self self, ConvIt it, Completion c) {
  if (complete_head(self, it, std::move(c))) dispatch(self, it);
  maybe_read(self);
  serve_pulls(self);
}

// The head of `it` waits out a backoff: it and the events behind it go back to disk (they are
// stored; only their seqs stay), and come back when the backoff is over.
void evict(Self self, ConvIt it) {
  auto& st = self->state;
  auto& conv = it->second;
  for (auto e = conv.events.rbegin(); e != conv.events.rend(); ++e) conv.spilled.push_front(e->seq);
  st.in_memory -= conv.events.size();
  conv.events.clear();
}

// The completion of an event given up, logged and counted.
Completion dead_completion(Self self, const EventPtr& ev, std::uint32_t attempts, std::string why) {
  self->state.metrics->events_dead_lettered().inc();
  log::warn("event dead-lettered", {{"source", ev->source},
                                    {"id", ev->id},
                                    {"conversation", ev->conversation},
                                    {"attempts", attempts},
                                    {"error", why}});
  Completion c;
  c.dead = ev;
  c.attempts = attempts;
  c.error = std::move(why);
  return c;
}

void dead_letter(Self self, ConvIt it, const EventPtr& ev, std::uint32_t attempts,
                 const std::string& why) {
  finish(self, it, dead_completion(self, ev, attempts, why));
}

// The outbound event for reply `n` of `ev`: to the reply's `to`, else ev's conversation.
EventPtr reply_event(const Event& ev, std::size_t n, BackendReply& r, const std::string& pool) {
  auto out = std::make_shared<Event>();
  out->source = ev.source;
  out->id = ev.id + "#reply-" + std::to_string(n);
  out->conversation = r.to.empty() ? ev.conversation : std::move(r.to);
  out->sender = ev.sender;
  out->type = outbound_type("reply", r.content);
  out->text = std::move(r.content.body);
  out->raw = "{\"id\":";
  append_json_string(out->raw, out->id);
  out->raw += ",\"conversation\":";
  append_json_string(out->raw, out->conversation);
  out->raw += ",\"type\":";
  append_json_string(out->raw, out->type);
  if (r.content.msgtype == "text") {
    out->raw += ",\"text\":";
    append_json_string(out->raw, out->text);
  } else {
    out->raw += ',';
    append_json_string(out->raw, r.content.msgtype);
    out->raw += ':';
    out->raw += out->text;
  }
  out->raw += ",\"in_reply_to\":";
  append_json_string(out->raw, ev.id);
  out->raw += "}";
  out->route = pool;
  out->received_at = Clock::now();
  out->received_wall = std::chrono::system_clock::now();
  return out;
}

void queue_replies(Self self, const Event& ev, const std::string& body) {
  auto& st = self->state;
  std::vector<BackendReply> replies;
  std::string detail;
  if (parse_backend_replies(body, replies, detail) != CodecStatus::ok) {
    st.metrics->replies_dropped().inc();
    log::warn("backend replies dropped",
              {{"source", ev.source}, {"id", ev.id}, {"reason", "malformed"}, {"detail", detail}});
    return;
  }
  if (replies.empty()) return;
  auto src = st.options.sources.find(ev.source);
  if (src == st.options.sources.end() || src->second.accounts.empty()) {
    st.metrics->replies_dropped().inc(replies.size());
    log::warn("backend replies dropped", {{"source", ev.source},
                                          {"id", ev.id},
                                          {"reason", "the source has no accounts pool"},
                                          {"replies", replies.size()}});
    return;
  }
  for (std::size_t i = 0; i < replies.size(); ++i) {
    if (replies[i].to.empty() && ev.sender.empty() && ev.type.starts_with("event:")) {
      // A platform event from no user (a WXKF notification): its conversation is an account,
      // not someone to write to. Such a reply must name its recipient.
      st.metrics->replies_dropped().inc();
      log::warn("backend reply dropped",
                {{"source", ev.source},
                 {"id", ev.id},
                 {"reason", "an event from no user: the reply needs \"to\""}});
      continue;
    }
    auto reply = reply_event(ev, i + 1, replies[i], src->second.accounts);
    const auto id = storage::hash_id(reply->source, reply->id);
    // Already queued or sent (the event was delivered before a crash): not again. Replies skip
    // max_pending: the event they answer is already stored, and must not lose them.
    if (st.ids.count(id) != 0) continue;
    st.metrics->replies_queued().inc();
    enqueue(
        self, std::move(reply), id, [](IngestStatus) {}, true);
  }
}

void on_outcome(Self self, const EventPtr& answered, const Outcome& out) {
  auto& st = self->state;
  // Only the head in flight can be answered; anything else is not this shard's to act on.
  auto it = find_head(st, answered);
  if (it == st.conversations.end() || !it->second.busy) return;
  auto& conv = it->second;
  const EventPtr ev = conv.events.front().ev;
  // The router's re-routes were attempts too; an attempt that waited out max_age for a target,
  // or met only accounts without an access token, made no send (0), and is not counted.
  conv.attempts = conv.attempts - 1 + out.sends;
  switch (out.error.empty() ? Verdict::done : classify_answer(out.status)) {
    case Verdict::done: {
      st.metrics->events_delivered().inc();
      st.metrics->end_to_end().observe(Clock::now() - ev->received_at);
      if (!out.body.empty()) queue_replies(self, *ev, out.body);
      return finish(self, it, Completion{});
    }
    case Verdict::dead_letter:
      return dead_letter(self, it, ev, conv.attempts, out.target + ": " + out.error);
    case Verdict::retry:
      break;
  }
  const auto age = Clock::now() - ev->received_at;
  if (!may_retry(conv.attempts, st.options.max_attempts, age, st.options.max_age)) {
    return dead_letter(self, it, ev, conv.attempts, out.target + ": " + out.error);
  }
  conv.last_target = out.target;
  conv.last_error = out.target + ": " + out.error;
  // The n-th retry backs off by n - 1 doublings; attempts stays 0 while no send was made (an
  // account without a token), which must not wrap to the longest wait.
  const auto delay = st.options.backoff.honour_retry_after(
      st.options.backoff.delay(std::max(conv.attempts, 1u) - 1, st.rng), out.retry_after);
  st.metrics->delivery_retries().inc();
  log::debug("delivery failed, will retry", {{"id", ev->id},
                                             {"target", out.target},
                                             {"attempt", conv.attempts},
                                             {"error", out.error},
                                             {"delay_ms", delay.count() / 1000000}});
  self->delayed_send(self, delay, retry_atom::value, it->first, conv.events.front().seq);
  evict(self, it);
  serve_pulls(self);
}

// Why the head `ev` cannot be sent now and is given up, or "" (`pool` then says where to).
std::string unsendable(const ShardState& st, const Event& ev, const std::string*& pool) {
  pool = &ev.route;
  if (pool->empty()) {
    auto src = st.options.sources.find(ev.source);
    if (src != st.options.sources.end()) pool = &src->second.route;
  }
  if (st.pools.find(*pool) == st.pools.end()) {
    return pool->empty() ? "no route for source " + ev.source : "no pool named " + *pool;
  }
  // max_age holds when the event's turn comes too, not only between retries: one that waited
  // behind a failing head, or out a long outage, is given up like one retried that long.
  if (Clock::now() - ev.received_at >= st.options.max_age) {
    return "older than max_age (" + format_duration(st.options.max_age) + ") when its turn came";
  }
  return {};
}

// Sends the head of `it` to its pool's router, giving up (in a loop, not by recursion: a
// backlog may hold thousands of stale events) the heads that cannot go.
void dispatch(Self self, ConvIt it) {
  auto& st = self->state;
  bool gave_up = false;
  bool gone = false;  // the conversation emptied and was dropped
  while (!it->second.busy && !it->second.events.empty()) {
    auto& conv = it->second;
    const EventPtr ev = conv.events.front().ev;
    const std::string* pool = nullptr;
    if (std::string why = unsendable(st, *ev, pool); !why.empty()) {
      gave_up = true;
      // Given up between retries (max_age): what kept it from going says more than its age.
      if (!conv.last_error.empty()) why += "; last failure: " + conv.last_error;
      if (!complete_head(self, it, dead_completion(self, ev, conv.attempts, std::move(why)))) {
        gone = true;
        break;
      }
      continue;
    }
    conv.busy = true;
    ++conv.attempts;
    // The router always answers (in an `outcome` batch): it owns the attempt's deadline.
    st.deliveries.add(st.pools.find(*pool)->second, Delivery{ev, conv.attempts, conv.last_target});
    request_flush(self, self->state.flush_queued);
    break;
  }
  if (!gone) pull(self, it);  // nothing left in memory: the next events from disk
  if (gave_up) maybe_read(self);
}

// Queues `it` (once) to read its spilled events when the window has room: serve_pulls.
void wait_for_room(ShardState& st, ConvIt it) {
  if (it->second.waiting_room) return;
  it->second.waiting_room = true;
  st.want_pull.push_back(it->first);
}

// A conversation with nothing in memory and not waiting out a backoff reads its next spilled
// events back (as many as the window has room for, kPullBatch at most); without room it
// waits its turn in `want_pull`, served as room comes (serve_pulls).
void pull(Self self, ConvIt it) {
  auto& st = self->state;
  auto& conv = it->second;
  if (conv.busy || conv.pulling || !conv.events.empty() || conv.spilled.empty()) return;
  // A head that failed comes back alone: the events behind it wait until it went.
  const std::uint64_t most = conv.attempts > 0 ? 1 : kPullBatch;
  const std::uint64_t n = std::min<std::uint64_t>({conv.spilled.size(), room(st), most});
  if (n == 0) return wait_for_room(st, it);
  SeqList list;
  list.seqs.assign(conv.spilled.begin(), conv.spilled.begin() + static_cast<std::ptrdiff_t>(n));
  conv.pulling = true;
  st.pull_reserved += n;
  auto done = [self, key = it->first, n](StoredEvents events) {
    auto& st = self->state;
    st.pull_reserved -= n;
    auto it = st.conversations.find(key);
    if (it == st.conversations.end()) return;  // cannot be: not idle while pulling
    auto& conv = it->second;
    conv.pulling = false;
    // In order, as listed. A read that failed returns less (or nothing): the rest stays on
    // disk, and the conversation asks again when room is served (at the latest, the tick).
    for (auto& e : events) {
      if (conv.spilled.empty() || conv.spilled.front() != e.seq) break;
      conv.spilled.pop_front();
      if (!e.ev) {
        drop_lost(self);
        continue;
      }
      ++st.in_memory;
      const auto id = storage::hash_id(e.ev->source, e.ev->id);
      conv.events.push_back(QueuedEvent{std::move(e.ev), e.seq, id});
    }
    if (conv.idle()) {  // all it had on disk was damaged
      ++st.idle_conversations;
      return;
    }
    if (conv.events.empty()) return wait_for_room(st, it);
    dispatch(self, it);
    serve_pulls(self);
  };
  self->request(st.log, caf::infinite, read_atom::value, std::move(list))
      .then([done](StoredEvents& events) { done(std::move(events)); },
            [done](caf::error&) { done(StoredEvents{}); });
}

// Lets the conversations waiting for room read their spilled events, oldest wait first.
void serve_pulls(Self self) {
  auto& st = self->state;
  while (!st.want_pull.empty() && room(st) > 0) {
    auto it = st.conversations.find(st.want_pull.front());
    st.want_pull.pop_front();
    if (it == st.conversations.end()) continue;
    it->second.waiting_room = false;
    pull(self, it);
  }
}

// Places events read from the log, in sequence order: the recovered window at start-up, or a
// read-back (`counted` on disk until now). `reading` stays set meanwhile: a dead letter
// finished synchronously while placing must not start a read, which would return the rest of
// this batch a second time.
void place_read_back(Self self, std::vector<StoredEvent>& events, bool counted) {
  auto& st = self->state;
  st.reading = true;
  for (auto& e : events) {
    if (counted) --st.on_disk;
    if (!e.ev) {
      drop_lost(self);
      continue;
    }
    const auto id = storage::hash_id(e.ev->source, e.ev->id);
    place(self, std::move(e), id, true);
  }
  st.reading = false;
}

// Reads stored events back from the log once the memory window has drained to half.
void maybe_read(Self self) {
  auto& st = self->state;
  if (st.on_disk == 0 || st.reading || room(st) < st.options.memory_window / 2) return;
  st.reading = true;
  self->request(st.log, caf::infinite, read_atom::value, st.loaded_upto, room(st))
      .then(
          [self](StoredEvents& events) {
            place_read_back(self, events, true);
            // Nothing came back: the log failed, or the count drifted. Try again on the tick.
            if (!events.empty()) maybe_read(self);
          },
          [self](caf::error&) { self->state.reading = false; });
}

void on_stored(Self self, Commit& commit) {
  auto& st = self->state;
  const bool failed = !commit.error.empty();
  for (std::uint64_t seq : commit.seqs) {
    if (st.unstored.empty()) break;  // cannot happen: one entry per append
    UnstoredEvent u = std::move(st.unstored.front());
    st.unstored.pop_front();
    if (failed || seq == 0) {
      // Not stored: the id is as it was. A dead letter's stays completed, so a resend within
      // dedup_window is still a duplicate.
      if (u.completed_before != 0) {
        st.ids[u.id] = u.completed_before;
      } else {
        st.ids.erase(u.id);
      }
      --st.pending;
      const auto status = failed ? IngestStatus::failed : IngestStatus::disk_full;
      u.ack(status);
      for (auto& d : u.duplicates) d(status);
      continue;
    }
    u.ack(IngestStatus::accepted);
    for (auto& d : u.duplicates) {
      st.metrics->events_duplicate().inc();
      d(IngestStatus::duplicate);
    }
    place(self, StoredEvent{std::move(u.ev), seq}, u.id);
  }
  update_depth(self);
  maybe_read(self);
}

// Sends the event to the log; `ack` runs once the log reports it stored (or failed).
// `headroom`: see Append.
void enqueue(Self self, EventPtr ev, storage::IdHash id, AckFn ack, bool headroom) {
  auto& st = self->state;
  std::int64_t& known = st.ids[id];
  const std::int64_t completed_before = known;
  known = 0;
  ++st.pending;
  update_depth(self);
  // Appends go to the log in one message per mailbox burst: the log thread is woken
  // once per batch, not once per event.
  st.outbox.push_back(Append{ev, headroom});
  request_flush(self, self->state.flush_queued);
  st.unstored.push_back(UnstoredEvent{std::move(ev), id, std::move(ack), {}, completed_before});
}

// `owed`: the sender was already told the event is stored, so neither max_pending nor the disk
// headroom refuses it.
void ingest(Self self, EventPtr& ev, AckFn& ack, bool owed) {
  auto& st = self->state;
  const auto id = storage::hash_id(ev->source, ev->id);
  if (auto known = st.ids.find(id); known != st.ids.end()) {
    // Still being stored: its ack waits for the store, like the first one.
    if (known->second == 0) {
      auto u = std::find_if(st.unstored.begin(), st.unstored.end(),
                            [&](const UnstoredEvent& x) { return x.id == id; });
      if (u != st.unstored.end()) return u->duplicates.push_back(std::move(ack));
    }
    st.metrics->events_duplicate().inc();
    return ack(IngestStatus::duplicate);
  }
  if (!owed && st.pending >= st.options.max_pending) return ack(IngestStatus::full);
  enqueue(self, std::move(ev), id, std::move(ack), owed);
}

void drop_idle_conversations(Self self) {
  auto& st = self->state;
  if (st.idle_conversations == 0) return;
  std::erase_if(st.conversations, [](const auto& kv) { return kv.second.idle(); });
  st.idle_conversations = 0;
}

// Forgets completed ids older than the dedup window (the journal on disk expires them too).
void expire_ids(Self self) {
  auto& st = self->state;
  const std::int64_t horizon = storage::unix_now_ms() - st.options.dedup_window.count();
  while (!st.expiry.empty() && st.expiry.front().completed_ms <= horizon) {
    const auto& e = st.expiry.front();
    if (auto it = st.ids.find(e.id); it != st.ids.end() && it->second == e.completed_ms) {
      st.ids.erase(it);
    }
    st.expiry.pop_front();
  }
}

// A dead letter read back by the log goes in like a new event: bypassing the dedup window
// (its id was completed when it was dead-lettered) and max_pending (an operator asked for it).
void replay(Self self, caf::typed_response_promise<std::string> promise, StoredEvent& taken) {
  auto& st = self->state;
  if (!taken.ev) {
    promise.deliver(std::string("not_found"));
    return;
  }
  const auto id = storage::hash_id(taken.ev->source, taken.ev->id);
  log::info("dead letter replayed",
            {{"source", taken.ev->source}, {"id", taken.ev->id}, {"shard", st.options.index}});
  st.metrics->dead_letters_replayed().inc();
  ++st.replays_queued[id];
  enqueue(self, std::move(taken.ev), id, [self, id, promise](IngestStatus status) mutable {
    if (status != IngestStatus::accepted) forget_replay(self->state, id);
    promise.deliver(status == IngestStatus::accepted    ? std::string()
                    : status == IngestStatus::disk_full ? std::string("disk_full")
                                                        : std::string("storage_error"));
  });
}

void resume(Self self, storage::Recovered& rec) {
  auto& st = self->state;
  for (const auto& e : rec.completed) {
    st.ids[e.id] = e.completed_ms;
    st.expiry.push_back(e);
  }
  for (const auto& id : rec.pending_ids) st.ids[id] = 0;
  st.pending = rec.pending;
  st.on_disk = rec.pending - rec.window.size();
  st.metrics->events_recovered().inc(rec.pending);
  place_read_back(self, rec.window, false);
  update_depth(self);
  rec = storage::Recovered{};  // free the start-up copy
  maybe_read(self);            // when dead letters left the window less than half full
}

}  // namespace

std::string QueueKey::flat() const {
  if (route.empty()) return std::string(conversation);
  std::string out;
  out.reserve(route.size() + 1 + conversation.size());
  out.append(route).push_back('\x1f');
  out.append(conversation);
  return out;
}

// FNV-1a fed piece by piece, so that a key and its flat form hash alike.
std::size_t QueueKeyHash::operator()(const QueueKey& k) const noexcept {
  if (k.route.empty()) return fnv1a64(k.conversation);
  return fnv1a64(k.conversation, fnv1a64("\x1f", fnv1a64(k.route)));
}

std::size_t QueueKeyHash::operator()(std::string_view flat) const {
  return fnv1a64(flat);
}

bool QueueKeyEqual::operator()(const QueueKey& k, std::string_view flat) const noexcept {
  if (k.route.empty()) return flat == k.conversation;
  return flat.size() == k.route.size() + 1 + k.conversation.size() && flat.starts_with(k.route) &&
         flat[k.route.size()] == '\x1f' && flat.ends_with(k.conversation);
}

shard_actor::behavior_type shard(Self self, ShardOptions options, Metrics* metrics,
                                 std::unordered_map<std::string, router_actor> pools,
                                 std::shared_ptr<storage::ShardStore> store,
                                 std::shared_ptr<storage::Recovered> recovered) {
  auto& st = self->state;
  st.options = std::move(options);
  st.metrics = metrics;
  st.pools = std::move(pools);
  st.log = self->spawn<caf::linked + caf::detached>(
      shard_log, std::move(store), caf::actor_cast<shard_actor>(self), metrics, st.options.index,
      ShardLogOptions{st.options.commit_interval, st.options.min_free, st.options.log_started},
      std::move(recovered->dead_letters));
  resume(self, *recovered);
  self->delayed_send(self, kHousekeepingInterval, tick_atom::value);
  return {
      [self](ingest_atom, EventPtr& ev, AckFn& ack) { ingest(self, ev, ack, false); },
      [self](ingest_atom, owed_atom, EventPtr& ev, AckFn& ack) { ingest(self, ev, ack, true); },
      [self](outcome_atom, const Answers& answers) {
        for (const auto& a : answers) on_outcome(self, a.ev, a.outcome);
      },
      [self](pending_atom) -> std::uint64_t { return self->state.pending; },
      [self](retry_atom, const std::string& key, std::uint64_t head) {
        // The head whose backoff ran out (on disk meanwhile), if it still is the head.
        auto it = self->state.conversations.find(key);
        if (it == self->state.conversations.end() || !it->second.busy) return;
        auto& conv = it->second;
        const bool still = conv.events.empty()
                               ? !conv.spilled.empty() && conv.spilled.front() == head
                               : conv.events.front().seq == head;
        if (!still) return;
        conv.busy = false;
        dispatch(self, it);
      },
      [self](stored_atom, Commit& commit) { on_stored(self, commit); },
      [self](flush_atom) {
        auto& st = self->state;
        st.flush_queued = false;
        if (!st.outbox.empty()) self->send(st.log, append_atom::value, std::move(st.outbox));
        if (!st.finished.empty()) self->send(st.log, done_atom::value, std::move(st.finished));
        st.outbox.clear();
        st.finished.clear();
        st.deliveries.flush([self](const router_actor& to, Deliveries&& batch) {
          self->send(to, deliver_atom::value, std::move(batch));
        });
      },
      [self](tick_atom) {
        drop_idle_conversations(self);
        expire_ids(self);
        maybe_read(self);
        serve_pulls(self);
        self->delayed_send(self, kHousekeepingInterval, tick_atom::value);
      },
      [self](list_atom, std::uint64_t limit) {
        return self->delegate(self->state.log, list_atom::value, limit);
      },
      [self](replay_atom, const std::string& source, const std::string& id) {
        auto promise = self->make_response_promise<std::string>();
        // A platform's resend of the event is queued already (taken once the dedup window was
        // over): a replay would deliver it twice. The dead letter stays. (Beside a replayed copy
        // of the id, another dead letter of it is replayed: the operator asks for each.)
        const auto hash = storage::hash_id(source, id);
        if (auto known = self->state.ids.find(hash); known != self->state.ids.end() &&
                                                     known->second == 0 &&
                                                     !self->state.replays_queued.count(hash)) {
          promise.deliver(std::string("queued"));
          return promise;
        }
        self->request(self->state.log, caf::infinite, take_atom::value, source, id)
            .then([self, promise](StoredEvent& taken) mutable { replay(self, promise, taken); },
                  [promise](caf::error& err) mutable {
                    promise.deliver(std::string("error: ") + caf::to_string(err));
                  });
        return promise;
      },
  };
}

}  // namespace botgate
