// Shard placement: stable across runs and spread over the shards.
#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <vector>

#include "actors/shard_set.hpp"

using botgate::ShardSet;

TEST_CASE("placement is stable", "[hash]") {
  // Part of the queue directory's format: these must never change.
  CHECK(botgate::fnv1a64("") == 0xcbf29ce484222325ull);
  CHECK(botgate::fnv1a64("a") == 0xaf63dc4c8601ec8cull);
  CHECK(ShardSet::shard_of("alice", 4) == ShardSet::shard_of(std::string("alice"), 4));
}

TEST_CASE("fnv1a64 continues a hash over earlier bytes", "[hash]") {
  // The shard's queue map hashes (route, conversation) piece by piece this way.
  CHECK(botgate::fnv1a64("b", botgate::fnv1a64("a")) == botgate::fnv1a64("ab"));
  CHECK(botgate::fnv1a64("conv", botgate::fnv1a64("\x1f", botgate::fnv1a64("pool"))) ==
        botgate::fnv1a64("pool\x1f"
                         "conv"));
}

TEST_CASE("placement spreads similar conversation names over the shards", "[hash]") {
  // FNV-1a alone maps these five to one shard of four (its low bits only see low bits).
  std::set<std::size_t> letters;
  for (const char* c : {"a", "e", "i", "m", "q"}) letters.insert(ShardSet::shard_of(c, 4));
  CHECK(letters.size() > 1);
  for (std::size_t shards : {2u, 4u, 8u, 16u}) {
    std::vector<int> count(shards, 0);
    constexpr int kNames = 16000;
    for (int i = 0; i < kNames; ++i) ++count[ShardSet::shard_of("c" + std::to_string(i), shards)];
    const double mean = static_cast<double>(kNames) / static_cast<double>(shards);
    for (std::size_t s = 0; s < shards; ++s) {
      INFO("shards=" << shards << " shard " << s << " got " << count[s]);
      CHECK(std::abs(count[s] - mean) < 0.1 * mean);
    }
  }
}
