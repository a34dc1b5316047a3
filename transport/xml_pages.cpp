#include "transport/xml_pages.hpp"

#include <malloc.h>

#include <array>
#include <cstdlib>
#include <pugixml.hpp>

namespace botgate {
namespace {

struct Cache {
  std::array<void*, kCachedBlocks> blocks{};
  std::size_t count = 0;
  Cache() = default;
  Cache(const Cache&) = delete;
  Cache& operator=(const Cache&) = delete;
  ~Cache() {
    for (std::size_t i = 0; i < count; ++i) std::free(blocks[i]);
    count = 0;  // a late pugixml call on this exiting thread then goes to malloc
  }
};

thread_local Cache cache;

}  // namespace

void* xml_page_allocate(std::size_t size) {
  if (size >= kMinCachedBlock && size <= kMaxCachedBlock) {
    while (cache.count > 0) {
      void* block = cache.blocks[--cache.count];
      if (malloc_usable_size(block) >= size) return block;
      std::free(block);  // cached for a smaller request: not this one's
    }
  }
  return std::malloc(size);
}

void xml_page_deallocate(void* block) {
  if (block == nullptr) return;
  const std::size_t size = malloc_usable_size(block);
  if (size >= kMinCachedBlock && size <= kMaxCachedBlock && cache.count < kCachedBlocks) {
    cache.blocks[cache.count++] = block;
    return;
  }
  std::free(block);
}

std::size_t xml_pages_cached() {
  return cache.count;
}

void use_xml_page_cache() {
  static const bool installed = [] {
    pugi::set_memory_management_functions(xml_page_allocate, xml_page_deallocate);
    return true;
  }();
  (void)installed;
}

}  // namespace botgate
