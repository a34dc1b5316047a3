// What the segment log tests share: deterministic payloads, a log filled with them, the
// sequence numbers of what recovery kept, and the offset of a byte in a record of a
// segment written with equal payloads.
#pragma once

#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "storage/segment_log.hpp"
#include "tests/unit/scratch_dir.hpp"

namespace botgate::test {

// The payload of event `i`: `n` bytes that differ from event to event.
inline std::string payload_for(std::uint64_t i, std::size_t n = 100) {
  std::string s(n, '\0');
  for (std::size_t k = 0; k < n; ++k) s[k] = static_cast<char>((i * 31 + k * 7) & 0xFF);
  return s;
}

inline std::vector<std::uint64_t> seqs(const std::vector<storage::Record>& rs) {
  std::vector<std::uint64_t> out;
  for (const auto& r : rs) out.push_back(r.seq);
  return out;
}

// Opens `dir`, which must recover without a cut, damage or gap.
inline std::unique_ptr<storage::SegmentLog> open_clean(const std::filesystem::path& dir,
                                                       storage::Options o = {}) {
  storage::RecoveryReport report;
  auto log = storage::SegmentLog::open(dir, o, report);
  REQUIRE_FALSE(report.truncated());
  REQUIRE(report.damaged.empty());
  REQUIRE(report.gaps.empty());
  return log;
}

// A new log in `dir` with events 1..count (payload_for(i, size)), synced and closed.
inline void fill_log(const std::filesystem::path& dir, int count, storage::Options o = {},
                     std::size_t size = 100) {
  auto log = open_clean(dir, o);
  for (int i = 1; i <= count; ++i)
    log->append_event(payload_for(static_cast<std::uint64_t>(i), size));
  log->sync();
}

// In a segment of records with `size`-byte payloads: the offset of payload byte `at` of its
// `index`-th record (0-based).
inline std::streamoff payload_byte(std::size_t index, std::size_t at, std::size_t size = 100) {
  return static_cast<std::streamoff>(index * (storage::kRecordHeaderBytes + size) +
                                     storage::kRecordHeaderBytes + at);
}

}  // namespace botgate::test
