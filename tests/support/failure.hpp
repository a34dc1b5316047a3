// Tracks whether the running Catch2 test case has failed, so support objects can
// dump diagnostics (the botgate log, the temp dir) only when they are useful.
#pragma once

namespace botgate::test {

// True once any assertion of the current test case has failed, or while an
// exception is propagating.
bool current_test_failed();

}  // namespace botgate::test
