// A per-thread cache of the big blocks pugixml takes for every document it parses.
//
// pugixml allocates a 32 KiB page for each document's nodes and gives it back when the
// document goes: two such round trips per WeChat callback (the envelope, then the message).
// glibc serves no block that size from its per-thread cache: each one walks the free lists
// and first consolidates every fast bin (malloc_consolidate showed in botgate's profile
// under WeChat load). This keeps up to kCachedBlocks freed blocks of 16–64 KiB per thread and
// hands them back to pugixml; smaller and bigger requests go to malloc as before.
//
// The functions are pugixml's global allocator, installed once per process by
// use_xml_page_cache(). Every block, cached or not, comes from malloc, so blocks allocated
// before the installation are freed correctly after it.
#pragma once

#include <cstddef>

namespace botgate {

inline constexpr std::size_t kCachedBlocks = 4;
inline constexpr std::size_t kMinCachedBlock = 16 * 1024;
inline constexpr std::size_t kMaxCachedBlock = 64 * 1024;

// Installs the cache as pugixml's allocator (thread-safe, idempotent).
void use_xml_page_cache();

// The allocator itself, for tests.
void* xml_page_allocate(std::size_t size);
void xml_page_deallocate(void* block);
// Blocks this thread's cache holds.
std::size_t xml_pages_cached();

}  // namespace botgate
