#include "storage/segment_log.hpp"

#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "storage/crc32c.hpp"
#include "tests/unit/file_size_limit.hpp"
#include "tests/unit/no_descriptors.hpp"
#include "tests/unit/scratch_dir.hpp"
#include "tests/unit/segment_log_fixtures.hpp"

namespace fs = std::filesystem;
using botgate::storage::crc32c;
using botgate::storage::crc32c_portable;
using botgate::storage::DamagedRecord;
using botgate::storage::kReadSpan;
using botgate::storage::kRecordHeaderBytes;
using botgate::storage::Options;
using botgate::storage::Record;
using botgate::storage::RecoveryReason;
using botgate::storage::RecoveryReport;
using botgate::storage::SegmentLog;
using botgate::test::fill_log;
using botgate::test::open_clean;
using botgate::test::payload_byte;
using botgate::test::payload_for;
using botgate::test::seqs;

namespace {

struct TempDir : botgate::test::ScratchDir {
  TempDir() : ScratchDir("botgate-seglog") {}
};

std::vector<fs::path> segment_files(const fs::path& dir) {
  return botgate::test::log_files(dir);
}

std::unique_ptr<SegmentLog> open_log(const fs::path& dir, RecoveryReport& report, Options o = {}) {
  return SegmentLog::open(dir, o, report);
}

// A log of 10 records (100-byte payloads, one segment), a byte flipped in the payload of each
// record in `damaged` (0-based), recovered.
std::unique_ptr<SegmentLog> reopen_damaged(TempDir& tmp, std::initializer_list<std::size_t> damaged,
                                           RecoveryReport& report) {
  fill_log(tmp.shard(), 10);
  const auto file = segment_files(tmp.shard()).at(0);
  for (const std::size_t i : damaged) botgate::test::flip_byte(file, payload_byte(i, 50), 0x20);
  return open_log(tmp.shard(), report);
}

std::uint32_t crc32c_bitwise(const std::string& s) {
  std::uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
  }
  return ~c;
}

}  // namespace

TEST_CASE("crc32c matches the standard test vectors", "[storage]") {
  CHECK(crc32c("123456789") == 0xE3069283u);
  CHECK(crc32c_portable("123456789", 9) == 0xE3069283u);
  CHECK(crc32c(std::string(32, '\0')) == 0x8A9136AAu);    // RFC 3720 B.4
  CHECK(crc32c(std::string(32, '\xFF')) == 0x62A8AB43u);  // RFC 3720 B.4
  std::string inc, dec;
  for (int i = 0; i < 32; ++i) {
    inc.push_back(static_cast<char>(i));
    dec.push_back(static_cast<char>(31 - i));
  }
  CHECK(crc32c(inc) == 0x46DD794Eu);
  CHECK(crc32c(dec) == 0x113FDB5Cu);
  CHECK(crc32c("") == 0u);
}

TEST_CASE("crc32c agrees with a bitwise reference and extends", "[storage]") {
  std::mt19937 rng(42);
  for (std::size_t n = 0; n < 70; ++n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    CHECK(crc32c(s) == crc32c_bitwise(s));
    CHECK(crc32c_portable(s.data(), s.size()) == crc32c_bitwise(s));
    for (std::size_t cut = 0; cut <= n; cut += 7)
      CHECK(crc32c(s.substr(cut), crc32c(s.substr(0, cut))) == crc32c(s));
    // Unaligned starts: the 8-byte loads of the hardware path begin mid-word.
    for (std::size_t off = 1; off < 8 && off <= n; ++off) {
      CHECK(crc32c(s.data() + off, n - off) == crc32c_bitwise(s.substr(off)));
      CHECK(crc32c_portable(s.data() + off, n - off, crc32c(s.data(), off)) == crc32c(s));
    }
  }
}

