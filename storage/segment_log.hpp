// An append-only, CRC-checked segment log: the storage under one shard's durable queue.
//
// Layout: one directory per shard (e.g. <queue dir>/shard-0/) holding segment files named by
// the sequence number of their first record, zero-padded to 20 digits, plus ".log". A segment is
// a sequence of records, little-endian:
//
//   u32 length   payload bytes
//   u32 crc      CRC32C over (seq bytes, type byte, payload)
//   u64 seq      strictly increasing across the whole log and across restarts (only the seq of
//                a record lost in a torn tail, which was never synced, is used again)
//   u8  type     1 = event (opaque payload), 2 = completion (payload: u64 seq of the event)
//   payload
//
// Recovery (open): segments are scanned in order. Sequence numbers are dense: a segment holds
// every seq from its base to the next segment's base (exclusive). What a bad record costs depends
// on where it is:
//  - A whole record that fails its CRC while the intact record of the next seq follows it (or
//    while it ends its segment and the next seq starts the next segment or deleted range) was
//    damaged on disk after it was written: it alone is skipped, and the scan goes on.
//  - Otherwise a record that is torn (short), has a length over Options::max_record_bytes, fails
//    its CRC, has an unknown type or a sequence number that does not increase is damage when an
//    intact record the segment still owes follows it (up to the next segment's base; in the last
//    segment, as many as its remaining bytes could hold): a crash tears only the tail. The scan
//    resumes there, skipping the bytes in between. A record running past the end of the last
//    segment is never looked into: that is the torn tail, and its bytes are its own payload.
//  - With none, the last segment ends in a crash's torn tail, truncated at the last good record;
//    any other segment, which was whole when the next one started, is damaged, and truncated
//    there too. Then recovery goes on with the next segment: it never deletes a segment.
//  - Sequence numbers missing before a record or before the next segment (a segment truncated,
//    emptied or deleted, bytes skipped as above) are a gap, unless their segment was deleted by
//    collect() (see below).
// All of it is reported, never thrown.
//
// Deletions: collect() deletes segments whose events are all completed, older ones still on disk
// or not. Deleting one with an older one left opens a gap, so it first leaves an empty file named
// like the segment with ".deleted" for ".log": the seqs from there to the next file's base are
// gone on purpose. That file goes once no older segment is left. A log directory holding the file
// "deletions-recorded" has recorded every such deletion. In one without it (written by an older
// botgate) a gap after an intact segment may be such a deletion: recovery takes it for one,
// reports and records it, and creates the file, so that later recoveries check every gap.
//
// Durability: appends are buffered in memory. flush() hands them to the kernel with write(2);
// sync() also fdatasync(2)s them. Only what sync() covered survives a power loss; what flush()
// covered survives a crash of the process (kill -9).
//
// Not thread-safe: the owner (one shard) serialises every call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace botgate::storage {

enum class RecordType : std::uint8_t { event = 1, completion = 2 };

inline constexpr std::size_t kRecordHeaderBytes = 4 + 4 + 8 + 1;
// read_pending() reads pending records back in runs of at most this many bytes per pread.
inline constexpr std::uint64_t kReadSpan = 1 << 20;

struct Options {
  // A new segment is started once the current one holds at least this many bytes.
  std::uint64_t segment_bytes = 64ull << 20;
  // Longest payload accepted by append_event; longer lengths found on disk mean corruption.
  std::uint32_t max_record_bytes = 16u << 20;
  // Buffered bytes that trigger a flush() on their own.
  std::size_t write_buffer_bytes = 256u << 10;
  // Whether sync() is ever called. A log that is never synced ([queue] fsync = none) closes a
  // full segment when the next one starts, instead of keeping it open for the next sync.
  bool synced = true;
};

// Why recovery cut the log short.
enum class RecoveryReason {
  none,          // the log was clean
  short_read,    // torn record: the file ends inside a header or payload
  bad_length,    // the length field is over Options::max_record_bytes, or (in a segment that
                 // is not the last) an intact record starts inside the bytes it claims
  crc_mismatch,  // the record's CRC32C does not match
  bad_type,      // CRC is good but the type is unknown, or a completion's payload is not 8 bytes
  bad_sequence,  // sequence number does not increase, or is below the segment's first seq
};

std::string_view to_string(RecoveryReason r) noexcept;

