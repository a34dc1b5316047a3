// Stable hashing: shard placement must not change between runs or builds.
#pragma once

#include <cstdint>
#include <string_view>

namespace botgate {

constexpr std::uint64_t fnv1a64(std::string_view s) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace botgate
