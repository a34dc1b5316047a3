// Runs out of file descriptors on purpose: while a NoDescriptors lives, the process's soft
// open-files limit is the lowest free descriptor plus `spare`, so every open() past the
// `spare` ones fails with EMFILE. CTest runs
// each test case in a process of its own, so nothing else meets the limit.
#pragma once

#include <sys/resource.h>
#include <unistd.h>

#include <stdexcept>

namespace botgate::test {

class NoDescriptors {
 public:
  explicit NoDescriptors(int spare = 0) {
    if (::getrlimit(RLIMIT_NOFILE, &saved_) != 0) throw std::runtime_error("getrlimit");
    const int lowest_free = ::dup(0);
    if (lowest_free < 0) throw std::runtime_error("dup");
    ::close(lowest_free);
    rlimit low = saved_;
    low.rlim_cur = static_cast<rlim_t>(lowest_free + spare);
    if (::setrlimit(RLIMIT_NOFILE, &low) != 0) throw std::runtime_error("setrlimit");
  }
  ~NoDescriptors() { ::setrlimit(RLIMIT_NOFILE, &saved_); }
  NoDescriptors(const NoDescriptors&) = delete;
  NoDescriptors& operator=(const NoDescriptors&) = delete;

 private:
  rlimit saved_{};
};

}  // namespace botgate::test
