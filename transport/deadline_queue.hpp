// Many waits raced against one fixed timeout, with one Asio timer for all of them.
// A timer per wait costs a timer-queue insert, a handler allocation and, when the
// wait is settled from another thread, a cross-thread post to cancel it. Here an
// entry is one deque slot: entries come in deadline order (the timeout is fixed and
// the deadline is taken under the lock), an entry settled early is dropped when it
// reaches the front, and the timer is armed for the front only.
//
// T must have `bool settled() const`, thread-safe; `expire` gets each entry whose
// deadline passed unsettled, on an io thread, never later than the timer fires for
// it. Thread-safe. Memory: the entries in flight, plus settled ones queued behind an
// unsettled one until it expires (at most `timeout` of arrivals): keep T small once
// settled. The queue may be destroyed while its io_context runs; a pending wait then
// finds it gone and does nothing.
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
      : state_(std::make_shared<State>(ioc, timeout, std::move(expire))) {}
  DeadlineQueue(const DeadlineQueue&) = delete;
  DeadlineQueue& operator=(const DeadlineQueue&) = delete;
  ~DeadlineQueue() {
    std::lock_guard lock(state_->mutex);
    state_->timer.cancel();
  }

  // Expires `item` timeout from now unless it is settled by then.
  void watch(std::shared_ptr<T> item) {
    State& s = *state_;
    std::lock_guard lock(s.mutex);
    while (!s.queue.empty() && s.queue.front().second->settled()) s.queue.pop_front();
    s.queue.emplace_back(Clock::now() + s.timeout, std::move(item));
    arm(state_);
  }

  std::size_t size() const {
    std::lock_guard lock(state_->mutex);
    return state_->queue.size();
  }

 private:
  struct State {
    State(boost::asio::io_context& ioc, Clock::duration t, Expire e)
        : timer(ioc), timeout(t), expire(std::move(e)) {}
    std::mutex mutex;
    std::deque<std::pair<Clock::time_point, std::shared_ptr<T>>> queue;
    boost::asio::steady_timer timer;
    bool armed = false;
    Clock::duration timeout;
    Expire expire;
  };

  // With the state's mutex held.
  static void arm(const std::shared_ptr<State>& state) {
    State& s = *state;
    if (s.armed || s.queue.empty()) return;
    s.armed = true;
    s.timer.expires_at(s.queue.front().first);
    s.timer.async_wait([weak = std::weak_ptr<State>(state)](const boost::system::error_code& ec) {
      if (auto live = weak.lock(); live && !ec) on_timer(live);
    });
  }

  static void on_timer(const std::shared_ptr<State>& state) {
    State& s = *state;
    std::vector<std::shared_ptr<T>> due;
    {
      std::lock_guard lock(s.mutex);
      s.armed = false;
      const auto now = Clock::now();
      while (!s.queue.empty() &&
             (s.queue.front().second->settled() || s.queue.front().first <= now)) {
        if (!s.queue.front().second->settled()) due.push_back(std::move(s.queue.front().second));
        s.queue.pop_front();
      }
      arm(state);
    }
    for (const auto& item : due) s.expire(item);
  }

  std::shared_ptr<State> state_;
};

}  // namespace botgate::http