TEST_CASE("segment log replays uncompleted events with exact payloads", "[storage]") {
  TempDir tmp;
  std::string big(1u << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 131) ^ (i >> 8));
  const std::string binary("a\0b\xFF\x00\x01z", 7);
  const std::vector<std::string> payloads = {"hello", "", big, binary, "done-soon", "tail"};

  std::vector<Record> expected;
  {
    auto log = open_clean(tmp.shard());
    CHECK(fs::is_directory(tmp.shard()));
    std::vector<std::uint64_t> got;
    for (const auto& p : payloads) got.push_back(log->append_event(p));
    CHECK(got == std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6});
    log->append_completion(5);
    log->append_completion(5);  // a second completion is a no-op
    log->sync();
    for (std::size_t i = 0; i < payloads.size(); ++i)
      if (got[i] != 5) expected.push_back(Record{got[i], payloads[i]});
    CHECK(log->pending() == expected);
  }
  RecoveryReport report;
  auto log = open_log(tmp.shard(), report);
  CHECK_FALSE(report.truncated());
  CHECK(report.records_scanned == 7);
  CHECK(report.events_pending == 5);
  const auto replay = log->pending();
  REQUIRE(replay.size() == expected.size());
  for (std::size_t i = 0; i < replay.size(); ++i) {
    CHECK(replay[i].seq == expected[i].seq);
    CHECK(replay[i].payload == expected[i].payload);  // includes empty, 1 MiB and NUL bytes
  }
}

TEST_CASE("segment log completions hold across reopens", "[storage]") {
  TempDir tmp;
  {
    auto log = open_clean(tmp.shard());
    for (int i = 1; i <= 10; ++i) CHECK(log->append_event(payload_for(i)) == std::uint64_t(i));
    for (std::uint64_t s = 2; s <= 10; s += 2) log->append_completion(s);
    log->sync();
  }
  {
    auto log = open_clean(tmp.shard());
    CHECK(seqs(log->pending()) == std::vector<std::uint64_t>{1, 3, 5, 7, 9});
    CHECK(log->pending()[1].payload == payload_for(3));
    log->append_completion(1);
    log->append_completion(7);
    log->sync();
  }
  auto log = open_clean(tmp.shard());
  CHECK(seqs(log->pending()) == std::vector<std::uint64_t>{3, 5, 9});
  CHECK(log->pending_count() == 3);
}

TEST_CASE("segment log sequence numbers continue after reopen", "[storage]") {
  TempDir tmp;
  {
    auto log = open_clean(tmp.shard());
    CHECK(log->append_event("a") == 1);
    CHECK(log->append_event("b") == 2);
    log->append_completion(2);  // completion record takes seq 3
    log->sync();
  }
  {
    auto log = open_clean(tmp.shard());
    CHECK(log->next_seq() == 4);
    CHECK(log->append_event("c") == 4);
    log->flush();  // flushed, not synced: still survives the process
  }
  auto log = open_clean(tmp.shard());
  CHECK(log->append_event("d") == 5);
  CHECK(seqs(log->pending()) == std::vector<std::uint64_t>{1, 4, 5});
}

