// transport/deadline_queue: one timer for many waits with a fixed timeout.
#include "transport/deadline_queue.hpp"

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "tests/support/eventually.hpp"

using botgate::test::eventually;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

struct Wait {
  explicit Wait(int n) : id(n), since(Clock::now()) {}
  int id;
  Clock::time_point since;
  std::atomic<bool> done{false};
  bool settled() const { return done.load(); }
};

// An io_context run on its own thread for the test's lifetime.
struct Loop {
  boost::asio::io_context ioc;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{ioc.get_executor()};
  std::thread thread{[this] { ioc.run(); }};
  ~Loop() {
    work.reset();
    ioc.stop();
    thread.join();
  }
};

struct Expired {
  std::mutex mutex;
  std::vector<int> ids;
  std::vector<Clock::duration> after;  // from watch() to expiry
  void add(const Wait& w) {
    std::lock_guard lock(mutex);
    ids.push_back(w.id);
    after.push_back(Clock::now() - w.since);
  }
  std::vector<int> snapshot() {
    std::lock_guard lock(mutex);
    return ids;
  }
  std::vector<Clock::duration> delays() {
    std::lock_guard lock(mutex);
    return after;
  }
};

// A queue with a fixed timeout on a running loop, recording what expires.
struct Harness {
  explicit Harness(std::chrono::milliseconds timeout)
      : q(loop.ioc, timeout, [this](const std::shared_ptr<Wait>& w) { expired.add(*w); }) {}
  Expired expired;
  Loop loop;
  botgate::http::DeadlineQueue<Wait> q;
};

}  // namespace

TEST_CASE("deadline queue expires only unsettled waits, in order, not before the timeout",
          "[deadline_queue]") {
  Harness h(150ms);
  std::vector<std::shared_ptr<Wait>> waits;
  for (int i = 0; i < 6; ++i) {
    waits.push_back(std::make_shared<Wait>(i));
    h.q.watch(waits.back());
    std::this_thread::sleep_for(10ms);
  }
  // Settled in time: the first (the front), and two in the middle.
  waits[0]->done = true;
  waits[2]->done = true;
  waits[3]->done = true;
  REQUIRE(eventually([&] { return h.expired.snapshot().size() >= 3; }));
  std::this_thread::sleep_for(200ms);  // nothing more is due
  CHECK(h.expired.snapshot() == std::vector<int>{1, 4, 5});
  // At the timeout: not before, and not a tick or a later wait's deadline after it
  // (the bound leaves room for a loaded machine).
  for (auto d : h.expired.delays()) {
    CHECK(d >= 150ms);
    CHECK(d < 150ms + 100ms);
  }
  CHECK(h.q.size() == 0);
}

TEST_CASE("deadline queue drops waits settled at the front when the next one comes",
          "[deadline_queue]") {
  Harness h(10s);
  auto a = std::make_shared<Wait>(1);
  auto b = std::make_shared<Wait>(2);
  h.q.watch(a);
  h.q.watch(b);
  CHECK(h.q.size() == 2);
  a->done = true;
  b->done = true;
  // A steady flow of quickly settled waits keeps the queue at what is in flight.
  for (int i = 0; i < 1000; ++i) {
    auto w = std::make_shared<Wait>(100 + i);
    h.q.watch(w);
    w->done = true;
  }
  CHECK(h.q.size() == 1);
  CHECK(h.expired.snapshot().empty());
}

TEST_CASE("deadline queue re-arms for later waits after the timer fires", "[deadline_queue]") {
  Harness h(50ms);
  h.q.watch(std::make_shared<Wait>(1));
  REQUIRE(eventually([&] { return h.expired.snapshot().size() == 1; }));
  // The queue was empty and the timer idle: a new wait must arm it again.
  h.q.watch(std::make_shared<Wait>(2));
  REQUIRE(eventually([&] { return h.expired.snapshot().size() == 2; }));
  CHECK(h.expired.snapshot() == std::vector<int>{1, 2});
}

TEST_CASE("deadline queue destroyed with a wait armed: the wait does nothing", "[deadline_queue]") {
  Expired expired;
  Loop loop;
  {
    botgate::http::DeadlineQueue<Wait> q(loop.ioc, 50ms,
                                         [&](const std::shared_ptr<Wait>& w) { expired.add(*w); });
    q.watch(std::make_shared<Wait>(1));
  }
  std::this_thread::sleep_for(150ms);
  CHECK(expired.snapshot().empty());
}
