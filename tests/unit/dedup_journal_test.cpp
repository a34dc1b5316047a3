#include "storage/dedup_journal.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include "storage/crc32c.hpp"
#include "tests/unit/no_descriptors.hpp"
#include "tests/unit/scratch_dir.hpp"

namespace fs = std::filesystem;
using botgate::storage::crc32c;
using botgate::storage::DedupEntry;
using botgate::storage::DedupJournal;
using botgate::storage::DedupRecovery;
using botgate::storage::hash_id;
using botgate::storage::IdHash;
using botgate::storage::IdHashHasher;
using botgate::storage::kDedupRecordBytes;
using namespace std::chrono_literals;

namespace {

constexpr std::int64_t kT0 = 1'700'000'000'000;  // an arbitrary unix ms

struct TempDir : botgate::test::ScratchDir {
  TempDir() : ScratchDir("botgate-dedup") {}
};

std::vector<fs::path> journal_files(const fs::path& dir) {
  return botgate::test::log_files(dir);
}

std::string file_name(std::int64_t ms) {
  std::string digits = std::to_string(ms);
  return "dedup-" + std::string(20 - digits.size(), '0') + digits + ".log";
}

DedupEntry entry(int i, std::int64_t ms) {
  return DedupEntry{hash_id("slack", "Ev" + std::to_string(i)), ms};
}

struct Opened {
  std::unique_ptr<DedupJournal> journal;
  std::vector<DedupEntry> live;
  DedupRecovery report;
};

Opened open_at(const fs::path& dir, std::int64_t now_ms, std::chrono::milliseconds window = 10min) {
  Opened o;
  o.journal = DedupJournal::open(dir, window, now_ms, o.live, o.report);
  return o;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::uint64_t le64(const std::string& s, std::size_t at) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

}  // namespace

TEST_CASE("hash_id is SHA-256 of source NUL id, first 16 bytes big-endian", "[dedup]") {
  // printf 'src\0id' | sha256sum
  //   d597d566836986e4d3dd33ae77945da27398b8f4b30c196b26a6beff47e687c8
  CHECK(hash_id("src", "id") == IdHash{0xd597d566836986e4ull, 0xd3dd33ae77945da2ull});
  // printf 'slack\0Ev012345' | sha256sum
  //   2cd839dde2a2eca585a1632d32363c1890641b65a00d379a13e9e723c577b49e
  CHECK(hash_id("slack", "Ev012345") == IdHash{0x2cd839dde2a2eca5ull, 0x85a1632d32363c18ull});
  // printf '\0' | sha256sum
  //   6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d
  CHECK(hash_id("", "") == IdHash{0x6e340b9cffb37a98ull, 0x9ca544e6bb780a2cull});

  CHECK(hash_id("src", "id") == hash_id("src", "id"));
  CHECK_FALSE(hash_id("a", "bc") == hash_id("ab", "c"));
  CHECK_FALSE(hash_id("src", "id") == hash_id("id", "src"));
  CHECK(IdHashHasher{}(hash_id("src", "id")) == static_cast<std::size_t>(0xd3dd33ae77945da2ull));
}

TEST_CASE("dedup journal returns synced entries oldest first after a reopen", "[dedup]") {
  TempDir tmp;
  std::vector<DedupEntry> appended;
  {
    auto o = open_at(tmp.shard(), kT0);
    CHECK(o.live.empty());
    CHECK(o.report.files_scanned == 0);
    CHECK(o.journal->file_count() == 0);
    for (int i = 0; i < 100; ++i) appended.push_back(entry(i, kT0 + i * 10));
    // A completion that finished late: written after newer ones, returned in time order.
    appended.push_back(entry(100, kT0 + 55));
    for (const auto& e : appended) o.journal->append(e);
    o.journal->sync();
    CHECK(o.journal->file_count() == 1);
  }
  auto expected = appended;
  std::stable_sort(expected.begin(), expected.end(),
                   [](const auto& a, const auto& b) { return a.completed_ms < b.completed_ms; });
  REQUIRE_FALSE(expected == appended);

  auto o = open_at(tmp.shard(), kT0 + 2000);
  CHECK(o.live == expected);
  CHECK(o.report.files_scanned == 1);
  CHECK(o.report.entries_loaded == 101);
  CHECK(o.report.entries_expired == 0);
  CHECK(o.report.entries_corrupt == 0);
  CHECK(journal_files(tmp.shard()) == std::vector<fs::path>{tmp.shard() / file_name(kT0)});
}

TEST_CASE("dedup journal keeps unsynced entries that the destructor flushed", "[dedup]") {
  TempDir tmp;
  {
    auto o = open_at(tmp.shard(), kT0);
    o.journal->append(entry(1, kT0));
    o.journal->append(entry(2, kT0 + 1));
  }
  auto o = open_at(tmp.shard(), kT0 + 10);
  CHECK(o.live == std::vector<DedupEntry>{entry(1, kT0), entry(2, kT0 + 1)});

  // Appending to the reopened file continues it.
  o.journal->append(entry(3, kT0 + 20));
  o.journal.reset();
  auto again = open_at(tmp.shard(), kT0 + 30);
  CHECK(again.live.size() == 3);
  CHECK(again.report.files_scanned == 1);
}

TEST_CASE("dedup journal writes the documented 32-byte little-endian record", "[dedup]") {
  TempDir tmp;
  const DedupEntry e = entry(7, kT0 + 123);
  {
    auto o = open_at(tmp.shard(), kT0);
    o.journal->append(e);
    o.journal->flush();
  }
  const std::string bytes = read_file(tmp.shard() / file_name(kT0 + 123));
  REQUIRE(bytes.size() == kDedupRecordBytes);
  CHECK(le64(bytes, 0) == e.id.hi);
  CHECK(le64(bytes, 8) == e.id.lo);
  CHECK(static_cast<std::int64_t>(le64(bytes, 16)) == e.completed_ms);
  CHECK((le64(bytes, 24) & 0xFFFFFFFFu) == crc32c(bytes.data(), 24));
  CHECK((le64(bytes, 24) >> 32) == 0u);
}

TEST_CASE("dedup journal drops and counts entries older than the window at open", "[dedup]") {
  TempDir tmp;
  const std::int64_t window = 600'000;
  const std::int64_t now = kT0 + 2 * window;
  {
    auto o = open_at(tmp.shard(), kT0);
    for (int i = 0; i < 5; ++i) o.journal->append(entry(i, kT0 + i));  // long expired
    o.journal->append(entry(5, now - window));      // exactly the window old: expired
    o.journal->append(entry(6, now - window + 1));  // just inside
    o.journal->append(entry(7, now - 1));
    o.journal->sync();
  }
  auto o = open_at(tmp.shard(), now);
  CHECK(o.live == std::vector<DedupEntry>{entry(6, now - window + 1), entry(7, now - 1)});
  CHECK(o.report.entries_loaded == 2);
  CHECK(o.report.entries_expired == 6);
  CHECK(o.report.entries_corrupt == 0);
  // The file still holds live entries, so it stays.
  CHECK(o.report.files_deleted == 0);
  CHECK(o.journal->file_count() == 1);
}

TEST_CASE("dedup journal deletes files with only expired entries at open", "[dedup]") {
  TempDir tmp;
  const auto window = 10'000ms;
  {
    auto o = open_at(tmp.shard(), kT0, window);
    o.journal->append(entry(1, kT0));
    o.journal->append(entry(2, kT0 + 100));
    o.journal->expire(kT0 + 5'001);  // oldest entry older than window/2: rotate
    o.journal->append(entry(3, kT0 + 8'000));
    o.journal->sync();
    CHECK(o.journal->file_count() == 2);
  }
  REQUIRE(journal_files(tmp.shard()).size() == 2);

  auto o = open_at(tmp.shard(), kT0 + 10'100, window);  // cutoff kT0 + 100: file 1 all expired
  CHECK(o.live == std::vector<DedupEntry>{entry(3, kT0 + 8'000)});
  CHECK(o.report.files_scanned == 2);
  CHECK(o.report.entries_expired == 2);
  CHECK(o.report.files_deleted == 1);
  CHECK(o.journal->file_count() == 1);
  CHECK(journal_files(tmp.shard()) == std::vector<fs::path>{tmp.shard() / file_name(kT0 + 8'000)});
}

TEST_CASE("dedup journal expire rotates and deletes old files", "[dedup]") {
  TempDir tmp;
  const auto window = 10'000ms;
  auto o = open_at(tmp.shard(), kT0, window);
  o.journal->append(entry(1, kT0));
  o.journal->expire(kT0 + 5'000);  // exactly window/2: not yet
  o.journal->append(entry(2, kT0 + 5'000));
  CHECK(o.journal->file_count() == 1);

  o.journal->expire(kT0 + 5'001);  // rotates; the next append starts the new file
  CHECK(o.journal->file_count() == 1);
  o.journal->append(entry(3, kT0 + 5'001));
  o.journal->append(entry(4, kT0 + 6'000));
  o.journal->sync();
  CHECK(o.journal->file_count() == 2);
  CHECK(journal_files(tmp.shard()) ==
        std::vector<fs::path>{tmp.shard() / file_name(kT0), tmp.shard() / file_name(kT0 + 5'001)});

  // Entries across both files come back oldest first.
  {
    o.journal.reset();
    auto mid = open_at(tmp.shard(), kT0 + 7'000, window);
    CHECK(mid.live == std::vector<DedupEntry>{entry(1, kT0), entry(2, kT0 + 5'000),
                                              entry(3, kT0 + 5'001), entry(4, kT0 + 6'000)});
    CHECK(mid.report.files_scanned == 2);
  }
  o = open_at(tmp.shard(), kT0 + 7'000, window);

  // The first file's newest entry (kT0 + 5'000) expires once now - window reaches it.
  o.journal->expire(kT0 + 14'999);
  CHECK(o.journal->file_count() == 2);
  o.journal->expire(kT0 + 15'000);
  CHECK(o.journal->file_count() == 1);
  CHECK(journal_files(tmp.shard()) == std::vector<fs::path>{tmp.shard() / file_name(kT0 + 5'001)});

  // Nothing appended for a long time: the last file goes too.
  o.journal->expire(kT0 + 60'000);
  CHECK(o.journal->file_count() == 0);
  CHECK(journal_files(tmp.shard()).empty());
  o.journal->append(entry(5, kT0 + 60'000));
  o.journal->sync();
  o.journal.reset();
  auto last = open_at(tmp.shard(), kT0 + 60'001, window);
  CHECK(last.live == std::vector<DedupEntry>{entry(5, kT0 + 60'000)});
}

TEST_CASE("dedup journal truncates a torn tail and loads the rest", "[dedup]") {
  TempDir tmp;
  std::vector<DedupEntry> appended;
  for (int i = 0; i < 10; ++i) appended.push_back(entry(i, kT0 + i));
  {
    auto o = open_at(tmp.shard(), kT0);
    for (const auto& e : appended) o.journal->append(e);
    o.journal->sync();
  }
  const fs::path file = tmp.shard() / file_name(kT0);
  {
    std::ofstream out(file, std::ios::binary | std::ios::app);
    out.write("\x01\x02\x03\x04\x05", 5);
  }
  REQUIRE(fs::file_size(file) == 10 * kDedupRecordBytes + 5);

  auto o = open_at(tmp.shard(), kT0 + 100);
  CHECK(o.live == appended);
  CHECK(o.report.entries_loaded == 10);
  CHECK(o.report.entries_corrupt == 1);
  CHECK(fs::file_size(file) == 10 * kDedupRecordBytes);

  // New records land aligned after the cut, so nothing more is lost.
  o.journal->append(entry(10, kT0 + 10));
  appended.push_back(entry(10, kT0 + 10));
  o.journal->sync();
  o.journal.reset();
  auto again = open_at(tmp.shard(), kT0 + 100);
  CHECK(again.live == appended);
  CHECK(again.report.entries_corrupt == 0);
}

TEST_CASE("dedup journal skips only the record with a flipped byte", "[dedup]") {
  TempDir tmp;
  std::vector<DedupEntry> appended;
  for (int i = 0; i < 10; ++i) appended.push_back(entry(i, kT0 + i));
  {
    auto o = open_at(tmp.shard(), kT0);
    for (const auto& e : appended) o.journal->append(e);
    o.journal->sync();
  }
  const fs::path file = tmp.shard() / file_name(kT0);
  auto expected = appended;
  expected.erase(expected.begin() + 4);

  // Every byte of record 4 (id, time, CRC and pad) is covered.
  for (std::size_t pos = 0; pos < kDedupRecordBytes; ++pos) {
    CAPTURE(pos);
    const auto at = static_cast<std::streamoff>(4 * kDedupRecordBytes + pos);
    auto flip = [&] { botgate::test::flip_byte(file, at, 0x10); };
    flip();
    {
      auto o = open_at(tmp.shard(), kT0 + 100);
      CHECK(o.live == expected);
      CHECK(o.report.entries_loaded == 9);
      CHECK(o.report.entries_corrupt == 1);
    }
    CHECK(fs::file_size(file) == 10 * kDedupRecordBytes);
    flip();
  }
  auto o = open_at(tmp.shard(), kT0 + 100);
  CHECK(o.live == appended);
}

TEST_CASE("dedup journal refuses a second opener of the same directory", "[dedup]") {
  TempDir tmp;
  auto first = open_at(tmp.shard(), kT0);
  CHECK_THROWS_AS(open_at(tmp.shard(), kT0), std::system_error);
  first.journal.reset();
  CHECK_NOTHROW(open_at(tmp.shard(), kT0));
}

TEST_CASE("dedup journal rejects a window that is not positive", "[dedup]") {
  TempDir tmp;
  CHECK_THROWS_AS(open_at(tmp.shard(), kT0, 0ms), std::invalid_argument);
}

TEST_CASE("dedup journal out of descriptors keeps entries until it can create its file",
          "[dedup]") {
  TempDir tmp;
  {
    auto o = open_at(tmp.shard(), kT0);
    {
      botgate::test::NoDescriptors starved;
      for (int i = 0; i < 5; ++i) o.journal->append(entry(i, kT0 + i));  // nothing throws
      o.journal->sync();
    }
    CHECK(journal_files(tmp.shard()).empty());
    o.journal->append(entry(5, kT0 + 5));  // the file now, with the five that waited
    o.journal->sync();
    CHECK(journal_files(tmp.shard()).size() == 1);
  }
  auto reopened = open_at(tmp.shard(), kT0 + 10);
  REQUIRE(reopened.live.size() == 6);
  for (int i = 0; i < 6; ++i) {
    CHECK(std::find(reopened.live.begin(), reopened.live.end(), entry(i, kT0 + i)) !=
          reopened.live.end());
  }
}