TEST_CASE("segment log truncates a torn tail and keeps appending", "[storage]") {
  const std::size_t last_size = kRecordHeaderBytes + 40;
  for (std::size_t cut :
       {std::size_t{1}, std::size_t{2}, std::size_t{8}, std::size_t{16}, kRecordHeaderBytes - 1,
        kRecordHeaderBytes, kRecordHeaderBytes + 1, last_size - 1}) {
    CAPTURE(cut);
    TempDir tmp;
    {
      auto log = open_clean(tmp.shard());
      for (int i = 1; i <= 5; ++i) log->append_event(payload_for(i, 40));
      log->sync();
    }
    const auto files = segment_files(tmp.shard());
    REQUIRE(files.size() == 1);
    const auto full = fs::file_size(files[0]);
    REQUIRE(full == 5 * last_size);
    fs::resize_file(files[0], full - cut);

    RecoveryReport report;
    {
      auto log = open_log(tmp.shard(), report);
      CHECK(report.truncated());
      CHECK(report.reason == RecoveryReason::short_read);
      CHECK(report.segment == files[0]);
      CHECK(report.truncated_at == 4 * last_size);
      CHECK(report.truncated_bytes == last_size - cut);
      CHECK(fs::file_size(files[0]) == 4 * last_size);
      const auto p = log->pending();
      REQUIRE(seqs(p) == std::vector<std::uint64_t>{1, 2, 3, 4});
      CHECK(p[3].payload == payload_for(4, 40));
      CHECK(log->append_event("after") == 5);
      log->append_completion(2);
      log->sync();
    }
    auto log = open_log(tmp.shard(), report);
    CHECK_FALSE(report.truncated());
    const auto p = log->pending();
    REQUIRE(seqs(p) == std::vector<std::uint64_t>{1, 3, 4, 5});
    CHECK(p[3].payload == "after");
  }
}

TEST_CASE("segment log skips a record damaged on disk and keeps the ones after it", "[storage]") {
  TempDir tmp;
  const std::size_t rec = kRecordHeaderBytes + 100;
  fill_log(tmp.shard(), 10);
  const auto file = segment_files(tmp.shard()).at(0);
  botgate::test::flip_byte(file, payload_byte(4, 50), 0x20);  // record 5's payload
  RecoveryReport report;
  {
    auto log = open_log(tmp.shard(), report);
    CHECK_FALSE(report.truncated());
    CHECK(report.records_skipped == 1);
    CHECK(report.skipped_bytes == rec);
    CHECK(report.skipped_segment == file);
    CHECK(fs::file_size(file) == 10 * rec);
    CHECK(seqs(log->pending()) == std::vector<std::uint64_t>{1, 2, 3, 4, 6, 7, 8, 9, 10});
    CHECK(log->pending()[4].payload == payload_for(6));
    CHECK(log->append_event("x") == 11);  // a skipped seq is never used again
    log->sync();
  }
  auto log = open_log(tmp.shard(), report);
  CHECK_FALSE(report.truncated());
  CHECK(report.records_skipped == 1);  // still on disk: counted again
  CHECK(seqs(log->pending()) == std::vector<std::uint64_t>{1, 2, 3, 4, 6, 7, 8, 9, 10, 11});
}

TEST_CASE("segment log cuts a damaged last record: a torn tail", "[storage]") {
  TempDir tmp;
  const std::size_t rec = kRecordHeaderBytes + 100;
  RecoveryReport report;
  auto log = reopen_damaged(tmp, {9}, report);  // record 10, the last of the log
  CHECK(report.reason == RecoveryReason::crc_mismatch);
  CHECK(to_string(report.reason) == "crc mismatch");
  CHECK(report.records_skipped == 0);
  CHECK(report.truncated_at == 9 * rec);
  CHECK(report.truncated_bytes == rec);
  CHECK(seqs(log->pending()) == std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9});
  CHECK(log->append_event("x") == 10);
}

TEST_CASE("segment log skips two adjacent damaged records and keeps the ones after them",
          "[storage]") {
  TempDir tmp;
  const std::size_t rec = kRecordHeaderBytes + 100;
  // Records 5 and 6 both damaged: nothing vouches for record 5's length, but the intact record 7
  // after them shows damage on disk, not a torn tail: only 5 and 6 are lost.
  RecoveryReport report;
  auto log = reopen_damaged(tmp, {4, 5}, report);
  CHECK_FALSE(report.truncated());
  REQUIRE(report.damaged.size() == 1);
  CHECK(report.damaged[0].offset == 4 * rec);
  CHECK(report.damaged[0].bytes == 2 * rec);
  CHECK_FALSE(report.damaged[0].cut);
  REQUIRE(report.gaps.size() == 1);
  CHECK(report.gaps[0].first == 5);
  CHECK(report.gaps[0].count == 2);
  CHECK(seqs(log->pending()) == std::vector<std::uint64_t>{1, 2, 3, 4, 7, 8, 9, 10});
  CHECK(log->append_event("x") == 11);
}

