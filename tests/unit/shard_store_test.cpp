// ShardStore: the order in which one shard's files reach the disk.
#include "storage/shard_store.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "tests/unit/scratch_dir.hpp"

namespace fs = std::filesystem;
namespace storage = botgate::storage;

namespace {

botgate::Event event(const std::string& id) {
  botgate::Event ev;
  ev.source = "src";
  ev.id = id;
  ev.conversation = "conv";
  ev.raw = "{}";
  ev.received_wall = std::chrono::system_clock::now();
  return ev;
}

// What a kill -9 at this moment would leave: the files as the kernel has them (whatever a
// store still buffers in memory is not in them). Recovered from a copy.
storage::Recovered after_kill(const fs::path& live, const fs::path& copy) {
  fs::remove_all(copy);
  fs::copy(live, copy, fs::copy_options::recursive);
  storage::Recovered rec;
  auto store = storage::ShardStore::open(copy, {}, rec);
  return rec;
}

std::unique_ptr<storage::ShardStore> open_store(const fs::path& dir,
                                                const storage::StoreOptions& o = {}) {
  storage::Recovered rec;
  return storage::ShardStore::open(dir, o, rec);
}

std::uint64_t append(storage::ShardStore& store, const std::string& id) {
  return store.events().append_event(storage::encode_event(event(id)));
}

}  // namespace

TEST_CASE("a dead letter's completion never reaches the disk before the dead letter",
          "[storage][store]") {
  botgate::test::ScratchDir dir("botgate-store");
  const fs::path live = dir.path / "live";
  auto store = open_store(live);
  const auto ev = event("e1");
  const auto seq = append(*store, "e1");
  store->commit();

  // The event is dead-lettered...
  store->dead().append_event(storage::encode_dead_letter(ev, 3, 1700000000000, "b1: HTTP 400"));
  store->complete_dead_letter(seq);
  // ...and something flushes the event log before the next commit (here a read-back).
  std::vector<storage::DamagedRecord> damaged;
  store->events().read_pending(0, UINT64_MAX, 10, damaged);
  auto crashed = after_kill(live, dir.path / "copy");
  // Either still pending or dead-lettered: never neither.
  CHECK(crashed.pending + crashed.dead_letters.size() >= 1);
  CHECK(crashed.pending == 1);

  store->commit();
  crashed = after_kill(live, dir.path / "copy");
  CHECK(crashed.pending == 0);
  REQUIRE(crashed.dead_letters.size() == 1);
  CHECK(crashed.dead_letters[0].id == "e1");
  CHECK(crashed.dead_letters[0].error == "b1: HTTP 400");
}

TEST_CASE("a shard store syncs for events and dead letters, not for completions alone",
          "[storage][store]") {
  botgate::test::ScratchDir dir("botgate-store");
  const fs::path live = dir.path / "live";
  auto store = open_store(live);
  CHECK_FALSE(store->commit());  // nothing appended

  const auto s1 = append(*store, "e1");
  const auto s2 = append(*store, "e2");
  CHECK(store->commit());  // acks wait for these

  // A completion alone is written (a kill -9 keeps it) but not synced.
  store->events().append_completion(s1);
  CHECK_FALSE(store->commit());
  auto crashed = after_kill(live, dir.path / "copy");
  CHECK(crashed.pending == 1);

  // A new event syncs, and takes the earlier completion with it.
  store->events().append_completion(s2);
  append(*store, "e3");
  CHECK(store->commit());
  CHECK_FALSE(store->commit());

  // A dead letter always syncs: its event's completion must not go before it.
  const auto s4 = append(*store, "e4");
  CHECK(store->commit());
  store->dead().append_event(
      storage::encode_dead_letter(event("e4"), 3, 1700000000000, "HTTP 400"));
  store->complete_dead_letter(s4);
  CHECK(store->commit());
  crashed = after_kill(live, dir.path / "copy");
  CHECK(crashed.pending == 1);  // e3
  CHECK(crashed.dead_letters.size() == 1);

  // With fsync = none nothing ever syncs.
  storage::StoreOptions none;
  none.sync = storage::SyncMode::none;
  auto unsynced = open_store(dir.path / "none", none);
  append(*unsynced, "n1");
  CHECK_FALSE(unsynced->commit());
}

TEST_CASE("a long backlog keeps its segments but not their descriptors open", "[storage][store]") {
  const auto mode = GENERATE(storage::SyncMode::batch, storage::SyncMode::none);
  INFO("fsync mode " << static_cast<int>(mode));
  botgate::test::ScratchDir dir("botgate-store");
  storage::StoreOptions o;
  o.sync = mode;
  o.segment_bytes = 4096;
  const auto open_fds = [] {
    return std::distance(fs::directory_iterator("/proc/self/fd"), fs::directory_iterator{});
  };
  const auto segments = [&] {
    return std::distance(fs::directory_iterator(dir.path / "s" / "events"),
                         fs::directory_iterator{});
  };
  {
    auto store = open_store(dir.path / "s", o);
    append(*store, "stuck");  // never completed: every later segment stays on disk
    store->commit();
    const auto before = open_fds();
    // Each event completes 20 events later, often in the next segment: a chain of segments
    // that each hold completions for the one before, all kept behind the stuck event.
    std::deque<std::uint64_t> in_flight;
    for (int i = 0; i < 4000; ++i) {
      in_flight.push_back(append(*store, "e" + std::to_string(i)));
      if (in_flight.size() > 20) {
        store->events().append_completion(in_flight.front());
        in_flight.pop_front();
      }
      store->commit();
    }
    store->collect(storage::unix_now_ms());
    CHECK(segments() > 50);
    CHECK(open_fds() - before < 5);
  }
  storage::Recovered again;
  auto reopened = storage::ShardStore::open(dir.path / "s", o, again);
  CHECK(again.pending == 21);
}

