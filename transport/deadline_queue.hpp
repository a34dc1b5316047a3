// Many waits raced against one fixed timeout, with one Asio timer for all of them.
// A timer per wait costs a timer-queue insert, a handler allocation and, when the
// wait is settled from another thread, a cross-thread post to cancel it. Here an
// entry is one deque slot: entries come in deadline order (the timeout is fixed and
// the deadline is taken under the lock), an entry settled early is dropped when it
// reaches the front, and the timer is armed for the front only.
//
// T must have `bool settled() const`, thread-safe; `expire` gets each entry whose
// deadline passed unsettled, on an io thread. Thread-safe. Memory: the entries in
// flight, plus any settled ones queued behind an unsettled one until it expires.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace botgate::http {

template <typename T>
class DeadlineQueue {
 public:
  using Clock = std::chrono::steady_clock;
  using Expire = std::function<void(const std::shared_ptr<T>&)>;

  DeadlineQueue(boost::asio::io_context& ioc, Clock::duration timeout, Expire expire)
      : timer_(ioc), timeout_(timeout), expire_(std::move(expire)) {}
  DeadlineQueue(const DeadlineQueue&) = delete;
  DeadlineQueue& operator=(const DeadlineQueue&) = delete;

  // Expires `item` timeout from now unless it is settled by then.
  void watch(std::shared_ptr<T> item) {
    std::lock_guard lock(mutex_);
    while (!queue_.empty() && queue_.front().second->settled()) queue_.pop_front();
    queue_.emplace_back(Clock::now() + timeout_, std::move(item));
    arm();
  }

  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return queue_.size();
  }

 private:
  // With mutex_ held.
  void arm() {
    if (armed_ || queue_.empty()) return;
    armed_ = true;
    timer_.expires_at(queue_.front().first);
    timer_.async_wait([this](const boost::system::error_code& ec) { on_timer(ec); });
  }

  void on_timer(const boost::system::error_code& ec) {
    std::vector<std::shared_ptr<T>> due;
    {
      std::lock_guard lock(mutex_);
      armed_ = false;
      if (ec) return;  // cancelled: the queue is going away
      const auto now = Clock::now();
      while (!queue_.empty() && (queue_.front().second->settled() || queue_.front().first <= now)) {
        if (!queue_.front().second->settled()) due.push_back(std::move(queue_.front().second));
        queue_.pop_front();
      }
      arm();
    }
    for (const auto& item : due) expire_(item);
  }

  mutable std::mutex mutex_;
  std::deque<std::pair<Clock::time_point, std::shared_ptr<T>>> queue_;
  boost::asio::steady_timer timer_;
  bool armed_ = false;
  Clock::duration timeout_;
  Expire expire_;
};

}  // namespace botgate::http