TEST_CASE("segment log cuts at a damaged record followed by no intact one", "[storage]") {
  TempDir tmp;
  const std::size_t rec = kRecordHeaderBytes + 100;
  // Records 9 and 10, the last two, both damaged: a torn tail as far as recovery can tell.
  RecoveryReport report;
  auto log = reopen_damaged(tmp, {8, 9}, report);
  CHECK(report.reason == RecoveryReason::crc_mismatch);
  CHECK(report.records_skipped == 0);
  CHECK(report.damaged.empty());
  CHECK(report.truncated_at == 8 * rec);
  CHECK(seqs(log->pending()) == std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6, 7, 8});
  CHECK(log->append_event("x") == 9);
}

TEST_CASE("segment log damage in an older segment costs only the damaged records", "[storage]") {
  TempDir tmp;
  Options o;
  o.segment_bytes = 1024;
  fill_log(tmp.shard(), 40, o);
  auto files = segment_files(tmp.shard());
  REQUIRE(files.size() >= 4);
  const auto second = files[1];
  const auto per_segment = 1024 / (kRecordHeaderBytes + 100);
  botgate::test::flip_byte(second, 8, 0x7F);  // its first record's seq: CRC no longer matches
  // The last record of the third segment: nothing follows it there, but later segments do.
  const auto third = files[2];
  const auto third_size = static_cast<std::streamoff>(fs::file_size(third));
  botgate::test::flip_byte(third, third_size - 10, 0x01);
  RecoveryReport report;
  auto log = open_log(tmp.shard(), report, o);
  CHECK_FALSE(report.truncated());
  CHECK(report.records_skipped == 2);
  CHECK(report.skipped_segment == second);
  CHECK(report.damaged.empty());
  CHECK(report.gaps.empty());
  CHECK(segment_files(tmp.shard()).size() == files.size());
  const auto p = log->pending();
  CHECK(p.size() == 38);
  const auto first_of_second = static_cast<std::uint64_t>(per_segment + 1);
  const auto last_of_third = static_cast<std::uint64_t>(3 * per_segment);
  for (const auto& r : p) {
    CHECK(r.seq != first_of_second);
    CHECK(r.seq != last_of_third);
  }
  CHECK(log->append_event("next") == 41);
}

