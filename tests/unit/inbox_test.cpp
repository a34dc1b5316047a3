// core/inbox: a cross-thread hand-off that asks for one wake-up per burst.
#include "core/inbox.hpp"

#include <atomic>
#include <catch2/catch.hpp>
#include <thread>
#include <vector>

TEST_CASE("inbox asks for a take only for the first item after the last take", "[inbox]") {
  botgate::Inbox<int> inbox;
  std::vector<int> batch{99};  // take() clears what the caller left in it
  CHECK(inbox.push(1));
  CHECK_FALSE(inbox.push(2));
  CHECK_FALSE(inbox.push(3));
  inbox.take(batch);
  CHECK(batch == std::vector<int>{1, 2, 3});
  inbox.take(batch);
  CHECK(batch.empty());
  CHECK(inbox.push(4));  // a new burst
  inbox.take(batch);
  CHECK(batch == std::vector<int>{4});
}

TEST_CASE("inbox hands every item over once, in each producer's order, across threads", "[inbox]") {
  botgate::Inbox<int> inbox;
  constexpr int kThreads = 4, kPerThread = 20000;
  std::atomic<int> wakeups{0};
  std::atomic<bool> done{false};
  int bursts = 0;  // takes that found something
  std::vector<int> seen;
  std::vector<int> last(kThreads, -1);
  bool in_order = true;
  std::thread consumer([&] {
    std::vector<int> batch;
    for (;;) {
      const bool finished = done.load();
      inbox.take(batch);
      if (!batch.empty()) ++bursts;
      for (int v : batch) {
        const int t = v / kPerThread, n = v % kPerThread;
        if (n <= last[t]) in_order = false;
        last[t] = n;
        seen.push_back(v);
      }
      if (finished && batch.empty()) break;
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      for (int n = 0; n < kPerThread; ++n) {
        if (inbox.push(t * kPerThread + n)) ++wakeups;
      }
    });
  }
  for (auto& p : producers) p.join();
  done = true;
  consumer.join();
  CHECK(seen.size() == static_cast<std::size_t>(kThreads * kPerThread));
  CHECK(in_order);
  // Each take that finds items ends exactly one burst, begun by exactly one push that
  // asked for a wake-up.
  CHECK(wakeups.load() == bursts);
}
