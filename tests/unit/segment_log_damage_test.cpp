// Recovery of a segment log damaged on disk: which damage is skipped record by record (an
// intact record of the next sequence number follows it), what other damage costs (never the
// intact records after it, in its segment or the later ones), which
// missing sequence numbers are reported, and that the log stays consistent (appends, read-back,
// collect, reopen) after each.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

#include "storage/crc32c.hpp"
#include "storage/segment_log.hpp"
#include "tests/unit/scratch_dir.hpp"
#include "tests/unit/segment_log_fixtures.hpp"

namespace fs = std::filesystem;
using namespace botgate::storage;
using botgate::test::fill_log;
using botgate::test::payload_byte;
using botgate::test::payload_for;
using botgate::test::seqs;

namespace {

using botgate::test::ScratchDir;

constexpr std::size_t kRec = kRecordHeaderBytes + 100;  // one record of fill_log's payloads

// A log of `count` records (100-byte payloads) in segments of 8 (segment_bytes 1024), and its
// segment files, oldest first.
struct SmallSegments {
  explicit SmallSegments(int count) {
    o.segment_bytes = 1024;
    fill_log(tmp.shard(), count, o);
    files = botgate::test::log_files(tmp.shard());
  }
  ScratchDir tmp{"botgate-damage"};
  Options o;
  std::vector<fs::path> files;
};

// The offset of byte `at` of the `index`-th record (0-based) of a SmallSegments segment.
std::streamoff record_byte(std::size_t index, std::size_t at) {
  return static_cast<std::streamoff>(index * kRec + at);
}

void zero_bytes(const fs::path& f, std::streamoff at, std::size_t n) {
  std::fstream s(f, std::ios::in | std::ios::out | std::ios::binary);
  s.seekp(at);
  const std::string z(n, '\0');
  s.write(z.data(), static_cast<std::streamsize>(n));
}

void append_bytes(const fs::path& f, std::size_t n, char c) {
  std::ofstream s(f, std::ios::binary | std::ios::app);
  const std::string b(n, c);
  s.write(b.data(), static_cast<std::streamsize>(n));
}

// Sequence numbers 1..n but the `count` from `first`: the records a damaged log keeps.
std::vector<std::uint64_t> all_but(std::uint64_t n, std::uint64_t first, std::uint64_t count = 0) {
  std::vector<std::uint64_t> out;
  for (std::uint64_t i = 1; i <= n; ++i)
    if (i < first || i >= first + count) out.push_back(i);
  return out;
}

std::vector<std::uint64_t> all(std::uint64_t n) {
  return all_but(n, n + 1);
}

// What a log from an older botgate looks like: no record of the segments it deleted.
void as_older_botgate(const fs::path& dir) {
  REQUIRE(fs::remove(dir / "deletions-recorded"));
}

fs::path deleted_record(const fs::path& dir, const char* base) {
  return dir / (std::string(base) + ".deleted");
}

}  // namespace

namespace Catch {
template <>
struct StringMaker<SequenceGap> {
  static std::string convert(const SequenceGap& g) {
    return "gap{" + g.segment.filename().string() + " -> " + g.next.filename().string() +
           ", first " + std::to_string(g.first) + ", count " + std::to_string(g.count) +
           (g.assumed_deleted ? ", assumed deleted}" : "}");
  }
};
template <>
struct StringMaker<SegmentDamage> {
  static std::string convert(const SegmentDamage& d) {
    return "damage{" + d.segment.filename().string() + ", " + std::string(to_string(d.reason)) +
           ", at " + std::to_string(d.offset) + ", " + std::to_string(d.bytes) +
           (d.cut ? " bytes cut}" : " bytes skipped}");
  }
};
}  // namespace Catch

