// The queue directory at start-up: one botgate per directory, and the shard count it records.
#include "app/queue_dir.hpp"

#include <catch2/catch.hpp>
#include <fstream>
#include <string>

#include "tests/unit/scratch_dir.hpp"

namespace {

botgate::QueueConfig queue_at(const std::filesystem::path& dir, int shards) {
  botgate::QueueConfig q;
  q.dir = dir.string();
  q.shards = shards;
  return q;
}

std::string layout(const std::filesystem::path& dir) {
  std::ifstream in(dir / "botgate-queue");
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace

TEST_CASE("a queue directory is opened by one botgate at a time", "[queue_dir]") {
  botgate::test::ScratchDir dir("botgate-queue-dir");
  auto first = botgate::open_queue(queue_at(dir.path / "q", 2));
  REQUIRE(first.has_value());
  CHECK(first->shards.size() == 2);
  CHECK(layout(dir.path / "q") == "shards=2 placement=fnv1a64-fmix64");
  // Another start on the same directory, whatever its shard count, is refused before it
  // reads or writes the layout.
  CHECK_FALSE(botgate::open_queue(queue_at(dir.path / "q", 2)).has_value());
  CHECK_FALSE(botgate::open_queue(queue_at(dir.path / "q", 8)).has_value());
  CHECK(layout(dir.path / "q") == "shards=2 placement=fnv1a64-fmix64");
  first.reset();  // the lock goes with it
  auto again = botgate::open_queue(queue_at(dir.path / "q", 2));
  REQUIRE(again.has_value());
  again.reset();
  // The recorded count holds: another one is refused.
  CHECK_FALSE(botgate::open_queue(queue_at(dir.path / "q", 8)).has_value());
}