TEST_CASE("a shard store accepts a record of the largest body the config allows",
          "[storage][store]") {
  botgate::test::ScratchDir dir("botgate-store");
  auto store = open_store(dir.path / "s");
  auto ev = event("big");
  ev.raw.assign(64u << 20, 'x');  // [server] max_body at most 64MiB
  ev.text.assign(32u << 20, 'y');
  CHECK_NOTHROW(store->events().append_event(storage::encode_event(ev)));
  store->commit();
  store.reset();
  storage::Recovered again;
  auto reopened = storage::ShardStore::open(dir.path / "s", {}, again);
  CHECK(again.pending == 1);
  CHECK_FALSE(again.events_report.truncated());
}

TEST_CASE("an abandoned shard store writes nothing more, not even when it closes",
          "[storage][store]") {
  botgate::test::ScratchDir dir("botgate-store");
  std::uint64_t stored = 0;
  {
    auto store = open_store(dir.path / "s");
    stored = append(*store, "stored");
    store->commit();
    // Buffered when another of the shard's logs fails: its event is answered "not stored".
    append(*store, "refused");
    store->abandon();
    CHECK_THROWS(append(*store, "after"));
  }
  storage::Recovered rec;
  auto store = storage::ShardStore::open(dir.path / "s", {}, rec);
  REQUIRE(rec.window.size() == 1);
  CHECK(rec.window.front().seq == stored);
  CHECK(rec.window.front().ev->id == "stored");
}

// The dead-letter log is a segment log like the event log, recovered by the same rules: damage
// in an older segment costs only what it hit, and what is missing is reported.
TEST_CASE("a shard store's dead letters survive damage to an older dead-letter segment",
          "[storage][store]") {
  botgate::test::ScratchDir dir("botgate-store");
  storage::StoreOptions o;
  o.segment_bytes = 1024;
  {
    auto store = open_store(dir.path / "s", o);
    for (int i = 0; i < 40; ++i) {
      store->dead().append_event(storage::encode_dead_letter(event("d" + std::to_string(i)), 1,
                                                             storage::unix_now_ms(), "gone"));
    }
    store->sync_all();
  }
  const auto segments = botgate::test::log_files(dir.path / "s" / "dead");
  REQUIRE(segments.size() >= 4);
  const auto base = [&](std::size_t i) { return std::stoull(segments[i].stem().string()); };
  fs::remove(segments[1]);
  std::ofstream(segments[2], std::ios::binary | std::ios::app) << std::string(64, '\0');
  storage::Recovered rec;
  auto store = storage::ShardStore::open(dir.path / "s", o, rec);
  CHECK(rec.dead_report.damaged.size() == 1);
  REQUIRE(rec.dead_report.gaps.size() == 1);
  CHECK(rec.dead_report.gaps[0].first == base(1));
  CHECK(rec.dead_report.gaps[0].count == base(2) - base(1));
  CHECK(rec.dead_letters.size() == 40 - (base(2) - base(1)));
  CHECK(rec.dead_letters.back().id == "d39");
}

// Most dead-letter logs have one segment, the last: a garbled length there costs the one dead
// letter it hit, not every one written after it.
TEST_CASE("a garbled length in the only dead-letter segment costs one dead letter",
          "[storage][store]") {
  botgate::test::ScratchDir dir("botgate-store");
  {
    auto store = open_store(dir.path / "s");
    for (int i = 0; i < 10; ++i) {
      store->dead().append_event(storage::encode_dead_letter(event("d" + std::to_string(i)), 1,
                                                             storage::unix_now_ms(), "gone"));
    }
    store->sync_all();
  }
  const auto segments = botgate::test::log_files(dir.path / "s" / "dead");
  REQUIRE(segments.size() == 1);
  {  // the second record's length (at the end of the first record) gets its top bit set
    std::fstream f(segments[0], std::ios::in | std::ios::out | std::ios::binary);
    unsigned char len[4] = {};
    f.read(reinterpret_cast<char*>(len), 4);
    const std::streamoff second =
        storage::kRecordHeaderBytes + (len[0] | len[1] << 8 | len[2] << 16 | len[3] << 24);
    f.seekp(second + 3);
    f.put(static_cast<char>(0x80));
  }
  storage::Recovered rec;
  auto store = storage::ShardStore::open(dir.path / "s", {}, rec);
  CHECK_FALSE(rec.dead_report.truncated());
  CHECK(rec.dead_report.damaged.size() == 1);
  REQUIRE(rec.dead_letters.size() == 9);
  CHECK(rec.dead_letters[0].id == "d0");
  CHECK(rec.dead_letters[1].id == "d2");
  CHECK(rec.dead_letters.back().id == "d9");
}