// A single bit flipped in a length field of the last segment: the computed end lands on a later
// record boundary, whose seq is not the next one. Skipping there would drop record 3 (whole, CRC
// good) without a word, and cutting there, as for a torn tail, every record after it. As a crash
// tears only the tail, the intact record 3 after it shows damage on disk: record 2 alone is lost,
// reported as damage and as a gap, and the scan goes on.
TEST_CASE("segment log damage: a garbled length in the last segment costs one record",
          "[storage]") {
  ScratchDir tmp("botgate-damage");
  {
    RecoveryReport r;
    auto log = SegmentLog::open(tmp.shard(), {}, r);
    log->append_event(payload_for(1, 40));   // record 1 at 0, 57 bytes
    log->append_event(payload_for(2, 64));   // record 2 at 57, 81 bytes (length 0x40)
    log->append_event(payload_for(3, 111));  // record 3 at 138, 128 bytes
    log->append_event(payload_for(4, 40));   // record 4 at 266
    log->append_event(payload_for(5, 40));
    log->sync();
  }
  const auto file = botgate::test::log_files(tmp.shard()).at(0);
  const auto size = fs::file_size(file);
  botgate::test::flip_byte(file, 57, 0x80);  // record 2's length 64 -> 192: 57+17+192 = 266
  {
    RecoveryReport r;
    auto log = SegmentLog::open(tmp.shard(), {}, r);
    CHECK_FALSE(r.truncated());
    CHECK(r.records_skipped == 0);
    CHECK(r.damaged ==
          std::vector<SegmentDamage>{{file, RecoveryReason::bad_length, 57, 138 - 57, false}});
    CHECK(r.gaps == std::vector<SequenceGap>{{file, file, 2, 1}});
    CHECK(fs::file_size(file) == size);  // the damaged bytes stay: nothing after them is cut
    CHECK(seqs(log->pending()) == std::vector<std::uint64_t>{1, 3, 4, 5});
    CHECK(log->pending()[1].payload == payload_for(3, 111));
    CHECK(log->append_event("next") == 6);
    log->sync();
  }
  RecoveryReport r;  // the next recovery finds the same damage, and the record appended after it
  auto log = SegmentLog::open(tmp.shard(), {}, r);
  CHECK(r.damaged.size() == 1);
  CHECK(seqs(log->pending()) == std::vector<std::uint64_t>{1, 3, 4, 5, 6});
}

// A crash tears the last record of the log; what is left of it is its payload, which a client
// chose, and which here holds a whole record: the completion of event 1, with a good CRC and a
// seq the log could owe. Taking it would drop event 1, acknowledged and synced, without a word.
// A record that runs past the end of the last segment is a torn tail, looked into for nothing.
TEST_CASE("segment log damage: a torn tail's payload is never taken for records", "[storage]") {
  ScratchDir tmp("botgate-damage");
  {
    RecoveryReport r;
    auto log = SegmentLog::open(tmp.shard(), {}, r);
    REQUIRE(log->append_event(payload_for(1, 40)) == 1);
    log->sync();
    // A completion record of event 1 (seq 3, type 2), as a client could write it into its text.
    std::string body(9, '\0');
    for (int i = 0; i < 8; ++i) body[i] = static_cast<char>(3 >> (8 * i));
    body[8] = 2;
    body.append("\x01\0\0\0\0\0\0\0", 8);
    const std::uint32_t crc = crc32c(body);
    std::string forged{'\x08', '\0', '\0', '\0'};
    for (int i = 0; i < 4; ++i) forged.push_back(static_cast<char>(crc >> (8 * i)));
    forged += body;
    REQUIRE(log->append_event(std::string(100, 'x') + forged + std::string(1000, 'y')) == 2);
    log->sync();
  }
  const auto file = botgate::test::log_files(tmp.shard()).at(0);
  fs::resize_file(file, fs::file_size(file) - 500);  // torn inside event 2, after the forgery
  RecoveryReport r;
  auto log = SegmentLog::open(tmp.shard(), {}, r);
  CHECK(r.reason == RecoveryReason::short_read);
  CHECK(r.damaged.empty());
  CHECK(r.truncated_at == kRecordHeaderBytes + 40);
  CHECK(seqs(log->pending()) == std::vector<std::uint64_t>{1});
}

// A power loss right after a rotation: the old segment's last record was written but not
// synced (its payload never reached the disk), and the new segment starts at the next seq.
// It cannot be told from damage on disk, so it is skipped (and reported): nothing after it
// is cut, and it was never acknowledged (an ack waits for the sync).
TEST_CASE("segment log damage: a torn record at a rotation is skipped", "[storage]") {
  SmallSegments s(8);
  zero_bytes(s.files.at(0), payload_byte(7, 50), 50);
  { std::ofstream(s.tmp.shard() / "00000000000000000009.log"); }  // created by the rotation
  RecoveryReport r;
  auto log = SegmentLog::open(s.tmp.shard(), s.o, r);
  CHECK(r.records_skipped == 1);
  CHECK_FALSE(r.truncated());
  CHECK(seqs(log->pending()) == std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6, 7});
  CHECK(log->append_event("next") == 9);
}