// Damage (see the file comment): a segment's bytes from `offset` were skipped up to the next
// intact record, or, in a segment that is not the last one, cut when none followed.
struct SegmentDamage {
  std::filesystem::path segment;
  RecoveryReason reason = RecoveryReason::none;
  std::uint64_t offset = 0;  // where the damaged bytes start
  std::uint64_t bytes = 0;   // how many were skipped or cut
  bool cut = false;          // truncated at `offset`, or skipped

  friend bool operator==(const SegmentDamage&, const SegmentDamage&) = default;
};

// Sequence numbers missing from the log: records lost with no trace of their own.
struct SequenceGap {
  std::filesystem::path segment;  // the segment that should hold them
  std::filesystem::path next;     // the one whose record or base shows they existed
  std::uint64_t first = 0;        // the first missing seq
  std::uint64_t count = 0;
  // In a log from an older botgate, taken for a segment it deleted (see the file comment).
  bool assumed_deleted = false;

  friend bool operator==(const SequenceGap&, const SequenceGap&) = default;
};

struct RecoveryReport {
  std::size_t segments_scanned = 0;
  std::uint64_t records_scanned = 0;  // good records, events and completions
  std::size_t events_pending = 0;     // events without a completion after recovery
  // Set when recovery cut the last segment's torn tail:
  RecoveryReason reason = RecoveryReason::none;
  std::filesystem::path segment;      // the last segment
  std::uint64_t truncated_at = 0;     // its new size: the end of its last good record
  std::uint64_t truncated_bytes = 0;  // bytes cut from it
  // Records damaged on disk (bad CRC) with intact records after them: skipped, each alone.
  // They stay in their segment, so every recovery counts them again until it is deleted.
  std::uint64_t records_skipped = 0;
  std::uint64_t skipped_bytes = 0;
  std::filesystem::path skipped_segment;  // the segment of the first one
  // Damage skipped in any segment, or cut in one before the last; skipped bytes stay on disk and
  // are reported again by every recovery, as is every gap, until their segment is deleted.
  std::vector<SegmentDamage> damaged;
  std::vector<SequenceGap> gaps;

  bool truncated() const noexcept { return reason != RecoveryReason::none; }
};

struct Record {
  std::uint64_t seq = 0;
  std::string payload;

  friend bool operator==(const Record&, const Record&) = default;
};

// A pending record read_pending() found damaged: its bytes in `segment` no longer match what was
// appended (flipped, or cut off by a file that shrank).
struct DamagedRecord {
  std::uint64_t seq = 0;
  std::filesystem::path segment;

  friend bool operator==(const DamagedRecord&, const DamagedRecord&) = default;
};

class SegmentLog {
 public:
  // Opens (creating if needed) the log in `dir` and recovers it; see the file comment.
  // Throws std::system_error on I/O errors, including when another SegmentLog holds `dir`.
  static std::unique_ptr<SegmentLog> open(std::filesystem::path dir, Options o,
                                          RecoveryReport& report);

  SegmentLog(const SegmentLog&) = delete;
  SegmentLog& operator=(const SegmentLog&) = delete;
  // Flushes (write(2), no fdatasync) what is buffered; errors are swallowed.
  ~SegmentLog();

  // Appends an event record and returns its sequence number. Throws std::length_error if the
  // payload is over Options::max_record_bytes.
  std::uint64_t append_event(std::string_view payload);

  // Marks event `seq` completed by appending a completion record. A no-op (nothing written)
  // when `seq` is not a pending event, so completing twice is harmless.
  void append_completion(std::uint64_t seq);

  // Writes buffered records to the current segment with write(2). When the write fails, the log
  // is abandon()ed: cut back to the last mark_committed(), and unusable.
  void flush();
  // Marks everything appended so far as committed (its appends answered): abandon() cuts the
  // log back to here. open() marks the recovered log.
  void mark_committed() noexcept;
  // Makes the log unusable and cuts it back to the last mark_committed(): what is buffered is
  // dropped (not even written on destruction), what was written since the mark is cut from its
  // segment, and segments started since are deleted. For a store that failed (here or in
  // another of its logs) and answers its uncommitted appends "not stored": none of them may come
  // back after a restart. Completions cut with them only cost a second delivery.
  void abandon() noexcept;
  // flush(), then fdatasync(2) every segment written since the last sync and fsync(2) the
  // directory if a segment was created. Does no system call when nothing was appended since;
  // returns whether it synced.
  bool sync();
  // Whether an event record was appended since the last sync (completions do not count).
  bool has_unsynced_events() const noexcept { return unsynced_events_; }

