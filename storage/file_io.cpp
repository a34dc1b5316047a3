#include "storage/file_io.hpp"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <system_error>

namespace botgate::storage::io {

namespace {
constexpr std::size_t kDigits = 20;
}

int create_for_append(const std::filesystem::path& path) noexcept {
  return ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
}

bool out_of_descriptors(const std::exception& e) noexcept {
  const auto* err = dynamic_cast<const std::system_error*>(&e);
  return err != nullptr && out_of_descriptors(err->code().value());
}

void throw_errno(int err, const std::string& what, const std::filesystem::path& path) {
  throw std::system_error(err, std::generic_category(), what + " " + path.string());
}

std::string numbered_name(std::string_view prefix, std::uint64_t n, std::string_view suffix) {
  char digits[kDigits + 1];
  std::snprintf(digits, sizeof digits, "%020llu", static_cast<unsigned long long>(n));
  std::string out(prefix);
  out += digits;
  out += suffix;
  return out;
}

std::optional<std::uint64_t> parse_numbered_name(std::string_view name, std::string_view prefix,
                                                 std::string_view suffix) {
  if (name.size() != prefix.size() + kDigits + suffix.size() || !name.starts_with(prefix) ||
      !name.ends_with(suffix))
    return std::nullopt;
  const char* first = name.data() + prefix.size();
  const char* last = first + kDigits;
  if (!std::all_of(first, last, [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  std::uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(first, last, v);
  if (ec != std::errc{} || ptr != last) return std::nullopt;
  return v;
}

std::optional<std::uint64_t> free_bytes(const std::filesystem::path& path) noexcept {
  struct statvfs fs {};
  if (::statvfs(path.c_str(), &fs) != 0) return std::nullopt;
  return static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize;
}

void write_all(int fd, const char* p, std::size_t n, const std::filesystem::path& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, "write", path);
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

std::size_t pread_all(int fd, char* p, std::size_t n, std::uint64_t off,
                      const std::filesystem::path& path) {
  std::size_t done = 0;
  while (done < n) {
    const ssize_t r = ::pread(fd, p + done, n - done, static_cast<off_t>(off + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, "pread", path);
    }
    if (r == 0) break;
    done += static_cast<std::size_t>(r);
  }
  return done;
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace botgate::storage::io