// Consistency after several skips, a skip at the end of a non-last segment, a cut in the same
// log, collection of a segment that holds damaged records, and reopens.
TEST_CASE("segment log damage: several skips, a cut, collect and reopen stay consistent",
          "[storage]") {
  SmallSegments s(24);  // 3 segments of 8
  const auto& files = s.files;
  REQUIRE(files.size() == 3);
  botgate::test::flip_byte(files[0], record_byte(2, 30), 0x01);  // seq 3
  botgate::test::flip_byte(files[0], record_byte(7, 30), 0x01);  // seq 8
  botgate::test::flip_byte(files[1], record_byte(3, 30), 0x01);  // 12
  botgate::test::flip_byte(files[2], record_byte(2, 30), 0x01);  // 19
  fs::resize_file(files[2], 8 * kRec - 5);                       // torn tail: seq 24
  RecoveryReport r;
  {
    auto log = SegmentLog::open(s.tmp.shard(), s.o, r);
    CHECK(r.records_skipped == 4);
    CHECK(r.skipped_bytes == 4 * kRec);
    CHECK(r.reason == RecoveryReason::short_read);
    CHECK(r.truncated_at == 7 * kRec);
    CHECK(r.damaged.empty());
    CHECK(r.gaps.empty());
    const auto p = log->pending();
    CHECK(seqs(p) == std::vector<std::uint64_t>{1, 2, 4, 5, 6, 7, 9, 10, 11, 13, 14, 15, 16, 17, 18,
                                                20, 21, 22, 23});
    for (const auto& rr : p) CHECK(rr.payload == payload_for(rr.seq, 100));
    CHECK(log->next_seq() == 24);
    CHECK(log->append_event(payload_for(24, 100)) == 24);
    log->flush();
    CHECK(fs::file_size(files[2]) == 8 * kRec);  // appended at the end, after the cut
    for (std::uint64_t s : {1, 2, 4, 5, 6, 7}) log->append_completion(s);
    CHECK(log->collect() == 1);  // the first segment, damaged records and all
    log->sync();
  }
  {
    auto log = SegmentLog::open(s.tmp.shard(), s.o, r);
    CHECK_FALSE(r.truncated());
    CHECK(r.records_skipped == 2);  // 12 and 19 remain on disk
    const auto p = log->pending();
    CHECK(seqs(p) ==
          std::vector<std::uint64_t>{9, 10, 11, 13, 14, 15, 16, 17, 18, 20, 21, 22, 23, 24});
    for (const auto& rr : p) CHECK(rr.payload == payload_for(rr.seq, 100));
    CHECK(log->append_event("x") == 31);  // 25..30 were the completions
  }
}

// A garbled length at the start of a segment that is not the last: the scan resumes at the
// next record the segment owes, and only that one record is lost.
TEST_CASE("segment log damage: skip at a segment's end, then a garbled length at the next one's",
          "[storage]") {
  SmallSegments s(24);
  const auto& files = s.files;
  botgate::test::flip_byte(files[0], record_byte(7, 30), 0x01);  // seq 8
  botgate::test::flip_byte(files[1], 3, 0x7F);                   // seq 9's length: over the limit
  const std::vector<SegmentDamage> damage{{files[1], RecoveryReason::bad_length, 0, kRec, false}};
  const std::vector<SequenceGap> gap{{files[1], files[1], 9, 1}};
  RecoveryReport r;
  {
    auto log = SegmentLog::open(s.tmp.shard(), s.o, r);
    CHECK(r.records_skipped == 1);
    CHECK_FALSE(r.truncated());
    CHECK(r.damaged == damage);
    CHECK(r.gaps == gap);
    CHECK(fs::file_size(files[1]) == 8 * kRec);  // skipped bytes stay
    CHECK(seqs(log->pending()) == all_but(24, 8, 2));
    CHECK(log->next_seq() == 25);
    CHECK(log->append_event("a") == 25);
    log->sync();
  }
  for (int k = 0; k < 2; ++k) {  // reported at every start, the records stay lost
    auto log = SegmentLog::open(s.tmp.shard(), s.o, r);
    CHECK_FALSE(r.truncated());
    CHECK(r.records_skipped == 1);
    CHECK(r.damaged == damage);
    CHECK(r.gaps == gap);
    CHECK(seqs(log->pending()) == all_but(25, 8, 2));
  }
}

