// Room for new events on the queue's disk: refused below min_free, probed again now and then.
#include "storage/disk_room.hpp"

#include <catch2/catch.hpp>
#include <cstdint>
#include <optional>

using botgate::storage::DiskRoom;

namespace {

constexpr std::int64_t kMs = 1'000'000;

struct FakeDisk {
  std::optional<std::uint64_t> free = 1000;
  int probes = 0;
  DiskRoom::Probe probe() {
    return [this] {
      ++probes;
      return free;
    };
  }
};

}  // namespace

TEST_CASE("disk room admits events while they leave min_free", "[storage][disk_room]") {
  FakeDisk disk;
  DiskRoom room(400, disk.probe());
  room.probe(0);
  CHECK_FALSE(room.full());
  // 600 bytes above min_free: counted down between probes, without probing again.
  CHECK(room.admit(250, 1 * kMs));
  CHECK(room.admit(250, 2 * kMs));
  CHECK(disk.probes == 1);
  // 100 left above min_free: a 200-byte event does not fit (the probe is 3 ms old: no other).
  CHECK_FALSE(room.admit(200, 3 * kMs));
  CHECK(room.admit(100, 4 * kMs));  // a small one still fits within the count
  CHECK(disk.probes == 1);
  // 100 ms on, a refusal probes again, which finds space freed (completed segments deleted).
  disk.free = 1000;
  CHECK(room.admit(200, 300 * kMs));
  CHECK(disk.probes == 2);
}

TEST_CASE("disk room refuses below min_free and probes at most every 100 ms",
          "[storage][disk_room]") {
  FakeDisk disk;
  disk.free = 300;
  DiskRoom room(400, disk.probe());
  room.probe(0);
  CHECK(room.full());
  CHECK_FALSE(room.admit(1, 1 * kMs));
  CHECK_FALSE(room.admit(1, 50 * kMs));
  CHECK(disk.probes == 1);  // refusals within 100 ms of the probe do not probe again
  disk.free = 5000;
  CHECK_FALSE(room.admit(1, 99 * kMs));
  CHECK(room.admit(1, 100 * kMs));  // 100 ms on: probed, and there is room
  CHECK(disk.probes == 2);
  CHECK_FALSE(room.full());
  // The housekeeping probe sees space go as well as come.
  disk.free = 10;
  room.probe(150 * kMs);
  CHECK(room.full());
}

TEST_CASE("disk room with min_free 0 never probes and never refuses", "[storage][disk_room]") {
  FakeDisk disk;
  disk.free = 0;
  DiskRoom room(0, disk.probe());
  room.probe(0);
  CHECK(room.admit(1u << 30, 1));
  CHECK_FALSE(room.full());
  CHECK(disk.probes == 0);
}

TEST_CASE("disk room does not refuse when the free space cannot be told", "[storage][disk_room]") {
  FakeDisk disk;
  disk.free = std::nullopt;  // statvfs failed: the write itself will say whether it fits
  DiskRoom room(400, disk.probe());
  room.probe(0);
  CHECK_FALSE(room.full());
  CHECK(room.admit(10'000, 1 * kMs));
}

TEST_CASE("disk room stays low after refusing an event until there is room for it",
          "[storage][disk_room]") {
  FakeDisk disk;
  disk.free = 400 + 200;  // 200 above min_free
  DiskRoom room(400, disk.probe());
  room.probe(0);
  CHECK_FALSE(room.full());
  CHECK_FALSE(room.admit(300, 1 * kMs));  // too big for what is left above min_free
  CHECK(room.full());
  // Smaller events still go in, without ending the state: no flapping with event sizes.
  CHECK(room.admit(10, 2 * kMs));
  CHECK(room.full());
  CHECK(room.admit(10, 3 * kMs));
  CHECK(room.full());
  // A probe that finds room for the refused size ends it.
  disk.free = 400 + 1000;
  room.probe(1000 * kMs);
  CHECK_FALSE(room.full());
}
