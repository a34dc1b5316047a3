// Stable hashing: shard placement must not change between runs or builds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace botgate {

// FNV-1a. `h` continues a hash over earlier bytes: fnv1a64(b, fnv1a64(a)) == fnv1a64(a + b).
constexpr std::uint64_t fnv1a64(std::string_view s,
                                std::uint64_t h = 0xcbf29ce484222325ull) noexcept {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

// MurmurHash3's 64-bit finalizer: spreads every input bit over every output bit. FNV-1a's
// low bits depend only on the low bits of each byte, so `fnv1a64(s) % 4` alone would put
// "a", "e", "i", "m" and "q" on one shard.
constexpr std::uint64_t fmix64(std::uint64_t k) noexcept {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ull;
  k ^= k >> 33;
  return k;
}

// The placement hash of a conversation. Part of the queue directory's format: changing it
// moves conversations between shards (see app/queue_dir.cpp, which records it).
constexpr std::uint64_t placement_hash(std::string_view conversation) noexcept {
  return fmix64(fnv1a64(conversation));
}

// For maps keyed by std::string that are looked up by std::string_view, without a copy:
// std::unordered_map<std::string, T, StringHash, std::equal_to<>>.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return fmix64(fnv1a64(s)); }
};

}  // namespace botgate