// A middle segment cut exactly at a record boundary holds nothing wrong: only the sequence
// numbers between its last record and the next segment's base show the loss.
TEST_CASE("segment log damage: a middle segment cut at a record boundary is a reported gap",
          "[storage]") {
  SmallSegments s(40);                    // segments from 1, 9, 17, 25, 33
  fs::resize_file(s.files[1], 5 * kRec);  // 14, 15 and 16 lost
  const std::vector<SequenceGap> gap{{s.files[1], s.files[2], 14, 3}};
  RecoveryReport r;
  {
    auto log = SegmentLog::open(s.tmp.shard(), s.o, r);
    CHECK_FALSE(r.truncated());
    CHECK(r.damaged.empty());
    CHECK(r.gaps == gap);
    CHECK(seqs(log->pending()) == all_but(40, 14, 3));
    CHECK(log->append_event("next") == 41);
    log->sync();
  }
  auto log = SegmentLog::open(s.tmp.shard(), s.o, r);
  CHECK(r.gaps == gap);  // until the segment is deleted
  CHECK(seqs(log->pending()) == all_but(41, 14, 3));
}

TEST_CASE("segment log damage: an emptied middle segment is a reported gap", "[storage]") {
  SmallSegments s(40);
  fs::resize_file(s.files[2], 0);
  RecoveryReport r;
  auto log = SegmentLog::open(s.tmp.shard(), s.o, r);
  CHECK_FALSE(r.truncated());
  CHECK(r.damaged.empty());
  CHECK(r.gaps == std::vector<SequenceGap>{{s.files[2], s.files[3], 17, 8}});
  CHECK(seqs(log->pending()) == all_but(40, 17, 8));
  CHECK(log->append_event("next") == 41);
}

TEST_CASE("segment log damage: a deleted middle segment is a reported gap", "[storage]") {
  SmallSegments s(40);
  fs::remove(s.files[2]);
  RecoveryReport r;
  auto log = SegmentLog::open(s.tmp.shard(), s.o, r);
  CHECK_FALSE(r.truncated());
  CHECK(r.damaged.empty());
  CHECK(r.gaps == std::vector<SequenceGap>{{s.files[1], s.files[3], 17, 8}});
  CHECK(seqs(log->pending()) == all_but(40, 17, 8));
  CHECK(log->append_event("next") == 41);
}

// Bytes after the last record of a segment that is not the last: cut from that segment, every
// record kept, in it and in the segments after it.
TEST_CASE("segment log damage: junk after a middle segment's last record is cut from it alone",
          "[storage]") {
  SmallSegments s(40);
  append_bytes(s.files[1], 4096, '\0');   // a zeroed block: length 0, the CRC does not match
  append_bytes(s.files[2], 100, '\xA5');  // its length over the limit
  RecoveryReport r;
  auto log = SegmentLog::open(s.tmp.shard(), s.o, r);
  CHECK_FALSE(r.truncated());
  CHECK(r.damaged ==
        std::vector<SegmentDamage>{{s.files[1], RecoveryReason::crc_mismatch, 8 * kRec, 4096, true},
                                   {s.files[2], RecoveryReason::bad_length, 8 * kRec, 100, true}});
  CHECK(r.gaps.empty());
  for (const auto& f : s.files) CHECK(fs::file_size(f) == 8 * kRec);
  CHECK(seqs(log->pending()) == all(40));
  CHECK(log->append_event("next") == 41);
}

TEST_CASE("segment log damage: a middle segment cut mid-record loses only its own tail",
          "[storage]") {
  SmallSegments s(40);
  fs::resize_file(s.files[1], 5 * kRec + 50);  // 14 torn, 15 and 16 gone
  RecoveryReport r;
  auto log = SegmentLog::open(s.tmp.shard(), s.o, r);
  CHECK_FALSE(r.truncated());
  CHECK(r.damaged ==
        std::vector<SegmentDamage>{{s.files[1], RecoveryReason::short_read, 5 * kRec, 50, true}});
  CHECK(r.gaps == std::vector<SequenceGap>{{s.files[1], s.files[2], 14, 3}});
  CHECK(fs::file_size(s.files[1]) == 5 * kRec);
  for (std::size_t i = 2; i < s.files.size(); ++i) CHECK(fs::file_size(s.files[i]) == 8 * kRec);
  CHECK(seqs(log->pending()) == all_but(40, 14, 3));
  CHECK(log->append_event("next") == 41);
}

