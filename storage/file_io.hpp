// Small file and byte-order helpers shared by the storage formats (segment log, dedup journal).
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace botgate::storage::io {

[[noreturn]] void throw_errno(int err, const std::string& what, const std::filesystem::path& path);

// Creates `path`, which must not exist yet, for appending: the descriptor, or -1 with errno set.
int create_for_append(const std::filesystem::path& path) noexcept;

// EMFILE or ENFILE: the process or the system is out of file descriptors, which passes.
inline bool out_of_descriptors(int err) noexcept {
  return err == EMFILE || err == ENFILE;
}
// The same, for an error thrown by throw_errno.
bool out_of_descriptors(const std::exception& e) noexcept;

// Little-endian integers in a byte buffer (char or unsigned char).
template <typename Byte>
void put_u32(Byte* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<Byte>(v >> (8 * i));
}
template <typename Byte>
void put_u64(Byte* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<Byte>(v >> (8 * i));
}
inline std::uint32_t get_u32(const unsigned char* p) noexcept {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
inline std::uint64_t get_u64(const unsigned char* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// "<prefix><n, zero-padded to 20 digits><suffix>", and back (nothing if `name` is not one).
std::string numbered_name(std::string_view prefix, std::uint64_t n, std::string_view suffix);
std::optional<std::uint64_t> parse_numbered_name(std::string_view name, std::string_view prefix,
                                                 std::string_view suffix);

// Free bytes on the filesystem holding `path` for an unprivileged writer (statvfs f_bavail),
// or nullopt when statvfs fails.
std::optional<std::uint64_t> free_bytes(const std::filesystem::path& path) noexcept;

// write(2) all of it, retrying on EINTR and short writes; throws std::system_error.
void write_all(int fd, const char* p, std::size_t n, const std::filesystem::path& path);
// Reads up to n bytes at off; returns how many were read (less only at end of file).
std::size_t pread_all(int fd, char* p, std::size_t n, std::uint64_t off,
                      const std::filesystem::path& path);

// Owns a file descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) noexcept : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
  int get() const noexcept { return fd_; }

 private:
  int fd_;
};

}  // namespace botgate::storage::io