TEST_CASE("segment log rejects a length over the limit", "[storage]") {
  TempDir tmp;
  {
    auto log = open_clean(tmp.shard());
    log->append_event("ok");
    log->sync();
  }
  const auto file = segment_files(tmp.shard()).at(0);
  {
    std::ofstream f(file, std::ios::binary | std::ios::app);
    const std::string junk = std::string("\xFF\xFF\xFF\x7F", 4) + std::string(13, '\x01');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  RecoveryReport report;
  auto log = open_log(tmp.shard(), report);
  CHECK(report.reason == RecoveryReason::bad_length);
  CHECK(report.truncated_bytes == kRecordHeaderBytes);
  CHECK(seqs(log->pending()) == std::vector<std::uint64_t>{1});
  Options small;
  small.max_record_bytes = 4;
  TempDir tmp2;
  auto log2 = open_clean(tmp2.shard(), small);
  CHECK_THROWS_AS(log2->append_event("12345"), std::length_error);
}

TEST_CASE("segment log rotates into several segment files", "[storage]") {
  TempDir tmp;
  Options o;
  o.segment_bytes = 1024;
  const std::size_t rec = kRecordHeaderBytes + 100;
  {
    auto log = open_clean(tmp.shard(), o);
    for (int i = 1; i <= 100; ++i) log->append_event(payload_for(i));
    log->sync();
    CHECK(log->segment_count() == segment_files(tmp.shard()).size());
  }
  const auto files = segment_files(tmp.shard());
  const std::size_t per_segment = 1024 / rec;  // 8
  CHECK(files.size() == (100 + per_segment - 1) / per_segment);
  CHECK(files.front().filename() == "00000000000000000001.log");
  CHECK(files[1].filename() == "0000000000000000000" + std::to_string(per_segment + 1) + ".log");
  for (const auto& f : files) CHECK(fs::file_size(f) <= 1024);

  auto log = open_clean(tmp.shard(), o);
  const auto p = log->pending();
  REQUIRE(p.size() == 100);
  for (std::size_t i = 0; i < p.size(); ++i) {
    CHECK(p[i].seq == i + 1);
    CHECK(p[i].payload == payload_for(i + 1));
  }
}

TEST_CASE("segment log out of descriptors writes on in its segment and rotates later",
          "[storage]") {
  TempDir tmp;
  Options o;
  o.segment_bytes = 1024;  // 8 records of 100 bytes
  std::vector<std::uint64_t> seqs_written;
  {
    auto log = open_clean(tmp.shard(), o);
    for (int i = 1; i <= 4; ++i) seqs_written.push_back(log->append_event(payload_for(i)));
    {
      botgate::test::NoDescriptors starved;
      // Three segments' worth: every rotation is put off, nothing throws, all goes to one file.
      for (int i = 5; i <= 24; ++i) seqs_written.push_back(log->append_event(payload_for(i)));
      log->sync();
      CHECK(log->deferred_rolls() > 0);
      // Retiring a completed current segment waits too: nothing is deleted.
      for (auto seq : seqs_written) log->append_completion(seq);
      CHECK(log->collect() == 0);
    }
    CHECK(segment_files(tmp.shard()).size() == 1);
    CHECK(fs::file_size(segment_files(tmp.shard()).front()) > 2 * o.segment_bytes);
    // Descriptors are back: the next append starts a new segment.
    seqs_written.push_back(log->append_event(payload_for(25)));
    log->sync();
    CHECK(segment_files(tmp.shard()).size() == 2);
    CHECK(log->collect() == 1);  // the long segment, all completed
  }
  auto log = open_clean(tmp.shard(), o);
  const auto p = log->pending();
  REQUIRE(p.size() == 1);
  CHECK(p.front().seq == seqs_written.back());
  CHECK(p.front().payload == payload_for(25));
}

TEST_CASE("segment log reads back across segments with one file open at a time", "[storage]") {
  TempDir tmp;
  Options o;
  o.segment_bytes = 1024;  // 8 records of 100 bytes: 100 records in 13 segments
  auto log = open_clean(tmp.shard(), o);
  for (int i = 1; i <= 100; ++i) log->append_event(payload_for(i));
  log->sync();
  REQUIRE(log->segment_count() == 13);
  std::vector<Record> p;
  {
    botgate::test::NoDescriptors one_spare(1);
    p = log->pending();
  }
  REQUIRE(p.size() == 100);
  CHECK(p.back().payload == payload_for(100));
  // With none to spare nothing can be read, and the error says why.
  botgate::test::NoDescriptors starved;
  try {
    log->pending();
    FAIL("read with no descriptor");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == EMFILE);
  }
}

