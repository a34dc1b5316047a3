// The queue directory at start-up: one botgate per directory, and the shard count it records.
#include "app/queue_dir.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "storage/event_record.hpp"
#include "tests/unit/file_size_limit.hpp"
#include "tests/unit/scratch_dir.hpp"
#include "tests/unit/stderr_capture.hpp"

namespace {

botgate::QueueConfig queue_at(const std::filesystem::path& dir, int shards) {
  botgate::QueueConfig q;
  q.dir = dir.string();
  q.shards = shards;
  return q;
}

void append_event(botgate::storage::ShardStore& store, const std::string& id) {
  botgate::Event ev;
  ev.source = "src";
  ev.id = id;
  ev.conversation = "c-" + id;
  ev.raw = "{}";
  store.events().append_event(botgate::storage::encode_event(ev));
  REQUIRE(store.commit());
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

TEST_CASE("a new queue directory locked by another botgate gets no layout from this one",
          "[queue_dir]") {
  // Two botgates starting together on a new directory: the one that loses the lock must not
  // write its shard count over the winner's.
  botgate::test::ScratchDir dir("botgate-queue-dir");
  const auto q = dir.path / "q";
  std::filesystem::create_directories(q);
  const int held = ::open(q.c_str(), O_RDONLY | O_DIRECTORY);
  REQUIRE(held >= 0);
  REQUIRE(::flock(held, LOCK_EX | LOCK_NB) == 0);
  CHECK_FALSE(botgate::open_queue(queue_at(q, 8)).has_value());
  CHECK_FALSE(std::filesystem::exists(q / "botgate-queue"));
  ::close(held);
  CHECK(botgate::open_queue(queue_at(q, 8)).has_value());
}

TEST_CASE("a first start that fails records no shard count", "[queue_dir]") {
  botgate::test::ScratchDir dir("botgate-queue-dir");
  const auto q = dir.path / "q";
  std::filesystem::create_directories(q);
  std::ofstream(q / "shard-1") << "a file where shard 1's directory must go";
  CHECK_FALSE(botgate::open_queue(queue_at(q, 4)).has_value());
  CHECK_FALSE(std::filesystem::exists(q / "botgate-queue"));
  // Nothing was ever stored: another count is fine.
  std::filesystem::remove(q / "shard-1");
  REQUIRE(botgate::open_queue(queue_at(q, 3)).has_value());
  CHECK(layout(q) == "shards=3 placement=fnv1a64-fmix64");
}

TEST_CASE("an empty layout file left by a failed first start pins nothing", "[queue_dir]") {
  botgate::test::ScratchDir dir("botgate-queue-dir");
  const auto q = dir.path / "q";
  std::filesystem::create_directories(q);
  std::ofstream(q / "botgate-queue").close();  // what an older botgate left on a full disk
  auto opened = botgate::open_queue(queue_at(q, 3));
  REQUIRE(opened.has_value());
  opened.reset();
  CHECK(layout(q) == "shards=3 placement=fnv1a64-fmix64");
  CHECK_FALSE(std::filesystem::exists(q / "botgate-queue.tmp"));
}

TEST_CASE("an empty or missing layout file over shard data of another count is refused",
          "[queue_dir]") {
  // Shards beyond a smaller count would never be read again, and a larger one reorders
  // conversations: only the count the data was written with may open it.
  const bool missing = GENERATE(false, true);
  INFO((missing ? "layout file missing" : "layout file empty"));
  botgate::test::ScratchDir dir("botgate-queue-dir");
  const auto q = dir.path / "q";
  {
    auto opened = botgate::open_queue(queue_at(q, 4));
    REQUIRE(opened.has_value());
    for (auto& shard : opened->shards) append_event(*shard.store, "e1");
  }
  if (missing) {
    std::filesystem::remove(q / "botgate-queue");
  } else {
    std::ofstream(q / "botgate-queue").close();
  }
  CHECK_FALSE(botgate::open_queue(queue_at(q, 2)).has_value());
  CHECK_FALSE(botgate::open_queue(queue_at(q, 8)).has_value());
  std::string log;
  {
    std::optional<botgate::OpenedQueue> opened;
    log = botgate::test::stderr_of(dir.path, [&] { opened = botgate::open_queue(queue_at(q, 4)); });
    REQUIRE(opened.has_value());
    for (const auto& shard : opened->shards) CHECK(shard.recovered->pending == 1);
  }
  CHECK_THAT(log, Catch::Contains(missing ? "layout file is missing: recording it again"
                                          : "layout file is empty: recording it again"));
  CHECK(layout(q) == "shards=4 placement=fnv1a64-fmix64");
}

TEST_CASE("a shard directory or log gone from a recorded queue is reported", "[queue_dir]") {
  botgate::test::ScratchDir dir("botgate-queue-dir");
  const auto q = dir.path / "q";
  {
    auto opened = botgate::open_queue(queue_at(q, 3));
    REQUIRE(opened.has_value());
    append_event(*opened->shards[1].store, "e1");
  }
  const auto part = GENERATE(as<std::string>{}, "shard-1", "shard-1/events", "shard-1/dead");
  INFO(part);
  std::filesystem::remove_all(q / part);
  std::optional<botgate::OpenedQueue> opened;
  const auto log =
      botgate::test::stderr_of(dir.path, [&] { opened = botgate::open_queue(queue_at(q, 3)); });
  REQUIRE(opened.has_value());
  CHECK_THAT(log, Catch::Contains("part of a shard's queue is missing") &&
                      Catch::Contains("shard=1") && Catch::Contains(part));
  // A layout file with trailing blanks is the same layout.
  opened.reset();
  std::ofstream(q / "botgate-queue") << "shards=3 placement=fnv1a64-fmix64  \n";
  CHECK(botgate::open_queue(queue_at(q, 3)).has_value());
}

TEST_CASE("a layout that cannot be written leaves no layout file", "[queue_dir]") {
  botgate::test::ScratchDir dir("botgate-queue-dir");
  const auto q = dir.path / "q";
  {
    botgate::test::FileSizeLimit limit(4);  // the shards open; the layout line does not fit
    CHECK_FALSE(botgate::open_queue(queue_at(q, 4)).has_value());
  }
  CHECK_FALSE(std::filesystem::exists(q / "botgate-queue"));
  CHECK_FALSE(std::filesystem::exists(q / "botgate-queue.tmp"));
  REQUIRE(botgate::open_queue(queue_at(q, 4)).has_value());
  CHECK(layout(q) == "shards=4 placement=fnv1a64-fmix64");
}
