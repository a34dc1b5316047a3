// The dedup journal: the persisted idempotency window of one durable queue shard. When an event is
// completed (delivered or dead-lettered) the hash of its (source, id) and the completion time are
// appended, so that after a restart the shard still knows which ids it completed within the last
// `window` and does not deliver a resent webhook twice.
//
// Layout: one directory per shard holding files named
//
//   dedup-<20-digit zero-padded completed_ms of the file's first entry>.log
//
// A file is created when the first entry after open (with no file left) or after a rotation is
// appended, and takes that entry's completed_ms as its name; if that is not above the previous
// file's name, the previous name + 1 is used instead, so names strictly increase in creation order
// and the newest file has the largest name. No file is ever empty by design (only a crash right
// after creating one can leave it so).
//
// A file is a sequence of fixed 32-byte records, little-endian:
//
//   u64 hi            IdHash::hi
//   u64 lo            IdHash::lo
//   i64 completed_ms  unix milliseconds
//   u32 crc           CRC32C over the 24 bytes above
//   u32 zero          must be 0
//
// Recovery (open): every file is read in name order. A record with a bad CRC or a non-zero pad is
// skipped and counted as corrupt; as records have a fixed size, the ones around it are not
// affected. A trailing partial record (file size not a multiple of 32, left by a torn write) is
// counted as corrupt and truncated away (ftruncate + fdatasync), so appends stay aligned. Entries
// with completed_ms > now_ms - window are returned; older ones are counted as expired. A file with
// no entry within the window is deleted. Corrupt data is reported, never thrown. The newest file
// left is appended to again.
//
// Rotation and expiry (expire): a new file is started once the oldest entry of the current one is
// older than window/2, and a closed file is deleted once its newest entry is older than the
// window, so the directory holds about three files and each lives at most ~1.5 windows.
// Deletions are not fsync(2)ed: a file that reappears after a power loss holds only expired
// entries and is deleted again by the next open or expire.
//
// Durability: appends are buffered in memory (a full buffer is flushed on its own). flush() hands
// them to the kernel with write(2) on an O_APPEND descriptor; sync() also fdatasync(2)s them.
//
// A flock(2) on the directory keeps a second DedupJournal (in this or another process) out.
// Not thread-safe: the owner (one shard) serialises every call.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace botgate::storage {

// 128-bit hash of an event's identity: SHA-256 over source + '\0' + id, first 16 bytes taken as
// hi (bytes 0-7, big-endian) and lo (bytes 8-15, big-endian).
struct IdHash {
  std::uint64_t hi = 0, lo = 0;
  friend bool operator==(const IdHash&, const IdHash&) = default;
};

IdHash hash_id(std::string_view source, std::string_view id) noexcept;

// For unordered containers: the bits of a cryptographic hash are already uniform.
struct IdHashHasher {
  using is_avalanching = void;  // boost::unordered_flat_map: no extra mixing needed
  std::size_t operator()(const IdHash& h) const noexcept { return static_cast<std::size_t>(h.lo); }
};

struct DedupEntry {
  IdHash id;
  std::int64_t completed_ms = 0;  // unix ms
  friend bool operator==(const DedupEntry&, const DedupEntry&) = default;
};

inline constexpr std::size_t kDedupRecordBytes = 32;

struct DedupRecovery {
  std::size_t files_scanned = 0;
  std::size_t entries_loaded = 0;   // within the window, returned to the caller
  std::size_t entries_expired = 0;  // older than the window, dropped
  std::size_t entries_corrupt = 0;  // bad CRC or torn: skipped (a torn tail is truncated)
  std::size_t files_deleted = 0;    // files with no entry within the window
};

class DedupJournal {
 public:
  // Opens (creating `dir` if needed) and recovers the journal; see the file comment. `live` is
  // replaced by every entry with completed_ms > now_ms - window, oldest first (stable for equal
  // times). Throws std::invalid_argument if window <= 0, std::system_error on I/O errors,
  // including when another DedupJournal holds `dir`.
  static std::unique_ptr<DedupJournal> open(std::filesystem::path dir,
                                            std::chrono::milliseconds window, std::int64_t now_ms,
                                            std::vector<DedupEntry>& live, DedupRecovery& report);

  DedupJournal(const DedupJournal&) = delete;
  DedupJournal& operator=(const DedupJournal&) = delete;
  // Flushes (write(2), no fdatasync) what is buffered; errors are swallowed.
  ~DedupJournal();

  // Buffers one entry in memory; creates a file first if there is no current one. Out of
  // descriptors (EMFILE, ENFILE) the entry waits in memory, with any before it, for the next
  // append that can create the file. Throws std::system_error if the create fails otherwise,
  // or a flush of a full buffer fails.
  void append(const DedupEntry& e);
  // Writes the buffer to the current file with write(2).
  void flush();
  // Makes the journal unusable without writing what is buffered, not even on destruction.
  void abandon() noexcept { broken_ = true; }
  // flush(), then fdatasync(2) every file written since the last sync and fsync(2) the directory
  // if a file was created.
  void sync();
  // Starts a new file when the current one's oldest entry is older than window/2, and deletes
  // closed files whose newest entry is older than now_ms - window. Call it now and then (e.g.
  // once a second); it does I/O only when it rotates or deletes.
  void expire(std::int64_t now_ms);

  std::size_t file_count() const noexcept { return files_.size(); }
  const std::filesystem::path& dir() const noexcept { return dir_; }

 private:
  struct File {
    std::filesystem::path path;
    std::int64_t oldest_ms = 0;  // over its good entries, written or buffered
    std::int64_t newest_ms = 0;
    int unsynced_fd = -1;  // a closed (rotated) file written since the last sync
  };

  DedupJournal(std::filesystem::path dir, std::chrono::milliseconds window);
  void recover(std::int64_t now_ms, std::vector<DedupEntry>& live, DedupRecovery& report);
  // false when out of descriptors; throws on any other error.
  bool create_file(std::int64_t first_ms);
  void buffer(const DedupEntry& e);
  void close_current();
  void check_usable() const;

  std::filesystem::path dir_;
  std::chrono::milliseconds window_;
  int dir_fd_ = -1;
  int fd_ = -1;              // the current file (files_.rbegin()) opened for append, or -1
  bool data_dirty_ = false;  // fd_ was written since the last sync
  bool dir_dirty_ = false;   // a file was created since the last sync
  bool broken_ = false;      // an I/O error left the tail in an unknown state
  std::string buf_;
  std::vector<DedupEntry> waiting_;      // appended while no file could be created
  std::map<std::uint64_t, File> files_;  // by the number in the name
};

}  // namespace botgate::storage