TEST_CASE("segment log collect deletes only fully completed closed segments", "[storage]") {
  TempDir tmp;
  Options o;
  o.segment_bytes = (kRecordHeaderBytes + 120) * 8;  // 8 events, or all 38 completions
  {
    auto log = open_clean(tmp.shard(), o);
    for (int i = 1; i <= 40; ++i) log->append_event(payload_for(i, 120));  // segments 1..5
    CHECK(segment_files(tmp.shard()).size() == 5);
    CHECK(log->collect() == 0);  // nothing completed yet
    for (std::uint64_t s = 1; s <= 40; ++s)
      if (s != 12 && s != 40) log->append_completion(s);  // completions open segment 6
    CHECK(log->collect() == 3);  // segments 1, 3 and 4; 2 and 5 hold pending events
    CHECK(segment_files(tmp.shard()).size() == 3);
    CHECK(log->segment_count() == 3);
    CHECK(log->collect() == 0);
  }
  {
    auto log = open_clean(tmp.shard(), o);
    CHECK(seqs(log->pending()) == std::vector<std::uint64_t>{12, 40});
    const auto before = log->next_seq();
    CHECK(before > 40);
    log->append_completion(12);
    CHECK(log->collect() == 1);  // segment 2
    const auto files = segment_files(tmp.shard());
    CHECK(files.size() == 2);
    CHECK(log->segment_count() == 2);
    CHECK(files.front().filename() == "00000000000000000033.log");  // segment 5 remains
    CHECK(log->append_event("z") == before + 1);
    log->sync();
  }
  auto log = open_clean(tmp.shard(), o);
  CHECK(seqs(log->pending()).front() == 40);
  CHECK(log->pending().back().payload == "z");
}

TEST_CASE("segment log keeps a segment whose completions point at a live one", "[storage]") {
  TempDir tmp;
  Options o;
  o.segment_bytes = 300;
  {
    auto log = open_clean(tmp.shard(), o);
    CHECK(log->append_event(payload_for(1)) == 1);       // segment A
    CHECK(log->append_event(payload_for(2)) == 2);       // segment A
    CHECK(log->append_event(payload_for(3)) == 3);       // segment B
    log->append_completion(1);                           // B, completes an event of A
    log->append_completion(3);                           // B
    CHECK(log->append_event(payload_for(4, 200)) == 6);  // segment C
    CHECK(segment_files(tmp.shard()).size() == 3);
    // B has no pending event, but deleting it would bring event 1 back on restart.
    CHECK(log->collect() == 0);
    log->sync();
  }
  {
    auto log = open_clean(tmp.shard(), o);
    CHECK(seqs(log->pending()) == std::vector<std::uint64_t>{2, 6});
    log->append_completion(2);
    CHECK(log->collect() == 2);  // A, then B with it
    CHECK(segment_files(tmp.shard()).size() == 1);
    log->sync();
  }
  auto log = open_clean(tmp.shard(), o);
  CHECK(seqs(log->pending()) == std::vector<std::uint64_t>{6});
  CHECK(log->next_seq() == 8);
}

TEST_CASE("segment log refuses a second open of the same directory", "[storage]") {
  TempDir tmp;
  auto log = open_clean(tmp.shard());
  RecoveryReport report;
  CHECK_THROWS_AS(SegmentLog::open(tmp.shard(), Options{}, report), std::system_error);
}

TEST_CASE("segment log collect retires a fully completed current segment", "[storage]") {
  TempDir tmp;
  Options o;
  o.segment_bytes = 64 * 1024;  // the current segment may go once it holds 8 KiB
  std::uint64_t next = 0;
  {
    auto log = open_clean(tmp.shard(), o);
    std::vector<std::uint64_t> events;
    for (int i = 1; i <= 10; ++i) events.push_back(log->append_event(payload_for(i, 100)));
    for (auto seq : events) log->append_completion(seq);
    CHECK(log->collect() == 0);  // all completed, but too small to be worth a new file
    events.clear();
    for (int i = 11; i <= 100; ++i) events.push_back(log->append_event(payload_for(i, 100)));
    for (std::size_t k = 0; k + 1 < events.size(); ++k) log->append_completion(events[k]);
    CHECK(log->collect() == 0);  // the last event is still pending
    log->append_completion(events.back());
    CHECK(log->collect() == 1);  // the old current segment, all completed
    const auto files = segment_files(tmp.shard());
    REQUIRE(files.size() == 1);
    CHECK(fs::file_size(files.front()) == 0);  // the fresh current segment
    next = log->next_seq();
    CHECK(log->append_event("after") == next);
    log->sync();
  }
  auto log = open_clean(tmp.shard(), o);
  const auto p = log->pending();
  REQUIRE(p.size() == 1);
  CHECK(p.front().seq == next);
  CHECK(p.front().payload == "after");
}

