// CRC32C (Castagnoli): the checksum of every segment-log record.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace botgate::storage {

// Extends `crc` (the CRC32C of the bytes before `data`; 0 for none) over `n` bytes.
// Reflected polynomial 0x82F63B78, init and final xor 0xFFFFFFFF, so
// crc32c(b, crc32c(a)) == crc32c(a + b). Uses SSE4.2's crc32 instruction when the CPU has
// it, and crc32c_portable otherwise.
std::uint32_t crc32c(const void* data, std::size_t n, std::uint32_t crc = 0) noexcept;

// The same checksum in software (slicing-by-8), on any CPU. Exposed so that tests check
// both ways of computing it.
std::uint32_t crc32c_portable(const void* data, std::size_t n, std::uint32_t crc = 0) noexcept;

inline std::uint32_t crc32c(std::string_view s, std::uint32_t crc = 0) noexcept {
  return crc32c(s.data(), s.size(), crc);
}

}  // namespace botgate::storage
