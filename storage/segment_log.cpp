#include "storage/segment_log.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "storage/crc32c.hpp"
#include "storage/file_io.hpp"

namespace botgate::storage {
namespace fs = std::filesystem;

using io::create_for_append;
using io::Fd;
using io::get_u32;
using io::get_u64;
using io::out_of_descriptors;
using io::pread_all;
using io::put_u32;
using io::put_u64;
using io::throw_errno;
using io::write_all;

namespace {

constexpr std::string_view kSegmentSuffix = ".log";
constexpr std::string_view kDeletedSuffix = ".deleted";
// Present once every deletion that opened a gap was recorded (see the header).
constexpr const char* kDeletionsRecorded = "deletions-recorded";

std::string segment_name(std::uint64_t base) {
  return io::numbered_name("", base, kSegmentSuffix);
}

// The first seq encoded in a segment file name, or nothing if it is not one.
std::optional<std::uint64_t> parse_segment_name(const std::string& name) {
  return io::parse_numbered_name(name, "", kSegmentSuffix);
}

// The files of a log directory: segments (sorted) and the records of deleted ones.
struct Listing {
  std::vector<std::pair<std::uint64_t, fs::path>> segments;
  std::set<std::uint64_t> deleted;
};

Listing list_log(const fs::path& dir) {
  Listing out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    const std::string name = entry.path().filename().string();
    if (auto base = parse_segment_name(name)) {
      out.segments.emplace_back(*base, entry.path());
    } else if (auto gone = io::parse_numbered_name(name, "", kDeletedSuffix)) {
      out.deleted.insert(*gone);
    }
  }
  std::sort(out.segments.begin(), out.segments.end());
  return out;
}

// Creates an empty file if it does not exist; false if it cannot.
bool touch(const fs::path& path) noexcept {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

// A segment mapped read-only for recovery (nothing mapped when it is empty).
class Mapped {
 public:
  Mapped(int fd, std::uint64_t size, const fs::path& path) : size_(size) {
    if (size == 0) return;
    map_ = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map_ == MAP_FAILED) throw_errno(errno, "mmap", path);
  }
  Mapped(const Mapped&) = delete;
  Mapped& operator=(const Mapped&) = delete;
  ~Mapped() {
    if (map_) ::munmap(map_, size_);
  }
  const unsigned char* data() const noexcept { return static_cast<const unsigned char*>(map_); }

 private:
  void* map_ = nullptr;
  std::uint64_t size_;
};

}  // namespace

namespace {

// The header of the record at `off` of a mapped segment of `size` bytes, once checked.
struct RecordAt {
  std::uint32_t len = 0;
  std::uint64_t seq = 0;
  RecordType type = RecordType::event;
};

// Checks the record at `off` (off < size): all of it in the file, its length within the limit,
// its CRC good, its type known. `none` fills `out`; otherwise the reason it is bad (`out.len` is
// set once the length was read, so a bad-CRC record's end is known).
RecoveryReason check_record(const unsigned char* p, std::uint64_t size, std::uint64_t off,
                            std::uint32_t max_len, RecordAt& out) {
  const std::uint64_t left = size - off;
  if (left < kRecordHeaderBytes) return RecoveryReason::short_read;
  const unsigned char* r = p + off;
  out.len = get_u32(r);
  if (out.len > max_len) return RecoveryReason::bad_length;
  if (left - kRecordHeaderBytes < out.len) return RecoveryReason::short_read;
  // seq, type and payload are contiguous: the CRC covers bytes [8, 17 + len).
  if (crc32c(r + 8, 9 + std::size_t{out.len}) != get_u32(r + 4)) {
    return RecoveryReason::crc_mismatch;
  }
  out.seq = get_u64(r + 8);
  out.type = static_cast<RecordType>(r[16]);
  const bool known =
      out.type == RecordType::event || (out.type == RecordType::completion && out.len == 8);
  return known ? RecoveryReason::none : RecoveryReason::bad_type;
}

// True when an intact record of sequence number `seq` starts at `off`.
bool intact_record_at(const unsigned char* p, std::uint64_t size, std::uint64_t off,
                      std::uint64_t seq, std::uint32_t max_len) {
  RecordAt rec;
  return off < size && check_record(p, size, off, max_len, rec) == RecoveryReason::none &&
         rec.seq == seq;
}

// Where a scan resumes past damaged bytes: the first offset from `from` on where an intact
// record starts whose seq the segment still owes, in [lo, hi).
// The seq is compared first, so the CRC is computed only where one could start.
std::optional<std::uint64_t> resync(const unsigned char* p, std::uint64_t size, std::uint64_t from,
                                    std::uint64_t lo, std::uint64_t hi, std::uint32_t max_len) {
  for (std::uint64_t off = from; off + kRecordHeaderBytes <= size; ++off) {
    const std::uint64_t seq = get_u64(p + off + 8);
    if (seq < lo || seq >= hi) continue;
    RecordAt rec;
    if (check_record(p, size, off, max_len, rec) == RecoveryReason::none) return off;
  }
  return std::nullopt;
}

// Why the record at `off` was bad, once the scan found where the next intact record starts (if
// it did). A record whose length was read and reaches past that start had a wrong length: it
// claims bytes of an intact record. A torn read or CRC mismatch alone does not say so.
RecoveryReason damage_reason(RecoveryReason check, std::uint64_t off, std::uint32_t len,
                             std::optional<std::uint64_t> resume) {
  const bool length_read =
      check == RecoveryReason::short_read || check == RecoveryReason::crc_mismatch;
  const bool overlaps = resume && off + kRecordHeaderBytes + len > *resume;
  return length_read && overlaps ? RecoveryReason::bad_length : check;
}

void note_gap(RecoveryReport& report, const fs::path& segment, const fs::path& next,
              std::uint64_t first, std::uint64_t end, bool assumed_deleted = false) {
  report.gaps.push_back(SequenceGap{segment, next, first, end - first, assumed_deleted});
}

}  // namespace