TEST_CASE("segment log reads pending events back in runs, skipping completed ones", "[storage]") {
  TempDir tmp;
  Options o;
  o.segment_bytes = 4096;  // several segments: runs stop at segment ends
  auto log = open_clean(tmp.shard(), o);
  for (std::uint64_t i = 1; i <= 200; ++i) log->append_event(payload_for(i, 40 + i % 50));
  for (std::uint64_t i = 1; i <= 200; ++i) {
    if (i % 3 == 0 || (i > 50 && i < 60)) log->append_completion(i);
  }
  std::vector<std::uint64_t> live;
  for (std::uint64_t i = 1; i <= 200; ++i) {
    if (!(i % 3 == 0 || (i > 50 && i < 60))) live.push_back(i);
  }
  REQUIRE(log->segment_count() > 3);

  std::vector<DamagedRecord> damaged;
  const auto all = log->read_pending(0, UINT64_MAX, 1000, damaged);
  CHECK(seqs(all) == live);
  for (const auto& r : all) CHECK(r.payload == payload_for(r.seq, 40 + r.seq % 50));

  // after / upto / max bound the result exactly, wherever they fall in a run.
  const auto some = log->read_pending(10, 120, 7, damaged);
  CHECK(seqs(some) == std::vector<std::uint64_t>{11, 13, 14, 16, 17, 19, 20});
  CHECK(seqs(log->read_pending(100, 110, 1000, damaged)) ==
        std::vector<std::uint64_t>{101, 103, 104, 106, 107, 109, 110});
  CHECK(log->read_pending(200, UINT64_MAX, 10, damaged).empty());
  CHECK(log->read_pending(0, UINT64_MAX, 0, damaged).empty());
  CHECK(damaged.empty());
}

TEST_CASE("segment log reads back records bigger than one read run", "[storage]") {
  TempDir tmp;
  Options o;
  o.max_record_bytes = 2 * botgate::storage::kReadSpan;
  auto log = open_clean(tmp.shard(), o);
  // 0.7 and 1.5 reads long, then small ones: runs of one record and runs of many.
  const std::size_t big = kReadSpan * 7 / 10;
  const std::size_t bigger = kReadSpan * 3 / 2;
  const std::vector<std::size_t> sizes{big, bigger, 100, 200, big, 100};
  for (std::size_t i = 0; i < sizes.size(); ++i) log->append_event(payload_for(i + 1, sizes[i]));
  std::vector<DamagedRecord> damaged;
  const auto p = log->read_pending(0, UINT64_MAX, 100, damaged);
  CHECK(damaged.empty());
  REQUIRE(p.size() == sizes.size());
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    CHECK(p[i].seq == i + 1);
    CHECK(p[i].payload == payload_for(i + 1, sizes[i]));
  }
}

