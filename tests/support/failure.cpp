#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include "tests/support/failure.hpp"

#include <atomic>
#include <catch2/catch.hpp>
#include <exception>

namespace botgate::test {
namespace {

std::atomic<bool> g_failed{false};

struct FailureListener : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;

  void testCaseStarting(Catch::TestCaseInfo const& info) override {
    g_failed.store(false);
    TestEventListenerBase::testCaseStarting(info);
  }

  bool assertionEnded(Catch::AssertionStats const& stats) override {
    if (!stats.assertionResult.isOk()) g_failed.store(true);
    return TestEventListenerBase::assertionEnded(stats);
  }
};

}  // namespace

CATCH_REGISTER_LISTENER(FailureListener)

bool current_test_failed() {
  return g_failed.load() || std::uncaught_exceptions() > 0;
}

}  // namespace botgate::test