std::string_view to_string(RecoveryReason r) noexcept {
  switch (r) {
    case RecoveryReason::none:
      return "none";
    case RecoveryReason::short_read:
      return "short read (torn record)";
    case RecoveryReason::bad_length:
      return "bad length";
    case RecoveryReason::crc_mismatch:
      return "crc mismatch";
    case RecoveryReason::bad_type:
      return "bad record type";
    case RecoveryReason::bad_sequence:
      return "sequence out of order";
  }
  return "unknown";
}

SegmentLog::SegmentLog(fs::path dir, Options o) : dir_(std::move(dir)), opts_(o) {}

SegmentLog::~SegmentLog() {
  if (!broken_) {
    try {
      flush();
    } catch (...) {
    }
  }
  for (int fd : unsynced_fds_) ::close(fd);
  if (fd_ >= 0) ::close(fd_);
  if (dir_fd_ >= 0) ::close(dir_fd_);  // also releases the lock
}

std::unique_ptr<SegmentLog> SegmentLog::open(fs::path dir, Options o, RecoveryReport& report) {
  if (o.segment_bytes == 0 || o.max_record_bytes == 0)
    throw std::invalid_argument("segment log: segment_bytes and max_record_bytes must be > 0");
  std::unique_ptr<SegmentLog> log(new SegmentLog(std::move(dir), o));
  report = RecoveryReport{};
  fs::create_directories(log->dir_);
  log->dir_fd_ = ::open(log->dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (log->dir_fd_ < 0) throw_errno(errno, "open", log->dir_);
  if (::flock(log->dir_fd_, LOCK_EX | LOCK_NB) != 0) throw_errno(errno, "lock", log->dir_);
  log->recover(report);
  log->open_current();
  log->mark_committed();
  report.events_pending = log->pending_.size();
  return log;
}

struct SegmentLog::Scan {
  std::uint64_t last_seq = 0;  // of the last good record
  std::uint64_t expect = 0;    // the seq the log should hold next
};

void SegmentLog::recover(RecoveryReport& report) {
  const Listing files = list_log(dir_);
  deleted_ = files.deleted;
  const bool recorded = fs::exists(dir_ / kDeletionsRecorded);
  bool all_recorded = true;  // every gap taken for a deletion was recorded as one
  Scan scan;
  for (std::size_t i = 0; i < files.segments.size(); ++i) {
    const auto& [base, path] = files.segments[i];
    const bool last = i + 1 == files.segments.size();
    // A segment owes every seq up to the next segment, or to the first deleted one before that.
    std::optional<std::uint64_t> end;
    if (!last) {
      const auto gone = deleted_.upper_bound(base);
      end = std::min(files.segments[i + 1].first, gone == deleted_.end() ? UINT64_MAX : *gone);
    }
    const std::size_t damage_before = report.damaged.size();
    recover_segment(base, path, end, scan, report);
    if (!end || scan.expect >= *end) continue;
    // Nothing found wrong in an intact segment, in a log that did not record its deletions:
    // the rest may be a segment collect() deleted. Otherwise they were lost.
    const bool assumed_deleted =
        !recorded && report.damaged.size() == damage_before && scan.expect > base;
    note_gap(report, path, files.segments[i + 1].second, scan.expect, *end, assumed_deleted);
    if (assumed_deleted) all_recorded = record_deletion(scan.expect) && all_recorded;
  }
  forget_deletions();
  if (!recorded && all_recorded) touch(dir_ / kDeletionsRecorded);
  // The directory too: the entries of segments created just before a crash, and what recovery
  // created.
  if (::fsync(dir_fd_) != 0) throw_errno(errno, "fsync", dir_);
  next_seq_ = scan.last_seq + 1;
  if (!segments_.empty()) next_seq_ = std::max(next_seq_, segments_.rbegin()->first);
}

void SegmentLog::recover_segment(std::uint64_t base, const fs::path& path,
                                 std::optional<std::uint64_t> end, Scan& scan,
                                 RecoveryReport& report) {
  Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (fd.get() < 0) throw_errno(errno, "open", path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw_errno(errno, "stat", path);
  const auto size = static_cast<std::uint64_t>(st.st_size);
  ++report.segments_scanned;
  segments_[base].path = path;
  const Mapped map(fd.get(), size, path);
  const unsigned char* p = map.data();

  // Sequence numbers are dense within a segment, from its base (every append takes the next
  // one; a segment starts at the next one).
  scan.expect = std::max(base, scan.last_seq + 1);
  std::uint64_t off = 0;
  RecoveryReason torn = RecoveryReason::none;  // why the tail of the last segment was cut
  while (off < size) {
    RecordAt rec;
    RecoveryReason check = check_record(p, size, off, opts_.max_record_bytes, rec);
    const std::uint64_t next = off + kRecordHeaderBytes + rec.len;
    if (check == RecoveryReason::crc_mismatch) {
      // A crash tears only the tail: nothing intact follows a torn record. A whole record
      // followed by the intact record of the next seq (or ending a segment whose range ends at
      // the next seq) was damaged after it was written: only it is lost, and recovery goes on
      // past it. A garbled length lands anywhere else.
      const bool damaged =
          next == size ? end == scan.expect + 1
                       : intact_record_at(p, size, next, scan.expect + 1, opts_.max_record_bytes);
      if (damaged) {
        if (report.records_skipped == 0) report.skipped_segment = path;
        ++report.records_skipped;
        report.skipped_bytes += next - off;
        off = next;
        ++scan.expect;
        continue;
      }
    }
    if (check == RecoveryReason::none && (rec.seq <= scan.last_seq || rec.seq < base))
      check = RecoveryReason::bad_sequence;
    if (check != RecoveryReason::none) {
      // Skip to the next intact record the segment owes, if any. A segment before the last was
      // whole when the next one started, and owes every seq up to it. The last one owes at most
      // as many more records as its remaining bytes could hold; an intact record among them
      // means damage on disk, as a crash tears only the tail. But a record running past the end
      // of the last segment is that torn tail: every byte after its header is its own payload,
      // which a client chose, and may hold what looks like an intact record. Nothing is looked
      // for there.
      const bool torn_tail = !end && check == RecoveryReason::short_read;
      const std::uint64_t owed = end ? *end : scan.expect + (size - off) / kRecordHeaderBytes + 1;
      const auto resume = torn_tail
                              ? std::nullopt
                              : resync(p, size, off + 1, scan.expect, owed, opts_.max_record_bytes);
      if (!end && !resume) {  // the last segment: a torn tail
        torn = check;
        break;
      }
      const std::uint64_t stop = resume.value_or(size);
      report.damaged.push_back(SegmentDamage{path, damage_reason(check, off, rec.len, resume), off,
                                             stop - off, !resume});
      if (!resume) break;
      off = stop;
      continue;
    }
    if (rec.seq > scan.expect) note_gap(report, path, path, scan.expect, rec.seq);
    take_record(Location{base, off, rec.len}, rec.seq, rec.type, p + off + kRecordHeaderBytes);
    scan.last_seq = rec.seq;
    scan.expect = rec.seq + 1;
    ++report.records_scanned;
    off = next;
  }
  segments_[base].size = off;
  // A segment is cut at the end of its last good record: the torn tail of the last one, or
  // damage with nothing intact after it in another.
  if (off < size && ::ftruncate(fd.get(), static_cast<off_t>(off)) != 0)
    throw_errno(errno, "truncate", path);
  // After a kill -9 the records may still be only in the page cache. Once recovered they
  // count as stored (a resent event is acked as a duplicate at once), so make them (and a
  // cut) durable before anything relies on them.
  if (size > 0 && ::fdatasync(fd.get()) != 0) throw_errno(errno, "fdatasync", path);
  if (torn == RecoveryReason::none) return;
  report.reason = torn;
  report.segment = path;
  report.truncated_at = off;
  report.truncated_bytes = size - off;
}

void SegmentLog::take_record(const Location& loc, std::uint64_t seq, RecordType type,
                             const unsigned char* payload) {
  Segment& seg = segments_[loc.segment];
  if (type == RecordType::event) {
    pending_[seq] = loc;
    ++seg.live_events;
  } else if (auto it = pending_.find(get_u64(payload)); it != pending_.end()) {
    // A completion. Those of events in segments already deleted find nothing, as they should.
    --segments_[it->second.segment].live_events;
    if (it->second.segment != loc.segment) seg.refs.insert(it->second.segment);
    pending_.erase(it);
  }
}

bool SegmentLog::record_deletion(std::uint64_t base) {
  if (!touch(dir_ / io::numbered_name("", base, kDeletedSuffix))) return false;
  // On disk before the segment goes: a crash in between leaves both, and the segment wins.
  if (::fsync(dir_fd_) != 0) throw_errno(errno, "fsync", dir_);
  deleted_.insert(base);
  return true;
}

void SegmentLog::forget_deletions() {
  std::erase_if(deleted_, [&](std::uint64_t base) {
    const bool between = !segments_.empty() && base > segments_.begin()->first &&
                         base < segments_.rbegin()->first && !segments_.contains(base);
    if (between) return false;
    // Left behind, it would only be removed again: no sync.
    ::unlink((dir_ / io::numbered_name("", base, kDeletedSuffix)).c_str());
    return true;
  });
}

void SegmentLog::open_current() {
  if (segments_.empty()) {
    create_segment(next_seq_);
    return;
  }
  current_ = segments_.rbegin()->first;
  const fs::path& path = segments_.rbegin()->second.path;
  fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd_ < 0) throw_errno(errno, "open", path);
}

void SegmentLog::create_segment(std::uint64_t base) {
  fs::path path = dir_ / segment_name(base);
  fd_ = create_for_append(path);
  if (fd_ < 0) throw_errno(errno, "create", path);
  adopt_segment(base, std::move(path));
}

void SegmentLog::adopt_segment(std::uint64_t base, fs::path path) {
  Segment& seg = segments_[base];
  seg.path = std::move(path);
  current_ = base;
  dir_dirty_ = true;
}

void SegmentLog::check_usable() const {
  if (broken_)
    throw std::system_error(EIO, std::generic_category(),
                            "segment log " + dir_.string() + " unusable after an I/O error");
}

void SegmentLog::maybe_rotate(std::size_t record_bytes) {
  const Segment& cur = segments_.at(current_);
  if (cur.size == 0 || cur.size + record_bytes <= opts_.segment_bytes) return;
  roll();
}

bool SegmentLog::roll() {
  check_usable();
  flush();
  // The next segment is opened before this one is let go, so that running out of descriptors,
  // which passes (idle connections close, another process exits), costs only a longer segment.
  fs::path path = dir_ / segment_name(next_seq_);
  const int fd = create_for_append(path);
  if (fd < 0) {
    if (out_of_descriptors(errno)) {
      ++deferred_rolls_;
      return false;
    }
    broken_ = true;
    throw_errno(errno, "create", path);
  }
  if (opts_.synced) {
    unsynced_fds_.push_back(fd_);
  } else {
    ::close(fd_);
  }
  fd_ = fd;
  adopt_segment(next_seq_, std::move(path));
  return true;
}

std::uint64_t SegmentLog::append_record(RecordType type, std::string_view payload, Location& loc) {
  check_usable();
  const std::size_t bytes = kRecordHeaderBytes + payload.size();
  maybe_rotate(bytes);
  const std::uint64_t seq = next_seq_;
  const std::size_t at = buf_.size();
  buf_.resize(at + bytes);
  char* r = buf_.data() + at;
  put_u32(r, static_cast<std::uint32_t>(payload.size()));
  put_u64(r + 8, seq);
  r[16] = static_cast<char>(type);
  if (!payload.empty()) std::memcpy(r + kRecordHeaderBytes, payload.data(), payload.size());
  put_u32(r + 4, crc32c(r + 8, 9 + payload.size()));

  Segment& cur = segments_.at(current_);
  loc = Location{current_, cur.size, static_cast<std::uint32_t>(payload.size())};
  cur.size += bytes;
  ++next_seq_;
  dirty_ = true;
  if (buf_.size() >= opts_.write_buffer_bytes) flush();
  return seq;
}

std::uint64_t SegmentLog::append_event(std::string_view payload) {
  if (payload.size() > opts_.max_record_bytes)
    throw std::length_error("segment log: event payload over max_record_bytes");
  Location loc;
  const std::uint64_t seq = append_record(RecordType::event, payload, loc);
  pending_[seq] = loc;
  ++segments_.at(loc.segment).live_events;
  unsynced_events_ = true;
  return seq;
}

void SegmentLog::append_completion(std::uint64_t seq) {
  const auto it = pending_.find(seq);
  if (it == pending_.end()) return;
  char body[8];
  put_u64(body, seq);
  Location loc;
  append_record(RecordType::completion, std::string_view(body, sizeof body), loc);
  const std::uint64_t event_segment = it->second.segment;
  --segments_.at(event_segment).live_events;
  if (event_segment != loc.segment) segments_.at(loc.segment).refs.insert(event_segment);
  pending_.erase(it);
}

void SegmentLog::mark_committed() noexcept {
  mark_ = Mark{current_, segments_.at(current_).size - buf_.size()};
}

void SegmentLog::abandon() noexcept {
  broken_ = true;
  if (abandoned_) return;
  abandoned_ = true;
  buf_.clear();
  // Newest first: a crash part way leaves the log shorter, never with a gap.
  for (auto it = segments_.rbegin(); it != segments_.rend() && it->first > mark_.segment; ++it)
    ::unlink(it->second.path.c_str());
  if (const auto it = segments_.find(mark_.segment); it != segments_.end()) {
    if (::truncate(it->second.path.c_str(), static_cast<off_t>(mark_.size)) != 0) {
      // Deleted meanwhile (a completed segment): nothing of it to cut.
    }
  }
}

void SegmentLog::flush() {
  if (buf_.empty()) return;
  check_usable();
  try {
    write_all(fd_, buf_.data(), buf_.size(), segments_.at(current_).path);
  } catch (...) {
    // A write that failed part way (no space left, a file size limit) may have put whole
    // records on disk before it stopped: records whose appends are being refused. abandon()
    // cuts them, with all else since the last commit, so a restart does not resurrect events
    // that were answered "not stored".
    abandon();
    throw;
  }
  buf_.clear();
}

bool SegmentLog::sync() {
  flush();
  check_usable();
  if (!dirty_ && unsynced_fds_.empty() && !dir_dirty_) return false;  // nothing new to make durable
  // After a failed fdatasync the kernel may have dropped the dirty pages: never retry it.
  while (!unsynced_fds_.empty()) {
    const int fd = unsynced_fds_.back();
    if (::fdatasync(fd) != 0) {
      broken_ = true;
      throw_errno(errno, "fdatasync (closed segment) in", dir_);
    }
    ::close(fd);
    unsynced_fds_.pop_back();
  }
  if (::fdatasync(fd_) != 0) {
    broken_ = true;
    throw_errno(errno, "fdatasync", segments_.at(current_).path);
  }
  dirty_ = false;
  unsynced_events_ = false;
  if (dir_dirty_) {
    if (::fsync(dir_fd_) != 0) {
      broken_ = true;
      throw_errno(errno, "fsync", dir_);
    }
    dir_dirty_ = false;
  }
  return true;
}

std::size_t SegmentLog::collect() {
  // A current segment whose events are all completed would otherwise stay on disk until it
  // fills up, however long that takes: once it is worth a file, it may go too (a new, empty
  // segment becomes current first).
  const bool retire_current =
      segments_.at(current_).size >= std::max<std::uint64_t>(1, opts_.segment_bytes / 8);
  // Segments are visited oldest first, so a segment whose completions point at an older one
  // can go in the same pass, right after it.
  std::vector<std::uint64_t> doomed;
  std::set<std::uint64_t> going;
  for (auto& [base, seg] : segments_) {
    if ((base == current_ && !retire_current) || seg.live_events != 0) continue;
    std::erase_if(seg.refs, [&](std::uint64_t r) { return !segments_.contains(r); });
    if (!std::all_of(seg.refs.begin(), seg.refs.end(),
                     [&](std::uint64_t r) { return going.contains(r); }))
      continue;
    doomed.push_back(base);
    going.insert(base);
  }
  // The current segment goes only once a new one has taken its place; out of descriptors,
  // nothing goes this time (older segments may hold events it completes).
  if (going.contains(current_) && !roll()) return 0;
  if (doomed.empty()) return 0;
  // The completions that justify the deletion must be on disk before anything goes.
  sync();
  std::size_t deleted = 0;
  for (std::uint64_t base : doomed) {
    // With an older segment left, the deletion opens a gap: recorded first, so recovery does not
    // take it for damage. If that fails (a full disk), this segment and the later ones (which may
    // hold its completions) wait for the next collect.
    if (base != segments_.begin()->first && !record_deletion(base)) break;
    const fs::path path = segments_.at(base).path;
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw_errno(errno, "unlink", path);
    segments_.erase(base);
    // Each unlink is made durable before the next, so a crash can never keep an older segment
    // while losing the newer one that holds its completions.
    if (::fsync(dir_fd_) != 0) throw_errno(errno, "fsync", dir_);
    ++deleted;
  }
  forget_deletions();
  return deleted;
}

std::vector<Record> SegmentLog::pending() {
  std::vector<DamagedRecord> damaged;
  return read_pending(0, UINT64_MAX, pending_.size(), damaged);
}

// Records lie in sequence order in their segment, so a run of pending records of one segment
// is read with one pread, from the first one's header to the end of the last one's payload
// (completions and completed events in between come along and are skipped). A run stops at
// kReadSpan bytes unless one record alone is bigger: a backlog read back after a restart, or
// past the memory window, costs a system call per run, not per event.
// A record the read did not reach (the file shrank) is damaged like one whose bytes changed: its
// bytes are gone all the same, and the records before it are good. A failing pread is not
// damage of a record but of the disk, and is thrown.
std::vector<Record> SegmentLog::read_pending(std::uint64_t after, std::uint64_t upto,
                                             std::size_t max, std::vector<DamagedRecord>& damaged) {
  flush();
  std::vector<Record> out;
  // Runs come in sequence order, so segment by segment: one open file at a time.
  std::uint64_t open_segment = 0;
  std::unique_ptr<Fd> fd;
  std::string buf;
  const auto run_end = [&](auto i) { return i == pending_.end() || i->first > upto; };
  const auto end_of = [](const Location& loc) {
    return loc.offset + kRecordHeaderBytes + loc.length;
  };
  auto it = pending_.upper_bound(after);
  while (!run_end(it) && out.size() < max) {
    const std::uint64_t segment = it->second.segment;
    const std::uint64_t start = it->second.offset;
    auto next = std::next(it);
    std::size_t count = 1;
    while (!run_end(next) && out.size() + count < max && next->second.segment == segment &&
           end_of(next->second) - start <= kReadSpan) {
      ++next;
      ++count;
    }
    const Segment& seg = segments_.at(segment);
    if (!fd || open_segment != segment) {
      fd.reset();  // closed before the next opens: one descriptor, whatever the run spans
      fd = std::make_unique<Fd>(::open(seg.path.c_str(), O_RDONLY | O_CLOEXEC));
      if (fd->get() < 0) {
        // Out of descriptors: what was read so far, and the caller asks again later.
        if (out_of_descriptors(errno) && !out.empty()) return out;
        throw_errno(errno, "open", seg.path);
      }
      open_segment = segment;
    }
    const std::size_t bytes = end_of(std::prev(next)->second) - start;
    buf.resize(bytes);
    const std::size_t got = pread_all(fd->get(), buf.data(), bytes, start, seg.path);
    for (; it != next; ++it) {
      const auto& [seq, loc] = *it;
      const auto* r = reinterpret_cast<const unsigned char*>(buf.data()) + (loc.offset - start);
      if (end_of(loc) - start > got || get_u32(r) != loc.length || get_u64(r + 8) != seq ||
          crc32c(r + 8, 9 + std::size_t{loc.length}) != get_u32(r + 4)) {
        damaged.push_back(DamagedRecord{seq, seg.path});
        continue;
      }
      out.push_back(Record{
          seq, std::string(reinterpret_cast<const char*>(r) + kRecordHeaderBytes, loc.length)});
    }
  }
  return out;
}

}  // namespace botgate::storage
