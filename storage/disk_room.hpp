// Room for new events on the queue's filesystem: a shard refuses new events while the free space
// is below [queue] min_free, and keeps writing completions, dead letters and dedup entries into
// that headroom. A disk filled by the backlog then empties as the backlog is delivered (completed
// segments are deleted), and events are taken again without a restart. Without the headroom the
// first write that found no space would fail the log: completions could not be recorded, and
// every restart would deliver the whole backlog again.
//
// The free space is probed (statvfs) now and then, not per event: between probes, each admitted
// event's bytes are taken off the last probe's figure. While that says there is no room, it is
// probed again at most every kReprobeNs, so space that comes back is seen within that.
// Not thread-safe: one shard's log owns it. The probe and the clock are the caller's (testable).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>

namespace botgate::storage {

class DiskRoom {
 public:
  static constexpr std::int64_t kReprobeNs = 100'000'000;  // 100 ms

  // Free bytes for an unprivileged writer, or nullopt when they cannot be told.
  using Probe = std::function<std::optional<std::uint64_t>()>;

  // min_free 0: every event is admitted and the disk is never probed.
  DiskRoom(std::uint64_t min_free, Probe probe) : min_free_(min_free), probe_(std::move(probe)) {}

  // Whether an event of `bytes` may be written, leaving min_free. Counts the bytes when it may.
  bool admit(std::uint64_t bytes, std::int64_t now_ns) {
    if (min_free_ == 0) return true;
    if (!fits(bytes) && (!probed_ || now_ns - probed_ns_ >= kReprobeNs)) probe(now_ns);
    if (!fits(bytes)) {
      refused_ = std::max(refused_, bytes);
      return false;
    }
    free_ -= bytes;
    if (bytes >= refused_) refused_ = 0;
    return true;
  }

  // Probes now (the housekeeping tick: other writers, deleted segments).
  void probe(std::int64_t now_ns) {
    if (min_free_ == 0) return;
    probed_ = true;
    probed_ns_ = now_ns;
    // Space that cannot be told is not taken for none: the write itself would fail.
    free_ = probe_().value_or(UINT64_MAX);
    if (fits(refused_)) refused_ = 0;
  }

  // Whether the disk is low: below min_free, or without room above it for the largest event
  // refused since there last was. Smaller events may still be admitted meanwhile, so the state
  // does not flap with the sizes of the events; it ends when a probe (or an admitted event as
  // large) shows that much room again.
  bool full() const noexcept {
    return min_free_ != 0 && probed_ && (free_ < min_free_ || (refused_ != 0 && !fits(refused_)));
  }
  std::uint64_t free_bytes() const noexcept { return free_; }
  std::uint64_t min_free() const noexcept { return min_free_; }

 private:
  bool fits(std::uint64_t bytes) const noexcept {
    return probed_ && free_ >= min_free_ && free_ - min_free_ >= bytes;
  }

  std::uint64_t min_free_;
  Probe probe_;
  bool probed_ = false;
  std::int64_t probed_ns_ = 0;
  std::uint64_t free_ = 0;
  std::uint64_t refused_ = 0;  // the largest event refused since the last room for it
};

}  // namespace botgate::storage