TEST_CASE("segment log skips and reports a record that changed on disk when read back",
          "[storage]") {
  TempDir tmp;
  auto log = open_clean(tmp.shard());
  for (std::uint64_t i = 1; i <= 10; ++i) log->append_event(payload_for(i));
  log->sync();
  const auto files = segment_files(tmp.shard());
  REQUIRE(files.size() == 1);
  const auto& seg = files.front();
  // Flip one payload byte of event 6, in the middle of what is read as one run.
  botgate::test::flip_byte(seg, payload_byte(5, 10), 0x40);
  std::vector<DamagedRecord> damaged;
  CHECK(seqs(log->read_pending(0, 5, 100, damaged)) == std::vector<std::uint64_t>{1, 2, 3, 4, 5});
  CHECK(damaged.empty());
  // It costs that record only; `max` counts the records returned.
  const auto rest = log->read_pending(0, UINT64_MAX, 8, damaged);
  CHECK(seqs(rest) == std::vector<std::uint64_t>{1, 2, 3, 4, 5, 7, 8, 9});
  for (const auto& r : rest) CHECK(r.payload == payload_for(r.seq));
  CHECK(damaged == std::vector<DamagedRecord>{{6, seg}});
  // It stays pending until the caller completes it, and is reported again meanwhile.
  damaged.clear();
  CHECK(seqs(log->read_pending(5, 7, 100, damaged)) == std::vector<std::uint64_t>{7});
  CHECK(damaged == std::vector<DamagedRecord>{{6, seg}});
  log->append_completion(6);
  damaged.clear();
  CHECK(seqs(log->read_pending(5, UINT64_MAX, 100, damaged)) ==
        std::vector<std::uint64_t>{7, 8, 9, 10});
  CHECK(damaged.empty());

  // A file that shrank under the log: the records it cut off are damaged, those before it good.
  fs::resize_file(seg, static_cast<std::uintmax_t>(payload_byte(8, 50)));
  CHECK(seqs(log->read_pending(0, UINT64_MAX, 100, damaged)) ==
        std::vector<std::uint64_t>{1, 2, 3, 4, 5, 7, 8});
  CHECK(damaged == std::vector<DamagedRecord>{{9, seg}, {10, seg}});
}

TEST_CASE("segment log cuts what a failed write left, so refused events stay unstored",
          "[storage]") {
  TempDir tmp;
  std::vector<std::uint64_t> kept;
  {
    auto log = open_clean(tmp.shard());
    for (int i = 1; i <= 3; ++i) kept.push_back(log->append_event(payload_for(i)));
    log->sync();
    log->mark_committed();  // their appends were answered
    const auto files = segment_files(tmp.shard());
    REQUIRE(files.size() == 1);
    const auto synced = fs::file_size(files.front());
    const auto record = synced / 3;
    {
      // Room for one and a half more records: the write stores one whole record, then fails.
      botgate::test::FileSizeLimit limit(synced + record + record / 2);
      for (int i = 4; i <= 6; ++i) log->append_event(payload_for(i));
      CHECK_THROWS(log->flush());
    }
    // The whole record the failed write did store is cut with the rest.
    CHECK(fs::file_size(files.front()) == synced);
    CHECK_THROWS(log->append_event(payload_for(7)));  // unusable from now on
  }
  auto log = open_clean(tmp.shard());
  CHECK(seqs(log->pending()) == kept);
}

TEST_CASE("segment log abandon cuts back to the last commit, new segments included", "[storage]") {
  TempDir tmp;
  Options o;
  o.segment_bytes = 1024;    // a new segment every few records
  o.write_buffer_bytes = 1;  // every append written at once, as a full buffer would be
  std::vector<std::uint64_t> committed;
  std::size_t segments_at_mark = 0;
  {
    auto log = open_clean(tmp.shard(), o);
    for (int i = 1; i <= 3; ++i) committed.push_back(log->append_event(payload_for(i)));
    log->sync();
    log->mark_committed();
    segments_at_mark = segment_files(tmp.shard()).size();
    // Written, rolled into new segments, never committed: their appends are being refused.
    for (int i = 4; i <= 30; ++i) log->append_event(payload_for(i));
    log->append_completion(committed.front());
    REQUIRE(segment_files(tmp.shard()).size() > segments_at_mark);
    log->abandon();
    CHECK_THROWS(log->append_event(payload_for(31)));
  }
  CHECK(segment_files(tmp.shard()).size() == segments_at_mark);
  auto log = open_clean(tmp.shard(), o);
  CHECK(seqs(log->pending()) == committed);  // the completion after the mark is cut too
}