  // Deletes every closed (not current) segment whose events are all completed, and returns how
  // many were deleted. The current segment goes too (a new, empty one becomes current first) when
  // it could be deleted by that rule and holds at least segment_bytes / 8. A segment that holds
  // completions for events of an older segment still on disk is kept until that one is gone, so a
  // restart never resurrects a completed event. One deleted while an older segment stays is
  // recorded first (see the file comment); when that fails, it and the later ones wait.
  std::size_t collect();

  // Every event not completed and intact, in sequence order, read back from disk (flushes
  // first).
  std::vector<Record> pending();
  // At most `max` events not completed with after < seq <= upto, in sequence order, read back
  // from disk (flushes first) with one pread per run of up to kReadSpan bytes of a segment.
  // A record that changed on disk since it was appended (its header or CRC no longer match, or
  // the file shrank and cut it off) is left out and added to `damaged` instead, in sequence order:
  // it costs that record only, as at recovery. It stays pending; the caller decides (a completion
  // makes sure it is not read again). Throws std::system_error when a read itself fails.
  std::vector<Record> read_pending(std::uint64_t after, std::uint64_t upto, std::size_t max,
                                   std::vector<DamagedRecord>& damaged);

  std::size_t pending_count() const noexcept { return pending_.size(); }
  std::uint64_t next_seq() const noexcept { return next_seq_; }
  std::size_t segment_count() const noexcept { return segments_.size(); }
  // Rotations put off because the process or system was out of descriptors.
  std::uint64_t deferred_rolls() const noexcept { return deferred_rolls_; }
  const std::filesystem::path& dir() const noexcept { return dir_; }

 private:
  struct Segment {
    std::filesystem::path path;
    std::uint64_t size = 0;         // bytes written or buffered
    std::uint64_t live_events = 0;  // events in it not completed yet
    std::set<std::uint64_t> refs;   // older segments holding events it completes
  };
  struct Location {
    std::uint64_t segment = 0;  // first seq of the segment
    std::uint64_t offset = 0;   // of the record header
    std::uint32_t length = 0;   // of the payload
  };

  struct Scan;  // what recovery carries from one segment to the next

  SegmentLog(std::filesystem::path dir, Options o);
  void recover(RecoveryReport& report);
  // Recovers segment `base`; `end` is the seq its range ends at, unless it is the last one.
  void recover_segment(std::uint64_t base, const std::filesystem::path& path,
                       std::optional<std::uint64_t> end, Scan& scan, RecoveryReport& report);
  // Takes a good record found at `loc` (`payload`: its payload, mapped) into the recovered state.
  void take_record(const Location& loc, std::uint64_t seq, RecordType type,
                   const unsigned char* payload);
  // Leaves the file that tells recovery segment `base` was deleted on purpose (see the file
  // comment); false if it could not be created.
  bool record_deletion(std::uint64_t base);
  // Removes the deletion files no longer between two segments.
  void forget_deletions();
  void open_current();
  void create_segment(std::uint64_t base);
  void adopt_segment(std::uint64_t base, std::filesystem::path path);
  void maybe_rotate(std::size_t record_bytes);
  // Flushes the current segment and makes a new, empty one current. Out of descriptors
  // (EMFILE, ENFILE) it returns false and the current segment stays current: the log goes on
  // in it, past segment_bytes, and tries again at the next rotation. Any other error breaks
  // the log.
  bool roll();
  std::uint64_t append_record(RecordType type, std::string_view payload, Location& loc);
  void check_usable() const;

  std::filesystem::path dir_;
  Options opts_;
  int dir_fd_ = -1;
  int fd_ = -1;                    // current segment, opened for append
  std::vector<int> unsynced_fds_;  // closed segments written since the last sync
  bool dir_dirty_ = false;         // a segment was created since the last sync
  bool dirty_ = false;             // records were appended since the last sync
  bool unsynced_events_ = false;   // event records among them
  bool broken_ = false;            // an I/O error left the tail in an unknown state
  bool abandoned_ = false;         // abandon() cut the log back to mark_
  struct Mark {
    std::uint64_t segment = 0;  // base of the segment that was current
    std::uint64_t size = 0;     // its size then
  } mark_;                      // see mark_committed()
  std::uint64_t deferred_rolls_ = 0;
  std::uint64_t current_ = 0;  // first seq of the current segment
  std::uint64_t next_seq_ = 1;
  std::string buf_;
  std::map<std::uint64_t, Segment> segments_;  // by first seq
  std::map<std::uint64_t, Location> pending_;  // by event seq
  std::set<std::uint64_t> deleted_;            // segments deleted with an older one left
};

}  // namespace botgate::storage
