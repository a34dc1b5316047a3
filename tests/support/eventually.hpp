// Polling for a condition that another thread or process brings about, for tests.
// Header-only, so unit tests can use it without the integration support library.
#pragma once

#include <chrono>
#include <thread>

namespace botgate::test {

// Polls `pred` every `poll` until it holds (true) or `timeout` passes (false, after one
// last look).
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(5),
                std::chrono::milliseconds poll = std::chrono::milliseconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(poll);
  }
}

}  // namespace botgate::test
