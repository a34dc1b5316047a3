#include "storage/dedup_journal.hpp"

#include <fcntl.h>
#include <openssl/sha.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
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
using io::put_u32;
using io::put_u64;
using io::throw_errno;
using io::write_all;

namespace {

// Buffered bytes that trigger a flush() on their own.
constexpr std::size_t kWriteBufferBytes = 64u << 10;

std::uint64_t get_u64_be(const unsigned char* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

constexpr std::string_view kPrefix = "dedup-";
constexpr std::string_view kSuffix = ".log";

std::string file_name(std::uint64_t base) {
  return io::numbered_name(kPrefix, base, kSuffix);
}

// The number encoded in a journal file name, or nothing if it is not one.
std::optional<std::uint64_t> parse_file_name(const std::string& name) {
  return io::parse_numbered_name(name, kPrefix, kSuffix);
}

}  // namespace

// The low-level SHA256_* calls are deprecated in OpenSSL 3 but, unlike EVP, neither allocate nor
// fetch an implementation per call, so hashing cannot fail and stays cheap on the hot path.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
IdHash hash_id(std::string_view source, std::string_view id) noexcept {
  SHA256_CTX ctx;
  SHA256_Init(&ctx);
  SHA256_Update(&ctx, source.data(), source.size());
  const unsigned char sep = 0;
  SHA256_Update(&ctx, &sep, 1);
  SHA256_Update(&ctx, id.data(), id.size());
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256_Final(d, &ctx);
  return IdHash{get_u64_be(d), get_u64_be(d + 8)};
}
#pragma GCC diagnostic pop

DedupJournal::DedupJournal(fs::path dir, std::chrono::milliseconds window)
    : dir_(std::move(dir)), window_(window) {}

DedupJournal::~DedupJournal() {
  if (!broken_) {
    try {
      flush();
    } catch (...) {
    }
  }
  for (auto& [base, f] : files_)
    if (f.unsynced_fd >= 0) ::close(f.unsynced_fd);
  if (fd_ >= 0) ::close(fd_);
  if (dir_fd_ >= 0) ::close(dir_fd_);  // also releases the lock
}

std::unique_ptr<DedupJournal> DedupJournal::open(fs::path dir, std::chrono::milliseconds window,
                                                 std::int64_t now_ms, std::vector<DedupEntry>& live,
                                                 DedupRecovery& report) {
  if (window.count() <= 0) throw std::invalid_argument("dedup journal: window must be > 0");
  std::unique_ptr<DedupJournal> j(new DedupJournal(std::move(dir), window));
  report = DedupRecovery{};
  live.clear();
  fs::create_directories(j->dir_);
  j->dir_fd_ = ::open(j->dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (j->dir_fd_ < 0) throw_errno(errno, "open", j->dir_);
  if (::flock(j->dir_fd_, LOCK_EX | LOCK_NB) != 0) throw_errno(errno, "lock", j->dir_);
  j->recover(now_ms, live, report);
  return j;
}

void DedupJournal::recover(std::int64_t now_ms, std::vector<DedupEntry>& live,
                           DedupRecovery& report) {
  std::vector<std::pair<std::uint64_t, fs::path>> names;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    if (!entry.is_regular_file()) continue;
    if (auto base = parse_file_name(entry.path().filename().string()))
      names.emplace_back(*base, entry.path());
  }
  std::sort(names.begin(), names.end());

  const std::int64_t cutoff = now_ms - window_.count();
  for (const auto& [base, path] : names) {
    Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (fd.get() < 0) throw_errno(errno, "open", path);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw_errno(errno, "stat", path);
    const auto size = static_cast<std::uint64_t>(st.st_size);
    const std::uint64_t whole = size - size % kDedupRecordBytes;
    ++report.files_scanned;

    File f{path};
    bool any_good = false;
    bool any_live = false;
    if (whole > 0) {
      void* map = ::mmap(nullptr, whole, PROT_READ, MAP_PRIVATE, fd.get(), 0);
      if (map == MAP_FAILED) throw_errno(errno, "mmap", path);
      const auto* p = static_cast<const unsigned char*>(map);
      for (std::uint64_t off = 0; off < whole; off += kDedupRecordBytes) {
        const unsigned char* r = p + off;
        if (crc32c(r, 24) != get_u32(r + 24) || get_u32(r + 28) != 0) {
          ++report.entries_corrupt;
          continue;
        }
        const DedupEntry e{IdHash{get_u64(r), get_u64(r + 8)},
                           static_cast<std::int64_t>(get_u64(r + 16))};
        f.oldest_ms = any_good ? std::min(f.oldest_ms, e.completed_ms) : e.completed_ms;
        f.newest_ms = any_good ? std::max(f.newest_ms, e.completed_ms) : e.completed_ms;
        any_good = true;
        if (e.completed_ms > cutoff) {
          live.push_back(e);
          any_live = true;
        } else {
          ++report.entries_expired;
        }
      }
      ::munmap(map, whole);
    }
    if (whole != size) ++report.entries_corrupt;

    if (!any_live) {
      if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw_errno(errno, "unlink", path);
      ++report.files_deleted;
      continue;
    }
    // Any kept file may become the one appended to, so a torn tail goes from all of them.
    if (whole != size) {
      if (::ftruncate(fd.get(), static_cast<off_t>(whole)) != 0)
        throw_errno(errno, "truncate", path);
      if (::fdatasync(fd.get()) != 0) throw_errno(errno, "fdatasync", path);
    }
    files_.emplace(base, std::move(f));
  }

  if (!files_.empty()) {
    const fs::path& path = files_.rbegin()->second.path;
    fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd_ < 0) throw_errno(errno, "open", path);
  }
  // Files are in creation order, so this only moves entries whose times went backwards.
  const auto by_time = [](const DedupEntry& a, const DedupEntry& b) {
    return a.completed_ms < b.completed_ms;
  };
  if (!std::is_sorted(live.begin(), live.end(), by_time))
    std::stable_sort(live.begin(), live.end(), by_time);
  report.entries_loaded = live.size();
}