// A flipped bit in a length in a segment that is not the last: the record's claimed end lands
// inside the next record (a CRC mismatch) or beyond the segment (a torn read); either way the
// next intact record starts elsewhere, so the length was wrong. One record is lost.
TEST_CASE("segment log damage: a garbled length in a middle segment costs one record",
          "[storage]") {
  for (const unsigned char mask : {0x01, 0x10}) {  // length 100 -> 356, or -> 4196
    CAPTURE(mask);
    SmallSegments s(40);
    botgate::test::flip_byte(s.files[2], record_byte(3, 1), mask);  // seq 20
    RecoveryReport r;
    auto log = SegmentLog::open(s.tmp.shard(), s.o, r);
    CHECK_FALSE(r.truncated());
    CHECK(r.damaged == std::vector<SegmentDamage>{
                           {s.files[2], RecoveryReason::bad_length, 3 * kRec, kRec, false}});
    CHECK(r.gaps == std::vector<SequenceGap>{{s.files[2], s.files[2], 20, 1}});
    CHECK(seqs(log->pending()) == all_but(40, 20, 1));
    for (const auto& rec : log->pending()) CHECK(rec.payload == payload_for(rec.seq));
    CHECK(log->append_event("next") == 41);
  }
}

// Several damaged records in a row (a zeroed block) in a middle segment: the scan resumes at
// the first intact record after them.
TEST_CASE("segment log damage: a zeroed block in a middle segment costs the records it hit",
          "[storage]") {
  SmallSegments s(40);
  zero_bytes(s.files[1], record_byte(2, 40), 2 * kRec);  // seqs 11, 12 and 13
  RecoveryReport r;
  auto log = SegmentLog::open(s.tmp.shard(), s.o, r);
  CHECK(r.damaged == std::vector<SegmentDamage>{
                         {s.files[1], RecoveryReason::crc_mismatch, 2 * kRec, 3 * kRec, false}});
  CHECK(r.gaps == std::vector<SequenceGap>{{s.files[1], s.files[1], 11, 3}});
  CHECK(seqs(log->pending()) == all_but(40, 11, 3));
}

// The gap collect() leaves by deleting a completed segment with an older one still on disk is
// recorded, so it is no damage; the record goes once no older segment is left.
TEST_CASE("segment log damage: a segment collect deleted is no gap, one lost is", "[storage]") {
  SmallSegments s(24);  // segments from 1, 9, 17
  const fs::path dir = s.tmp.shard();
  {
    auto log = botgate::test::open_clean(dir, s.o);
    for (std::uint64_t seq = 9; seq <= 16; ++seq) log->append_completion(seq);
    CHECK(log->collect() == 1);  // the middle segment: the others hold pending events
    CHECK_FALSE(fs::exists(s.files[1]));
    CHECK(fs::exists(deleted_record(dir, "00000000000000000009")));
    log->sync();
  }
  botgate::test::open_clean(dir, s.o);
  const fs::path record = deleted_record(dir, "00000000000000000009");
  const fs::path kept = s.tmp.path / "record";
  fs::copy_file(record, kept);
  fs::remove(record);
  {
    RecoveryReport r;
    auto log = SegmentLog::open(dir, s.o, r);
    CHECK(r.gaps == std::vector<SequenceGap>{{s.files[0], s.files[2], 9, 8}});
  }
  fs::copy_file(kept, record);
  {
    auto log = botgate::test::open_clean(dir, s.o);
    CHECK(seqs(log->pending()) == all_but(24, 9, 8));
    for (std::uint64_t seq = 1; seq <= 8; ++seq) log->append_completion(seq);
    log->collect();  // the first segment: the gap after it is no gap any more
    CHECK_FALSE(fs::exists(s.files[0]));
    CHECK_FALSE(fs::exists(record));
    log->sync();
  }
  auto log = botgate::test::open_clean(dir, s.o);
  CHECK(seqs(log->pending()) == all_but(24, 1, 16));
}

// A log written before deletions were recorded: a gap after an intact segment may be one its
// collect() left. It is taken for one, reported as such and recorded once; a gap that cannot be
// one (an emptied segment) is damage whatever wrote the log.
TEST_CASE("segment log damage: an older botgate's deletions are taken for what they were, once",
          "[storage]") {
  SmallSegments s(40);
  const fs::path dir = s.tmp.shard();
  as_older_botgate(dir);
  fs::remove(s.files[2]);          // as its collect() left it, or lost: it cannot tell
  fs::resize_file(s.files[3], 0);  // lost
  const SequenceGap lost{s.files[3], s.files[4], 25, 8};
  RecoveryReport r;
  {
    auto log = SegmentLog::open(dir, s.o, r);
    CHECK(r.gaps == std::vector<SequenceGap>{{s.files[1], s.files[3], 17, 8, true}, lost});
    CHECK(seqs(log->pending()) == all_but(40, 17, 16));
  }
  CHECK(fs::exists(dir / "deletions-recorded"));
  auto log = SegmentLog::open(dir, s.o, r);
  CHECK(r.gaps == std::vector<SequenceGap>{lost});
}
