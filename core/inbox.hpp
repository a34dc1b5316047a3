// A hand-off between threads that wakes the consumer once per burst, not once per
// item. Producers push from any thread; push() is true for the first item after the
// consumer last took everything, and that producer schedules one take (a post, a
// message). The consumer swaps the whole batch out with take(), which leaves its
// own cleared buffer behind, so neither side regrows a vector per burst.
#pragma once

#include <mutex>
#include <utility>
#include <vector>

namespace botgate {

template <typename T>
class Inbox {
 public:
  // True when the inbox was empty: the caller must schedule a take().
  [[nodiscard]] bool push(T item) {
    std::lock_guard lock(mutex_);
    items_.push_back(std::move(item));
    return items_.size() == 1;
  }

  // Replaces `batch` (cleared first) with everything pushed since the last take.
  void take(std::vector<T>& batch) {
    batch.clear();
    std::lock_guard lock(mutex_);
    batch.swap(items_);
  }

 private:
  std::mutex mutex_;
  std::vector<T> items_;
};

}  // namespace botgate