bool DedupJournal::create_file(std::int64_t first_ms) {
  std::uint64_t base = static_cast<std::uint64_t>(std::max<std::int64_t>(first_ms, 0));
  if (!files_.empty()) base = std::max(base, files_.rbegin()->first + 1);
  fs::path path = dir_ / file_name(base);
  const int fd = create_for_append(path);
  if (fd < 0) {
    if (out_of_descriptors(errno)) return false;
    throw_errno(errno, "create", path);
  }
  files_.emplace(base, File{std::move(path), first_ms, first_ms});
  fd_ = fd;
  dir_dirty_ = true;
  return true;
}

void DedupJournal::close_current() {
  flush();
  if (data_dirty_) {
    files_.rbegin()->second.unsynced_fd = fd_;
  } else {
    ::close(fd_);
  }
  fd_ = -1;
  data_dirty_ = false;
}

void DedupJournal::check_usable() const {
  if (broken_)
    throw std::system_error(EIO, std::generic_category(),
                            "dedup journal " + dir_.string() + " unusable after an I/O error");
}

void DedupJournal::append(const DedupEntry& e) {
  check_usable();
  if (fd_ < 0) {
    // Running out of descriptors passes; until then the window holds these entries in memory
    // only (a crash meanwhile forgets them: a platform's resend may then be delivered again).
    const std::int64_t first = waiting_.empty() ? e.completed_ms : waiting_.front().completed_ms;
    if (!create_file(first)) {
      waiting_.push_back(e);
      return;
    }
    for (const auto& w : waiting_) buffer(w);
    waiting_.clear();
  }
  buffer(e);
}

void DedupJournal::buffer(const DedupEntry& e) {
  File& cur = files_.rbegin()->second;
  cur.oldest_ms = std::min(cur.oldest_ms, e.completed_ms);
  cur.newest_ms = std::max(cur.newest_ms, e.completed_ms);

  const std::size_t at = buf_.size();
  buf_.resize(at + kDedupRecordBytes);
  auto* r = reinterpret_cast<unsigned char*>(buf_.data() + at);
  put_u64(r, e.id.hi);
  put_u64(r + 8, e.id.lo);
  put_u64(r + 16, static_cast<std::uint64_t>(e.completed_ms));
  put_u32(r + 24, crc32c(r, 24));
  put_u32(r + 28, 0);
  if (buf_.size() >= kWriteBufferBytes) flush();
}

void DedupJournal::flush() {
  if (buf_.empty()) return;
  check_usable();
  try {
    write_all(fd_, buf_.data(), buf_.size(), files_.rbegin()->second.path);
  } catch (...) {
    broken_ = true;
    throw;
  }
  buf_.clear();
  data_dirty_ = true;
}

void DedupJournal::sync() {
  flush();
  check_usable();
  // After a failed fdatasync the kernel may have dropped the dirty pages: never retry it.
  for (auto& [base, f] : files_) {
    if (f.unsynced_fd < 0) continue;
    if (::fdatasync(f.unsynced_fd) != 0) {
      broken_ = true;
      throw_errno(errno, "fdatasync", f.path);
    }
    ::close(f.unsynced_fd);
    f.unsynced_fd = -1;
  }
  if (fd_ >= 0 && data_dirty_) {
    if (::fdatasync(fd_) != 0) {
      broken_ = true;
      throw_errno(errno, "fdatasync", files_.rbegin()->second.path);
    }
    data_dirty_ = false;
  }
  if (dir_dirty_) {
    if (::fsync(dir_fd_) != 0) {
      broken_ = true;
      throw_errno(errno, "fsync", dir_);
    }
    dir_dirty_ = false;
  }
}

void DedupJournal::expire(std::int64_t now_ms) {
  check_usable();
  if (fd_ >= 0 && files_.rbegin()->second.oldest_ms < now_ms - window_.count() / 2) close_current();
  const std::int64_t cutoff = now_ms - window_.count();
  for (auto it = files_.begin(); it != files_.end();) {
    File& f = it->second;
    const bool current = fd_ >= 0 && std::next(it) == files_.end();
    if (current || f.newest_ms > cutoff) {
      ++it;
      continue;
    }
    if (::unlink(f.path.c_str()) != 0 && errno != ENOENT) throw_errno(errno, "unlink", f.path);
    // Its entries are expired: whether they reach the disk no longer matters.
    if (f.unsynced_fd >= 0) ::close(f.unsynced_fd);
    it = files_.erase(it);
  }
}

}  // namespace botgate::storage
