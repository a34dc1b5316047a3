// A deadline timer that is cheap to push back. Connections move their deadline on
// every request; re-arming an Asio timer each time costs a timer-queue update and
// a handler allocation. LazyTimer only re-arms when the new deadline is earlier
// than the one it is armed for; otherwise it lets the armed wait fire, and the
// owner's callback checks its real deadline and calls ensure() again.
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <utility>

namespace botgate::http {

class LazyTimer {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  template <typename Executor>
  explicit LazyTimer(const Executor& ex) : timer_(ex) {}

  // Makes sure `fire` runs (on the timer's executor) no later than `at`. `fire`
  // should hold what it needs alive; it is dropped if the wait is superseded. A call
  // that finds the timer armed early enough does nothing with `fire` (callers pass a
  // lambda, not a std::function, so that such a call allocates nothing).
  template <typename Fire>
  void ensure(TimePoint at, Fire&& fire) {
    if (armed_ && armed_at_ <= at) return;
    armed_ = true;
    armed_at_ = at;
    timer_.expires_at(at);  // a pending wait completes as superseded
    timer_.async_wait([this, generation = ++generation_,
                       fire = std::forward<Fire>(fire)](boost::system::error_code) mutable {
      if (generation != generation_) return;  // superseded or cancelled
      armed_ = false;
      fire();
    });
  }

  void cancel() {
    ++generation_;
    armed_ = false;
    timer_.cancel();
  }

 private:
  boost::asio::steady_timer timer_;
  TimePoint armed_at_{};
  std::uint64_t generation_ = 0;
  bool armed_ = false;
};

}  // namespace botgate::http
