// The per-thread cache of pugixml's big blocks (transport/xml_pages.hpp).
#include "transport/xml_pages.hpp"

#include <malloc.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <pugixml.hpp>
#include <string>
#include <vector>

using botgate::xml_page_allocate;
using botgate::xml_page_deallocate;
using botgate::xml_pages_cached;

namespace {

// Empties this thread's cache so that each test starts from nothing.
void drain() {
  std::vector<void*> held;
  while (xml_pages_cached() > 0) held.push_back(xml_page_allocate(botgate::kMinCachedBlock));
  for (void* p : held) std::free(p);
}

}  // namespace

TEST_CASE("a freed page is handed back to the next request of its size", "[xml_pages]") {
  drain();
  void* page = xml_page_allocate(32 * 1024 + 64);
  REQUIRE(page != nullptr);
  std::memset(page, 0xab, 32 * 1024 + 64);  // all of it is usable
  xml_page_deallocate(page);
  CHECK(xml_pages_cached() == 1);
  void* again = xml_page_allocate(32 * 1024 + 64);
  CHECK(again == page);
  CHECK(xml_pages_cached() == 0);
  xml_page_deallocate(again);
  drain();
}

TEST_CASE("small and huge blocks bypass the cache", "[xml_pages]") {
  drain();
  for (std::size_t size : {std::size_t{64}, std::size_t{1500}, std::size_t{256 * 1024}}) {
    INFO(size);
    void* p = xml_page_allocate(size);
    REQUIRE(p != nullptr);
    std::memset(p, 0, size);
    xml_page_deallocate(p);
    CHECK(xml_pages_cached() == 0);
  }
  xml_page_deallocate(nullptr);
  CHECK(xml_pages_cached() == 0);
}

TEST_CASE("the cache holds at most kCachedBlocks blocks", "[xml_pages]") {
  drain();
  std::vector<void*> pages;
  for (std::size_t i = 0; i < botgate::kCachedBlocks + 3; ++i) {
    pages.push_back(xml_page_allocate(32 * 1024));
  }
  for (void* p : pages) xml_page_deallocate(p);
  CHECK(xml_pages_cached() == botgate::kCachedBlocks);
  drain();
}

TEST_CASE("a cached block too small for a request is not returned for it", "[xml_pages]") {
  drain();
  void* small = xml_page_allocate(20 * 1024);
  xml_page_deallocate(small);
  REQUIRE(xml_pages_cached() == 1);
  void* big = xml_page_allocate(60 * 1024);
  REQUIRE(big != nullptr);
  CHECK(malloc_usable_size(big) >= 60 * 1024);
  CHECK(xml_pages_cached() == 0);  // the small block was freed, not kept
  xml_page_deallocate(big);
  drain();
}

TEST_CASE("pugixml parses through the cache, and its page comes back", "[xml_pages]") {
  botgate::use_xml_page_cache();
  botgate::use_xml_page_cache();  // idempotent
  drain();
  std::string xml = "<xml>";
  for (int i = 0; i < 200; ++i) xml += "<F" + std::to_string(i) + ">v</F" + std::to_string(i) + ">";
  xml += "</xml>";
  for (int round = 0; round < 3; ++round) {
    pugi::xml_document doc;
    REQUIRE(doc.load_buffer(xml.data(), xml.size()));
    CHECK(std::string(doc.child("xml").child("F199").child_value()) == "v");
  }
  // Each document's page went back to the cache and was reused by the next one.
  CHECK(xml_pages_cached() >= 1);
  CHECK(xml_pages_cached() <= 2);
  drain();
}
